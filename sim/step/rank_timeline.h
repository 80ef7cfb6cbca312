// One simulated rank's timeline: the compute stream's clock, which the host follows (it issues work
// only when the GPU reaches it), the side streams, the ops and markers it records in the trace, and
// what its collectives and copies total. The data-parallel step simulations (ZeRO-3 in
// zero_step.cpp, stages 0-2 in data_parallel_step.cpp) derive from it and keep only what their
// stage decides; both must time and record alike, so that their traces compare.
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <string>
#include <unordered_map>

#include "core/trace/trace.h"
#include "sim/network/collectives.h"
#include "sim/step/step_result.h"

namespace zp::sim {

// A collective as the network model costs it, the totals count it and the trace shows it.
struct CollectiveOp {
  CollectiveKind kind;
  TransferKind transfer;
  trace::OpKind op;
};
inline constexpr CollectiveOp kAllGatherOp{CollectiveKind::kAllGather, TransferKind::kAllGather,
                                           trace::OpKind::kAllGather};
inline constexpr CollectiveOp kReduceScatterOp{
    CollectiveKind::kReduceScatter, TransferKind::kReduceScatter, trace::OpKind::kReduceScatter};
inline constexpr CollectiveOp kAllReduceOp{CollectiveKind::kAllReduce, TransferKind::kAllReduce,
                                           trace::OpKind::kAllReduce};

class RankTimeline {
 public:
  // Over every step this rank has run.
  const std::array<TransferTotals, kTransferKindCount>& transfers() const { return transfers_; }

 protected:
  // Rank `trace_rank` of `trace` (which may be null), whose links are those of global rank `gpu`,
  // in a data-parallel group of `data_size` ranks shaped `data_shape` (registered in the trace).
  // `collective_host_ns`: ClusterSpec::collective_host_ns, charged to the host by collective().
  RankTimeline(trace::Trace* trace, std::int32_t trace_rank, const CollectiveModel& network,
               const GroupShape& data_shape, std::int64_t data_size, std::int64_t gpu,
               TimeNs collective_host_ns);

  // ---- The trace (without one, names are -1 and nothing is recorded) ----------------------------

  std::int32_t label(const std::string& text) { return trace_ ? trace_->intern(text) : -1; }
  // "gather 12", formatted only when there is a trace to name it in.
  std::int32_t numbered_label(const char* prefix, std::int64_t n) {
    return trace_ ? intern_numbered(prefix, n) : -1;
  }
  std::int32_t intern_numbered(const char* prefix, std::int64_t n);  // out of line: rarely run
  void marker(const std::string& text);
  // An op of the current step and micro-batch. What runs per op is defined in this header, to stay
  // inline: the planner runs the simulator in its inner loop.
  void record(trace::StreamKind stream, trace::OpKind kind, TimeNs start, TimeNs end,
              std::int32_t name, std::int64_t bytes, std::int64_t flops,
              std::int32_t group = trace::kNone) {
    if (!trace_) return;
    trace::Op op;
    op.rank = trace_rank_;
    op.stream = stream;
    op.kind = kind;
    op.start = start;
    op.end = end;
    op.name = name;
    op.bytes = bytes;
    op.flops = flops;
    op.step = step_;
    op.micro_batch = micro_batch_ >= 0 ? micro_batch_ : trace::kNone;
    op.group = group;
    trace_->ops.push_back(op);
  }

  // ---- Steps ------------------------------------------------------------------------------------

  // Starts step `report.step` at the present time: its figures restart and the trace marks it.
  void begin_step(StepReport& report);
  // The step ends at the present time with the figures gathered since begin_step.
  void end_step(StepReport& report) const;

  // ---- Time -------------------------------------------------------------------------------------

  // The compute stream (and with it the host) waits until `time`.
  void wait_until(TimeNs time, bool exposed = true) {
    if (time > now_) {
      if (exposed) exposed_ns_ += time - now_;
      now_ = time;
    }
  }
  // ... until every stream is done.
  void sync_all() { wait_until(std::max({allgather_, reduce_, h2d_, d2h_, host_})); }

  void run_compute(trace::OpKind kind, TimeNs duration, std::int64_t flops, std::int32_t name) {
    record(trace::StreamKind::kCompute, kind, now_, now_ + duration, name, 0, flops);
    now_ += duration;
    compute_ns_ += duration;
  }

