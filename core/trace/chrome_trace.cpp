#include "core/trace/chrome_trace.h"

#include <algorithm>
#include <array>
#include <charconv>
#include <numeric>
#include <string>
#include <vector>

#include "core/trace/native_format.h"
#include "core/util/atomic_file.h"
#include "core/util/error.h"

namespace zp::trace {
namespace {

// A JSON string literal. Invalid UTF-8 is replaced rather than failing the export.
std::string json_string(std::string_view text) {
  return Json(text).dump(-1, ' ', false, Json::error_handler_t::replace);
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

// Rows of `rows` ordered by (rank, time), keeping the trace's order among equal keys: of several
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

// The export is written as text, event by event: a trace of a million ops would take many
// seconds and gigabytes as a JSON value tree. Strings are quoted once, up front.
class Writer {
 public:
  explicit Writer(const Trace& trace) : trace_(trace) {
    for (const std::string& s : trace.strings)
      strings_.push_back(json_string(s));
    for (std::size_t i = 0; i < kStreamCount; ++i)
      streams_[i] = json_string(to_string(static_cast<StreamKind>(i)));
    for (std::size_t i = 0; i < kinds_.size(); ++i)
      kinds_[i] = json_string(to_string(static_cast<OpKind>(i)));
    for (std::size_t i = 0; i < kMemoryCategoryCount; ++i)
      categories_[i] = json_string(to_string(static_cast<MemoryCategory>(i)));
    for (const GroupInfo& g : trace.groups)
      axes_.push_back(json_string(g.axis));
  }

  std::string text() {
    out_.reserve(160 * (trace_.ops.size() + trace_.markers.size() + trace_.reserved.size()) +
                 400 * trace_.memory.size() + 4096);
    out_ += "{\"displayTimeUnit\":\"ns\",\n\"otherData\":";
    out_ += Json{{"source", to_string(trace_.source)}, {"metadata", trace_.metadata}}.dump(
        -1, ' ', false, Json::error_handler_t::replace);
    out_ += ",\n\"traceEvents\":[";
    processes_and_threads();
    ops();
    memory();
    reserved();
    markers();
    out_ += "\n]}\n";
    return std::move(out_);
  }

 private:
  void begin_event(std::string_view ph) {
    out_ += first_ ? "\n{\"ph\":\"" : ",\n{\"ph\":\"";
    first_ = false;
    out_ += ph;
    out_ += '"';
  }

  void key(std::string_view name) {
    out_ += ",\"";
    out_ += name;
    out_ += "\":";
  }

  void integer(std::int64_t value) {
    char buffer[24];
    out_.append(buffer, std::to_chars(buffer, buffer + sizeof buffer, value).ptr);
  }

  // Microseconds, exactly: the decimal digits of ns / 1000, always with a fraction so that every
  // reader sees a floating-point number. Parsed, it is the double nearest to ns / 1000.
  void micros(bool negative, std::uint64_t ns) {
    if (negative) out_ += '-';
    char buffer[24];
    out_.append(buffer, std::to_chars(buffer, buffer + sizeof buffer, ns / 1000).ptr);
    out_ += '.';
    const auto fraction = static_cast<unsigned>(ns % 1000);
    if (fraction == 0) {
      out_ += '0';
      return;
    }
    char digits[3] = {static_cast<char>('0' + fraction / 100),
                      static_cast<char>('0' + fraction / 10 % 10),
                      static_cast<char>('0' + fraction % 10)};
    int length = 3;
    while (digits[length - 1] == '0')
      --length;
    out_.append(digits, static_cast<std::size_t>(length));
  }

  void time(TimeNs ns) {
    micros(ns < 0, ns < 0 ? 0 - static_cast<std::uint64_t>(ns) : static_cast<std::uint64_t>(ns));
  }

  void metadata(const char* name, std::int64_t pid, std::int64_t tid, std::string_view arg,
                std::string_view value) {
    begin_event("M");
    key("name");
    out_ += '"';
    out_ += name;
    out_ += '"';
    key("pid");
    integer(pid);
    key("tid");
    integer(tid);
    out_ += ",\"args\":{\"";
    out_ += arg;
    out_ += "\":";
    out_ += value;
    out_ += '}';
    out_ += '}';
  }

  // Processes and their threads: only the streams a rank uses get a track.
  void processes_and_threads() {
    std::vector<std::array<bool, kStreamCount>> used(trace_.ranks.size());
    for (const Op& op : trace_.ops)
      used[static_cast<std::size_t>(op.rank)][static_cast<std::size_t>(op.stream)] = true;
    for (std::size_t r = 0; r < trace_.ranks.size(); ++r) {
      const auto pid = static_cast<std::int64_t>(r);
      const RankInfo& info = trace_.ranks[r];
      metadata("process_name", pid, 0, "name", json_string(info.label));
      metadata("process_sort_index", pid, 0, "sort_index", std::to_string(pid));
      if (!info.ranks.empty()) {
        metadata("process_labels", pid, 0, "labels",
                 json_string("ranks " + rank_ranges(info.ranks)));
      }
      for (std::size_t s = 0; s < kStreamCount; ++s) {
        if (!used[r][s]) continue;
        const auto tid = static_cast<std::int64_t>(s);
        metadata("thread_name", pid, tid, "name", streams_[s]);
        metadata("thread_sort_index", pid, tid, "sort_index", std::to_string(tid));
      }
    }
  }

  void ops() {
    for (const Op& op : trace_.ops) {
      const auto kind = static_cast<std::size_t>(op.kind);
      begin_event("X");
      key("pid");
      integer(op.rank);
      key("tid");
      integer(static_cast<std::int64_t>(op.stream));
      key("ts");
      time(op.start);
      key("dur");
      // In unsigned arithmetic: end - start can exceed int64 when start is negative.
      micros(false, static_cast<std::uint64_t>(op.end) - static_cast<std::uint64_t>(op.start));
      key("name");
      out_ += op.name == kNone ? kinds_[kind] : strings_[static_cast<std::size_t>(op.name)];
      key("cat");
      out_ += kinds_[kind];
      out_ += ",\"args\":{\"step\":";
      integer(op.step);
      if (op.bytes != 0) {
        key("bytes");
        integer(op.bytes);
      }
      if (op.flops != 0) {
        key("flops");
        integer(op.flops);
      }
      if (op.micro_batch != kNone) {
        key("micro_batch");
        integer(op.micro_batch);
      }
      if (op.group != kNone) {
        const auto g = static_cast<std::size_t>(op.group);
        key("group");
        out_ += axes_[g];
        key("group_size");
        integer(trace_.groups[g].size);
      }
      if (op.module != kNone) {
        key("module");
        out_ += strings_[static_cast<std::size_t>(op.module)];
      }
      if (op.params != kNone) {
        key("params");
        out_ += strings_[static_cast<std::size_t>(op.params)];
      }
      out_ += "}}";
    }
  }

  void counter_head(const char* name, std::int32_t pid, TimeNs at) {
    begin_event("C");
    key("name");
    out_ += '"';
    out_ += name;
    out_ += '"';
    key("pid");
    integer(pid);
    out_ += ",\"tid\":0";
    key("ts");
    time(at);
    out_ += ",\"args\":{";
  }

  // Each counter event carries every category of its side (device or host), so a stacked chart
  // shows the whole memory at every change, not just the category that moved.
  void memory() {
    const std::vector<std::size_t> order = by_rank_and_time(trace_.memory);
    std::array<std::int64_t, kMemoryCategoryCount> totals{};
    std::int32_t rank = kNone;
    for (std::size_t k = 0; k < order.size();) {
      const MemorySample& first = trace_.memory[order[k]];
      if (first.rank != rank) {
        rank = first.rank;
        totals.fill(0);
      }
      bool device_changed = false;
      bool host_changed = false;
      for (; k < order.size(); ++k) {
        const MemorySample& s = trace_.memory[order[k]];
        if (s.rank != first.rank || s.time != first.time) break;
        totals[static_cast<std::size_t>(s.category)] = s.bytes;
        (on_device(s.category) ? device_changed : host_changed) = true;
      }
      for (const bool device : {true, false}) {
        if (!(device ? device_changed : host_changed)) continue;
        counter_head(device ? "memory" : "host memory", rank, first.time);
        bool first_arg = true;
        for (std::size_t c = 0; c < kMemoryCategoryCount; ++c) {
          if (on_device(static_cast<MemoryCategory>(c)) != device) continue;
          if (!first_arg) out_ += ',';
          first_arg = false;
          out_ += categories_[c];
          out_ += ':';
          integer(totals[c]);
        }
        out_ += "}}";
      }
    }
  }

  void reserved() {
    const std::vector<std::size_t> order = by_rank_and_time(trace_.reserved);
    for (std::size_t k = 0; k < order.size(); ++k) {
      const ReservedSample& s = trace_.reserved[order[k]];
      if (k + 1 < order.size()) {
        const ReservedSample& next = trace_.reserved[order[k + 1]];
        if (next.rank == s.rank && next.time == s.time) continue;  // superseded at the same time
      }
      counter_head("reserved", s.rank, s.time);
      out_ += "\"bytes\":";
      integer(s.bytes);
      out_ += "}}";
    }
  }

  void markers() {
    const std::string unnamed = json_string("marker");
    for (const Marker& m : trace_.markers) {
      const bool global = m.rank == kNone;
      begin_event("i");
      out_ += global ? ",\"s\":\"g\"" : ",\"s\":\"p\"";
      key("pid");
      integer(global ? 0 : m.rank);
      out_ += ",\"tid\":0";
      key("ts");
      time(m.time);
      key("name");
      out_ += m.name == kNone ? unnamed : strings_[static_cast<std::size_t>(m.name)];
      out_ += '}';
    }
  }

  const Trace& trace_;
  std::string out_;
  bool first_ = true;
  std::vector<std::string> strings_;
  std::array<std::string, kStreamCount> streams_;
  std::array<std::string, static_cast<std::size_t>(OpKind::kCount)> kinds_;
  std::array<std::string, kMemoryCategoryCount> categories_;
  std::vector<std::string> axes_;
};

std::string chrome_text(const Trace& trace) {
  if (auto violation = check_trace(trace)) {
    throw InternalError("cannot export a trace that breaks the format: " + violation->key_path +
                        ": " + violation->message);
  }
  return Writer(trace).text();
}

}  // namespace

Json to_chrome_trace(const Trace& trace) {
  return parse_json(chrome_text(trace), "the Chrome trace");
}

void write_chrome_trace(const Trace& trace, const std::filesystem::path& path) {
  write_file_atomically(path, chrome_text(trace));
}

}  // namespace zp::trace
