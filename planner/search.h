// The tuner's search: a branch and bound over the search space with the simulator as its cost
// model.
//
// Dimensions along which neither memory nor time moves one way are enumerated. Below them, a node
// of the search tree fixes some dimensions and leaves the rest free; two simulations bound
// everything beneath it: the free dimensions at their least-memory values give the least memory
// any configuration below can need, and at their most-memory values the shortest step any can
// take (a dimension monotone in memory only takes there the value that was fastest when swept
// alone at the start). A node is pruned when even its least memory is over the budget, or when its
// bounds cannot beat the best configuration found so far; an exhaustive mode simulates every
// configuration, to check the pruning on small spaces. The bounds assume what holds over most of
// the thresholds' range (more gathered parameters kept live cost memory and save traffic), with
// a slack for where the simulator departs from it; the exhaustive comparison is what checks it.
//
// Both cores: a node's children are bounded together, one simulation per worker; the tree is
// walked in a fixed order, so the answer does not depend on the number of workers.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "core/config/run_spec.h"
#include "core/trace/trace.h"
#include "planner/search_space.h"
#include "sim/step/decision_memo.h"
#include "sim/step/sim_cache.h"

namespace zp::planner {

using trace::TimeNs;

enum class Objective {
  kFastest,      // the fastest step within the memory budget (ties: less memory)
  kLeastMemory,  // the least memory within the time budget (ties: faster)
  kPareto,       // every configuration no other beats in both memory and time
};

// What one simulation predicts, in the terms the search compares.
struct Evaluation {
  TimeNs step_ns = 0;
  TimeNs compute_ns = 0;            // of which the compute stream computes: the step's floor
  std::int64_t memory = 0;          // the peak over ranks: reserved, or allocated without the
                                    // allocator model
  std::int64_t allocated = 0;       // the peak allocated over ranks
  bool host_fits = true;            // offloaded state fits the nodes' host memory
  std::int64_t gathered_bytes = 0;  // all-gather traffic per step, one rank
  std::string rejected;  // why the simulator refused the configuration; empty when it ran
};

struct Point {
  Candidate candidate;
  Evaluation eval;
};

struct SearchOptions {
  Objective objective = Objective::kFastest;
  std::optional<std::int64_t> memory_budget;  // bytes per GPU
  std::optional<TimeNs> time_budget;
  int workers = 2;
  bool exhaustive = false;
  bool model_allocator = true;  // compare reserved memory, as the GPU runs out of it
  // A configuration whose coordinator decides exactly as an earlier one's, call for call, takes
  // that one's timed step instead of simulating it again (sim::DecisionMemo): the same result.
  bool share_decisions = true;
  std::size_t runners_up = 4;
  // How far the simulator may depart from the monotonicity the bounds assume: a node is pruned
  // only when its bounds, lowered by these fractions, still lose. Memory is bounded by allocated
  // memory, which departs little (reserved memory departs too far to bound anything). Time departs
  // by up to a few percent where prefetch and kept parameters compete for bandwidth; a time slack
  // makes the search slower and surer, and without one the polish (below) recovers most of what
  // the bounds miss.
  double memory_slack = 0.03;
  double time_slack = 0.01;
  // Called from the searching thread at most a few times a second.
  std::function<void(std::int64_t simulated, std::int64_t pruned, const std::optional<Point>& best)>
      progress;
  const std::atomic<bool>* stop = nullptr;  // set: return the best so far
};

struct SearchStats {
  double space = 0;               // configurations in the space
  std::int64_t simulated = 0;     // simulations run (distinct configurations)
  std::int64_t reached = 0;       // configurations the search examined one by one
  double pruned_over_budget = 0;  // configurations under nodes whose least memory is over budget
  double pruned_too_slow = 0;     // ... whose shortest step is over the time budget
  double pruned_dominated = 0;    // ... whose bounds cannot beat the best found
  std::int64_t polished = 0;      // of the simulations, those spent improving the best one
                                  // knob at a time after the bounded search
  std::int64_t collapsed = 0;     // values merged because DeepSpeed acts on them alike
  std::int64_t shared_steps = 0;  // of the simulations, those whose decisions matched an earlier
                                  // one's, so that its timed step was taken as it was
  double seconds = 0;
  bool interrupted = false;
};

struct SearchResult {
  std::optional<Point> best;          // nullopt: nothing meets the budgets
  std::vector<Point> runners_up;      // the next best, in the objective's order
  std::vector<Point> pareto;          // memory against time, by memory (Pareto objective, or the
                                      // front among the configurations simulated otherwise)
  std::optional<Point> least_memory;  // the least memory simulated (what is needed to fit)
  SearchStats stats;
};

// Simulates one configuration. `cache`, if given, must only ever see this run's model tree.
// `memo`, if given, is shared only by runs that differ in nothing but the coordinator's thresholds
// and what `memo_context` names (sim::DecisionMemo).
Evaluation evaluate(const RunSpec& run, bool model_allocator, sim::SimCache* cache = nullptr,
                    sim::DecisionMemo* memo = nullptr, std::vector<std::int64_t> memo_context = {});

SearchResult search(const RunSpec& run, const SearchSpace& space, const SearchOptions& options);

}  // namespace zp::planner
