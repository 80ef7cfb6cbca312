#include "exec/comm/trace_records.h"

#include <gtest/gtest.h>

#include "core/util/error.h"
#include "exec/comm/buffer.h"

namespace zp::exec::comm {
namespace {

OpRecord record(CommKind kind, std::int64_t seq, std::int64_t bytes, std::int64_t start,
                std::int64_t end, std::string label = {}) {
  OpRecord r;
  r.kind = kind;
  r.seq = seq;
  r.bytes = bytes;
  r.start_ns = start;
  r.end_ns = end;
  r.label = std::move(label);
  return r;
}

TEST(OpLog, ListsRecordsInIssueOrderWhateverTheirCompletionOrder) {
  OpLog log;
  log.add(record(CommKind::kAllReduce, 1, 8, 0, 1));
  log.add(record(CommKind::kAllGather, 0, 8, 0, 2));
  const auto records = log.records();
  ASSERT_EQ(records.size(), 2u);
  EXPECT_EQ(records[0].kind, CommKind::kAllGather);
  EXPECT_EQ(records[1].kind, CommKind::kAllReduce);
}

TEST(OpLog, BecomesTraceCollectivesOnTheSimulatorsStreams) {
  const std::int64_t origin = 1'700'000'000'000'000'000;
  const std::vector<OpRecord> records{
      record(CommKind::kAllGather, 0, 4096, origin + 100, origin + 250, "gather 3"),
      record(CommKind::kBarrier, 1, 0, origin + 260, origin + 270, "barrier"),
      record(CommKind::kReduceScatter, 2, 8192, origin + 300, origin + 500, "bucket 0"),
      record(CommKind::kAllReduce, 3, 16, origin + 510, origin + 520),
      record(CommKind::kSend, 4, 64, origin + 600, origin + 700, "to 1"),
      record(CommKind::kRecv, 5, 64, origin + 600, origin + 710, "from 1"),
  };
  trace::Trace t;
  t.groups.push_back(trace::GroupInfo{"pipe 0-1", 2});
  TraceTarget target;
  target.rank = 1;
  target.group_axis = "data";
  target.group_size = 4;
  target.origin_ns = origin;
  target.step = 2;
  append_to_trace(records, target, t);
  append_to_trace({records[0]}, target, t);  // the group is added once

  ASSERT_EQ(t.groups.size(), 2u);
  EXPECT_EQ(t.groups[1], (trace::GroupInfo{"data", 4}));
  ASSERT_EQ(t.ops.size(), 6u) << "barriers are not trace ops";
  const trace::Op& gather = t.ops[0];
  EXPECT_EQ(gather.kind, trace::OpKind::kAllGather);
  EXPECT_EQ(gather.stream, trace::StreamKind::kAllGather);
  EXPECT_EQ(gather.start, 100);
  EXPECT_EQ(gather.end, 250);
  EXPECT_EQ(gather.bytes, 4096);
  EXPECT_EQ(gather.rank, 1);
  EXPECT_EQ(gather.step, 2);
  EXPECT_EQ(gather.group, 1);
  EXPECT_EQ(t.string(gather.name), "gather 3");
  EXPECT_EQ(t.ops[1].kind, trace::OpKind::kReduceScatter);
  EXPECT_EQ(t.ops[1].stream, trace::StreamKind::kReduceScatter);
  EXPECT_EQ(t.ops[2].kind, trace::OpKind::kAllReduce);
  EXPECT_EQ(t.ops[2].stream, trace::StreamKind::kReduceScatter);
  EXPECT_EQ(t.ops[2].name, trace::kNone);
  EXPECT_EQ(t.ops[3].stream, trace::StreamKind::kPipeSend);
  EXPECT_EQ(t.ops[4].kind, trace::OpKind::kRecv);
  EXPECT_EQ(t.ops[4].stream, trace::StreamKind::kPipeRecv);
  EXPECT_EQ(t.ops[5].group, 1);
}

TEST(OpLog, AttributedGathersNameTheirModuleAndParametersInTheTrace) {
  OpLog log;
  log.attribute("gather 1", "h.0.attn", "h.0.attn.weight, h.0.attn.bias");  // before it completes
  log.add(record(CommKind::kAllGather, 0, 4096, 100, 200, "gather 1"));
  log.add(record(CommKind::kAllGather, 1, 64, 200, 300, "gather 2"));
  log.add(record(CommKind::kReduceScatter, 2, 64, 300, 400, "bucket 0"));
  log.attribute("gather 2", "h.0.mlp", "h.0.mlp.weight");  // after
  const std::vector<OpRecord> records = log.records();
  ASSERT_EQ(records.size(), 3u);
  EXPECT_EQ(records[0].module, "h.0.attn");
  EXPECT_EQ(records[0].params, "h.0.attn.weight, h.0.attn.bias");
  EXPECT_EQ(records[1].module, "h.0.mlp");
  EXPECT_EQ(records[2].module, "");

  trace::Trace t;
  TraceTarget target;
  target.group_axis = "data";
  target.group_size = 2;
  append_to_trace(records, target, t);
  ASSERT_EQ(t.ops.size(), 3u);
  EXPECT_EQ(t.string(t.ops[0].module), "h.0.attn");
  EXPECT_EQ(t.string(t.ops[0].params), "h.0.attn.weight, h.0.attn.bias");
  EXPECT_EQ(t.string(t.ops[1].module), "h.0.mlp");
  EXPECT_EQ(t.ops[2].module, trace::kNone);
  EXPECT_EQ(t.ops[2].params, trace::kNone);

  // clear() forgets the attributions with the records.
  log.clear();
  log.add(record(CommKind::kAllGather, 0, 4096, 100, 200, "gather 1"));
  EXPECT_EQ(log.records()[0].module, "");
}

TEST(Buffer, SliceOffsetsByElementsOfItsType) {
  std::vector<double> data(10);
  const Buffer b = host_buffer(data.data(), 10);
  const Buffer s = b.slice(3, 4);
  EXPECT_EQ(s.data, static_cast<void*>(data.data() + 3));
  EXPECT_EQ(s.numel, 4);
  EXPECT_EQ(s.bytes(), 32);
  EXPECT_THROW(b.slice(8, 3), InternalError);
}

}  // namespace
}  // namespace zp::exec::comm
