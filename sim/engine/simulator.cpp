#include "sim/engine/simulator.h"

#include "core/util/error.h"

namespace zp::sim {

Simulator::EventId Simulator::schedule(TimeNs delay, Action action) {
  ZP_CHECK(delay >= 0, "negative delay ", delay);
  return schedule_at(now_ + delay, std::move(action));
}

Simulator::EventId Simulator::schedule_at(TimeNs time, Action action) {
  ZP_CHECK(time >= now_, "event at ", time, " is in the past (now ", now_, ")");
  const EventId id = next_id_++;
  actions_.push_back(std::move(action));
  cancelled_.push_back(false);
  queue_.push(Event{time, id});
  return id;
}

void Simulator::cancel(EventId id) {
  ZP_CHECK(id < next_id_, "no event ", id);
  if (cancelled_[id] || !actions_[id]) return;
  cancelled_[id] = true;
  actions_[id] = nullptr;
  ++cancelled_pending_;
}

bool Simulator::run_one(TimeNs limit) {
  while (!queue_.empty()) {
    const Event event = queue_.top();
    if (event.time > limit) return false;
    queue_.pop();
    if (cancelled_[event.id]) {
      --cancelled_pending_;
      continue;
    }
    ZP_CHECK(event.time >= now_, "time went backwards: ", event.time, " < ", now_);
    now_ = event.time;
    Action action = std::move(actions_[event.id]);
    actions_[event.id] = nullptr;
    action();
    return true;
  }
  return false;
}

std::uint64_t Simulator::run() {
  stopped_ = false;
  std::uint64_t count = 0;
  while (!stopped_ && run_one(INT64_MAX))
    ++count;
  return count;
}

std::uint64_t Simulator::run_until(TimeNs until) {
  ZP_CHECK(until >= now_, "run_until(", until, ") is in the past (now ", now_, ")");
  stopped_ = false;
  std::uint64_t count = 0;
  while (!stopped_ && run_one(until))
    ++count;
  if (!stopped_) now_ = until;
  return count;
}

}  // namespace zp::sim
