// Presets (published parameter counts, lossless model files) and the run-spec model mapping.
#include <gtest/gtest.h>

#include <cstdint>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "core/config/document.h"
#include "core/model/model_config.h"
#include "core/model/model_json.h"
#include "core/model/presets.h"
#include "core/util/error.h"

namespace zp {
namespace {

// --- Presets ----------------------------------------------------------------------------------

TEST(Presets, ParameterCountsEqualThePublishedOnes) {
  const std::vector<std::pair<std::string, std::int64_t>> expected = {
      {"tiny-gpt2", 180'480},          {"tiny-bert", 184'768},
      {"tiny-llama", 220'480},         {"tiny-mixtral", 350'016},
      {"gpt2", 124'439'808},           {"gpt2-medium", 354'823'168},
      {"gpt2-large", 774'030'080},     {"gpt2-xl", 1'557'611'200},
      {"bert-base", 109'482'240},      {"bert-large", 335'141'888},
      {"llama-3.2-1b", 1'235'814'400}, {"llama-2-7b", 6'738'415'616},
      {"llama-3-8b", 8'030'261'248},   {"llama-2-13b", 13'015'864'320},
      {"llama-2-70b", 68'976'648'192}, {"mixtral-8x7b", 46'702'792'704},
  };
  for (const auto& [name, count] : expected) {
    const ModelConfig* preset = find_preset(name);
    ASSERT_NE(preset, nullptr) << name;
    const ModuleTree tree = build_model(*preset, BatchShape{1, 16, DType::kBFloat16});
    EXPECT_EQ(tree.total_parameters(), count) << name;
    EXPECT_EQ(tree.trainable_parameters(), count) << name;
    EXPECT_EQ(tree.total_parameter_bytes(), 2 * count) << name;
    EXPECT_EQ(tree.name(), name);
  }
}

TEST(Presets, PublishedHyperparameters) {
  const ModelConfig& l70 = *find_preset("llama-2-70b");
  EXPECT_EQ(l70.hidden_size, 8192);
  EXPECT_EQ(l70.kv_heads(), 8);
  EXPECT_EQ(l70.ffn_size(), 28672);
  EXPECT_EQ(l70.attention, AttentionImpl::kFlash);
  const ModelConfig& l3 = *find_preset("llama-3-8b");
  EXPECT_EQ(l3.vocab_size, 128256);
  EXPECT_EQ(l3.rope_theta, 500000.0);
  EXPECT_FALSE(l3.tie_word_embeddings);
  EXPECT_TRUE(find_preset("llama-3.2-1b")->tie_word_embeddings);
  const ModelConfig& mixtral = *find_preset("mixtral-8x7b");
  EXPECT_EQ(mixtral.num_experts, 8);
  EXPECT_EQ(mixtral.experts_per_token, 2);
  const ModelConfig& gpt2 = *find_preset("gpt2");
  EXPECT_TRUE(gpt2.tie_word_embeddings);
  EXPECT_EQ(gpt2.ffn_size(), 3072);
  EXPECT_EQ(gpt2.dropout, 0.1);
  EXPECT_EQ(gpt2.attention, AttentionImpl::kEager);
  EXPECT_EQ(find_preset("bert-large")->max_position_embeddings, 512);
}

TEST(Presets, NamesAreUniqueFindableAndValid) {
  const std::vector<std::string> names = preset_names();
  EXPECT_GE(names.size(), 12u);
  EXPECT_EQ(std::set<std::string>(names.begin(), names.end()).size(), names.size());
  for (const std::string& name : names) {
    const ModelConfig* preset = find_preset(name);
    ASSERT_NE(preset, nullptr) << name;
    EXPECT_EQ(preset->name, name);
    EXPECT_FALSE(find_violation(*preset).has_value()) << name;
  }
  for (const char* tiny : {"tiny-gpt2", "tiny-bert", "tiny-llama", "tiny-mixtral"}) {
    ASSERT_NE(find_preset(tiny), nullptr) << tiny;
    EXPECT_LT(build_model(*find_preset(tiny), BatchShape{1, 8, DType::kFloat32}).total_parameters(),
              1'000'000)
        << tiny;
  }
  EXPECT_EQ(find_preset("gpt3"), nullptr);
  EXPECT_EQ(find_preset("GPT2"), nullptr);  // exact names; the run spec suggests the right one
}

TEST(Presets, ModelFileRoundTripIsLossless) {
  for (const std::string& name : preset_names()) {
    const ModuleTree tree = build_model(*find_preset(name), BatchShape{2, 4, DType::kBFloat16});
    const Document doc = Document::from_value(model_to_json(tree), name + ".json");
    const ModuleTree back = model_from_json(Node(doc));
    EXPECT_TRUE(back == tree) << name;
  }
}

// --- ModelConfig: the run spec's model mapping -----------------------------------------------

ModelConfig parse(const std::string& yaml) {
  const Document doc = Document::from_yaml(yaml, "test.yaml");
  return model_config_from_node(Node(doc).child("model"));
}

UserError parse_error(const std::string& yaml) {
  try {
    parse(yaml);
  } catch (const UserError& e) {
    return e;
  }
  ADD_FAILURE() << "no error for: " << yaml;
  return UserError(ErrorKind::kSyntax, SourceLocation{}, "none");
}

TEST(ModelConfig, PresetWithOverrides) {
  const ModelConfig c = parse("model:\n  preset: gpt2\n  num_layers: 2\n  dropout: 0\n");
  EXPECT_EQ(c.family, ModelFamily::kGpt2);
  EXPECT_EQ(c.name, "gpt2");
  EXPECT_EQ(c.num_layers, 2);
  EXPECT_EQ(c.dropout, 0.0);
  EXPECT_EQ(c.attention_dropout, 0.1);
  EXPECT_EQ(c.hidden_size, 768);
  ModelConfig expected = *find_preset("gpt2");
  expected.num_layers = 2;
  expected.dropout = 0.0;
  EXPECT_EQ(c, expected);

  const ModelConfig flash = parse("model: {preset: llama-2-7b, attention: eager, name: mine}");
  EXPECT_EQ(flash.attention, AttentionImpl::kEager);
  EXPECT_EQ(flash.name, "mine");
}

TEST(ModelConfig, FamilyFormStartsFromTransformersDefaults) {
  const ModelConfig c =
      parse("model: {family: llama, hidden_size: 256, num_heads: 4, num_layers: 2}");
  EXPECT_EQ(c.family, ModelFamily::kLlama);
  EXPECT_EQ(c.name, "llama");
  EXPECT_EQ(c.vocab_size, 32000);
  EXPECT_EQ(c.ffn_size(), 11008);  // LlamaConfig's default, not rescaled
  EXPECT_EQ(c.kv_heads(), 4);      // num_key_value_heads=None follows the heads
  EXPECT_EQ(c.attention, AttentionImpl::kFlash);
  EXPECT_EQ(parse("model: {family: bert}").attention, AttentionImpl::kEager);
  EXPECT_EQ(parse("model: {family: mixtral}").num_experts, 8);
  EXPECT_EQ(parse("model: {family: gpt2}"), family_defaults(ModelFamily::kGpt2));
}

TEST(ModelConfig, DerivedSizesFollowTheirBase) {
  // GPT-2's n_inner is null: the MLP stays 4 * hidden when hidden changes.
  EXPECT_EQ(parse("model: {preset: gpt2, hidden_size: 1024, num_heads: 16}").ffn_size(), 4096);
  // An explicit intermediate_size does not follow.
  EXPECT_EQ(parse("model: {preset: llama-2-7b, hidden_size: 2048}").ffn_size(), 11008);
  // null restores the derived value.
  EXPECT_EQ(parse("model: {preset: llama-2-7b, intermediate_size: null}").ffn_size(), 4 * 4096);
  EXPECT_EQ(parse("model: {preset: llama-2-70b, num_kv_heads: null}").kv_heads(), 64);
}

TEST(ModelConfig, AcceptsTransformersSpellings) {
  const ModelConfig c = parse(
      "model: {family: gpt2, n_embd: 128, n_layer: 3, n_head: 4, n_positions: 64, n_inner: 256,"
      " attn_pdrop: 0.0}");
  EXPECT_EQ(c.hidden_size, 128);
  EXPECT_EQ(c.num_layers, 3);
  EXPECT_EQ(c.num_heads, 4);
  EXPECT_EQ(c.max_position_embeddings, 64);
  EXPECT_EQ(c.ffn_size(), 256);
  EXPECT_EQ(c.attention_dropout, 0.0);
  const ModelConfig m = parse(
      "model: {family: mixtral, num_local_experts: 4, num_experts_per_tok: 1, "
      "num_key_value_heads: 4, num_hidden_layers: 2, num_attention_heads: 8}");
  EXPECT_EQ(m.num_experts, 4);
  EXPECT_EQ(m.experts_per_token, 1);
  EXPECT_EQ(m.kv_heads(), 4);
  EXPECT_EQ(m.num_layers, 2);
  EXPECT_EQ(m.num_heads, 8);

  const UserError e = parse_error("model: {family: gpt2, n_embd: 128, hidden_size: 128}");
  EXPECT_EQ(e.kind(), ErrorKind::kConflict);
}

TEST(ModelConfig, UnknownKeySuggestsTheClosest) {
  const UserError e = parse_error("model:\n  preset: gpt2\n  hiden_size: 1024\n");
  EXPECT_EQ(e.kind(), ErrorKind::kUnknownKey);
  EXPECT_NE(e.message().find("did you mean 'hidden_size'"), std::string::npos) << e.what();
  EXPECT_EQ(e.where().file, "test.yaml");
  EXPECT_EQ(e.where().line, 3);
  EXPECT_EQ(e.where().key_path, "model.hiden_size");

  const UserError other = parse_error("model: {preset: gpt2, num_experts: 4}");
  EXPECT_EQ(other.kind(), ErrorKind::kUnknownKey);
  EXPECT_NE(other.message().find("does not apply to gpt2"), std::string::npos) << other.what();
  EXPECT_NE(other.message().find("mixtral"), std::string::npos) << other.what();
  EXPECT_EQ(parse_error("model: {family: llama, dropout: 0.1}").kind(), ErrorKind::kUnknownKey);
  EXPECT_EQ(parse_error("model: {family: bert, tie_word_embeddings: true}").kind(),
            ErrorKind::kUnknownKey);
}

TEST(ModelConfig, BadTypesAreTypeErrorsAtTheKey) {
  for (const char* yaml : {
           "model: {preset: gpt2, hidden_size: big}",
           "model: {preset: gpt2, hidden_size: 1.5}",
           "model: {preset: gpt2, hidden_size: \"768\"}",  // strict: no numeric strings
           "model: {preset: gpt2, hidden_size: true}",
       }) {
    const UserError e = parse_error(yaml);
    EXPECT_EQ(e.kind(), ErrorKind::kType) << yaml;
    EXPECT_EQ(e.where().key_path, "model.hidden_size") << yaml;
  }
  EXPECT_EQ(parse_error("model: {preset: gpt2, tie_word_embeddings: \"yes\"}").kind(),
            ErrorKind::kType);
  EXPECT_EQ(parse_error("model: {preset: gpt2, dropout: low}").kind(), ErrorKind::kType);
  EXPECT_EQ(parse_error("model: {preset: 7}").kind(), ErrorKind::kType);
  EXPECT_EQ(parse_error("model: [gpt2]").kind(), ErrorKind::kType);
  // A float with no fractional part is an integer.
  EXPECT_EQ(parse("model: {preset: gpt2, num_layers: 6.0}").num_layers, 6);
}

TEST(ModelConfig, RangesAreCheckedAndBlameTheKeyGiven) {
  const auto expect_value_error = [](const std::string& yaml, const std::string& key,
                                     const std::string& words) {
    const UserError e = parse_error(yaml);
    EXPECT_EQ(e.kind(), ErrorKind::kValue) << yaml;
    EXPECT_EQ(e.where().key_path, key) << yaml;
    EXPECT_NE(e.message().find(words), std::string::npos) << e.what();
  };
  expect_value_error("model: {preset: gpt2, num_layers: 0}", "model.num_layers", ">= 1");
  expect_value_error("model: {preset: gpt2, vocab_size: -5}", "model.vocab_size", ">= 1");
  expect_value_error("model: {preset: tiny-bert, type_vocab_size: 0}", "model.type_vocab_size",
                     ">= 1");
  expect_value_error("model: {preset: gpt2, dropout: 1.0}", "model.dropout", "[0, 1)");
  expect_value_error("model: {preset: gpt2, attention_dropout: -0.1}", "model.attention_dropout",
                     "[0, 1)");
  expect_value_error("model: {preset: gpt2, num_heads: 7}", "model.num_heads", "not divisible");
  // num_heads comes from the preset, so the hidden_size given here is to blame.
  expect_value_error("model: {preset: gpt2, hidden_size: 100}", "model.hidden_size",
                     "not divisible");
  expect_value_error("model: {preset: llama-2-70b, num_kv_heads: 3}", "model.num_kv_heads",
                     "not divisible");
  expect_value_error("model: {preset: tiny-llama, hidden_size: 36, num_heads: 4}",
                     "model.num_heads", "even");
  expect_value_error("model: {preset: mixtral-8x7b, experts_per_token: 9}",
                     "model.experts_per_token", "exceeds num_experts");
  expect_value_error("model: {preset: tiny-llama, rope_theta: 0}", "model.rope_theta", "> 0");
  expect_value_error("model: {preset: gpt2, hidden_size: 100000000}", "model.hidden_size", "<=");
}

TEST(ModelConfig, UnknownPresetFamilyOrAttentionSuggests) {
  UserError e = parse_error("model: {preset: gpt-2}");
  EXPECT_EQ(e.kind(), ErrorKind::kValue);
  EXPECT_EQ(e.where().key_path, "model.preset");
  EXPECT_NE(e.message().find("did you mean 'gpt2'"), std::string::npos) << e.what();
  EXPECT_NE(e.message().find("llama-2-70b"), std::string::npos) << e.what();  // the list

  e = parse_error("model: {family: lama}");
  EXPECT_EQ(e.kind(), ErrorKind::kValue);
  EXPECT_NE(e.message().find("did you mean 'llama'"), std::string::npos) << e.what();

  e = parse_error("model: {preset: gpt2, attention: flsh}");
  EXPECT_EQ(e.kind(), ErrorKind::kValue);
  EXPECT_NE(e.message().find("did you mean 'flash'"), std::string::npos) << e.what();

  e = parse_error("model: {hidden_size: 64}");
  EXPECT_EQ(e.kind(), ErrorKind::kMissing);

  e = parse_error("model: {preset: gpt2, family: llama}");
  EXPECT_EQ(e.kind(), ErrorKind::kConflict);
  EXPECT_EQ(parse("model: {preset: gpt2, family: gpt2}"), *find_preset("gpt2"));
}

TEST(ModelConfig, JsonListsEveryHyperparameterOfTheFamily) {
  const Json gpt2 = model_config_to_json(*find_preset("gpt2"));
  EXPECT_EQ(gpt2["family"], "gpt2");
  EXPECT_EQ(gpt2["intermediate_size"], 3072);
  EXPECT_EQ(gpt2["attention"], "eager");
  EXPECT_EQ(gpt2["dropout"], 0.1);
  EXPECT_FALSE(gpt2.contains("num_experts"));
  EXPECT_FALSE(gpt2.contains("num_kv_heads"));
  const Json mixtral = model_config_to_json(*find_preset("mixtral-8x7b"));
  EXPECT_EQ(mixtral["num_experts"], 8);
  EXPECT_EQ(mixtral["experts_per_token"], 2);
  EXPECT_EQ(mixtral["num_kv_heads"], 8);
  EXPECT_FALSE(mixtral.contains("dropout"));
  EXPECT_FALSE(mixtral.contains("type_vocab_size"));
  EXPECT_EQ(model_config_to_json(*find_preset("bert-large"))["type_vocab_size"], 2);
}

TEST(ModelConfig, JsonReadsBackToTheSameModel) {
  for (const std::string& name : preset_names()) {
    const ModelConfig& preset = *find_preset(name);
    const Json json = model_config_to_json(preset);
    const Document doc = Document::from_value(json, "inspect.json");
    const ModelConfig back = model_config_from_node(Node(doc));
    EXPECT_EQ(model_config_to_json(back), json) << name;
    const BatchShape shape{1, 4, DType::kFloat32};
    EXPECT_TRUE(build_model(back, shape) == build_model(preset, shape)) << name;
  }
}

}  // namespace
}  // namespace zp
