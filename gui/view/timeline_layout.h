// What the timeline draws and where: the visible time range, one lane per rank and stream, and
// the blocks of a lane at the current zoom, small ops merged so a million of them stay cheap.
// Plain functions with no ImGui or OpenGL, so every drawing decision is testable.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/trace/trace.h"

namespace zp::gui {

// RGBA packed as ImGui's IM_COL32 does (red in the low byte), so it can be handed to ImGui as is.
using Color = std::uint32_t;
constexpr Color rgba(std::uint8_t r, std::uint8_t g, std::uint8_t b, std::uint8_t a = 255) {
  return static_cast<Color>(r) | (static_cast<Color>(g) << 8) | (static_cast<Color>(b) << 16) |
         (static_cast<Color>(a) << 24);
}
constexpr std::uint8_t red(Color c) {
  return static_cast<std::uint8_t>(c & 0xff);
}
constexpr std::uint8_t green(Color c) {
  return static_cast<std::uint8_t>((c >> 8) & 0xff);
}
constexpr std::uint8_t blue(Color c) {
  return static_cast<std::uint8_t>((c >> 16) & 0xff);
}

// One colour per op kind: the kinds of one stream differ (forward, backward, recompute on compute).
Color op_color(trace::OpKind kind);
// A block of merged ops of several kinds: the colour of the kind that takes most of its time,
// dimmed, so it reads as that kind but not as one op.
Color merged_color(Color kind_color);
// The stream's own colour (legends, labels).
Color stream_color(trace::StreamKind stream);

// The part of the time axis on screen, in nanoseconds (double: zooming needs fractions).
struct TimeView {
  double begin = 0;
  double end = 1;
  double span() const { return end - begin; }
  bool operator==(const TimeView&) const = default;
};

// The narrowest view: zooming in further shows nothing new.
inline constexpr double kMinSpanNs = 100;

// All of [begin, end], with a margin of 2% either side so the first and last ops are not cut.
TimeView fit_view(trace::TimeNs begin, trace::TimeNs end);
// Zooms by `factor` (> 1 zooms in) keeping the time at `anchor` where it is on screen; the span
// never goes below kMinSpanNs.
TimeView zoom_view(const TimeView& view, double anchor, double factor);
// Moves by `delta_ns` (negative: to the left).
TimeView pan_view(const TimeView& view, double delta_ns);

// Maps the view onto `width` pixels starting at `x0`.
struct TimeAxis {
  TimeView view;
  float x0 = 0;
  float width = 1;
  double ns_per_px() const { return view.span() / width; }
  float x(double t) const { return x0 + static_cast<float>((t - view.begin) / ns_per_px()); }
  double time(float px) const { return view.begin + (px - x0) * ns_per_px(); }
};

// Ticks at a round step (1, 2 or 5 times a power of ten ns) so that about `target` fit the view.
std::vector<double> axis_ticks(const TimeView& view, int target);
// "1.5 ms", "320 us", "12 ns", "2.25 s".
std::string format_duration(double ns);
// "1.5 GiB", "320 KiB", "12 B".
std::string format_bytes(double bytes);

// Ops of one stream of one rank at one nesting depth (a module inside a module is one deeper;
// ops that overlap without nesting go deeper too), ordered by start, with what the binary searches
// need. Depth 0 holds the outermost ops.
struct Lane {
  std::int32_t rank = 0;
  trace::StreamKind stream = trace::StreamKind::kCompute;
  int depth = 0;
  std::vector<std::uint32_t> ops;  // indices into Trace::ops, by start then end (longest first)
  // Copies of the fields layout reads, side by side, so a scan does not touch the ops themselves.
  std::vector<trace::TimeNs> starts;  // starts[i] = start of ops[i]
  std::vector<trace::TimeNs> ends;
  std::vector<trace::OpKind> kinds;
  std::vector<trace::TimeNs> max_ends;  // max_ends[i] = latest end among ops[0..i]
};

// Ops nested deeper than this share the deepest lane.
inline constexpr int kMaxDepth = 12;

// The lanes of a trace, by rank, then stream in StreamKind order, then depth; streams a rank never
// uses have no lane. Release ops (instants) are in no lane. `begin`/`end` span every op and memory
// sample.
struct TimelineIndex {
  std::vector<Lane> lanes;
  trace::TimeNs begin = 0;
  trace::TimeNs end = 0;
};
TimelineIndex build_index(const trace::Trace& trace);

// The range [first, last) of lane.ops that may be visible in [t0, t1]: ops that end before t0 or
// start after t1 are out. Binary searches, so a visible slice of a long lane costs its own size.
struct OpRange {
  std::size_t first = 0;
  std::size_t last = 0;
};
OpRange visible_ops(const Lane& lane, double t0, double t1);

// One rectangle to draw. `count` > 1: ops merged because each was narrower than the merge width.
struct Block {
  float x0 = 0;
  float x1 = 0;
  std::uint32_t first = 0;  // position in lane.ops of the first op in the block
  std::uint32_t count = 0;
  Color color = 0;
};

// The blocks of `lane` in `axis`. An op at least `merge_px` wide is its own block, in its kind's
// colour. Consecutive narrower ops merge while each starts within `merge_px` of the block's start;
// the block then runs to the latest end among them and is at least `merge_px` wide, in the kind's
// colour when they share one, else merged_color() of the kind with the most time. Blocks are
// appended to `out` (cleared first).
void layout_lane(const Lane& lane, const TimeAxis& axis, float merge_px, std::vector<Block>& out);

// The op under time `t` in `lane` (within `slack_ns` of its edges): of several (overlapping ops
// share the deepest lane), the shortest. -1 when none. Returns an index into Trace::ops.
std::int64_t op_at(const trace::Trace& trace, const Lane& lane, double t, double slack_ns);

// Vertical placement: per rank a header row with its label, then one row per lane (the deeper
// lanes of a stream under its first).
struct RowMetrics {
  float header = 18;  // the rank's label
  float lane = 22;    // one stream at one depth
  float gap = 6;      // between ranks
};
struct LaneRow {
  std::size_t lane = 0;  // index into TimelineIndex::lanes
  float y0 = 0;
  float y1 = 0;
};
struct RankHeader {
  std::int32_t rank = 0;
  float y0 = 0;
};
struct Rows {
  std::vector<RankHeader> headers;
  std::vector<LaneRow> lanes;
  float height = 0;  // from `top` to below the last row
};
// Rows from `top` down. A lane's block is drawn in [y0 + 1, y1 - 1].
Rows layout_rows(const TimelineIndex& index, float top, const RowMetrics& metrics);

}  // namespace zp::gui
