// A model of PyTorch's CUDA caching allocator (c10/cuda/CUDACachingAllocator.cpp, default
// settings), so that reserved memory is predicted as well as allocated memory:
//  - a request is rounded up to a multiple of 512 bytes (512 at least); a request of 0 bytes takes
//    no block at all (PyTorch's allocate() returns a null pointer without calling malloc);
//  - requests of at most 1 MiB come from the small pool, larger ones from the large pool; each
//    pool is kept per stream, and a freed block is only reused by the stream it was allocated on;
//  - a request takes the smallest cached block of its pool that fits (ties: lowest address); a
//    block larger than needed is split when what remains is at least 512 bytes (small pool) or more
//    than 1 MiB (large pool);
//  - with no cached block, a new segment is reserved from the device: 2 MiB for a small request,
//    20 MiB for one under 10 MiB, else the request rounded up to 2 MiB;
//  - a freed block merges with free neighbours of its segment;
//  - when a new segment would exceed the device's capacity, the allocator first returns every
//    wholly free segment (as PyTorch frees its cache and retries); if it still does not fit, the
//    request is an out-of-memory: it is recorded and granted anyway, so that the rest of the
//    simulation still measures how far over the capacity the run goes.
// Not modelled: expandable segments, max_split_size_mb, garbage collection thresholds, events
// that delay reuse across streams (record_stream), which only shift when a block can be reused.
//
// A request or a free costs O(log n + k) for n blocks, k of them free in its pool. Not
// thread-safe.
#pragma once

#include <cstdint>
#include <vector>

namespace zp::sim {

class CachingAllocator {
 public:
  using BlockId = std::int64_t;            // the block's address: unique while it is allocated
  static constexpr BlockId kNoBlock = -1;  // what a 0-byte request gets; free() ignores it

  static constexpr std::int64_t kMinBlockSize = 512;
  static constexpr std::int64_t kSmallSize = 1 << 20;
  static constexpr std::int64_t kSmallBuffer = 2 << 20;
  static constexpr std::int64_t kLargeBuffer = 20 << 20;
  static constexpr std::int64_t kMinLargeAlloc = 10 << 20;
  static constexpr std::int64_t kRoundLarge = 2 << 20;

  // What a request of `bytes` takes from a block.
  static std::int64_t round_size(std::int64_t bytes);
  // The segment reserved for a request of `rounded` bytes when nothing cached fits.
  static std::int64_t segment_size(std::int64_t rounded);

  explicit CachingAllocator(std::int64_t capacity) : capacity_(capacity) {}

  struct Allocation {
    BlockId block = 0;
    std::int64_t size = 0;  // rounded
    bool out_of_memory = false;
    std::int32_t handle = -1;  // what free_handle() takes: no lookup
  };
  // `stream` is any small non-negative integer naming the stream the request is made on.
  Allocation allocate(std::int64_t bytes, int stream);
  void free(BlockId block);               // kNoBlock: nothing to do
  void free_handle(std::int32_t handle);  // -1 (a 0-byte request's): nothing to do

  std::int64_t allocated() const { return allocated_; }
  std::int64_t reserved() const { return reserved_; }
  std::int64_t segments() const { return live_segments_; }
  std::int64_t out_of_memory_count() const { return ooms_; }

 private:
  // Blocks live in a vector and link to their neighbours in the segment, as PyTorch's do; each
  // pool keeps its free blocks in a vector sorted by (size, address): pools hold tens of free
  // blocks, where a sorted vector beats a tree and its node allocations.
  struct Block {
    std::int64_t address = 0;
    std::int64_t size = 0;
    std::int32_t segment = -1;  // index into segments_
    std::int32_t prev = -1;     // neighbours in the segment, by address
    std::int32_t next = -1;
    int stream = 0;
    bool small = false;
    bool allocated = false;
  };
  struct Segment {
    std::int64_t size = 0;
    std::int32_t head = -1;  // its first block; -1 once released
  };
  struct FreeEntry {
    std::int64_t size;
    std::int64_t address;
    std::int32_t block;
    bool operator<(const FreeEntry& o) const {
      return size != o.size ? size < o.size : address < o.address;
    }
  };

  std::vector<FreeEntry>& pool(int stream, bool small);
  void insert_free(std::int32_t block);
  void erase_free(std::int32_t block);
  std::int32_t new_block(const Block& b);
  void drop_block(std::int32_t block);
  void release_free_segments();

  std::int64_t capacity_;
  std::int64_t allocated_ = 0;
  std::int64_t reserved_ = 0;
  std::int64_t next_address_ = 0;
  std::int64_t ooms_ = 0;
  std::int64_t live_segments_ = 0;
  std::vector<Block> blocks_;
  std::vector<std::int32_t> spare_blocks_;  // slots of dropped blocks, reused
  std::vector<Segment> segments_;
  std::vector<std::vector<FreeEntry>> pools_;  // by 2 * stream + small
};

}  // namespace zp::sim
