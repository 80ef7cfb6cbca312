// The memory category the engine is working for right now, so that a measuring allocator can
// charge each allocation to it (core/trace's categories: gathered parameters, activations,
// gradient buckets, ...), and optionally a name for what it allocates (a parameter, "gather 3",
// "bucket 2", the module running), which a trace's allocations carry.
//
// Each thread has its own current category and name, set by a MemoryScope and restored when the
// scope ends (scopes nest); set_memory_label names what follows without a scope (the engine's
// hooks name the module that runs next). A thread that has entered no scope (Gloo's worker
// threads, ATen's intra-op pool) is charged to the category current on the primary thread: the
// thread that installed the measuring allocator, i.e. the engine's, whose work those threads do;
// a thread with no name of its own takes the primary thread's. With no category there either, the
// allocation is unattributed (a slot of its own beside the trace categories).
//
// Entering or leaving a scope costs a few nanoseconds: a thread-local store, plus one relaxed
// atomic store on the primary thread (category and name travel together in one word). Names are
// interned once in a process-wide table (intern_label, under a mutex). Thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <thread>

#include "core/trace/trace.h"

namespace zp::exec::memory {

using trace::MemoryCategory;

// A slot is a trace category's index, or kUnattributed.
using Slot = std::uint8_t;
inline constexpr Slot kUnattributed = static_cast<Slot>(trace::kMemoryCategoryCount);
inline constexpr std::size_t kSlotCount = trace::kMemoryCategoryCount + 1;

// A name for allocations: an index into the process's table of names, or kNoLabel.
using Label = std::int32_t;
inline constexpr Label kNoLabel = -1;

// The label of `text`, adding it to the table the first time. Labels live as long as the process.
Label intern_label(std::string_view text);
// The text of a label from intern_label; "" for kNoLabel.
std::string label_text(Label label);

class MemoryScope {
 public:
  // Charges to `category`; the name stays what it was (the module running, say).
  explicit MemoryScope(MemoryCategory category) noexcept;
  // Charges to `category` and names what is allocated in the scope `label`.
  MemoryScope(MemoryCategory category, Label label) noexcept;
  ~MemoryScope();
  MemoryScope(const MemoryScope&) = delete;
  MemoryScope& operator=(const MemoryScope&) = delete;

 private:
  std::uint64_t previous_;
  bool named_;
};

// Names what this thread allocates from now on: until the next call, or inside a named scope.
// A named scope that ends restores the name it found.
void set_memory_label(Label label) noexcept;

// This thread's own category: nullopt outside every scope.
std::optional<MemoryCategory> current_memory_category() noexcept;

// Where an allocation made on this thread now is charged: this thread's category, else the
// primary thread's, else kUnattributed.
Slot current_slot() noexcept;
// What an allocation made on this thread now is called: this thread's name, else the primary
// thread's, else kNoLabel.
Label current_label() noexcept;

// Makes `thread` the primary thread and returns the previous one (a default id: none). The
// primary thread's current category is only known from its next scope change on, unless it is
// the calling thread.
std::thread::id set_primary_memory_thread(std::thread::id thread) noexcept;

}  // namespace zp::exec::memory
