#include "sim/step/sim_cache.h"

#include "core/util/error.h"

namespace zp::sim {

void SimCache::bind(const ModuleTree& tree) {
  if (!tree_) tree_ = &tree;
  ZP_CHECK(tree_ == &tree, "a simulation cache used for another model tree");
}

const CheckpointSegments& SimCache::checkpoint_segments(const RunSpec& run) {
  bind(run.tree);
  const ckpt::CheckpointSettings settings = checkpoint_settings(run);
  for (const auto& [key, segments] : segments_)
    if (key == settings) return segments;
  segments_.emplace_back(settings, sim::checkpoint_segments(run, settings));
  return segments_.back().second;
}

const zero::StepSchedule& SimCache::step_schedule(
    const zero::ZeroModel& model, const std::vector<zero::RecomputeRange>& recompute) {
  bind(model.tree());
  const zero::ZeroSettings& s = model.settings();
  ScheduleKey key{s.module_granularity_threshold, s.leaf_module_classes, s.version, recompute};
  for (const auto& [k, schedule] : schedules_)
    if (k == key) return schedule;
  schedules_.emplace_back(std::move(key), zero::training_step_schedule(model, recompute));
  return schedules_.back().second;
}

}  // namespace zp::sim