  // A collective over the data-parallel group on `stream` (shown as `kind`) that may start at
  // `ready`; returns its end. On the compute stream its whole time is exposed. One that moves
  // anything takes collective_host_ns of the host first.
  TimeNs collective(TimeNs& stream, trace::StreamKind kind, const CollectiveOp& c, TimeNs ready,
                    std::int64_t bytes, std::int32_t name) {
    const CollectiveCost cost = data_cost(c.kind, bytes);
    if (cost.time > 0) now_ += collective_host_ns_;
    const TimeNs start = std::max(stream, ready);
    const TimeNs end = start + cost.time;
    count(c.transfer, bytes, cost.time);
    if (&stream == &now_) {
      kind = trace::StreamKind::kCompute;
      exposed_ns_ += end - now_;
    }
    record(kind, c.op, start, end, name, bytes, 0, data_group_);
    stream = end;
    return end;
  }

  // A collective of known `time` over another group that blocks the compute stream: all of its
  // time is exposed.
  void blocking_collective(const CollectiveOp& c, TimeNs time, std::int64_t bytes,
                           std::int32_t name, std::int32_t group) {
    count(c.transfer, bytes, time);
    record(trace::StreamKind::kCompute, c.op, now_, now_ + time, name, bytes, 0, group);
    exposed_ns_ += time;
    now_ += time;
  }

  // A copy of `duration` on the host-to-device or device-to-host stream (`stream_kind`) that may
  // start at `ready`; returns its end.
  TimeNs transfer(trace::StreamKind stream_kind, trace::OpKind op, TransferKind kind, TimeNs ready,
                  TimeNs duration, std::int64_t bytes, std::int32_t name) {
    TimeNs& stream = stream_kind == trace::StreamKind::kHostToDevice ? h2d_ : d2h_;
    return transfer_on(stream, stream_kind, op, kind, ready, duration, bytes, name);
  }

  // The same on `stream`, shown as `stream_kind` unless it is the compute stream (exposed then).
  TimeNs transfer_on(TimeNs& stream, trace::StreamKind stream_kind, trace::OpKind op,
                     TransferKind kind, TimeNs ready, TimeNs duration, std::int64_t bytes,
                     std::int32_t name) {
    const TimeNs start = std::max(stream, ready);
    const TimeNs end = start + duration;
    count(kind, bytes, duration);
    if (&stream == &now_) {
      stream_kind = trace::StreamKind::kCompute;
      exposed_ns_ += end - now_;
    }
    record(stream_kind, op, start, end, name, bytes, 0);
    stream = end;
    return end;
  }

  // Copies over this rank's own links.
  TimeNs host_copy_time(std::int64_t bytes) const { return network_->host_copy(gpu_, bytes); }
  TimeNs nvme_copy_time(std::int64_t bytes) const { return network_->nvme_copy(gpu_, bytes); }

  trace::Trace* trace_;
  std::int32_t trace_rank_;
  std::int32_t data_group_ = trace::kNone;  // the trace's group for data-parallel collectives

  TimeNs now_ = 0;  // the host and the compute stream
  TimeNs allgather_ = 0, reduce_ = 0, h2d_ = 0, d2h_ = 0;
  TimeNs host_ = 0;  // the host's own work (an offloaded optimizer's step)

  std::int32_t step_ = 0;
  std::int32_t micro_batch_ = -1;  // none outside forward and backward
  CoordinatorFigures figures_;
  TimeNs compute_ns_ = 0;
  TimeNs exposed_ns_ = 0;

 private:
  void count(TransferKind kind, std::int64_t bytes, TimeNs busy) {
    TransferTotals& t = transfers_[static_cast<std::size_t>(kind)];
    ++t.count;
    t.bytes += bytes;
    t.busy_ns += busy;
  }

  // The data-parallel group's cost of `bytes`, memoised: a step repeats a few sizes many times.
  CollectiveCost data_cost(CollectiveKind kind, std::int64_t bytes) {
    // CollectiveModel rejects sizes outside [0, 2^60], which are not kept (nor fit the key).
    if (bytes < 0 || bytes > (std::int64_t{1} << 60))
      return network_->cost(kind, data_shape_, bytes);
    const std::int64_t key = bytes * 8 + static_cast<std::int64_t>(kind);
    auto it = data_costs_.find(key);
    if (it == data_costs_.end())
      it = data_costs_.emplace(key, network_->cost(kind, data_shape_, bytes)).first;
    return it->second;
  }

  const CollectiveModel* network_;
  TimeNs collective_host_ns_;
  GroupShape data_shape_;
  std::unordered_map<std::int64_t, CollectiveCost> data_costs_;  // by bytes * 8 + kind
  std::int64_t gpu_;
  std::array<TransferTotals, kTransferKindCount> transfers_{};
};

}  // namespace zp::sim
