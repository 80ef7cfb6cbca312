// Work shared between runs whose ZeRO-3 coordinator decides alike. The planner simulates one run
// under many values of stage3_max_live_parameters, stage3_max_reuse_distance and
// stage3_prefetch_bucket_size, and only the coordinator reads them, in COMPLETE mode only:
//  - the model and the costs of its calls do not depend on them: the first run's serve the others
//    (ZeroModel::with_thresholds);
//  - the warm-up steps, which end as the trace completes, do not read them (unless a step has
//    several micro-steps, whose later ones run with the trace complete): one warm-up serves every
//    combination (the loop is copied and rebound to the new run);
//  - many combinations make exactly the same gathers and releases (without prefetch the live limit
//    is moot; reuse distances past the model's own reuse keep the same parameters). So the
//    simulation runs the step's decisions alone first, a small part of its cost, and takes the
//    timed rank from an earlier run that decided the same, call for call.
//
// Sound only between runs that differ in those three settings alone: the caller names everything
// else in a context (the planner: every other knob's value) that is part of the key. Keys are
// 128-bit digests of the context and of every call the rank receives with its arguments: two
// independent 64-bit hashes, so that a memo of thousands of steps holds no call lists; a false
// match needs both to collide at once. Thread-safe: workers share one.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <utility>
#include <vector>

#include "core/zero/training_step.h"
#include "sim/step/call_work.h"
#include "sim/step/step_result.h"

namespace zp::sim {

// A running digest of a sequence of words.
class DecisionDigest {
 public:
  // Two multiplicative hashes with unrelated constants, each over the whole sequence; cheap, since
  // a step adds tens of thousands of words.
  void add(std::int64_t word) {
    const auto v = static_cast<std::uint64_t>(word);
    a_ = (a_ ^ v) * 0x100000001b3ull;  // FNV-1a
    b_ = (((b_ << 23) | (b_ >> 41)) ^ v) * 0x9e3779b97f4a7c15ull;
  }
  std::pair<std::uint64_t, std::uint64_t> value() const { return {a_, b_}; }

 private:
  std::uint64_t a_ = 0xcbf29ce484222325ull;
  std::uint64_t b_ = 0;
};

class DecisionMemo {
 public:
  using Key = std::pair<std::uint64_t, std::uint64_t>;

  std::optional<RankReport> find(const Key& key) const;
  void store(const Key& key, const RankReport& rank);

  std::int64_t hits() const;
  std::int64_t size() const;
  std::int64_t warm_ups() const;  // warm-up loops kept

  // What the first run of a context on a model tree leaves for the next ones.
  struct WarmUp {
    // Of that tree, under the first run's thresholds, and the costs of its calls; none for a tree
    // made for the run alone (a tensor-parallel shard), which dies with it.
    std::optional<zero::ZeroModel> model;
    std::vector<CallWork> work;
    // As the warm-up left it, still bound to the first run (TrainingLoop::rebind it); none if the
    // warm-up read the thresholds.
    std::optional<zero::TrainingLoop> loop;
  };
  // Null if no run of this context on `tree` was kept. The memo keeps the most recently used
  // kMaxWarmUps: a warm-up holds a copy of the model, its schedule and the coordinator's trace.
  static constexpr std::size_t kMaxWarmUps = 32;
  std::shared_ptr<const WarmUp> warm_up(const std::vector<std::int64_t>& context,
                                        const ModuleTree* tree) const;
  void store_warm_up(const std::vector<std::int64_t>& context, const ModuleTree* tree,
                     WarmUp warm_up);

 private:
  mutable std::mutex mutex_;
  std::map<Key, RankReport> entries_;
  struct KeptWarmUp {
    std::shared_ptr<const WarmUp> warm_up;
    std::uint64_t last_use = 0;
  };
  mutable std::map<std::pair<std::vector<std::int64_t>, const ModuleTree*>, KeptWarmUp> warm_ups_;
  mutable std::uint64_t uses_ = 0;
  mutable std::int64_t hits_ = 0;
};

}  // namespace zp::sim
