#include "core/checkpoint/checkpointing.h"

#include <algorithm>

#include "core/util/error.h"

namespace zp::ckpt {

CheckpointSettings CheckpointSettings::from(const DeepSpeedConfig& config,
                                            std::int64_t tensor_parallel_size) {
  CheckpointSettings s;
  s.interval = config.pipeline.activation_checkpoint_interval;
  s.partition_activations = config.activation_checkpointing.partition_activations;
  s.cpu_checkpointing = config.activation_checkpointing.cpu_checkpointing;
  s.contiguous_memory_optimization = config.activation_checkpointing.contiguous_memory_optimization;
  s.number_checkpoints = config.activation_checkpointing.number_checkpoints;
  s.tensor_parallel_size = tensor_parallel_size;
  return s;
}

LayerActivity layer_activity(const ModuleTree& tree, const pipe::Layer& layer) {
  LayerActivity a;
  if (layer.call == kNoCall) return a;
  const auto& calls = tree.calls();
  // Calls inside the layer: the layer's call and every call nested in it, which follow it.
  std::vector<bool> inside(calls.size(), false);
  inside[static_cast<size_t>(layer.call)] = true;
  for (size_t i = static_cast<size_t>(layer.call); i < calls.size(); ++i) {
    if (i != static_cast<size_t>(layer.call)) {
      if (calls[i].parent_call == kNoCall || !inside[static_cast<size_t>(calls[i].parent_call)])
        break;
      inside[i] = true;
    }
    const ModuleCost& c = tree.module(calls[i].module).cost;
    a.forward_flops += c.forward_flops;
    a.activation_bytes += c.activation_bytes;
  }
  const ModuleCost& own = tree.module(layer.module).cost;
  a.output_bytes = own.output_bytes;
  const int elem = dtype_size(tree.shape().dtype);
  a.output_numel = own.output_bytes / elem;
  a.output_floating = true;
  return a;
}

CheckpointPlan plan_checkpointing(const ModuleTree& tree, const pipe::PipelineLayers& layers,
                                  std::int64_t begin, std::int64_t end, const LayerActivity& input,
                                  std::int64_t checkpoints_before_backward,
                                  const CheckpointSettings& s) {
  ZP_CHECK(begin >= 0 && begin <= end && end <= static_cast<std::int64_t>(layers.layers.size()),
           "layer range [", begin, ", ", end, ")");
  ZP_CHECK(s.tensor_parallel_size >= 1, "tensor parallel size ", s.tensor_parallel_size);
  CheckpointPlan plan;
  const std::int64_t count = end - begin;
  std::vector<LayerActivity> activity;
  for (std::int64_t i = begin; i < end; ++i)
    activity.push_back(layer_activity(tree, layers.layers[static_cast<size_t>(i)]));
  plan.layers.resize(static_cast<size_t>(count));

  if (s.interval <= 0) {
    plan.segments.push_back({begin, end, false});
    for (std::int64_t i = 0; i < count; ++i)
      plan.layers[static_cast<size_t>(i)].held_bytes =
          activity[static_cast<size_t>(i)].activation_bytes;
    return plan;
  }

  const std::int64_t tp = s.tensor_parallel_size;
  std::int64_t checkpointed_segments = 0;
  std::int64_t largest_partition_bytes = 0;
  for (std::int64_t first = 0; first < count; first += s.interval) {
    const std::int64_t last = std::min(first + s.interval, count);
    bool checkpointable = false;
    if (s.checkpointable_layers) {
      checkpointable = std::all_of(layers.layers.begin() + begin + first,
                                   layers.layers.begin() + begin + last, [&](const pipe::Layer& l) {
                                     return std::find(s.checkpointable_layers->begin(),
                                                      s.checkpointable_layers->end(),
                                                      l.type) != s.checkpointable_layers->end();
                                   });
    } else {
      checkpointable =
          std::any_of(layers.layers.begin() + begin + first, layers.layers.begin() + begin + last,
                      [](const pipe::Layer& l) { return l.parameter_numel > 0; });
    }
    plan.segments.push_back({begin + first, begin + last, checkpointable});
    if (!checkpointable) {
      for (std::int64_t i = first; i < last; ++i)
        plan.layers[static_cast<size_t>(i)].held_bytes =
            activity[static_cast<size_t>(i)].activation_bytes;
      continue;
    }
    ++checkpointed_segments;
    // The segment's input: the stage's input, or the previous layer's output.
    const LayerActivity& in = first == 0 ? input : activity[static_cast<size_t>(first - 1)];
    const bool to_checkpoint = in.output_floating && in.output_numel >= tp;
    std::int64_t kept = in.output_bytes;
    std::int64_t gathered = 0;
    if (to_checkpoint && s.partition_activations) {
      if (in.output_numel % tp != 0) {
        const pipe::Layer& l = layers.layers[static_cast<size_t>(begin + first)];
        throw UserError(ErrorKind::kUnsupported, {},
                        "partition_activations: the input of checkpointed segment '" + l.name +
                            "' has " + std::to_string(in.output_numel) +
                            " elements, not divisible by the tensor-parallel size " +
                            std::to_string(tp) + "; DeepSpeed fails on that");
      }
      kept = in.output_bytes / tp;
      // Backward gathers the other slices into a full tensor.
      gathered = in.output_bytes - kept;
      largest_partition_bytes = std::max(largest_partition_bytes, kept);
    }
    LayerCheckpointCost& head = plan.layers[static_cast<size_t>(first)];
    // Partitions in the contiguous slots are accounted once, as the buffer below.
    const bool pooled =
        to_checkpoint && s.partition_activations && s.contiguous_memory_optimization;
    if (to_checkpoint && s.cpu_checkpointing) {
      head.to_host_bytes = kept;
      head.from_host_bytes = kept;
      if (!pooled) head.host_bytes = kept;
    } else if (!pooled) {
      head.held_bytes = kept;
    }
    head.allgather_bytes = gathered;
    // During the segment's backward: the input back in full, and every activation the
    // recomputation saves.
    std::int64_t recompute =
        (to_checkpoint && (s.partition_activations || s.cpu_checkpointing)) ? in.output_bytes : 0;
    for (std::int64_t i = first; i < last; ++i) {
      LayerCheckpointCost& c = plan.layers[static_cast<size_t>(i)];
      c.checkpointed = true;
      c.extra_forward_flops = activity[static_cast<size_t>(i)].forward_flops;
      c.recompute_bytes = activity[static_cast<size_t>(i)].activation_bytes;
    }
    head.recompute_bytes += recompute;
  }

  if (s.partition_activations && s.contiguous_memory_optimization && checkpointed_segments > 0) {
    ZP_CHECK(s.number_checkpoints.has_value(),
             "contiguous checkpointing without number_checkpoints");
    const std::int64_t needed =
        checkpointed_segments * std::max<std::int64_t>(1, checkpoints_before_backward);
    if (*s.number_checkpoints < needed) {
      throw UserError(ErrorKind::kValue, {},
                      "activation_checkpointing.number_checkpoints is " +
                          std::to_string(*s.number_checkpoints) + ", but " +
                          std::to_string(needed) +
                          " checkpoints are taken before the first backward (" +
                          std::to_string(checkpointed_segments) + " per micro-batch x " +
                          std::to_string(std::max<std::int64_t>(1, checkpoints_before_backward)) +
                          " micro-batches); DeepSpeed runs out of contiguous slots");
    }
    plan.contiguous_buffer_bytes = *s.number_checkpoints * largest_partition_bytes;
    plan.contiguous_buffer_on_host = s.cpu_checkpointing;
  }
  return plan;
}

}  // namespace zp::ckpt
