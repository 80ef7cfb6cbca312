#include "gui/view/timeline_layout.h"

#include <gtest/gtest.h>

#include <set>

namespace zp::gui {
namespace {

using trace::OpKind;
using trace::StreamKind;

trace::Trace two_ranks() {
  trace::Trace t;
  t.ranks = {{"rank 0", {0}, 0}, {"rank 1", {1}, 0}};
  return t;
}

trace::Op op(std::int32_t rank, StreamKind stream, OpKind kind, trace::TimeNs start,
             trace::TimeNs end) {
  trace::Op o;
  o.rank = rank;
  o.stream = stream;
  o.kind = kind;
  o.start = start;
  o.end = end;
  return o;
}

TEST(TimelineIndex, OneLanePerUsedStreamOrderedByRankThenStream) {
  trace::Trace t = two_ranks();
  t.ops = {op(1, StreamKind::kCompute, OpKind::kForward, 0, 10),
           op(0, StreamKind::kReduceScatter, OpKind::kReduceScatter, 5, 8),
           op(0, StreamKind::kCompute, OpKind::kForward, 0, 10),
           op(0, StreamKind::kAllGather, OpKind::kAllGather, 1, 3)};
  const TimelineIndex index = build_index(t);
  ASSERT_EQ(index.lanes.size(), 4u);
  EXPECT_EQ(index.lanes[0].rank, 0);
  EXPECT_EQ(index.lanes[0].stream, StreamKind::kCompute);
  EXPECT_EQ(index.lanes[1].stream, StreamKind::kAllGather);
  EXPECT_EQ(index.lanes[2].stream, StreamKind::kReduceScatter);
  EXPECT_EQ(index.lanes[3].rank, 1);
  EXPECT_EQ(index.begin, 0);
  EXPECT_EQ(index.end, 10);
}

TEST(TimelineIndex, SortsByStartWithinALane) {
  trace::Trace t = two_ranks();
  t.ops = {op(0, StreamKind::kCompute, OpKind::kForward, 50, 60),
           op(0, StreamKind::kCompute, OpKind::kForward, 10, 20),
           op(0, StreamKind::kCompute, OpKind::kForward, 30, 40)};
  const TimelineIndex index = build_index(t);
  ASSERT_EQ(index.lanes.size(), 1u);
  const Lane& lane = index.lanes[0];
  EXPECT_EQ(lane.ops, (std::vector<std::uint32_t>{1, 2, 0}));
  EXPECT_EQ(lane.starts, (std::vector<trace::TimeNs>{10, 30, 50}));
  EXPECT_EQ(lane.max_ends, (std::vector<trace::TimeNs>{20, 40, 60}));
}

TEST(TimelineIndex, NestedOpsGoOneLaneDeeper) {
  trace::Trace t = two_ranks();
  t.ops = {op(0, StreamKind::kCompute, OpKind::kForward, 10, 20),    // inside the next
           op(0, StreamKind::kCompute, OpKind::kForward, 10, 100),   // outermost
           op(0, StreamKind::kCompute, OpKind::kForward, 12, 18),    // inside the first
           op(0, StreamKind::kCompute, OpKind::kForward, 20, 30),    // after the first: depth 1
           op(0, StreamKind::kCompute, OpKind::kForward, 100, 110),  // after all: depth 0
           op(0, StreamKind::kAllGather, OpKind::kAllGather, 0, 50),
           op(0, StreamKind::kAllGather, OpKind::kAllGather, 40, 60)};  // overlaps: deeper
  const TimelineIndex index = build_index(t);
  ASSERT_EQ(index.lanes.size(), 5u);
  EXPECT_EQ(index.lanes[0].depth, 0);
  EXPECT_EQ(index.lanes[0].ops, (std::vector<std::uint32_t>{1, 4}));
  EXPECT_EQ(index.lanes[1].depth, 1);
  EXPECT_EQ(index.lanes[1].ops, (std::vector<std::uint32_t>{0, 3}));
  EXPECT_EQ(index.lanes[2].depth, 2);
  EXPECT_EQ(index.lanes[2].ops, (std::vector<std::uint32_t>{2}));
  EXPECT_EQ(index.lanes[3].stream, StreamKind::kAllGather);
  EXPECT_EQ(index.lanes[3].ops, (std::vector<std::uint32_t>{5}));
  EXPECT_EQ(index.lanes[4].depth, 1);
  EXPECT_EQ(index.lanes[4].ops, (std::vector<std::uint32_t>{6}));
}

TEST(TimelineIndex, ReleasesAreInNoLane) {
  trace::Trace t = two_ranks();
  // A release at the end of a forward, while the next forward runs: drawn, it would open a lane.
  t.ops = {op(0, StreamKind::kCompute, OpKind::kForward, 0, 10),
           op(0, StreamKind::kCompute, OpKind::kRelease, 10, 10),
           op(0, StreamKind::kCompute, OpKind::kForward, 10, 20),
           op(1, StreamKind::kCompute, OpKind::kRelease, 30, 30)};
  const TimelineIndex index = build_index(t);
  ASSERT_EQ(index.lanes.size(), 1u);
  EXPECT_EQ(index.lanes[0].ops, (std::vector<std::uint32_t>{0, 2}));
  EXPECT_EQ(index.end, 30) << "the span still covers every op";
}

TEST(TimelineIndex, DepthIsCapped) {
  trace::Trace t = two_ranks();
  for (int d = 0; d < kMaxDepth + 5; ++d)
    t.ops.push_back(op(0, StreamKind::kCompute, OpKind::kForward, d, 1000 - d));
  const TimelineIndex index = build_index(t);
  ASSERT_EQ(index.lanes.size(), static_cast<std::size_t>(kMaxDepth));
  EXPECT_EQ(index.lanes.back().ops.size(), 6u);
}

TEST(VisibleOps, KeepsAnEarlyLongOpThatReachesIntoTheView) {
  // Overlapping ops in one lane, as the deepest lane holds them.
  trace::Trace t = two_ranks();
  t.ops = {op(0, StreamKind::kCompute, OpKind::kForward, 0, 1000),  // spans the view
           op(0, StreamKind::kCompute, OpKind::kForward, 100, 110),
           op(0, StreamKind::kCompute, OpKind::kForward, 500, 510),
           op(0, StreamKind::kCompute, OpKind::kForward, 2000, 2010)};
  Lane lane;
  lane.ops = {0, 1, 2, 3};
  lane.starts = {0, 100, 500, 2000};
  lane.max_ends = {1000, 1000, 1000, 2010};
  const OpRange r = visible_ops(lane, 400, 600);
  // The op at 100 ends before 400 but lies between two visible ones: the range may include it,
  // it must include the long op and the one at 500, and must stop before 2000.
  EXPECT_EQ(r.first, 0u);
  EXPECT_EQ(r.last, 3u);
  const OpRange after = visible_ops(lane, 1500, 3000);
  EXPECT_EQ(after.first, 3u);
  EXPECT_EQ(after.last, 4u);
  const OpRange none = visible_ops(lane, 3000, 4000);
  EXPECT_EQ(none.first, none.last);
}

TEST(LayoutLane, WideOpsAreTheirOwnBlocksInTheirKindsColour) {
  trace::Trace t = two_ranks();
  t.ops = {op(0, StreamKind::kCompute, OpKind::kForward, 0, 100),
           op(0, StreamKind::kCompute, OpKind::kBackward, 100, 200)};
  const TimelineIndex index = build_index(t);
  const TimeAxis axis{{0, 200}, 10, 200};  // 1 ns per pixel from x = 10
  std::vector<Block> blocks;
  layout_lane(index.lanes[0], axis, 3, blocks);
  ASSERT_EQ(blocks.size(), 2u);
  EXPECT_FLOAT_EQ(blocks[0].x0, 10);
  EXPECT_FLOAT_EQ(blocks[0].x1, 110);
  EXPECT_EQ(blocks[0].count, 1u);
  EXPECT_EQ(blocks[0].color, op_color(OpKind::kForward));
  EXPECT_EQ(blocks[1].color, op_color(OpKind::kBackward));
}

TEST(LayoutLane, NarrowOpsWithinTheMergeWidthBecomeOneBlock) {
  trace::Trace t = two_ranks();
  // At 10 ns per pixel and a 3 px merge width, ops under 30 ns merge while within 30 ns of the
  // block's start.
  t.ops = {op(0, StreamKind::kCompute, OpKind::kForward, 0, 5),
           op(0, StreamKind::kCompute, OpKind::kForward, 10, 15),
           op(0, StreamKind::kCompute, OpKind::kForward, 20, 29),
           op(0, StreamKind::kCompute, OpKind::kForward, 31, 35),  // past 30: a new block
           op(0, StreamKind::kCompute, OpKind::kBackward, 40, 45)};
  const TimelineIndex index = build_index(t);
  const TimeAxis axis{{0, 1000}, 0, 100};
  std::vector<Block> blocks;
  layout_lane(index.lanes[0], axis, 3, blocks);
  ASSERT_EQ(blocks.size(), 2u);
  EXPECT_EQ(blocks[0].first, 0u);
  EXPECT_EQ(blocks[0].count, 3u);
  EXPECT_FLOAT_EQ(blocks[0].x0, 0);
  EXPECT_FLOAT_EQ(blocks[0].x1, 3);  // 2.9 px of ops, widened to the merge width
  EXPECT_EQ(blocks[0].color, op_color(OpKind::kForward));
  EXPECT_EQ(blocks[1].first, 3u);
  EXPECT_EQ(blocks[1].count, 2u);
  // Two kinds in one block: the one with more time (backward, 5 ns against 4), dimmed.
  EXPECT_EQ(blocks[1].color, merged_color(op_color(OpKind::kBackward)));
  EXPECT_NE(blocks[1].color, op_color(OpKind::kBackward));
  EXPECT_FLOAT_EQ(blocks[1].x1, 6.1f);
}

TEST(LayoutLane, AWideOpIsNeverSwallowedByAMergedBlock) {
  trace::Trace t = two_ranks();
  t.ops = {op(0, StreamKind::kCompute, OpKind::kForward, 0, 5),
           op(0, StreamKind::kCompute, OpKind::kBackward, 10, 500)};
  const TimelineIndex index = build_index(t);
  const TimeAxis axis{{0, 1000}, 0, 100};
  std::vector<Block> blocks;
  layout_lane(index.lanes[0], axis, 3, blocks);
  ASSERT_EQ(blocks.size(), 2u);
  EXPECT_EQ(blocks[0].count, 1u);
  EXPECT_EQ(blocks[1].count, 1u);
  EXPECT_EQ(blocks[1].color, op_color(OpKind::kBackward));
}

TEST(LayoutLane, AMillionOpsMergeIntoAboutOneBlockPerMergeWidth) {
  trace::Trace t = two_ranks();
  constexpr int kOps = 1'000'000;
  t.ops.reserve(kOps);
  for (int i = 0; i < kOps; ++i)
    t.ops.push_back(op(0, StreamKind::kCompute, OpKind::kForward, i * 100LL, i * 100LL + 60));
  const TimelineIndex index = build_index(t);
  const TimeAxis axis{fit_view(index.begin, index.end), 0, 1600};
  std::vector<Block> blocks;
  layout_lane(index.lanes[0], axis, 3, blocks);
  // Every op is merged: about one block per 3 pixels.
  EXPECT_LT(blocks.size(), 600u);
  EXPECT_GT(blocks.size(), 400u);
  std::uint64_t covered = 0;
  for (const Block& b : blocks)
    covered += b.count;
  EXPECT_EQ(covered, static_cast<std::uint64_t>(kOps));
  // How fast: BM_LayoutAllLanes in bench/gui_bench.cpp.
}

TEST(OpAt, PicksTheShortestOpUnderTheCursor) {
  trace::Trace t = two_ranks();
  t.ops = {op(0, StreamKind::kCompute, OpKind::kForward, 0, 100),
           op(0, StreamKind::kCompute, OpKind::kForward, 20, 40),
           op(0, StreamKind::kCompute, OpKind::kForward, 200, 300)};
  Lane lane;  // overlapping ops in one lane, as the deepest lane may hold them
  lane.ops = {0, 1, 2};
  lane.starts = {0, 20, 200};
  lane.max_ends = {100, 100, 300};
  EXPECT_EQ(op_at(t, lane, 30, 0), 1);
  EXPECT_EQ(op_at(t, lane, 60, 0), 0);
  EXPECT_EQ(op_at(t, lane, 150, 0), -1);
  EXPECT_EQ(op_at(t, lane, 195, 10), 2);  // within the slack
  const TimelineIndex index = build_index(t);
  EXPECT_EQ(op_at(t, index.lanes[0], 30, 0), 0);  // the outer op's lane
  EXPECT_EQ(op_at(t, index.lanes[1], 30, 0), 1);
}

TEST(TimeView, ZoomKeepsTheAnchorInPlace) {
  const TimeView v{0, 1000};
  const TimeView z = zoom_view(v, 250, 2);
  EXPECT_DOUBLE_EQ(z.span(), 500);
  // 250 was a quarter in; it stays a quarter in.
  EXPECT_DOUBLE_EQ((250 - z.begin) / z.span(), 0.25);
  const TimeView tiny = zoom_view(v, 500, 1e9);
  EXPECT_DOUBLE_EQ(tiny.span(), kMinSpanNs);
  EXPECT_EQ(pan_view(v, -100), (TimeView{-100, 900}));
  const TimeView fit = fit_view(1000, 2000);
  EXPECT_DOUBLE_EQ(fit.begin, 980);
  EXPECT_DOUBLE_EQ(fit.end, 2020);
}

TEST(TimeAxis, MapsTimesToPixelsAndBack) {
  const TimeAxis axis{{1000, 3000}, 50, 200};
  EXPECT_FLOAT_EQ(axis.x(1000), 50);
  EXPECT_FLOAT_EQ(axis.x(2000), 150);
  EXPECT_DOUBLE_EQ(axis.time(150), 2000);
}

TEST(AxisTicks, RoundStepsThatCoverTheView) {
  const std::vector<double> ticks = axis_ticks({0, 1000}, 5);
  EXPECT_EQ(ticks, (std::vector<double>{0, 200, 400, 600, 800, 1000}));
  const std::vector<double> fine = axis_ticks({15, 65}, 5);
  EXPECT_EQ(fine, (std::vector<double>{20, 30, 40, 50, 60}));
}

TEST(Format, DurationsAndBytes) {
  EXPECT_EQ(format_duration(1500000), "1.50 ms");
  EXPECT_EQ(format_duration(320000), "320 us");
  EXPECT_EQ(format_duration(12), "12 ns");
  EXPECT_EQ(format_duration(-0.0), "0 ns");
  EXPECT_EQ(format_duration(2.25e9), "2.25 s");
  EXPECT_EQ(format_bytes(512), "512 B");
  EXPECT_EQ(format_bytes(1.5 * 1024 * 1024 * 1024), "1.50 GiB");
}

TEST(Colors, KindsOfOneStreamAndStreamsDiffer) {
  EXPECT_NE(op_color(OpKind::kForward), op_color(OpKind::kBackward));
  EXPECT_NE(op_color(OpKind::kBackward), op_color(OpKind::kRecompute));
  std::set<Color> kinds;
  for (int k = 0; k < static_cast<int>(OpKind::kCount); ++k)
    kinds.insert(op_color(static_cast<OpKind>(k)));
  EXPECT_EQ(kinds.size(), static_cast<std::size_t>(OpKind::kCount));
  // A mixed merged block must not be mistaken for one op of any kind.
  for (int k = 0; k < static_cast<int>(OpKind::kCount); ++k)
    EXPECT_EQ(kinds.count(merged_color(op_color(static_cast<OpKind>(k)))), 0u);
}

TEST(LayoutRows, HeaderPerRankThenOneRowPerLane) {
  trace::Trace t = two_ranks();
  t.ops = {op(0, StreamKind::kCompute, OpKind::kForward, 0, 1),
           op(0, StreamKind::kAllGather, OpKind::kAllGather, 0, 1),
           op(1, StreamKind::kCompute, OpKind::kForward, 0, 1)};
  const TimelineIndex index = build_index(t);
  const Rows rows = layout_rows(index, 100, RowMetrics{18, 22, 6});
  ASSERT_EQ(rows.headers.size(), 2u);
  ASSERT_EQ(rows.lanes.size(), 3u);
  EXPECT_FLOAT_EQ(rows.headers[0].y0, 100);
  EXPECT_FLOAT_EQ(rows.lanes[0].y0, 118);
  EXPECT_FLOAT_EQ(rows.lanes[1].y0, 140);
  EXPECT_FLOAT_EQ(rows.headers[1].y0, 168);  // 162 plus the gap
  EXPECT_FLOAT_EQ(rows.lanes[2].y0, 186);
  EXPECT_FLOAT_EQ(rows.height, 108);
}

}  // namespace
}  // namespace zp::gui
