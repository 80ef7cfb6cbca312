#include "exec/comm/trace_records.h"

#include <algorithm>

namespace zp::exec::comm {

bool trace_kind(CommKind kind, trace::StreamKind& stream, trace::OpKind& op) {
  using trace::OpKind;
  using trace::StreamKind;
  switch (kind) {
    case CommKind::kAllGather:
      stream = StreamKind::kAllGather;
      op = OpKind::kAllGather;
      return true;
    case CommKind::kReduceScatter:
      stream = StreamKind::kReduceScatter;
      op = OpKind::kReduceScatter;
      return true;
    case CommKind::kAllReduce:
      // Gradient all-reduce, the sim's most common use of it, runs on the reduce stream.
      stream = StreamKind::kReduceScatter;
      op = OpKind::kAllReduce;
      return true;
    case CommKind::kBroadcast:
      stream = StreamKind::kAllGather;
      op = OpKind::kBroadcast;
      return true;
    case CommKind::kSend:
      stream = StreamKind::kPipeSend;
      op = OpKind::kSend;
      return true;
    case CommKind::kRecv:
      stream = StreamKind::kPipeRecv;
      op = OpKind::kRecv;
      return true;
    case CommKind::kBarrier:
      return false;
  }
  return false;
}

void append_to_trace(const std::vector<OpRecord>& records, const TraceTarget& target,
                     trace::Trace& trace) {
  const trace::GroupInfo info{target.group_axis, target.group_size};
  auto it = std::find(trace.groups.begin(), trace.groups.end(), info);
  const auto group = static_cast<std::int32_t>(it - trace.groups.begin());
  if (it == trace.groups.end()) trace.groups.push_back(info);
  for (const OpRecord& r : records) {
    trace::Op op;
    if (!trace_kind(r.kind, op.stream, op.kind)) continue;
    op.rank = target.rank;
    op.start = r.start_ns - target.origin_ns;
    op.end = r.end_ns - target.origin_ns;
    op.bytes = r.bytes;
    op.step = target.step;
    op.group = group;
    if (!r.label.empty()) op.name = trace.intern(r.label);
    if (!r.module.empty()) op.module = trace.intern(r.module);
    if (!r.params.empty()) op.params = trace.intern(r.params);
    trace.ops.push_back(op);
  }
}

}  // namespace zp::exec::comm
