#include "exec/comm/op_log.h"

#include <algorithm>
#include <chrono>

namespace zp::exec::comm {

std::string_view to_string(CommKind kind) {
  switch (kind) {
    case CommKind::kAllGather:
      return "all_gather";
    case CommKind::kReduceScatter:
      return "reduce_scatter";
    case CommKind::kAllReduce:
      return "all_reduce";
    case CommKind::kBroadcast:
      return "broadcast";
    case CommKind::kSend:
      return "send";
    case CommKind::kRecv:
      return "recv";
    case CommKind::kBarrier:
      return "barrier";
  }
  return "?";
}

std::int64_t wall_clock_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

void OpLog::add(OpRecord record) {
  const std::lock_guard lock(mutex_);
  records_.push_back(std::move(record));
}

void OpLog::attribute(const std::string& label, std::string module, std::string params) {
  const std::lock_guard lock(mutex_);
  attributions_[label] = Attribution{std::move(module), std::move(params)};
}

std::vector<OpRecord> OpLog::records() const {
  std::vector<OpRecord> out;
  {
    const std::lock_guard lock(mutex_);
    out = records_;
    if (!attributions_.empty()) {
      for (OpRecord& r : out) {
        const auto it = attributions_.find(r.label);
        if (it == attributions_.end()) continue;
        r.module = it->second.module;
        r.params = it->second.params;
      }
    }
  }
  // Completion threads append in completion order.
  std::stable_sort(out.begin(), out.end(),
                   [](const OpRecord& a, const OpRecord& b) { return a.seq < b.seq; });
  return out;
}

void OpLog::clear() {
  const std::lock_guard lock(mutex_);
  records_.clear();
  attributions_.clear();
}

}  // namespace zp::exec::comm
