#include "exec/memory/memory_scope.h"

#include <atomic>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "core/util/error.h"

namespace zp::exec::memory {
namespace {

constexpr Slot kNoScope = 0xff;
static_assert(kSlotCount < kNoScope);

// A thread's category and name in one word, so that the primary thread publishes both in one
// atomic store: the slot in the low byte, the label's 32 bits above it.
using State = std::uint64_t;
constexpr State kSlotMask = 0xff;

constexpr State pack(Slot slot, Label label) {
  return (static_cast<State>(static_cast<std::uint32_t>(label)) << 8) | slot;
}
constexpr Slot slot_of(State s) {
  return static_cast<Slot>(s & kSlotMask);
}
constexpr Label label_of(State s) {
  return static_cast<Label>(static_cast<std::uint32_t>(s >> 8));
}
constexpr State kNoState = pack(kNoScope, kNoLabel);

thread_local State t_state = kNoState;
// The primary thread's current state, read by threads that have none of their own.
std::atomic<State> g_ambient{kNoState};
std::atomic<std::thread::id> g_primary{};

void set_state(State state) noexcept {
  t_state = state;
  if (g_primary.load(std::memory_order_relaxed) == std::this_thread::get_id()) {
    g_ambient.store(state, std::memory_order_relaxed);
  }
}

struct LabelTable {
  std::mutex mutex;
  std::vector<std::string> texts;
  std::unordered_map<std::string, Label> index;
};

// Never destroyed: labels are read while tensors die during static destruction.
LabelTable& labels() {
  static auto* table = new LabelTable;
  return *table;
}

}  // namespace

Label intern_label(std::string_view text) {
  LabelTable& t = labels();
  const std::lock_guard lock(t.mutex);
  const auto [it, added] = t.index.try_emplace(std::string(text), 0);
  if (added) {
    it->second = static_cast<Label>(t.texts.size());
    t.texts.emplace_back(text);
  }
  return it->second;
}

std::string label_text(Label label) {
  if (label == kNoLabel) return {};
  LabelTable& t = labels();
  const std::lock_guard lock(t.mutex);
  ZP_CHECK(label >= 0 && static_cast<std::size_t>(label) < t.texts.size(), "no memory label ",
           label);
  return t.texts[static_cast<std::size_t>(label)];
}

MemoryScope::MemoryScope(MemoryCategory category) noexcept : previous_(t_state), named_(false) {
  set_state((t_state & ~kSlotMask) | static_cast<Slot>(category));
}

MemoryScope::MemoryScope(MemoryCategory category, Label label) noexcept
    : previous_(t_state), named_(true) {
  set_state(pack(static_cast<Slot>(category), label));
}

MemoryScope::~MemoryScope() {
  // An unnamed scope gives back only its category: a name set inside it (the next module's) holds.
  set_state(named_ ? previous_ : (t_state & ~kSlotMask) | (previous_ & kSlotMask));
}

void set_memory_label(Label label) noexcept {
  set_state(pack(slot_of(t_state), label));
}

std::optional<MemoryCategory> current_memory_category() noexcept {
  const Slot slot = slot_of(t_state);
  if (slot == kNoScope) return std::nullopt;
  return static_cast<MemoryCategory>(slot);
}

Slot current_slot() noexcept {
  Slot slot = slot_of(t_state);
  if (slot == kNoScope) slot = slot_of(g_ambient.load(std::memory_order_relaxed));
  return slot == kNoScope ? kUnattributed : slot;
}

Label current_label() noexcept {
  const Label label = label_of(t_state);
  return label != kNoLabel ? label : label_of(g_ambient.load(std::memory_order_relaxed));
}

std::thread::id set_primary_memory_thread(std::thread::id thread) noexcept {
  const std::thread::id previous = g_primary.exchange(thread);
  g_ambient.store(thread == std::this_thread::get_id() ? t_state : kNoState,
                  std::memory_order_relaxed);
  return previous;
}

}  // namespace zp::exec::memory
