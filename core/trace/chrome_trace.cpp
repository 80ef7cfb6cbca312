#include "core/trace/chrome_trace.h"

#include <algorithm>
#include <array>
#include <numeric>
#include <string>
#include <vector>

#include "core/trace/native_format.h"
#include "core/util/atomic_file.h"
#include "core/util/error.h"

namespace zp::trace {
namespace {

// The format's times are microseconds; a double keeps the nanoseconds (exactly up to 2^53 ns).
double micros(TimeNs ns) {
  return static_cast<double>(ns) / 1000.0;
}

// "0-3, 8, 10-11": the global ranks a rank class stands for, as ranges.
std::string rank_ranges(std::vector<std::int64_t> ranks) {
  std::sort(ranks.begin(), ranks.end());
  std::string out;
  for (std::size_t i = 0; i < ranks.size();) {
    std::size_t j = i;
    while (j + 1 < ranks.size() && ranks[j + 1] == ranks[j] + 1)
      ++j;
    if (!out.empty()) out += ", ";
    out += std::to_string(ranks[i]);
    if (j > i) out += "-" + std::to_string(ranks[j]);
    i = j + 1;
  }
  return out;
}

Json metadata_event(const char* name, std::int64_t pid, std::int64_t tid, Json args) {
  return Json{{"ph", "M"}, {"name", name}, {"pid", pid}, {"tid", tid}, {"args", std::move(args)}};
}

Json counter_event(const char* name, std::int32_t pid, TimeNs time, Json args) {
  return Json{{"ph", "C"}, {"name", name},       {"pid", pid},
              {"tid", 0},  {"ts", micros(time)}, {"args", std::move(args)}};
}

// Rows of `rows` ordered by (rank, time), keeping the file's order among equal keys: of several
// samples at one time, the last one is the value from then on.
template <class Sample>
std::vector<std::size_t> by_rank_and_time(const std::vector<Sample>& rows) {
  std::vector<std::size_t> order(rows.size());
  std::iota(order.begin(), order.end(), std::size_t{0});
  std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
    const Sample& x = rows[a];
    const Sample& y = rows[b];
    return x.rank != y.rank ? x.rank < y.rank : x.time < y.time;
  });
  return order;
}

// Each counter event carries every category of its side (device or host), so the stacked chart
// shows the whole memory at every change, not just the category that moved.
void add_memory_counters(const Trace& trace, Json::array_t& events) {
  const std::vector<std::size_t> order = by_rank_and_time(trace.memory);
  std::array<std::int64_t, kMemoryCategoryCount> totals{};
  std::int32_t rank = kNone;
  for (std::size_t k = 0; k < order.size();) {
    const MemorySample& first = trace.memory[order[k]];
    if (first.rank != rank) {
      rank = first.rank;
      totals.fill(0);
    }
    bool device_changed = false;
    bool host_changed = false;
    for (; k < order.size(); ++k) {
      const MemorySample& s = trace.memory[order[k]];
      if (s.rank != first.rank || s.time != first.time) break;
      totals[static_cast<std::size_t>(s.category)] = s.bytes;
      (on_device(s.category) ? device_changed : host_changed) = true;
    }
    for (const bool device : {true, false}) {
      if (!(device ? device_changed : host_changed)) continue;
      Json args = Json::object();
      for (std::size_t c = 0; c < kMemoryCategoryCount; ++c) {
        const auto category = static_cast<MemoryCategory>(c);
        if (on_device(category) == device) args[std::string(to_string(category))] = totals[c];
      }
      events.push_back(
          counter_event(device ? "memory" : "host memory", rank, first.time, std::move(args)));
    }
  }
}

