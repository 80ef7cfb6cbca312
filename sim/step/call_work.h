// What the ZeRO-3 step's hooked calls cost, worked out once per model and cluster before a rank is
// simulated: each hooked call's compute time, activations and workspaces, with the calls below it
// that have no hooks of their own, and the checkpointed segments around them.
#pragma once

#include <boost/container/small_vector.hpp>
#include <cstdint>
#include <map>
#include <vector>

#include "core/config/run_spec.h"
#include "core/model/tensor_parallel.h"
#include "core/zero/hook_schedule.h"
#include "core/zero/zero_model.h"
#include "sim/hardware/compute_model.h"
#include "sim/network/collectives.h"
#include "sim/step/checkpoint_segments.h"

namespace zp::sim {

class SimCache;

// A tensor-parallel all-reduce that a call issues after its forward or backward work.
struct TensorAllReduce {
  std::int64_t bytes = 0;
  TimeNs time = 0;
  ModuleId module = kNoModule;  // the module that issues it
};

// What one hooked forward call costs, with the calls below it that have no hooks of their own.
struct CallWork {
  TimeNs forward_ns = 0;
  TimeNs backward_ns = 0;
  std::int64_t forward_flops = 0;
  std::int64_t backward_flops = 0;
  std::int64_t activation_bytes = 0;
  // The most any of the calls holds while it runs, beyond what it keeps (ModuleCost); in
  // backward the same, and what the calls hold until the backward inside them is done.
  std::int64_t workspace_bytes = 0;
  std::int64_t backward_workspace_bytes = 0;
  std::int64_t backward_held_bytes = 0;
  // Of the hooked call's own backward workspace, what outlives it: the gradient it made for its
  // input (the workspace less the output's gradient), until the next call's backward takes it.
  std::int64_t input_grad_bytes = 0;
  bool checkpointed = false;  // inside a checkpointed segment: nothing saved in the first forward
  std::vector<TensorAllReduce> forward_tensor, backward_tensor;
  // Trainable parameters of the calls' modules: their backward makes a gradient for each. Most
  // hooked calls have one or two, kept in place: a model's calls are costed on every simulation.
  boost::container::small_vector<ParamId, 4> grads;
};

// What a checkpointed segment does around its calls, keyed by the segment's first call.
using SegmentWork = CheckpointSegment;

struct CheckpointWork {
  std::vector<zero::RecomputeRange> ranges;
  std::map<std::int32_t, SegmentWork> segments;  // by first call
};

// The run's checkpointed segments (from `cache` if given).
CheckpointWork checkpoint_work(const RunSpec& run, SimCache* cache);

// `tensor`: the tensor-parallel shard the model was built from, with its collectives costed on a
// group of `tensor_shape`; null without tensor parallelism.
std::vector<CallWork> call_work(const zero::ZeroModel& model, const ComputeModel& compute,
                                const CheckpointWork& checkpoints,
                                const TensorParallelModel* tensor = nullptr,
                                const CollectiveModel* network = nullptr,
                                const GroupShape& tensor_shape = {});

}  // namespace zp::sim
