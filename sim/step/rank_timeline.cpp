#include "sim/step/rank_timeline.h"

#include <string>

namespace zp::sim {

RankTimeline::RankTimeline(trace::Trace* trace, std::int32_t trace_rank,
                           const CollectiveModel& network, const GroupShape& data_shape,
                           std::int64_t data_size, std::int64_t gpu, TimeNs collective_host_ns)
    : trace_(trace),
      trace_rank_(trace_rank),
      network_(&network),
      collective_host_ns_(collective_host_ns),
      data_shape_(data_shape),
      gpu_(gpu) {
  if (trace_) {
    data_group_ = static_cast<std::int32_t>(trace_->groups.size());
    trace_->groups.push_back(trace::GroupInfo{"data", data_size});
  }
}

void RankTimeline::marker(const std::string& text) {
  if (trace_) trace_->markers.push_back(trace::Marker{trace_rank_, now_, label(text)});
}

std::int32_t RankTimeline::intern_numbered(const char* prefix, std::int64_t n) {
  return trace_->intern(prefix + std::to_string(n));
}

void RankTimeline::begin_step(StepReport& report) {
  step_ = static_cast<std::int32_t>(report.step);
  figures_ = CoordinatorFigures{};
  compute_ns_ = 0;
  exposed_ns_ = 0;
  report.start_ns = now_;
  marker("step " + std::to_string(step_));
}

void RankTimeline::end_step(StepReport& report) const {
  report.end_ns = now_;
  report.coordinator = figures_;
  report.compute_ns = compute_ns_;
  report.exposed_comm_ns = exposed_ns_;
}

}  // namespace zp::sim
