// The compare view's data: two traces (predicted and measured, before and after tuning) reduced
// to the figures that differ, memory and traffic, for one rank class of each. No ImGui or OpenGL.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/trace/trace.h"

namespace zp::gui {

enum class Unit { kBytes, kNanoseconds, kCount };

// One figure of both traces: b - a in `delta`, and b / a - 1 in `relative` (0 when a is 0).
struct DiffRow {
  std::string what;  // "device peak", "peak activations", "allgather bytes"
  Unit unit = Unit::kBytes;
  double a = 0;
  double b = 0;
  double delta = 0;
  double relative = 0;
};

// Step span (first op start to last op end), device peak, reserved peak, each device or host
// category's own peak, and per op kind of the collectives and copies their bytes and count; a
// figure that is zero in both is left out. Largest |delta| is not forced first: rows keep this
// order so the list reads the same for every pair.
std::vector<DiffRow> compare_traces(const trace::Trace& a, std::int32_t rank_a,
                                    const trace::Trace& b, std::int32_t rank_b);

// Both traces on one time axis: each shifted to start at 0, the axis as long as the longer one.
struct SharedAxis {
  trace::TimeNs shift_a = 0;  // subtract from a's times
  trace::TimeNs shift_b = 0;
  trace::TimeNs length = 0;
};
SharedAxis shared_axis(trace::TimeNs a_begin, trace::TimeNs a_end, trace::TimeNs b_begin,
                       trace::TimeNs b_end);

}  // namespace zp::gui
