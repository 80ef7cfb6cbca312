#include "sim/simulate.h"

#include <algorithm>
#include <string>
#include <utility>

#include "core/util/units.h"
#include "sim/report/result_json.h"
#include "sim/step/data_parallel_step.h"
#include "sim/step/pipeline_step.h"
#include "sim/step/zero_step.h"

namespace zp::sim {
namespace {

// Above this share of the step spent waiting for parameters, prefetching is not keeping up.
constexpr double kStarvedShare = 0.10;

std::string percent(double fraction) {
  return std::to_string(static_cast<int>(fraction * 100 + 0.5)) + "%";
}

std::string largest_categories(const MemorySnapshot& peak, int count) {
  std::vector<std::pair<std::int64_t, MemoryCategory>> parts;
  for (std::size_t c = 0; c < trace::kMemoryCategoryCount; ++c) {
    const auto category = static_cast<MemoryCategory>(c);
    if (trace::on_device(category) && peak.bytes[c] > 0)
      parts.emplace_back(peak.bytes[c], category);
  }
  std::sort(parts.begin(), parts.end(),
            [](const auto& a, const auto& b) { return a.first > b.first; });
  std::string out;
  for (int i = 0; i < count && i < static_cast<int>(parts.size()); ++i) {
    out += (i ? ", " : "") +
           std::string(trace::to_string(parts[static_cast<std::size_t>(i)].second)) + " " +
           units::format_bytes(static_cast<double>(parts[static_cast<std::size_t>(i)].first));
  }
  return out;
}

}  // namespace

std::vector<Warning> result_warnings(const RunSpec& run, const SimulationResult& result) {
  std::vector<Warning> out;
  const std::int64_t capacity = run.cluster.gpu_memory;
  for (const RankReport& r : result.ranks) {
    const std::int64_t worst = std::max(r.peak.allocated, r.peak_reserved);
    if (capacity > 0 && worst > capacity) {
      out.push_back({{},
                     r.label + ": over GPU memory: the peak needs " +
                         units::format_bytes(static_cast<double>(worst)) + " (allocated " +
                         units::format_bytes(static_cast<double>(r.peak.allocated)) +
                         ", reserved " + units::format_bytes(static_cast<double>(r.peak_reserved)) +
                         ") of " + units::format_bytes(static_cast<double>(capacity)) +
                         "; largest at the peak: " + largest_categories(r.peak, 3) + ", during " +
                         r.peak_running});
    }
    // Every GPU of a node runs a rank like this one.
    const std::int64_t node_host = r.peak_host * run.cluster.gpus_per_node;
    if (run.cluster.host_memory > 0 && node_host > run.cluster.host_memory) {
      out.push_back({{},
                     r.label + ": over host memory: the " +
                         std::to_string(run.cluster.gpus_per_node) + " ranks of a node need " +
                         units::format_bytes(static_cast<double>(node_host)) + " of its " +
                         units::format_bytes(static_cast<double>(run.cluster.host_memory))});
    }
    for (const StepReport& s : r.steps) {
      if (s.time_ns() > 0 && s.trace_mode == "complete" &&
          static_cast<double>(s.exposed_gather_ns) >
              kStarvedShare * static_cast<double>(s.time_ns())) {
        out.push_back({{},
                       r.label + ": prefetch starved in step " + std::to_string(s.step) +
                           ": the GPU waited " + units::format_duration_ns(s.exposed_gather_ns) +
                           " (" +
                           percent(static_cast<double>(s.exposed_gather_ns) /
                                   static_cast<double>(s.time_ns())) +
                           " of the step) for parameters; a larger stage3_prefetch_bucket_size "
                           "or stage3_max_live_parameters lets gathers start earlier"});
      }
      if (s.coordinator.invalidations > 0) {
        out.push_back({{},
                       r.label + ": the ZeRO-3 trace was invalidated " +
                           std::to_string(s.coordinator.invalidations) + " time(s) in step " +
                           std::to_string(s.step) +
                           ": modules ran in another order than recorded, so prefetching stops "
                           "until the next step records it again"});
      }
    }
  }
  return out;
}

SimulationResult simulate(const RunSpec& run, const SimOptions& options, trace::Trace* trace) {
  if (run.parallel.world() < 1 || run.cluster.total_gpus() < 1) {
    throw UserError(ErrorKind::kValue, {run.file.string(), 0, 0, "cluster"},
                    "the run has no GPUs to simulate");
  }
  if (options.steps < 0) {
    throw UserError(ErrorKind::kValue, {"", 0, 0, "--steps"},
                    "--steps must be >= 0, got " + std::to_string(options.steps));
  }
  SimulationResult result = run.parallel.pipeline > 1 ? simulate_pipeline(run, options, trace)
                            : run.deepspeed.zero.stage < 3
                                ? simulate_data_parallel(run, options, trace)
                                : simulate_zero3(run, options, trace);
  for (Warning& w : result_warnings(run, result))
    result.warnings.push_back(std::move(w));
  if (trace) {
    trace->source = trace::Source::kSimulated;
    trace->metadata["run"] = run.name;
    trace->metadata["model"] = run.model.label;
    trace->metadata["cluster"] = run.cluster.name;
    trace->metadata["summary"] = result_to_json(result);
  }
  return result;
}

}  // namespace zp::sim
