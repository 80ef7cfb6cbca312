// Building blocks shared by the built-in transformer families: adding the common modules (dense
// layers, embeddings, norms, parameter-free leaves) to a ModuleTree, and the per-call cost of each
// module kind. docs/models.md derives every formula here; the family builders (gpt2, llama, bert)
// only wire these together.
//
// Cost conventions (docs/models.md, "Conventions"):
//  - A matrix product of [m, k] by [k, n] is 2*m*k*n FLOPs (Narayanan et al. 2021); element-wise
//    work is a small documented constant per element (the k*Flops constants below).
//  - Activation bytes follow Korthikanti et al. 2022, Sec. 4.1: what autograd keeps for backward,
//    at the activation element size, with dropout masks at one byte per element.
#pragma once

#include <cstdint>
#include <string>

#include "core/model/model_config.h"
#include "core/model/module_tree.h"

namespace zp::families {

// FLOPs per element of the element-wise operations.
inline constexpr std::int64_t kAddFlops = 1;        // bias add, residual add, gating product
inline constexpr std::int64_t kLayerNormFlops = 5;  // mean, variance (2), normalize, affine
inline constexpr std::int64_t kRmsNormFlops = 4;    // square, mean, normalize, scale
inline constexpr std::int64_t kGeluFlops = 8;       // tanh or erf form
inline constexpr std::int64_t kSiluFlops = 4;       // x * sigmoid(x)
inline constexpr std::int64_t kTanhFlops = 4;
inline constexpr std::int64_t kSoftmaxFlops = 5;  // max, subtract, exp, sum, divide
inline constexpr std::int64_t kScoreFlops = 7;    // per attention score: scale, mask, softmax
inline constexpr std::int64_t kDropoutFlops = 2;  // draw the mask, scale (0 when p == 0)
inline constexpr std::int64_t kRopeFlops = 3;     // q*cos + rotate_half(q)*sin
// Per [token, head_dim] element of the rotary tables: the angle, its cosine and its sine.
inline constexpr std::int64_t kRotaryTableFlops = 3;
inline constexpr std::int64_t kCrossEntropyFlops = 5;  // per logit: log-softmax and the pick
inline constexpr std::int64_t kDropoutMaskBytes = 1;   // torch keeps a bool mask
inline constexpr std::int64_t kLossLogitBytes = 4;     // the loss upcasts logits to fp32
inline constexpr std::int64_t kIdBytes = 8;            // token, position and label ids: int64
// LayerNorm keeps each row's mean and reciprocal standard deviation for its backward, in fp32
// whatever the input's dtype (the accumulation type of PyTorch's kernels).
inline constexpr std::int64_t kNormStatBytes = 2 * 4;

// The batch shape as the cost formulas use it.
struct Dims {
  explicit Dims(const BatchShape& shape);

