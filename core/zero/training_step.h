// DeepSpeed's ZeRO-3 training loop around the coordinator and the gradient reducer: engine setup,
// then for each step its micro-batches (forward hooks; backward hooks with gradients becoming
// ready; reset_step; the gradient epilogue), release_and_reset_all at the optimizer step, and the
// persistent parameters gathered again after it (stage 3's _post_step).
// Not thread-safe.
#pragma once

#include <cstdint>
#include <vector>

#include "core/zero/coordinator.h"
#include "core/zero/grad_reducer.h"
#include "core/zero/hook_schedule.h"

namespace zp::zero {

enum class StepPhase : std::uint8_t { kInit, kForward, kBackward, kOptimizerStep };

// Sees every hook as it fires, after the coordinator acted on it (tests and traces use this), and
// just before.
class StepObserver {
 public:
  // Sets of event kinds: bit k stands for StepEventKind k.
  static constexpr std::uint8_t kAllEventKinds = 0x1f;
  static constexpr std::uint8_t event_bit(StepEventKind kind) {
    return static_cast<std::uint8_t>(1u << static_cast<unsigned>(kind));
  }

  virtual ~StepObserver() = default;
  // The kinds before_event and on_event are called for: all unless the observer narrowed them.
  std::uint8_t before_event_kinds() const { return before_event_kinds_; }
  std::uint8_t on_event_kinds() const { return on_event_kinds_; }
  virtual void on_phase(StepPhase /*phase*/, std::int64_t /*step*/) {}
  // Before the coordinator or the reducer acts on the event: a module's own forward work runs
  // here, ahead of the post-forward release of its parameters.
  virtual void before_event(const StepEvent& /*event*/) {}
  virtual void on_event(const StepEvent& /*event*/) {}
  virtual void on_reset_step() {}
  // Between release_and_reset_all and the gather of the persistent parameters: where the
  // optimizer updates the partitions.
  virtual void on_optimizer_update(std::int64_t /*step*/) {}

 protected:
  // An observer that ignores some kinds saves the calls for them (two per event otherwise); it
  // may change the sets at any time, and the next event sees them.
  void set_event_kinds(std::uint8_t before, std::uint8_t on) {
    before_event_kinds_ = before;
    on_event_kinds_ = on;
  }

 private:
  std::uint8_t before_event_kinds_ = kAllEventKinds;
  std::uint8_t on_event_kinds_ = kAllEventKinds;
};

class TrainingLoop {
 public:
  // `recompute`: the calls activation checkpointing runs again in backward (see
  // training_step_schedule).
  TrainingLoop(const ZeroModel& model, CoordinatorBackend& gathers,
               GradientReducerBackend& reductions, StepObserver* observer = nullptr,
               const std::vector<RecomputeRange>& recompute = {});
  // With the schedule training_step_schedule(model, recompute) made earlier, for a model of the
  // same tree and leaves (a simulator that runs one model under many settings keeps it).
  TrainingLoop(const ZeroModel& model, StepSchedule schedule, CoordinatorBackend& gathers,
               GradientReducerBackend& reductions, StepObserver* observer);

  // deepspeed.initialize: each trainable parameter is gathered once and partitioned again while
  // the gradient hooks are installed.
  void initialize();
  // Carries the loop's state (its steps so far, the coordinator's trace) over to another run of
  // the same model whose settings differ at most in what Coordinator::rebind allows: a warm-up
  // done once for many variants. A copy of a loop refers to the original's model and backends
  // until it is rebound.
  void rebind(const ZeroModel& model, CoordinatorBackend& gathers,
              GradientReducerBackend& reductions, StepObserver* observer);
  // One optimizer step over `micro_batches` forward/backward passes.
  void step(std::int64_t micro_batches = 1);
  // Decisions only: the coordinator decides as always, but the observer is not told and no
  // gradient is bucketed (a simulator's warm-up steps, whose costs nobody records). The reducer
  // ends every micro-step empty, so the steps after are the same either way.
  void set_decisions_only(bool on) { decisions_only_ = on; }

  Coordinator& coordinator() { return coordinator_; }
  const Coordinator& coordinator() const { return coordinator_; }
  const GradientReducer& reducer() const { return reducer_; }
  const StepSchedule& schedule() const { return schedule_; }
  std::int64_t steps_done() const { return step_; }
  // Hook events run so far: where in the schedule the loop is.
  std::int64_t events_run() const { return events_; }

 private:
  void run(const std::vector<StepEvent>& events);
  // The coordinator's (and the reducer's) part of one event.
  void decide(const StepEvent& event);

  const ZeroModel* model_;
  StepSchedule schedule_;
  Coordinator coordinator_;
  GradientReducer reducer_;
  StepObserver* observer_;
  std::int64_t step_ = 0;
  std::int64_t events_ = 0;
  bool decisions_only_ = false;
};

}  // namespace zp::zero
