#include "core/model/model_config.h"

#include <array>
#include <cmath>
#include <map>
#include <utility>

#include "core/config/reader.h"
#include "core/model/families/bert.h"
#include "core/model/families/gpt2.h"
#include "core/model/families/llama.h"
#include "core/model/presets.h"
#include "core/util/suggest.h"

namespace zp {
namespace {

constexpr std::array<std::pair<ModelFamily, std::string_view>, 4> kFamilyNames = {{
    {ModelFamily::kGpt2, "gpt2"},
    {ModelFamily::kLlama, "llama"},
    {ModelFamily::kBert, "bert"},
    {ModelFamily::kMixtral, "mixtral"},
}};

constexpr std::array<std::pair<AttentionImpl, std::string_view>, 2> kAttentionNames = {{
    {AttentionImpl::kEager, "eager"},
    {AttentionImpl::kFlash, "flash"},
}};

// Widths, counts and layers are capped so that every cost product stays far inside int64.
constexpr std::int64_t kMaxSize = std::int64_t{1} << 24;

// Which families a key applies to, as a bit set over ModelFamily.
using FamilySet = unsigned;
constexpr FamilySet bit(ModelFamily f) {
  return 1u << static_cast<unsigned>(f);
}
constexpr FamilySet kAllFamilies = bit(ModelFamily::kGpt2) | bit(ModelFamily::kLlama) |
                                   bit(ModelFamily::kBert) | bit(ModelFamily::kMixtral);
constexpr FamilySet kRotary = bit(ModelFamily::kLlama) | bit(ModelFamily::kMixtral);
constexpr FamilySet kCausalLm = bit(ModelFamily::kGpt2) | kRotary;
constexpr FamilySet kHiddenDropout = bit(ModelFamily::kGpt2) | bit(ModelFamily::kBert);

struct KeyRule {
  std::string_view key;
  FamilySet families;
};

// The hyperparameter keys (besides preset, family and name) and where they apply.
constexpr std::array<KeyRule, 15> kKeyRules = {{
    {"vocab_size", kAllFamilies},
    {"hidden_size", kAllFamilies},
    {"num_layers", kAllFamilies},
    {"num_heads", kAllFamilies},
    {"num_kv_heads", kRotary},
    {"intermediate_size", kAllFamilies},
    {"max_position_embeddings", kAllFamilies},
    {"type_vocab_size", bit(ModelFamily::kBert)},
    {"num_experts", bit(ModelFamily::kMixtral)},
    {"experts_per_token", bit(ModelFamily::kMixtral)},
    {"tie_word_embeddings", kCausalLm},
    {"dropout", kHiddenDropout},
    {"attention_dropout", kAllFamilies},
    {"attention", kAllFamilies},
    {"rope_theta", kRotary},
}};

bool applies(std::string_view key, ModelFamily family) {
  for (const KeyRule& rule : kKeyRules) {
    if (rule.key == key) return (rule.families & bit(family)) != 0;
  }
  return true;
}

std::string families_of(std::string_view key) {
  std::string out;
  for (const KeyRule& rule : kKeyRules) {
    if (rule.key != key) continue;
    for (const auto& [family, name] : kFamilyNames) {
      if ((rule.families & bit(family)) == 0) continue;
      if (!out.empty()) out += ", ";
      out += name;
    }
  }
  return out;
}

std::string join(const std::vector<std::string>& names) {
  std::string out;
  for (const std::string& name : names) {
    if (!out.empty()) out += ", ";
    out += name;
  }
  return out;
}

template <class Enum, size_t N>
std::vector<std::string> names_of(const std::array<std::pair<Enum, std::string_view>, N>& table) {
  std::vector<std::string> names;
  for (const auto& entry : table)
    names.emplace_back(entry.second);
  return names;
}

ModelFamily read_family(const Node& node) {
  const std::string text = read_string(node);
  if (auto family = parse_model_family(text)) return *family;
  const std::vector<std::string> names = names_of(kFamilyNames);
  node.fail(ErrorKind::kValue, "unknown model family '" + text + "'" + did_you_mean(text, names) +
                                   "; expected one of " + join(names));
}

AttentionImpl read_attention(const Node& node) {
  const std::string text = read_string(node);
  if (auto impl = parse_attention_impl(text)) return *impl;
  const std::vector<std::string> names = names_of(kAttentionNames);
  node.fail(ErrorKind::kValue, "unknown attention implementation '" + text + "'" +
                                   did_you_mean(text, names) + "; expected one of " + join(names));
}

std::optional<ConfigViolation> size_violation(std::string_view key, std::int64_t value) {
  if (value < 1) {
    return ConfigViolation{
        {std::string(key)},
        std::string(key) + " " + std::to_string(value) + " is out of range: must be >= 1"};
  }
  if (value > kMaxSize) {
    return ConfigViolation{{std::string(key)},
                           std::string(key) + " " + std::to_string(value) +
                               " is out of range: must be <= " + std::to_string(kMaxSize)};
  }
  return std::nullopt;
}

std::optional<ConfigViolation> probability_violation(std::string_view key, double p) {
  if (p >= 0.0 && p < 1.0) return std::nullopt;  // false for NaN as well
  return ConfigViolation{
      {std::string(key)},
      std::string(key) + " " + repr_json(p) + " is out of range: must be in [0, 1)"};
}

}  // namespace

std::string_view to_string(ModelFamily family) {
  for (const auto& [f, name] : kFamilyNames) {
    if (f == family) return name;
  }
  return "?";
}

std::optional<ModelFamily> parse_model_family(std::string_view name) {
  for (const auto& [f, text] : kFamilyNames) {
    if (text == name) return f;
  }
  return std::nullopt;
}

std::string_view to_string(AttentionImpl impl) {
  for (const auto& [i, name] : kAttentionNames) {
    if (i == impl) return name;
  }
  return "?";
}

std::optional<AttentionImpl> parse_attention_impl(std::string_view name) {
  for (const auto& [i, text] : kAttentionNames) {
    if (text == name) return i;
  }
  return std::nullopt;
}

ModelConfig family_defaults(ModelFamily family) {
  ModelConfig c;
  c.family = family;
  c.name = std::string(to_string(family));
  switch (family) {
    case ModelFamily::kGpt2:  // GPT2Config(): the 124M model
      c.vocab_size = 50257;
      c.hidden_size = 768;
      c.num_layers = 12;
      c.num_heads = 12;
      c.max_position_embeddings = 1024;
      c.tie_word_embeddings = true;
      c.dropout = 0.1;
      c.attention_dropout = 0.1;
      c.attention = AttentionImpl::kEager;
      break;
    case ModelFamily::kLlama:  // LlamaConfig()
      c.vocab_size = 32000;
      c.hidden_size = 4096;
      c.intermediate_size = 11008;
      c.num_layers = 32;
      c.num_heads = 32;
      c.max_position_embeddings = 2048;
      c.rope_theta = 10000.0;
      c.attention = AttentionImpl::kFlash;
      break;
    case ModelFamily::kBert:  // BertConfig(): bert-base-uncased
      c.vocab_size = 30522;
      c.hidden_size = 768;
      c.intermediate_size = 3072;
      c.num_layers = 12;
      c.num_heads = 12;
      c.max_position_embeddings = 512;
      c.type_vocab_size = 2;
      c.dropout = 0.1;
      c.attention_dropout = 0.1;
      c.attention = AttentionImpl::kEager;
      break;
    case ModelFamily::kMixtral:  // MixtralConfig(): Mixtral-8x7B
      c.vocab_size = 32000;
      c.hidden_size = 4096;
      c.intermediate_size = 14336;
      c.num_layers = 32;
      c.num_heads = 32;
      c.num_kv_heads = 8;
      c.max_position_embeddings = 4096 * 32;
      c.num_experts = 8;
      c.experts_per_token = 2;
      c.rope_theta = 1e6;
      c.attention = AttentionImpl::kFlash;
      break;
  }
  return c;
}

std::optional<ConfigViolation> find_violation(const ModelConfig& c) {
  const bool rotary = (kRotary & bit(c.family)) != 0;
  const std::pair<std::string_view, std::int64_t> sizes[] = {
      {"vocab_size", c.vocab_size},
      {"hidden_size", c.hidden_size},
      {"num_layers", c.num_layers},
      {"num_heads", c.num_heads},
      {"num_kv_heads", c.kv_heads()},
      {"intermediate_size", c.ffn_size()},
      {"max_position_embeddings", c.max_position_embeddings},
      {"type_vocab_size", c.type_vocab_size},
      {"num_experts", c.num_experts},
      {"experts_per_token", c.experts_per_token},
  };
  for (const auto& [key, value] : sizes) {
    if (!applies(key, c.family)) continue;
    if (auto v = size_violation(key, value)) return v;
  }
  if (c.hidden_size % c.num_heads != 0) {
    return ConfigViolation{{"num_heads", "hidden_size"},
                           "hidden_size " + std::to_string(c.hidden_size) +
                               " is not divisible by num_heads " + std::to_string(c.num_heads)};
  }
  if (c.num_heads % c.kv_heads() != 0) {
    return ConfigViolation{{"num_kv_heads", "num_heads"},
                           "num_heads " + std::to_string(c.num_heads) +
                               " is not divisible by num_kv_heads " + std::to_string(c.kv_heads())};
  }
  if (rotary && c.head_dim() % 2 != 0) {
    return ConfigViolation{
        {"num_heads", "hidden_size"},
        "the head size hidden_size / num_heads = " + std::to_string(c.head_dim()) +
            " must be even for rotary position embeddings"};
  }
  if (c.family == ModelFamily::kMixtral && c.experts_per_token > c.num_experts) {
    return ConfigViolation{{"experts_per_token", "num_experts"},
                           "experts_per_token " + std::to_string(c.experts_per_token) +
                               " exceeds num_experts " + std::to_string(c.num_experts)};
  }
  if (auto v = probability_violation("dropout", c.dropout)) return v;
  if (!applies("dropout", c.family) && c.dropout != 0.0) {
    return ConfigViolation{
        {"dropout"},
        std::string(to_string(c.family)) + " has no hidden dropout; dropout must be 0"};
  }
  if (auto v = probability_violation("attention_dropout", c.attention_dropout)) return v;
  if (rotary && !(c.rope_theta > 0.0 && std::isfinite(c.rope_theta))) {
    return ConfigViolation{
        {"rope_theta"}, "rope_theta " + repr_json(c.rope_theta) + " is out of range: must be > 0"};
  }
  return std::nullopt;
}

ModelConfig model_config_from_node(const Node& node) {
  ObjectReader reader(node, "model");
  const std::optional<Node> preset_node = reader.get("preset");
  const std::optional<Node> family_node = reader.get("family");

  ModelConfig c;
  if (preset_node) {
    const std::string name = read_string(*preset_node);
    const ModelConfig* preset = find_preset(name);
    if (preset == nullptr) {
      const std::vector<std::string> names = preset_names();
      preset_node->fail(ErrorKind::kValue, "unknown preset '" + name + "'" +
                                               did_you_mean(name, names) +
                                               "; presets: " + join(names));
    }
    c = *preset;
    if (family_node && read_family(*family_node) != c.family) {
      family_node->fail(ErrorKind::kConflict, "preset '" + name + "' is a " +
                                                  std::string(to_string(c.family)) +
                                                  " model, not " + family_node->repr());
    }
  } else if (family_node) {
    c = family_defaults(read_family(*family_node));
  } else {
    throw UserError(ErrorKind::kMissing, node.location(),
                    "the model needs 'preset' (one of " + join(preset_names()) +
                        ") or 'family' (one of " + join(names_of(kFamilyNames)) + ")");
  }

  // The keys given here, by canonical name, to blame for a broken rule.
  std::map<std::string, Node, std::less<>> given;
  const auto get = [&](std::string_view key, std::initializer_list<std::string_view> aliases = {}) {
    std::optional<Node> found = reader.get(key, aliases);
    if (found) {
      if (!applies(key, c.family)) {
        throw UserError(ErrorKind::kUnknownKey, found->key_location(),
                        "key '" + found->key() + "' does not apply to " +
                            std::string(to_string(c.family)) + " models (only to " +
                            families_of(key) + ")");
      }
      given.emplace(std::string(key), *found);
    }
    return found;
  };
  const auto read_size = [](const std::optional<Node>& n, std::int64_t& field) {
    if (n) field = read_int(*n, Coercion::kStrict);
  };
  // null restores the derived default, as transformers' None does.
  const auto read_optional_size = [](const std::optional<Node>& n,
                                     std::optional<std::int64_t>& field) {
    if (!n) return;
    if (n->value().is_null()) {
      field.reset();
    } else {
      field = read_int(*n, Coercion::kStrict);
    }
  };
  const auto read_real = [](const std::optional<Node>& n, double& field) {
    if (n) field = read_double(*n, Coercion::kStrict);
  };

  if (auto n = reader.get("name")) c.name = read_string(*n);
  // The aliases are transformers' spellings, so values can be copied from a config.json.
  read_size(get("vocab_size"), c.vocab_size);
  read_size(get("hidden_size", {"n_embd"}), c.hidden_size);
  read_size(get("num_layers", {"num_hidden_layers", "n_layer"}), c.num_layers);
  read_size(get("num_heads", {"num_attention_heads", "n_head"}), c.num_heads);
  read_optional_size(get("num_kv_heads", {"num_key_value_heads"}), c.num_kv_heads);
  read_optional_size(get("intermediate_size", {"n_inner"}), c.intermediate_size);
  read_size(get("max_position_embeddings", {"n_positions"}), c.max_position_embeddings);
  read_size(get("type_vocab_size"), c.type_vocab_size);
  read_size(get("num_experts", {"num_local_experts"}), c.num_experts);
  read_size(get("experts_per_token", {"num_experts_per_tok"}), c.experts_per_token);
  if (auto n = get("tie_word_embeddings")) c.tie_word_embeddings = read_bool(*n, Coercion::kStrict);
  read_real(get("dropout"), c.dropout);
  read_real(get("attention_dropout", {"attn_pdrop", "attention_probs_dropout_prob"}),
            c.attention_dropout);
  if (auto n = get("attention")) c.attention = read_attention(*n);
  read_real(get("rope_theta"), c.rope_theta);
  reader.reject_unknown();

  if (auto violation = find_violation(c)) {
    for (const std::string& key : violation->keys) {
      if (auto it = given.find(key); it != given.end()) {
        it->second.fail(ErrorKind::kValue, violation->message);
      }
    }
    node.fail(ErrorKind::kValue, violation->message);
  }
  return c;
}

Json model_config_to_json(const ModelConfig& c) {
  Json out = Json::object();
  out["family"] = std::string(to_string(c.family));
  out["name"] = c.name;
  const auto put = [&](std::string_view key, Json value) {
    if (applies(key, c.family)) out[std::string(key)] = std::move(value);
  };
  put("vocab_size", c.vocab_size);
  put("hidden_size", c.hidden_size);
  put("num_layers", c.num_layers);
  put("num_heads", c.num_heads);
  put("num_kv_heads", c.kv_heads());
  put("intermediate_size", c.ffn_size());
  put("max_position_embeddings", c.max_position_embeddings);
  put("type_vocab_size", c.type_vocab_size);
  put("num_experts", c.num_experts);
  put("experts_per_token", c.experts_per_token);
  put("tie_word_embeddings", c.tie_word_embeddings);
  put("dropout", c.dropout);
  put("attention_dropout", c.attention_dropout);
  put("attention", std::string(to_string(c.attention)));
  put("rope_theta", c.rope_theta);
  return out;
}

ModuleTree build_model(const ModelConfig& config, const BatchShape& shape) {
  if (auto violation = find_violation(config)) {
    throw UserError(ErrorKind::kValue, SourceLocation{"", 0, 0, violation->keys.front()},
                    "model '" + config.name + "': " + violation->message);
  }
  if (shape.micro_batch < 1 || shape.sequence_length < 1) {
    throw UserError(ErrorKind::kValue, SourceLocation{},
                    "the batch shape must be positive, got micro_batch " +
                        std::to_string(shape.micro_batch) + " and sequence_length " +
                        std::to_string(shape.sequence_length));
  }
  if (!is_floating(shape.dtype)) {
    throw UserError(
        ErrorKind::kValue, SourceLocation{},
        "activations must be floating point, got " + std::string(to_string(shape.dtype)));
  }
  const bool learned_positions =
      config.family == ModelFamily::kGpt2 || config.family == ModelFamily::kBert;
  if (learned_positions && shape.sequence_length > config.max_position_embeddings) {
    throw UserError(ErrorKind::kValue, SourceLocation{},
                    "sequence_length " + std::to_string(shape.sequence_length) +
                        " exceeds max_position_embeddings " +
                        std::to_string(config.max_position_embeddings) + " of model '" +
                        config.name + "' (its position embeddings are learned)");
  }
  switch (config.family) {
    case ModelFamily::kGpt2:
      return families::build_gpt2(config, shape);
    case ModelFamily::kLlama:
    case ModelFamily::kMixtral:
      return families::build_llama(config, shape);
    case ModelFamily::kBert:
      return families::build_bert(config, shape);
  }
  ZP_CHECK(false, "unknown model family ", static_cast<int>(config.family));
  return {};
}

}  // namespace zp
