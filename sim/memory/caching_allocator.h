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
// Every operation is O(log n) in the number of blocks. Not thread-safe.
#pragma once

#include <cstdint>
#include <map>
#include <set>
#include <tuple>
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
  };
  // `stream` is any small integer naming the stream the request is made on.
  Allocation allocate(std::int64_t bytes, int stream);
  void free(BlockId block);  // kNoBlock: nothing to do

  std::int64_t allocated() const { return allocated_; }
  std::int64_t reserved() const { return reserved_; }
  std::int64_t segments() const { return static_cast<std::int64_t>(segments_.size()); }
  std::int64_t out_of_memory_count() const { return ooms_; }

 private:
  struct Block {
    std::int64_t size = 0;
    std::int64_t segment = 0;  // address of its segment
    int stream = 0;
    bool small = false;
    bool allocated = false;
  };
  // Free blocks of one pool: (stream, small, size, address), searched with lower_bound.
  using FreeKey = std::tuple<int, bool, std::int64_t, std::int64_t>;

  void insert_free(std::int64_t address, const Block& block);
  void erase_free(std::int64_t address, const Block& block);
  void release_free_segments();

  std::int64_t capacity_;
  std::int64_t allocated_ = 0;
  std::int64_t reserved_ = 0;
  std::int64_t next_address_ = 0;
  std::int64_t ooms_ = 0;
  std::map<std::int64_t, Block> blocks_;           // by address: every block, free or not
  std::map<std::int64_t, std::int64_t> segments_;  // address -> size
  std::set<FreeKey> free_;
};

}  // namespace zp::sim
