// The planner view's data: the Pareto front of a tuning report (`zeroplan tune --json`), mapped
// onto a plot of step time (x) against peak memory (y), and picking a point. No ImGui or OpenGL.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/config/document.h"

namespace zp::gui {

struct TunePoint {
  std::int64_t memory = 0;   // peak_memory_bytes
  std::int64_t step_ns = 0;  // step_time_ns
  Json values;               // knob name -> value; null for the baseline
  // The point's predicted trace, when the report names one ("trace", relative to the report).
  std::string trace;
};

struct TuneReport {
  std::string run;
  std::string objective;
  std::optional<std::int64_t> memory_budget;
  std::vector<TunePoint> pareto;  // by step time
  std::optional<TunePoint> chosen;
  std::optional<TunePoint> baseline;  // the user's own configuration
};

// True when `json` looks like a tuning report (it has a "pareto" list) rather than a trace.
bool is_tune_report(const Json& json);
// A UserError naming `origin` and the key for a report that lacks a field or has a wrong type.
// A point's "trace" is resolved against the folder of `origin`.
TuneReport read_tune_report(const Json& json, const std::string& origin);

// The plotted ranges: every point, the baseline and the budget, with a 5% margin.
struct PlotRect {
  float x0 = 0, y0 = 0, x1 = 1, y1 = 1;  // screen pixels, y down
};
struct ParetoPlot {
  PlotRect rect;
  double t_min = 0, t_max = 1;      // step time along x
  double mem_min = 0, mem_max = 1;  // memory along y, upwards
  float x(double step_ns) const;
  float y(double memory) const;
};
ParetoPlot pareto_plot(const TuneReport& report, const PlotRect& rect);

// The Pareto point nearest (mx, my) within `radius` pixels, or -1.
int pick_point(const TuneReport& report, const ParetoPlot& plot, float mx, float my, float radius);

}  // namespace zp::gui
