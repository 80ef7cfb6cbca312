#include "core/zero/training_step.h"

#include <utility>

namespace zp::zero {

TrainingLoop::TrainingLoop(const ZeroModel& model, CoordinatorBackend& gathers,
                           GradientReducerBackend& reductions, StepObserver* observer,
                           const std::vector<RecomputeRange>& recompute)
    : model_(&model),
      schedule_(training_step_schedule(model, recompute)),
      coordinator_(model, gathers),
      reducer_(model, reductions),
      observer_(observer) {}

TrainingLoop::TrainingLoop(const ZeroModel& model, StepSchedule schedule,
                           CoordinatorBackend& gathers, GradientReducerBackend& reductions,
                           StepObserver* observer)
    : model_(&model),
      schedule_(std::move(schedule)),
      coordinator_(model, gathers),
      reducer_(model, reductions),
      observer_(observer) {}

void TrainingLoop::rebind(const ZeroModel& model, CoordinatorBackend& gathers,
                          GradientReducerBackend& reductions, StepObserver* observer) {
  model_ = &model;
  coordinator_.rebind(model, gathers);
  reducer_.rebind(model, reductions);
  observer_ = observer;
}

void TrainingLoop::initialize() {
  if (observer_) observer_->on_phase(StepPhase::kInit, -1);
  for (ParamId p : model_->params_by_ds_id()) {
    if (!model_->param(p).requires_grad) continue;
    const ParamId one[] = {p};
    coordinator_.gather_outside(one);
    coordinator_.release_outside(p);
  }
}

void TrainingLoop::decide(const StepEvent& e) {
  switch (e.kind) {
    case StepEventKind::kPreForward:
      coordinator_.pre_forward(e.module);
      break;
    case StepEventKind::kPostForward:
      coordinator_.post_forward(e.module);
      break;
    case StepEventKind::kPreBackward:
      coordinator_.pre_backward(e.module);
      break;
    case StepEventKind::kPostBackward:
      coordinator_.post_backward(e.module);
      break;
    case StepEventKind::kGradReady:
      if (!decisions_only_) reducer_.grad_ready(e.param);
      break;
  }
}

void TrainingLoop::run(const std::vector<StepEvent>& events) {
  StepObserver* const observer = decisions_only_ ? nullptr : observer_;
  if (!observer) {
    // Warm-up steps: nothing to tell, so nothing to ask per event.
    for (const StepEvent& e : events) {
      ++events_;
      decide(e);
    }
    return;
  }
  for (const StepEvent& e : events) {
    ++events_;
    // The observer may narrow or widen its kinds at any event: read them each time.
    const std::uint8_t bit = StepObserver::event_bit(e.kind);
    if (observer->before_event_kinds() & bit) observer->before_event(e);
    decide(e);
    if (observer->on_event_kinds() & bit) observer->on_event(e);
  }
}

void TrainingLoop::step(std::int64_t micro_batches) {
  ZP_CHECK(micro_batches >= 1, "micro_batches ", micro_batches);
  StepObserver* const observer = decisions_only_ ? nullptr : observer_;
  for (std::int64_t micro = 0; micro < micro_batches; ++micro) {
    if (observer) observer->on_phase(StepPhase::kForward, step_);
    coordinator_.start_of_forward();
    run(schedule_.forward);
    if (observer) observer->on_phase(StepPhase::kBackward, step_);
    run(schedule_.backward);
    coordinator_.reset_step();
    if (observer) observer->on_reset_step();
    reducer_.epilogue();
  }
  if (observer) observer->on_phase(StepPhase::kOptimizerStep, step_);
  coordinator_.release_and_reset_all();
  if (observer) observer->on_optimizer_update(step_);
  const std::vector<ParamId>& persistent = model_->persistent_params();
  if (!persistent.empty()) coordinator_.gather_outside(persistent);
  ++step_;
}

}  // namespace zp::zero
