// A prediction against a measurement: two traces of the same run, one simulated and one measured,
// compared rank by rank on what issue 9 holds the simulator to. Memory: each rank's peak of the
// device categories, and every category at that peak. Collectives: count and bytes per kind.
// Coordinator decisions: the sequence of parameter gathers and gradient reductions, step by step.
// Time: the step, and each module's forward, backward and recomputation.
//
// Only the traces are needed, so a comparison can be made from files as well as from a live run
// (`zeroplan validate`).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "core/config/document.h"
#include "core/trace/trace.h"

namespace zp::trace {

struct CompareTargets {
  double peak = 0.03;       // each rank's peak, relative to the measured peak
  double category = 0.05;   // each category at the peak, relative to the measured peak
  double step_time = 0.10;  // the median steady-state step time, relative to the measured one
  // The most of the host's CPU time its hypervisor may take during the measured steps (steal
  // time) for the step time to say something about the simulator: a step's ranks meet at every
  // collective, so one descheduled rank holds them all. Here 15-19% steal doubled a step that
  // came within 10% at 0%.
  double quiet_host_steal = 0.05;
};

struct CompareOptions {
  CompareTargets targets;
  // Whether the step time counts toward the verdict: only a calibrated cluster description can
  // be expected to meet it.
  bool judge_time = false;
  // Module names of the measured trace that stand for a predicted one: the simulator calls the
  // root module "model", a real model its class ("GPT2LMHeadModel").
  std::map<std::string, std::string> measured_aliases;
  // A pipeline's measured passes are whole stages (exec's pipeline engine records one forward
  // and one backward op a micro-batch, named "stage S", recomputation inside the backward's): the
  // predicted modules are then summed into their rank's stage, recomputation into backward, so
  // that per-module times compare like with like.
  bool modules_as_stages = false;
};

// One figure, predicted and measured. `error` is (predicted - measured) / reference, where the
// reference is the measured value unless said otherwise; 0 when both are 0.
struct Figure {
  std::int64_t predicted = 0;
  std::int64_t measured = 0;
  double error = 0;
  bool ok = true;
};

struct CategoryFigure {
  MemoryCategory category = MemoryCategory::kActivations;
  Figure figure;  // error relative to the measured device peak
};

struct CollectiveFigure {
  OpKind kind = OpKind::kAllGather;
  Figure count;  // over every compared step; exact
  Figure bytes;  // exact
};

// The coordinator's decisions: every gather and gradient reduction of a rank, in the order it was
// issued, step by step, as (kind, name, bytes). The simulator and the real engine number their
// gathers and buckets alike, so the same decisions give the same sequence.
struct DecisionFigure {
  std::int64_t compared = 0;  // ops in the predicted sequences
  std::int64_t mismatches = 0;
  std::string first_mismatch;  // "step 1, gather 3: predicted allgather 'gather 64' 82688 B, ..."
  bool ok = true;
};

struct ModuleTime {
  std::string module;
  OpKind kind = OpKind::kForward;  // forward, backward, recompute
  Figure time;                     // ns per steady-state step
};

struct RankComparison {
  std::int64_t global_rank = 0;
  std::string predicted_label;             // the rank class that predicts it
  Figure peak;                             // device categories, bytes
  std::vector<CategoryFigure> categories;  // every category non-zero in either (PeakMemory)
  std::vector<CollectiveFigure> collectives;
  std::optional<DecisionFigure> decisions;  // none when neither trace has gathers or reductions
  std::vector<Figure> step_times;           // ns, per compared step
  Figure step_time;                         // ns, median of the steady-state steps
  Figure compute_time;                      // ns per steady-state step, compute ops summed
  std::vector<ModuleTime> modules;          // by the measured time, largest first
};

struct Comparison {
  std::int64_t steps = 0;        // compared steps: 0 .. steps-1
  std::int64_t steady_from = 0;  // the first step that counts for time (1 when steps > 1)
  bool time_judged = false;
  CompareTargets targets;
  std::vector<RankComparison> ranks;  // by global rank
  // The share of the host's CPU time its hypervisor took during the measured steps, from the
  // measured trace's metadata (`host_steal_share`); none where the host does not count it.
  std::optional<double> host_steal;
  // Whether the measured steps ran on a host quiet enough to judge step time by (a host that does
  // not count its steal time is taken as quiet). The verdict stands either way; this says how far
  // to trust it.
  bool host_quiet() const;

  // The verdicts over every rank.
  bool memory_ok() const;
  bool collectives_ok() const;
  bool decisions_ok() const;
  bool time_ok() const;  // true when time is not judged
  bool within_targets() const;
};

// Compares `predicted` (simulated, one entry per rank class) with `measured` (one entry per
// global rank) over the steps both traces hold. UserError when they cannot describe the same run:
// a measured rank that no predicted class stands for, no step in common.
Comparison compare_traces(const Trace& predicted, const Trace& measured,
                          const CompareOptions& options = {});

Json comparison_to_json(const Comparison& comparison);

// A rank's memory at its device peak, from the trace's samples applied in time order. Host memory
// lies outside the device's peak and has its own: each host category's largest total.
struct PeakMemory {
  std::int64_t allocated = 0;  // device categories summed, at the peak
  TimeNs time = 0;
  // Device categories at that moment; host categories at their own peaks.
  std::array<std::int64_t, kMemoryCategoryCount> bytes{};
};
PeakMemory peak_memory(const Trace& trace, std::int32_t rank);

}  // namespace zp::trace
