#include "exec/memory/memory_ledger.h"

#include <mutex>
#include <numeric>
#include <unordered_map>

#include "core/util/error.h"
#include "exec/comm/op_log.h"

namespace zp::exec::memory {
namespace {

CategoryTotals totals(const std::array<std::int64_t, kSlotCount>& slots) {
  CategoryTotals t;
  for (std::size_t i = 0; i < t.bytes.size(); ++i)
    t.bytes[i] = slots[i];
  t.unattributed = slots[kUnattributed];
  return t;
}

}  // namespace

std::int64_t CategoryTotals::total() const {
  return std::accumulate(bytes.begin(), bytes.end(), unattributed);
}

std::int64_t MemoryLedger::allocated(Slot slot, std::int64_t bytes) noexcept {
  const std::lock_guard lock(lock_);
  std::int64_t& live = live_[slot];
  live += bytes;
  total_ += bytes;
  ++allocations_;
  if (live > slot_peaks_[slot]) slot_peaks_[slot] = live;
  const bool new_peak = total_ > peak_;
  if (!new_peak && !timed_) return 0;
  const std::int64_t now = comm::wall_clock_ns();
  if (new_peak) {
    peak_ = total_;
    peak_pending_ = true;
    peak_time_ns_ = now;
  }
  // Growth of the vector comes from malloc, not from the allocator being counted.
  if (options_.record_samples) samples_.push_back({now, slot, live});
  return timed_ ? now : 0;
}

void MemoryLedger::freed(Slot slot, std::int64_t bytes, std::int64_t start_ns,
                         Label label) noexcept {
  const std::lock_guard lock(lock_);
  flush_peak();
  std::int64_t& live = live_[slot];
  live -= bytes;
  total_ -= bytes;
  ++frees_;
  if (!timed_) return;
  const std::int64_t now = comm::wall_clock_ns();
  if (options_.record_samples) samples_.push_back({now, slot, live});
  record(slot, label, bytes, start_ns, now);
}

std::int64_t MemoryLedger::moved(Slot from, Slot to, std::int64_t bytes, std::int64_t start_ns,
                                 Label label) noexcept {
  if (from == to) return start_ns;
  const std::lock_guard lock(lock_);
  flush_peak();
  live_[from] -= bytes;
  std::int64_t& live = live_[to];
  live += bytes;
  if (live > slot_peaks_[to]) slot_peaks_[to] = live;
  if (!timed_) return 0;
  const std::int64_t now = comm::wall_clock_ns();
  if (options_.record_samples) {
    samples_.push_back({now, from, live_[from]});
    samples_.push_back({now, to, live});
  }
  record(from, label, bytes, start_ns, now);
  return now;
}

void MemoryLedger::record(Slot slot, Label label, std::int64_t bytes, std::int64_t start_ns,
                          std::int64_t end_ns) {
  if (!options_.record_allocations || !is_device_slot(slot) || end_ns <= start_ns) return;
  lives_.push_back({slot, label, bytes, start_ns, end_ns});
}

void MemoryLedger::flush_peak() const {
  if (!peak_pending_) return;
  at_peak_ = live_;
  peak_pending_ = false;
}

MemoryReading MemoryLedger::read() const {
  const std::lock_guard lock(lock_);
  flush_peak();
  MemoryReading r;
  r.device = "cpu";
  r.allocated = r.reserved = total_;
  r.peak_allocated = r.peak_reserved = peak_;
  r.peak_time_ns = peak_time_ns_;
  r.allocations = allocations_;
  r.frees = frees_;
  r.has_categories = true;
  r.live = totals(live_);
  r.at_peak = totals(at_peak_);
  r.category_peaks = totals(slot_peaks_);
  ZP_CHECK(r.live.total() == total_ && r.at_peak.total() == peak_,
           "memory ledger: category totals disagree with the total");
  return r;
}

void MemoryLedger::reset_peak() {
  const std::lock_guard lock(lock_);
  peak_ = total_;
  peak_time_ns_ = comm::wall_clock_ns();
  at_peak_ = live_;
  slot_peaks_ = live_;
  peak_pending_ = false;
}

std::vector<MemoryLedger::Sample> MemoryLedger::take_samples() {
  std::vector<Sample> out;
  const std::lock_guard lock(lock_);
  out.swap(samples_);
  return out;
}

std::vector<MemoryLedger::Allocation> MemoryLedger::take_allocations() {
  std::vector<Allocation> out;
  const std::lock_guard lock(lock_);
  out.swap(lives_);
  return out;
}

void append_to_trace(const std::vector<MemoryLedger::Sample>& samples, std::int32_t rank,
                     std::int64_t origin_ns, trace::Trace& trace) {
  for (const MemoryLedger::Sample& s : samples) {
    if (s.slot == kUnattributed) continue;
    ZP_CHECK(s.slot < kUnattributed, "memory sample with slot ", int{s.slot});
    trace.memory.push_back(
        {rank, s.time_ns - origin_ns, static_cast<trace::MemoryCategory>(s.slot), s.bytes});
  }
}

void append_to_trace(const std::vector<MemoryLedger::Allocation>& allocations, std::int32_t rank,
                     std::int64_t origin_ns, trace::Trace& trace) {
  std::unordered_map<Label, std::int32_t> names;
  for (const MemoryLedger::Allocation& a : allocations) {
    ZP_CHECK(is_device_slot(a.slot), "allocation with slot ", int{a.slot});
    std::int32_t name = trace::kNone;
    if (a.label != kNoLabel) {
      const auto [it, added] = names.try_emplace(a.label, trace::kNone);
      if (added) it->second = trace.intern(label_text(a.label));
      name = it->second;
    }
    trace.allocations.push_back(
        {rank, static_cast<MemoryCategory>(a.slot), a.bytes, a.start_ns - origin_ns,
         a.end_ns == MemoryLedger::kStillLive ? trace::kNever : a.end_ns - origin_ns, name});
  }
}

}  // namespace zp::exec::memory
