// The hyperparameters of a built-in model family (GPT-2, Llama, BERT, Mixtral), how a run spec
// names them, and the ModuleTree that a configuration and a batch shape build.
//
// A ModelConfig is a plain value; build_model() turns it into the module tree that DeepSpeed would
// see for the Hugging Face transformers implementation of the family, with every module's cost for
// one batch shape. docs/models.md derives every parameter count, FLOP count and activation byte
// count that the builders use.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/config/document.h"
#include "core/model/module_tree.h"

namespace zp {

enum class ModelFamily : std::uint8_t { kGpt2, kLlama, kBert, kMixtral };

// How the attention core runs. kEager materializes the attention scores and keeps the softmax
// output (and its dropout mask) for backward; kFlash (FlashAttention, or an SDPA kernel that fuses
// the same way) recomputes them in backward and keeps only Q, K and V.
enum class AttentionImpl : std::uint8_t { kEager, kFlash };

struct ModelConfig {
  ModelFamily family = ModelFamily::kGpt2;
  std::string name;  // a label for reports: the preset's name, or the family's

  std::int64_t vocab_size = 1;
  std::int64_t hidden_size = 1;
  std::int64_t num_layers = 1;
  std::int64_t num_heads = 1;
  // Llama and Mixtral (grouped-query attention); nullopt means num_heads, as in Hugging Face.
  std::optional<std::int64_t> num_kv_heads;
  // Width of the MLP (per expert for Mixtral); nullopt means 4 * hidden_size (GPT-2's
  // n_inner=None).
  std::optional<std::int64_t> intermediate_size;
  std::int64_t max_position_embeddings = 1;
  std::int64_t type_vocab_size = 2;    // BERT only
  std::int64_t num_experts = 8;        // Mixtral only
  std::int64_t experts_per_token = 2;  // Mixtral only: top-k routing
  bool tie_word_embeddings = false;    // GPT-2, Llama, Mixtral: lm_head shares the input embedding
  // GPT-2 and BERT: the embedding and residual dropouts (resid_pdrop and embd_pdrop,
  // hidden_dropout_prob). Llama and Mixtral have no such modules; it stays 0.
  double dropout = 0.0;
  double attention_dropout = 0.0;  // on the attention probabilities
  AttentionImpl attention = AttentionImpl::kEager;
  double rope_theta = 10000.0;  // Llama and Mixtral; reported, it changes no cost

  std::int64_t kv_heads() const { return num_kv_heads.value_or(num_heads); }
  std::int64_t ffn_size() const { return intermediate_size.value_or(4 * hidden_size); }
  std::int64_t head_dim() const { return hidden_size / num_heads; }

  bool operator==(const ModelConfig&) const = default;
};

// "gpt2", "llama", "bert", "mixtral".
std::string_view to_string(ModelFamily family);
std::optional<ModelFamily> parse_model_family(std::string_view name);
// "eager", "flash".
std::string_view to_string(AttentionImpl impl);
std::optional<AttentionImpl> parse_attention_impl(std::string_view name);

// The configuration that `{family: NAME}` starts from: the defaults of the family's Hugging Face
// configuration class (GPT2Config, LlamaConfig, BertConfig, MixtralConfig), with zeroplan's default
// attention implementation (eager for GPT-2 and BERT, flash for Llama and Mixtral).
ModelConfig family_defaults(ModelFamily family);

// A rule that a configuration breaks: the keys involved (the first is the one to blame when several
// are given) and the rule, e.g. {{"num_heads", "hidden_size"}, "hidden_size 768 is not divisible by
// num_heads 7"}.
struct ConfigViolation {
  std::vector<std::string> keys;
  std::string message;
};
// The first rule `config` breaks, or nullopt: sizes >= 1, hidden_size divisible by num_heads,
// num_heads by num_kv_heads, an even head size for rotary embeddings, experts_per_token <=
// num_experts, dropouts in [0, 1), rope_theta > 0, no hidden dropout for Llama and Mixtral.
std::optional<ConfigViolation> find_violation(const ModelConfig& config);

// Parses a run spec's model mapping, either `{preset: NAME, <overrides>...}` or
// `{family: gpt2|llama|bert|mixtral, <hyperparameters>...}`, with strict types. Unknown keys, keys
// that do not apply to the family, bad types and broken rules are UserErrors at the offending key.
// Overrides change only the keys given (num_kv_heads and intermediate_size keep their
// "derived from num_heads / hidden_size" meaning when the preset leaves them unset).
ModelConfig model_config_from_node(const Node& node);

// Every hyperparameter that applies to the family, resolved (num_kv_heads, intermediate_size), in
// the form model_config_from_node reads back.
Json model_config_to_json(const ModelConfig& config);

// The module tree for `config` at `shape`. Parameters take the shape's dtype. A UserError when the
// configuration breaks a rule (find_violation), the shape is not a floating-point one of positive
// size, or the sequence is longer than learned position embeddings allow (GPT-2, BERT).
ModuleTree build_model(const ModelConfig& config, const BatchShape& shape);

}  // namespace zp
