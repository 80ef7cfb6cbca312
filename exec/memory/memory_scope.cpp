#include "exec/memory/memory_scope.h"

#include <atomic>

namespace zp::exec::memory {
namespace {

constexpr Slot kNoScope = 0xff;
static_assert(kSlotCount < kNoScope);

thread_local Slot t_slot = kNoScope;
// The primary thread's current slot, read by threads that have no scope of their own.
std::atomic<Slot> g_ambient{kNoScope};
std::atomic<std::thread::id> g_primary{};

void set_slot(Slot slot) noexcept {
  t_slot = slot;
  if (g_primary.load(std::memory_order_relaxed) == std::this_thread::get_id()) {
    g_ambient.store(slot, std::memory_order_relaxed);
  }
}

}  // namespace

MemoryScope::MemoryScope(MemoryCategory category) noexcept : previous_(t_slot) {
  set_slot(static_cast<Slot>(category));
}

MemoryScope::~MemoryScope() {
  set_slot(previous_);
}

std::optional<MemoryCategory> current_memory_category() noexcept {
  if (t_slot == kNoScope) return std::nullopt;
  return static_cast<MemoryCategory>(t_slot);
}

Slot current_slot() noexcept {
  Slot slot = t_slot;
  if (slot == kNoScope) slot = g_ambient.load(std::memory_order_relaxed);
  return slot == kNoScope ? kUnattributed : slot;
}

std::thread::id set_primary_memory_thread(std::thread::id thread) noexcept {
  const std::thread::id previous = g_primary.exchange(thread);
  g_ambient.store(thread == std::this_thread::get_id() ? t_slot : kNoScope,
                  std::memory_order_relaxed);
  return previous;
}

}  // namespace zp::exec::memory
