#include "core/trace/native_format.h"

#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <string>
#include <vector>

#include "core/util/atomic_file.h"
#include "core/util/error.h"

namespace zp::trace {
namespace {

constexpr std::int64_t kI64Max = std::numeric_limits<std::int64_t>::max();

// Every enum value, every optional field both set and unset, extreme integers, odd strings.
Trace FullTrace() {
  Trace t;
  t.source = Source::kMeasured;
  t.metadata = Json::parse(R"({"run": "gpt2 \"zero3\"", "ranks": 8, "lr": 0.000125,
                              "tags": ["a", null, true, -3], "nested": {"x": {"y": []}},
                              "unicode": "µs → ok"})");
  t.ranks = {{"stage 0", {0, 1, 2, 3}, 0}, {"stage 1", {4, 5, 6, 7}, 1}, {"", {}, 0}};
  t.groups = {{"data", 4}, {"pipe 0-1", 2}};
  const std::int32_t layer = t.intern("layers.0.attn");
  t.intern("");  // the empty string is a valid name
  const std::int32_t step_marker = t.intern("step 0");
  const std::int32_t peak = t.intern("peak \"memory\"\n");

  for (std::size_t k = 0; k < static_cast<std::size_t>(OpKind::kCount); ++k) {
    Op op;
    op.rank = static_cast<std::int32_t>(k % 2);
    op.stream = static_cast<StreamKind>(k % kStreamCount);
    op.kind = static_cast<OpKind>(k);
    op.start = 1000 * static_cast<TimeNs>(k) + 7;
    op.end = op.start + 1500;
    op.name = k % 3 == 0 ? kNone : layer;
    op.bytes = k == 4 ? kI64Max : static_cast<std::int64_t>(k) << 30;
    op.flops = k < 3 ? 123456789012345 : 0;
    op.step = static_cast<std::int32_t>(k / 6);
    op.micro_batch = k % 4 == 0 ? kNone : static_cast<std::int32_t>(k % 4);
    op.group = k >= 4 && k < 10 ? static_cast<std::int32_t>(k % 2) : kNone;
    op.module = k >= 4 && k % 2 == 0 ? layer : kNone;
    op.params = k >= 4 && k % 3 != 0 ? peak : kNone;
    t.ops.push_back(op);
  }
  // The streams the loop above did not reach with rank 1, and a zero-length op.
  for (std::size_t s = 0; s < kStreamCount; ++s) {
    t.ops.push_back(Op{1, static_cast<StreamKind>(s), OpKind::kForward, 50'000, 50'000});
  }
  t.ops.push_back(Op{2, StreamKind::kHost, OpKind::kOptimizerStep, -20, 4'000'000'000'000'000,
                     layer, 0, 1, 3, 7, kNone});

