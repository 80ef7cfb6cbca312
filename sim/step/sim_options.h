// How a simulation runs and what it reports; shared by the data-parallel and pipeline simulations.
#pragma once

#include <cstdint>
#include <vector>

namespace zp::sim {

class DecisionMemo;
class SimCache;

struct SimOptions {
  // 0: report the steady-state step (the first that begins with a complete ZeRO-3 trace, after
  // warm-up steps simulated for their decisions only); N > 0: simulate and report steps 0..N-1.
  std::int64_t steps = 0;
  // Simulate every rank, not one per class of provably identical ranks.
  bool all_ranks = false;
  // Model PyTorch's caching allocator (reserved memory, fragmentation); costs O(log n) per
  // allocation.
  bool model_allocator = true;
  // Work kept between simulations of one run under other settings (the planner's); null: none.
  // Used by the ZeRO-3 simulation without tensor parallelism.
  SimCache* cache = nullptr;
  // Steps shared between runs that differ only in the coordinator's prefetch and reuse thresholds
  // (see DecisionMemo); null: none. `memo_context` names everything else that differs between the
  // runs sharing it. Used by the ZeRO-3 simulation's steady-state step without a trace.
  DecisionMemo* memo = nullptr;
  std::vector<std::int64_t> memo_context;
};

// What a memory snapshot's `running` field holds besides a call index.
inline constexpr std::int32_t kRunningNothing = -1;
inline constexpr std::int32_t kRunningOptimizer = -2;
inline constexpr std::int32_t kRunningPersistentGather = -3;

}  // namespace zp::sim
