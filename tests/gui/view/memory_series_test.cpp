#include "gui/view/memory_series.h"

#include <gtest/gtest.h>

#include <limits>

namespace zp::gui {
namespace {

using trace::MemoryCategory;

trace::MemorySample sample(std::int32_t rank, trace::TimeNs time, MemoryCategory c,
                           std::int64_t bytes) {
  return {rank, time, c, bytes};
}

std::size_t idx(MemoryCategory c) {
  return static_cast<std::size_t>(c);
}

trace::Trace base() {
  trace::Trace t;
  t.ranks = {{"rank 0", {0}, 0}, {"rank 1", {1}, 0}};
  return t;
}

TEST(MemorySeries, AppliesChangesInTimeOrderAndTheLaterRowWins) {
  trace::Trace t = base();
  t.memory = {sample(0, 20, MemoryCategory::kActivations, 300),
              sample(0, 10, MemoryCategory::kActivations, 100),
              sample(0, 10, MemoryCategory::kGatheredParams, 50),
              sample(0, 20, MemoryCategory::kActivations, 400),  // same time: this one wins
              sample(1, 5, MemoryCategory::kActivations, 7)};
  const std::vector<MemorySeries> all = build_memory_series(t);
  ASSERT_EQ(all.size(), 2u);
  const MemorySeries& s = all[0];
  EXPECT_EQ(s.times, (std::vector<trace::TimeNs>{10, 20}));
  EXPECT_EQ(s.totals[0][idx(MemoryCategory::kActivations)], 100);
  EXPECT_EQ(s.totals[0][idx(MemoryCategory::kGatheredParams)], 50);
  EXPECT_EQ(s.totals[1][idx(MemoryCategory::kActivations)], 400);
  // A category not sampled again keeps its total.
  EXPECT_EQ(s.totals[1][idx(MemoryCategory::kGatheredParams)], 50);
  EXPECT_EQ(all[1].totals.at(0)[idx(MemoryCategory::kActivations)], 7);
}

TEST(MemorySeries, BreakdownIsZeroBeforeTheFirstSampleAndHoldsBetweenSamples) {
  trace::Trace t = base();
  t.memory = {sample(0, 10, MemoryCategory::kActivations, 100),
              sample(0, 30, MemoryCategory::kActivations, 0)};
  t.reserved = {{0, 10, 1000}, {0, 30, 500}};
  const MemorySeries s = build_memory_series(t)[0];
  EXPECT_EQ(breakdown_at(s, 5)[idx(MemoryCategory::kActivations)], 0);
  EXPECT_EQ(breakdown_at(s, 10)[idx(MemoryCategory::kActivations)], 100);
  EXPECT_EQ(breakdown_at(s, 29.9)[idx(MemoryCategory::kActivations)], 100);
  EXPECT_EQ(breakdown_at(s, 30)[idx(MemoryCategory::kActivations)], 0);
  EXPECT_EQ(reserved_at(s, 9), 0);
  EXPECT_EQ(reserved_at(s, 20), 1000);
  EXPECT_EQ(reserved_at(s, 40), 500);
}

trace::Allocation alloc(std::int32_t rank, std::int64_t bytes, trace::TimeNs start,
                        trace::TimeNs end, MemoryCategory c = MemoryCategory::kActivations) {
  return {rank, c, bytes, start, end, trace::kNone};
}

TEST(LargestLive, LargestFirstWithTiesByStartThenRow) {
  trace::Trace t = base();
  t.allocations = {alloc(0, 100, 0, 50), alloc(0, 300, 5, 50), alloc(0, 200, 1, 50),
                   alloc(0, 200, 0, 50), alloc(0, 200, 0, trace::kNever)};
  EXPECT_EQ(largest_live(t, 0, 10, 10), (std::vector<std::uint32_t>{1, 3, 4, 2, 0}));
}

TEST(LargestLive, LiveFromStartUntilEndExclusive) {
  trace::Trace t = base();
  t.allocations = {alloc(0, 10, 100, 200), alloc(0, 20, 150, 150), alloc(0, 30, 200, 300),
                   alloc(0, 40, 250, trace::kNever)};
  EXPECT_TRUE(largest_live(t, 0, 99, 5).empty());
  EXPECT_EQ(largest_live(t, 0, 100, 5), (std::vector<std::uint32_t>{0}));
  EXPECT_EQ(largest_live(t, 0, 199, 5), (std::vector<std::uint32_t>{0}));
  // Freed at 200, made at 200: only the new one; one made and freed at 150 is never live.
  EXPECT_EQ(largest_live(t, 0, 200, 5), (std::vector<std::uint32_t>{2}));
  EXPECT_EQ(largest_live(t, 0, 150, 5), (std::vector<std::uint32_t>{0}));
  EXPECT_EQ(largest_live(t, 0, 300, 5), (std::vector<std::uint32_t>{3}));
  // Never freed: live to the end of time.
  EXPECT_EQ(largest_live(t, 0, std::numeric_limits<trace::TimeNs>::max() - 1, 5),
            (std::vector<std::uint32_t>{3}));
}

TEST(LargestLive, FiltersByRankAndLimitsToN) {
  trace::Trace t = base();
  t.allocations = {alloc(1, 1000, 0, 100), alloc(0, 10, 0, 100), alloc(0, 30, 0, 100),
                   alloc(0, 20, 0, 100), alloc(1, 5, 0, 100)};
  EXPECT_EQ(largest_live(t, 0, 50, 2), (std::vector<std::uint32_t>{2, 3}));
  EXPECT_EQ(largest_live(t, 1, 50, 10), (std::vector<std::uint32_t>{0, 4}));
  EXPECT_TRUE(largest_live(t, 0, 50, 0).empty());
  EXPECT_TRUE(largest_live(t, 2, 50, 5).empty());
  EXPECT_TRUE(largest_live(base(), 0, 50, 5).empty()) << "a trace without allocations";
}

// What the listing after a time leaves out: blocks freed at that time, made before it (a block made
// and freed at once was never live), largest first, of the rank asked for.
TEST(LargestFreedAt, BlocksFreedAtTheTimeMadeBeforeIt) {
  trace::Trace t = base();
  t.allocations = {alloc(0, 10, 100, 200), alloc(0, 20, 150, 150), alloc(0, 30, 200, 300),
                   alloc(0, 40, 120, 200), alloc(1, 50, 0, 200)};
  EXPECT_EQ(largest_freed_at(t, 0, 200, 5), (std::vector<std::uint32_t>{3, 0}));
  EXPECT_EQ(largest_freed_at(t, 0, 200, 1), (std::vector<std::uint32_t>{3}));
  EXPECT_TRUE(largest_freed_at(t, 0, 150, 5).empty());
  EXPECT_TRUE(largest_freed_at(t, 0, 199, 5).empty());
  EXPECT_EQ(largest_freed_at(t, 0, 300, 5), (std::vector<std::uint32_t>{2}));
  EXPECT_EQ(largest_freed_at(t, 1, 200, 5), (std::vector<std::uint32_t>{4}));
  // Together with the blocks live after the time: what was live just before it.
  const std::vector<std::uint32_t> after = largest_live(t, 0, 200, 5);
  EXPECT_EQ(after, (std::vector<std::uint32_t>{2}));
}

// The live allocations add up to the samples' totals when both describe the same blocks.
TEST(LargestLive, LiveAllocationsAddUpToTheBreakdown) {
  trace::Trace t = base();
  t.allocations = {alloc(0, 100, 10, 30, MemoryCategory::kGatheredParams),
                   alloc(0, 50, 20, trace::kNever)};
  t.memory = {sample(0, 10, MemoryCategory::kGatheredParams, 100),
              sample(0, 20, MemoryCategory::kActivations, 50),
              sample(0, 30, MemoryCategory::kGatheredParams, 0)};
  const MemorySeries s = build_memory_series(t)[0];
  for (trace::TimeNs time : {5, 10, 20, 25, 30, 40}) {
    std::int64_t live = 0;
    for (std::uint32_t i : largest_live(t, 0, time, 100))
      live += t.allocations[i].bytes;
    EXPECT_EQ(live, device_total(breakdown_at(s, static_cast<double>(time)))) << time;
  }
}

TEST(MemorySeries, PeakCountsDeviceCategoriesOnlyAndTakesTheFirstTime) {
  trace::Trace t = base();
  t.memory = {sample(0, 10, MemoryCategory::kActivations, 100),
              sample(0, 20, MemoryCategory::kHostOptimizer, 10000),  // host: not on the device
              sample(0, 30, MemoryCategory::kGatheredParams, 50),
              sample(0, 40, MemoryCategory::kGatheredParams, 0),
              sample(0, 50, MemoryCategory::kGatheredParams, 50)};
  const MemorySeries s = build_memory_series(t)[0];
  const std::optional<Peak> peak = device_peak(s);
  ASSERT_TRUE(peak);
  EXPECT_EQ(peak->bytes, 150);
  EXPECT_EQ(peak->time, 30);
  EXPECT_EQ(peak->breakdown[idx(MemoryCategory::kHostOptimizer)], 10000);
}

TEST(MemorySeries, LargestFirst) {
  trace::Trace t = base();
  t.memory = {sample(0, 10, MemoryCategory::kActivations, 100),
              sample(0, 10, MemoryCategory::kOptimizerStates, 300),
              sample(0, 10, MemoryCategory::kGatheredParams, 200)};
  const std::vector<CategoryShare> shares = largest_at(build_memory_series(t)[0], 10);
  ASSERT_EQ(shares.size(), 3u);
  EXPECT_EQ(shares[0].category, MemoryCategory::kOptimizerStates);
  EXPECT_EQ(shares[1].category, MemoryCategory::kGatheredParams);
  EXPECT_EQ(shares[2].category, MemoryCategory::kActivations);
}

TEST(MemoryColumns, AColumnShowsItsHighestSampleSoNoPeakIsLost) {
  trace::Trace t = base();
  // A 1 ns spike inside a 100 ns column.
  t.memory = {sample(0, 0, MemoryCategory::kActivations, 10),
              sample(0, 150, MemoryCategory::kActivations, 90),
              sample(0, 151, MemoryCategory::kActivations, 20)};
  const MemorySeries s = build_memory_series(t)[0];
  const TimeAxis axis{{0, 400}, 0, 4};  // 100 ns per pixel
  const std::vector<MemoryColumn> columns = memory_columns(s, axis, 1);
  ASSERT_EQ(columns.size(), 4u);
  EXPECT_EQ(columns[0].bytes[idx(MemoryCategory::kActivations)], 10);
  EXPECT_EQ(columns[1].bytes[idx(MemoryCategory::kActivations)], 90);
  // The next column starts with what was current at its start.
  EXPECT_EQ(columns[2].bytes[idx(MemoryCategory::kActivations)], 20);
  EXPECT_FLOAT_EQ(columns[3].x0, 3);
  EXPECT_FLOAT_EQ(columns[3].x1, 4);
}

TEST(MemorySeries, GpuLimitFromTheSummary) {
  trace::Trace t = base();
  EXPECT_FALSE(gpu_memory_limit(t));
  t.metadata = Json::parse(R"({"summary":{"gpu_memory":85899345920}})");
  EXPECT_EQ(gpu_memory_limit(t), 85899345920);
}

TEST(RecentGathers, LatestStartedGathersOfTheRankHeaviestFirst) {
  trace::Trace t = base();
  auto gather = [](std::int32_t rank, trace::TimeNs start, std::int64_t bytes) {
    trace::Op o;
    o.rank = rank;
    o.stream = trace::StreamKind::kAllGather;
    o.kind = trace::OpKind::kAllGather;
    o.start = start;
    o.end = start + 5;
    o.bytes = bytes;
    return o;
  };
  t.ops = {gather(0, 0, 1000), gather(0, 10, 10), gather(0, 20, 500), gather(1, 20, 9999),
           gather(0, 100, 7777)};
  const std::vector<std::uint32_t> g = recent_gathers(t, 0, 50, 2);
  // The two latest before 50 are at 20 and 10; the one at 0 is older, the one at 100 later.
  EXPECT_EQ(g, (std::vector<std::uint32_t>{2, 1}));
}

}  // namespace
}  // namespace zp::gui
