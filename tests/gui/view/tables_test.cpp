#include "gui/view/tables.h"

#include <gtest/gtest.h>

namespace zp::gui {
namespace {

using trace::OpKind;
using trace::StreamKind;

trace::Op op(std::int32_t rank, OpKind kind, trace::TimeNs start, trace::TimeNs end,
             std::int64_t bytes, std::int32_t group, std::int32_t name = trace::kNone) {
  trace::Op o;
  o.rank = rank;
  o.stream = StreamKind::kCompute;
  o.kind = kind;
  o.start = start;
  o.end = end;
  o.bytes = bytes;
  o.group = group;
  o.name = name;
  return o;
}

trace::Trace sample() {
  trace::Trace t;
  t.ranks = {{"rank 0", {0}, 0}, {"rank 1", {1}, 0}};
  t.groups = {{"data", 8}, {"pipe", 2}};
  const std::int32_t a = t.intern("layers.0");
  const std::int32_t b = t.intern("layers.1");
  t.ops = {op(0, OpKind::kAllGather, 0, 10, 100, 0),
           op(0, OpKind::kAllGather, 20, 40, 300, 0),
           op(0, OpKind::kReduceScatter, 50, 55, 1000, 0),
           op(0, OpKind::kSend, 60, 61, 7, 1),
           op(1, OpKind::kAllGather, 0, 10, 100, 0),
           op(0, OpKind::kForward, 0, 10, 0, trace::kNone, b),
           op(0, OpKind::kForward, 10, 15, 0, trace::kNone, a),
           op(0, OpKind::kBackward, 20, 40, 0, trace::kNone, b),
           op(0, OpKind::kRecompute, 40, 43, 0, trace::kNone, b),
           op(0, OpKind::kOptimizerStep, 50, 90, 0, trace::kNone)};
  t.ops[5].flops = 11;
  t.ops[7].flops = 22;
  return t;
}

TEST(CollectiveRows, AggregatesByKindAndGroupForOneRank) {
  const std::vector<CollectiveRow> rows = collective_rows(sample(), 0);
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_EQ(rows[0].kind, OpKind::kAllGather);
  EXPECT_EQ(rows[0].group_label, "data (8)");
  EXPECT_EQ(rows[0].count, 2);
  EXPECT_EQ(rows[0].bytes, 400);
  EXPECT_EQ(rows[0].time_ns, 30);
  EXPECT_EQ(rows[1].kind, OpKind::kReduceScatter);
  EXPECT_EQ(rows[2].kind, OpKind::kSend);
  EXPECT_EQ(rows[2].group_label, "pipe (2)");
  // Every rank: rank 1's gather counts too.
  EXPECT_EQ(collective_rows(sample(), kAllRanks)[0].count, 3);
}

TEST(CollectiveRows, SortsStablyAndTotals) {
  std::vector<CollectiveRow> rows = collective_rows(sample(), 0);
  sort_rows(rows, CollectiveColumn::kBytes, /*ascending=*/false);
  EXPECT_EQ(rows[0].kind, OpKind::kReduceScatter);
  EXPECT_EQ(rows[1].kind, OpKind::kAllGather);
  EXPECT_EQ(rows[2].kind, OpKind::kSend);
  sort_rows(rows, CollectiveColumn::kTime, /*ascending=*/true);
  EXPECT_EQ(rows[0].kind, OpKind::kSend);
  EXPECT_EQ(rows[2].kind, OpKind::kAllGather);
  const CollectiveRow total = collective_total(rows);
  EXPECT_EQ(total.count, 4);
  EXPECT_EQ(total.bytes, 1407);
  EXPECT_EQ(total.time_ns, 36);
}

TEST(ModuleRows, CountsPassesPerModuleInOrderOfFirstAppearance) {
  std::vector<ModuleRow> rows = module_rows(sample(), 0);
  ASSERT_EQ(rows.size(), 2u);  // the optimizer step is not a module pass
  EXPECT_EQ(rows[0].name, "layers.1");
  EXPECT_EQ(rows[0].forward, 1);
  EXPECT_EQ(rows[0].backward, 1);
  EXPECT_EQ(rows[0].recompute, 1);
  EXPECT_EQ(rows[0].time_ns, 33);
  EXPECT_EQ(rows[0].flops, 33);
  EXPECT_EQ(rows[1].name, "layers.0");
  sort_rows(rows, ModuleColumn::kName, true);
  EXPECT_EQ(rows[0].name, "layers.0");
  const ModuleRow total = module_total(rows);
  EXPECT_EQ(total.forward, 2);
  EXPECT_EQ(total.time_ns, 38);
}

// Module "layers.0": two gathers its fetch issued (one an all-reduce, as with
// use_all_reduce_for_fetch_params), the copy to the device ahead of one (not a fetch), one release
// of its parameter, and a forward and a backward. Ops that name no module count for none.
trace::Trace attributed() {
  trace::Trace t;
  t.ranks = {{"rank 0", {0}, 0}, {"rank 1", {1}, 0}};
  t.groups = {{"data", 8}};
  const std::int32_t x = t.intern("layers.0");
  const std::int32_t y = t.intern("layers.1");
  const std::int32_t params = t.intern("layers.0.weight, layers.0.bias");
  auto gather = [&](std::int32_t rank, OpKind kind, trace::TimeNs start, std::int64_t bytes,
                    std::int32_t module) {
    trace::Op o = op(rank, kind, start, start + 10, bytes, 0);
    o.stream = StreamKind::kAllGather;
    o.module = module;
    o.params = module == trace::kNone ? trace::kNone : params;
    return o;
  };
  auto release = [&](std::int32_t rank, trace::TimeNs at, std::int32_t module) {
    trace::Op o = op(rank, OpKind::kRelease, at, at, 64, trace::kNone);
    o.module = module;
    return o;
  };
  trace::Op copy = gather(0, OpKind::kCopyToDevice, 0, 32, x);
  copy.stream = StreamKind::kHostToDevice;
  copy.group = trace::kNone;
  t.ops = {copy,
           gather(0, OpKind::kAllGather, 10, 100, x),
           op(0, OpKind::kForward, 20, 30, 0, trace::kNone, x),
           release(0, 30, x),
           gather(0, OpKind::kAllReduce, 40, 300, x),
           op(0, OpKind::kBackward, 50, 70, 0, trace::kNone, x),
           gather(0, OpKind::kAllGather, 70, 1000, trace::kNone),  // outside any module's fetch
           op(0, OpKind::kAllReduce, 80, 90, 5000, 0),             // a gradient all-reduce
           release(0, 90, y),
           release(0, 91, trace::kNone),
           gather(1, OpKind::kAllGather, 0, 100, y)};
  return t;
}

TEST(ModuleRows, CountFetchesReleasesAndBytesGatheredPerModule) {
  const trace::Trace t = attributed();
  std::vector<ModuleRow> rows = module_rows(t, 0);
  ASSERT_EQ(rows.size(), 2u);
  const ModuleRow& x = rows[0];
  EXPECT_EQ(x.name, "layers.0");
  EXPECT_EQ(x.fetches, 2);
  EXPECT_EQ(x.releases, 1);
  EXPECT_EQ(x.gathered_bytes, 400);
  EXPECT_EQ(x.forward, 1);
  EXPECT_EQ(x.backward, 1);
  EXPECT_EQ(x.time_ns, 30);
  // A module with releases but no compute and no gathers on this rank still has its row.
  const ModuleRow& y = rows[1];
  EXPECT_EQ(y.name, "layers.1");
  EXPECT_EQ(y.fetches, 0);
  EXPECT_EQ(y.releases, 1);
  EXPECT_EQ(y.time_ns, 0);
  const ModuleRow total = module_total(rows);
  EXPECT_EQ(total.fetches, 2);
  EXPECT_EQ(total.releases, 2);
  EXPECT_EQ(total.gathered_bytes, 400);
  // Every rank: rank 1's gather is layers.1's.
  const std::vector<ModuleRow> all = module_rows(t, kAllRanks);
  ASSERT_EQ(all.size(), 2u);
  EXPECT_EQ(all[1].fetches, 1);
  EXPECT_EQ(all[1].gathered_bytes, 100);
  sort_rows(rows, ModuleColumn::kReleases, /*ascending=*/false);
  EXPECT_EQ(rows[0].name, "layers.0") << "stable: equal releases keep their order";
  sort_rows(rows, ModuleColumn::kFetches, /*ascending=*/true);
  EXPECT_EQ(rows[0].name, "layers.1");
  sort_rows(rows, ModuleColumn::kGatheredBytes, /*ascending=*/false);
  EXPECT_EQ(rows[0].name, "layers.0");
}

TEST(ModuleRows, MatchModulesByNameNotStringIndex) {
  trace::Trace t = attributed();
  // A string table may list a name twice (a merged or hand-made trace): one row still.
  t.strings.push_back("layers.0");
  const auto twin = static_cast<std::int32_t>(t.strings.size() - 1);
  t.ops[3].module = twin;
  const std::vector<ModuleRow> rows = module_rows(t, 0);
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0].releases, 1);
}

TEST(CollectiveRows, LeaveReleasesOut) {
  const std::vector<CollectiveRow> rows = collective_rows(attributed(), 0);
  for (const CollectiveRow& r : rows)
    EXPECT_NE(r.kind, OpKind::kRelease);
  EXPECT_EQ(collective_total(rows).count, 5) << "a copy, three gathers and a gradient all-reduce";
}

}  // namespace
}  // namespace zp::gui
