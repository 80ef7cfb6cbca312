#include "sim/step/decision_memo.h"

namespace zp::sim {

std::optional<RankReport> DecisionMemo::find(const Key& key) const {
  std::lock_guard lock(mutex_);
  const auto it = entries_.find(key);
  if (it == entries_.end()) return std::nullopt;
  ++hits_;
  return it->second;
}

void DecisionMemo::store(const Key& key, const RankReport& rank) {
  std::lock_guard lock(mutex_);
  entries_.emplace(key, rank);
}

std::shared_ptr<const zero::TrainingLoop> DecisionMemo::warm_up(
    const std::vector<std::int64_t>& context) const {
  std::lock_guard lock(mutex_);
  const auto it = warm_ups_.find(context);
  return it == warm_ups_.end() ? nullptr : it->second;
}

void DecisionMemo::store_warm_up(const std::vector<std::int64_t>& context,
                                 const zero::TrainingLoop& loop) {
  auto copy = std::make_shared<const zero::TrainingLoop>(loop);
  std::lock_guard lock(mutex_);
  warm_ups_.emplace(context, std::move(copy));
}

std::int64_t DecisionMemo::hits() const {
  std::lock_guard lock(mutex_);
  return hits_;
}

std::int64_t DecisionMemo::warm_ups() const {
  std::lock_guard lock(mutex_);
  return static_cast<std::int64_t>(warm_ups_.size());
}

std::int64_t DecisionMemo::size() const {
  std::lock_guard lock(mutex_);
  return static_cast<std::int64_t>(entries_.size());
}

}  // namespace zp::sim
