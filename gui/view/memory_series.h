// The memory view's data: per rank, every category's total over time as a step function built
// from the trace's change samples, its peak, the breakdown at any time, and the columns the
// stacked area is drawn from. No ImGui or OpenGL.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <vector>

#include "core/trace/trace.h"
#include "gui/view/timeline_layout.h"

namespace zp::gui {

using CategoryBytes = std::array<std::int64_t, trace::kMemoryCategoryCount>;

// Device categories summed (what PyTorch counts as allocated).
std::int64_t device_total(const CategoryBytes& bytes);

// One rank's memory: at times[i] the categories hold totals[i] until times[i + 1].
struct MemorySeries {
  std::int32_t rank = 0;
  std::vector<trace::TimeNs> times;  // strictly increasing
  std::vector<CategoryBytes> totals;
  std::vector<trace::TimeNs> reserved_times;  // strictly increasing
  std::vector<std::int64_t> reserved;
};

// Per rank class, in Trace::ranks order. Samples apply in time order; of several at one time for
// one category, the later row wins (traces/FORMAT.md).
std::vector<MemorySeries> build_memory_series(const trace::Trace& trace);

// The totals at time `t`: all zero before the first sample.
CategoryBytes breakdown_at(const MemorySeries& series, double t);
// Reserved bytes at `t`, 0 before the first sample.
std::int64_t reserved_at(const MemorySeries& series, double t);

// The device peak: the first time the device total reaches its maximum.
struct Peak {
  trace::TimeNs time = 0;
  std::int64_t bytes = 0;
  CategoryBytes breakdown{};
};
std::optional<Peak> device_peak(const MemorySeries& series);

// Categories at `t` with bytes > 0, largest first (ties in category order).
struct CategoryShare {
  trace::MemoryCategory category = trace::MemoryCategory::kActivations;
  std::int64_t bytes = 0;
};
std::vector<CategoryShare> largest_at(const MemorySeries& series, double t);

// The `limit` latest all-gathers of `rank` started at or before `t`, heaviest first: the closest
// the trace comes to the largest live tensors (it records no tensors and no releases).
std::vector<std::uint32_t> recent_gathers(const trace::Trace& trace, std::int32_t rank, double t,
                                          std::size_t limit);

// The `n` largest allocations of `rank` live at `t` (start <= t < end), as indices into
// trace.allocations, largest first (ties: the earlier start, then the earlier row). An allocation
// freed at `t` is no longer live, one made at `t` is: the state after everything at `t`, as
// breakdown_at gives it. Empty for a trace without allocations (format version 1 and 2).
std::vector<std::uint32_t> largest_live(const trace::Trace& trace, std::int32_t rank,
                                        trace::TimeNs t, std::size_t n);
// The `n` largest allocations of `rank` freed at `t` that were made before it, in the same order.
// A peak is often the moment a buffer's successor is made and the buffer itself is freed: these
// were live at the peak though no longer after it, so the panel lists them beside largest_live.
std::vector<std::uint32_t> largest_freed_at(const trace::Trace& trace, std::int32_t rank,
                                            trace::TimeNs t, std::size_t n);

// One pixel column of the stacked area: the device categories stacked in category order at the
// sample with the highest device total inside the column, so no peak is lost when many samples
// share a pixel.
struct MemoryColumn {
  float x0 = 0;
  float x1 = 0;
  CategoryBytes bytes{};
};
std::vector<MemoryColumn> memory_columns(const MemorySeries& series, const TimeAxis& axis,
                                         float column_px);

// Colour of a memory category in the stacked area and its legend.
Color category_color(trace::MemoryCategory category);

// The GPU's memory from the trace's metadata (summary.gpu_memory), if it says.
std::optional<std::int64_t> gpu_memory_limit(const trace::Trace& trace);

}  // namespace zp::gui
