#include "sim/step/checkpoint_segments.h"

#include <algorithm>

#include "core/checkpoint/checkpointing.h"
#include "core/pipe/layers.h"

namespace zp::sim {
namespace {

// One past the last call nested in `call` (calls are in pre-order).
std::int32_t end_of_call(const ModuleTree& tree, std::int32_t call) {
  const auto& calls = tree.calls();
  std::vector<bool> inside(calls.size(), false);
  inside[static_cast<std::size_t>(call)] = true;
  std::size_t i = static_cast<std::size_t>(call) + 1;
  for (; i < calls.size(); ++i) {
    const std::int32_t parent = calls[i].parent_call;
    if (parent == kNoCall || !inside[static_cast<std::size_t>(parent)]) break;
    inside[i] = true;
  }
  return static_cast<std::int32_t>(i);
}

}  // namespace

CheckpointSegments checkpoint_segments(const RunSpec& run) {
  CheckpointSegments out;
  if (run.training.checkpoint_interval <= 0) return out;
  const pipe::PipelineLayers layers = pipe::layers_from_tree(run.tree);
  ckpt::CheckpointSettings settings =
      ckpt::CheckpointSettings::from(run.deepspeed, run.parallel.tensor);
  settings.interval = run.training.checkpoint_interval;
  // The first layer receives token ids: integers, kept as they are.
  ckpt::LayerActivity input;
  input.output_floating = false;
  input.output_bytes = run.tree.shape().tokens() * dtype_size(DType::kInt64);
  input.output_numel = run.tree.shape().tokens();
  const auto count = static_cast<std::int64_t>(layers.layers.size());
  const ckpt::CheckpointPlan plan =
      ckpt::plan_checkpointing(run.tree, layers, 0, count, input, 1, settings);
  out.contiguous_buffer_bytes = plan.contiguous_buffer_bytes;
  out.contiguous_buffer_on_host = plan.contiguous_buffer_on_host;
  for (const ckpt::Segment& seg : plan.segments) {
    if (!seg.checkpointed) continue;
    std::int32_t first = kNoCall, end = kNoCall;
    std::int64_t head = -1;
    for (std::int64_t l = seg.begin; l < seg.end; ++l) {
      const pipe::Layer& layer = layers.layers[static_cast<std::size_t>(l)];
      if (layer.call == kNoCall) continue;
      if (first == kNoCall) {
        first = layer.call;
        head = l;
      }
      end = end_of_call(run.tree, layer.call);
    }
    if (first == kNoCall) continue;
    const ckpt::LayerCheckpointCost& c = plan.layers[static_cast<std::size_t>(seg.begin)];
    CheckpointSegment s;
    s.first = first;
    s.end = end;
    s.held_bytes = c.held_bytes;
    s.host_bytes = c.host_bytes;
    s.to_host_bytes = c.to_host_bytes;
    s.from_host_bytes = c.from_host_bytes;
    const ckpt::LayerActivity own =
        ckpt::layer_activity(run.tree, layers.layers[static_cast<std::size_t>(head)]);
    s.extra_recompute_bytes = std::max<std::int64_t>(c.recompute_bytes - own.activation_bytes, 0);
    s.allgather_bytes = c.allgather_bytes;
    out.segments.push_back(s);
  }
  return out;
}

}  // namespace zp::sim
