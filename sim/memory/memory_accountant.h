// Where every byte of one simulated rank is, over time. Device memory is allocated and freed in
// blocks, each in one category (core/trace/trace.h); host and NVMe memory is added and removed by
// category. The accountant keeps the totals, the device peak with its breakdown and the module
// running then, what PyTorch's caching allocator would reserve (optional), and, when given a
// trace, one sample per change (a reserved sample only when reserved memory changes) and one
// allocation record per device block of non-zero size (its category, counted bytes, when it was
// allocated and freed, and the caller's label); a block freed at the time it was made is dropped
// when it is still the latest record (it was never live).
//
// Device totals count what PyTorch's memory_allocated() counts: each block at its rounded size
// (a multiple of 512 bytes) when the allocator is modelled, its exact size otherwise.
//
// O(log n) per operation with the allocator, O(1) without. Not thread-safe.
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <optional>
#include <vector>

#include "core/trace/trace.h"
#include "sim/engine/simulator.h"
#include "sim/memory/caching_allocator.h"

namespace zp::sim {

using trace::MemoryCategory;
using CategoryBytes = std::array<std::int64_t, trace::kMemoryCategoryCount>;

// The stream a device allocation is made on: the caching allocator keeps a pool per stream.
enum class AllocStream : std::uint8_t { kCompute, kAllGather, kReduceScatter };

struct MemorySnapshot {
  TimeNs time = 0;
  std::int64_t allocated = 0;  // device
  std::int64_t reserved = 0;   // device, when the allocator is modelled
  CategoryBytes bytes{};       // every category, device and host
  // What was running, in the code of the step that set it (set_running): not an index into the
  // trace's strings. Each step encodes its own (a forward call, a call in a phase, a pipeline
  // layer in a phase; the kRunning* constants outside them) and decodes it for the report's
  // `peak_running`; trace::kNone (kRunningNothing) before anything ran.
  std::int32_t running = trace::kNone;
  std::int32_t step = 0;
};

class MemoryAccountant {
 public:
  struct Options {
    std::int64_t device_capacity = INT64_MAX;
    bool model_allocator = true;
  };
  // `trace` may be null; otherwise samples go to it under `trace_rank`.
  MemoryAccountant(Options options, trace::Trace* trace, std::int32_t trace_rank);

  using Block = std::int64_t;
  // A device allocation in a device category. Returns a handle for free(). `label`, an index into
  // the trace's strings (a parameter's name, a module, "gather 12") or kNone, names the block in
  // the trace's allocations; ignored without a trace.
  Block allocate(MemoryCategory category, std::int64_t bytes, TimeNs time,
                 AllocStream stream = AllocStream::kCompute, std::int32_t label = trace::kNone) {
    // Without the allocator or a trace a block only books its bytes: inline, as the simulators
    // allocate per simulated tensor (the planner's setting).
    if (!bookkeeping_only_ || bytes <= 0 || free_list_.empty() || !trace::on_device(category))
      return allocate_slow(category, bytes, time, stream, label);
    const Block id = free_list_.back();
    free_list_.pop_back();
    --free_slots_;
    LiveBlock& b = blocks_[static_cast<std::size_t>(id)];
    b.category = category;
    b.size = bytes;
    b.allocator_block = -1;
    b.live = true;
    b.trace_row = -1;
    bytes_[static_cast<std::size_t>(category)] += bytes;
    allocated_ += bytes;
    raise_peaks(time);  // reserved is allocated: peak_reserved() reads the peak
    return id;
  }
  void free(Block block, TimeNs time) {
    if (!bookkeeping_only_ || block < 0 || static_cast<std::size_t>(block) >= blocks_.size() ||
        !blocks_[static_cast<std::size_t>(block)].live)
      return free_slow(block, time);
    LiveBlock& b = blocks_[static_cast<std::size_t>(block)];
    flush_peaks();
    b.live = false;
    bytes_[static_cast<std::size_t>(b.category)] -= b.size;
    allocated_ -= b.size;
    free_list_.push_back(block);
    ++free_slots_;
    // Less is allocated than at either peak: nothing else changes.
  }
  // Host and NVMe categories: add `delta` bytes (negative to remove).
  void add_host(MemoryCategory category, std::int64_t delta, TimeNs time);

  // What is running from now on, as the caller encodes it (see MemorySnapshot::running), for the
  // peak's label; and the training step.
  void set_running(std::int32_t label) { running_ = label; }
  void set_step(std::int32_t step) { step_ = step; }

