#include "core/zero/partition.h"

#include <algorithm>

#include "core/util/error.h"

namespace zp::zero {

std::int64_t PartitionShape::valid_numel(std::int64_t rank) const {
  return std::clamp<std::int64_t>(numel - rank * partition_numel, 0, partition_numel);
}

std::vector<GatherBuffer> gather_buffers(const ModuleTree& tree, const std::vector<ParamId>& params,
                                         std::int64_t group_size, bool use_all_reduce) {
  std::vector<GatherBuffer> out;
  gather_buffers(tree, params, group_size, use_all_reduce, out);
  return out;
}

void gather_buffers(const ModuleTree& tree, const std::vector<ParamId>& params,
                    std::int64_t group_size, bool use_all_reduce, std::vector<GatherBuffer>& out) {
  out.clear();
  if (group_size == 1 || params.empty()) return;
  if (params.size() == 1) {
    const Parameter& p = tree.parameter(params[0]);
    out.push_back({p.dtype, partition_shape(p.numel(), group_size).padded_numel});
    return;
  }
  if (use_all_reduce) {
    std::int64_t numel = 0;
    for (ParamId id : params)
      numel += partition_shape(tree.parameter(id).numel(), group_size).padded_numel;
    out.push_back({tree.parameter(params[0]).dtype, numel});
    return;
  }
  for (ParamId id : params) {
    const Parameter& p = tree.parameter(id);
    auto it = std::find_if(out.begin(), out.end(),
                           [&](const GatherBuffer& b) { return b.dtype == p.dtype; });
    if (it == out.end()) it = out.insert(out.end(), GatherBuffer{p.dtype, 0});
    it->numel += partition_shape(p.numel(), group_size).partition_numel * group_size;
  }
}

std::vector<ParamId> named_parameter_order(const ModuleTree& tree) {
  std::vector<ParamId> order;
  std::vector<bool> seen(tree.parameters().size(), false);
  for (ModuleId m : tree.preorder()) {
    for (const ParamSlot& slot : tree.module(m).params) {
      if (!seen[static_cast<size_t>(slot.param)]) {
        seen[static_cast<size_t>(slot.param)] = true;
        order.push_back(slot.param);
      }
    }
  }
  return order;
}

std::vector<ParamId> persistent_parameters(const ModuleTree& tree, std::int64_t param_threshold,
                                           std::int64_t model_threshold) {
  return persistent_parameters(tree, named_parameter_order(tree), param_threshold, model_threshold);
}

std::vector<ParamId> persistent_parameters(const ModuleTree& tree, std::span<const ParamId> order,
                                           std::int64_t param_threshold,
                                           std::int64_t model_threshold) {
  std::vector<ParamId> persistent;
  std::int64_t total = 0;
  for (ParamId id : order) {
    const std::int64_t n = tree.parameter(id).numel();
    // Compared as DeepSpeed does; written to avoid overflow near INT64_MAX (sys.maxsize).
    if (n > model_threshold - total) continue;
    if (n <= param_threshold) {
      persistent.push_back(id);
      total += n;
    }
  }
  return persistent;
}

}  // namespace zp::zero

namespace zp::zero {

PartitionSummary summarize_partitioning(const ModuleTree& tree, std::int64_t group_size,
                                        std::int64_t param_threshold,
                                        std::int64_t model_threshold) {
  PartitionSummary s;
  s.group_size = group_size;
  for (const Parameter& p : tree.parameters()) {
    const PartitionShape shape = partition_shape(p.numel(), group_size);
    ++s.parameters;
    s.numel += shape.numel;
    s.padded_numel += shape.padded_numel;
    s.partition_numel += shape.partition_numel;
  }
  for (ParamId id : persistent_parameters(tree, param_threshold, model_threshold)) {
    ++s.persistent_parameters;
    s.persistent_numel += tree.parameter(id).numel();
  }
  return s;
}

}  // namespace zp::zero
