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

}  // namespace
}  // namespace zp::gui
