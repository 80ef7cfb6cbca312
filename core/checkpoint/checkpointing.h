// Activation checkpointing as DeepSpeed does it (runtime/activation_checkpointing/checkpointing.py
// and PipelineModule.forward): what each checkpointed segment keeps from forward to backward, what
// its recomputation needs during backward, what moves to and from the host, and what it costs in
// extra forward FLOPs.
//
// Rules:
//  - A stage's layers are cut into segments of `interval` layers, counted from the stage's first
//    layer; interval 0 turns checkpointing off.
//  - A segment is checkpointed when one of its layers has parameters, or, if checkpointable_layers
//    is given, when all its layers' types are listed there.
//  - A checkpointed segment keeps only its inputs (the previous layer's output). A floating input
//    with at least as many elements as the tensor-parallel group is "an activation to checkpoint":
//    with partition_activations it keeps only its 1/tp slice (the size must divide by tp, or
//    DeepSpeed fails), with cpu_checkpointing that slice (or the whole input) lives in host memory,
//    with contiguous_memory_optimization the slices go into preallocated buffers of
//    number_checkpoints slots per input (which must hold every checkpoint taken before the next
//    backward, or DeepSpeed fails). Integer inputs (token ids) are kept as they are.
//  - In backward the segment gathers its inputs back (an all-gather across the tensor-parallel
//    group when partitioned, a host-to-device copy when on the host) and runs its forward again
//    with the RNG state of the first run, so the recomputation is bit-identical; that segment's
//    activations live only until its backward ends.
//  - Segments that are not checkpointed keep their activations as usual.
// Pure functions of their inputs.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/config/ds_config.h"
#include "core/model/module_tree.h"
#include "core/pipe/layers.h"

namespace zp::ckpt {

struct CheckpointSettings {
  std::int64_t interval = 0;  // layers per checkpointed segment; 0: no checkpointing
  bool partition_activations = false;
  bool cpu_checkpointing = false;
  bool contiguous_memory_optimization = false;
  std::optional<std::int64_t> number_checkpoints;
  std::int64_t tensor_parallel_size = 1;  // the group activations are partitioned over
  std::optional<std::vector<std::string>> checkpointable_layers;

  static CheckpointSettings from(const DeepSpeedConfig& config, std::int64_t tensor_parallel_size);
  bool operator==(const CheckpointSettings&) const = default;
};

// What one layer costs per micro-batch, from the model tree.
struct LayerActivity {
  std::int64_t forward_flops = 0;     // every call inside the layer
  std::int64_t activation_bytes = 0;  // saved for backward by every call inside the layer
  std::int64_t output_bytes = 0;      // what the layer returns: the next layer's input
  std::int64_t output_numel = 0;
  bool output_floating = true;
};

// Per layer and per micro-batch.
struct LayerCheckpointCost {
  std::int64_t held_bytes = 0;       // device memory from its forward to its backward
  std::int64_t recompute_bytes = 0;  // device memory during its segment's backward only
  std::int64_t host_bytes = 0;       // host memory from forward to backward
  std::int64_t to_host_bytes = 0;    // device -> host in forward
  std::int64_t from_host_bytes = 0;  // host -> device in backward
  std::int64_t allgather_bytes = 0;  // what this rank receives gathering partitioned inputs
  std::int64_t extra_forward_flops = 0;
  bool checkpointed = false;
};

struct Segment {
  std::int64_t begin = 0, end = 0;  // layer indices, [begin, end)
  bool checkpointed = false;
};

struct CheckpointPlan {
  std::vector<Segment> segments;
  std::vector<LayerCheckpointCost> layers;  // for the stage's layers, in order
  // contiguous_memory_optimization's buffers, allocated at the first checkpoint and kept until
  // the next backward: number_checkpoints slots of the input's partition (DeepSpeed sizes the slots
  // by the first checkpoint's input; this takes the largest, the same for a stack of equal blocks).
  std::int64_t contiguous_buffer_bytes = 0;
  bool contiguous_buffer_on_host = false;
};

LayerActivity layer_activity(const ModuleTree& tree, const pipe::Layer& layer);

// The plan for the stage holding layers [begin, end) of `layers`. `input` describes what the
// stage's first layer receives (the micro-batch, or the previous stage's activation);
// `checkpoints_before_backward` is how many micro-batches run forward before the first backward
// (1 without a pipeline; the in-flight count with one), which decides how many contiguous slots
// are needed. Throws UserError where DeepSpeed would fail.
CheckpointPlan plan_checkpointing(const ModuleTree& tree, const pipe::PipelineLayers& layers,
                                  std::int64_t begin, std::int64_t end, const LayerActivity& input,
                                  std::int64_t checkpoints_before_backward,
                                  const CheckpointSettings& settings);

}  // namespace zp::ckpt