  for (std::size_t c = 0; c < kMemoryCategoryCount; ++c) {
    t.memory.push_back({static_cast<std::int32_t>(c % 3), 100 * static_cast<TimeNs>(c),
                        static_cast<MemoryCategory>(c), static_cast<std::int64_t>(c) * 1'000'003});
  }
  t.memory.push_back({0, 0, MemoryCategory::kActivations, kI64Max});
  // Freed, never freed, zero-length, unnamed, on every rank class.
  t.allocations = {{0, MemoryCategory::kGatheredParams, 4096, 10, 20, layer},
                   {1, MemoryCategory::kActivations, kI64Max, -5, kNever, kNone},
                   {2, MemoryCategory::kCommBuffers, 0, 7, 7, peak}};
  t.reserved = {{0, 0, 1 << 20}, {1, 5, 0}, {0, 10, kI64Max}};
  t.markers = {{kNone, 0, step_marker}, {1, 42, peak}, {0, 43, kNone}};
  return t;
}

Trace FromJson(const Json& j) {
  return from_native_json(j, "t.json");
}

UserError ErrorFor(const Json& j) {
  try {
    FromJson(j);
  } catch (const UserError& e) {
    return e;
  }
  ADD_FAILURE() << "accepted a file that breaks a rule";
  return UserError(ErrorKind::kValue, {}, "");
}

bool Contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

// The error's key path and that its one-line message names the file, the field and `value`.
void ExpectError(const Json& j, ErrorKind kind, const std::string& key_path,
                 const std::string& value) {
  const UserError e = ErrorFor(j);
  EXPECT_EQ(e.kind(), kind) << e.what();
  EXPECT_EQ(e.where().file, "t.json");
  EXPECT_EQ(e.where().key_path, key_path) << e.what();
  const std::string what = e.what();
  EXPECT_TRUE(what.starts_with(key_path.empty() ? "t.json: " : "t.json: " + key_path + ": "))
      << what;
  EXPECT_TRUE(Contains(e.message(), value)) << "'" << value << "' not in: " << what;
}

TEST(NativeFormat, RoundTripIsLossless) {
  const Trace t = FullTrace();
  const Json j = to_native_json(t);
  EXPECT_EQ(FromJson(j), t);
  // Through text too: integers come back unsigned, floats as parsed.
  const Trace back = FromJson(Json::parse(j.dump()));
  EXPECT_EQ(back, t);
  EXPECT_EQ(back.metadata, t.metadata);
  EXPECT_EQ(to_native_json(back), j);
}

TEST(NativeFormat, EmptyTraceRoundTrips) {
  const Trace t;
  EXPECT_EQ(FromJson(Json::parse(to_native_json(t).dump())), t);
}

TEST(NativeFormat, LayoutIsColumnWiseWithEnumNameTables) {
  const Trace t = FullTrace();
  const Json j = to_native_json(t);
  EXPECT_EQ(j["format"], "zeroplan-trace");
  EXPECT_EQ(j["version"], 3);
  EXPECT_EQ(j["source"], "measured");
  EXPECT_EQ(j["strings"], Json(t.strings));
  for (const char* column : {"rank", "stream", "kind", "start", "end", "name", "bytes", "flops",
                             "step", "micro_batch", "group", "module", "params"}) {
    ASSERT_TRUE(j["ops"][column].is_array()) << column;
    EXPECT_EQ(j["ops"][column].size(), t.ops.size()) << column;
  }
  EXPECT_EQ(j["ops"].size(), 13u);
  // A gather names its module and parameters; a release is an op kind of its own.
  const auto release = static_cast<std::size_t>(OpKind::kRelease);
  EXPECT_EQ(j["enums"]["op_kind"][release], "release");
  EXPECT_EQ(t.string(j["ops"]["module"][4].get<std::int32_t>()), "layers.0.attn");
  EXPECT_EQ(t.string(j["ops"]["params"][4].get<std::int32_t>()), "peak \"memory\"\n");
  EXPECT_EQ(j["ops"]["module"][5], kNone);
  EXPECT_EQ(j["ops"]["params"][6], kNone);
  EXPECT_EQ(j["memory"].size(), 4u);
  EXPECT_EQ(j["allocations"].size(), 6u);
  EXPECT_EQ(j["allocations"]["end"][1], kNever);
  EXPECT_EQ(j["enums"]["memory_category"][j["allocations"]["category"][0].get<std::size_t>()],
            "gathered_params");
  EXPECT_EQ(j["reserved"].size(), 3u);
  EXPECT_EQ(j["markers"].size(), 3u);
  EXPECT_EQ(j["ranks"]["ranks"][1], Json({4, 5, 6, 7}));
  EXPECT_EQ(j["groups"]["axis"][1], "pipe 0-1");
  // Enum columns index the name tables; the names are the stable ones.
  EXPECT_EQ(j["enums"]["stream"][3], "h2d");
  EXPECT_EQ(j["enums"]["op_kind"].size(), static_cast<std::size_t>(OpKind::kCount));
  EXPECT_EQ(j["enums"]["memory_category"].size(), kMemoryCategoryCount);
  for (std::size_t i = 0; i < t.ops.size(); ++i) {
    EXPECT_EQ(j["enums"]["op_kind"][j["ops"]["kind"][i].get<std::size_t>()],
              to_string(t.ops[i].kind));
    EXPECT_EQ(j["enums"]["stream"][j["ops"]["stream"][i].get<std::size_t>()],
              to_string(t.ops[i].stream));
  }
  EXPECT_EQ(j["ops"]["name"][0], kNone);
  EXPECT_EQ(j["markers"]["rank"][0], kNone);
}

// Version 1 had no module and params columns and no release kind: its ops name no module.
TEST(NativeFormat, ReadsVersion1WithoutModuleAttribution) {
  Trace t = FullTrace();
  std::erase_if(t.ops, [](const Op& op) { return op.kind == OpKind::kRelease; });
  Json j = to_native_json(t);
  j["version"] = 1;
  j.erase("allocations");
  t.allocations.clear();
  j["ops"].erase("module");
  j["ops"].erase("params");
  j["enums"]["op_kind"].erase(static_cast<std::size_t>(OpKind::kRelease));
  const Trace back = FromJson(Json::parse(j.dump()));
  ASSERT_EQ(back.ops.size(), t.ops.size());
  for (Op& op : t.ops) {
    op.module = kNone;
    op.params = kNone;
  }
  EXPECT_EQ(back, t);
  // A version 1 file with the columns (a hand-edited one) still gets none: they were not in it.
  Json extra = to_native_json(FullTrace());
  extra["version"] = 1;
  for (const Op& op : FromJson(extra).ops) {
    EXPECT_EQ(op.module, kNone);
    EXPECT_EQ(op.params, kNone);
  }
}

// Version 2 had no allocations table: the trace gets none, and one in the file is ignored.
TEST(NativeFormat, ReadsVersion2WithoutAllocations) {
  Trace t = FullTrace();
  Json j = to_native_json(t);
  j["version"] = 2;
  j.erase("allocations");
  t.allocations.clear();
  EXPECT_EQ(FromJson(Json::parse(j.dump())), t);
  Json extra = to_native_json(FullTrace());
  extra["version"] = 2;
  extra["allocations"]["end"][0] = -1;  // would break a rule in version 3
  EXPECT_TRUE(FromJson(extra).allocations.empty());
  // Version 3 requires the table.
  Json v3 = to_native_json(FullTrace());
  v3.erase("allocations");
  ExpectError(v3, ErrorKind::kMissing, "", "'allocations'");
}

TEST(NativeFormat, AllocationRulesAreChecked) {
  const Json good = to_native_json(FullTrace());
  {
    Json j = good;
    j["allocations"]["end"][0] = 9;
    ExpectError(j, ErrorKind::kValue, "allocations.end[0]", "end 9 is before start 10");
  }
  {
    Json j = good;
    j["allocations"]["bytes"][2] = -1;
    ExpectError(j, ErrorKind::kValue, "allocations.bytes[2]", "-1");
  }
  {
    Json j = good;
    j["allocations"]["rank"][1] = 3;
    ExpectError(j, ErrorKind::kValue, "allocations.rank[1]", "rank 3 is out of range");
  }
  {
    Json j = good;
    j["allocations"]["name"][0] = 4;
    ExpectError(j, ErrorKind::kValue, "allocations.name[0]", "string 4 is out of range");
  }
  {
    Json j = good;
    j["allocations"]["category"][0] = 99;
    ExpectError(j, ErrorKind::kValue, "allocations.category[0]", "99");
  }
}

TEST(NativeFormat, EnumTablesMayBeInAnyOrder) {
  const Trace t = FullTrace();
  Json j = to_native_json(t);
  // Another writer lists the kinds backwards; the indices follow its list.
  Json& names = j["enums"]["op_kind"];
  std::reverse(names.begin(), names.end());
  const auto last = static_cast<std::int64_t>(names.size()) - 1;
  for (Json& k : j["ops"]["kind"])
    k = last - k.get<std::int64_t>();
  EXPECT_EQ(FromJson(j), t);
}

TEST(NativeFormat, UnknownEnumNamesAreAcceptedWhileUnused) {
  const Trace t = FullTrace();
  Json j = to_native_json(t);
  j["enums"]["op_kind"].push_back("all_to_all");  // from a newer build, used by no op
  j["enums"]["stream"].push_back("nvlink");
  j["enums"]["memory_category"].push_back("workspace");
  EXPECT_EQ(FromJson(j), t);
}

TEST(NativeFormat, UnknownKeysAreIgnored) {
  const Trace t = FullTrace();
  Json j = to_native_json(t);
  j["provenance"] = "a newer writer";
  j["ops"]["stream_id"] = Json::array();
  EXPECT_EQ(FromJson(j), t);
}

TEST(NativeFormat, FormatAndVersionAreChecked) {
  const Json good = to_native_json(FullTrace());
  {
    Json j = good;
    j.erase("format");
    ExpectError(j, ErrorKind::kMissing, "", "'format'");
  }
  {
    Json j = good;
    j["format"] = "zeroplan.model";
    ExpectError(j, ErrorKind::kValue, "format", "\"zeroplan.model\" is not a zeroplan trace file");
  }
  {
    Json j = good;
    j["format"] = 1;
    ExpectError(j, ErrorKind::kValue, "format", "expected \"zeroplan-trace\"");
  }
  {
    Json j = good;
    j["version"] = 4;
    ExpectError(j, ErrorKind::kUnsupported, "version",
                "version 4 was written by a newer zeroplan; this build reads versions 1 to 3");
  }
  {
    Json j = good;
    j["version"] = 0;
    ExpectError(j, ErrorKind::kUnsupported, "version",
                "version 0 is not supported; this build reads versions 1 to 3");
  }
  {
    Json j = good;
    j["version"] = "1";
    ExpectError(j, ErrorKind::kType, "version", "expected an integer, got a string \"1\"");
  }
  {
    Json j = good;
    j.erase("version");
    ExpectError(j, ErrorKind::kMissing, "", "'version'");
  }
  {
    // A foreign file: a Chrome trace.
    ExpectError(Json{{"traceEvents", Json::array()}}, ErrorKind::kMissing, "", "'format'");
    ExpectError(Json::array(), ErrorKind::kType, "", "expected a mapping");
  }
  {
    Json j = good;
    j["source"] = "predicted";
    ExpectError(j, ErrorKind::kValue, "source", "\"predicted\"");
  }
}

TEST(NativeFormat, EveryTableAndColumnIsRequired) {
  const Json good = to_native_json(FullTrace());
  for (const char* key : {"source", "metadata", "strings", "enums", "ranks", "groups", "ops",
                          "memory", "allocations", "reserved", "markers"}) {
    Json j = good;
    j.erase(key);
    ExpectError(j, ErrorKind::kMissing, "", std::string("'") + key + "'");
  }
  for (const auto& [table, columns] : good.items()) {
    if (!columns.is_object() || table == "metadata") continue;
    for (const auto& [column, values] : columns.items()) {
      Json j = good;
      j[table].erase(column);
      ExpectError(j, ErrorKind::kMissing, table, "'" + column + "'");
    }
  }
}

TEST(NativeFormat, ColumnsOfUnequalLengthAreRejected) {
  const Json good = to_native_json(FullTrace());
  {
    Json j = good;
    j["ops"]["end"].erase(j["ops"]["end"].size() - 1);
    const std::string rows = std::to_string(good["ops"]["end"].size() - 1) + " rows";
    ExpectError(j, ErrorKind::kConflict, "ops.end", "column 'end' has " + rows);
  }
  {
    Json j = good;
    j["memory"]["bytes"].push_back(1);
    ExpectError(j, ErrorKind::kConflict, "memory.bytes", "column 'bytes'");
  }
  {
    Json j = good;
    j["ranks"]["pipeline_stage"].push_back(0);
    ExpectError(j, ErrorKind::kConflict, "ranks.pipeline_stage", "column 'pipeline_stage'");
  }
  {
    Json j = good;
    j["markers"]["time"] = Json::array();
    ExpectError(j, ErrorKind::kConflict, "markers.time", "has 0 rows but column 'rank' has 3");
  }
}

TEST(NativeFormat, UnknownEnumNamesAreRejectedWhereUsed) {
  const Trace t = FullTrace();
  const Json good = to_native_json(t);
  {
    Json j = good;
    j["enums"]["op_kind"][3] = "all_to_all";  // ops[3] is an optimizer step
    ExpectError(j, ErrorKind::kValue, "ops.kind[3]", "unknown op kind \"all_to_all\"");
    EXPECT_TRUE(Contains(ErrorFor(j).message(), "enums.op_kind[3]"));
    EXPECT_TRUE(Contains(ErrorFor(j).message(), "forward, backward"));
  }
  {
    Json j = good;
    j["enums"]["stream"][0] = "Compute";
    ExpectError(j, ErrorKind::kValue, "ops.stream[0]", "unknown stream \"Compute\"");
  }
  {
    Json j = good;
    j["enums"]["memory_category"][14] = "disk";
    ExpectError(j, ErrorKind::kValue, "memory.category[14]", "unknown memory category \"disk\"");
  }
  {
    Json j = good;
    j["ops"]["stream"][2] = 8;  // the table has 8 names: 0 to 7
    ExpectError(j, ErrorKind::kValue, "ops.stream[2]", "8 is not an index into enums.stream");
  }
  {
    Json j = good;
    j["ops"]["kind"][1] = "backward";  // a name where an index belongs
    ExpectError(j, ErrorKind::kType, "ops.kind[1]", "got a string \"backward\"");
  }
  {
    Json j = good;
    j["enums"]["stream"][1] = 1;
    ExpectError(j, ErrorKind::kType, "enums.stream[1]", "expected a string");
  }
}

TEST(NativeFormat, IndicesOutOfRangeAreRejected) {
  const Trace t = FullTrace();  // 3 ranks, 4 strings, 2 groups
  const Json good = to_native_json(t);
  struct Case {
    const char* table;
    const char* column;
    std::size_t row;
    std::int64_t value;
    const char* message;
  };
  const std::vector<Case> cases = {
      {"ops", "rank", 5, 3, "rank 3 is out of range (the trace has 3 ranks)"},
      {"ops", "rank", 0, -1, "rank -1 is out of range"},
      {"ops", "name", 1, 4, "string 4 is out of range (the string table has 4 strings)"},
      {"ops", "name", 1, -2, "string -2 is out of range"},
      {"ops", "group", 0, 2, "group 2 is out of range (the trace has 2 groups)"},
      {"ops", "module", 4, 4, "string 4 is out of range (the string table has 4 strings)"},
      {"ops", "params", 3, -2, "string -2 is out of range"},
      {"memory", "rank", 2, 3, "rank 3 is out of range"},
      {"reserved", "rank", 1, 7, "rank 7 is out of range"},
      {"markers", "rank", 1, 3, "rank 3 is out of range"},
      {"markers", "rank", 1, -2, "rank -2 is out of range"},
      {"markers", "name", 2, 4, "string 4 is out of range"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(std::string(c.table) + "." + c.column);
    Json j = good;
    j[c.table][c.column][c.row] = c.value;
    ExpectError(j, ErrorKind::kValue,
                std::string(c.table) + "." + c.column + "[" + std::to_string(c.row) + "]",
                c.message);
  }
  // -1 (none) is valid where the field is optional.
  Json j = good;
  j["ops"]["group"][5] = kNone;
  j["markers"]["rank"][1] = kNone;
  EXPECT_NO_THROW(FromJson(j));
}

TEST(NativeFormat, ValueRulesAreChecked) {
  const Trace t = FullTrace();
  const Json good = to_native_json(t);
  {
    Json j = good;
    j["ops"]["end"][4] = t.ops[4].start - 1;
    ExpectError(j, ErrorKind::kValue, "ops.end[4]",
                "end " + std::to_string(t.ops[4].start - 1) + " is before start " +
                    std::to_string(t.ops[4].start));
  }
  {
    Json j = good;
    j["ops"]["bytes"][6] = -4096;
    ExpectError(j, ErrorKind::kValue, "ops.bytes[6]", "bytes -4096 is negative");
  }
  {
    Json j = good;
    j["memory"]["bytes"][3] = -1;
    ExpectError(j, ErrorKind::kValue, "memory.bytes[3]", "bytes -1 is negative");
  }
  {
    Json j = good;
    j["reserved"]["bytes"][2] = -8;
    ExpectError(j, ErrorKind::kValue, "reserved.bytes[2]", "bytes -8 is negative");
  }
  {
    Json j = good;
    j["ops"]["flops"][0] = -1;
    ExpectError(j, ErrorKind::kValue, "ops.flops[0]", "flops -1 is negative");
  }
  {
    Json j = good;
    j["ops"]["step"][0] = -1;
    ExpectError(j, ErrorKind::kValue, "ops.step[0]", "step -1 is negative");
  }
  {
    Json j = good;
    j["ops"]["micro_batch"][0] = -2;
    ExpectError(j, ErrorKind::kValue, "ops.micro_batch[0]", "micro-batch -2");
  }
  {
    Json j = good;
    j["groups"]["size"][1] = -2;
    ExpectError(j, ErrorKind::kValue, "groups.size[1]", "size -2 is negative");
  }
  {
    Json j = good;
    j["ranks"]["pipeline_stage"][1] = -1;
    ExpectError(j, ErrorKind::kValue, "ranks.pipeline_stage[1]", "pipeline stage -1 is negative");
  }
  {
    Json j = good;
    j["ranks"]["ranks"][1][2] = 3;  // rank 3 is already in the first class
    ExpectError(j, ErrorKind::kValue, "ranks.ranks[1][2]",
                "global rank 3 is already listed in ranks.ranks[0]");
  }
  {
    Json j = good;
    j["ranks"]["ranks"][0][0] = -1;
    ExpectError(j, ErrorKind::kValue, "ranks.ranks[0][0]", "global rank -1 is negative");
  }
}

TEST(NativeFormat, ValueTypesAreChecked) {
  const Json good = to_native_json(FullTrace());
  {
    Json j = good;
    j["ops"]["start"][2] = "2007";
    ExpectError(j, ErrorKind::kType, "ops.start[2]", "expected an integer, got a string \"2007\"");
  }
  {
    Json j = good;
    j["ops"]["start"][2] = 2007.5;
    ExpectError(j, ErrorKind::kType, "ops.start[2]", "2007.5");
  }
  {
    Json j = good;
    j["ops"]["rank"][2] = std::int64_t{1} << 31;  // not a 32-bit index
    ExpectError(j, ErrorKind::kValue, "ops.rank[2]", "2147483648 is out of range");
  }
  {
    Json j = good;
    j["ops"]["bytes"][2] = std::numeric_limits<std::uint64_t>::max();
    ExpectError(j, ErrorKind::kValue, "ops.bytes[2]", "18446744073709551615 is out of range");
  }
  {
    Json j = good;
    j["ops"]["bytes"][2] = 1e300;
    ExpectError(j, ErrorKind::kValue, "ops.bytes[2]", "is out of range");
  }
  {
    Json j = good;
    j["ops"] = Json::array();
    ExpectError(j, ErrorKind::kType, "ops", "expected a mapping, got a list");
  }
  {
    Json j = good;
    j["ops"]["end"] = 5;
    ExpectError(j, ErrorKind::kType, "ops.end", "expected a list, got an integer 5");
  }
  {
    Json j = good;
    j["strings"][1] = 7;
    ExpectError(j, ErrorKind::kType, "strings[1]", "expected a string, got an integer 7");
  }
  {
    Json j = good;
    j["ranks"]["ranks"][0] = 0;
    ExpectError(j, ErrorKind::kType, "ranks.ranks[0]", "expected a list of global ranks");
  }
  {
    Json j = good;
    j["groups"]["axis"][0] = Json::object();
    ExpectError(j, ErrorKind::kType, "groups.axis[0]", "expected a string, got a mapping");
  }
  {
    // Integral floats, as other writers may produce them, are integers.
    Json j = good;
    j["ops"]["start"][2] = 2007.0;
    j["ops"]["end"][2] = 3507.0;
    EXPECT_EQ(FromJson(j), FullTrace());
  }
}

// Whatever a column holds, reading ends in a trace or a UserError, never another exception.
TEST(NativeFormat, ArbitraryValuesNeverCrashTheReader) {
  const Json good = to_native_json(FullTrace());
  const std::vector<Json> replacements = {
      Json(),        Json(true),     Json(-1),      Json(0),
      Json(1),       Json(1u << 31), Json(-1.5),    Json(std::numeric_limits<std::uint64_t>::max()),
      Json(-9.3e18), Json("x"),      Json::array(), Json::object(),
      Json({1, 2})};
  int accepted = 0;
  int rejected = 0;
  const auto attempt = [&](const Json& j) {
    try {
      FromJson(j);
      ++accepted;
    } catch (const UserError&) {
      ++rejected;
    }
  };
  for (const auto& [table, body] : good.items()) {
    if (table == "metadata") continue;
    for (const Json& r : replacements) {
      Json j = good;
      j[table] = r;
      attempt(j);
    }
    if (!body.is_object()) continue;
    for (const auto& [column, values] : body.items()) {
      for (const Json& r : replacements) {
        Json j = good;
        j[table][column] = r;
        attempt(j);
        if (values.empty()) continue;
        for (const std::size_t row : {std::size_t{0}, values.size() - 1}) {
          Json k = good;
          k[table][column][row] = r;
          attempt(k);
        }
      }
    }
  }
  EXPECT_GT(accepted, 0);
  EXPECT_GT(rejected, 100);
}

// Truncated or corrupted text: a trace or a UserError, never another exception or a crash.
TEST(NativeJsonParser, DamagedFilesNeverCrashTheReader) {
  Trace small;
  small.ranks = {{"r", {0}, 0}};
  small.ops = {
      Op{0, StreamKind::kCompute, OpKind::kForward, 1, 2, small.intern("µ\"x"), 3, 4, 0, 1, kNone}};
  small.memory = {{0, 1, MemoryCategory::kActivations, 5}};
  small.markers = {{kNone, 0, kNone}};
  std::string text = to_native_json(small).dump();
  int rejected = 0;
  const auto attempt = [&](const std::string& damaged) {
    try {
      from_native_json(parse_json(damaged, "t.json"), "t.json");
    } catch (const UserError&) {
      ++rejected;
    }
  };
  for (std::size_t n = 0; n < text.size(); ++n) {
    attempt(text.substr(0, n));
    for (const char c : {'\0', '"', '9', '-', ']', '}', ',', '\xff'}) {
      std::string flipped = text;
      flipped[n] = c;
      attempt(flipped);
    }
  }
  EXPECT_GT(rejected, static_cast<int>(text.size()));
}

class NativeFile : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = std::filesystem::temp_directory_path() /
           ("zeroplan_native_" + std::string(info->name()) + "_" + std::to_string(::getpid()));
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::vector<std::string> Files() const {
    std::vector<std::string> names;
    for (const auto& entry : std::filesystem::directory_iterator(dir_))
      names.push_back(entry.path().filename().string());
    std::sort(names.begin(), names.end());
    return names;
  }

  std::filesystem::path dir_;
};

TEST_F(NativeFile, WrittenFileReadsBack) {
  const Trace t = FullTrace();
  const auto path = dir_ / "run.trace.json";
  write_native(t, path);
  EXPECT_EQ(read_native(path), t);
  EXPECT_EQ(Files(), std::vector<std::string>{"run.trace.json"});
  // The first line names the format, for `head`; each column sits on one line.
  const std::string text = read_file(path);
  EXPECT_TRUE(text.starts_with("{\n \"format\": \"zeroplan-trace\",\n \"version\": 3,\n")) << text;
  EXPECT_TRUE(Contains(text, "\n  \"start\": [7,1007,"));
  EXPECT_EQ(Json::parse(text), to_native_json(t));
}

TEST_F(NativeFile, UnwritablePathIsAUserErrorAndLeavesNoFile) {
  const Trace t = FullTrace();
  {
    const auto path = dir_ / "missing-dir" / "run.trace.json";
    try {
      write_native(t, path);
      ADD_FAILURE() << "wrote into a missing folder";
    } catch (const UserError& e) {
      EXPECT_EQ(e.kind(), ErrorKind::kIo);
      EXPECT_EQ(e.where().file, path.string());
    }
    EXPECT_FALSE(std::filesystem::exists(path.parent_path()));
  }
  {
    // A folder where the file should go: the rename fails, the temporary file goes away.
    const auto path = dir_ / "taken";
    std::filesystem::create_directory(path);
    EXPECT_THROW(write_native(t, path), UserError);
    EXPECT_EQ(Files(), std::vector<std::string>{"taken"});
    EXPECT_TRUE(std::filesystem::is_empty(path));
  }
}

TEST_F(NativeFile, ABrokenTraceIsNotWrittenAndTheOldFileStays) {
  const Trace t = FullTrace();
  const auto path = dir_ / "run.trace.json";
  write_native(t, path);
  Trace broken = t;
  broken.ops[0].end = broken.ops[0].start - 1;
  try {
    write_native(broken, path);
    ADD_FAILURE() << "wrote a trace with end < start";
  } catch (const InternalError& e) {
    EXPECT_TRUE(Contains(e.what(), "ops.end[0]")) << e.what();
  }
  EXPECT_EQ(read_native(path), t);
  EXPECT_EQ(Files(), std::vector<std::string>{"run.trace.json"});
}

TEST_F(NativeFile, BadFilesAreUserErrorsNamingTheFile) {
  {
    const auto path = dir_ / "absent.json";
    try {
      read_native(path);
      ADD_FAILURE();
    } catch (const UserError& e) {
      EXPECT_EQ(e.kind(), ErrorKind::kMissing);
      EXPECT_EQ(e.where().file, path.string());
    }
  }
  {
    const auto path = dir_ / "truncated.json";
    write_native(FullTrace(), path);
    const std::string text = read_file(path);
    std::ofstream(path, std::ios::trunc) << text.substr(0, text.size() / 2);
    try {
      read_native(path);
      ADD_FAILURE();
    } catch (const UserError& e) {
      EXPECT_EQ(e.kind(), ErrorKind::kSyntax);
      EXPECT_EQ(e.where().file, path.string());
    }
  }
  {
    const auto path = dir_ / "newer.json";
    Json j = to_native_json(FullTrace());
    j["version"] = 7;
    std::ofstream(path) << j.dump();
    try {
      read_native(path);
      ADD_FAILURE();
    } catch (const UserError& e) {
      EXPECT_EQ(e.kind(), ErrorKind::kUnsupported);
      EXPECT_TRUE(Contains(e.what(), path.string() + ": version: version 7 was written by a newer"))
          << e.what();
    }
  }
}

}  // namespace
}  // namespace zp::trace
