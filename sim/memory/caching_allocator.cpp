#include "sim/memory/caching_allocator.h"

#include <algorithm>

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

std::vector<CachingAllocator::FreeEntry>& CachingAllocator::pool(int stream, bool small) {
  const auto index = static_cast<std::size_t>(2 * stream + (small ? 1 : 0));
  if (index >= pools_.size()) pools_.resize(index + 1);
  return pools_[index];
}

void CachingAllocator::insert_free(std::int32_t id) {
  const Block& b = blocks_[static_cast<std::size_t>(id)];
  std::vector<FreeEntry>& p = pool(b.stream, b.small);
  const FreeEntry e{b.size, b.address, id};
  p.insert(std::upper_bound(p.begin(), p.end(), e), e);
}

void CachingAllocator::erase_free(std::int32_t id) {
  const Block& b = blocks_[static_cast<std::size_t>(id)];
  std::vector<FreeEntry>& p = pool(b.stream, b.small);
  const auto it = std::lower_bound(p.begin(), p.end(), FreeEntry{b.size, b.address, id});
  ZP_CHECK(it != p.end() && it->block == id, "free block at ", b.address, " is not in its pool");
  p.erase(it);
}

std::int32_t CachingAllocator::new_block(const Block& b) {
  if (!spare_blocks_.empty()) {
    const std::int32_t id = spare_blocks_.back();
    spare_blocks_.pop_back();
    blocks_[static_cast<std::size_t>(id)] = b;
    return id;
  }
  blocks_.push_back(b);
  return static_cast<std::int32_t>(blocks_.size() - 1);
}

void CachingAllocator::drop_block(std::int32_t id) {
  spare_blocks_.push_back(id);
}

CachingAllocator::Allocation CachingAllocator::allocate(std::int64_t bytes, int stream) {
  ZP_CHECK(bytes >= 0, "negative allocation ", bytes);
  ZP_CHECK(stream >= 0, "negative stream ", stream);
  if (bytes == 0) return Allocation{kNoBlock, 0, false};
  const std::int64_t size = round_size(bytes);
  const bool small = size <= kSmallSize;
  Allocation out;
  out.size = size;

  std::vector<FreeEntry>& p = pool(stream, small);
  const auto it = std::lower_bound(p.begin(), p.end(), FreeEntry{size, INT64_MIN, -1});
  std::int32_t id = -1;
  if (it != p.end()) {
    id = it->block;
    p.erase(it);
  } else {
    const std::int64_t segment = segment_size(size);
    if (reserved_ + segment > capacity_) release_free_segments();
    if (reserved_ + segment > capacity_) {
      out.out_of_memory = true;
      ++ooms_;
    }
    const auto seg = static_cast<std::int32_t>(segments_.size());
    id = new_block(Block{next_address_, segment, seg, -1, -1, stream, small, false});
    segments_.push_back(Segment{segment, id});
    next_address_ += segment;
    reserved_ += segment;
    ++live_segments_;
  }

  const std::int64_t remaining = blocks_[static_cast<std::size_t>(id)].size - size;
  const bool split = small ? remaining >= kMinBlockSize : remaining > kSmallSize;
  if (split) {
    const Block& b = blocks_[static_cast<std::size_t>(id)];
    const std::int32_t rest =
        new_block(Block{b.address + size, remaining, b.segment, id, b.next, stream, small, false});
    Block& block = blocks_[static_cast<std::size_t>(id)];  // new_block may have moved it
    if (block.next >= 0) blocks_[static_cast<std::size_t>(block.next)].prev = rest;
    block.next = rest;
    block.size = size;
    insert_free(rest);
  }
  Block& block = blocks_[static_cast<std::size_t>(id)];
  block.allocated = true;
  allocated_ += block.size;
  out.block = block.address;
  out.handle = id;
  out.size = block.size;
  return out;
}

void CachingAllocator::free(BlockId address) {
  if (address == kNoBlock) return;
  for (std::size_t i = 0; i < blocks_.size(); ++i) {
    if (blocks_[i].allocated && blocks_[i].address == address) {
      free_handle(static_cast<std::int32_t>(i));
      return;
    }
  }
  ZP_CHECK(false, "freeing block ", address, " that is not allocated");
}

void CachingAllocator::free_handle(std::int32_t id) {
  if (id < 0) return;
  ZP_CHECK(static_cast<std::size_t>(id) < blocks_.size() &&
               blocks_[static_cast<std::size_t>(id)].allocated,
           "freeing block ", id, " that is not allocated");
  Block* b = &blocks_[static_cast<std::size_t>(id)];
  b->allocated = false;
  allocated_ -= b->size;

  // Merge with the free neighbours of the same segment.
  if (b->prev >= 0 && !blocks_[static_cast<std::size_t>(b->prev)].allocated) {
    const std::int32_t prev = b->prev;
    Block& p = blocks_[static_cast<std::size_t>(prev)];
    erase_free(prev);
    p.size += b->size;
    p.next = b->next;
    if (b->next >= 0) blocks_[static_cast<std::size_t>(b->next)].prev = prev;
    drop_block(id);
    id = prev;
    b = &p;
  }
  if (b->next >= 0 && !blocks_[static_cast<std::size_t>(b->next)].allocated) {
    const std::int32_t next = b->next;
    const Block& n = blocks_[static_cast<std::size_t>(next)];
    erase_free(next);
    b->size += n.size;
    b->next = n.next;
    if (n.next >= 0) blocks_[static_cast<std::size_t>(n.next)].prev = id;
    drop_block(next);
  }
  insert_free(id);
}

void CachingAllocator::release_free_segments() {
  for (Segment& seg : segments_) {
    if (seg.head < 0) continue;
    const Block& b = blocks_[static_cast<std::size_t>(seg.head)];
    if (b.allocated || b.size != seg.size) continue;
    erase_free(seg.head);
    drop_block(seg.head);
    seg.head = -1;
    reserved_ -= seg.size;
    --live_segments_;
  }
}

}  // namespace zp::sim
