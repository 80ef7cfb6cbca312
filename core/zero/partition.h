// How ZeRO-3 splits a parameter over the data-parallel group, and which parameters it keeps whole.
//
// Partitioning follows DeepSpeed's partition_parameters.py: a parameter of n elements is padded to
// the next multiple of the group size w and each rank holds padded/w consecutive elements; the
// padding lands on the last ranks. Persistence follows mark_persistent_parameters() in
// parameter_offload.py: in named_parameters() order, a parameter of n elements is kept whole on
// every rank when n <= stage3_param_persistence_threshold, unless adding it would take the total of
// persistent elements past stage3_model_persistence_threshold, in which case it is skipped and the
// scan goes on.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "core/model/module_tree.h"
#include "core/util/error.h"

namespace zp::zero {

struct PartitionShape {
  std::int64_t numel = 0;
  std::int64_t padded_numel = 0;     // a multiple of the group size
  std::int64_t partition_numel = 0;  // per rank

  // Elements of the real parameter (not padding) held by `rank`.
  std::int64_t valid_numel(std::int64_t rank) const;
};

// Inline: ZeroModel calls it for every parameter of every model it builds.
inline PartitionShape partition_shape(std::int64_t numel, std::int64_t group_size) {
  ZP_CHECK(group_size >= 1, "group size ", group_size);
  ZP_CHECK(numel >= 0, "numel ", numel);
  const std::int64_t remainder = numel % group_size;
  const std::int64_t padded = remainder == 0 ? numel : numel + (group_size - remainder);
  return PartitionShape{numel, padded, padded / group_size};
}

// The flat buffer a gather allocates until it has been waited on and split into parameters, as
// partition_parameters.py's all_gather_coalesced sizes it, for parameters already sorted by id:
//  - one parameter: its padded size;
//  - several, with stage3_use_all_reduce_for_fetch_params: one buffer of the padded sizes (all
//    parameters of one dtype);
//  - several otherwise: one buffer per dtype (in order of first appearance), of the sum of the
//    group's partitions times the group size.
// Nothing when the group has one rank (DeepSpeed does not gather then).
struct GatherBuffer {
  DType dtype;
  std::int64_t numel;
  std::int64_t bytes() const { return numel * dtype_size(dtype); }
};
std::vector<GatherBuffer> gather_buffers(const ModuleTree& tree, const std::vector<ParamId>& params,
                                         std::int64_t group_size, bool use_all_reduce);
// The same into `out` (cleared first), for callers that reuse its capacity gather after gather.
void gather_buffers(const ModuleTree& tree, const std::vector<ParamId>& params,
                    std::int64_t group_size, bool use_all_reduce, std::vector<GatherBuffer>& out);

// Parameters in named_parameters() order: depth-first over modules, each parameter at its first
// registration.
std::vector<ParamId> named_parameter_order(const ModuleTree& tree);

// The parameters mark_persistent_parameters() would mark, in named_parameters() order.
std::vector<ParamId> persistent_parameters(const ModuleTree& tree, std::int64_t param_threshold,
                                           std::int64_t model_threshold);
// The same for a caller that already has named_parameter_order(tree) (`order`).
std::vector<ParamId> persistent_parameters(const ModuleTree& tree, std::span<const ParamId> order,
                                           std::int64_t param_threshold,
                                           std::int64_t model_threshold);

}  // namespace zp::zero

namespace zp::zero {

// What ZeRO-3 does to a model's parameters on a data-parallel group, for reports.
struct PartitionSummary {
  std::int64_t group_size = 1;
  std::int64_t parameters = 0;       // parameter tensors
  std::int64_t numel = 0;            // their elements
  std::int64_t padded_numel = 0;     // after padding each to a multiple of the group size
  std::int64_t partition_numel = 0;  // held by each rank: padded_numel / group_size
  std::int64_t persistent_parameters = 0;
  std::int64_t persistent_numel = 0;  // kept whole on every rank as well
};

PartitionSummary summarize_partitioning(const ModuleTree& tree, std::int64_t group_size,
                                        std::int64_t param_threshold, std::int64_t model_threshold);

}  // namespace zp::zero
