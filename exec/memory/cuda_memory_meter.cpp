#include "exec/memory/cuda_memory_meter.h"

#include <dlfcn.h>

#include <array>
#include <cstdint>
#include <exception>

#include "core/util/error.h"
#include "exec/cuda/cuda_info.h"

#if __has_include(<c10/cuda/impl/cuda_cmake_macros.h>)
// A CUDA build of libtorch: its header, and libc10_cuda linked through TORCH_LIBRARIES.
#include <c10/cuda/CUDACachingAllocator.h>
#define ZP_C10_CUDA_HEADERS 1
#endif

namespace zp::exec::memory {
namespace {

#ifdef ZP_C10_CUDA_HEADERS
namespace cca = c10::cuda::CUDACachingAllocator;
using DeviceStats = cca::DeviceStats;
constexpr std::size_t kAggregate = static_cast<std::size_t>(cca::StatType::AGGREGATE);

struct Functions {
  DeviceStats (*get_stats)(int) = [](int device) { return cca::getDeviceStats(device); };
  void (*reset_peaks)(int) = [](int device) { cca::resetPeakStats(device); };
};
const Functions* functions() {
  static const Functions f;
  return &f;
}
#else
// A CPU build of libtorch ships c10/cuda's headers incomplete. The layout below is
// c10::cuda::CUDACachingAllocator::DeviceStats of libtorch 1.13, whose getDeviceStats() and
// resetPeakStats() are exported functions; newer versions make them inline, and are read through
// the branch above.
struct Stat {
  std::int64_t current = 0;
  std::int64_t peak = 0;
  std::int64_t allocated = 0;
  std::int64_t freed = 0;
};
using StatArray = std::array<Stat, 3>;  // aggregate, small pool, large pool
constexpr std::size_t kAggregate = 0;
struct DeviceStats {
  StatArray allocation, segment, active, inactive_split;
  StatArray allocated_bytes, reserved_bytes, active_bytes, inactive_split_bytes;
  std::int64_t num_alloc_retries = 0;
  std::int64_t num_ooms = 0;
  Stat oversize_allocations, oversize_segments;
  std::int64_t max_split_size = 0;
};

struct Functions {
  DeviceStats (*get_stats)(int) = nullptr;
  void (*reset_peaks)(int) = nullptr;
};
// Null when libc10_cuda is not in the process.
const Functions* functions() {
  static const Functions f = [] {
    Functions r;
    r.get_stats = reinterpret_cast<DeviceStats (*)(int)>(
        dlsym(RTLD_DEFAULT, "_ZN3c104cuda20CUDACachingAllocator14getDeviceStatsEi"));
    r.reset_peaks = reinterpret_cast<void (*)(int)>(
        dlsym(RTLD_DEFAULT, "_ZN3c104cuda20CUDACachingAllocator14resetPeakStatsEi"));
    return r;
  }();
  return f.get_stats != nullptr && f.reset_peaks != nullptr ? &f : nullptr;
}
#endif

class CudaMemoryMeter final : public MemoryMeter {
 public:
  CudaMemoryMeter(int device, const Functions* f) : device_(device), f_(f) {}

  MemoryReading read() const override {
    MemoryReading r;
    r.device = "cuda:" + std::to_string(device_);
    DeviceStats stats;
    try {
      stats = f_->get_stats(device_);
    } catch (const std::exception&) {
      return r;  // not initialised: nothing allocated on the device yet
    }
    r.allocated = stats.allocated_bytes[kAggregate].current;
    r.peak_allocated = stats.allocated_bytes[kAggregate].peak;
    r.reserved = stats.reserved_bytes[kAggregate].current;
    r.peak_reserved = stats.reserved_bytes[kAggregate].peak;
    r.allocations = stats.allocation[kAggregate].allocated;
    r.frees = stats.allocation[kAggregate].freed;
    return r;
  }

  void reset_peak() override {
    try {
      f_->reset_peaks(device_);
    } catch (const std::exception&) {
      // Not initialised: there is no peak to reset.
    }
  }

 private:
  int device_;
  const Functions* f_;
};

}  // namespace

std::string cuda_memory_unavailable(int device) {
  const CudaInfo info = cuda_info();
  if (info.visible_gpus == 0) {
    return "no GPU visible" + (info.device_error.empty() ? "" : ": " + info.device_error);
  }
  if (device < 0 || device >= info.visible_gpus) {
    return "GPU " + std::to_string(device) + " is not visible (" +
           std::to_string(info.visible_gpus) + " visible)";
  }
  if (functions() == nullptr) {
    return "libtorch in this process has no CUDA caching allocator (a CPU build of libtorch)";
  }
  return {};
}

std::unique_ptr<MemoryMeter> make_cuda_memory_meter(int device) {
  const std::string why = cuda_memory_unavailable(device);
  if (!why.empty()) {
    throw UserError(
        ErrorKind::kUnsupported, SourceLocation{"", 0, 0, "--device"},
        "cannot read CUDA memory statistics of cuda:" + std::to_string(device) + ": " + why);
  }
  return std::make_unique<CudaMemoryMeter>(device, functions());
}

}  // namespace zp::exec::memory
