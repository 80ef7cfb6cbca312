#include "gui/view/compare.h"

#include <algorithm>
#include <array>
#include <limits>

#include "gui/view/memory_series.h"

namespace zp::gui {

using trace::MemoryCategory;
using trace::OpKind;
using trace::TimeNs;

namespace {

constexpr std::size_t kKinds = static_cast<std::size_t>(OpKind::kCount);

struct Figures {
  double span = 0;
  double peak = 0;
  double reserved_peak = 0;
  std::array<double, trace::kMemoryCategoryCount> category_peak{};
  std::array<double, kKinds> kind_bytes{};
  std::array<double, kKinds> kind_count{};
};

Figures figures(const trace::Trace& t, std::int32_t rank) {
  Figures f;
  TimeNs begin = std::numeric_limits<TimeNs>::max();
  TimeNs end = std::numeric_limits<TimeNs>::min();
  for (const trace::Op& op : t.ops) {
    if (op.rank != rank) continue;
    begin = std::min(begin, op.start);
    end = std::max(end, op.end);
    const auto k = static_cast<std::size_t>(op.kind);
    if (trace::is_transfer(op.kind)) {
      f.kind_bytes[k] += static_cast<double>(op.bytes);
      f.kind_count[k] += 1;
    }
  }
  if (end >= begin) f.span = static_cast<double>(end - begin);
  const std::vector<MemorySeries> series = build_memory_series(t);
  if (rank >= 0 && static_cast<std::size_t>(rank) < series.size()) {
    const MemorySeries& s = series[static_cast<std::size_t>(rank)];
    for (const CategoryBytes& bytes : s.totals) {
      f.peak = std::max(f.peak, static_cast<double>(device_total(bytes)));
      for (std::size_t c = 0; c < bytes.size(); ++c)
        f.category_peak[c] = std::max(f.category_peak[c], static_cast<double>(bytes[c]));
    }
    for (std::int64_t r : s.reserved)
      f.reserved_peak = std::max(f.reserved_peak, static_cast<double>(r));
  }
  return f;
}

void add(std::vector<DiffRow>& rows, std::string what, Unit unit, double a, double b) {
  if (a == 0 && b == 0) return;
  rows.push_back({std::move(what), unit, a, b, b - a, a != 0 ? b / a - 1 : 0});
}

}  // namespace

std::vector<DiffRow> compare_traces(const trace::Trace& a, std::int32_t rank_a,
                                    const trace::Trace& b, std::int32_t rank_b) {
  const Figures fa = figures(a, rank_a);
  const Figures fb = figures(b, rank_b);
  std::vector<DiffRow> rows;
  add(rows, "step span", Unit::kNanoseconds, fa.span, fb.span);
  add(rows, "device peak", Unit::kBytes, fa.peak, fb.peak);
  add(rows, "reserved peak", Unit::kBytes, fa.reserved_peak, fb.reserved_peak);
  for (std::size_t c = 0; c < trace::kMemoryCategoryCount; ++c)
    add(rows, "peak " + std::string(trace::to_string(static_cast<MemoryCategory>(c))), Unit::kBytes,
        fa.category_peak[c], fb.category_peak[c]);
  for (std::size_t k = 0; k < kKinds; ++k) {
    const std::string name(trace::to_string(static_cast<OpKind>(k)));
    add(rows, name + " bytes", Unit::kBytes, fa.kind_bytes[k], fb.kind_bytes[k]);
    add(rows, name + " ops", Unit::kCount, fa.kind_count[k], fb.kind_count[k]);
  }
  return rows;
}

SharedAxis shared_axis(TimeNs a_begin, TimeNs a_end, TimeNs b_begin, TimeNs b_end) {
  return {a_begin, b_begin, std::max(a_end - a_begin, b_end - b_begin)};
}

}  // namespace zp::gui
