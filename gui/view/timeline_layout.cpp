#include "gui/view/timeline_layout.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <limits>

#include "core/util/error.h"

namespace zp::gui {

using trace::OpKind;
using trace::StreamKind;
using trace::TimeNs;

Color op_color(OpKind kind) {
  // Compute in warm colours, communication in cool ones, copies in greys.
  static constexpr std::array<Color, static_cast<std::size_t>(OpKind::kCount)> kColors = {
      rgba(76, 153, 230),   // forward
      rgba(230, 126, 34),   // backward
      rgba(155, 89, 182),   // recompute
      rgba(231, 76, 60),    // optimizer_step
      rgba(46, 204, 113),   // allgather
      rgba(241, 196, 15),   // reduce_scatter
      rgba(26, 188, 156),   // all_reduce
      rgba(52, 152, 219),   // broadcast
      rgba(236, 112, 160),  // send
      rgba(192, 57, 143),   // recv
      rgba(149, 165, 166),  // copy_to_host
      rgba(189, 195, 199),  // copy_to_device
      rgba(230, 0, 230),    // release (not drawn on the timeline)
  };
  const auto i = static_cast<std::size_t>(kind);
  ZP_CHECK(i < kColors.size(), "op kind ", i);
  return kColors[i];
}

Color stream_color(StreamKind stream) {
  static constexpr std::array<Color, trace::kStreamCount> kColors = {
      rgba(120, 130, 150),  // compute
      rgba(30, 140, 80),    // allgather
      rgba(170, 140, 20),   // reduce_scatter
      rgba(110, 110, 110),  // h2d
      rgba(140, 140, 140),  // d2h
      rgba(170, 80, 120),   // pipe_send
      rgba(130, 40, 100),   // pipe_recv
      rgba(100, 100, 160),  // host
  };
  const auto i = static_cast<std::size_t>(stream);
  ZP_CHECK(i < kColors.size(), "stream ", i);
  return kColors[i];
}

Color merged_color(Color kind_color) {
  const auto dim = [](std::uint8_t c) { return static_cast<std::uint8_t>(c * 7 / 10); };
  return rgba(dim(red(kind_color)), dim(green(kind_color)), dim(blue(kind_color)));
}

TimeView fit_view(TimeNs begin, TimeNs end) {
  double span = static_cast<double>(end - begin);
  if (span < kMinSpanNs) span = kMinSpanNs;
  const double margin = span * 0.02;
  return {static_cast<double>(begin) - margin, static_cast<double>(begin) + span + margin};
}

TimeView zoom_view(const TimeView& view, double anchor, double factor) {
  ZP_CHECK(factor > 0, "zoom factor ", factor);
  const double span = std::max(view.span() / factor, kMinSpanNs);
  const double ratio = view.span() > 0 ? (anchor - view.begin) / view.span() : 0.5;
  const double begin = anchor - ratio * span;
  return {begin, begin + span};
}

TimeView pan_view(const TimeView& view, double delta_ns) {
  return {view.begin + delta_ns, view.end + delta_ns};
}

std::vector<double> axis_ticks(const TimeView& view, int target) {
  std::vector<double> ticks;
  if (target < 1 || view.span() <= 0) return ticks;
  const double raw = view.span() / target;
  const double power = std::pow(10.0, std::floor(std::log10(raw)));
  double step = power;
  for (double m : {1.0, 2.0, 5.0, 10.0}) {
    step = m * power;
    if (step >= raw) break;
  }
  // Multiples of the step, not a running sum, so rounding does not drift.
  for (double k = std::ceil(view.begin / step); k * step <= view.end; k += 1)
    ticks.push_back(k * step);
  return ticks;
}

namespace {
std::string with_unit(double value, const char* unit) {
  char text[48];
  if (value == 0) value = 0;  // no "-0" for a negative zero
  const double a = std::fabs(value);
  const int decimals = a >= 100 || a == std::floor(a) ? 0 : (a >= 10 ? 1 : 2);
  std::snprintf(text, sizeof(text), "%.*f %s", decimals, value, unit);
  return text;
}
}  // namespace

std::string format_duration(double ns) {
  const double a = std::fabs(ns);
  if (a >= 1e9) return with_unit(ns / 1e9, "s");
  if (a >= 1e6) return with_unit(ns / 1e6, "ms");
  if (a >= 1e3) return with_unit(ns / 1e3, "us");
  return with_unit(ns, "ns");
}

std::string format_bytes(double bytes) {
  static constexpr const char* kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = bytes;
  int unit = 0;
  while (std::fabs(v) >= 1024 && unit < 4) {
    v /= 1024;
    ++unit;
  }
  return with_unit(v, kUnits[unit]);
}

TimelineIndex build_index(const trace::Trace& trace) {
  TimelineIndex index;
  const std::size_t nranks = trace.ranks.size();
  // Bucket by (rank, stream) first: one sort per bucket, then a sweep assigns depths.
  std::vector<std::vector<std::uint32_t>> buckets(nranks * trace::kStreamCount);
  for (std::size_t i = 0; i < trace.ops.size(); ++i) {
    const trace::Op& op = trace.ops[i];
    ZP_CHECK(op.rank >= 0 && static_cast<std::size_t>(op.rank) < nranks, "op rank ", op.rank);
    // Releases are instants, not work: the modules table counts them, the lanes leave them out.
    if (op.kind == OpKind::kRelease) continue;
    buckets[static_cast<std::size_t>(op.rank) * trace::kStreamCount +
            static_cast<std::size_t>(op.stream)]
        .push_back(static_cast<std::uint32_t>(i));
  }
  std::vector<TimeNs> open_ends;  // ends of the ops enclosing the current one, outermost first
  for (std::size_t b = 0; b < buckets.size(); ++b) {
    std::vector<std::uint32_t>& ops = buckets[b];
    if (ops.empty()) continue;
    // Longest first on equal starts: an enclosing module comes before what it contains.
    std::sort(ops.begin(), ops.end(), [&](std::uint32_t x_index, std::uint32_t y_index) {
      const trace::Op& x = trace.ops[x_index];
      const trace::Op& y = trace.ops[y_index];
      if (x.start != y.start) return x.start < y.start;
      if (x.end != y.end) return x.end > y.end;
      return x_index < y_index;
    });
    const std::size_t first_lane = index.lanes.size();
    open_ends.clear();
    for (std::uint32_t i : ops) {
      const trace::Op& op = trace.ops[i];
      while (!open_ends.empty() && open_ends.back() <= op.start)
        open_ends.pop_back();
      const int depth = std::min(static_cast<int>(open_ends.size()), kMaxDepth - 1);
      if (static_cast<int>(open_ends.size()) < kMaxDepth) open_ends.push_back(op.end);
      while (index.lanes.size() <= first_lane + static_cast<std::size_t>(depth)) {
        Lane lane;
        lane.rank = static_cast<std::int32_t>(b / trace::kStreamCount);
        lane.stream = static_cast<StreamKind>(b % trace::kStreamCount);
        lane.depth = static_cast<int>(index.lanes.size() - first_lane);
        index.lanes.push_back(std::move(lane));
      }
      index.lanes[first_lane + static_cast<std::size_t>(depth)].ops.push_back(i);
    }
  }
  for (Lane& lane : index.lanes) {
    lane.starts.resize(lane.ops.size());
    lane.ends.resize(lane.ops.size());
    lane.kinds.resize(lane.ops.size());
    lane.max_ends.resize(lane.ops.size());
    TimeNs max_end = std::numeric_limits<TimeNs>::min();
    for (std::size_t i = 0; i < lane.ops.size(); ++i) {
      const trace::Op& op = trace.ops[lane.ops[i]];
      lane.starts[i] = op.start;
      lane.ends[i] = op.end;
      lane.kinds[i] = op.kind;
      max_end = std::max(max_end, op.end);
      lane.max_ends[i] = max_end;
    }
  }
  bool any = false;
  auto extend = [&](TimeNs t0, TimeNs t1) {
    index.begin = any ? std::min(index.begin, t0) : t0;
    index.end = any ? std::max(index.end, t1) : t1;
    any = true;
  };
  for (const trace::Op& op : trace.ops)
    extend(op.start, op.end);
  for (const trace::MemorySample& s : trace.memory)
    extend(s.time, s.time);
  for (const trace::ReservedSample& s : trace.reserved)
    extend(s.time, s.time);
  return index;
}

OpRange visible_ops(const Lane& lane, double t0, double t1) {
  // max_ends is non-decreasing: the first op whose prefix reaches t0 is the first that can.
  const auto first =
      std::lower_bound(lane.max_ends.begin(), lane.max_ends.end(), t0,
                       [](TimeNs e, double t) { return static_cast<double>(e) < t; }) -
      lane.max_ends.begin();
  const auto last =
      std::upper_bound(lane.starts.begin(), lane.starts.end(), t1,
                       [](double t, TimeNs s) { return t < static_cast<double>(s); }) -
      lane.starts.begin();
  OpRange range{static_cast<std::size_t>(first), static_cast<std::size_t>(last)};
  if (range.last < range.first) range.last = range.first;
  return range;
}

void layout_lane(const Lane& lane, const TimeAxis& axis, float merge_px, std::vector<Block>& out) {
  out.clear();
  const OpRange range = visible_ops(lane, axis.view.begin, axis.view.end);
  const double merge_ns = merge_px * axis.ns_per_px();
  const TimeNs* starts = lane.starts.data();
  const TimeNs* ends = lane.ends.data();
  const OpKind* kinds = lane.kinds.data();
  std::size_t i = range.first;
  while (i < range.last) {
    if (static_cast<double>(ends[i] - starts[i]) >= merge_ns) {
      out.push_back({axis.x(static_cast<double>(starts[i])), axis.x(static_cast<double>(ends[i])),
                     static_cast<std::uint32_t>(i), 1, op_color(kinds[i])});
      ++i;
      continue;
    }
    // Comparisons in nanoseconds: no pixel conversion per merged op.
    const double limit = static_cast<double>(starts[i]) + merge_ns;
    TimeNs end = ends[i];
    const OpKind kind = kinds[i];
    bool same_kind = true;
    std::array<TimeNs, static_cast<std::size_t>(OpKind::kCount)> busy{};
    busy[static_cast<std::size_t>(kind)] = ends[i] - starts[i];
    std::size_t j = i + 1;
    for (; j < range.last; ++j) {
      if (static_cast<double>(starts[j]) > limit ||
          static_cast<double>(ends[j] - starts[j]) >= merge_ns)
        break;
      end = std::max(end, ends[j]);
      same_kind = same_kind && kinds[j] == kind;
      busy[static_cast<std::size_t>(kinds[j])] += ends[j] - starts[j];
    }
    const float x0 = axis.x(static_cast<double>(starts[i]));
    const float x1 = std::max(axis.x(static_cast<double>(end)), x0 + merge_px);
    Color color = op_color(kind);
    if (!same_kind) {
      // The kind that takes most of the block's time, dimmed: still readable, not one op.
      const auto top = std::max_element(busy.begin(), busy.end()) - busy.begin();
      color = merged_color(op_color(static_cast<OpKind>(top)));
    }
    out.push_back(
        {x0, x1, static_cast<std::uint32_t>(i), static_cast<std::uint32_t>(j - i), color});
    i = j;
  }
}

std::int64_t op_at(const trace::Trace& trace, const Lane& lane, double t, double slack_ns) {
  const OpRange range = visible_ops(lane, t - slack_ns, t + slack_ns);
  std::int64_t best = -1;
  TimeNs best_width = std::numeric_limits<TimeNs>::max();
  for (std::size_t i = range.first; i < range.last; ++i) {
    const trace::Op& op = trace.ops[lane.ops[i]];
    if (static_cast<double>(op.start) - slack_ns > t || static_cast<double>(op.end) + slack_ns < t)
      continue;
    const TimeNs width = op.end - op.start;
    if (width < best_width) {
      best_width = width;
      best = lane.ops[i];
    }
  }
  return best;
}

Rows layout_rows(const TimelineIndex& index, float top, const RowMetrics& metrics) {
  Rows rows;
  float y = top;
  std::int32_t rank = -1;
  for (std::size_t i = 0; i < index.lanes.size(); ++i) {
    const Lane& lane = index.lanes[i];
    if (lane.rank != rank) {
      if (rank >= 0) y += metrics.gap;
      rank = lane.rank;
      rows.headers.push_back({rank, y});
      y += metrics.header;
    }
    rows.lanes.push_back({i, y, y + metrics.lane});
    y += metrics.lane;
  }
  rows.height = y - top;
  return rows;
}

}  // namespace zp::gui
