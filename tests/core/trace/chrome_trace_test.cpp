#include "core/trace/chrome_trace.h"

#include <gtest/gtest.h>

#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <functional>
#include <limits>
#include <map>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "core/util/atomic_file.h"
#include "core/util/error.h"

namespace zp::trace {
namespace {

Trace TwoRanks() {
  Trace t;
  t.source = Source::kSimulated;
  t.metadata = {{"run", "gpt2"}, {"micro_batches", 4}};
  t.ranks = {{"stage 0", {0, 1, 2, 3, 8}, 0}, {"stage 1", {4}, 1}};
  t.groups = {{"data", 4}};
  const std::int32_t attn = t.intern("layers.0.attn");
  // rank 0: a forward on compute, an all-gather in a group; rank 1: a send.
  t.ops.push_back(
      Op{0, StreamKind::kCompute, OpKind::kForward, 1500, 4000, attn, 0, 123456789, 2, 1, kNone});
  t.ops.push_back(Op{0, StreamKind::kAllGather, OpKind::kAllGather, 1000, 1999, kNone, 1 << 20, 0,
                     2, kNone, 0});
  t.ops.push_back(Op{1, StreamKind::kPipeSend, OpKind::kSend, 7, 7, kNone, 64, 0, 0, 3, kNone});
  return t;
}

std::vector<Json> Events(const Json& chrome, const std::function<bool(const Json&)>& keep) {
  std::vector<Json> out;
  for (const Json& e : chrome["traceEvents"])
    if (keep(e)) out.push_back(e);
  return out;
}

std::vector<Json> Phase(const Json& chrome, const std::string& ph) {
  return Events(chrome, [&](const Json& e) { return e["ph"] == ph; });
}

std::vector<Json> Meta(const Json& chrome, const std::string& name) {
  return Events(chrome, [&](const Json& e) { return e["ph"] == "M" && e["name"] == name; });
}

TEST(ChromeTrace, TopLevel) {
  const Json c = to_chrome_trace(TwoRanks());
  EXPECT_EQ(c["displayTimeUnit"], "ns");
  ASSERT_TRUE(c["traceEvents"].is_array());
  EXPECT_EQ(c["otherData"]["source"], "simulated");
  EXPECT_EQ(c["otherData"]["metadata"], TwoRanks().metadata);
}

TEST(ChromeTrace, RanksAreProcessesWithNamesAndOrder) {
  const Json c = to_chrome_trace(TwoRanks());
  const auto names = Meta(c, "process_name");
  ASSERT_EQ(names.size(), 2u);
  for (std::size_t r = 0; r < 2; ++r) {
    EXPECT_EQ(names[r]["pid"], r);
    EXPECT_EQ(names[r]["args"]["name"], r == 0 ? "stage 0" : "stage 1");
  }
  const auto order = Meta(c, "process_sort_index");
  ASSERT_EQ(order.size(), 2u);
  EXPECT_EQ(order[1]["pid"], 1);
  EXPECT_EQ(order[1]["args"]["sort_index"], 1);
  // The global ranks a class stands for, as ranges.
  const auto labels = Meta(c, "process_labels");
  ASSERT_EQ(labels.size(), 2u);
  EXPECT_EQ(labels[0]["args"]["labels"], "ranks 0-3, 8");
  EXPECT_EQ(labels[1]["args"]["labels"], "ranks 4");
}

TEST(ChromeTrace, StreamsAreThreadsOnlyWhereUsed) {
  const Json c = to_chrome_trace(TwoRanks());
  std::set<std::tuple<int, int, std::string>> threads;
  for (const Json& e : Meta(c, "thread_name"))
    threads.emplace(e["pid"].get<int>(), e["tid"].get<int>(), e["args"]["name"].get<std::string>());
  const std::set<std::tuple<int, int, std::string>> expected = {
      {0, static_cast<int>(StreamKind::kCompute), "compute"},
      {0, static_cast<int>(StreamKind::kAllGather), "allgather"},
      {1, static_cast<int>(StreamKind::kPipeSend), "pipe_send"}};
  EXPECT_EQ(threads, expected);
  for (const Json& e : Meta(c, "thread_sort_index"))
    EXPECT_EQ(e["args"]["sort_index"], e["tid"]);
  EXPECT_EQ(Meta(c, "thread_sort_index").size(), 3u);
}

TEST(ChromeTrace, OpsAreCompleteEventsInMicroseconds) {
  const Trace t = TwoRanks();
  const Json c = to_chrome_trace(t);
  const auto ops = Phase(c, "X");
  ASSERT_EQ(ops.size(), 3u);

  const Json& forward = ops[0];
  EXPECT_EQ(forward["pid"], 0);
  EXPECT_EQ(forward["tid"], static_cast<int>(StreamKind::kCompute));
  EXPECT_TRUE(forward["ts"].is_number_float());
  EXPECT_EQ(forward["ts"].get<double>(), 1.5);   // 1500 ns
  EXPECT_EQ(forward["dur"].get<double>(), 2.5);  // 2500 ns
  EXPECT_EQ(forward["name"], "layers.0.attn");
  EXPECT_EQ(forward["cat"], "forward");
  EXPECT_EQ(forward["args"],
            Json({{"step", 2}, {"micro_batch", 1}, {"flops", 123456789}}));  // no bytes: 0

  const Json& gather = ops[1];
  EXPECT_EQ(gather["tid"], static_cast<int>(StreamKind::kAllGather));
  EXPECT_EQ(gather["ts"].get<double>(), 1.0);
  EXPECT_EQ(gather["dur"].get<double>(), 0.999);
  EXPECT_EQ(gather["name"], "allgather");  // no name: the kind
  EXPECT_EQ(gather["cat"], "allgather");
  EXPECT_EQ(gather["args"],
            Json({{"step", 2}, {"bytes", 1 << 20}, {"group", "data"}, {"group_size", 4}}));

  const Json& send = ops[2];
  EXPECT_EQ(send["pid"], 1);
  EXPECT_EQ(send["ts"].get<double>(), 0.007);
  EXPECT_EQ(send["dur"].get<double>(), 0.0);
  EXPECT_EQ(send["args"], Json({{"step", 0}, {"bytes", 64}, {"micro_batch", 3}}));
}

TEST(ChromeTrace, GathersAndReleasesCarryTheirModuleAndParameters) {
  Trace t = TwoRanks();
  t.ops[1].module = t.intern("layers.0.attn");
  t.ops[1].params = t.intern("layers.0.attn.weight, layers.0.attn.bias");
  t.ops.push_back(Op{.rank = 0,
                     .kind = OpKind::kRelease,
                     .start = 4000,
                     .end = 4000,
                     .bytes = 512,
                     .step = 2,
                     .module = t.ops[1].module,
                     .params = t.intern("layers.0.attn.weight")});
  const auto ops = Phase(to_chrome_trace(t), "X");
  ASSERT_EQ(ops.size(), 4u);
  EXPECT_EQ(ops[1]["args"], Json({{"step", 2},
                                  {"bytes", 1 << 20},
                                  {"group", "data"},
                                  {"group_size", 4},
                                  {"module", "layers.0.attn"},
                                  {"params", "layers.0.attn.weight, layers.0.attn.bias"}}));
  EXPECT_EQ(ops[3]["name"], "release");
  EXPECT_EQ(ops[3]["cat"], "release");
  EXPECT_EQ(ops[3]["dur"].get<double>(), 0.0);
  EXPECT_EQ(ops[3]["args"], Json({{"step", 2},
                                  {"bytes", 512},
                                  {"module", "layers.0.attn"},
                                  {"params", "layers.0.attn.weight"}}));
}

TEST(ChromeTrace, NanosecondsSurviveTheTextForm) {
  Trace t = TwoRanks();
  // 1000 s into the run, one nanosecond long.
  t.ops[0].start = 1'000'000'000'001;
  t.ops[0].end = t.ops[0].start + 1;
  const Json c = Json::parse(to_chrome_trace(t).dump());
  const Json op = Phase(c, "X")[0];
  EXPECT_EQ(std::llround(op["ts"].get<double>() * 1000.0), t.ops[0].start);
  EXPECT_EQ(op["dur"].get<double>(), 0.001);
}

TEST(ChromeTrace, TimesBeforeTheStartAndHugeDurations) {
  Trace t = TwoRanks();
  t.ops[2].start = -2500;  // a measured clock may start late
  t.ops[1].start = std::numeric_limits<TimeNs>::min();
  t.ops[1].end = std::numeric_limits<TimeNs>::max();  // end - start overflows int64
  const auto ops = Phase(to_chrome_trace(t), "X");
  EXPECT_EQ(ops[2]["ts"].get<double>(), -2.5);
  EXPECT_EQ(ops[2]["dur"].get<double>(), 2.507);
  EXPECT_EQ(ops[1]["ts"].get<double>(), -9223372036854775.808);
  EXPECT_EQ(ops[1]["dur"].get<double>(), 18446744073709551.615);
}

TEST(ChromeTrace, MemoryCountersCarryEveryCategoryOfTheirSide) {
  Trace t = TwoRanks();
  t.memory = {
      {0, 100, MemoryCategory::kParamPartitions, 1000},
      {0, 300, MemoryCategory::kActivations, 50},
      {0, 300, MemoryCategory::kActivations, 70},      // the later sample at one time wins
      {0, 200, MemoryCategory::kGatheredParams, 400},  // out of time order in the trace
      {0, 250, MemoryCategory::kHostOptimizer, 9000},
      {1, 100, MemoryCategory::kRecompute, 5},  // another rank starts from zero
  };
  const Json c = to_chrome_trace(t);

  std::vector<std::string> device;
  std::vector<std::string> host;
  for (std::size_t i = 0; i < kMemoryCategoryCount; ++i) {
    const auto category = static_cast<MemoryCategory>(i);
    (on_device(category) ? device : host).emplace_back(to_string(category));
  }
  const auto totals = [](const Json& e) {
    std::map<std::string, std::int64_t> m;
    for (const auto& [k, v] : e["args"].items())
      m[k] = v.get<std::int64_t>();
    return m;
  };
  const auto with = [&](const std::vector<std::string>& names,
                        std::map<std::string, std::int64_t> nonzero) {
    std::map<std::string, std::int64_t> m;
    for (const std::string& n : names)
      m[n] = 0;
    for (const auto& [k, v] : nonzero)
      m[k] = v;
    return m;
  };

  const auto memory =
      Events(c, [](const Json& e) { return e["ph"] == "C" && e["name"] == "memory"; });
  ASSERT_EQ(memory.size(), 4u);
  std::vector<std::tuple<int, double>> where;
  for (const Json& e : memory)
    where.emplace_back(e["pid"].get<int>(), e["ts"].get<double>());
  EXPECT_EQ(where, (std::vector<std::tuple<int, double>>{{0, 0.1}, {0, 0.2}, {0, 0.3}, {1, 0.1}}));
  EXPECT_EQ(totals(memory[0]), with(device, {{"param_partitions", 1000}}));
  EXPECT_EQ(totals(memory[1]),
            with(device, {{"param_partitions", 1000}, {"gathered_params", 400}}));
  EXPECT_EQ(
      totals(memory[2]),
      with(device, {{"param_partitions", 1000}, {"gathered_params", 400}, {"activations", 70}}));
  EXPECT_EQ(totals(memory[3]), with(device, {{"recompute", 5}}));

  const auto host_memory =
      Events(c, [](const Json& e) { return e["ph"] == "C" && e["name"] == "host memory"; });
  ASSERT_EQ(host_memory.size(), 1u);
  EXPECT_EQ(host_memory[0]["pid"], 0);
  EXPECT_EQ(host_memory[0]["ts"].get<double>(), 0.25);
  EXPECT_EQ(totals(host_memory[0]), with(host, {{"host_optimizer", 9000}}));
}

TEST(ChromeTrace, ReservedIsItsOwnCounter) {
  Trace t = TwoRanks();
  t.reserved = {{1, 10, 4096}, {0, 20, 1 << 30}, {0, 20, std::int64_t{2} << 30}, {0, 5, 7}};
  const Json c = to_chrome_trace(t);
  const auto reserved =
      Events(c, [](const Json& e) { return e["ph"] == "C" && e["name"] == "reserved"; });
  ASSERT_EQ(reserved.size(), 3u);
  EXPECT_EQ(reserved[0]["pid"], 0);
  EXPECT_EQ(reserved[0]["ts"].get<double>(), 0.005);
  EXPECT_EQ(reserved[0]["args"], Json({{"bytes", 7}}));
  EXPECT_EQ(reserved[1]["args"], Json({{"bytes", std::int64_t{2} << 30}}));
  EXPECT_EQ(reserved[2]["pid"], 1);
  EXPECT_EQ(reserved[2]["args"], Json({{"bytes", 4096}}));
}

TEST(ChromeTrace, MarkersAreInstants) {
  Trace t = TwoRanks();
  t.markers = {{kNone, 2500, t.intern("step 1")}, {1, 3000, t.intern("peak")}, {0, 1, kNone}};
  const Json c = to_chrome_trace(t);
  const auto instants = Phase(c, "i");
  ASSERT_EQ(instants.size(), 3u);
  EXPECT_EQ(instants[0]["s"], "g");
  EXPECT_EQ(instants[0]["name"], "step 1");
  EXPECT_EQ(instants[0]["ts"].get<double>(), 2.5);
  EXPECT_EQ(instants[1]["s"], "p");
  EXPECT_EQ(instants[1]["pid"], 1);
  EXPECT_EQ(instants[1]["name"], "peak");
  EXPECT_EQ(instants[2]["s"], "p");
  EXPECT_EQ(instants[2]["pid"], 0);
  EXPECT_EQ(instants[2]["name"], "marker");
}

TEST(ChromeTrace, EveryEventHasTheFieldsViewersNeed) {
  Trace t = TwoRanks();
  t.memory = {{0, 1, MemoryCategory::kActivations, 1}};
  t.reserved = {{0, 1, 1}};
  t.markers = {{kNone, 1, kNone}};
  for (const Json& e : to_chrome_trace(t)["traceEvents"]) {
    EXPECT_TRUE(e.contains("ph") && e.contains("name") && e.contains("pid") && e.contains("tid"))
        << e.dump();
    if (e["ph"] != "M") {
      EXPECT_TRUE(e["ts"].is_number()) << e.dump();
    }
  }
}

TEST(ChromeTrace, BrokenTraceIsAnInternalError) {
  Trace t = TwoRanks();
  t.ops[1].rank = 2;
  EXPECT_THROW(to_chrome_trace(t), InternalError);
}

TEST(ChromeTrace, FileIsTheJson) {
  const auto dir = std::filesystem::temp_directory_path() /
                   ("zeroplan_chrome_test_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const Trace t = TwoRanks();
  write_chrome_trace(t, dir / "run.chrome.json");
  EXPECT_EQ(Json::parse(read_file(dir / "run.chrome.json")), to_chrome_trace(t));
  EXPECT_THROW(write_chrome_trace(t, dir / "missing" / "run.chrome.json"), UserError);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace zp::trace
