// Communication records as core/trace collective ops, on the streams the simulator puts them on,
// so a measured trace reads like a simulated one.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/trace/trace.h"
#include "exec/comm/op_log.h"

namespace zp::exec::comm {

// Which trace stream and op kind a record becomes. Barriers have no trace op: false.
bool trace_kind(CommKind kind, trace::StreamKind& stream, trace::OpKind& op);

struct TraceTarget {
  std::int32_t rank = 0;   // index into Trace::ranks
  std::string group_axis;  // "data", "world", "pipe 0-1"
  std::int64_t group_size = 0;
  std::int64_t origin_ns = 0;  // the wall-clock time that becomes trace time 0
  std::int32_t step = 0;
};

// Appends one collective op per record (barriers are skipped), adding the group to trace.groups
// the first time it is seen. A record's module and parameters become the op's.
void append_to_trace(const std::vector<OpRecord>& records, const TraceTarget& target,
                     trace::Trace& trace);

}  // namespace zp::exec::comm
