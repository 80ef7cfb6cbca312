// The books of a counting allocator: live and peak bytes per category slot (memory_scope.h) and in
// total, what was live at the peak, and optionally every change with its wall-clock time, which
// append_to_trace() turns into core/trace memory samples (one per change, as sim writes them).
//
// A new peak is noted in O(1); its breakdown is copied once something other than another
// allocation is about to change the books (on the way up to a peak every allocation is a new one).
//
// Thread-safe: one short critical section per allocation and per free, under a spin lock (one
// atomic exchange to enter, a plain store to leave: half the atomic operations of a mutex; the
// section is a few dozen instructions, plus a vector append when sampling). allocated() and freed()
// never throw: running out of memory for a sample ends the process.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <thread>
#include <vector>

#include "core/trace/trace.h"
#include "exec/memory/memory_meter.h"
#include "exec/memory/memory_scope.h"

namespace zp::exec::memory {

// Test-and-test-and-set; yields after a while, for a holder that lost its core.
class SpinLock {
 public:
  void lock() noexcept {
    for (int spins = 0; locked_.exchange(true, std::memory_order_acquire); ++spins) {
      while (locked_.load(std::memory_order_relaxed)) {
        if (++spins > 64) std::this_thread::yield();
      }
    }
  }
  void unlock() noexcept { locked_.store(false, std::memory_order_release); }

 private:
  std::atomic<bool> locked_{false};
};

class MemoryLedger {
 public:
  struct Options {
    bool record_samples = false;
  };
  explicit MemoryLedger(Options options) : options_(options) {}
  MemoryLedger() : MemoryLedger(Options{}) {}

  void allocated(Slot slot, std::int64_t bytes) noexcept;
  void freed(Slot slot, std::int64_t bytes) noexcept;
  // Live bytes change category (a block recharged, counting_allocator.h); the total does not.
  void moved(Slot from, Slot to, std::int64_t bytes) noexcept;

  // A reading with device "cpu".
  MemoryReading read() const;
  void reset_peak();

  // One change of one slot: its new total from time_ns on.
  struct Sample {
    std::int64_t time_ns = 0;  // comm::wall_clock_ns()
    Slot slot = kUnattributed;
    std::int64_t bytes = 0;
  };
  // The samples recorded since the last call (Options::record_samples).
  std::vector<Sample> take_samples();

 private:
  using SlotBytes = std::array<std::int64_t, kSlotCount>;
  void flush_peak() const;  // under lock_

  Options options_;
  mutable SpinLock lock_;
  SlotBytes live_{};
  SlotBytes slot_peaks_{};
  mutable SlotBytes at_peak_{};
  mutable bool peak_pending_ = false;
  std::int64_t total_ = 0;
  std::int64_t peak_ = 0;
  std::int64_t peak_time_ns_ = 0;
  std::int64_t allocations_ = 0;
  std::int64_t frees_ = 0;
  std::vector<Sample> samples_;
};

// Appends samples as core/trace memory samples of trace rank `rank`, at times relative to
// `origin_ns`. Unattributed samples have no trace category and are left out.
void append_to_trace(const std::vector<MemoryLedger::Sample>& samples, std::int32_t rank,
                     std::int64_t origin_ns, trace::Trace& trace);

}  // namespace zp::exec::memory
