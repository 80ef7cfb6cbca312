#include "sim/memory/memory_accountant.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <utility>
#include <vector>

#include "core/util/error.h"

namespace zp::sim {
namespace {

using C = MemoryCategory;
constexpr std::int64_t kMiB = 1 << 20;

MemoryAccountant::Options Exact() {
  return {INT64_MAX, false};
}
MemoryAccountant::Options Modelled(std::int64_t capacity = INT64_MAX) {
  return {capacity, true};
}

std::int64_t DeviceSum(const MemoryAccountant& m) {
  std::int64_t sum = 0;
  for (std::size_t i = 0; i < trace::kMemoryCategoryCount; ++i) {
    const auto c = static_cast<C>(i);
    if (trace::on_device(c)) sum += m.bytes(c);
  }
  return sum;
}

TEST(MemoryAccountant, DeviceCategoriesSumToAllocated) {
  MemoryAccountant m(Exact(), nullptr, 0);
  m.allocate(C::kParamPartitions, 1000, 1);
  const auto opt = m.allocate(C::kOptimizerStates, 3000, 2);
  m.allocate(C::kActivations, 500, 3);
  EXPECT_EQ(m.allocated(), 4500);
  EXPECT_EQ(DeviceSum(m), 4500);
  m.free(opt, 4);
  EXPECT_EQ(m.allocated(), 1500);  // 1000 + 500
  EXPECT_EQ(m.bytes(C::kOptimizerStates), 0);
  EXPECT_EQ(DeviceSum(m), 1500);
  EXPECT_EQ(m.live_blocks(), 2);
}

TEST(MemoryAccountant, RoundedSizesWithTheAllocator) {
  MemoryAccountant m(Modelled(), nullptr, 0);
  m.allocate(C::kParamPartitions, 1000, 1);  // 1024
  m.allocate(C::kActivations, 3000, 2);      // 3072
  EXPECT_EQ(m.bytes(C::kParamPartitions), 1024);
  EXPECT_EQ(m.bytes(C::kActivations), 3072);
  EXPECT_EQ(m.allocated(), 4096);
  EXPECT_EQ(m.reserved(), 2 * kMiB);  // both in one small segment of the compute stream
  // Another stream has its own pool: a second small segment.
  m.allocate(C::kGatheredParams, 1000, 3, AllocStream::kAllGather);
  EXPECT_EQ(m.allocated(), 4096 + 1024);
  EXPECT_EQ(m.reserved(), 4 * kMiB);
  // Nothing for nothing.
  const auto empty = m.allocate(C::kCommBuffers, 0, 4);
  EXPECT_EQ(m.allocated(), 5120);
  EXPECT_EQ(m.reserved(), 4 * kMiB);
  m.free(empty, 5);
}

TEST(MemoryAccountant, ExactSizesWithoutTheAllocator) {
  MemoryAccountant m(Exact(), nullptr, 0);
  m.allocate(C::kParamPartitions, 1000, 1);
  m.allocate(C::kActivations, 3000, 2);
  EXPECT_EQ(m.bytes(C::kParamPartitions), 1000);
  EXPECT_EQ(m.allocated(), 4000);
  EXPECT_EQ(m.reserved(), 4000);  // reserved is what is allocated
  EXPECT_EQ(m.peak_reserved(), 4000);
}

TEST(MemoryAccountant, ReservedAndOutOfMemoryComeFromTheAllocator) {
  MemoryAccountant m(Modelled(30 * kMiB), nullptr, 0);
  const auto b = m.allocate(C::kActivations, 4 * kMiB, 1);  // a 20 MiB segment
  m.free(b, 2);
  EXPECT_EQ(m.reserved(), 20 * kMiB);  // cached
  EXPECT_EQ(m.peak_reserved(), 20 * kMiB);
  m.allocate(C::kActivations, 4 * kMiB, 3);  // the cached segment, 16 MiB of it left free
  // 20 MiB fits no free block; a new 20 MiB segment makes 40 > 30, and no segment is wholly free
  // to return: out of memory, granted.
  m.allocate(C::kActivations, 20 * kMiB, 4);
  EXPECT_EQ(m.out_of_memory_count(), 1);
  EXPECT_EQ(m.reserved(), 40 * kMiB);
  EXPECT_EQ(m.peak_reserved(), 40 * kMiB);
  EXPECT_EQ(m.allocated(), 24 * kMiB);
}

TEST(MemoryAccountant, PeakIsTheFirstTimeTheMaximumIsReached) {
  MemoryAccountant m(Exact(), nullptr, 0);
  m.set_running(7);
  m.set_step(3);
  m.allocate(C::kParamPartitions, 100, 10);
  m.add_host(C::kHostOptimizer, 1000, 15);
  const auto act = m.allocate(C::kActivations, 50, 20);  // 150: the peak
  m.free(act, 30);
  m.set_running(9);
  m.set_step(4);
  m.allocate(C::kRecompute, 50, 40);  // 150 again: not a new peak
  const MemorySnapshot& p = m.peak();
  EXPECT_EQ(p.time, 20);
  EXPECT_EQ(p.allocated, 150);
  EXPECT_EQ(p.running, 7);
  EXPECT_EQ(p.step, 3);
  EXPECT_EQ(p.bytes[static_cast<std::size_t>(C::kParamPartitions)], 100);
  EXPECT_EQ(p.bytes[static_cast<std::size_t>(C::kActivations)], 50);
  EXPECT_EQ(p.bytes[static_cast<std::size_t>(C::kRecompute)], 0);
  EXPECT_EQ(p.bytes[static_cast<std::size_t>(C::kHostOptimizer)], 1000);  // host, as it was then
}

TEST(MemoryAccountant, WindowPeakResets) {
  MemoryAccountant m(Exact(), nullptr, 0);
  m.free(m.allocate(C::kActivations, 300, 1), 2);
  m.reset_window(3);  // starts from what is allocated now: nothing
  EXPECT_EQ(m.window_peak().time, 3);
  EXPECT_EQ(m.window_peak().allocated, 0);
  m.free(m.allocate(C::kActivations, 100, 4), 5);
  m.allocate(C::kActivations, 100, 6);  // 100 again: the window's peak stays the first
  EXPECT_EQ(m.window_peak().time, 4);
  EXPECT_EQ(m.window_peak().allocated, 100);  // below the overall peak
  EXPECT_EQ(m.peak().time, 1);
  EXPECT_EQ(m.peak().allocated, 300);
  m.reset_window(7);  // 100 still allocated
  EXPECT_EQ(m.window_peak().time, 7);
  EXPECT_EQ(m.window_peak().allocated, 100);
}

bool SameSnapshot(const MemorySnapshot& a, const MemorySnapshot& b) {
  return a.time == b.time && a.allocated == b.allocated && a.reserved == b.reserved &&
         a.bytes == b.bytes && a.running == b.running && a.step == b.step;
}

// Without the allocator or a trace, allocate and free take an inline path: it books the same as
// the general one (which a trace selects) through a random run of every kind of change.
TEST(MemoryAccountant, TheInlinePathBooksWhatTheGeneralOneDoes) {
  trace::Trace trace;
  MemoryAccountant fast(Exact(), nullptr, 0);
  MemoryAccountant general(Exact(), &trace, 0);
  std::mt19937 rng(7);
  std::vector<std::pair<MemoryAccountant::Block, MemoryAccountant::Block>> live;
  const C device[] = {C::kActivations, C::kGatheredParams, C::kGradBuckets, C::kRecompute};
  for (TimeNs t = 0; t < 4000; ++t) {
    const int what = static_cast<int>(rng() % 10);
    if (what < 5 || live.empty()) {
      const C c = device[rng() % 4];
      const std::int64_t bytes = static_cast<std::int64_t>(rng() % 3) * 1000 + (rng() % 2);
      live.emplace_back(fast.allocate(c, bytes, t), general.allocate(c, bytes, t));
    } else if (what < 9) {
      const std::size_t i = rng() % live.size();
      fast.free(live[i].first, t);
      general.free(live[i].second, t);
      live.erase(live.begin() + static_cast<std::ptrdiff_t>(i));
    } else if (rng() % 2 == 0) {
      fast.reset_window(t);
      general.reset_window(t);
    } else {
      const std::int32_t running = static_cast<std::int32_t>(rng() % 5);
      fast.set_running(running);
      general.set_running(running);
      fast.add_host(C::kHostOptimizer, 10, t);
      general.add_host(C::kHostOptimizer, 10, t);
    }
    ASSERT_EQ(fast.allocated(), general.allocated()) << t;
    if (t % 97 == 0) {
      ASSERT_TRUE(SameSnapshot(fast.peak(), general.peak())) << t;
      ASSERT_TRUE(SameSnapshot(fast.window_peak(), general.window_peak())) << t;
    }
  }
  EXPECT_TRUE(SameSnapshot(fast.peak(), general.peak()));
  EXPECT_TRUE(SameSnapshot(fast.window_peak(), general.window_peak()));
  EXPECT_EQ(fast.peak_reserved(), general.peak_reserved());
  EXPECT_EQ(fast.live_blocks(), general.live_blocks());
  for (std::size_t i = 0; i < trace::kMemoryCategoryCount; ++i)
    EXPECT_EQ(fast.bytes(static_cast<C>(i)), general.bytes(static_cast<C>(i)));
  // A block freed twice is still a bug on the inline path.
  const auto b = fast.allocate(C::kActivations, 10, 5000);
  fast.free(b, 5001);
  EXPECT_THROW(fast.free(b, 5002), InternalError);
}

TEST(MemoryAccountant, HostCategoriesAreNotDeviceMemory) {
  MemoryAccountant m(Modelled(), nullptr, 0);
  m.add_host(C::kHostOptimizer, 1000, 1);
  m.add_host(C::kHostParams, 500, 2);  // host total 1500
  EXPECT_EQ(m.allocated(), 0);
  EXPECT_EQ(m.reserved(), 0);
  EXPECT_EQ(m.peak().allocated, 0);
  EXPECT_EQ(m.bytes(C::kHostOptimizer), 1000);
  EXPECT_EQ(m.peak_host(), 1500);
  m.add_host(C::kHostOptimizer, -1000, 3);  // 500
  m.add_host(C::kNvme, 2000, 4);            // NVMe is not host memory
  EXPECT_EQ(m.bytes(C::kHostOptimizer), 0);
  EXPECT_EQ(m.peak_host(), 1500);
  EXPECT_EQ(m.peak_nvme(), 2000);
  m.add_host(C::kHostActivations, 1200, 5);  // 1700
  EXPECT_EQ(m.peak_host(), 1700);
  m.allocate(C::kActivations, 4096, 6);  // device memory does not count as host
  EXPECT_EQ(m.peak_host(), 1700);
}

TEST(MemoryAccountant, TraceGetsOneSamplePerChange) {
  trace::Trace t;
  MemoryAccountant m(Modelled(), &t, 3);
  m.add_host(C::kHostOptimizer, 100, 1);                    // reserved stays 0: no reserved sample
  const auto a = m.allocate(C::kParamPartitions, 1000, 5);  // a 2 MiB segment
  m.allocate(C::kParamPartitions, 1000, 6);                 // same segment
  m.free(a, 7);                                             // cached: reserved unchanged
  m.allocate(C::kActivations, 4 * kMiB, 8);                 // a 20 MiB segment
  m.add_host(C::kHostOptimizer, 50, 9);
  const std::vector<trace::MemorySample> memory = {
      {3, 1, C::kHostOptimizer, 100},    {3, 5, C::kParamPartitions, 1024},
      {3, 6, C::kParamPartitions, 2048}, {3, 7, C::kParamPartitions, 1024},
      {3, 8, C::kActivations, 4 * kMiB}, {3, 9, C::kHostOptimizer, 150},
  };
  const std::vector<trace::ReservedSample> reserved = {{3, 5, 2 * kMiB}, {3, 8, 22 * kMiB}};
  EXPECT_EQ(t.memory, memory);
  EXPECT_EQ(t.reserved, reserved);
}

TEST(MemoryAccountant, TraceGetsOneAllocationPerBlock) {
  trace::Trace t;
  const std::int32_t weight = t.intern("layers.0.weight");
  MemoryAccountant m(Modelled(), &t, 2);
  const auto a = m.allocate(C::kGatheredParams, 1000, 5, AllocStream::kAllGather, weight);
  m.allocate(C::kActivations, 0, 6);  // nothing counted: no record
  const auto b = m.allocate(C::kActivations, 3000, 7);
  m.free(a, 9);
  const auto c = m.allocate(C::kCommBuffers, 512, 9);  // reuses a's slot
  m.free(c, 12);
  // Sizes as counted (rounded to 512 bytes); a block still live ends at kNever.
  const std::vector<trace::Allocation> expected = {
      {2, C::kGatheredParams, 1024, 5, 9, weight},
      {2, C::kActivations, 3072, 7, trace::kNever, trace::kNone},
      {2, C::kCommBuffers, 512, 9, 12, trace::kNone},
  };
  EXPECT_EQ(t.allocations, expected);
  std::int64_t live = 0;
  for (const trace::Allocation& x : t.allocations)
    if (x.end == trace::kNever) live += x.bytes;
  EXPECT_EQ(live, m.allocated());
  m.free(b, 20);
  EXPECT_EQ(t.allocations[1].end, 20);
}

TEST(MemoryAccountant, ABlockFreedWhenMadeIsDroppedWhileItIsTheLatestRecord) {
  trace::Trace t;
  MemoryAccountant m(Exact(), &t, 0);
  const auto a = m.allocate(C::kActivations, 100, 1);
  m.free(m.allocate(C::kActivations, 200, 2), 2);  // the latest row: dropped
  const auto b = m.allocate(C::kActivations, 300, 3);
  m.free(a, 3);  // freed later than made: kept
  m.free(b, 3);  // freed when made, the latest row: dropped
  const auto c = m.allocate(C::kActivations, 400, 4);
  m.allocate(C::kActivations, 500, 4);
  m.free(c, 4);  // freed when made but not the latest row: kept, never live
  const std::vector<trace::Allocation> expected = {
      {0, C::kActivations, 100, 1, 3, trace::kNone},
      {0, C::kActivations, 400, 4, 4, trace::kNone},
      {0, C::kActivations, 500, 4, trace::kNever, trace::kNone},
  };
  EXPECT_EQ(t.allocations, expected);
}

TEST(MemoryAccountant, NoAllocationRecordsWithoutATrace) {
  MemoryAccountant m(Exact(), nullptr, 0);
  const auto a = m.allocate(C::kActivations, 100, 1, AllocStream::kCompute, 7);
  m.free(a, 2);
  EXPECT_EQ(m.allocated(), 0);
}

TEST(MemoryAccountant, NoReservedSamplesWithoutTheAllocator) {
  trace::Trace t;
  MemoryAccountant m(Exact(), &t, 0);
  m.allocate(C::kActivations, 1000, 1);
  EXPECT_EQ(t.memory.size(), 1u);
  EXPECT_TRUE(t.reserved.empty());
}

TEST(MemoryAccountant, CategoryOnTheWrongSideIsABug) {
  MemoryAccountant m(Exact(), nullptr, 0);
  EXPECT_THROW(m.allocate(C::kHostParams, 100, 1), InternalError);
  EXPECT_THROW(m.add_host(C::kActivations, 100, 1), InternalError);
  EXPECT_THROW(m.add_host(C::kHostParams, -1, 1), InternalError);  // below zero
}

TEST(MemoryAccountant, DoubleFreeIsABug) {
  // Without the allocator, so that the accountant's own check is the one that fires.
  MemoryAccountant m(Exact(), nullptr, 0);
  const auto b = m.allocate(C::kActivations, 100, 1);
  m.free(b, 2);
  EXPECT_THROW(m.free(b, 3), InternalError);
  EXPECT_THROW(m.free(42, 3), InternalError);  // never allocated
}

}  // namespace
}  // namespace zp::sim
