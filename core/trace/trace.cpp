#include "core/trace/trace.h"

#include <algorithm>
#include <array>

#include "core/util/error.h"

namespace zp::trace {
namespace {

constexpr std::array<std::string_view, kStreamCount> kStreamNames = {
    "compute", "allgather", "reduce_scatter", "h2d", "d2h", "pipe_send", "pipe_recv", "host"};

constexpr std::array<std::string_view, static_cast<std::size_t>(OpKind::kCount)> kOpNames = {
    "forward",        "backward",       "recompute", "optimizer_step", "allgather",
    "reduce_scatter", "all_reduce",     "broadcast", "send",           "recv",
    "copy_to_host",   "copy_to_device", "release"};

constexpr std::array<std::string_view, kMemoryCategoryCount> kCategoryNames = {
    "param_partitions", "gathered_params",  "persistent_params",
    "grad_buckets",     "grad_partitions",  "master_weights",
    "optimizer_states", "activations",      "recompute",
    "pipe_buffers",     "comm_buffers",     "host_params",
    "host_optimizer",   "host_activations", "nvme"};

template <class Enum, std::size_t N>
bool parse_name(std::string_view name, const std::array<std::string_view, N>& names, Enum& out) {
  const auto it = std::find(names.begin(), names.end(), name);
  if (it == names.end()) return false;
  out = static_cast<Enum>(it - names.begin());
  return true;
}

template <std::size_t N, class Enum>
std::string_view name_of(const std::array<std::string_view, N>& names, Enum value) {
  const auto i = static_cast<std::size_t>(value);
  ZP_CHECK(i < N, "enum value out of range");
  return names[i];
}

}  // namespace

std::string_view to_string(StreamKind stream) {
  return name_of(kStreamNames, stream);
}
std::string_view to_string(OpKind kind) {
  return name_of(kOpNames, kind);
}
std::string_view to_string(MemoryCategory category) {
  return name_of(kCategoryNames, category);
}

bool parse(std::string_view name, StreamKind& out) {
  return parse_name(name, kStreamNames, out);
}
bool parse(std::string_view name, OpKind& out) {
  return parse_name(name, kOpNames, out);
}
bool parse(std::string_view name, MemoryCategory& out) {
  return parse_name(name, kCategoryNames, out);
}

std::string_view to_string(Source source) {
  return source == Source::kSimulated ? "simulated" : "measured";
}

std::int32_t Trace::intern(std::string_view text) {
  // Rebuild the index if strings were filled or changed by hand (a reader, a test): the counts
  // differ, or the entry found no longer holds the text.
  const auto rebuild = [this] {
    index_.clear();
    for (std::size_t i = 0; i < strings.size(); ++i)
      index_.emplace(strings[i], static_cast<std::int32_t>(i));
  };
  const auto stale = [&](std::int32_t i) {
    return static_cast<std::size_t>(i) >= strings.size() ||
           strings[static_cast<std::size_t>(i)] != text;
  };
  if (index_.size() != strings.size()) rebuild();
  std::string key(text);
  auto it = index_.find(key);
  if (it != index_.end() && stale(it->second)) {
    rebuild();
    it = index_.find(key);
  }
  if (it != index_.end()) return it->second;
  const auto index = static_cast<std::int32_t>(strings.size());
  index_.emplace(std::move(key), index);
  strings.emplace_back(text);
  return index;
}

const std::string& Trace::string(std::int32_t index) const {
  ZP_CHECK(index >= 0 && static_cast<std::size_t>(index) < strings.size(),
           "string index out of range");
  return strings[static_cast<std::size_t>(index)];
}

bool Trace::operator==(const Trace& other) const {
  return source == other.source && metadata == other.metadata && strings == other.strings &&
         ranks == other.ranks && groups == other.groups && ops == other.ops &&
         memory == other.memory && allocations == other.allocations && reserved == other.reserved &&
         markers == other.markers;
}

void append_ranks(Trace& into, const Trace& from) {
  const auto rank_offset = static_cast<std::int32_t>(into.ranks.size());
  into.ranks.insert(into.ranks.end(), from.ranks.begin(), from.ranks.end());
  const auto text = [&](std::int32_t index) {
    return index == kNone ? kNone : into.intern(from.string(index));
  };
  std::vector<std::int32_t> group_of;
  for (const GroupInfo& g : from.groups) {
    auto it = std::find(into.groups.begin(), into.groups.end(), g);
    if (it == into.groups.end()) it = into.groups.insert(into.groups.end(), g);
    group_of.push_back(static_cast<std::int32_t>(it - into.groups.begin()));
  }
  for (Op op : from.ops) {
    op.rank += rank_offset;
    op.name = text(op.name);
    op.module = text(op.module);
    op.params = text(op.params);
    if (op.group != kNone) op.group = group_of[static_cast<std::size_t>(op.group)];
    into.ops.push_back(op);
  }
  for (MemorySample m : from.memory) {
    m.rank += rank_offset;
    into.memory.push_back(m);
  }
  for (Allocation a : from.allocations) {
    a.rank += rank_offset;
    a.name = text(a.name);
    into.allocations.push_back(a);
  }
  for (ReservedSample r : from.reserved) {
    r.rank += rank_offset;
    into.reserved.push_back(r);
  }
  for (Marker m : from.markers) {
    if (m.rank != kNone) m.rank += rank_offset;
    m.name = text(m.name);
    into.markers.push_back(m);
  }
}

}  // namespace zp::trace
