// A counting allocator for CPU tensors: while a CountingAllocator exists it is libtorch's CPU
// allocator (c10::SetCPUAllocator), wrapping the one it replaced. Every allocation is charged to
// the memory category current at that moment (memory_scope.h) at the size the wrapped allocator
// was asked for (malloc's alignment and headers are not seen); its free is charged to the same
// category, whatever scope is current when the tensor dies, even after the counting allocator is
// gone.
//
// c10's raw interface (raw_allocate, raw_deallocate: oneDNN allocates through it) needs a DataPtr
// whose context is its data pointer, so the size and category of a live block are kept in one
// process-wide table by data pointer, under a spin lock. Each allocation costs a table insertion
// and a short critical section in the ledger (memory_ledger.h), each free the same; the data
// pointer is the wrapped allocator's own, so memory raw_allocate'd here and raw_deallocate'd after
// uninstalling is freed correctly (though the ledger does not see that free).
// bench/exec_bench.cpp measures the cost against the plain allocator. Recording allocations for a
// trace (Options::record_allocations) adds, per allocation, the current label and the clock read
// under the ledger's lock, and per free one row in the ledger; without it nothing more is done.
//
// One counting allocator at a time per process (a second is a broken invariant): c10 has one CPU
// allocator per process, so ranks run as threads of one process share it. Installing makes the
// calling thread the primary memory thread (memory_scope.h); destroying the object puts back the
// previous allocator and primary thread. Install and uninstall while no other thread allocates.
// The wrapping c10 allocator and its ledger are never freed: c10 keeps allocator pointers in the
// storages made with them (resize_ allocates through them again) and owns what SetCPUAllocator is
// given, so they cost a few hundred bytes per installation.
#pragma once

#include <cstdint>
#include <thread>
#include <vector>

#include "exec/memory/memory_ledger.h"
#include "exec/memory/memory_meter.h"

namespace zp::exec::memory {

class CountingAllocator final : public MemoryMeter {
 public:
  // c10 lets an allocator replace the current one only at the same or a higher priority, and
  // keeps the highest priority it has seen: both installing and restoring use this one.
  static constexpr std::uint8_t kPriority = 100;

  using Options = MemoryLedger::Options;
  explicit CountingAllocator(Options options);
  CountingAllocator() : CountingAllocator(Options{}) {}
  ~CountingAllocator() override;
  CountingAllocator(const CountingAllocator&) = delete;
  CountingAllocator& operator=(const CountingAllocator&) = delete;

  MemoryReading read() const override;
  void reset_peak() override;
  std::vector<MemoryLedger::Sample> take_samples();
  // With Options::record_allocations: the device blocks' lives that ended since the last call,
  // then every device block live now, its life still going (so call it once, at the end, while no
  // other thread allocates). Each is named by the label current where it was allocated, or the
  // one it was recharged with.
  std::vector<MemoryLedger::Allocation> take_allocations();

  // The c10::Allocator* this object installed, and the one it replaced (opaque here, so that this
  // header needs no libtorch).
  const void* installed() const;
  const void* previous() const;

 private:
  struct Shim;
  Shim* shim_ = nullptr;  // never freed, see above
  std::thread::id previous_primary_;
};

// Charges the live block that starts at `data` (a storage's data pointer) to `category` from now
// on, its free included: memory whose purpose is only known after it was allocated (a parameter's
// gradient, which autograd allocates during backward). A `label` renames the block over its whole
// life (what it holds, now known). False when no counting allocator made the block.
bool recharge(const void* data, MemoryCategory category, Label label = kNoLabel);

}  // namespace zp::exec::memory
