// Pipeline-parallel training: DeepSpeed's PipelineEngine (deepspeed/runtime/pipe/engine.py,
// ZeRO stage 0) for one rank, executing the core's TrainSchedule (core/pipe/schedule.h).
//
// The job is P stages x D pipelines on DeepSpeed's pipe-data topology (rank = stage * D + data).
// A rank holds its stage's layers (partition_layers over the model's pipeline layers): its own
// LmModel whose other parameters are released. Each step runs the stage's instruction stream for
// the step's micro-batches: the first stage loads token ids, the last stage the labels; forwards
// keep each buffer's input and output for backward; activations [micro-batch, seq, hidden] and
// their gradients travel between neighbouring stages of a pipeline; the last stage's backward
// starts from its loss divided by the micro-batch count, as DeepSpeed scales by the gradient
// accumulation steps. At the end, ReduceTiedGrads sums the tied weight's gradient over the stages
// holding a copy (GPT-2's wte on the first stage, lm_head on the last), ReduceGrads averages every
// gradient over the data-parallel group, and each rank steps its own torch optimizer over its
// stage's parameters.
//
// Communication, as DeepSpeed's engine issues it: activations and gradients go to the
// neighbouring stage by blocking send/recv on the world communicator (p2p.send and p2p.recv are
// dist.send and dist.recv on global ranks); the first activation ever sent is preceded by the
// 1024-byte shape message (TENSOR_META_SIZE int32, _send_tensor_meta), from which the receiver
// allocates its receive buffer, kept for good and cloned into the pipeline buffer at each receive;
// the gradient buffer is allocated once too. DeepSpeed's schedule is lock-step: a send and the
// receive it pairs with sit in the same step on the two neighbours, so the blocking calls cannot
// wait on each other. The reductions are real collectives over sub-groups made with a GroupMaker
// (DeepSpeed's process groups): the tied weight's gradient all-reduced over the stages holding it
// (_exec_reduce_tied_grads), every gradient flattened and all-reduced over the data-parallel group
// (buffered_allreduce_fallback), the loss all-reduced over it by the last stage and broadcast from
// there over the pipeline as [this pipeline's loss, the average] (_aggregate_total_loss). A group
// of one rank is not made: its collective moves nothing.
//
// Memory as DeepSpeed holds it: each forward runs on a clone of the buffer's input; the output
// stays in its pipeline buffer until the backward, and on the last stage (the logits) until the
// buffer's next forward, across steps; the first stage's inputs and the last stage's labels stay
// until the buffer's next load; the parameters' gradients are freed after the optimizer step.
//
// Every rank of the world must call step() together. Not thread-safe.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/pipe/partition.h"
#include "core/pipe/schedule.h"
#include "core/pipe/topology.h"
#include "core/trace/trace.h"
#include "exec/comm/communicator.h"
#include "exec/model/lm_model.h"
#include "exec/train/reference_trainer.h"

namespace zp::exec {

struct PipelineOptions {
  int stages = 1;         // P; the data-parallel size D is world / P
  int micro_batches = 1;  // per step and pipeline (DeepSpeed's gradient_accumulation_steps)
  pipe::PartitionMethod partition{};  // DeepSpeed's default, "parameters"
  OptimizerSpec optimizer{};
};

struct PipelineStepStats {
  // The mean loss over the step's micro-batches, averaged over the pipelines: computed on the last
  // stages and sent to every stage, as DeepSpeed's train_batch returns it on every rank.
  double loss = 0.0;
  std::int64_t step_ns = 0;
  std::int64_t comm_wait_ns = 0;  // waiting for receives, sends and reductions
};

class PipelineEngine {
 public:
  // `model` must hold the same initial values on every rank and outlive the engine; the engine
  // releases its parameters outside this rank's stage. `world` is the group of all P x D ranks,
  // its rank the topology's. UserError when P does not divide the world size, P < 1, or the
  // micro-batch count is below 1; partition_layers' errors.
  // `make_group` makes the sub-groups (it may be empty when no group has two ranks: one stage
  // and one pipeline, or a single stage per pipeline without tied weights).
  PipelineEngine(LmModel& model, comm::Communicator& world, const PipelineOptions& options,
                 const comm::GroupMaker& make_group = {});
  ~PipelineEngine();
  PipelineEngine(const PipelineEngine&) = delete;
  PipelineEngine& operator=(const PipelineEngine&) = delete;

  // One training step on this pipeline's micro-batches (options.micro_batches of them, equal
  // shapes; every stage needs them for the shapes, only the first and last read the tokens).
  PipelineStepStats step(const std::vector<TokenBatch>& micro_batches);

  const pipe::PipelineGrid& grid() const;
  int stage() const;
  int data_index() const;
  // This stage's layers: [first_layer(), end_layer()) of model.pipeline_layers().
  std::int64_t first_layer() const;
  std::int64_t end_layer() const;
  // The parameters this stage holds and trains, in ParamId order.
  const std::vector<ParamId>& parameters() const;
  // The current values of a parameter this stage holds.
  std::vector<float> parameter_values(ParamId id) const;

  // Records the stage's forward and backward passes and optimizer steps into `trace` as rank
  // `rank` (an index into trace->ranks), named "stage S", at times relative to the wall-clock
  // `origin_ns`, and a marker at each step's start. Sends and receives are in the communicator's
  // log. While recording, what the stage allocates is named for the trace's allocations as the
  // simulator names a stage's blocks (memory_scope.h's labels). nullptr: stop.
  void record_into(trace::Trace* trace, std::int32_t rank, std::int64_t origin_ns);

  // The sub-groups this rank is in, made at construction: `name` is the trace's group axis
  // ("tied KEY", "data", "pipe"), `comm` the communicator, whose log holds its collectives.
  struct Group {
    std::string name;
    comm::Communicator* comm = nullptr;
  };
  std::vector<Group> groups() const;

  // Records every instruction executed, in order, from now on.
  void set_instruction_logging(bool on);
  const std::vector<pipe::Instruction>& instruction_log() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace zp::exec
