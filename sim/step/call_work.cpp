#include "sim/step/call_work.h"

#include <algorithm>

#include "core/util/error.h"
#include "sim/hardware/kernel_counts.h"
#include "sim/step/sim_cache.h"

namespace zp::sim {

CheckpointWork checkpoint_work(const RunSpec& run, SimCache* cache) {
  CheckpointWork out;
  const CheckpointSegments segments =
      cache ? cache->checkpoint_segments(run) : checkpoint_segments(run);
  for (const CheckpointSegment& s : segments.segments) {
    out.ranges.push_back({s.first, s.end});
    out.segments.emplace(s.first, s);
  }
  return out;
}

std::vector<CallWork> call_work(const zero::ZeroModel& model, const ComputeModel& compute,
                                const CheckpointWork& checkpoints,
                                const TensorParallelModel* tensor, const CollectiveModel* network,
                                const GroupShape& tensor_shape) {
  const ModuleTree& tree = model.tree();
  const auto& calls = tree.calls();
  std::vector<CallWork> work(calls.size());
  for (const zero::RecomputeRange& r : checkpoints.ranges) {
    for (std::int32_t c = r.first_call; c < r.end_call; ++c)
      work[static_cast<std::size_t>(c)].checkpointed = true;
  }
  std::vector<std::int32_t> owner(calls.size(), kNoCall);
  for (std::size_t c = 0; c < calls.size(); ++c) {
    const ForwardCall& call = calls[c];
    if (model.is_hooked(call.module) || call.parent_call == kNoCall) {
      owner[c] = static_cast<std::int32_t>(c);
    } else {
      owner[c] = owner[static_cast<std::size_t>(call.parent_call)];
    }
    const Module& m = tree.module(call.module);
    CallWork& w = work[static_cast<std::size_t>(owner[c])];
    w.forward_flops += m.cost.forward_flops;
    w.backward_flops += m.cost.backward_or_default();
    w.activation_bytes += m.cost.activation_bytes;
    w.workspace_bytes = std::max(w.workspace_bytes, m.cost.workspace_bytes);
    w.backward_workspace_bytes =
        std::max(w.backward_workspace_bytes, m.cost.backward_workspace_bytes);
    w.backward_held_bytes += m.cost.backward_held_bytes;
    if (owner[c] == static_cast<std::int32_t>(c))
      w.input_grad_bytes =
          std::max<std::int64_t>(m.cost.backward_workspace_bytes - m.cost.output_bytes, 0);
    // The model has each parameter's size at hand (the tree would count it from the shape).
    std::int64_t param_bytes = 0;
    for (const ParamSlot& s : m.params) {
      const zero::ZeroParam& zp = model.param(s.param);
      param_bytes += zp.numel * dtype_size(zp.dtype);
      if (zp.requires_grad && std::find(w.grads.begin(), w.grads.end(), s.param) == w.grads.end())
        w.grads.push_back(s.param);
    }
    const ModuleTimes times =
        compute.module_call(m.cost, param_bytes, module_kernels(tree, call.module), m.type);
    w.forward_ns += times.forward;
    w.backward_ns += times.backward;
    if (tensor) {
      const ModuleCollectives& mc = tensor->collectives[static_cast<std::size_t>(call.module)];
      const auto add = [&](const TensorCollective& t, std::vector<TensorAllReduce>& out) {
        ZP_CHECK(t.kind == TensorCollectiveKind::kAllReduce, "only all-reduces are costed");
        const TimeNs time = network->cost(CollectiveKind::kAllReduce, tensor_shape, t.bytes).time;
        out.push_back({t.bytes, time, call.module});
      };
      for (const TensorCollective& t : mc.forward)
        add(t, w.forward_tensor);
      for (const TensorCollective& t : mc.backward)
        add(t, w.backward_tensor);
    }
  }
  return work;
}

}  // namespace zp::sim
