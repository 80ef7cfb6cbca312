// `zeroplan exec RUN.yaml`: trains the run spec's model for a few steps with the ZeRO-3 engine on
// every rank, on synthetic data, and reports what it measured (per step: loss, time split into
// compute, engine and communication wait; per rank: peak memory by category; collectives by
// kind), optionally as a trace in sim's format.
//
// What exec trains today: ZeRO stage 3 without offload and data parallelism (zero3_engine.h), or
// pipelines with ZeRO stage 0 (pipeline_engine.h, CPU ranks); tensor parallelism is simulated
// only. The GPT-2 and Llama families in fp32, SGD or AdamW from the DeepSpeed config's optimizer
// section. Anything else is a UserError naming the key
// before any rank starts.
#pragma once

#include <cstdint>
#include <iosfwd>
#include <string>

#include "core/config/run_spec.h"
#include "exec/comm/communicator.h"
#include "exec/train/reference_trainer.h"

namespace zp::exec {

struct TrainingOptions {
  std::int64_t steps = 3;
  std::uint64_t seed = 0;      // initialisation and data
  std::string trace;           // the native trace of every rank, written by rank 0; empty: none
  std::string chrome_trace;    // the same as a Chrome trace (Perfetto); empty: none
  bool json = false;           // one JSON object instead of the report
  std::string device = "cpu";  // "cuda:N": the model and every collective buffer on GPU N
  // Install the counting allocator. c10 has one CPU allocator per process, so of ranks that are
  // threads of one process (tests) none may count; ranks that are processes each count their own.
  bool count_memory = true;
};

// A run spec resolved into what one rank needs to train it.
struct TrainingPlan {
  RunSpec spec;
  TrainingOptions options;
  std::int64_t world = 1;
  std::int64_t accumulation = 1;  // micro-batches per step and rank
  OptimizerSpec optimizer;
  bool default_optimizer = false;  // the DeepSpeed config names none

  bool wants_trace() const { return !options.trace.empty() || !options.chrome_trace.empty(); }
};

// Checks that exec can train `spec` on `world` ranks; UserError naming the key otherwise.
TrainingPlan plan_training(RunSpec spec, std::int64_t world, const TrainingOptions& options);

// Trains on this rank (`world` is the communicator of every rank; `make_group` makes a
// pipeline's sub-groups, and may be empty for a run without a pipeline); rank 0 writes the report
// to `out` and the trace. Returns the exit status.
int run_training(const TrainingPlan& plan, comm::Communicator& world,
                 const comm::GroupMaker& make_group, std::ostream& out);

}  // namespace zp::exec
