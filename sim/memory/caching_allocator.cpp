#include "sim/memory/caching_allocator.h"

#include "core/util/error.h"

namespace zp::sim {

std::int64_t CachingAllocator::round_size(std::int64_t bytes) {
  if (bytes < kMinBlockSize) return kMinBlockSize;
  return (bytes + kMinBlockSize - 1) / kMinBlockSize * kMinBlockSize;
}

std::int64_t CachingAllocator::segment_size(std::int64_t rounded) {
  if (rounded <= kSmallSize) return kSmallBuffer;
  if (rounded < kMinLargeAlloc) return kLargeBuffer;
  return (rounded + kRoundLarge - 1) / kRoundLarge * kRoundLarge;
}

void CachingAllocator::insert_free(std::int64_t address, const Block& b) {
  free_.emplace(b.stream, b.small, b.size, address);
}

void CachingAllocator::erase_free(std::int64_t address, const Block& b) {
  const auto erased = free_.erase(FreeKey{b.stream, b.small, b.size, address});
  ZP_CHECK(erased == 1, "free block at ", address, " is not in its pool");
}

CachingAllocator::Allocation CachingAllocator::allocate(std::int64_t bytes, int stream) {
  ZP_CHECK(bytes >= 0, "negative allocation ", bytes);
  if (bytes == 0) return Allocation{kNoBlock, 0, false};
  const std::int64_t size = round_size(bytes);
  const bool small = size <= kSmallSize;
  Allocation out;
  out.size = size;

  auto it = free_.lower_bound(FreeKey{stream, small, size, INT64_MIN});
  const bool cached = it != free_.end() && std::get<0>(*it) == stream && std::get<1>(*it) == small;
  std::int64_t address = 0;
  if (cached) {
    address = std::get<3>(*it);
    free_.erase(it);
  } else {
    const std::int64_t segment = segment_size(size);
    if (reserved_ + segment > capacity_) release_free_segments();
    if (reserved_ + segment > capacity_) {
      out.out_of_memory = true;
      ++ooms_;
    }
    address = next_address_;
    next_address_ += segment;
    segments_.emplace(address, segment);
    reserved_ += segment;
    blocks_.emplace(address, Block{segment, address, stream, small, false});
  }

  Block& block = blocks_.at(address);
  const std::int64_t remaining = block.size - size;
  const bool split = small ? remaining >= kMinBlockSize : remaining > kSmallSize;
  if (split) {
    Block rest{remaining, block.segment, stream, small, false};
    blocks_.emplace(address + size, rest);
    insert_free(address + size, rest);
    block.size = size;
  }
  block.allocated = true;
  allocated_ += block.size;
  out.block = address;
  out.size = block.size;
  return out;
}

void CachingAllocator::free(BlockId address) {
  if (address == kNoBlock) return;
  auto it = blocks_.find(address);
  ZP_CHECK(it != blocks_.end() && it->second.allocated, "freeing block ", address,
           " that is not allocated");
  it->second.allocated = false;
  allocated_ -= it->second.size;

  // Merge with the free neighbours of the same segment.
  if (it != blocks_.begin()) {
    auto prev = std::prev(it);
    if (!prev->second.allocated && prev->second.segment == it->second.segment) {
      erase_free(prev->first, prev->second);
      prev->second.size += it->second.size;
      blocks_.erase(it);
      it = prev;
    }
  }
  auto next = std::next(it);
  if (next != blocks_.end() && !next->second.allocated &&
      next->second.segment == it->second.segment) {
    erase_free(next->first, next->second);
    it->second.size += next->second.size;
    blocks_.erase(next);
  }
  insert_free(it->first, it->second);
}

void CachingAllocator::release_free_segments() {
  for (auto seg = segments_.begin(); seg != segments_.end();) {
    auto b = blocks_.find(seg->first);
    ZP_CHECK(b != blocks_.end(), "segment without a block");
    if (!b->second.allocated && b->second.size == seg->second) {
      erase_free(b->first, b->second);
      blocks_.erase(b);
      reserved_ -= seg->second;
      seg = segments_.erase(seg);
    } else {
      ++seg;
    }
  }
}

}  // namespace zp::sim
