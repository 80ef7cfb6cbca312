#include "sim/step/checkpoint_segments.h"

#include <algorithm>
#include <string>
#include <utility>

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

namespace {

ckpt::CheckpointSettings settings_of(const RunSpec& run) {
  ckpt::CheckpointSettings settings =
      ckpt::CheckpointSettings::from(run.deepspeed, run.parallel.tensor);
  settings.interval = run.training.checkpoint_interval;
  return settings;
}

// A block: a layer that is an item of a container (GPT-2's `h.3`, Llama's `layers.3`), what a
// training script wraps in checkpoint() (Megatron's transformer layers, Hugging Face's gradient
// checkpointing). The embeddings, the final norm and the head around them run as usual.
bool is_block(const ModuleTree& tree, const pipe::Layer& layer) {
  const ModuleId parent = tree.module(layer.module).parent;
  if (parent == kNoModule) return false;
  const std::string& type = tree.module(parent).type;
  return type == "ModuleList" || type == "Sequential" || type == "ModuleDict";
}

CheckpointSegments segments_for(const RunSpec& run, const ckpt::CheckpointSettings& settings) {
  CheckpointSegments out;
  if (settings.interval <= 0) return out;
  const pipe::PipelineLayers layers = pipe::layers_from_tree(run.tree);
  const auto count = static_cast<std::int64_t>(layers.layers.size());
  // Runs of consecutive blocks, each cut into segments from its first block; a model without
  // containers is one run of all its layers.
  std::vector<std::pair<std::int64_t, std::int64_t>> runs;
  for (std::int64_t l = 0; l < count; ++l) {
    if (!is_block(run.tree, layers.layers[static_cast<std::size_t>(l)])) continue;
    if (!runs.empty() && runs.back().second == l) {
      ++runs.back().second;
    } else {
      runs.emplace_back(l, l + 1);
    }
  }
  if (runs.empty()) runs.emplace_back(0, count);
  for (const auto& [begin, end] : runs) {
    // The first layer receives token ids: integers, kept as they are; a block the previous
    // layer's output.
    ckpt::LayerActivity input;
    if (begin == 0) {
      input.output_floating = false;
      input.output_bytes = run.tree.shape().tokens() * dtype_size(DType::kInt64);
      input.output_numel = run.tree.shape().tokens();
    } else {
      input = ckpt::layer_activity(run.tree, layers.layers[static_cast<std::size_t>(begin - 1)]);
    }
    const ckpt::CheckpointPlan plan =
        ckpt::plan_checkpointing(run.tree, layers, begin, end, input, 1, settings);
    // One buffer of number_checkpoints slots, however many runs use it.
    out.contiguous_buffer_bytes =
        std::max(out.contiguous_buffer_bytes, plan.contiguous_buffer_bytes);
    out.contiguous_buffer_on_host = out.contiguous_buffer_on_host || plan.contiguous_buffer_on_host;
    for (const ckpt::Segment& seg : plan.segments) {
      if (!seg.checkpointed) continue;
      std::int32_t first = kNoCall, last_end = kNoCall;
      std::int64_t head = -1;
      for (std::int64_t l = seg.begin; l < seg.end; ++l) {
        const pipe::Layer& layer = layers.layers[static_cast<std::size_t>(l)];
        if (layer.call == kNoCall) continue;
        if (first == kNoCall) {
          first = layer.call;
          head = l;
        }
        last_end = end_of_call(run.tree, layer.call);
      }
      if (first == kNoCall) continue;
      const ckpt::LayerCheckpointCost& c = plan.layers[static_cast<std::size_t>(seg.begin - begin)];
      CheckpointSegment s;
      s.first = first;
      s.end = last_end;
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
  }
  return out;
}

}  // namespace

CheckpointSegments checkpoint_segments(const RunSpec& run) {
  return checkpoint_segments(run, settings_of(run));
}

ckpt::CheckpointSettings checkpoint_settings(const RunSpec& run) {
  return settings_of(run);
}

CheckpointSegments checkpoint_segments(const RunSpec& run,
                                       const ckpt::CheckpointSettings& settings) {
  return segments_for(run, settings);
}

}  // namespace zp::sim
