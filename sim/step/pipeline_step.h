// The pipeline-parallel training step, simulated: DeepSpeed's PipelineEngine (ZeRO stage 0 or 1)
// running the core's TrainSchedule on every stage, with the core's partition, topology and
// activation checkpointing. docs/pipeline-simulation.md gives every rule with its DeepSpeed source.
//
// The model:
//  - Stages: the layers (core/pipe/layers.h) are partitioned with pipeline.partition over
//    parallel.pipeline stages. One simulated rank class per stage stands for the stage's data- and
//    tensor-parallel peers when they are placed alike (same link classes to their neighbours and
//    same group shapes); otherwise, or with SimOptions::all_ranks, every rank is simulated.
//  - Each class runs its stage's instruction stream in order as a process of the discrete-event
//    engine; everything it does is on the compute stream (DeepSpeed turns overlap_comm off with a
//    pipeline). A point-to-point transfer, and every collective with another process, starts when
//    all its parties have reached it and keeps them all busy until it ends (blocking NCCL send and
//    receive); waiting for the others is bubble.
//  - Optimizer wrapper as DeepSpeed picks it: none (fp32, stage 0), FP16_Optimizer (fp16, stage
//    0), BF16_Optimizer (bf16 with fp32 gradient accumulation, the bf16 default without ZeRO),
//    DeepSpeedZeroOptimizer (stage 1 otherwise). The last two keep fp32 master weights and
//    optimizer states for this rank's partition of a flat buffer padded to a multiple of
//    2 x data-parallel size, and all-gather the updated parameters after the step.
//  - Memory: parameters, master weights, optimizer states for good; gradients as each wrapper
//    keeps them; per pipeline buffer the stage's input (loaded or received) and output, the
//    activations checkpointing keeps, recompute transients, the receive buffers once used.
//  - Time: roofline per forward call, summed over the calls inside the stage's layers;
//    collectives and send/recv from the network model. A step ends with the loss broadcast from
//    the last stage, which every stage joins.
// Report: per class the peak with its breakdown and what ran then, transfers, compute, exposed
// communication, bubble (step time minus compute minus communication), model FLOPs; the step time
// is the slowest class's. MemorySnapshot::running is, during a layer's pass, the layer's index in
// the pipeline's layer list for its forward, plus L (the number of layers) for its backward and
// 2L for its recomputation; outside passes one of the negative codes below or kRunningOptimizer.
//
// Errors (UserError): ZeRO stage 2 or 3, pipeline.stages other than parallel.pipeline, an
// offloaded optimizer, a dtype mix DeepSpeed rejects; the partition's and checkpointing's own.
#pragma once

#include <cstdint>

#include "core/config/run_spec.h"
#include "core/trace/trace.h"
#include "sim/step/sim_options.h"
#include "sim/step/step_result.h"

namespace zp::sim {

// MemorySnapshot::running outside a layer's pass, besides kRunningOptimizer.
inline constexpr std::int32_t kRunningLoadMicroBatch = -10;
inline constexpr std::int32_t kRunningRecvActivation = -11;
inline constexpr std::int32_t kRunningSendActivation = -12;
inline constexpr std::int32_t kRunningRecvGrad = -13;
inline constexpr std::int32_t kRunningSendGrad = -14;
inline constexpr std::int32_t kRunningReduceTiedGrads = -15;
inline constexpr std::int32_t kRunningReduceGrads = -16;
inline constexpr std::int32_t kRunningLoss = -17;

// `trace` may be null. Throws UserError for runs it cannot simulate.
SimulationResult simulate_pipeline(const RunSpec& run, const SimOptions& options,
                                   trace::Trace* trace);

}  // namespace zp::sim
