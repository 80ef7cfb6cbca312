// One reporting interface for measured memory, whatever measures it: the counting CPU allocator
// (counting_allocator.h: every category, live and peak) or the CUDA caching allocator's own
// statistics (cuda_memory_meter.h: allocated and reserved totals, no categories).
#pragma once

#include <array>
#include <cstdint>
#include <string>

#include "core/trace/trace.h"

namespace zp::exec::memory {

using CategoryBytes = std::array<std::int64_t, trace::kMemoryCategoryCount>;

// Bytes per trace category, plus those allocated while no category was current.
struct CategoryTotals {
  CategoryBytes bytes{};
  std::int64_t unattributed = 0;

  std::int64_t total() const;
  std::int64_t operator[](trace::MemoryCategory category) const {
    return bytes[static_cast<std::size_t>(category)];
  }
  bool operator==(const CategoryTotals&) const = default;
};

struct MemoryReading {
  std::string device;               // "cpu", "cuda:0"
  std::int64_t allocated = 0;       // live bytes now
  std::int64_t peak_allocated = 0;  // since the start or the last reset_peak()
  std::int64_t reserved = 0;        // held from the system: CUDA's cache; on CPU = allocated
  std::int64_t peak_reserved = 0;   // (malloc's own free lists are not seen)
  std::int64_t peak_time_ns = 0;    // comm::wall_clock_ns() when the peak was reached; 0: unknown
  std::int64_t allocations = 0;     // since the start
  std::int64_t frees = 0;
  bool has_categories = false;    // the totals below are filled (CPU counting allocator)
  CategoryTotals live;            // now
  CategoryTotals at_peak;         // what was live at the peak: sums to peak_allocated
  CategoryTotals category_peaks;  // each category's own largest total (not simultaneous)
};

class MemoryMeter {
 public:
  virtual ~MemoryMeter() = default;
  virtual MemoryReading read() const = 0;
  // Peaks restart from what is live now.
  virtual void reset_peak() = 0;
};

}  // namespace zp::exec::memory
