#include "sim/hardware/kernel_counts.h"

#include <string_view>

namespace zp::sim {

namespace {

bool ends_with(std::string_view s, std::string_view suffix) {
  // The last character first: most class names end otherwise, and that costs no memcmp.
  return s.size() >= suffix.size() && s.back() == suffix.back() &&
         s.substr(s.size() - suffix.size()) == suffix;
}

// The leaves the table below knows, all element-wise but for the dense layers.
bool known_leaf(std::string_view type) {
  return type == "Embedding" || type == "LayerNorm" || ends_with(type, "RMSNorm") ||
         type == "Dropout" || type == "NewGELUActivation" || type == "GELUActivation" ||
         type == "GELU" || type == "SiLU" || type == "Tanh" || type == "ReLU" ||
         ends_with(type, "RotaryEmbedding");
}

bool has_param(const Module& m, std::string_view attr) {
  for (const ParamSlot& s : m.params)
    if (s.attr == attr) return true;
  return false;
}

bool has_child(const ModuleTree& tree, const Module& m, std::string_view name) {
  for (const ModuleId c : m.children)
    if (tree.module(c).name == name) return true;
  return false;
}

KernelCounts counts_of(const ModuleTree& tree, ModuleId module) {
  const Module& m = tree.module(module);
  const std::string_view type = m.type;
  const std::int64_t bias = has_param(m, "bias") ? 1 : 0;

  // Leaves of torch.nn and transformers.
  // DeepSpeed's ZeRO-3 linear: input.matmul(weight.t()), then `+= bias`; backward one product
  // for the input's gradient, one for the weight's, a sum over the tokens for the bias's.
  if (type == "Linear") return {1 + bias, 2 + bias};
  // transformers' Conv1D: one addmm; backward as Linear's.
  if (type == "Conv1D") return {1, 2 + bias};
  // index_select; backward zeros the table's gradient and adds the rows in.
  if (type == "Embedding") return {1, 2};
  if (type == "LayerNorm") return {1, 1};
  // pow, mean, + eps, rsqrt, two products (and the casts to fp32 and back in 16-bit); backward
  // the products' and the reductions' gradients, the sum of the input's two.
  if (ends_with(type, "RMSNorm")) return {tree.shape().dtype == DType::kFloat32 ? 6 : 8, 12};
  // native_dropout: the Bernoulli mask, the product, the scaling; backward mask and scale. With
  // p = 0 (no work in the model's costs) the input is returned as it is.
  if (type == "Dropout") return m.cost.forward_flops > 0 ? KernelCounts{3, 2} : KernelCounts{};
  if (type == "NewGELUActivation" || type == "GELUActivation" || type == "GELU" || type == "SiLU" ||
      type == "Tanh" || type == "ReLU")
    return {1, 1};
  // The cos and sin tables, made without a graph: arange, the exponents, pow, reciprocal, the
  // outer product, cat, cos, sin and the position ids' cast.
  if (ends_with(type, "RotaryEmbedding")) return {9, 0};

  // Attention cores, the projections being children. Scores: the contiguous copies of Q and K^T
  // that a batched product of transposed heads needs, bmm, the scale, the causal mask (ones,
  // triu, masked_fill's clone and fill), softmax; then V's copy, bmm, and the heads merged by a
  // copy. Backward: two products per bmm, the copies' gradients, softmax's, the mask's fill, the
  // scale's, and the concatenation of Q's, K's and V's gradients for the fused projection.
  if (type == "GPT2Attention") return {12, 12};
  // BERT: no causal mask but the padding mask added.
  if (ends_with(type, "SelfAttention")) return {10, 11};
  // Rotary attention (Llama, Mixtral): the core above without the fused projection, and rotary
  // embedding on Q and K (neg, cat, two products and a sum each); backward their gradients (the
  // narrow slices' zeros and copies, the sum of each input's two) and, as a fused (flash) kernel
  // keeps only Q, K and V, the core's forward again before its backward.
  if (ends_with(type, "Attention") && has_child(tree, m, "q_proj")) return {22, 40};
  // Llama's gated MLP multiplies the activated gate by the up projection.
  if (ends_with(type, "MLP"))
    return has_child(tree, m, "gate_proj") ? KernelCounts{1, 2} : KernelCounts{};
  // A block's two residual sums; backward each residual input's two gradients summed.
  if (type == "GPT2Block" || ends_with(type, "DecoderLayer")) return {2, 2};
  // BERT's residual sum before its LayerNorm.
  if (type == "BertSelfOutput" || type == "BertOutput") return {1, 1};
  if (type == "BertEmbeddings") return {3, 1};
  if (type == "BertPooler") return {1, 1};
  // The router: softmax, top-k, renormalisation, the one-hot expert mask, and per expert the
  // token selection and the weighted scatter back.
  if (type == "MixtralSparseMoeBlock") return {10, 10};
  // The loss: the shifted logits and labels made contiguous, log_softmax, nll_loss; backward
  // nll_loss's gradient (zeros, scatter), log_softmax's, the shift's (zeros, copy).
  if (ends_with(type, "LMHeadModel") || ends_with(type, "ForCausalLM")) return {4, 5};
  // The position ids (arange) and GPT-2's token + position sum.
  if (type == "GPT2Model") return {2, 1};
  if (type == "BertModel") return {3, 0};  // the extended attention mask
  if (ends_with(type, "Model")) return {1, 0};

  // Unknown: a leaf is one operation with its input's and weight's gradients; a container only
  // calls its children.
  if (m.children.empty()) return {1, 2};
  return {};
}

// Matrix products: the dense layers, the attention cores (their batched products dominate), and
// a leaf the table does not know (one operation with a weight's gradient, as a dense layer).
bool dense_work(const Module& m) {
  const std::string_view type = m.type;
  return type == "Linear" || type == "Conv1D" || ends_with(type, "Attention") ||
         (m.children.empty() && !known_leaf(type));
}

}  // namespace

KernelCounts module_kernels(const ModuleTree& tree, ModuleId module) {
  KernelCounts k = counts_of(tree, module);
  k.elementwise = !dense_work(tree.module(module));
  return k;
}

}  // namespace zp::sim