  std::int64_t batch;
  std::int64_t seq;
  std::int64_t tokens;  // batch * seq
  std::int64_t elem;    // bytes per activation element
  DType dtype;
};

// torch.nn.Linear keeps its weight as [out, in]; transformers' Conv1D (GPT-2) as [in, out].
enum class WeightLayout : std::uint8_t { kLinear, kConv1D };

struct Dense {
  std::int64_t in = 0;
  std::int64_t out = 0;
  bool bias = true;
  WeightLayout layout = WeightLayout::kLinear;
};

// Structure. Each adds the module with its parameters (in the module's registration order) and
// returns its id; costs are set by the caller, since they depend on the rows one call sees.
ModuleId add_dense(ModuleTree& tree, ModuleId parent, std::string name, const Dense& dense,
                   DType dtype);
ModuleId add_embedding(ModuleTree& tree, ModuleId parent, std::string name, std::int64_t count,
                       std::int64_t dim, DType dtype);
ModuleId add_layer_norm(ModuleTree& tree, ModuleId parent, std::string name, std::int64_t dim,
                        DType dtype);
ModuleId add_rms_norm(ModuleTree& tree, ModuleId parent, std::string name, std::string type,
                      std::int64_t dim, DType dtype);
// A module without parameters (ModuleList, Dropout, activations, rotary embedding).
ModuleId add_leaf(ModuleTree& tree, ModuleId parent, std::string name, std::string type);

// Costs of one call over `rows` rows (tokens, or batch rows for BERT's pooler).
// A dense layer keeps its input for the weight gradient unless another layer already keeps the same
// tensor (`saves_input` false: k_proj and v_proj share q_proj's input).
ModuleCost dense_cost(const Dense& dense, std::int64_t rows, std::int64_t elem, bool saves_input);
// A lookup of `rows` ids; it keeps `kept_ids` int64 ids for its backward (0 when they are a view
// of a module buffer, which is no activation).
ModuleCost embedding_cost(std::int64_t rows, std::int64_t dim, std::int64_t elem,
                          std::int64_t kept_ids);
// A normalisation that keeps its input.
ModuleCost norm_cost(std::int64_t rows, std::int64_t dim, std::int64_t elem,
                     std::int64_t flops_per_element);
// Hugging Face's LlamaRMSNorm, as autograd runs it: the input upcast to fp32 (kept by the square
// and the product; in fp32 it is the input itself), each row's 1/rms in fp32, and the normalized
// rows in the input's dtype, which the product with the weight keeps for the weight's gradient.
// In 16 bits the normalized rows in fp32 are a temporary.
ModuleCost rms_norm_cost(std::int64_t rows, std::int64_t dim, std::int64_t elem);
// LayerNorm keeps its input and each row's statistics (kNormStatBytes).
ModuleCost layer_norm_cost(std::int64_t rows, std::int64_t dim, std::int64_t elem);
// The causal LM loss of transformers' *ForCausalLM (shift, then cross-entropy in fp32) over
// `batch` sequences of `seq` tokens and a vocabulary of `vocab`, which the root's forward runs
// after lm_head's call: what it keeps for backward (the log-probabilities and the shifted labels),
// what it holds while it runs (the logits and their shifted fp32 copy) and in its backward.
struct LossCost {
  std::int64_t kept_bytes = 0;
  std::int64_t root_workspace = 0;
  std::int64_t root_backward_workspace = 0;  // the loss's backward, the root's
};
LossCost causal_lm_loss_cost(const Dims& dims, std::int64_t vocab);
// GELU and SiLU keep their input, Tanh its output: the same size either way.
ModuleCost activation_cost(std::int64_t elements, std::int64_t elem,
                           std::int64_t flops_per_element);
// With p == 0 PyTorch returns the input and keeps nothing; otherwise a one-byte mask.
ModuleCost dropout_cost(std::int64_t elements, double p, std::int64_t elem);

// The attention core: what an attention module does itself between its projections (scores,
// softmax, dropout on the probabilities, the weighted sum of values, rotary embedding).
struct AttentionCore {
  std::int64_t heads = 1;
  std::int64_t kv_heads = 1;
  std::int64_t head_dim = 1;
  AttentionImpl impl = AttentionImpl::kEager;
  double dropout = 0.0;  // on the attention probabilities
  // GPT-2 and BERT run that dropout as an nn.Dropout child in eager mode, which then keeps the
  // mask.
  bool dropout_is_child = false;
  bool rotary = false;  // Llama, Mixtral: RoPE applied to Q and K inside the module
  bool causal = false;  // the decoders: eager attention masks the future with a boolean [s, s]
};

// The attention core of `config`: GPT-2 and BERT run multi-head attention with the probability
// dropout as a child module; Llama and Mixtral grouped-query attention with rotary embeddings.
AttentionCore attention_core_of(const ModelConfig& config);

// b * heads * s * s: the number of attention scores.
std::int64_t attention_scores(const Dims& dims, const AttentionCore& core);
// The attention module's own cost, excluding its child projections. Output: [tokens, hidden].
ModuleCost attention_core_cost(const Dims& dims, const AttentionCore& core);
// The probability dropout child (GPT-2's attn_dropout, BERT's self.dropout). Flash attention does
// not call it (the kernel drops out internally), so it has no cost then.
ModuleCost attention_dropout_cost(const Dims& dims, const AttentionCore& core);

}  // namespace zp::families