  std::int64_t allocated() const { return allocated_; }
  std::int64_t reserved() const { return allocator_ ? allocator_->reserved() : allocated_; }
  std::int64_t bytes(MemoryCategory category) const {
    return bytes_[static_cast<std::size_t>(category)];
  }
  // The device peak: the first moment allocated memory reached its maximum.
  const MemorySnapshot& peak() const {
    flush_peaks();
    return peak_;
  }
  std::int64_t peak_reserved() const {
    return allocator_ ? peak_reserved_ : std::max(peak_reserved_, peak_.allocated);
  }
  // Host memory's largest total at any moment (offloaded state, cpu_checkpointing), and NVMe's.
  std::int64_t peak_host() const { return peak_host_; }
  std::int64_t peak_nvme() const { return peak_nvme_; }
  std::int64_t out_of_memory_count() const {
    return allocator_ ? allocator_->out_of_memory_count() : 0;
  }
  // The peak since the last reset_window(), for per-step figures.
  const MemorySnapshot& window_peak() const {
    flush_peaks();
    return window_peak_;
  }
  void reset_window(TimeNs time);
  std::int64_t live_blocks() const {
    return static_cast<std::int64_t>(blocks_.size()) - free_slots_;
  }

 private:
  struct LiveBlock {
    MemoryCategory category = MemoryCategory::kActivations;
    std::int64_t size = 0;
    std::int32_t allocator_block = -1;  // the allocator's handle
    bool live = false;
    std::int64_t trace_row = -1;  // index into the trace's allocations, or -1
  };
  // After every change: the peaks, and the trace's samples. Inline, as allocate() and free() run
  // per simulated tensor.
  void changed(MemoryCategory category, TimeNs time) {
    raise_peaks(time);
    const std::int64_t reserved_now = reserved();
    peak_reserved_ = std::max(peak_reserved_, reserved_now);
    if (trace_) sample(category, time, reserved_now);
  }
  void raise_peaks(TimeNs time) {
    if (allocated_ > peak_.allocated) {
      peak_.allocated = allocated_;
      peak_time_ = time;
      peak_running_ = running_;
      peak_step_ = step_;
      peak_pending_ = true;
    }
    if (allocated_ > window_peak_.allocated) {
      window_peak_.allocated = allocated_;
      window_time_ = time;
      window_running_ = running_;
      window_step_ = step_;
      window_pending_ = true;
    }
  }
  void sample(MemoryCategory category, TimeNs time, std::int64_t reserved_now);
  Block allocate_slow(MemoryCategory category, std::int64_t bytes, TimeNs time, AllocStream stream,
                      std::int32_t label);
  void free_slow(Block block, TimeNs time);
  MemorySnapshot snapshot(TimeNs time) const;
  // A new peak is copied out lazily: on the ramp up to it every allocation is a new peak, and the
  // state only needs copying once something other than another allocation is about to change it.
  void flush_peaks() const {
    if (peak_pending_ || window_pending_) copy_pending_peaks();
  }
  void copy_pending_peaks() const;

  Options options_;
  trace::Trace* trace_;
  std::int32_t trace_rank_;
  std::optional<CachingAllocator> allocator_;
  bool bookkeeping_only_ = false;  // no allocator and no trace: allocate and free inline
  std::vector<LiveBlock> blocks_;
  std::vector<Block> free_list_;
  std::int64_t free_slots_ = 0;
  CategoryBytes bytes_{};
  std::int64_t allocated_ = 0;
  std::int64_t host_ = 0;
  std::int64_t peak_reserved_ = 0;
  std::int64_t peak_host_ = 0;
  std::int64_t peak_nvme_ = 0;
  std::int64_t last_reserved_sample_ = 0;  // a trace's reserved curve starts at 0
  std::int32_t running_ = trace::kNone;
  std::int32_t step_ = 0;
  mutable MemorySnapshot peak_;
  mutable MemorySnapshot window_peak_;
  mutable bool peak_pending_ = false, window_pending_ = false;
  // When each pending peak was reached, and what ran then.
  TimeNs peak_time_ = 0, window_time_ = 0;
  std::int32_t peak_running_ = trace::kNone, window_running_ = trace::kNone;
  std::int32_t peak_step_ = 0, window_step_ = 0;
};

}  // namespace zp::sim
