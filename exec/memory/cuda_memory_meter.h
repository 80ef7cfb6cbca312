// The CUDA caching allocator's own statistics for one device (allocated and reserved bytes, now
// and at the peak; no categories), behind the MemoryMeter interface. Compiled only with CUDA
// (ZEROPLAN_HAVE_CUDA).
//
// libtorch's CUDA allocator lives in libc10_cuda, which a CPU build of libtorch does not have: its
// functions are looked up in the running process, so this builds and links against either build
// and says at run time why it cannot read anything.
#pragma once

#include <memory>
#include <string>

#include "exec/memory/memory_meter.h"

namespace zp::exec::memory {

// Empty when the statistics of GPU `device` can be read; otherwise why not, in one line ("no GPU
// visible: ...", "libtorch in this process has no CUDA caching allocator ...").
std::string cuda_memory_unavailable(int device);

// The meter for GPU `device`; a UserError (kUnsupported) with the reason above when it cannot be
// read. Before the first CUDA allocation the allocator is not initialised and reads as zero.
std::unique_ptr<MemoryMeter> make_cuda_memory_meter(int device);

}  // namespace zp::exec::memory
