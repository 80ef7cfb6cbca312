// The record of every communication operation a communicator ran: what it was, how many bytes,
// and when it started and ended in wall-clock time. trace_records.h turns records into
// core/trace collective ops the way sim fills them, so a measured trace reads like a simulated
// one.
//
// Bytes follow the simulator's convention (the collective's whole buffer): an all-gather counts
// its gathered output, a reduce-scatter its full input, an all-reduce and a broadcast their
// buffer, a send or receive its message. An operation that a backend emulates with others (Gloo
// has no reduce-scatter) is recorded once, as the logical operation.
//
// Thread-safe: a backend's completion threads append while the caller reads.
#pragma once

#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace zp::exec::comm {

enum class CommKind : std::uint8_t {
  kAllGather,
  kReduceScatter,
  kAllReduce,
  kBroadcast,
  kSend,
  kRecv,
  kBarrier,
};

// "all_gather", "reduce_scatter", "all_reduce", "broadcast", "send", "recv", "barrier".
std::string_view to_string(CommKind kind);

// Nanoseconds since the Unix epoch: comparable across the ranks of one machine, and across
// machines as far as their clocks agree.
std::int64_t wall_clock_ns();

struct OpRecord {
  CommKind kind = CommKind::kAllReduce;
  std::int64_t seq = 0;  // issue order on this communicator, from 0
  std::int64_t bytes = 0;
  std::int64_t start_ns = 0;  // wall_clock_ns() when issued
  std::int64_t end_ns = 0;    // wall_clock_ns() when complete
  std::int32_t peer = -1;     // the other rank of a send or receive, the root of a broadcast
  std::string label;          // the caller's name for it: "gather 12", "bucket 3"
  // A parameter gather's attribution (OpLog::attribute), "" when none: the module whose fetch
  // issued it, and the parameters it gathers, ", "-separated.
  std::string module;
  std::string params;
};

class OpLog {
 public:
  void add(OpRecord record);
  // Names the module and parameters of the operation labelled `label` (a parameter gather), before
  // or after it completes; records() fills them in. Kept until clear().
  void attribute(const std::string& label, std::string module, std::string params);
  // Every completed operation, in issue order.
  std::vector<OpRecord> records() const;
  void clear();

 private:
  struct Attribution {
    std::string module;
    std::string params;
  };
  mutable std::mutex mutex_;
  std::vector<OpRecord> records_;
  std::unordered_map<std::string, Attribution> attributions_;  // by label
};

}  // namespace zp::exec::comm
