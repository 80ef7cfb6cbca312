#include "core/model/families/transformer.h"

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
  return cost;
}

ModuleCost embedding_cost(std::int64_t rows, std::int64_t dim, std::int64_t elem) {
  // A lookup: no arithmetic; backward needs only the integer ids, which Korthikanti et al. leave
  // out (8 bytes per token against thousands per hidden state).
  return ModuleCost{0, 0, rows * dim * elem};
}

ModuleCost norm_cost(std::int64_t rows, std::int64_t dim, std::int64_t elem,
                     std::int64_t flops_per_element) {
  const std::int64_t elements = rows * dim;
  return ModuleCost{flops_per_element * elements, elements * elem, elements * elem};
}

ModuleCost activation_cost(std::int64_t elements, std::int64_t elem,
                           std::int64_t flops_per_element) {
  return ModuleCost{flops_per_element * elements, elements * elem, elements * elem};
}

ModuleCost dropout_cost(std::int64_t elements, double p, std::int64_t elem) {
  const bool active = p > 0.0;
  return ModuleCost{active ? kDropoutFlops * elements : 0,
                    active ? kDropoutMaskBytes * elements : 0, elements * elem};
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
    if (dropout) {
      cost.activation_bytes += scores * dims.elem;  // dropped-out probabilities, for P V
      if (!core.dropout_is_child) cost.activation_bytes += kDropoutMaskBytes * scores;
    }
  }
  cost.output_bytes = dims.tokens * q_width * dims.elem;
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
                       .rotary = rotary};
}

}  // namespace zp::families
