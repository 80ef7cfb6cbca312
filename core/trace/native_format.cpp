#include "core/trace/native_format.h"

#include <algorithm>
#include <array>
#include <charconv>
#include <cmath>
#include <limits>
#include <optional>
#include <unordered_map>
#include <utility>
#include <vector>

#include "core/util/atomic_file.h"
#include "core/util/error.h"

namespace zp::trace {
namespace {

constexpr std::int64_t kInt32Min = std::numeric_limits<std::int32_t>::min();
constexpr std::int64_t kInt32Max = std::numeric_limits<std::int32_t>::max();

template <class Enum>
constexpr std::size_t kEnumCount = static_cast<std::size_t>(Enum::kCount);

// --- Writing -------------------------------------------------------------------------------------

template <class Enum>
Json enum_names() {
  Json::array_t names;
  for (std::size_t i = 0; i < kEnumCount<Enum>; ++i)
    names.emplace_back(to_string(static_cast<Enum>(i)));
  return names;
}

// Invalid UTF-8 in a name is replaced rather than failing the whole write.
std::string dump(const Json& value) {
  return value.dump(-1, ' ', false, Json::error_handler_t::replace);
}

// The keys before the tables, in the order the file has them; "enums" is written like a table.
constexpr std::array<const char*, 6> kHeadKeys = {"format",   "version", "source",
                                                  "metadata", "strings", "enums"};

Json head(const Trace& trace) {
  return Json{{"format", kNativeFormat},
              {"version", kNativeFormatVersion},
              {"source", to_string(trace.source)},
              {"metadata", trace.metadata},
              {"strings", trace.strings},
              {"enums",
               {{"stream", enum_names<StreamKind>()},
                {"op_kind", enum_names<OpKind>()},
                {"memory_category", enum_names<MemoryCategory>()}}}};
}

// Every table and column, once: to_native_json and the file writer both walk this, so they
// cannot disagree. Enum columns hold indices into the name lists of head()'s "enums", which
// follow the enum order.
template <class Visitor>
void visit_tables(const Trace& trace, Visitor& v) {
  const auto& ranks = trace.ranks;
  v.table("ranks");
  v.column("label", ranks, [](const RankInfo& r) -> const std::string& { return r.label; });
  v.column("ranks", ranks,
           [](const RankInfo& r) -> const std::vector<std::int64_t>& { return r.ranks; });
  v.column("pipeline_stage", ranks, [](const RankInfo& r) { return r.pipeline_stage; });
  v.table("groups");
  v.column("axis", trace.groups, [](const GroupInfo& g) -> const std::string& { return g.axis; });
  v.column("size", trace.groups, [](const GroupInfo& g) { return g.size; });

  const auto& ops = trace.ops;
  v.table("ops");
  v.column("rank", ops, [](const Op& o) { return o.rank; });
  v.column("stream", ops, [](const Op& o) { return static_cast<int>(o.stream); });
  v.column("kind", ops, [](const Op& o) { return static_cast<int>(o.kind); });
  v.column("start", ops, [](const Op& o) { return o.start; });
  v.column("end", ops, [](const Op& o) { return o.end; });
  v.column("name", ops, [](const Op& o) { return o.name; });
  v.column("bytes", ops, [](const Op& o) { return o.bytes; });
  v.column("flops", ops, [](const Op& o) { return o.flops; });
  v.column("step", ops, [](const Op& o) { return o.step; });
  v.column("micro_batch", ops, [](const Op& o) { return o.micro_batch; });
  v.column("group", ops, [](const Op& o) { return o.group; });
  v.column("module", ops, [](const Op& o) { return o.module; });
  v.column("params", ops, [](const Op& o) { return o.params; });

  const auto& memory = trace.memory;
  v.table("memory");
  v.column("rank", memory, [](const MemorySample& m) { return m.rank; });
  v.column("time", memory, [](const MemorySample& m) { return m.time; });
  v.column("category", memory, [](const MemorySample& m) { return static_cast<int>(m.category); });
  v.column("bytes", memory, [](const MemorySample& m) { return m.bytes; });

  const auto& allocations = trace.allocations;
  v.table("allocations");
  v.column("rank", allocations, [](const Allocation& a) { return a.rank; });
  v.column("category", allocations,
           [](const Allocation& a) { return static_cast<int>(a.category); });
  v.column("bytes", allocations, [](const Allocation& a) { return a.bytes; });
  v.column("start", allocations, [](const Allocation& a) { return a.start; });
  v.column("end", allocations, [](const Allocation& a) { return a.end; });
  v.column("name", allocations, [](const Allocation& a) { return a.name; });

  const auto& reserved = trace.reserved;
  v.table("reserved");
  v.column("rank", reserved, [](const ReservedSample& s) { return s.rank; });
  v.column("time", reserved, [](const ReservedSample& s) { return s.time; });
  v.column("bytes", reserved, [](const ReservedSample& s) { return s.bytes; });

  const auto& markers = trace.markers;
  v.table("markers");
  v.column("rank", markers, [](const Marker& m) { return m.rank; });
  v.column("time", markers, [](const Marker& m) { return m.time; });
  v.column("name", markers, [](const Marker& m) { return m.name; });
}

class JsonBuilder {
 public:
  explicit JsonBuilder(Json& out) : out_(out) {}
  void table(const char* name) { table_ = &(out_[name] = Json::object()); }
  template <class Row, class Get>
  void column(const char* name, const std::vector<Row>& rows, Get get) {
    Json::array_t values;
    values.reserve(rows.size());
    for (const Row& row : rows)
      values.emplace_back(get(row));
    (*table_)[name] = std::move(values);
  }

