// The memory category the engine is working for right now, so that a measuring allocator can
// charge each allocation to it (core/trace's categories: gathered parameters, activations,
// gradient buckets, ...).
//
// Each thread has its own current category, set by a MemoryScope and restored when the scope
// ends (scopes nest). A thread that has entered no scope (Gloo's worker threads, ATen's intra-op
// pool) is charged to the category current on the primary thread: the thread that installed the
// measuring allocator, i.e. the engine's, whose work those threads do. With no category there
// either, the allocation is unattributed (a slot of its own beside the trace categories).
//
// Entering or leaving a scope costs a few nanoseconds: a thread-local store, plus one relaxed
// atomic store on the primary thread. Thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <thread>

#include "core/trace/trace.h"

namespace zp::exec::memory {

using trace::MemoryCategory;

// A slot is a trace category's index, or kUnattributed.
using Slot = std::uint8_t;
inline constexpr Slot kUnattributed = static_cast<Slot>(trace::kMemoryCategoryCount);
inline constexpr std::size_t kSlotCount = trace::kMemoryCategoryCount + 1;

class MemoryScope {
 public:
  explicit MemoryScope(MemoryCategory category) noexcept;
  ~MemoryScope();
  MemoryScope(const MemoryScope&) = delete;
  MemoryScope& operator=(const MemoryScope&) = delete;

 private:
  Slot previous_;
};

// This thread's own category: nullopt outside every scope.
std::optional<MemoryCategory> current_memory_category() noexcept;

// Where an allocation made on this thread now is charged: this thread's category, else the
// primary thread's, else kUnattributed.
Slot current_slot() noexcept;

// Makes `thread` the primary thread and returns the previous one (a default id: none). The
// primary thread's current category is only known from its next scope change on, unless it is
// the calling thread.
std::thread::id set_primary_memory_thread(std::thread::id thread) noexcept;

}  // namespace zp::exec::memory
