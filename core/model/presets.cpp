#include "core/model/presets.h"

#include <utility>

namespace zp {
namespace {

// Hyperparameters from each model's config.json on the Hugging Face hub (docs/models.md names the
// repositories). Anything not listed keeps the family's default.

ModelConfig gpt2(std::string name, std::int64_t hidden, std::int64_t layers, std::int64_t heads) {
  ModelConfig c = family_defaults(ModelFamily::kGpt2);
  c.name = std::move(name);
  c.hidden_size = hidden;
  c.num_layers = layers;
  c.num_heads = heads;
  return c;  // n_inner is null in every GPT-2 config: the MLP is 4 * hidden wide
}

ModelConfig bert(std::string name, std::int64_t hidden, std::int64_t layers, std::int64_t heads) {
  ModelConfig c = family_defaults(ModelFamily::kBert);
  c.name = std::move(name);
  c.hidden_size = hidden;
  c.num_layers = layers;
  c.num_heads = heads;
  c.intermediate_size = 4 * hidden;
  return c;
}

struct LlamaShape {
  std::int64_t vocab, hidden, ffn, layers, heads, kv_heads, max_positions;
  double rope_theta;
  bool tied;
};

ModelConfig llama(std::string name, const LlamaShape& s, ModelFamily family = ModelFamily::kLlama) {
  ModelConfig c = family_defaults(family);
  c.name = std::move(name);
  c.vocab_size = s.vocab;
  c.hidden_size = s.hidden;
  c.intermediate_size = s.ffn;
  c.num_layers = s.layers;
  c.num_heads = s.heads;
  c.num_kv_heads = s.kv_heads;
  c.max_position_embeddings = s.max_positions;
  c.rope_theta = s.rope_theta;
  c.tie_word_embeddings = s.tied;
  return c;
}

std::vector<ModelConfig> make_presets() {
  std::vector<ModelConfig> p;
  // openai-community/gpt2, gpt2-medium, gpt2-large, gpt2-xl.
  p.push_back(gpt2("tiny-gpt2", 64, 2, 4));
  p.back().vocab_size = 1000;
  p.back().max_position_embeddings = 256;
  p.push_back(gpt2("gpt2", 768, 12, 12));
  p.push_back(gpt2("gpt2-medium", 1024, 24, 16));
  p.push_back(gpt2("gpt2-large", 1280, 36, 20));
  p.push_back(gpt2("gpt2-xl", 1600, 48, 25));

  // google-bert/bert-base-uncased, google-bert/bert-large-uncased.
  p.push_back(bert("tiny-bert", 64, 2, 4));
  p.back().vocab_size = 1000;
  p.back().max_position_embeddings = 256;
  p.push_back(bert("bert-base", 768, 12, 12));
  p.push_back(bert("bert-large", 1024, 24, 16));

  // meta-llama/Llama-2-{7b,13b,70b}-hf, Meta-Llama-3-8B, Llama-3.2-1B.
  p.push_back(llama("tiny-llama", {1000, 64, 176, 2, 4, 2, 256, 10000.0, false}));
  p.push_back(llama("llama-3.2-1b", {128256, 2048, 8192, 16, 32, 8, 131072, 500000.0, true}));
  p.push_back(llama("llama-2-7b", {32000, 4096, 11008, 32, 32, 32, 4096, 10000.0, false}));
  p.push_back(llama("llama-3-8b", {128256, 4096, 14336, 32, 32, 8, 8192, 500000.0, false}));
  p.push_back(llama("llama-2-13b", {32000, 5120, 13824, 40, 40, 40, 4096, 10000.0, false}));
  p.push_back(llama("llama-2-70b", {32000, 8192, 28672, 80, 64, 8, 4096, 10000.0, false}));

  // mistralai/Mixtral-8x7B-v0.1.
  p.push_back(
      llama("tiny-mixtral", {1000, 64, 128, 2, 4, 2, 256, 1e6, false}, ModelFamily::kMixtral));
  p.back().num_experts = 4;
  p.push_back(llama("mixtral-8x7b", {32000, 4096, 14336, 32, 32, 8, 32768, 1e6, false},
                    ModelFamily::kMixtral));
  return p;
}

const std::vector<ModelConfig>& presets() {
  static const std::vector<ModelConfig> table = make_presets();
  return table;
}

}  // namespace

const ModelConfig* find_preset(std::string_view name) {
  for (const ModelConfig& c : presets()) {
    if (c.name == name) return &c;
  }
  return nullptr;
}

std::vector<std::string> preset_names() {
  std::vector<std::string> names;
  names.reserve(presets().size());
  for (const ModelConfig& c : presets())
    names.push_back(c.name);
  return names;
}

}  // namespace zp
