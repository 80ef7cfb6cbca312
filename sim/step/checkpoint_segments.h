// Activation checkpointing without a pipeline (training.checkpoint_interval): the model's layers
// cut into segments, each planned by the core as DeepSpeed's checkpoint() keeps it, and mapped to
// the forward calls a segment spans. Shared by the data-parallel step simulations.
#pragma once

#include <cstdint>
#include <vector>

#include "core/checkpoint/checkpointing.h"
#include "core/config/run_spec.h"

namespace zp::sim {

struct CheckpointSegment {
  std::int32_t first = 0, end = 0;         // forward calls [first, end)
  std::int64_t held_bytes = 0;             // the input kept on the GPU from forward to backward
  std::int64_t host_bytes = 0;             // or on the host (cpu_checkpointing)
  std::int64_t to_host_bytes = 0;          // copied out in forward
  std::int64_t from_host_bytes = 0;        // copied back before the recomputation
  std::int64_t extra_recompute_bytes = 0;  // the input in full again while the segment recomputes
  std::int64_t allgather_bytes = 0;  // received gathering a partitioned input over the tensor group
};

struct CheckpointSegments {
  std::vector<CheckpointSegment> segments;  // checkpointed ones only, in call order
  // contiguous_memory_optimization's buffers (see ckpt::CheckpointPlan).
  std::int64_t contiguous_buffer_bytes = 0;
  bool contiguous_buffer_on_host = false;
};

// Nothing when training.checkpoint_interval is 0. partition_activations splits each kept input
// over the run's tensor-parallel group.
CheckpointSegments checkpoint_segments(const RunSpec& run);
// The checkpointing settings the run's segments follow, and its segments under other ones.
ckpt::CheckpointSettings checkpoint_settings(const RunSpec& run);
CheckpointSegments checkpoint_segments(const RunSpec& run,
                                       const ckpt::CheckpointSettings& settings);

}  // namespace zp::sim