 private:
  Json& out_;
  Json* table_ = nullptr;
};

// The file: one key per line at the top and inside each table, each column on one line, so a
// million ops stay small and `head` shows what the file is. Integers go straight through
// std::to_chars, several times faster than building and dumping a value tree.
class TextWriter {
 public:
  explicit TextWriter(std::string& out) : out_(out) {}
  void key(const char* name, std::string_view indent) {
    out_ += first_key_ ? "\n" : ",\n";
    first_key_ = false;
    out_ += indent;
    out_ += '"';
    out_ += name;
    out_ += "\": ";
  }
  void table(const char* name) {
    close_table();
    key(name, " ");
    out_ += '{';
    first_key_ = true;
    in_table_ = true;
  }
  void close_table() {
    if (!in_table_) return;
    out_ += first_key_ ? "}" : "\n }";
    first_key_ = false;
    in_table_ = false;
  }
  template <class Row, class Get>
  void column(const char* name, const std::vector<Row>& rows, Get get) {
    key(name, "  ");
    out_ += '[';
    for (std::size_t i = 0; i < rows.size(); ++i) {
      if (i != 0) out_ += ',';
      value(get(rows[i]));
    }
    out_ += ']';
  }

 private:
  void value(std::int64_t x) {
    char buffer[24];
    out_.append(buffer, std::to_chars(buffer, buffer + sizeof buffer, x).ptr);
  }
  void value(const std::string& s) { out_ += dump(Json(s)); }
  void value(const std::vector<std::int64_t>& list) {
    out_ += '[';
    for (std::size_t i = 0; i < list.size(); ++i) {
      if (i != 0) out_ += ',';
      value(list[i]);
    }
    out_ += ']';
  }

