// The data-parallel training step under ZeRO stages 0, 1 and 2, simulated: DeepSpeed's ordinary
// engine (DeepSpeedEngine, no PipelineModule) with the optimizer wrapper it picks, on every rank of
// the data-parallel group. docs/data-parallel-simulation.md gives every rule with its DeepSpeed
// source.
//
// The model:
//  - Wrapper (sim/step/optimizer_wrappers.h): none (fp32, stage 0), FP16_Optimizer (fp16, stage
//    0), BF16_Optimizer (bf16 accumulating in fp32: stage 0, or stage 1 on the GPU with
//    data_types.grad_accum_dtype fp32), DeepSpeedZeroOptimizer otherwise (stages 1 and 2).
//  - Model states: the 16-bit parameters (the partitioning wrappers keep them in one flat buffer
//    padded to a multiple of 2 x dp), fp32 master weights and optimizer states for the whole model
//    (stage 0) or this rank's 1/dp of the flat buffer, on the host with offload_optimizer.
//  - The step: per micro-batch the forward calls in order and their backward in reverse, each
//    call's own cost from the compute model; training.checkpoint_interval segments as the core
//    plans them (the input kept, the segment recomputed when backward reaches it). A parameter's
//    gradient appears at the backward of the first call that uses it.
//  - DeepSpeedZeroOptimizer: gradients go into the ipg bucket (copied into the contiguous buffer
//    with contiguous_gradients), which is reduced when the next gradient would overflow
//    reduce_bucket_size: during backward for stage 2 every micro-batch, and for stage 1 with
//    overlap_comm at the accumulation boundary; for stage 1 without overlap_comm after the
//    boundary's backward, in the flat buffer's order. Reductions run on their own stream with
//    overlap_comm (the compute stream waits for the previous bucket before the next is issued),
//    on the compute stream otherwise. After the step the flat buffer is all-gathered whole
//    (all_gather_into_tensor).
//  - Stage 0: gradients are all-reduced after the boundary's backward
//    (buffered_allreduce_fallback), in 500M-element buckets.
// Ranks differ only in which parameters touch their partition (grads_in_partition's size): one
// class stands for all ranks, simulated as the rank holding the most; SimOptions::all_ranks
// simulates each.
// MemorySnapshot::running is, for call c of C, c in its forward, C + c in its backward, 2C + c in
// its recomputation; outside calls one of the codes below or kRunningOptimizer.
//
// Errors (UserError): tensor parallelism, stage 1 accumulating in another dtype than the model's
// outside BF16_Optimizer, use_multi_rank_bucket_allreduce false (reductions to one rank are not
// modelled), an odd allgather_bucket_size (DeepSpeed asserts), a dtype mix DeepSpeed refuses.
#pragma once

#include <cstdint>

#include "core/config/run_spec.h"
#include "core/trace/trace.h"
#include "sim/step/sim_options.h"
#include "sim/step/step_result.h"

namespace zp::sim {

inline constexpr std::int32_t kRunningReduceGradients = -20;   // reductions after backward
inline constexpr std::int32_t kRunningGatherParameters = -21;  // all-gather after the step

// `trace` may be null. Throws UserError for runs it cannot simulate.
SimulationResult simulate_data_parallel(const RunSpec& run, const SimOptions& options,
                                        trace::Trace* trace);

// What rank `dp_index` of the data-parallel group holds of the model states on the GPU while the
// optimizer steps, by what DeepSpeed keeps: the 16-bit parameters (the padded flat buffer for the
// partitioning wrappers), the gradients (stage 0: the whole model's, plus BF16_Optimizer's fp32
// flat buffer or FP16_Optimizer's fp32 copy; stages 1-2: averaged_gradients, i.e. every parameter
// touching the partition in 16 bits, and the fp32 partition cast from them), the fp32 master
// weights and the optimizer states (on the host with offload_optimizer, where `host` counts them).
struct DataParallelModelStates {
  std::int64_t params = 0;
  std::int64_t gradients = 0;
  std::int64_t master = 0;
  std::int64_t optimizer = 0;
  std::int64_t host = 0;
  std::int64_t total() const { return params + gradients + master + optimizer; }
};
DataParallelModelStates data_parallel_model_states(const RunSpec& run, std::int64_t dp_index);

// DeepSpeed's estimate_zero2_model_states_mem_needs (additional_buffer_factor 1.5): per GPU 2
// bytes per parameter plus 18 per parameter over the GPUs (only the 2 with cpu_offload); per node
// 4 x GPUs per node x 1.5 bytes per parameter (with cpu_offload max(4 x all GPUs, 16) x 1.5).
DeepSpeedEstimate deepspeed_zero2_estimate(std::int64_t total_params, std::int64_t gpus_per_node,
                                           std::int64_t nodes, bool cpu_offload);

}  // namespace zp::sim
