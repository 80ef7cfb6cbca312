#include "core/model/families/transformer.h"

#include <algorithm>
#include <utility>

namespace zp::families {

Dims::Dims(const BatchShape& shape)
    : batch(shape.micro_batch),
      seq(shape.sequence_length),
      tokens(shape.tokens()),
      elem(dtype_size(shape.dtype)),
      dtype(shape.dtype) {}

ModuleId add_dense(ModuleTree& tree, ModuleId parent, std::string name, const Dense& dense,
                   DType dtype) {
  const bool conv1d = dense.layout == WeightLayout::kConv1D;
  const ModuleId id = tree.add_module(parent, std::move(name), conv1d ? "Conv1D" : "Linear");
  if (conv1d) {
    tree.add_parameter(id, "weight", {dense.in, dense.out}, dtype);
  } else {
    tree.add_parameter(id, "weight", {dense.out, dense.in}, dtype);
  }
  if (dense.bias) tree.add_parameter(id, "bias", {dense.out}, dtype);
  return id;
}

ModuleId add_embedding(ModuleTree& tree, ModuleId parent, std::string name, std::int64_t count,
                       std::int64_t dim, DType dtype) {
  const ModuleId id = tree.add_module(parent, std::move(name), "Embedding");
  tree.add_parameter(id, "weight", {count, dim}, dtype);
  return id;
}

ModuleId add_layer_norm(ModuleTree& tree, ModuleId parent, std::string name, std::int64_t dim,
                        DType dtype) {
  const ModuleId id = tree.add_module(parent, std::move(name), "LayerNorm");
  tree.add_parameter(id, "weight", {dim}, dtype);
  tree.add_parameter(id, "bias", {dim}, dtype);
  return id;
}

ModuleId add_rms_norm(ModuleTree& tree, ModuleId parent, std::string name, std::string type,
                      std::int64_t dim, DType dtype) {
  const ModuleId id = tree.add_module(parent, std::move(name), std::move(type));
  tree.add_parameter(id, "weight", {dim}, dtype);
  return id;
}

ModuleId add_leaf(ModuleTree& tree, ModuleId parent, std::string name, std::string type) {
  return tree.add_module(parent, std::move(name), std::move(type));
}

ModuleCost dense_cost(const Dense& dense, std::int64_t rows, std::int64_t elem, bool saves_input) {
  ModuleCost cost;
  cost.forward_flops =
      2 * rows * dense.in * dense.out + (dense.bias ? kAddFlops * rows * dense.out : 0);
  cost.activation_bytes = saves_input ? rows * dense.in * elem : 0;
  cost.output_bytes = rows * dense.out * elem;
  // Backward: the output's gradient, and the input's it makes.
  cost.backward_workspace_bytes = rows * (dense.in + dense.out) * elem;
  return cost;
}

ModuleCost embedding_cost(std::int64_t rows, std::int64_t dim, std::int64_t elem,
                          std::int64_t kept_ids) {
  // A lookup: no arithmetic; backward needs only the integer ids, and is handed the output's
  // gradient (it makes none for the ids).
  ModuleCost cost{0, kIdBytes * kept_ids, rows * dim * elem};
  cost.backward_workspace_bytes = rows * dim * elem;
  return cost;
}

ModuleCost norm_cost(std::int64_t rows, std::int64_t dim, std::int64_t elem,
                     std::int64_t flops_per_element) {
  const std::int64_t elements = rows * dim;
  ModuleCost cost{flops_per_element * elements, elements * elem, elements * elem};
  cost.backward_workspace_bytes = 2 * elements * elem;  // the output's gradient and the input's
  return cost;
}

ModuleCost rms_norm_cost(std::int64_t rows, std::int64_t dim, std::int64_t elem) {
  constexpr std::int64_t kFp32 = 4;
  ModuleCost cost = norm_cost(rows, dim, elem, kRmsNormFlops);
  const std::int64_t elements = rows * dim;
  cost.activation_bytes = elements * kFp32 + rows * kFp32 + elements * elem;
  if (elem != kFp32) cost.workspace_bytes = std::max(cost.workspace_bytes, elements * kFp32);
  return cost;
}

ModuleCost layer_norm_cost(std::int64_t rows, std::int64_t dim, std::int64_t elem) {
  ModuleCost cost = norm_cost(rows, dim, elem, kLayerNormFlops);
  cost.activation_bytes += kNormStatBytes * rows;
  return cost;
}

LossCost causal_lm_loss_cost(const Dims& dims, std::int64_t vocab) {
  // Position t predicts token t + 1: the last position of each sequence predicts nothing.
  const std::int64_t predicted = dims.batch * (dims.seq - 1);
  LossCost loss;
  // log_softmax keeps its fp32 output (nll_loss reads the same tensor); nll_loss keeps the
  // shifted labels, a contiguous copy.
  loss.kept_bytes = kLossLogitBytes * predicted * vocab + kIdBytes * predicted;
  // While the loss runs: lm_head's logits, and the contiguous fp32 copy of the shifted logits
  // that cross_entropy reads (logits[:, :-1].contiguous(), upcast).
  loss.root_workspace = dims.tokens * vocab * dims.elem + kLossLogitBytes * predicted * vocab;
  // Backward: nll_loss's gradient of the log-probabilities and log_softmax's of the shifted
  // logits, both fp32. (The zero-padded gradient of all the logits is lm_head's output gradient.)
  loss.root_backward_workspace = 2 * kLossLogitBytes * predicted * vocab;
  return loss;
}

ModuleCost activation_cost(std::int64_t elements, std::int64_t elem,
                           std::int64_t flops_per_element) {
  ModuleCost cost{flops_per_element * elements, elements * elem, elements * elem};
  cost.backward_workspace_bytes = 2 * elements * elem;
  return cost;
}

ModuleCost dropout_cost(std::int64_t elements, double p, std::int64_t elem) {
  const bool active = p > 0.0;
  ModuleCost cost{active ? kDropoutFlops * elements : 0, active ? kDropoutMaskBytes * elements : 0,
                  elements * elem};
  // With p = 0 the input itself is returned: there is no backward.
  if (active) cost.backward_workspace_bytes = 2 * elements * elem;
  return cost;
}

std::int64_t attention_scores(const Dims& dims, const AttentionCore& core) {
  return dims.batch * core.heads * dims.seq * dims.seq;
}

ModuleCost attention_core_cost(const Dims& dims, const AttentionCore& core) {
  const std::int64_t scores = attention_scores(dims, core);
  const std::int64_t q_width = core.heads * core.head_dim;
  const std::int64_t kv_width = core.kv_heads * core.head_dim;
  const bool eager = core.impl == AttentionImpl::kEager;
  const bool dropout = core.dropout > 0.0;

  ModuleCost cost;
  // Q K^T and P V: each a [s, d] x [d, s] (or [s, s] x [s, d]) product per head and sample. Grouped
  // KV heads are shared, not fewer products.
  cost.forward_flops = 2 * 2 * scores * core.head_dim + kScoreFlops * scores;
  // The probability dropout is the module's own work unless an nn.Dropout child runs it (eager).
  if (dropout && !(eager && core.dropout_is_child)) cost.forward_flops += kDropoutFlops * scores;
  if (core.rotary) cost.forward_flops += kRopeFlops * dims.tokens * (q_width + kv_width);

  // Q and K for the score product, V for the weighted sum. The eager path expands grouped K and V
  // to all heads before the products (transformers' repeat_kv), so it keeps them at full width;
  // flash kernels read the grouped heads directly.
  const std::int64_t kept_kv_width = eager ? q_width : kv_width;
  cost.activation_bytes = dims.tokens * (q_width + 2 * kept_kv_width) * dims.elem;
  if (eager) {
    cost.activation_bytes += scores * dims.elem;  // softmax output, for the softmax backward
    // The masked fill keeps its boolean mask of the future, [s, s], broadcast over the heads.
    if (core.causal) cost.activation_bytes += dims.seq * dims.seq;
    if (dropout) {
      cost.activation_bytes += scores * dims.elem;  // dropped-out probabilities, for P V
      if (!core.dropout_is_child) cost.activation_bytes += kDropoutMaskBytes * scores;
    }
  }
  cost.output_bytes = dims.tokens * q_width * dims.elem;
  // Backward. Eager: the gradient of the attention output (the context), the values' gradient
  // made first, and two score-sized gradients (the input and the output of each element-wise
  // step: dropout, softmax, mask, scale); then the gradients of Q, K and V and their concatenation
  // for the fused projection. Flash: the output's gradient and those of Q, K and V.
  const std::int64_t tokens = dims.tokens;
  if (eager) {
    cost.backward_workspace_bytes =
        std::max(2 * tokens * q_width + 2 * scores, 6 * tokens * q_width) * dims.elem;
  } else {
    cost.backward_workspace_bytes = tokens * (2 * q_width + 2 * kv_width) * dims.elem;
  }
  return cost;
}

ModuleCost attention_dropout_cost(const Dims& dims, const AttentionCore& core) {
  if (core.impl != AttentionImpl::kEager) return ModuleCost{};
  return dropout_cost(attention_scores(dims, core), core.dropout, dims.elem);
}

AttentionCore attention_core_of(const ModelConfig& config) {
  const bool rotary =
      config.family == ModelFamily::kLlama || config.family == ModelFamily::kMixtral;
  return AttentionCore{.heads = config.num_heads,
                       .kv_heads = config.kv_heads(),
                       .head_dim = config.head_dim(),
                       .impl = config.attention,
                       .dropout = config.attention_dropout,
                       .dropout_is_child = !rotary,
                       .rotary = rotary,
                       .causal = config.family != ModelFamily::kBert};
}

}  // namespace zp::families
