// ZeRO-3 for real: an LmModel trained with its parameters partitioned over a data-parallel group,
// the core's Coordinator deciding every gather and release and the core's GradientReducer every
// gradient bucket, as DeepSpeed's stage 3 engine does.
//
//  - Each parameter lives as this rank's partition of its padded flat form (core/zero/partition);
//    the module's tensor holds an empty storage until the coordinator gathers it. Gathers are
//    coalesced all-gathers into one flat buffer (the gather's), each parameter then assembled from
//    its slices; the buffer is freed when the coordinator drops the gather.
//  - Hooks, through LmModel's ModuleHooks, in DeepSpeed's order: pre-forward fetches, the inputs
//    wrapped in a function whose backward counts down to the module's post-backward, post-forward
//    releases, the outputs wrapped in a function whose backward runs the pre-backward fetch.
//  - Gradients: a post-hook on each parameter's gradient accumulator hands the gradient to the
//    reducer as soon as autograd has it (a z3 leaf's at its post-backward, in id order); buckets
//    are averaged over the group and reduce-scattered (or all-reduced from the contiguous buffer,
//    as the reducer says) into fp32 gradient partitions, accumulated over micro-steps.
//  - The optimizer (torch::optim's SGD or AdamW) steps on an fp32 master copy of the partitions,
//    which is then copied back; persistent parameters are gathered again after the step.
//  - Activation checkpointing is LmModel's; its recomputation fires the hooks again.
//
// Every allocation the engine makes is charged to its memory category (exec/memory's scopes),
// and named as the simulator names its blocks (a parameter, "gather N", "bucket N", the module
// running; record_into turns the module names on).
//
// Every rank of the group must call the same methods in the same order. Not thread-safe.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "core/trace/trace.h"
#include "core/zero/coordinator.h"
#include "core/zero/zero_model.h"
#include "exec/comm/communicator.h"
#include "exec/model/lm_model.h"
#include "exec/train/reference_trainer.h"

namespace zp::exec {

struct Zero3Options {
  OptimizerSpec optimizer;
  // Waits for the device's queued work; called at each hook's entry and exit so that the time
  // between hooks is the device's compute, not its launch (CUDA). Empty on the CPU.
  std::function<void()> synchronize = {};
};

// What the engine did in one step, for reports and tests. Times are wall-clock nanoseconds.
struct Zero3StepStats {
  double loss = 0.0;  // mean over this rank's micro-batches
  std::int64_t gathers = 0;
  std::int64_t gathered_numel = 0;
  std::int64_t releases = 0;
  std::int64_t buckets = 0;
  std::int64_t reduced_numel = 0;
  std::int64_t step_ns = 0;
  // Between hooks: the model's own forward, backward and recomputation.
  std::int64_t compute_ns = 0;
  // Inside hooks: the coordinator and reducer deciding, assembling gathered parameters, packing
  // buckets, and waiting for collectives (comm_wait_ns of it).
  std::int64_t hook_ns = 0;
  std::int64_t comm_wait_ns = 0;
  std::int64_t optimizer_ns = 0;
  // The engine's own overhead: hook time that is not waiting for communication.
  std::int64_t overhead_ns() const { return hook_ns - comm_wait_ns; }
};

class Zero3Engine {
 public:
  // `model` must hold the same initial values on every rank (LmModel's seeded initialisation);
  // the engine keeps this rank's partitions and frees the rest. `zero_model` must be built from
  // model.tree() with data_parallel_size = group.size(). Both must outlive the engine.
  Zero3Engine(LmModel& model, const zero::ZeroModel& zero_model, comm::Communicator& group,
              const Zero3Options& options);
  ~Zero3Engine();
  Zero3Engine(const Zero3Engine&) = delete;
  Zero3Engine& operator=(const Zero3Engine&) = delete;

  // One optimizer step over this rank's micro-batches (gradient accumulation over all of them).
  Zero3StepStats step(const std::vector<TokenBatch>& micro_batches);

  // Parameter p's full value, gathered from the group (a collective: every rank calls it).
  std::vector<float> gathered_parameter(ParamId p);

  // Records the compute stream into `trace` as rank `rank` (an index into trace->ranks), times
  // relative to the wall-clock `origin_ns`: one op per interval between hooks, named after the
  // module running then (forward, backward or recompute), a release op per parameter released
  // (named after the parameter, with its module), and a marker at each step's start. Collectives
  // and memory are the caller's to add (their logs have them; the communicator's log names each
  // parameter gather's module and parameters). nullptr: stop.
  void record_into(trace::Trace* trace, std::int32_t rank, std::int64_t origin_ns);

  const zero::Coordinator& coordinator() const;
  // Every coordinator decision and hook so far, one line each ("pre_forward 3", "gather 2 [5 7]
  // prefetch", "release 5"), for comparing with the simulator's decisions.
  const std::vector<std::string>& decision_log() const;
  void set_decision_logging(bool on);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace zp::exec
