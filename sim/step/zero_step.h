// The data-parallel training step under ZeRO-3, simulated: the core's TrainingLoop (coordinator and
// gradient reducer, exactly as DeepSpeed decides) drives a simulated rank whose streams carry the
// decisions out in time and whose memory accountant books every byte.
//
// The rank, as DeepSpeed runs it on a GPU (docs/simulator.md gives the sources):
//  - Streams: compute; the all-gather stream (gathers, and the torch.cat that splits a coalesced
//    gather into parameters); the reduce stream (gradients copied into the contiguous bucket, the
//    bucket's reduce-scatter or all-reduce, the partitions copied to the host when the optimizer
//    is offloaded), which is the compute stream itself without overlap_comm; host-to-device copies
//    (offloaded parameters); the host thread (an offloaded optimizer's step).
//  - The host issues work when the compute stream reaches it: it does not run ahead of the GPU,
//    so a prefetch starts no earlier than the compute before it ends. It blocks where DeepSpeed
//    synchronises: more than two fetch events or two reduce events outstanding, the end of
//    backward (the reduce stream), the optimizer step.
//  - A module's own forward runs after its children's and before its post-forward release; its
//    backward right after its pre-backward fetch; modules below a z3 leaf, which have no hooks,
//    run with their hooked ancestor.
//  - Memory: parameter partitions, master weights, optimizer states and gradient partitions for
//    good (on the host when offloaded); a single-parameter gather holds its padded buffer until
//    the release; a coalesced gather holds its flat buffer until the handle is dropped
//    (CoordinatorBackend::drop_gather) and each parameter its own copy from the wait to the
//    release; each call's saved activations from its forward to its backward; each gradient from
//    its backward until it is copied into the contiguous bucket or, if it does not fit, until its
//    bucket is reduced; the contiguous bucket for good; a reduce-scatter's flat input and output
//    while it is issued.
//  - Activation checkpointing (training.checkpoint_interval): a checkpointed segment's first
//    forward keeps only its input (as the core's plan says: partitioned, on the host, or whole);
//    when backward reaches it, the input comes back and the segment's forward runs again, its
//    hooks firing as DeepSpeed's do (core/zero/hook_schedule.h), its activations held as
//    recompute memory until each call's backward.
//  - Tensor parallelism (docs/tensor-parallelism.md): the rank runs its Megatron-style shard of
//    the model, with the tensor group's all-reduces blocking the compute stream.
// Not modelled yet (UserError kUnsupported): ZeRO stages 0-2 without a pipeline.
#pragma once

#include "core/config/run_spec.h"
#include "core/trace/trace.h"
#include "sim/step/sim_options.h"
#include "sim/step/step_result.h"

namespace zp::sim {

// `trace` may be null. Throws UserError for runs it cannot simulate.
SimulationResult simulate_zero3(const RunSpec& run, const SimOptions& options, trace::Trace* trace);

}  // namespace zp::sim
