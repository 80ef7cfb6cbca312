// The discrete-event core: a clock in integer nanoseconds and a queue of events ordered by
// (time, sequence number), so that events at the same instant run in the order they were
// scheduled and every run of the same input is identical.
//
// Complexity: schedule and each event run are O(log n) in the number of pending events; cancel is
// O(1) (the event is marked and skipped when it comes up). Not thread-safe: one simulation, one
// thread; run independent simulations in parallel instead.
#pragma once

#include <cstdint>
#include <functional>
#include <queue>
#include <vector>

namespace zp::sim {

using TimeNs = std::int64_t;

class Simulator {
 public:
  using Action = std::function<void()>;
  using EventId = std::uint64_t;

  TimeNs now() const { return now_; }

  // Runs `action` `delay` nanoseconds from now (delay >= 0). Returns an id for cancel().
  EventId schedule(TimeNs delay, Action action);
  EventId schedule_at(TimeNs time, Action action);
  // The event will not run. Cancelling an event that ran or was cancelled does nothing.
  void cancel(EventId id);

  // Runs events until none is left or stop() is called; returns the number run.
  std::uint64_t run();
  // Runs events with time <= `until`, then sets the clock to `until` if it is later.
  std::uint64_t run_until(TimeNs until);
  void stop() { stopped_ = true; }

  std::size_t pending() const { return queue_.size() - cancelled_pending_; }

 private:
  struct Event {
    TimeNs time;
    EventId id;  // also the sequence number: ids increase in scheduling order
    bool operator>(const Event& other) const {
      return time != other.time ? time > other.time : id > other.id;
    }
  };

  bool run_one(TimeNs limit);

  TimeNs now_ = 0;
  EventId next_id_ = 0;
  bool stopped_ = false;
  std::priority_queue<Event, std::vector<Event>, std::greater<>> queue_;
  std::vector<Action> actions_;  // by id; emptied when run or cancelled
  std::vector<bool> cancelled_;  // by id
  std::size_t cancelled_pending_ = 0;
};

}  // namespace zp::sim
