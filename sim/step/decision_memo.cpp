#include "sim/step/decision_memo.h"

#include <algorithm>

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

std::shared_ptr<const DecisionMemo::WarmUp> DecisionMemo::warm_up(
    const std::vector<std::int64_t>& context, const ModuleTree* tree) const {
  std::lock_guard lock(mutex_);
  const auto it = warm_ups_.find({context, tree});
  if (it == warm_ups_.end()) return nullptr;
  it->second.last_use = ++uses_;
  return it->second.warm_up;
}

void DecisionMemo::store_warm_up(const std::vector<std::int64_t>& context, const ModuleTree* tree,
                                 WarmUp warm_up) {
  auto kept = std::make_shared<const WarmUp>(std::move(warm_up));
  std::lock_guard lock(mutex_);
  if (warm_ups_.size() >= kMaxWarmUps) {
    warm_ups_.erase(std::min_element(
        warm_ups_.begin(), warm_ups_.end(),
        [](const auto& a, const auto& b) { return a.second.last_use < b.second.last_use; }));
  }
  warm_ups_.emplace(std::make_pair(context, tree), KeptWarmUp{std::move(kept), ++uses_});
}

std::int64_t DecisionMemo::hits() const {
  std::lock_guard lock(mutex_);
  return hits_;
}

std::int64_t DecisionMemo::warm_ups() const {
  std::lock_guard lock(mutex_);
  return static_cast<std::int64_t>(
      std::count_if(warm_ups_.begin(), warm_ups_.end(),
                    [](const auto& w) { return w.second.warm_up->loop.has_value(); }));
}

std::int64_t DecisionMemo::size() const {
  std::lock_guard lock(mutex_);
  return static_cast<std::int64_t>(entries_.size());
}

}  // namespace zp::sim
