#include "gui/view/compare.h"

#include <gtest/gtest.h>

#include <algorithm>

namespace zp::gui {
namespace {

using trace::MemoryCategory;
using trace::OpKind;

trace::Trace run(trace::TimeNs step, std::int64_t activations, std::int64_t gathered) {
  trace::Trace t;
  t.ranks = {{"rank 0", {0}, 0}};
  trace::Op compute;
  compute.kind = OpKind::kForward;
  compute.start = 100;
  compute.end = 100 + step;
  trace::Op gather;
  gather.stream = trace::StreamKind::kAllGather;
  gather.kind = OpKind::kAllGather;
  gather.start = 100;
  gather.end = 110;
  gather.bytes = gathered;
  t.ops = {compute, gather};
  t.memory = {{0, 100, MemoryCategory::kActivations, activations},
              {0, 100, MemoryCategory::kParamPartitions, 10}};
  t.reserved = {{0, 100, activations * 2}};
  return t;
}

const DiffRow* find(const std::vector<DiffRow>& rows, const std::string& what) {
  const auto it =
      std::find_if(rows.begin(), rows.end(), [&](const DiffRow& r) { return r.what == what; });
  return it == rows.end() ? nullptr : &*it;
}

TEST(CompareTraces, ListsTheDifferencesInTimeMemoryAndTraffic) {
  const std::vector<DiffRow> rows = compare_traces(run(1000, 500, 64), 0, run(1500, 250, 128), 0);
  const DiffRow* span = find(rows, "step span");
  ASSERT_TRUE(span);
  EXPECT_EQ(span->unit, Unit::kNanoseconds);
  EXPECT_DOUBLE_EQ(span->delta, 500);
  EXPECT_DOUBLE_EQ(span->relative, 0.5);
  const DiffRow* peak = find(rows, "device peak");
  ASSERT_TRUE(peak);
  EXPECT_DOUBLE_EQ(peak->a, 510);
  EXPECT_DOUBLE_EQ(peak->b, 260);
  const DiffRow* reserved = find(rows, "reserved peak");
  ASSERT_TRUE(reserved);
  EXPECT_DOUBLE_EQ(reserved->delta, -500);
  const DiffRow* acts = find(rows, "peak activations");
  ASSERT_TRUE(acts);
  EXPECT_DOUBLE_EQ(acts->delta, -250);
  const DiffRow* bytes = find(rows, "allgather bytes");
  ASSERT_TRUE(bytes);
  EXPECT_DOUBLE_EQ(bytes->delta, 64);
  EXPECT_DOUBLE_EQ(bytes->relative, 1.0);
  // Figures zero in both traces are left out.
  EXPECT_FALSE(find(rows, "peak nvme"));
  EXPECT_FALSE(find(rows, "reduce_scatter bytes"));
}

TEST(SharedAxis, BothStartAtZeroAndTheAxisFitsTheLonger) {
  const SharedAxis axis = shared_axis(1000, 3000, 50, 1050);
  EXPECT_EQ(axis.shift_a, 1000);
  EXPECT_EQ(axis.shift_b, 50);
  EXPECT_EQ(axis.length, 2000);
}

}  // namespace
}  // namespace zp::gui
