#include "sim/memory/memory_accountant.h"

#include "core/util/error.h"

namespace zp::sim {

MemoryAccountant::MemoryAccountant(Options options, trace::Trace* trace, std::int32_t trace_rank)
    : options_(options), trace_(trace), trace_rank_(trace_rank) {
  if (options_.model_allocator) allocator_.emplace(options_.device_capacity);
  bookkeeping_only_ = !allocator_ && !trace_;
}

MemoryAccountant::Block MemoryAccountant::allocate_slow(MemoryCategory category, std::int64_t bytes,
                                                        TimeNs time, AllocStream stream,
                                                        std::int32_t label) {
  ZP_CHECK(trace::on_device(category), "host category ", trace::to_string(category),
           " allocated on the device");
  ZP_CHECK(bytes >= 0, "negative allocation of ", bytes, " bytes");
  if (bytes == 0) flush_peaks();  // it may change reserved memory without raising the peak
  LiveBlock b;
  b.category = category;
  b.live = true;
  if (allocator_) {
    const CachingAllocator::Allocation a = allocator_->allocate(bytes, static_cast<int>(stream));
    b.size = a.size;
    b.allocator_block = a.handle;
  } else {
    b.size = bytes;
  }
  if (trace_ && b.size > 0) {
    b.trace_row = static_cast<std::int64_t>(trace_->allocations.size());
    trace_->allocations.push_back(
        trace::Allocation{trace_rank_, category, b.size, time, trace::kNever, label});
  }
  Block id;
  if (!free_list_.empty()) {
    id = free_list_.back();
    free_list_.pop_back();
    --free_slots_;
    blocks_[static_cast<std::size_t>(id)] = b;
  } else {
    id = static_cast<Block>(blocks_.size());
    blocks_.push_back(b);
  }
  bytes_[static_cast<std::size_t>(category)] += b.size;
  allocated_ += b.size;
  changed(category, time);
  return id;
}

void MemoryAccountant::free_slow(Block block, TimeNs time) {
  ZP_CHECK(block >= 0 && static_cast<std::size_t>(block) < blocks_.size(), "no block ", block);
  LiveBlock& b = blocks_[static_cast<std::size_t>(block)];
  ZP_CHECK(b.live, "block ", block, " freed twice");
  flush_peaks();
  b.live = false;
  if (b.trace_row >= 0) {
    const auto row = static_cast<std::size_t>(b.trace_row);
    trace::Allocation& a = trace_->allocations[row];
    ZP_CHECK(time >= a.start, "block ", block, " freed at ", time, " before its allocation at ",
             a.start);
    a.end = time;
    // Freed when it was made (a workspace) and the latest row: never live, so not kept.
    if (a.end == a.start && row + 1 == trace_->allocations.size()) trace_->allocations.pop_back();
  }
  if (allocator_) allocator_->free_handle(b.allocator_block);
  bytes_[static_cast<std::size_t>(b.category)] -= b.size;
  allocated_ -= b.size;
  free_list_.push_back(block);
  ++free_slots_;
  changed(b.category, time);
}

void MemoryAccountant::add_host(MemoryCategory category, std::int64_t delta, TimeNs time) {
  ZP_CHECK(!trace::on_device(category), "device category ", trace::to_string(category),
           " added as host memory");
  flush_peaks();
  std::int64_t& total = bytes_[static_cast<std::size_t>(category)];
  total += delta;
  ZP_CHECK(total >= 0, trace::to_string(category), " went negative");
  if (category == MemoryCategory::kNvme) {
    peak_nvme_ = std::max(peak_nvme_, total);
  } else {
    host_ += delta;
    peak_host_ = std::max(peak_host_, host_);
  }
  changed(category, time);
}

MemorySnapshot MemoryAccountant::snapshot(TimeNs time) const {
  MemorySnapshot s;
  s.time = time;
  s.allocated = allocated_;
  s.reserved = reserved();
  s.bytes = bytes_;
  s.running = running_;
  s.step = step_;
  return s;
}

void MemoryAccountant::reset_window(TimeNs time) {
  flush_peaks();
  window_peak_ = snapshot(time);
}

void MemoryAccountant::copy_pending_peaks() const {
  if (peak_pending_) {
    peak_ = snapshot(peak_time_);
    peak_.running = peak_running_;
    peak_.step = peak_step_;
    peak_pending_ = false;
  }
  if (window_pending_) {
    window_peak_ = snapshot(window_time_);
    window_peak_.running = window_running_;
    window_peak_.step = window_step_;
    window_pending_ = false;
  }
}

void MemoryAccountant::sample(MemoryCategory category, TimeNs time, std::int64_t reserved_now) {
  trace_->memory.push_back(
      trace::MemorySample{trace_rank_, time, category, bytes_[static_cast<std::size_t>(category)]});
  if (allocator_ && reserved_now != last_reserved_sample_) {
    trace_->reserved.push_back(trace::ReservedSample{trace_rank_, time, reserved_now});
    last_reserved_sample_ = reserved_now;
  }
}

}  // namespace zp::sim
