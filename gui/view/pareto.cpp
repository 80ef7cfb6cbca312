#include "gui/view/pareto.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <limits>

#include "core/util/error.h"

namespace zp::gui {

namespace {

[[noreturn]] void bad(const std::string& origin, const std::string& key, const std::string& what) {
  throw UserError(ErrorKind::kType, SourceLocation{origin, 0, 0, key}, what);
}

std::int64_t integer(const Json& j, const char* key, const std::string& origin,
                     const std::string& path) {
  const auto it = j.find(key);
  if (it == j.end()) bad(origin, path + key, "missing");
  if (!it->is_number()) bad(origin, path + key, "not a number");
  return it->is_number_integer() ? it->get<std::int64_t>()
                                 : static_cast<std::int64_t>(std::llround(it->get<double>()));
}

// A point from {"peak_memory_bytes", "step_time_ns"} in `j` (or in j["predicted"]).
TunePoint point(const Json& j, const std::string& origin, const std::string& path) {
  if (!j.is_object()) bad(origin, path, "not an object");
  TunePoint p;
  const Json* figures = &j;
  std::string fpath = path;
  if (j.contains("predicted") && j["predicted"].is_object()) {
    figures = &j["predicted"];
    fpath += "predicted.";
  }
  p.memory = integer(*figures, "peak_memory_bytes", origin, fpath);
  p.step_ns = integer(*figures, "step_time_ns", origin, fpath);
  if (j.contains("values")) p.values = j["values"];
  if (j.contains("trace")) {
    if (!j["trace"].is_string()) bad(origin, path + "trace", "not a string");
    const std::filesystem::path trace = j["trace"].get<std::string>();
    p.trace = (trace.is_absolute() ? trace : std::filesystem::path(origin).parent_path() / trace)
                  .string();
  }
  return p;
}

}  // namespace

bool is_tune_report(const Json& json) {
  return json.is_object() && json.contains("pareto") && json["pareto"].is_array();
}

TuneReport read_tune_report(const Json& json, const std::string& origin) {
  if (!is_tune_report(json)) bad(origin, "pareto", "not a tuning report: no 'pareto' list");
  TuneReport r;
  if (json.contains("run") && json["run"].is_string()) r.run = json["run"].get<std::string>();
  if (json.contains("objective") && json["objective"].is_string())
    r.objective = json["objective"].get<std::string>();
  if (json.contains("memory_budget_bytes") && json["memory_budget_bytes"].is_number())
    r.memory_budget = json["memory_budget_bytes"].get<std::int64_t>();
  const Json& list = json["pareto"];
  for (std::size_t i = 0; i < list.size(); ++i)
    r.pareto.push_back(point(list[i], origin, "pareto[" + std::to_string(i) + "]."));
  std::stable_sort(r.pareto.begin(), r.pareto.end(),
                   [](const TunePoint& a, const TunePoint& b) { return a.step_ns < b.step_ns; });
  if (json.contains("predicted") && json["predicted"].is_object()) {
    TunePoint chosen = point(json["predicted"], origin, "predicted.");
    if (json.contains("chosen") && json["chosen"].is_object()) {
      chosen.values = Json::object();
      for (const auto& [name, knob] : json["chosen"].items())
        chosen.values[name] = knob.is_object() && knob.contains("value") ? knob["value"] : knob;
    }
    r.chosen = chosen;
  }
  if (json.contains("baseline") && json["baseline"].is_object())
    r.baseline = point(json["baseline"], origin, "baseline.");
  return r;
}

float ParetoPlot::x(double step_ns) const {
  return rect.x0 + static_cast<float>((step_ns - t_min) / (t_max - t_min)) * (rect.x1 - rect.x0);
}

float ParetoPlot::y(double memory) const {
  return rect.y1 -
         static_cast<float>((memory - mem_min) / (mem_max - mem_min)) * (rect.y1 - rect.y0);
}

ParetoPlot pareto_plot(const TuneReport& report, const PlotRect& rect) {
  ParetoPlot plot;
  plot.rect = rect;
  double t0 = std::numeric_limits<double>::max(), t1 = std::numeric_limits<double>::lowest();
  double m0 = t0, m1 = t1;
  auto take = [&](const TunePoint& p) {
    t0 = std::min(t0, static_cast<double>(p.step_ns));
    t1 = std::max(t1, static_cast<double>(p.step_ns));
    m0 = std::min(m0, static_cast<double>(p.memory));
    m1 = std::max(m1, static_cast<double>(p.memory));
  };
  for (const TunePoint& p : report.pareto)
    take(p);
  if (report.chosen) take(*report.chosen);
  if (report.baseline) take(*report.baseline);
  if (report.memory_budget) {
    m0 = std::min(m0, static_cast<double>(*report.memory_budget));
    m1 = std::max(m1, static_cast<double>(*report.memory_budget));
  }
  if (t1 < t0) t0 = 0, t1 = 1;
  if (m1 < m0) m0 = 0, m1 = 1;
  // A single point or a flat front still needs a non-empty range.
  const double tm = std::max((t1 - t0) * 0.05, std::max(std::fabs(t0) * 0.05, 1.0));
  const double mm = std::max((m1 - m0) * 0.05, std::max(std::fabs(m0) * 0.05, 1.0));
  plot.t_min = t0 - tm;
  plot.t_max = t1 + tm;
  plot.mem_min = m0 - mm;
  plot.mem_max = m1 + mm;
  return plot;
}

int pick_point(const TuneReport& report, const ParetoPlot& plot, float mx, float my, float radius) {
  int best = -1;
  float best_d2 = radius * radius;
  for (std::size_t i = 0; i < report.pareto.size(); ++i) {
    const float dx = plot.x(static_cast<double>(report.pareto[i].step_ns)) - mx;
    const float dy = plot.y(static_cast<double>(report.pareto[i].memory)) - my;
    const float d2 = dx * dx + dy * dy;
    if (d2 <= best_d2) {
      best_d2 = d2;
      best = static_cast<int>(i);
    }
  }
  return best;
}

}  // namespace zp::gui