void add_reserved_counters(const Trace& trace, Json::array_t& events) {
  const std::vector<std::size_t> order = by_rank_and_time(trace.reserved);
  for (std::size_t k = 0; k < order.size(); ++k) {
    const ReservedSample& s = trace.reserved[order[k]];
    if (k + 1 < order.size()) {
      const ReservedSample& next = trace.reserved[order[k + 1]];
      if (next.rank == s.rank && next.time == s.time) continue;  // superseded at the same time
    }
    events.push_back(counter_event("reserved", s.rank, s.time, Json{{"bytes", s.bytes}}));
  }
}

}  // namespace

Json to_chrome_trace(const Trace& trace) {
  if (auto violation = check_trace(trace)) {
    throw InternalError("cannot export a trace that breaks the format: " + violation->key_path +
                        ": " + violation->message);
  }
  Json::array_t events;
  events.reserve(trace.ops.size() + trace.memory.size() + trace.reserved.size() +
                 trace.markers.size() + 4 * trace.ranks.size());

  // Processes and their threads: only the streams a rank uses get a track.
  std::vector<std::array<bool, kStreamCount>> used(trace.ranks.size());
  for (const Op& op : trace.ops)
    used[static_cast<std::size_t>(op.rank)][static_cast<std::size_t>(op.stream)] = true;
  for (std::size_t r = 0; r < trace.ranks.size(); ++r) {
    const auto pid = static_cast<std::int64_t>(r);
    const RankInfo& info = trace.ranks[r];
    events.push_back(metadata_event("process_name", pid, 0, {{"name", info.label}}));
    events.push_back(metadata_event("process_sort_index", pid, 0, {{"sort_index", pid}}));
    if (!info.ranks.empty()) {
      events.push_back(metadata_event("process_labels", pid, 0,
                                      {{"labels", "ranks " + rank_ranges(info.ranks)}}));
    }
    for (std::size_t s = 0; s < kStreamCount; ++s) {
      if (!used[r][s]) continue;
      const auto tid = static_cast<std::int64_t>(s);
      events.push_back(metadata_event("thread_name", pid, tid,
                                      {{"name", to_string(static_cast<StreamKind>(s))}}));
      events.push_back(metadata_event("thread_sort_index", pid, tid, {{"sort_index", tid}}));
    }
  }

  for (const Op& op : trace.ops) {
    Json args = {{"step", op.step}};
    if (op.bytes != 0) args["bytes"] = op.bytes;
    if (op.flops != 0) args["flops"] = op.flops;
    if (op.micro_batch != kNone) args["micro_batch"] = op.micro_batch;
    if (op.group != kNone) {
      const GroupInfo& group = trace.groups[static_cast<std::size_t>(op.group)];
      args["group"] = group.axis;
      args["group_size"] = group.size;
    }
    const std::string_view kind = to_string(op.kind);
    events.push_back(Json{{"ph", "X"},
                          {"pid", op.rank},
                          {"tid", static_cast<int>(op.stream)},
                          {"ts", micros(op.start)},
                          {"dur", micros(op.end - op.start)},
                          {"name", op.name == kNone ? std::string(kind) : trace.string(op.name)},
                          {"cat", kind},
                          {"args", std::move(args)}});
  }

  add_memory_counters(trace, events);
  add_reserved_counters(trace, events);

  for (const Marker& m : trace.markers) {
    const bool global = m.rank == kNone;
    events.push_back(
        Json{{"ph", "i"},
             {"s", global ? "g" : "p"},
             {"pid", global ? 0 : m.rank},
             {"tid", 0},
             {"ts", micros(m.time)},
             {"name", m.name == kNone ? std::string("marker") : trace.string(m.name)}});
  }

  return Json{{"traceEvents", std::move(events)},
              {"displayTimeUnit", "ns"},
              {"otherData", {{"source", to_string(trace.source)}, {"metadata", trace.metadata}}}};
}

void write_chrome_trace(const Trace& trace, const std::filesystem::path& path) {
  write_file_atomically(
      path, to_chrome_trace(trace).dump(-1, ' ', false, Json::error_handler_t::replace) + "\n");
}

}  // namespace zp::trace