  std::string& out_;
  bool first_key_ = true;
  bool in_table_ = false;
};

std::string native_text(const Trace& trace) {
  std::string out;
  // About 8 bytes per integer; one reservation instead of a dozen doublings of a large buffer.
  out.reserve(4096 +
              8 * (13 * trace.ops.size() + 4 * trace.memory.size() + 6 * trace.allocations.size() +
                   3 * (trace.reserved.size() + trace.markers.size())));
  out += '{';
  TextWriter writer(out);
  const Json top = head(trace);
  for (const char* key : kHeadKeys) {
    if (std::string_view(key) == "enums") continue;
    writer.key(key, " ");
    out += dump(top[key]);
  }
  writer.table("enums");
  for (const auto& [name, names] : top["enums"].items()) {
    writer.key(name.c_str(), "  ");
    out += dump(names);
  }
  visit_tables(trace, writer);
  writer.close_table();
  out += "\n}\n";
  return out;
}

// --- Parsing -------------------------------------------------------------------------------------

// --- Reading -------------------------------------------------------------------------------------

std::string plural(std::size_t count, const char* noun) {
  return std::to_string(count) + " " + noun + (count == 1 ? "" : "s");
}

std::string got(const Json& value) {
  return "got " + json_type_name(value) + " " + repr_json(value);
}

std::string indexed(std::string_view path, std::size_t i) {
  return std::string(path) + "[" + std::to_string(i) + "]";
}

bool in_range(std::int64_t index, std::size_t count) {
  return index >= 0 && static_cast<std::uint64_t>(index) < count;
}

enum class IntStatus { kOk, kNotInteger, kOutOfRange };

// JSON integers, and numbers with no fractional part (what other writers may produce for 1e9).
IntStatus as_int64(const Json& value, std::int64_t& out) {
  if (const auto* u = value.get_ptr<const Json::number_unsigned_t*>()) {
    if (*u > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
      return IntStatus::kOutOfRange;
    out = static_cast<std::int64_t>(*u);
    return IntStatus::kOk;
  }
  // After the unsigned case: nlohmann hands out an unsigned value as a signed one too.
  if (const auto* i = value.get_ptr<const Json::number_integer_t*>()) {
    out = *i;
    return IntStatus::kOk;
  }
  if (const auto* d = value.get_ptr<const Json::number_float_t*>()) {
    if (!std::isfinite(*d) || std::floor(*d) != *d) return IntStatus::kNotInteger;
    // 2^63 is exactly representable; anything at or above it is not an int64.
    if (*d < -9223372036854775808.0 || *d >= 9223372036854775808.0) return IntStatus::kOutOfRange;
    out = static_cast<std::int64_t>(*d);
    return IntStatus::kOk;
  }
  return IntStatus::kNotInteger;
}

class Reader {
 public:
  explicit Reader(const std::string& origin) : origin_(origin) {}

  [[noreturn]] void fail(ErrorKind kind, std::string key_path, const std::string& message) const {
    throw UserError(kind, SourceLocation{origin_, 0, 0, std::move(key_path)}, message);
  }

  const Json& require(const Json& object, std::string_view key,
                      std::string_view object_path) const {
    const auto it = object.find(key);
    if (it == object.end()) {
      fail(ErrorKind::kMissing, std::string(object_path), "missing key '" + std::string(key) + "'");
    }
    return *it;
  }

  const Json& require_object(const Json& parent, std::string_view key) const {
    const Json& value = require(parent, key, "");
    if (!value.is_object())
      fail(ErrorKind::kType, std::string(key), "expected a mapping, " + got(value));
    return value;
  }

  const Json::array_t& require_array(const Json& parent, std::string_view key,
                                     std::string_view parent_path) const {
    const Json& value = require(parent, key, parent_path);
    const std::string path =
        parent_path.empty() ? std::string(key) : std::string(parent_path) + "." + std::string(key);
    if (!value.is_array()) fail(ErrorKind::kType, path, "expected a list, " + got(value));
    return value.get_ref<const Json::array_t&>();
  }

  std::int64_t integer(const Json& value, std::string_view path, std::size_t i, std::int64_t lo,
                       std::int64_t hi) const {
    std::int64_t x = 0;
    switch (as_int64(value, x)) {
      case IntStatus::kOk:
        if (x >= lo && x <= hi) return x;
        [[fallthrough]];
      case IntStatus::kOutOfRange:
        fail(ErrorKind::kValue, indexed(path, i),
             repr_json(value) + " is out of range (" + std::to_string(lo) + " to " +
                 std::to_string(hi) + ")");
      case IntStatus::kNotInteger:
        break;
    }
    fail(ErrorKind::kType, indexed(path, i), "expected an integer, " + got(value));
  }

  const std::string& string(const Json& value, std::string_view path, std::size_t i) const {
    const auto* s = value.get_ptr<const std::string*>();
    if (s == nullptr) fail(ErrorKind::kType, indexed(path, i), "expected a string, " + got(value));
    return *s;
  }

 private:
  const std::string& origin_;
};

// A table: columns of equal length, one row per element.
class Table {
 public:
  Table(const Reader& reader, const Json& top, std::string name)
      : reader_(reader), object_(reader.require_object(top, name)), name_(std::move(name)) {}

  const Json::array_t& column(std::string_view key) {
    const Json::array_t& values = reader_.require_array(object_, key, name_);
    if (first_.empty()) {
      first_ = key;
      rows_ = values.size();
    } else if (values.size() != rows_) {
      reader_.fail(ErrorKind::kConflict, path(key),
                   "column '" + std::string(key) + "' has " + plural(values.size(), "row") +
                       " but column '" + first_ + "' has " + std::to_string(rows_));
    }
    return values;
  }

  // Reads an integer column into each row through `set(row, value)`.
  template <class Row, class Set>
  void integers(std::string_view key, std::vector<Row>& rows, std::int64_t lo, std::int64_t hi,
                Set set) {
    const Json::array_t& values = column(key);
    rows.resize(rows_);
    const std::string p = path(key);
    for (std::size_t i = 0; i < rows_; ++i)
      set(rows[i], reader_.integer(values[i], p, i, lo, hi));
  }

  // Reads a column of indices into `names` (a table of enum names in the file) into each row.
  template <class Enum, class Row, class Set>
  void enums(std::string_view key, std::vector<Row>& rows,
             const std::vector<std::optional<Enum>>& names, const Json::array_t& name_list,
             std::string_view names_path, std::string_view what, Set set) {
    const Json::array_t& values = column(key);
    rows.resize(rows_);
    const std::string p = path(key);
    for (std::size_t i = 0; i < rows_; ++i) {
      std::int64_t index = 0;
      const IntStatus status = as_int64(values[i], index);
      if (status == IntStatus::kNotInteger) {
        reader_.fail(ErrorKind::kType, indexed(p, i),
                     "expected an index into " + std::string(names_path) + ", " + got(values[i]));
      }
      if (status != IntStatus::kOk || !in_range(index, names.size())) {
        reader_.fail(ErrorKind::kValue, indexed(p, i),
                     repr_json(values[i]) + " is not an index into " + std::string(names_path) +
                         " (it has " + plural(names.size(), "name") + ")");
      }
      const auto& value = names[static_cast<std::size_t>(index)];
      if (!value) {
        std::string known;
        for (std::size_t k = 0; k < kEnumCount<Enum>; ++k)
          known += (k ? ", " : "") + std::string(to_string(static_cast<Enum>(k)));
        reader_.fail(ErrorKind::kValue, indexed(p, i),
                     "unknown " + std::string(what) + " " +
                         repr_json(name_list[static_cast<std::size_t>(index)]) + " (" +
                         indexed(names_path, static_cast<std::size_t>(index)) +
                         "); this build knows " + known);
      }
      set(rows[i], *value);
    }
  }

  std::size_t rows() const { return rows_; }
  std::string path(std::string_view key) const { return name_ + "." + std::string(key); }

 private:
  const Reader& reader_;
  const Json& object_;
  std::string name_;
  std::string first_;
  std::size_t rows_ = 0;
};

// A table of enum names in the file. Unknown names are kept as nullopt and are an error only when a
// row uses them, so a file from a newer build that adds a name still opens if it does not use it.
template <class Enum>
std::vector<std::optional<Enum>> read_enum_names(const Reader& reader, const Json::array_t& names,
                                                 std::string_view path) {
  std::vector<std::optional<Enum>> out;
  out.reserve(names.size());
  for (std::size_t i = 0; i < names.size(); ++i) {
    Enum value{};
    if (parse(reader.string(names[i], path, i), value))
      out.emplace_back(value);
    else
      out.emplace_back(std::nullopt);
  }
  return out;
}

// --- Checking ------------------------------------------------------------------------------------

std::optional<TraceViolation> out_of_range(std::string_view path, std::size_t i, const char* what,
                                           std::int64_t index, std::size_t count,
                                           const char* where) {
  return TraceViolation{indexed(path, i), std::string(what) + " " + std::to_string(index) +
                                              " is out of range (" + where + " has " +
                                              plural(count, what) + ")"};
}

std::optional<TraceViolation> negative(std::string_view path, std::size_t i, const char* what,
                                       std::int64_t value) {
  return TraceViolation{indexed(path, i),
                        std::string(what) + " " + std::to_string(value) + " is negative"};
}

// A trace that breaks a rule is a bug in whoever built it, not bad input.
void check_before_writing(const Trace& trace) {
  if (auto violation = check_trace(trace)) {
    throw InternalError("cannot write a trace that breaks the format: " + violation->key_path +
                        ": " + violation->message);
  }
}

}  // namespace

std::optional<TraceViolation> check_trace(const Trace& trace) {
  const std::size_t rank_count = trace.ranks.size();
  const std::size_t string_count = trace.strings.size();
  const std::size_t group_count = trace.groups.size();

  std::unordered_map<std::int64_t, std::size_t> owner;  // global rank -> rank class
  for (std::size_t r = 0; r < rank_count; ++r) {
    const RankInfo& info = trace.ranks[r];
    const std::string path = indexed("ranks.ranks", r);
    for (std::size_t k = 0; k < info.ranks.size(); ++k) {
      const std::int64_t global = info.ranks[k];
      if (global < 0) return negative(path, k, "global rank", global);
      const auto [it, added] = owner.emplace(global, r);
      if (!added) {
        return TraceViolation{indexed(path, k), "global rank " + std::to_string(global) +
                                                    " is already listed in " +
                                                    indexed("ranks.ranks", it->second)};
      }
    }
    if (info.pipeline_stage < 0)
      return negative("ranks.pipeline_stage", r, "pipeline stage", info.pipeline_stage);
  }
  for (std::size_t g = 0; g < group_count; ++g) {
    if (trace.groups[g].size < 0) return negative("groups.size", g, "size", trace.groups[g].size);
  }

  for (std::size_t i = 0; i < trace.ops.size(); ++i) {
    const Op& op = trace.ops[i];
    if (!in_range(op.rank, rank_count))
      return out_of_range("ops.rank", i, "rank", op.rank, rank_count, "the trace");
    if (static_cast<std::size_t>(op.stream) >= kStreamCount) {
      return TraceViolation{indexed("ops.stream", i),
                            std::to_string(static_cast<int>(op.stream)) + " is not a stream"};
    }
    if (static_cast<std::size_t>(op.kind) >= kEnumCount<OpKind>) {
      return TraceViolation{indexed("ops.kind", i),
                            std::to_string(static_cast<int>(op.kind)) + " is not an op kind"};
    }
    if (op.end < op.start) {
      return TraceViolation{
          indexed("ops.end", i),
          "end " + std::to_string(op.end) + " is before start " + std::to_string(op.start)};
    }
    if (op.name != kNone && !in_range(op.name, string_count))
      return out_of_range("ops.name", i, "string", op.name, string_count, "the string table");
    if (op.bytes < 0) return negative("ops.bytes", i, "bytes", op.bytes);
    if (op.flops < 0) return negative("ops.flops", i, "flops", op.flops);
    if (op.step < 0) return negative("ops.step", i, "step", op.step);
    if (op.micro_batch < kNone) {
      return TraceViolation{
          indexed("ops.micro_batch", i),
          "micro-batch " + std::to_string(op.micro_batch) + " is neither -1 (none) nor >= 0"};
    }
    if (op.group != kNone && !in_range(op.group, group_count))
      return out_of_range("ops.group", i, "group", op.group, group_count, "the trace");
    if (op.module != kNone && !in_range(op.module, string_count))
      return out_of_range("ops.module", i, "string", op.module, string_count, "the string table");
    if (op.params != kNone && !in_range(op.params, string_count))
      return out_of_range("ops.params", i, "string", op.params, string_count, "the string table");
  }

  for (std::size_t i = 0; i < trace.memory.size(); ++i) {
    const MemorySample& m = trace.memory[i];
    if (!in_range(m.rank, rank_count))
      return out_of_range("memory.rank", i, "rank", m.rank, rank_count, "the trace");
    if (static_cast<std::size_t>(m.category) >= kMemoryCategoryCount) {
      return TraceViolation{
          indexed("memory.category", i),
          std::to_string(static_cast<int>(m.category)) + " is not a memory category"};
    }
    if (m.bytes < 0) return negative("memory.bytes", i, "bytes", m.bytes);
  }

  for (std::size_t i = 0; i < trace.allocations.size(); ++i) {
    const Allocation& a = trace.allocations[i];
    if (!in_range(a.rank, rank_count))
      return out_of_range("allocations.rank", i, "rank", a.rank, rank_count, "the trace");
    if (static_cast<std::size_t>(a.category) >= kMemoryCategoryCount) {
      return TraceViolation{
          indexed("allocations.category", i),
          std::to_string(static_cast<int>(a.category)) + " is not a memory category"};
    }
    if (a.bytes < 0) return negative("allocations.bytes", i, "bytes", a.bytes);
    if (a.end < a.start) {
      return TraceViolation{
          indexed("allocations.end", i),
          "end " + std::to_string(a.end) + " is before start " + std::to_string(a.start)};
    }
    if (a.name != kNone && !in_range(a.name, string_count)) {
      return out_of_range("allocations.name", i, "string", a.name, string_count,
                          "the string table");
    }
  }

  for (std::size_t i = 0; i < trace.reserved.size(); ++i) {
    const ReservedSample& s = trace.reserved[i];
    if (!in_range(s.rank, rank_count))
      return out_of_range("reserved.rank", i, "rank", s.rank, rank_count, "the trace");
    if (s.bytes < 0) return negative("reserved.bytes", i, "bytes", s.bytes);
  }

  for (std::size_t i = 0; i < trace.markers.size(); ++i) {
    const Marker& m = trace.markers[i];
    if (m.rank != kNone && !in_range(m.rank, rank_count))
      return out_of_range("markers.rank", i, "rank", m.rank, rank_count, "the trace");
    if (m.name != kNone && !in_range(m.name, string_count))
      return out_of_range("markers.name", i, "string", m.name, string_count, "the string table");
  }
  return std::nullopt;
}

Json to_native_json(const Trace& trace) {
  check_before_writing(trace);
  Json out = head(trace);
  JsonBuilder builder(out);
  visit_tables(trace, builder);
  return out;
}

Trace from_native_json(const Json& json, const std::string& origin) {
  const Reader reader(origin);
  if (!json.is_object()) {
    reader.fail(ErrorKind::kType, "", "expected a mapping (a zeroplan trace file), " + got(json));
  }
  // Format and version first: a foreign or newer file gets that message, not a missing column.
  const Json& format = reader.require(json, "format", "");
  const auto* format_name = format.get_ptr<const std::string*>();
  if (format_name == nullptr || *format_name != kNativeFormat) {
    reader.fail(
        ErrorKind::kValue, "format",
        repr_json(format) + " is not a zeroplan trace file (expected \"" + kNativeFormat + "\")");
  }
  const Json& version = reader.require(json, "version", "");
  std::int64_t v = 0;
  if (as_int64(version, v) != IntStatus::kOk) {
    reader.fail(ErrorKind::kType, "version", "expected an integer, " + got(version));
  }
  if (v < kOldestNativeFormatVersion || v > kNativeFormatVersion) {
    reader.fail(
        ErrorKind::kUnsupported, "version",
        "version " + std::to_string(v) +
            (v > kNativeFormatVersion ? " was written by a newer zeroplan" : " is not supported") +
            "; this build reads versions " + std::to_string(kOldestNativeFormatVersion) + " to " +
            std::to_string(kNativeFormatVersion));
  }

  Trace trace;
  const Json& source = reader.require(json, "source", "");
  const auto* source_name = source.get_ptr<const std::string*>();
  if (source_name != nullptr && *source_name == to_string(Source::kSimulated)) {
    trace.source = Source::kSimulated;
  } else if (source_name != nullptr && *source_name == to_string(Source::kMeasured)) {
    trace.source = Source::kMeasured;
  } else {
    reader.fail(ErrorKind::kValue, "source",
                "unknown source " + repr_json(source) + " (use \"simulated\" or \"measured\")");
  }
  trace.metadata = reader.require(json, "metadata", "");

  const Json::array_t& strings = reader.require_array(json, "strings", "");
  trace.strings.reserve(strings.size());
  for (std::size_t i = 0; i < strings.size(); ++i)
    trace.strings.push_back(reader.string(strings[i], "strings", i));

  const Json& enums = reader.require_object(json, "enums");
  const Json::array_t& stream_list = reader.require_array(enums, "stream", "enums");
  const Json::array_t& kind_list = reader.require_array(enums, "op_kind", "enums");
  const Json::array_t& category_list = reader.require_array(enums, "memory_category", "enums");
  const auto streams = read_enum_names<StreamKind>(reader, stream_list, "enums.stream");
  const auto kinds = read_enum_names<OpKind>(reader, kind_list, "enums.op_kind");
  const auto categories =
      read_enum_names<MemoryCategory>(reader, category_list, "enums.memory_category");

  {
    Table t(reader, json, "ranks");
    const Json::array_t& labels = t.column("label");
    const Json::array_t& lists = t.column("ranks");
    trace.ranks.resize(t.rows());
    for (std::size_t r = 0; r < t.rows(); ++r) {
      trace.ranks[r].label = reader.string(labels[r], "ranks.label", r);
      const auto* list = lists[r].get_ptr<const Json::array_t*>();
      if (list == nullptr) {
        reader.fail(ErrorKind::kType, indexed("ranks.ranks", r),
                    "expected a list of global ranks, " + got(lists[r]));
      }
      const std::string path = indexed("ranks.ranks", r);
      for (std::size_t k = 0; k < list->size(); ++k) {
        trace.ranks[r].ranks.push_back(reader.integer((*list)[k], path, k,
                                                      std::numeric_limits<std::int64_t>::min(),
                                                      std::numeric_limits<std::int64_t>::max()));
      }
    }
    t.integers(
        "pipeline_stage", trace.ranks, kInt32Min, kInt32Max,
        [](RankInfo& r, std::int64_t x) { r.pipeline_stage = static_cast<std::int32_t>(x); });
  }
  {
    Table t(reader, json, "groups");
    const Json::array_t& axes = t.column("axis");
    trace.groups.resize(t.rows());
    for (std::size_t g = 0; g < t.rows(); ++g)
      trace.groups[g].axis = reader.string(axes[g], "groups.axis", g);
    t.integers("size", trace.groups, std::numeric_limits<std::int64_t>::min(),
               std::numeric_limits<std::int64_t>::max(),
               [](GroupInfo& g, std::int64_t x) { g.size = x; });
  }

  constexpr std::int64_t kI64Min = std::numeric_limits<std::int64_t>::min();
  constexpr std::int64_t kI64Max = std::numeric_limits<std::int64_t>::max();
  {
    Table t(reader, json, "ops");
    auto& ops = trace.ops;
    t.integers("rank", ops, kInt32Min, kInt32Max,
               [](Op& o, std::int64_t x) { o.rank = static_cast<std::int32_t>(x); });
    t.enums("stream", ops, streams, stream_list, "enums.stream", "stream",
            [](Op& o, StreamKind x) { o.stream = x; });
    t.enums("kind", ops, kinds, kind_list, "enums.op_kind", "op kind",
            [](Op& o, OpKind x) { o.kind = x; });
    t.integers("start", ops, kI64Min, kI64Max, [](Op& o, std::int64_t x) { o.start = x; });
    t.integers("end", ops, kI64Min, kI64Max, [](Op& o, std::int64_t x) { o.end = x; });
    t.integers("name", ops, kInt32Min, kInt32Max,
               [](Op& o, std::int64_t x) { o.name = static_cast<std::int32_t>(x); });
    t.integers("bytes", ops, kI64Min, kI64Max, [](Op& o, std::int64_t x) { o.bytes = x; });
    t.integers("flops", ops, kI64Min, kI64Max, [](Op& o, std::int64_t x) { o.flops = x; });
    t.integers("step", ops, kInt32Min, kInt32Max,
               [](Op& o, std::int64_t x) { o.step = static_cast<std::int32_t>(x); });
    t.integers("micro_batch", ops, kInt32Min, kInt32Max,
               [](Op& o, std::int64_t x) { o.micro_batch = static_cast<std::int32_t>(x); });
    t.integers("group", ops, kInt32Min, kInt32Max,
               [](Op& o, std::int64_t x) { o.group = static_cast<std::int32_t>(x); });
    if (v >= 2) {
      t.integers("module", ops, kInt32Min, kInt32Max,
                 [](Op& o, std::int64_t x) { o.module = static_cast<std::int32_t>(x); });
      t.integers("params", ops, kInt32Min, kInt32Max,
                 [](Op& o, std::int64_t x) { o.params = static_cast<std::int32_t>(x); });
    }
  }
  {
    Table t(reader, json, "memory");
    auto& mem = trace.memory;
    t.integers("rank", mem, kInt32Min, kInt32Max,
               [](MemorySample& m, std::int64_t x) { m.rank = static_cast<std::int32_t>(x); });
    t.integers("time", mem, kI64Min, kI64Max, [](MemorySample& m, std::int64_t x) { m.time = x; });
    t.enums("category", mem, categories, category_list, "enums.memory_category", "memory category",
            [](MemorySample& m, MemoryCategory x) { m.category = x; });
    t.integers("bytes", mem, kI64Min, kI64Max,
               [](MemorySample& m, std::int64_t x) { m.bytes = x; });
  }
  if (v >= 3) {
    Table t(reader, json, "allocations");
    auto& al = trace.allocations;
    t.integers("rank", al, kInt32Min, kInt32Max,
               [](Allocation& a, std::int64_t x) { a.rank = static_cast<std::int32_t>(x); });
    t.enums("category", al, categories, category_list, "enums.memory_category", "memory category",
            [](Allocation& a, MemoryCategory x) { a.category = x; });
    t.integers("bytes", al, kI64Min, kI64Max, [](Allocation& a, std::int64_t x) { a.bytes = x; });
    t.integers("start", al, kI64Min, kI64Max, [](Allocation& a, std::int64_t x) { a.start = x; });
    t.integers("end", al, kI64Min, kI64Max, [](Allocation& a, std::int64_t x) { a.end = x; });
    t.integers("name", al, kInt32Min, kInt32Max,
               [](Allocation& a, std::int64_t x) { a.name = static_cast<std::int32_t>(x); });
  }
  {
    Table t(reader, json, "reserved");
    auto& res = trace.reserved;
    t.integers("rank", res, kInt32Min, kInt32Max,
               [](ReservedSample& s, std::int64_t x) { s.rank = static_cast<std::int32_t>(x); });
    t.integers("time", res, kI64Min, kI64Max,
               [](ReservedSample& s, std::int64_t x) { s.time = x; });
    t.integers("bytes", res, kI64Min, kI64Max,
               [](ReservedSample& s, std::int64_t x) { s.bytes = x; });
  }
  {
    Table t(reader, json, "markers");
    auto& mk = trace.markers;
    t.integers("rank", mk, kInt32Min, kInt32Max,
               [](Marker& m, std::int64_t x) { m.rank = static_cast<std::int32_t>(x); });
    t.integers("time", mk, kI64Min, kI64Max, [](Marker& m, std::int64_t x) { m.time = x; });
    t.integers("name", mk, kInt32Min, kInt32Max,
               [](Marker& m, std::int64_t x) { m.name = static_cast<std::int32_t>(x); });
  }

  if (auto violation = check_trace(trace))
    reader.fail(ErrorKind::kValue, violation->key_path, violation->message);
  return trace;
}

void write_native(const Trace& trace, const std::filesystem::path& path) {
  check_before_writing(trace);
  write_file_atomically(path, native_text(trace));
}

Json parse_json(std::string_view text, const std::string& origin) {
  return Document::from_json(text, origin).root();
}

namespace {
// nlohmann destroys an array value by first moving every element onto a stack of its own (to bound
// recursion); for a column of a million integers that costs more than reading it. Destroying the
// columns' vectors directly skips that.
void release_columns(Json& json) {
  if (!json.is_object()) return;
  for (auto& table : json) {
    if (!table.is_object()) continue;
    for (auto& column : table) {
      if (auto* values = column.get_ptr<Json::array_t*>()) {
        const Json::array_t dropped = std::move(*values);
      }
    }
  }
}
}  // namespace

Trace read_native(const std::filesystem::path& path) {
  Json json = parse_json(read_file(path), path.string());
  Trace trace = from_native_json(json, path.string());
  release_columns(json);
  return trace;
}

}  // namespace zp::trace
