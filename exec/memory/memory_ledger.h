// The books of a counting allocator: live and peak bytes per category slot (memory_scope.h) and in
// total, what was live at the peak, and optionally every change with its wall-clock time, which
// append_to_trace() turns into core/trace memory samples (one per change, as sim writes them), and
// every device block's life in each category it was charged to, with its name, which becomes the
// trace's allocations. A change's sample and the block's start or end carry the one time read
// under the lock, so the blocks live at any sampled time add up to the samples' totals.
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

// A trace category on the device: what a trace's allocations hold.
constexpr bool is_device_slot(Slot slot) {
  return slot < kUnattributed && trace::on_device(static_cast<trace::MemoryCategory>(slot));
}

class MemoryLedger {
 public:
  struct Options {
    bool record_samples = false;
    // Blocks in device categories (what a trace's allocations hold); the caller passes each
    // block's start and label back at its free (counting_allocator.h keeps them).
    bool record_allocations = false;
  };
  explicit MemoryLedger(Options options)
      : options_(options), timed_(options.record_samples || options.record_allocations) {}
  MemoryLedger() : MemoryLedger(Options{}) {}
  const Options& options() const { return options_; }

  // Returns the time the change was booked at (comm::wall_clock_ns()) when recording, else 0.
  std::int64_t allocated(Slot slot, std::int64_t bytes) noexcept;
  // `start_ns` and `label`: the block's, as allocated() and its scope gave them.
  void freed(Slot slot, std::int64_t bytes, std::int64_t start_ns = 0,
             Label label = kNoLabel) noexcept;
  // Live bytes change category (a block recharged, counting_allocator.h); the total does not. The
  // block's life in `from` since `start_ns` ends, named `label`; returns the time its life in `to`
  // starts (0 when not recording).
  std::int64_t moved(Slot from, Slot to, std::int64_t bytes, std::int64_t start_ns = 0,
                     Label label = kNoLabel) noexcept;

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

  // A block's life in one device category, over [start_ns, end_ns). A life that ends when it
  // starts (the same nanosecond) was never live at any sampled time and is not recorded.
  static constexpr std::int64_t kStillLive = INT64_MAX;
  struct Allocation {
    Slot slot = kUnattributed;
    Label label = kNoLabel;
    std::int64_t bytes = 0;
    std::int64_t start_ns = 0;  // comm::wall_clock_ns()
    std::int64_t end_ns = kStillLive;
  };
  // The lives that ended since the last call (Options::record_allocations); the blocks still live
  // are the allocator's to add (CountingAllocator::take_allocations).
  std::vector<Allocation> take_allocations();

 private:
  using SlotBytes = std::array<std::int64_t, kSlotCount>;
  void flush_peak() const;  // under lock_
  // Under lock_: the life of a block in `slot` over [start_ns, end_ns), if it is kept.
  void record(Slot slot, Label label, std::int64_t bytes, std::int64_t start_ns,
              std::int64_t end_ns);

  Options options_;
  bool timed_ = false;  // a change needs its time
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
  std::vector<Allocation> lives_;
};

// Appends samples as core/trace memory samples of trace rank `rank`, at times relative to
// `origin_ns`. Unattributed samples have no trace category and are left out.
void append_to_trace(const std::vector<MemoryLedger::Sample>& samples, std::int32_t rank,
                     std::int64_t origin_ns, trace::Trace& trace);
// Appends allocations as core/trace allocations of trace rank `rank`, at times relative to
// `origin_ns` (a life still going stays trace::kNever), named by their labels' texts.
void append_to_trace(const std::vector<MemoryLedger::Allocation>& allocations, std::int32_t rank,
                     std::int64_t origin_ns, trace::Trace& trace);

}  // namespace zp::exec::memory
