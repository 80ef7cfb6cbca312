// Work kept between simulations of one run under different settings: the planner simulates one
// model thousands of times, and cutting it into checkpoint segments and scheduling its hooks cost a
// fifth of a simulation while depending on few settings.
#pragma once

#include <cstdint>
#include <deque>
#include <string>
#include <utility>
#include <vector>

#include "core/checkpoint/checkpointing.h"
#include "core/config/run_spec.h"
#include "core/zero/hook_schedule.h"
#include "core/zero/settings.h"
#include "core/zero/zero_model.h"
#include "sim/step/checkpoint_segments.h"

namespace zp::sim {

// Bound to the model tree of its first use: using it for another tree is an InternalError. Not
// thread-safe: one per thread.
class SimCache {
 public:
  // checkpoint_segments(run), kept per checkpointing setting.
  const CheckpointSegments& checkpoint_segments(const RunSpec& run);
  // zero::training_step_schedule(model, recompute), kept per set of leaf modules and recompute
  // ranges (the schedule depends on nothing else of the settings).
  const zero::StepSchedule& step_schedule(const zero::ZeroModel& model,
                                          const std::vector<zero::RecomputeRange>& recompute);

 private:
  void bind(const ModuleTree& tree);

  struct ScheduleKey {
    std::int64_t granularity = 0;
    std::vector<std::string> leaf_classes;
    zero::DeepSpeedVersion version = zero::DeepSpeedVersion::kCurrent;
    std::vector<zero::RecomputeRange> recompute;
    bool operator==(const ScheduleKey&) const = default;
  };

  const ModuleTree* tree_ = nullptr;
  std::deque<std::pair<ckpt::CheckpointSettings, CheckpointSegments>> segments_;
  std::deque<std::pair<ScheduleKey, zero::StepSchedule>> schedules_;
};

}  // namespace zp::sim
