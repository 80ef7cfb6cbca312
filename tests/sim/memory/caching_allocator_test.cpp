#include "sim/memory/caching_allocator.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <utility>

#include "core/util/error.h"

namespace zp::sim {
namespace {

// Every case follows PyTorch's c10/cuda/CUDACachingAllocator.cpp with default settings: round_size,
// get_pool, get_allocation_size, get_free_block (best fit per stream), should_split, free_block's
// merging with prev/next, and malloc's release_cached_blocks before giving up.
constexpr std::int64_t kMiB = 1 << 20;
constexpr std::int64_t kLots = std::int64_t{1} << 40;  // capacity that never runs out

using A = CachingAllocator;

TEST(CachingAllocator, RoundsRequestsUpTo512Bytes) {
  EXPECT_EQ(A::round_size(1), 512);  // at least 512
  EXPECT_EQ(A::round_size(512), 512);
  EXPECT_EQ(A::round_size(513), 1024);
  EXPECT_EQ(A::round_size(1000), 1024);

  A a(kLots);
  EXPECT_EQ(a.allocate(1, 0).size, 512);
  EXPECT_EQ(a.allocate(513, 0).size, 1024);
  EXPECT_EQ(a.allocated(), 512 + 1024);
}

TEST(CachingAllocator, ZeroBytesTakeNoBlock) {
  // PyTorch's allocate(0) returns a null pointer without calling malloc: nothing is reserved.
  A a(kLots);
  const A::Allocation z = a.allocate(0, 0);
  EXPECT_EQ(z.block, A::kNoBlock);
  EXPECT_EQ(z.size, 0);
  EXPECT_EQ(a.allocated(), 0);
  EXPECT_EQ(a.reserved(), 0);
  EXPECT_EQ(a.segments(), 0);
  a.free(z.block);
  EXPECT_EQ(a.allocated(), 0);
}

TEST(CachingAllocator, SegmentSizes) {
  EXPECT_EQ(A::segment_size(512), 2 * kMiB);          // small: a 2 MiB segment
  EXPECT_EQ(A::segment_size(kMiB), 2 * kMiB);         // 1 MiB is still small
  EXPECT_EQ(A::segment_size(kMiB + 512), 20 * kMiB);  // large under 10 MiB: 20 MiB
  EXPECT_EQ(A::segment_size(10 * kMiB - 512), 20 * kMiB);
  EXPECT_EQ(A::segment_size(10 * kMiB), 10 * kMiB);  // 10 MiB and up: rounded to 2 MiB
  EXPECT_EQ(A::segment_size(10 * kMiB + 512), 12 * kMiB);
  EXPECT_EQ(A::segment_size(11 * kMiB), 12 * kMiB);
  EXPECT_EQ(A::segment_size(12 * kMiB), 12 * kMiB);

  // What a first request reserves.
  for (const auto& [request, reserved] :
       {std::pair{std::int64_t{1}, 2 * kMiB}, std::pair{kMiB + 1, 20 * kMiB},
        std::pair{10 * kMiB, 10 * kMiB}, std::pair{11 * kMiB, 12 * kMiB}}) {
    A a(kLots);
    a.allocate(request, 0);
    EXPECT_EQ(a.reserved(), reserved) << request << " bytes";
    EXPECT_EQ(a.segments(), 1);
  }
}

TEST(CachingAllocator, FreeingKeepsTheSegmentReserved) {
  A a(kLots);
  const A::Allocation x = a.allocate(4 * kMiB, 0);
  EXPECT_EQ(a.allocated(), 4 * kMiB);
  EXPECT_EQ(a.reserved(), 20 * kMiB);
  EXPECT_EQ(a.segments(), 1);
  a.free(x.block);
  EXPECT_EQ(a.allocated(), 0);
  EXPECT_EQ(a.reserved(), 20 * kMiB);  // cached, not returned
  EXPECT_EQ(a.segments(), 1);
}

TEST(CachingAllocator, SmallAndLargePoolsAreSeparate) {
  {
    A a(kLots);
    const A::Allocation s = a.allocate(kMiB, 0);  // small: 1 MiB of a 2 MiB segment
    EXPECT_EQ(s.size, kMiB);
    a.free(s.block);  // the whole 2 MiB segment is free, in the small pool
    // 1 MiB + 512 is large: the free small segment is not offered; a 20 MiB one is reserved.
    a.allocate(kMiB + 512, 0);
    EXPECT_EQ(a.reserved(), 2 * kMiB + 20 * kMiB);
    EXPECT_EQ(a.segments(), 2);
  }
  {
    A a(kLots);
    a.free(a.allocate(4 * kMiB, 0).block);  // a free 20 MiB segment in the large pool
    a.allocate(512, 0);                     // small: a new 2 MiB segment
    EXPECT_EQ(a.reserved(), 20 * kMiB + 2 * kMiB);
    EXPECT_EQ(a.segments(), 2);
  }
}

TEST(CachingAllocator, BestFitTakesTheSmallestBlockThatFits) {
  A a(kLots);
  // Three whole segments (10 MiB and up are reserved at their size, multiples of 2 MiB).
  const A::Allocation x16 = a.allocate(16 * kMiB, 0);
  const A::Allocation x12 = a.allocate(12 * kMiB, 0);
  const A::Allocation x14 = a.allocate(14 * kMiB, 0);
  a.free(x16.block);
  a.free(x12.block);
  a.free(x14.block);
  // 11 MiB fits all three; the 12 MiB one is the smallest (not the first, not the largest). The
  // 1 MiB left over is not more than 1 MiB, so the block is handed out whole.
  const A::Allocation y = a.allocate(11 * kMiB, 0);
  EXPECT_EQ(y.block, x12.block);
  EXPECT_EQ(y.size, 12 * kMiB);
  EXPECT_EQ(a.allocated(), 12 * kMiB);
  EXPECT_EQ(a.reserved(), 42 * kMiB);  // 16 + 12 + 14: nothing new
}

TEST(CachingAllocator, BestFitTiesGoToTheLowestAddress) {
  A a(kLots);
  const A::Allocation first = a.allocate(12 * kMiB, 0);
  const A::Allocation second = a.allocate(12 * kMiB, 0);
  ASSERT_LT(first.block, second.block);
  a.free(second.block);  // freed first, still not preferred
  a.free(first.block);
  EXPECT_EQ(a.allocate(12 * kMiB, 0).block, first.block);
  EXPECT_EQ(a.allocate(12 * kMiB, 0).block, second.block);
}

TEST(CachingAllocator, SmallBlockSplitsWhenAtLeast512BytesRemain) {
  A a(kLots);
  const A::Allocation p1 = a.allocate(kMiB, 0);  // 2 MiB segment: 1 MiB used, 1 MiB free
  // The free 1 MiB less 512 leaves exactly 512: split (small pool: remainder >= 512).
  const A::Allocation p2 = a.allocate(kMiB - 512, 0);
  EXPECT_EQ(p2.block, p1.block + kMiB);
  EXPECT_EQ(p2.size, kMiB - 512);
  // The 512 left over serves the next 512-byte request in the same segment.
  const A::Allocation p3 = a.allocate(512, 0);
  EXPECT_EQ(p3.block, p1.block + 2 * kMiB - 512);
  EXPECT_EQ(a.allocated(), 2 * kMiB);
  EXPECT_EQ(a.reserved(), 2 * kMiB);
  EXPECT_EQ(a.segments(), 1);
}

TEST(CachingAllocator, LargeBlockSplitsOnlyWhenMoreThan1MiBRemains) {
  {
    // 19 MiB: a 20 MiB segment with exactly 1 MiB left over, which is not split off.
    A a(kLots);
    const A::Allocation x = a.allocate(19 * kMiB, 0);
    EXPECT_EQ(x.size, 20 * kMiB);
    EXPECT_EQ(a.allocated(), 20 * kMiB);
  }
  {
    // 19 MiB - 512: 1 MiB + 512 is left over, more than 1 MiB: split, and a request of exactly
    // that size takes it without a new segment.
    A a(kLots);
    const A::Allocation x = a.allocate(19 * kMiB - 512, 0);
    EXPECT_EQ(x.size, 19 * kMiB - 512);
    const A::Allocation rest = a.allocate(kMiB + 512, 0);
    EXPECT_EQ(rest.block, x.block + 19 * kMiB - 512);
    EXPECT_EQ(a.reserved(), 20 * kMiB);
    EXPECT_EQ(a.segments(), 1);
  }
  {
    // A cached 10 MiB segment.
    A a(kLots);
    a.free(a.allocate(10 * kMiB, 0).block);
    EXPECT_EQ(a.reserved(), 10 * kMiB);
    // 9 MiB takes it (no new 20 MiB segment); the 1 MiB left is not split off.
    const A::Allocation x = a.allocate(9 * kMiB, 0);
    EXPECT_EQ(x.size, 10 * kMiB);
    EXPECT_EQ(a.reserved(), 10 * kMiB);
    a.free(x.block);
    // 8 MiB + 512 leaves 2 MiB - 512 > 1 MiB: split.
    const A::Allocation y = a.allocate(8 * kMiB + 512, 0);
    EXPECT_EQ(y.size, 8 * kMiB + 512);
    // 1 MiB + 512 from the 2 MiB - 512 left leaves 1 MiB - 1024: not split, the block goes whole.
    const A::Allocation z = a.allocate(kMiB + 512, 0);
    EXPECT_EQ(z.block, y.block + 8 * kMiB + 512);
    EXPECT_EQ(z.size, 2 * kMiB - 512);
    EXPECT_EQ(a.allocated(), 10 * kMiB);
    EXPECT_EQ(a.reserved(), 10 * kMiB);
  }
}

TEST(CachingAllocator, FreedBlocksServeOnlyTheirOwnStream) {
  A a(kLots);
  const A::Allocation on1 = a.allocate(4 * kMiB, 1);
  a.free(on1.block);
  // Stream 0 does not see stream 1's free block: a second 20 MiB segment.
  const A::Allocation on0 = a.allocate(4 * kMiB, 0);
  EXPECT_NE(on0.block, on1.block);
  EXPECT_EQ(a.reserved(), 40 * kMiB);
  EXPECT_EQ(a.segments(), 2);
  // Stream 1 gets its own block back.
  EXPECT_EQ(a.allocate(4 * kMiB, 1).block, on1.block);
  EXPECT_EQ(a.reserved(), 40 * kMiB);
}

TEST(CachingAllocator, FreedBlockMergesWithFreeNeighbours) {
  A a(kLots);
  // One 20 MiB segment: [a 4][b 4][c 4][free 8].
  const A::Allocation x = a.allocate(4 * kMiB, 0);
  const A::Allocation y = a.allocate(4 * kMiB, 0);
  const A::Allocation z = a.allocate(4 * kMiB, 0);
  ASSERT_EQ(a.segments(), 1);
  // Free b then a: a merges with the free block after it, giving [free 8][c 4][free 8]. Of the two
  // 8 MiB blocks the lower address wins; unmerged, only the tail would fit.
  a.free(y.block);
  a.free(x.block);
  const A::Allocation d = a.allocate(8 * kMiB, 0);
  EXPECT_EQ(d.block, x.block);
  a.free(d.block);
  // Freeing c merges it with both neighbours: the whole 20 MiB is one block, and 18 MiB fits.
  a.free(z.block);
  const A::Allocation e = a.allocate(18 * kMiB, 0);
  EXPECT_EQ(e.block, x.block);
  EXPECT_EQ(a.reserved(), 20 * kMiB);
  EXPECT_EQ(a.segments(), 1);
}

TEST(CachingAllocator, BlocksOfDifferentSegmentsDoNotMerge) {
  A a(kLots);
  // Two 10 MiB segments, adjacent in the model's address space.
  const A::Allocation x = a.allocate(10 * kMiB, 0);
  const A::Allocation y = a.allocate(10 * kMiB, 0);
  ASSERT_EQ(y.block, x.block + 10 * kMiB);
  a.free(x.block);
  a.free(y.block);
  // No 20 MiB block exists: a third segment.
  a.allocate(20 * kMiB, 0);
  EXPECT_EQ(a.reserved(), 40 * kMiB);
  EXPECT_EQ(a.segments(), 3);
}

TEST(CachingAllocator, ReleasesWhollyFreeSegmentsBeforeRunningOut) {
  A a(40 * kMiB);
  // On stream 1, so that stream 0 cannot use its free blocks: a 20 MiB segment laid out as
  // [free 4][used 4][free 12], whose first block is free but which is not wholly free.
  const A::Allocation x = a.allocate(4 * kMiB, 1);
  a.allocate(4 * kMiB, 1);
  a.free(x.block);
  a.free(a.allocate(12 * kMiB, 0).block);  // a 12 MiB segment, wholly free
  EXPECT_EQ(a.reserved(), 32 * kMiB);      // kept while there is room
  // 20 MiB fits no cached block of stream 0 and 32 + 20 > 40: the free 12 MiB segment is returned
  // (not the partly used one), and 20 + 20 fits.
  const A::Allocation big = a.allocate(20 * kMiB, 0);
  EXPECT_FALSE(big.out_of_memory);
  EXPECT_EQ(a.out_of_memory_count(), 0);
  EXPECT_EQ(a.reserved(), 40 * kMiB);
  EXPECT_EQ(a.segments(), 2);
  EXPECT_EQ(a.allocated(), 24 * kMiB);
  // The partly used segment kept its free blocks: x's place serves stream 1 again.
  EXPECT_EQ(a.allocate(4 * kMiB, 1).block, x.block);
  EXPECT_EQ(a.reserved(), 40 * kMiB);
}

TEST(CachingAllocator, OutOfMemoryIsCountedAndGranted) {
  A a(30 * kMiB);
  EXPECT_FALSE(a.allocate(12 * kMiB, 0).out_of_memory);
  // 12 + 20 > 30 with nothing to release: out of memory, granted anyway.
  const A::Allocation b = a.allocate(20 * kMiB, 0);
  EXPECT_TRUE(b.out_of_memory);
  EXPECT_EQ(b.size, 20 * kMiB);
  EXPECT_EQ(a.out_of_memory_count(), 1);
  EXPECT_EQ(a.reserved(), 32 * kMiB);
  EXPECT_EQ(a.allocated(), 32 * kMiB);
  EXPECT_EQ(a.segments(), 2);
  // Another one: 32 + 2 > 30.
  EXPECT_TRUE(a.allocate(512, 0).out_of_memory);
  EXPECT_EQ(a.out_of_memory_count(), 2);
  // A cached block needs no new segment: no out-of-memory.
  a.free(b.block);
  EXPECT_FALSE(a.allocate(20 * kMiB, 0).out_of_memory);
  EXPECT_EQ(a.out_of_memory_count(), 2);
  EXPECT_EQ(a.reserved(), 34 * kMiB);
}

TEST(CachingAllocator, FreeingABlockTwiceIsABug) {
  A a(kLots);
  const A::Allocation x = a.allocate(512, 0);
  a.free(x.block);
  EXPECT_THROW(a.free(x.block), InternalError);
}

}  // namespace
}  // namespace zp::sim
