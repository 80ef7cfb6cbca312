// Tiny configurations of the families exec builds (hidden 32, 2 layers), so that tests run in
// milliseconds, and of the families it refuses.
#pragma once

#include "core/model/model_config.h"
#include "core/model/module_tree.h"

namespace zp::exec::testing {

inline constexpr std::int64_t kTinyVocab = 64;

inline ModelConfig tiny_gpt2(AttentionImpl attention = AttentionImpl::kEager) {
  ModelConfig c = family_defaults(ModelFamily::kGpt2);
  c.name = "tiny-gpt2";
  c.vocab_size = kTinyVocab;
  c.hidden_size = 32;
  c.num_layers = 2;
  c.num_heads = 4;
  c.max_position_embeddings = 16;
  c.dropout = 0.0;
  c.attention_dropout = 0.0;
  c.attention = attention;
  c.tie_word_embeddings = true;
  return c;
}

// Grouped-query attention: 4 query heads share 2 key/value heads.
inline ModelConfig tiny_llama() {
  ModelConfig c = family_defaults(ModelFamily::kLlama);
  c.name = "tiny-llama";
  c.vocab_size = kTinyVocab;
  c.hidden_size = 32;
  c.intermediate_size = 48;
  c.num_layers = 2;
  c.num_heads = 4;
  c.num_kv_heads = 2;
  c.max_position_embeddings = 16;
  c.tie_word_embeddings = false;
  return c;
}

inline ModelConfig tiny_family(ModelFamily family) {
  ModelConfig c = family_defaults(family);
  c.vocab_size = kTinyVocab;
  c.hidden_size = 32;
  c.intermediate_size = 48;
  c.num_layers = 2;
  c.num_heads = 4;
  c.max_position_embeddings = 16;
  if (family == ModelFamily::kMixtral) {
    c.num_kv_heads = 2;
    c.num_experts = 2;
  }
  return c;
}

inline ModuleTree tiny_tree(const ModelConfig& config, std::int64_t batch = 2,
                            std::int64_t seq = 8) {
  return build_model(config, BatchShape{batch, seq, DType::kFloat32});
}

}  // namespace zp::exec::testing
