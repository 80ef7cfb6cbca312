#include "gui/view/memory_series.h"

#include <algorithm>
#include <numeric>
#include <utility>

#include "core/util/error.h"

namespace zp::gui {

using trace::MemoryCategory;
using trace::TimeNs;

std::int64_t device_total(const CategoryBytes& bytes) {
  std::int64_t sum = 0;
  for (std::size_t c = 0; c < trace::kMemoryCategoryCount; ++c)
    if (trace::on_device(static_cast<MemoryCategory>(c))) sum += bytes[c];
  return sum;
}

std::vector<MemorySeries> build_memory_series(const trace::Trace& trace) {
  std::vector<MemorySeries> all(trace.ranks.size());
  for (std::size_t r = 0; r < all.size(); ++r)
    all[r].rank = static_cast<std::int32_t>(r);

  // Row order within one time must survive the sort: the later row wins.
  std::vector<std::uint32_t> order(trace.memory.size());
  std::iota(order.begin(), order.end(), 0u);
  std::stable_sort(order.begin(), order.end(), [&](std::uint32_t a, std::uint32_t b) {
    const trace::MemorySample& x = trace.memory[a];
    const trace::MemorySample& y = trace.memory[b];
    if (x.rank != y.rank) return x.rank < y.rank;
    return x.time < y.time;
  });
  std::vector<CategoryBytes> current(all.size(), CategoryBytes{});
  for (std::uint32_t i : order) {
    const trace::MemorySample& s = trace.memory[i];
    ZP_CHECK(s.rank >= 0 && static_cast<std::size_t>(s.rank) < all.size(), "memory rank ", s.rank);
    MemorySeries& series = all[static_cast<std::size_t>(s.rank)];
    CategoryBytes& now = current[static_cast<std::size_t>(s.rank)];
    now[static_cast<std::size_t>(s.category)] = s.bytes;
    if (!series.times.empty() && series.times.back() == s.time) {
      series.totals.back() = now;
    } else {
      series.times.push_back(s.time);
      series.totals.push_back(now);
    }
  }

  std::vector<std::uint32_t> rorder(trace.reserved.size());
  std::iota(rorder.begin(), rorder.end(), 0u);
  std::stable_sort(rorder.begin(), rorder.end(), [&](std::uint32_t a, std::uint32_t b) {
    const trace::ReservedSample& x = trace.reserved[a];
    const trace::ReservedSample& y = trace.reserved[b];
    if (x.rank != y.rank) return x.rank < y.rank;
    return x.time < y.time;
  });
  for (std::uint32_t i : rorder) {
    const trace::ReservedSample& s = trace.reserved[i];
    ZP_CHECK(s.rank >= 0 && static_cast<std::size_t>(s.rank) < all.size(), "reserved rank ",
             s.rank);
    MemorySeries& series = all[static_cast<std::size_t>(s.rank)];
    if (!series.reserved_times.empty() && series.reserved_times.back() == s.time) {
      series.reserved.back() = s.bytes;
    } else {
      series.reserved_times.push_back(s.time);
      series.reserved.push_back(s.bytes);
    }
  }
  return all;
}

namespace {
// Index of the last time <= t, or -1.
std::ptrdiff_t index_at(const std::vector<TimeNs>& times, double t) {
  const auto it = std::upper_bound(times.begin(), times.end(), t,
                                   [](double v, TimeNs s) { return v < static_cast<double>(s); });
  return (it - times.begin()) - 1;
}
}  // namespace

CategoryBytes breakdown_at(const MemorySeries& series, double t) {
  const std::ptrdiff_t i = index_at(series.times, t);
  return i < 0 ? CategoryBytes{} : series.totals[static_cast<std::size_t>(i)];
}

std::int64_t reserved_at(const MemorySeries& series, double t) {
  const std::ptrdiff_t i = index_at(series.reserved_times, t);
  return i < 0 ? 0 : series.reserved[static_cast<std::size_t>(i)];
}

std::optional<Peak> device_peak(const MemorySeries& series) {
  std::optional<Peak> peak;
  for (std::size_t i = 0; i < series.times.size(); ++i) {
    const std::int64_t total = device_total(series.totals[i]);
    if (!peak || total > peak->bytes) peak = Peak{series.times[i], total, series.totals[i]};
  }
  return peak;
}

std::vector<CategoryShare> largest_at(const MemorySeries& series, double t) {
  const CategoryBytes bytes = breakdown_at(series, t);
  std::vector<CategoryShare> out;
  for (std::size_t c = 0; c < bytes.size(); ++c)
    if (bytes[c] > 0) out.push_back({static_cast<MemoryCategory>(c), bytes[c]});
  std::stable_sort(out.begin(), out.end(), [](const CategoryShare& a, const CategoryShare& b) {
    return a.bytes > b.bytes;
  });
  return out;
}

std::vector<std::uint32_t> recent_gathers(const trace::Trace& trace, std::int32_t rank, double t,
                                          std::size_t limit) {
  // The trace records no releases, so the latest gathers stand for what is live.
  std::vector<std::uint32_t> gathers;
  for (std::size_t i = 0; i < trace.ops.size(); ++i) {
    const trace::Op& op = trace.ops[i];
    if (op.rank == rank && op.kind == trace::OpKind::kAllGather &&
        static_cast<double>(op.start) <= t)
      gathers.push_back(static_cast<std::uint32_t>(i));
  }
  std::sort(gathers.begin(), gathers.end(), [&](std::uint32_t a, std::uint32_t b) {
    return trace.ops[a].start > trace.ops[b].start;
  });
  std::vector<std::uint32_t> out;
  for (std::uint32_t i : gathers) {
    if (out.size() >= limit) break;
    out.push_back(i);
  }
  std::stable_sort(out.begin(), out.end(), [&](std::uint32_t a, std::uint32_t b) {
    return trace.ops[a].bytes > trace.ops[b].bytes;
  });
  return out;
}

namespace {

// The `n` largest of `rows` (indices into trace.allocations), largest first; ties: the earlier
// start, then the earlier row.
std::vector<std::uint32_t> largest_of(const trace::Trace& trace, std::vector<std::uint32_t> live,
                                      std::size_t n) {
  const auto larger = [&](std::uint32_t x, std::uint32_t y) {
    const trace::Allocation& a = trace.allocations[x];
    const trace::Allocation& b = trace.allocations[y];
    if (a.bytes != b.bytes) return a.bytes > b.bytes;
    if (a.start != b.start) return a.start < b.start;
    return x < y;
  };
  const std::size_t keep = std::min(n, live.size());
  std::partial_sort(live.begin(), live.begin() + static_cast<std::ptrdiff_t>(keep), live.end(),
                    larger);
  live.resize(keep);
  return live;
}

}  // namespace

std::vector<std::uint32_t> largest_live(const trace::Trace& trace, std::int32_t rank,
                                        trace::TimeNs t, std::size_t n) {
  std::vector<std::uint32_t> live;
  for (std::size_t i = 0; i < trace.allocations.size(); ++i) {
    const trace::Allocation& a = trace.allocations[i];
    if (a.rank == rank && a.start <= t && t < a.end) live.push_back(static_cast<std::uint32_t>(i));
  }
  return largest_of(trace, std::move(live), n);
}

std::vector<std::uint32_t> largest_freed_at(const trace::Trace& trace, std::int32_t rank,
                                            trace::TimeNs t, std::size_t n) {
  std::vector<std::uint32_t> freed;
  for (std::size_t i = 0; i < trace.allocations.size(); ++i) {
    const trace::Allocation& a = trace.allocations[i];
    if (a.rank == rank && a.start < t && a.end == t) freed.push_back(static_cast<std::uint32_t>(i));
  }
  return largest_of(trace, std::move(freed), n);
}

std::vector<MemoryColumn> memory_columns(const MemorySeries& series, const TimeAxis& axis,
                                         float column_px) {
  ZP_CHECK(column_px > 0, "column width ", column_px);
  std::vector<MemoryColumn> out;
  if (series.times.empty()) return out;
  const double ns_per_px = axis.ns_per_px();
  for (float x = axis.x0; x < axis.x0 + axis.width; x += column_px) {
    const double ta = axis.view.begin + (x - axis.x0) * ns_per_px;
    const double tb = ta + column_px * ns_per_px;
    std::ptrdiff_t i = index_at(series.times, ta);
    MemoryColumn column{x, std::min(x + column_px, axis.x0 + axis.width), CategoryBytes{}};
    std::int64_t best = -1;
    if (i >= 0) {
      column.bytes = series.totals[static_cast<std::size_t>(i)];
      best = device_total(column.bytes);
    }
    for (std::size_t j = static_cast<std::size_t>(i + 1);
         j < series.times.size() && static_cast<double>(series.times[j]) < tb; ++j) {
      const std::int64_t total = device_total(series.totals[j]);
      if (total > best) {
        best = total;
        column.bytes = series.totals[j];
      }
    }
    out.push_back(column);
  }
  return out;
}

Color category_color(MemoryCategory category) {
  static constexpr std::array<Color, trace::kMemoryCategoryCount> kColors = {
      rgba(52, 101, 164),   // param_partitions
      rgba(46, 204, 113),   // gathered_params
      rgba(22, 160, 133),   // persistent_params
      rgba(241, 196, 15),   // grad_buckets
      rgba(211, 84, 0),     // grad_partitions
      rgba(142, 68, 173),   // master_weights
      rgba(192, 57, 43),    // optimizer_states
      rgba(93, 173, 226),   // activations
      rgba(175, 122, 197),  // recompute
      rgba(236, 112, 160),  // pipe_buffers
      rgba(127, 140, 141),  // comm_buffers
      rgba(100, 100, 130),  // host_params
      rgba(120, 100, 130),  // host_optimizer
      rgba(130, 120, 100),  // host_activations
      rgba(90, 90, 90),     // nvme
  };
  const auto i = static_cast<std::size_t>(category);
  ZP_CHECK(i < kColors.size(), "memory category ", i);
  return kColors[i];
}

std::optional<std::int64_t> gpu_memory_limit(const trace::Trace& trace) {
  const Json& m = trace.metadata;
  if (!m.is_object()) return std::nullopt;
  const auto summary = m.find("summary");
  if (summary == m.end() || !summary->is_object()) return std::nullopt;
  const auto gpu = summary->find("gpu_memory");
  if (gpu == summary->end() || !gpu->is_number_integer()) return std::nullopt;
  return gpu->get<std::int64_t>();
}

}  // namespace zp::gui
