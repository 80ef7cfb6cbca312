// Includes only c10's allocator headers, not ATen's: cheap to compile.
#include "exec/memory/counting_allocator.h"

#include <c10/core/CPUAllocator.h>

#include <atomic>
#include <iostream>
#include <mutex>
#include <unordered_map>
#include <utility>

#include "core/util/error.h"

namespace zp::exec::memory {
namespace {

struct LiveBlock {
  MemoryLedger* ledger = nullptr;
  void* context = nullptr;  // the wrapped allocator's DataPtr context and deleter
  c10::DeleterFnPtr deleter = nullptr;
  std::int64_t bytes = 0;
  Slot slot = kUnattributed;
  // With MemoryLedger::Options::record_allocations: when its life in `slot` started, and its name.
  Label label = kNoLabel;
  std::int64_t start_ns = 0;
};

// Every live block by its data pointer. c10's raw interface (raw_allocate / raw_deallocate, which
// oneDNN uses through ideep) requires a DataPtr's context to be its data pointer and hands the
// deleter nothing else, so size and category cannot travel in the context.
struct BlockTable {
  SpinLock lock;
  std::unordered_map<const void*, LiveBlock> blocks;
  c10::Allocator* wrapped = nullptr;  // while a counting allocator is installed
};

// Never destroyed: tensors may die during static destruction.
BlockTable& table() {
  static auto* t = [] {
    auto* table = new BlockTable;
    table->blocks.reserve(4096);
    return table;
  }();
  return *t;
}

void release(void* data) {
  BlockTable& t = table();
  LiveBlock block;
  c10::Allocator* wrapped = nullptr;
  {
    const std::lock_guard lock(t.lock);
    const auto it = t.blocks.find(data);
    if (it != t.blocks.end()) {
      block = it->second;
      t.blocks.erase(it);
    } else {
      wrapped = t.wrapped;
    }
  }
  if (block.ledger == nullptr) {
    // Not ours: raw_allocate'd from the allocator we replaced before we were installed, and
    // raw_deallocate'd now.
    ZP_CHECK(wrapped != nullptr && wrapped->raw_deleter() != nullptr,
             "counting CPU allocator: asked to free memory it does not know");
    wrapped->raw_deleter()(data);
    return;
  }
  block.ledger->freed(block.slot, block.bytes, block.start_ns, block.label);
  if (block.deleter != nullptr) block.deleter(block.context);
}

std::atomic<bool> g_installed{false};

}  // namespace

struct CountingAllocator::Shim final : c10::Allocator {
  c10::Allocator* wrapped = nullptr;
  mutable MemoryLedger ledger;  // allocate() is const in c10's interface

  const bool records_allocations;

  Shim(c10::Allocator* w, Options options)
      : wrapped(w), ledger(options), records_allocations(options.record_allocations) {}

  c10::DataPtr allocate(std::size_t n) const override {
    c10::DataPtr inner = wrapped->allocate(n);
    void* const data = inner.get();
    if (data == nullptr) return inner;  // 0 bytes: no memory, nothing to count
    LiveBlock block{&ledger, nullptr, inner.get_deleter(), static_cast<std::int64_t>(n),
                    current_slot()};
    if (records_allocations) block.label = current_label();
    const c10::Device device = inner.device();
    block.context = inner.release_context();
    // Booked before the block is in the table, so that it goes in with the time its sample has.
    block.start_ns = ledger.allocated(block.slot, block.bytes);
    LiveBlock stale;
    try {
      BlockTable& t = table();
      const std::lock_guard lock(t.lock);
      const auto [it, inserted] = t.blocks.try_emplace(data, block);
      if (!inserted) stale = std::exchange(it->second, block);
    } catch (...) {
      ledger.freed(block.slot, block.bytes, block.start_ns, block.label);
      block.deleter(block.context);
      throw;
    }
    // A known address again: its block was raw_deallocate'd after its allocator was uninstalled,
    // through the allocator restored then, and the free was not seen.
    if (stale.ledger != nullptr)
      stale.ledger->freed(stale.slot, stale.bytes, stale.start_ns, stale.label);
    return {data, data, &release, device};
  }

  c10::DeleterFnPtr raw_deleter() const override { return &release; }
};

bool recharge(const void* data, MemoryCategory category, Label label) {
  const auto to = static_cast<Slot>(category);
  BlockTable& t = table();
  // The ledger's lock is taken inside the table's (never the other way round), so that the block's
  // new start is the time of the samples that move it.
  const std::lock_guard lock(t.lock);
  const auto it = t.blocks.find(data);
  if (it == t.blocks.end()) return false;
  LiveBlock& block = it->second;
  if (label != kNoLabel) block.label = label;
  block.start_ns = block.ledger->moved(block.slot, to, block.bytes, block.start_ns, block.label);
  block.slot = to;
  return true;
}

CountingAllocator::CountingAllocator(Options options) {
  ZP_CHECK(!g_installed.exchange(true),
           "a counting CPU allocator is installed already: one at a time per process");
  shim_ = new Shim(c10::GetCPUAllocator(), options);
  ZP_CHECK(shim_->wrapped != nullptr, "libtorch has no CPU allocator to wrap");
  table().wrapped = shim_->wrapped;
  c10::SetCPUAllocator(shim_, kPriority);
  const bool taken = c10::GetCPUAllocator() == shim_;
  if (!taken) {
    // Another allocator was installed at a higher priority; ours is not in use.
    delete shim_;
    table().wrapped = nullptr;
    g_installed = false;
  }
  ZP_CHECK(taken,
           "the counting CPU allocator could not replace the current one: another was "
           "installed at a priority above ",
           int{kPriority});
  previous_primary_ = set_primary_memory_thread(std::this_thread::get_id());
}

CountingAllocator::~CountingAllocator() {
  set_primary_memory_thread(previous_primary_);
  g_installed = false;
  if (c10::GetCPUAllocator() != shim_) {
    // Someone replaced ours since: restoring our predecessor would drop theirs.
    std::cerr << "zeroplan: the counting CPU allocator is no longer the current one; left as is\n";
    return;
  }
  c10::SetCPUAllocator(shim_->wrapped, kPriority);
}

MemoryReading CountingAllocator::read() const {
  return shim_->ledger.read();
}

void CountingAllocator::reset_peak() {
  shim_->ledger.reset_peak();
}

std::vector<MemoryLedger::Sample> CountingAllocator::take_samples() {
  return shim_->ledger.take_samples();
}

std::vector<MemoryLedger::Allocation> CountingAllocator::take_allocations() {
  std::vector<MemoryLedger::Allocation> out = shim_->ledger.take_allocations();
  if (!shim_->records_allocations) return out;
  BlockTable& t = table();
  const std::lock_guard lock(t.lock);
  for (const auto& [data, block] : t.blocks) {
    if (block.ledger == &shim_->ledger && is_device_slot(block.slot))
      out.push_back(
          {block.slot, block.label, block.bytes, block.start_ns, MemoryLedger::kStillLive});
  }
  return out;
}

const void* CountingAllocator::installed() const {
  return static_cast<const c10::Allocator*>(shim_);
}

const void* CountingAllocator::previous() const {
  return shim_->wrapped;
}

}  // namespace zp::exec::memory
