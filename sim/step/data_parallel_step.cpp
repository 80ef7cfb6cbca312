#include "sim/step/data_parallel_step.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <utility>
#include <vector>

#include "core/checkpoint/checkpointing.h"
#include "core/pipe/layers.h"
#include "core/pipe/topology.h"
#include "sim/hardware/compute_model.h"
#include "sim/network/collectives.h"
#include "sim/step/checkpoint_segments.h"
#include "sim/step/model_states.h"
#include "sim/step/optimizer_wrappers.h"
#include "sim/step/rank_timeline.h"

namespace zp::sim {
namespace {

using trace::MemoryCategory;
using trace::OpKind;
using trace::StreamKind;

// The global gradient norm, fp32, and fp16's overflow flag (a ByteTensor), all-reduced over the
// data-parallel group before a partitioned step.
constexpr std::int64_t kNormBytes = 4;
constexpr std::int64_t kOverflowBytes = 1;

SourceLocation where(const RunSpec& run, const std::string& key) {
  return {run.deepspeed_file.empty() ? run.file.string() : run.deepspeed_file.string(), 0, 0, key};
}

// ---- The plan, shared by every rank ------------------------------------------------------------

struct CallCost {
  TimeNs forward_ns = 0;
  TimeNs backward_ns = 0;
  std::int64_t forward_flops = 0;
  std::int64_t backward_flops = 0;
  std::int64_t activation_bytes = 0;
  std::int64_t workspace_bytes = 0;           // held only while its forward runs
  std::int64_t backward_workspace_bytes = 0;  // held only while its backward runs
  std::int64_t backward_held_bytes = 0;       // held until the backward inside it is done
  std::int32_t parent = kNoCall;
  std::int32_t segment = -1;  // the checkpointed segment it runs in
  std::int32_t name = trace::kNone;
};

// A checkpointed segment: calls [first, end) and what checkpoint() keeps of its input.
using SegmentCost = CheckpointSegment;

struct Plan {
  std::vector<CallCost> calls;
  std::vector<SegmentCost> segments;
  std::int64_t contiguous_checkpoint_bytes = 0;
  bool contiguous_checkpoint_on_host = false;
  // Per call: the gradients whose hooks fire at its backward.
  std::vector<std::vector<ParamId>> ready_at;
  // Per call: the calls whose held gradient backward makes before it (their last call inside).
  std::vector<std::vector<std::int32_t>> held_from;
  // Trainable parameters in the flat buffer's order (after round_robin_gradients), their offsets
  // in it (-1: frozen or unused by the optimizer), and gradient bytes.
  std::vector<ParamId> order;
  std::vector<std::int64_t> offset;
  std::vector<std::int64_t> numel;
  std::int64_t trainable_numel = 0;
  std::int64_t trainable_bytes = 0;
  std::int64_t frozen_bytes = 0;
  std::int64_t padded = 0;     // the flat buffer (partitioning wrappers)
  std::int64_t partition = 0;  // padded / dp
  std::int64_t largest_param = 0;
  std::int64_t dp = 1;
  std::int64_t micro_batches = 1;
  int stage = 0;
  Precision precision;
  OptimizerShape optimizer;
  std::int64_t elem = 4;     // bytes per element of the model's (bit16) tensors
  bool cpu_offload = false;  // DeepSpeedZeroOptimizer.cpu_offload
  bool hooks = false;        // gradient hooks reduce during backward
  double model_flops_per_micro_batch = 0;
};

// training.checkpoint_interval's segments, and which calls each spans.
void plan_checkpoints(const RunSpec& run, Plan& plan) {
  const CheckpointSegments cs = checkpoint_segments(run);
  plan.contiguous_checkpoint_bytes = cs.contiguous_buffer_bytes;
  plan.contiguous_checkpoint_on_host = cs.contiguous_buffer_on_host;
  for (const CheckpointSegment& s : cs.segments) {
    const auto index = static_cast<std::int32_t>(plan.segments.size());
    for (std::int32_t k = s.first; k < s.end; ++k)
      plan.calls[static_cast<std::size_t>(k)].segment = index;
    plan.segments.push_back(s);
  }
}

void check_run(const RunSpec& run, const Precision& precision) {
  const ZeroConfig& z = run.deepspeed.zero;
  if (run.parallel.tensor > 1) {
    throw UserError(ErrorKind::kUnsupported, {run.file.string(), 0, 0, "parallel.tensor"},
                    "tensor parallelism is not simulated yet");
  }
  if (z.stage > 0 && z.allgather_bucket_size % kNcclStartAlignmentFactor != 0) {
    throw UserError(ErrorKind::kValue, where(run, "zero_optimization.allgather_bucket_size"),
                    "allgather_bucket_size is " + std::to_string(z.allgather_bucket_size) +
                        ": DeepSpeedZeroOptimizer asserts it is a multiple of "
                        "nccl_start_alignment_factor (2)");
  }
  if (precision.wrapper == Wrapper::kZero && z.stage == 1 && precision.accum != precision.model) {
    throw UserError(ErrorKind::kUnsupported, where(run, "data_types.grad_accum_dtype"),
                    "ZeRO stage 1 accumulating " + std::string(to_string(precision.model)) +
                        " gradients in " + std::string(to_string(precision.accum)) +
                        " (DeepSpeedZeroOptimizer's grad_accum attribute) is not simulated");
  }
  if (precision.wrapper == Wrapper::kZero && z.reduce_scatter &&
      !z.use_multi_rank_bucket_allreduce) {
    throw UserError(ErrorKind::kUnsupported,
                    where(run, "zero_optimization.use_multi_rank_bucket_allreduce"),
                    "use_multi_rank_bucket_allreduce false reduces each slice to its rank with "
                    "dist.reduce, which the network model does not cost; leave it true (the "
                    "default) or set reduce_scatter false");
  }
}

Plan make_plan(const RunSpec& run, const ComputeModel& compute, trace::Trace* trace) {
  const ModuleTree& tree = run.tree;
  const auto& calls = tree.calls();
  Plan plan;
  plan.stage = run.deepspeed.zero.stage;
  plan.dp = run.parallel.data;
  plan.micro_batches = std::max<std::int64_t>(run.deepspeed.batch.gradient_accumulation_steps, 1);
  plan.precision = choose_precision(run, /*pipeline=*/false);
  check_run(run, plan.precision);
  plan.optimizer = optimizer_shape(run.deepspeed);
  plan.elem = dtype_size(plan.precision.model);
  const ZeroConfig& z = run.deepspeed.zero;
  const bool offload = z.offload_optimizer && z.offload_optimizer->device != OffloadDevice::kNone;
  plan.cpu_offload = plan.precision.wrapper == Wrapper::kZero && offload;
  plan.hooks = plan.precision.wrapper == Wrapper::kZero && (plan.stage >= 2 || z.overlap_comm);

  plan.calls.resize(calls.size());
  for (std::size_t c = 0; c < calls.size(); ++c) {
    const Module& m = tree.module(calls[c].module);
    CallCost& w = plan.calls[c];
    w.forward_flops = m.cost.forward_flops;
    w.backward_flops = m.cost.backward_or_default();
    w.activation_bytes = m.cost.activation_bytes;
    w.workspace_bytes = m.cost.workspace_bytes;
    w.backward_workspace_bytes = m.cost.backward_workspace_bytes;
    w.backward_held_bytes = m.cost.backward_held_bytes;
    w.parent = calls[c].parent_call;
    const ModuleTimes times = compute.module_call(tree, calls[c].module);
    w.forward_ns = times.forward;
    w.backward_ns = times.backward;
    if (trace) {
      w.name = trace->intern(calls[c].module == 0 ? std::string("model")
                                                  : tree.qualified_name(calls[c].module));
    }
    plan.model_flops_per_micro_batch +=
        static_cast<double>(w.forward_flops) + static_cast<double>(w.backward_flops);
  }
  plan_checkpoints(run, plan);
  // Backward reaches a call's subtree at its last call (calls are in pre-order).
  plan.held_from.resize(calls.size());
  for (std::size_t c = 0; c < calls.size(); ++c) {
    if (plan.calls[c].backward_held_bytes <= 0) continue;
    std::size_t last = c;
    for (std::size_t k = c + 1; k < calls.size(); ++k) {
      std::int32_t p = calls[k].parent_call;
      while (p != kNoCall && p > static_cast<std::int32_t>(c))
        p = calls[static_cast<std::size_t>(p)].parent_call;
      if (p != static_cast<std::int32_t>(c)) break;
      last = k;
    }
    plan.held_from[last].push_back(static_cast<std::int32_t>(c));
  }

  // module.parameters(): the optimizer's parameter group, and the flat buffer's order.
  const std::size_t params = tree.parameters().size();
  std::vector<bool> seen(params, false);
  std::vector<ParamId> all;
  parameters_in_order(tree, 0, all, seen);
  std::vector<ParamId> trainable;
  for (ParamId p : all) {
    const Parameter& param = tree.parameter(p);
    if (param.requires_grad) {
      trainable.push_back(p);
    } else {
      plan.frozen_bytes += param.bytes();
    }
  }
  if (plan.precision.wrapper == Wrapper::kZero && z.round_robin_gradients && plan.dp > 1) {
    // _round_robin_reorder: parameter i goes to list i % dp; the lists are concatenated.
    std::vector<ParamId> reordered;
    for (std::int64_t j = 0; j < plan.dp; ++j) {
      for (std::size_t i = static_cast<std::size_t>(j); i < trainable.size();
           i += static_cast<std::size_t>(plan.dp))
        reordered.push_back(trainable[i]);
    }
    trainable = std::move(reordered);
  }
  plan.order = trainable;
  plan.offset.assign(params, -1);
  plan.numel.assign(params, 0);
  for (ParamId p : plan.order) {
    const Parameter& param = tree.parameter(p);
    plan.offset[static_cast<std::size_t>(p)] = plan.trainable_numel;
    plan.numel[static_cast<std::size_t>(p)] = param.numel();
    plan.trainable_numel += param.numel();
    plan.trainable_bytes += param.bytes();
    plan.largest_param = std::max(plan.largest_param, param.numel());
  }
  plan.padded = aligned_flat_numel(plan.trainable_numel, plan.dp);
  plan.partition = plan.padded / plan.dp;

  // A gradient is complete when the backward of the first call using it has run (autograd sums
  // every use before AccumulateGrad runs); hooks of one call fire in reverse registration order.
  std::vector<std::int32_t> first_call(params, kNoCall);
  plan.ready_at.resize(calls.size());
  for (std::size_t c = 0; c < calls.size(); ++c) {
    const Module& m = tree.module(calls[c].module);
    for (auto it = m.params.rbegin(); it != m.params.rend(); ++it) {
      const auto p = static_cast<std::size_t>(it->param);
      if (first_call[p] != kNoCall || plan.offset[p] < 0) continue;
      first_call[p] = static_cast<std::int32_t>(c);
      plan.ready_at[c].push_back(it->param);
    }
  }
  return plan;
}

// get_partition_info: a parameter is in rank `dp_index`'s partition when it starts inside it or
// straddles its start. Marks them in `in`; returns their elements (grads_in_partition's size).
std::int64_t partition_members(const Plan& plan, std::int64_t dp_index, std::vector<bool>& in) {
  const std::int64_t start = plan.partition * dp_index;
  const std::int64_t end = start + plan.partition;
  std::int64_t numel = 0;
  for (ParamId p : plan.order) {
    const std::int64_t o = plan.offset[static_cast<std::size_t>(p)];
    const std::int64_t n = plan.numel[static_cast<std::size_t>(p)];
    if ((start <= o && o < end) || (o < start && start < o + n)) {
      in[static_cast<std::size_t>(p)] = true;
      numel += n;
    }
  }
  return numel;
}

DataParallelModelStates model_states(const Plan& plan, std::int64_t partition_grads_numel) {
  DataParallelModelStates m;
  const OptimizerShape& o = plan.optimizer;
  const std::int64_t accum = dtype_size(plan.precision.accum);
  switch (plan.precision.wrapper) {
    case Wrapper::kNone:
      m.params = plan.trainable_bytes + plan.frozen_bytes;
      m.gradients = plan.trainable_bytes;
      m.optimizer = plan.trainable_numel * o.state_bytes;
      break;
    case Wrapper::kFp16:
      m.params = plan.trainable_bytes + plan.frozen_bytes;
      m.gradients = plan.trainable_numel * 4;
      m.master = plan.trainable_numel * o.master_bytes;
      m.optimizer = plan.trainable_numel * o.state_bytes;
      break;
    case Wrapper::kBf16:
      m.params = plan.padded * plan.elem + plan.frozen_bytes;
      m.gradients = plan.padded * accum + plan.trainable_numel * plan.elem;
      m.master = plan.partition * o.master_bytes;
      m.optimizer = plan.partition * o.state_bytes;
      break;
    case Wrapper::kZero:
      m.params = plan.padded * plan.elem + plan.frozen_bytes;
      if (plan.cpu_offload) {
        m.host = plan.partition * (o.master_bytes + o.state_bytes + 4) +
                 (plan.micro_batches > 1 ? partition_grads_numel * plan.elem : 0);
      } else {
        m.gradients = partition_grads_numel * plan.elem + plan.partition * 4;
        m.master = plan.partition * o.master_bytes;
        m.optimizer = plan.partition * o.state_bytes;
      }
      break;
  }
  return m;
}

// ---- One simulated rank ------------------------------------------------------------------------

class DataParallelRank final : public RankTimeline {
 public:
  struct Setup {
    const RunSpec* run = nullptr;
    const Plan* plan = nullptr;
    const ComputeModel* compute = nullptr;
    const CollectiveModel* network = nullptr;
    GroupShape dp_shape;
    std::int64_t dp_index = 0;  // this rank's partition
    std::int64_t gpu = 0;       // the global rank whose links are costed
  };

  DataParallelRank(const Setup& setup, trace::Trace* trace, std::int32_t trace_rank,
                   MemoryAccountant::Options memory)
      : RankTimeline(trace, trace_rank, *setup.network, setup.dp_shape, setup.plan->dp, setup.gpu,
                     setup.run->cluster.collective_host_ns),
        s_(setup),
        p_(*setup.plan),
        z_(setup.run->deepspeed.zero),
        memory_(memory, trace, trace_rank),
        grad_block_(setup.run->tree.parameters().size(), -1),
        in_partition_(setup.run->tree.parameters().size(), false),
        act_block_(p_.calls.size(), -1),
        held_(p_.calls.size(), -1),
        held_block_(p_.segments.size(), -1),
        extra_block_(p_.segments.size(), -1),
        recomputed_(p_.segments.size(), false),
        had_grad_(setup.run->tree.parameters().size(), false) {
    partition_grads_numel_ = partition_members(p_, s_.dp_index, in_partition_);
    if (trace) {
      names_.parameters = label("parameters");
      names_.master = label("master weights");
      names_.optimizer = label("optimizer states");
      names_.fp32_flat_gradients = label("fp32 gradients (flat)");
      names_.offload_buffer = label("offload gradient buffer");
      names_.contiguous_checkpoints = label("contiguous checkpoint buffers");
      names_.checkpoint_input = label("checkpoint input");
      names_.ipg[0] = label("ipg buffer 0");
      names_.ipg[1] = label("ipg buffer 1");
      names_.gradient_partition = label("gradient partition");
      names_.flat_gradient_partition = label("flat gradient partition");
      names_.fp32_gradient_partition = label("fp32 gradient partition");
      names_.fp32_gradients = label("fp32 gradients");
      names_.fp32_partition = label("fp32 partition");
    }
  }

  MemoryAccountant& memory() { return memory_; }

  // What exists before the first step: the model states and the buffers kept between steps.
  void begin() {
    memory_.set_running(kRunningNothing);
    const DataParallelModelStates m = model_states(p_, partition_grads_numel_);
    hold(MemoryCategory::kParamPartitions, m.params, names_.parameters);
    hold(MemoryCategory::kMasterWeights, m.master, names_.master);
    hold(MemoryCategory::kOptimizerStates, m.optimizer, names_.optimizer);
    if (m.host > 0) memory_.add_host(MemoryCategory::kHostOptimizer, m.host, 0);
    if (p_.precision.wrapper == Wrapper::kBf16) {
      // fp32_groups_gradients_flat: the whole flat buffer in the accumulation dtype, for good.
      hold(MemoryCategory::kGradBuckets, p_.padded * dtype_size(p_.precision.accum),
           names_.fp32_flat_gradients);
    }
    if (p_.cpu_offload) {
      // temp_grad_buffer_for_gpu_offload: the largest parameter in 16 bits, for good.
      hold(MemoryCategory::kCommBuffers, p_.largest_param * p_.elem, names_.offload_buffer);
    }
    if (p_.contiguous_checkpoint_bytes > 0) {
      if (p_.contiguous_checkpoint_on_host) {
        memory_.add_host(MemoryCategory::kHostActivations, p_.contiguous_checkpoint_bytes, 0);
      } else {
        hold(MemoryCategory::kActivations, p_.contiguous_checkpoint_bytes,
             names_.contiguous_checkpoints);
      }
    }
  }

  StepReport run_step(std::int64_t step) {
    StepReport report;
    report.step = step;
    begin_step(report);
    memory_.set_step(step_);
    memory_.reset_window(now_);
    for (std::int64_t mb = 0; mb < p_.micro_batches; ++mb) {
      micro_batch_ = static_cast<std::int32_t>(mb);
      const bool boundary = mb + 1 == p_.micro_batches;
      forward();
      backward(boundary);
      allreduce_gradients(boundary);
    }
    micro_batch_ = -1;
    optimizer_step();
    sync_all();
    end_step(report);
    report.peak = memory_.window_peak();
    return report;
  }

 private:
  // Every block is named in the trace as the ZeRO-3 step names its own: by parameter, module,
  // bucket, or what DeepSpeed holds it for.
  void hold(MemoryCategory c, std::int64_t bytes, std::int32_t name) {
    if (bytes > 0) memory_.allocate(c, bytes, now_, AllocStream::kCompute, name);
  }
  MemoryAccountant::Block alloc(MemoryCategory c, std::int64_t bytes, std::int32_t name) {
    return bytes > 0 ? memory_.allocate(c, bytes, now_, AllocStream::kCompute, name) : -1;
  }
  std::int32_t param_label(ParamId p) { return label(s_.run->tree.parameter(p).name); }
  void release(MemoryAccountant::Block& b) {
    if (b >= 0) memory_.free(b, now_);
    b = -1;
  }
  std::int32_t calls() const { return static_cast<std::int32_t>(p_.calls.size()); }

  // Work on the compute stream; a call that costs nothing leaves no op in the trace.
  void run_compute_if_any(OpKind kind, TimeNs duration, std::int64_t flops, std::int32_t name) {
    if (duration <= 0 && flops <= 0) return;
    run_compute(kind, duration, flops, name);
  }

  // A copy kernel of `bytes` on the compute stream, or on the reduction stream with overlap_comm.
  void copy_on(TimeNs& stream, std::int64_t bytes) {
    if (bytes <= 0) return;
    const TimeNs d = s_.compute->copy(bytes);
    if (&stream == &now_) {
      now_ += d;
      compute_ns_ += d;
    } else {
      stream = std::max(stream, now_) + d;
    }
  }

  // A collective over the data-parallel group on `stream` (shown on the reduction stream) once
  // the host reaches it; returns its end. Nothing to do on a group of one or with no bytes.
  TimeNs issue_collective(TimeNs& stream, const CollectiveOp& c, std::int64_t bytes,
                          std::int32_t name) {
    if (p_.dp <= 1 || bytes <= 0) return std::max(stream, now_);
    return collective(stream, StreamKind::kReduceScatter, c, now_, bytes, name);
  }

  // A copy between the GPU and the host, after `ready` and once the host reaches it.
  TimeNs host_transfer(bool to_host, TimeNs ready, std::int64_t bytes, std::int32_t name) {
    if (bytes <= 0) return ready;
    return transfer(to_host ? StreamKind::kDeviceToHost : StreamKind::kHostToDevice,
                    to_host ? OpKind::kCopyToHost : OpKind::kCopyToDevice,
                    to_host ? TransferKind::kDeviceToHost : TransferKind::kHostToDevice,
                    std::max(ready, now_), host_copy_time(bytes), bytes, name);
  }

  // A collective holds the compute stream without overlap_comm, and on ranks whose collectives
  // cannot progress while they compute (ClusterSpec::comm_overlaps_compute).
  TimeNs& reduction_stream() {
    return z_.overlap_comm && s_.run->cluster.comm_overlaps_compute ? reduce_ : now_;
  }

  // ---- Forward and backward ------------------------------------------------------------------

  // The outermost call's own work (the loss) comes after the calls inside it in forward, and
  // before them in backward.
  bool outermost_last() const { return calls() > 1 && p_.calls.front().parent == kNoCall; }

  void forward() {
    std::fill(recomputed_.begin(), recomputed_.end(), false);
    for (std::int32_t c = outermost_last() ? 1 : 0; c < calls(); ++c)
      forward_call(c);
    if (outermost_last()) forward_call(0);
  }

  void forward_call(std::int32_t c) {
    const CallCost& w = p_.calls[static_cast<std::size_t>(c)];
    memory_.set_running(c);
    if (w.segment >= 0) {
      const SegmentCost& seg = p_.segments[static_cast<std::size_t>(w.segment)];
      if (seg.first == c) keep_segment_input(w.segment, seg);
    } else {
      act_block_[static_cast<std::size_t>(c)] =
          alloc(MemoryCategory::kActivations, w.activation_bytes, w.name);
    }
    MemoryAccountant::Block workspace =
        alloc(MemoryCategory::kActivations, w.workspace_bytes, w.name);
    run_compute_if_any(OpKind::kForward, w.forward_ns, w.forward_flops, w.name);
    release(workspace);
  }

  // CheckpointFunction.forward keeps the segment's input (partitioned, on the host, or whole).
  void keep_segment_input(std::int32_t index, const SegmentCost& seg) {
    held_block_[static_cast<std::size_t>(index)] =
        alloc(MemoryCategory::kActivations, seg.held_bytes, names_.checkpoint_input);
    if (seg.host_bytes > 0)
      memory_.add_host(MemoryCategory::kHostActivations, seg.host_bytes, now_);
    host_transfer(true, now_, seg.to_host_bytes, names_.checkpoint_input);
  }

  // CheckpointFunction.backward: the input comes back and the segment's forward runs again.
  void recompute(std::int32_t index) {
    const SegmentCost& seg = p_.segments[static_cast<std::size_t>(index)];
    recomputed_[static_cast<std::size_t>(index)] = true;
    extra_block_[static_cast<std::size_t>(index)] =
        alloc(MemoryCategory::kRecompute, seg.extra_recompute_bytes, names_.checkpoint_input);
    if (seg.from_host_bytes > 0)
      wait_until(host_transfer(false, now_, seg.from_host_bytes, names_.checkpoint_input));
    for (std::int32_t c = seg.first; c < seg.end; ++c) {
      const CallCost& w = p_.calls[static_cast<std::size_t>(c)];
      memory_.set_running(2 * calls() + c);
      act_block_[static_cast<std::size_t>(c)] =
          alloc(MemoryCategory::kRecompute, w.activation_bytes, w.name);
      MemoryAccountant::Block workspace =
          alloc(MemoryCategory::kRecompute, w.workspace_bytes, w.name);
      run_compute_if_any(OpKind::kRecompute, w.forward_ns, w.forward_flops, w.name);
      release(workspace);
    }
  }

  void end_segment(std::int32_t index) {
    const SegmentCost& seg = p_.segments[static_cast<std::size_t>(index)];
    release(held_block_[static_cast<std::size_t>(index)]);
    release(extra_block_[static_cast<std::size_t>(index)]);
    if (seg.host_bytes > 0)
      memory_.add_host(MemoryCategory::kHostActivations, -seg.host_bytes, now_);
  }

  void backward(bool boundary) {
    const Wrapper w = p_.precision.wrapper;
    if (w == Wrapper::kBf16) {
      // BF16_Optimizer.backward clears the 16-bit gradients first.
      for (MemoryAccountant::Block& b : grad_block_)
        release(b);
    }
    // What backward allocates first belongs to the first call it runs.
    if (calls() > 0) memory_.set_running(calls() + (outermost_last() ? 0 : calls() - 1));
    if (w == Wrapper::kZero && z_.contiguous_gradients) {
      // DeepSpeedZeroOptimizer.backward replaces the ipg buffers: two with overlap_comm.
      for (MemoryAccountant::Block& b : ipg_)
        release(b);
      ipg_.clear();
      const int count = z_.overlap_comm ? 2 : 1;
      for (int i = 0; i < count; ++i) {
        ipg_.push_back(
            alloc(MemoryCategory::kGradBuckets, z_.reduce_bucket_size * p_.elem, names_.ipg[i]));
      }
    }
    if (outermost_last()) backward_call(0, boundary);
    for (std::int32_t c = calls() - 1; c >= (outermost_last() ? 1 : 0); --c)
      backward_call(c, boundary);
  }

  void backward_call(std::int32_t c, bool boundary) {
    const CallCost& cost = p_.calls[static_cast<std::size_t>(c)];
    if (cost.segment >= 0 && !recomputed_[static_cast<std::size_t>(cost.segment)])
      recompute(cost.segment);
    memory_.set_running(calls() + c);
    // A call that holds its output's gradient through the backward inside it (a model body) holds
    // it from the first of those; its first call takes it over as its own output's.
    for (std::int32_t h : p_.held_from[static_cast<std::size_t>(c)]) {
      const CallCost& holder = p_.calls[static_cast<std::size_t>(h)];
      held_[static_cast<std::size_t>(h)] =
          alloc(MemoryCategory::kActivations, holder.backward_held_bytes, holder.name);
    }
    if (cost.parent != kNoCall && c == cost.parent + 1)
      release(held_[static_cast<std::size_t>(cost.parent)]);
    MemoryAccountant::Block flowing =
        alloc(MemoryCategory::kActivations, cost.backward_workspace_bytes, cost.name);
    run_compute_if_any(OpKind::kBackward, cost.backward_ns, cost.backward_flops, cost.name);
    release(flowing);
    release(act_block_[static_cast<std::size_t>(c)]);
    if (cost.segment >= 0 && p_.segments[static_cast<std::size_t>(cost.segment)].first == c)
      end_segment(cost.segment);
    for (ParamId p : p_.ready_at[static_cast<std::size_t>(c)])
      grad_ready(p, boundary);
  }

  // AccumulateGrad: a new gradient unless one is held (autograd then adds in place); the hook.
  void grad_ready(ParamId p, bool boundary) {
    MemoryAccountant::Block& b = grad_block_[static_cast<std::size_t>(p)];
    if (b < 0) b = alloc(MemoryCategory::kGradBuckets, grad_bytes(p), param_label(p));
    had_grad_[static_cast<std::size_t>(p)] = true;
    if (p_.hooks && (p_.stage >= 2 || boundary)) add_to_bucket(p);
  }

  std::int64_t grad_bytes(ParamId p) const {
    return p_.numel[static_cast<std::size_t>(p)] * p_.elem;
  }

  // engine.allreduce_gradients after each backward.
  void allreduce_gradients(bool boundary) {
    const Wrapper w = p_.precision.wrapper;
    if (w == Wrapper::kBf16) {
      // update_hp_grads: the 16-bit gradients are added into the fp32 accumulation buffer.
      const std::int64_t accum = dtype_size(p_.precision.accum);
      run_compute_if_any(OpKind::kBackward,
                         s_.compute->time(0, p_.trainable_numel * (p_.elem + 2 * accum)), 0,
                         label("update_hp_grads"));
    }
    if (w == Wrapper::kZero) {
      if (p_.stage >= 2) {
        epilogue();
      } else if (boundary) {
        memory_.set_running(kRunningReduceGradients);
        if (!z_.overlap_comm) {
          // reduce_gradients: every gradient, in the flat buffer's order.
          for (ParamId p : p_.order) {
            if (had_grad_[static_cast<std::size_t>(p)]) add_to_bucket(p);
          }
        }
        epilogue();
      }
      return;
    }
    if (!boundary) return;
    memory_.set_running(kRunningReduceGradients);
    // buffered_allreduce_fallback on the compute stream.
    std::vector<Chunk> chunks;
    std::int64_t elem = p_.elem;
    if (w == Wrapper::kBf16) {
      elem = dtype_size(p_.precision.accum);
      if (p_.trainable_numel > 0) chunks.push_back({p_.padded, false});
    } else {
      std::vector<std::int64_t> numels;
      for (ParamId p : p_.order)
        numels.push_back(p_.numel[static_cast<std::size_t>(p)]);
      chunks = fallback_chunks(numels, kMemoryOptAllreduceSize);
    }
    int index = 0;
    for (const Chunk& c : chunks) {
      const std::int64_t bytes = c.numel * elem;
      if (p_.dp > 1) {
        const std::int32_t name = numbered_label("bucket ", index);
        MemoryAccountant::Block flat =
            c.copied ? alloc(MemoryCategory::kCommBuffers, bytes, name) : -1;
        issue_collective(now_, kAllReduceOp, bytes, name);
        ++figures_.reduce_calls;
        figures_.reduce_elements += c.numel;
        release(flat);
      }
      ++index;
    }
  }

  // ---- DeepSpeedZeroOptimizer's reducer ------------------------------------------------------

  // reduce_independent_p_g_buckets_and_remove_grads.
  void add_to_bucket(ParamId p) {
    const std::int64_t n = p_.numel[static_cast<std::size_t>(p)];
    if (bucket_elements_ + n > z_.reduce_bucket_size) {
      reduce_ipg_grads();
    }
    // The gradient is copied into the contiguous buffer and becomes a view of it; a larger one is
    // reduced alone from where autograd put it.
    if (z_.contiguous_gradients && n <= z_.reduce_bucket_size) {
      copy_on(now_, grad_bytes(p));
      release(grad_block_[static_cast<std::size_t>(p)]);
    }
    bucket_elements_ += n;
    bucket_.push_back(p);
  }

  // reduce_ipg_grads: average_tensor (or buffered_reduce_fallback without contiguous_gradients),
  // then each gradient goes where the stage keeps it.
  void reduce_ipg_grads() {
    TimeNs& stream = reduction_stream();
    const std::int32_t name = numbered_label("bucket ", bucket_index_++);
    std::vector<Chunk> chunks;
    if (z_.contiguous_gradients) {
      // average_tensor: with overlap_comm the two streams wait for each other first.
      if (z_.overlap_comm) {
        wait_until(reduce_);
        reduce_ = std::max(reduce_, now_);
      }
      std::vector<FlatRange> ranges;
      for (ParamId p : bucket_)
        ranges.push_back(
            {p_.offset[static_cast<std::size_t>(p)], p_.numel[static_cast<std::size_t>(p)]});
      chunks = ipg_bucket_chunks(ranges, p_.partition, z_.reduce_bucket_size, z_.reduce_scatter);
    } else if (!bucket_.empty()) {
      // allreduce_no_retain over the bucket: one flattened all-reduce; with overlap_comm the host
      // synchronises the device first, and the other ranks' gradients held since the previous
      // reduction go.
      if (z_.overlap_comm) {
        wait_until(std::max({reduce_, h2d_, d2h_}));
        clear_previous_reduced();
      }
      chunks.push_back({bucket_elements_, bucket_.size() > 1});
    }
    for (const Chunk& c : chunks) {
      const std::int64_t bytes = c.numel * p_.elem;
      MemoryAccountant::Block flat =
          c.copied ? alloc(MemoryCategory::kCommBuffers, bytes, name) : -1;
      if (c.copied) copy_on(stream, bytes);
      issue_collective(stream, kAllReduceOp, bytes, name);
      if (c.copied) copy_on(stream, bytes);  // unflattened back
      release(flat);
      ++figures_.reduce_calls;
      figures_.reduce_elements += c.numel;
    }
    for (ParamId p : bucket_) {
      const auto i = static_cast<std::size_t>(p);
      if (p_.stage >= 2 && !in_partition_[i]) {
        if (z_.overlap_comm && !z_.contiguous_gradients) {
          previous_reduced_.push_back(p);
        } else {
          release(grad_block_[i]);
        }
      } else if (in_partition_[i] && z_.contiguous_gradients) {
        copy_grads_in_partition(p, stream);
      }
    }
    bucket_.clear();
    bucket_elements_ = 0;
  }

  void clear_previous_reduced() {
    for (ParamId p : previous_reduced_)
      release(grad_block_[static_cast<std::size_t>(p)]);
    previous_reduced_.clear();
  }

  // copy_grads_in_partition: into grads_in_partition (every parameter touching the partition,
  // whole), or to the host's fp32 partition with cpu_offload.
  void copy_grads_in_partition(ParamId p, TimeNs& stream) {
    const auto i = static_cast<std::size_t>(p);
    const std::int64_t n = p_.numel[i];
    if (p_.cpu_offload) {
      const std::int32_t name = label("gradients to host");
      if (p_.micro_batches > 1) {
        // async_accumulate_grad_in_cpu_via_gpu: the accumulated gradient comes up, is added to,
        // and goes back (the first micro-batch only copies out).
        const TimeNs up =
            micro_batch_ > 0 ? host_transfer(false, stream, n * p_.elem, name) : stream;
        host_transfer(true, up, n * p_.elem, name);
      }
      if (micro_batch_ + 1 == p_.micro_batches) {
        // async_inplace_copy_grad_to_fp32_buffer_from_gpu: this rank's slice, as fp32.
        const std::int64_t o = p_.offset[i];
        const std::int64_t lo = std::max(o, p_.partition * s_.dp_index);
        const std::int64_t hi = std::min(o + n, p_.partition * (s_.dp_index + 1));
        host_transfer(true, stream, std::max<std::int64_t>(hi - lo, 0) * 4, name);
      }
      release(grad_block_[i]);
      return;
    }
    if (grads_in_partition_ < 0)
      grads_in_partition_ = alloc(MemoryCategory::kGradPartitions, partition_grads_numel_ * p_.elem,
                                  names_.gradient_partition);
    copy_on(stream, n * p_.elem);
    release(grad_block_[i]);
  }

  // independent_gradient_partition_epilogue.
  void epilogue() {
    memory_.set_running(kRunningReduceGradients);
    reduce_ipg_grads();
    if (z_.overlap_comm) {
      wait_until(std::max({reduce_, h2d_, d2h_}));
      clear_previous_reduced();
    }
    if (!p_.cpu_offload) {
      // averaged_gradients: the first micro-batch's partition gradients are kept as they are;
      // later ones are added into them.
      std::vector<ParamId> partition_grads;
      for (ParamId p : p_.order) {
        if (in_partition_[static_cast<std::size_t>(p)] &&
            grad_block_[static_cast<std::size_t>(p)] >= 0)
          partition_grads.push_back(p);
      }
      if (averaged_.empty()) {
        if (grads_in_partition_ >= 0) averaged_.push_back(std::exchange(grads_in_partition_, -1));
        for (ParamId p : partition_grads)
          averaged_.push_back(std::exchange(grad_block_[static_cast<std::size_t>(p)], -1));
        if (averaged_.empty()) averaged_.push_back(-1);  // nothing produced yet: zeros at the step
      } else {
        run_compute_if_any(OpKind::kBackward, s_.compute->time(0, 3 * p_.partition * p_.elem), 0,
                           label("accumulate gradients"));
      }
    }
    // _release_ipg_buffers, then zero_grad(set_to_none=True).
    for (MemoryAccountant::Block& b : ipg_)
      release(b);
    ipg_.clear();
    release(grads_in_partition_);
    for (MemoryAccountant::Block& b : grad_block_)
      release(b);
  }

  // ---- The optimizer step --------------------------------------------------------------------

  void optimizer_step() {
    memory_.set_running(kRunningOptimizer);
    const std::int32_t name = label("optimizer step");
    const Wrapper w = p_.precision.wrapper;
    const OptimizerShape& o = p_.optimizer;
    const std::int64_t accum = dtype_size(p_.precision.accum);
    switch (w) {
      case Wrapper::kNone:
        // No master copy: the fp32 parameters are read and written as the master would be.
        run_compute_if_any(
            OpKind::kOptimizerStep,
            s_.compute->time(0, p_.trainable_numel * (4 + 2 * 4 + 2 * o.state_bytes)), 0, name);
        for (MemoryAccountant::Block& b : grad_block_)
          release(b);  // zero_grad
        break;
      case Wrapper::kFp16: {
        // FP16_Optimizer flattens the gradients into fp32 and drops the fp16 ones.
        MemoryAccountant::Block fp32 =
            alloc(MemoryCategory::kGradBuckets, p_.trainable_numel * 4, names_.fp32_gradients);
        for (MemoryAccountant::Block& b : grad_block_)
          release(b);
        run_compute_if_any(OpKind::kOptimizerStep,
                           s_.compute->time(0, p_.trainable_numel * o.step_bytes(4, p_.elem)), 0,
                           name);
        release(fp32);
        break;
      }
      case Wrapper::kBf16:
        run_compute_if_any(
            OpKind::kOptimizerStep,
            s_.compute->time(
                0, p_.partition * o.step_bytes(static_cast<int>(accum), static_cast<int>(p_.elem))),
            0, name);
        for (MemoryAccountant::Block& b : grad_block_)
          release(b);  // zero_grad clears the 16-bit gradients
        gather_parameters();
        break;
      case Wrapper::kZero:
        zero_step(name);
        break;
    }
    std::fill(had_grad_.begin(), had_grad_.end(), false);
  }

  void zero_step(std::int32_t name) {
    const OptimizerShape& o = p_.optimizer;
    if (p_.precision.model == DType::kFloat16)
      issue_collective(now_, kAllReduceOp, kOverflowBytes, label("overflow check"));
    issue_collective(now_, kAllReduceOp, kNormBytes, label("grad norm"));
    if (p_.cpu_offload) {
      // The CPU optimizer on the host's partition; the node's rate is shared by its GPUs.
      const RunSpec& run = *s_.run;
      const double rate = run.cluster.host_optimizer_rate /
                          static_cast<double>(std::max<std::int64_t>(run.cluster.gpus_per_node, 1));
      const TimeNs t = std::max({now_, d2h_});
      const TimeNs host =
          static_cast<TimeNs>(std::ceil(static_cast<double>(p_.partition) / rate * 1e9));
      record(StreamKind::kHost, OpKind::kOptimizerStep, t, t + host, name, 0, 0);
      host_ = t + host;
      wait_until(host_);
      // bit16_partitions[id].copy_(fp32_partition.to(device)): the fp32 partition comes up.
      MemoryAccountant::Block up =
          alloc(MemoryCategory::kCommBuffers, p_.partition * 4, names_.fp32_partition);
      wait_until(host_transfer(false, now_, p_.partition * 4, name));
      copy_on(now_, p_.partition * (4 + p_.elem) / 2);
      release(up);
    } else {
      // The partition's gradients flattened, then cast to fp32 (the cast is the same tensor for
      // an fp32 model); the 16-bit ones go with averaged_gradients.
      MemoryAccountant::Block flat = alloc(MemoryCategory::kGradPartitions, p_.partition * p_.elem,
                                           names_.flat_gradient_partition);
      copy_on(now_, p_.partition * p_.elem);
      MemoryAccountant::Block fp32 = -1;
      if (p_.elem != 4) {
        fp32 = alloc(MemoryCategory::kGradPartitions, p_.partition * 4,
                     names_.fp32_gradient_partition);
        copy_on(now_, p_.partition * (4 + p_.elem) / 2);
        release(flat);
      } else {
        fp32 = std::exchange(flat, -1);
      }
      for (MemoryAccountant::Block& b : averaged_)
        release(b);
      run_compute_if_any(
          OpKind::kOptimizerStep,
          s_.compute->time(0, p_.partition * o.step_bytes(4, static_cast<int>(p_.elem))), 0, name);
      release(fp32);
    }
    averaged_.clear();
    gather_parameters();
  }

  // all_gather_dp_groups with all_gather_into_tensor: the flat buffer, whole.
  void gather_parameters() {
    memory_.set_running(kRunningGatherParameters);
    issue_collective(now_, kAllGatherOp, p_.padded * p_.elem, label("gather parameters"));
  }

  const Setup s_;
  const Plan& p_;
  const ZeroConfig& z_;
  MemoryAccountant memory_;
  // The trace's names of the blocks that are neither a parameter's, a module's nor a bucket's.
  struct Names {
    std::int32_t parameters = trace::kNone, master = trace::kNone, optimizer = trace::kNone;
    std::int32_t fp32_flat_gradients = trace::kNone;  // BF16_Optimizer's fp32_groups_gradients_flat
    std::int32_t offload_buffer = trace::kNone;       // temp_grad_buffer_for_gpu_offload
    std::int32_t contiguous_checkpoints = trace::kNone;
    std::int32_t checkpoint_input = trace::kNone;
    std::int32_t ipg[2] = {trace::kNone, trace::kNone};
    std::int32_t gradient_partition = trace::kNone;  // grads_in_partition
    std::int32_t flat_gradient_partition = trace::kNone, fp32_gradient_partition = trace::kNone;
    std::int32_t fp32_gradients = trace::kNone;  // FP16_Optimizer's
    std::int32_t fp32_partition = trace::kNone;  // come up from the host after an offloaded step
  } names_;

  std::vector<MemoryAccountant::Block> grad_block_;
  std::vector<bool> in_partition_;
  std::int64_t partition_grads_numel_ = 0;
  std::vector<MemoryAccountant::Block> act_block_;
  std::vector<MemoryAccountant::Block> held_;  // by call: backward_held_bytes
  std::vector<MemoryAccountant::Block> held_block_;
  std::vector<MemoryAccountant::Block> extra_block_;
  std::vector<bool> recomputed_;
  std::vector<bool> had_grad_;  // produced a gradient since the last step

  std::vector<MemoryAccountant::Block> ipg_;
  std::vector<ParamId> bucket_;
  std::int64_t bucket_elements_ = 0;
  std::int64_t bucket_index_ = 0;
  std::vector<ParamId> previous_reduced_;
  MemoryAccountant::Block grads_in_partition_ = -1;
  std::vector<MemoryAccountant::Block> averaged_;
};

std::string running_label(const ModuleTree& tree, std::int32_t running) {
  if (running == kRunningOptimizer) return "optimizer step";
  if (running == kRunningReduceGradients) return "reducing gradients";
  if (running == kRunningGatherParameters) return "gathering the updated parameters";
  const auto total = static_cast<std::int32_t>(tree.calls().size());
  if (running < 0 || total == 0 || running >= 3 * total) return "setup";
  static const char* const kPhase[] = {"forward of ", "backward of ", "recompute of "};
  const ModuleId m = tree.calls()[static_cast<std::size_t>(running % total)].module;
  return kPhase[running / total] + (m == 0 ? std::string("model") : tree.qualified_name(m));
}

}  // namespace

DataParallelModelStates data_parallel_model_states(const RunSpec& run, std::int64_t dp_index) {
  const ComputeModel compute(run.cluster, run.training.dtype);
  const Plan plan = make_plan(run, compute, nullptr);
  std::vector<bool> in(run.tree.parameters().size(), false);
  return model_states(plan, partition_members(plan, dp_index, in));
}

DeepSpeedEstimate deepspeed_zero2_estimate(std::int64_t total_params, std::int64_t gpus_per_node,
                                           std::int64_t nodes, bool cpu_offload) {
  // The formula as DeepSpeed writes it, in doubles and truncated at the end as Python's int().
  const double total = static_cast<double>(total_params);
  const std::int64_t total_gpus = gpus_per_node * nodes;
  const double buffer_factor = 1.5;
  double gpu = 0, cpu = 0;
  if (cpu_offload) {
    gpu = 2 * total;
    cpu = total * static_cast<double>(std::max<std::int64_t>(4 * total_gpus, 16)) * buffer_factor;
  } else {
    gpu = 2 * total + static_cast<double>(static_cast<std::int64_t>(
                          18 * total / static_cast<double>(std::max<std::int64_t>(total_gpus, 1))));
    cpu = total * 4 * static_cast<double>(gpus_per_node) * buffer_factor;
  }
  DeepSpeedEstimate e;
  e.stage = 2;
  e.total_params = total_params;
  e.gpu_bytes = static_cast<std::int64_t>(gpu);
  e.cpu_bytes = static_cast<std::int64_t>(cpu);
  e.cpu_offload = cpu_offload;
  return e;
}

SimulationResult simulate_data_parallel(const RunSpec& run, const SimOptions& options,
                                        trace::Trace* trace) {
  ZP_CHECK(run.deepspeed.zero.stage < 3 && run.parallel.pipeline <= 1,
           "the data-parallel simulation is for ZeRO stages 0-2 without a pipeline");
  const ComputeModel compute(run.cluster, run.training.dtype);
  const CollectiveModel network(run.cluster);
  const Plan plan = make_plan(run, compute, trace);
  const pipe::PipelineGrid grid(pipe::pipe_model_data_parallel_topology(
      run.parallel.pipeline, run.parallel.tensor, run.parallel.data));

  SimulationResult result = result_for(run, options);

  std::vector<std::vector<std::int64_t>> classes;
  if (options.all_ranks) {
    for (std::int64_t r = 0; r < run.parallel.world(); ++r)
      classes.push_back({r});
  } else {
    // The ranks differ only in grads_in_partition, which holds every parameter touching the
    // rank's partition whole: the class is simulated as the rank holding the most (the first such).
    std::vector<std::int64_t> all(static_cast<std::size_t>(run.parallel.world()));
    std::int64_t worst = 0, most = -1;
    for (std::int64_t r = 0; r < run.parallel.world(); ++r) {
      all[static_cast<std::size_t>(r)] = r;
      std::vector<bool> in(run.tree.parameters().size(), false);
      const std::int64_t numel = partition_members(plan, grid.data_parallel_id(r), in);
      if (numel > most) {
        most = numel;
        worst = r;
      }
    }
    std::swap(all[0], all[static_cast<std::size_t>(worst)]);
    std::sort(all.begin() + 1, all.end());
    classes.push_back(std::move(all));
  }

  for (const std::vector<std::int64_t>& ranks : classes) {
    const std::int64_t rank = ranks.front();
    DataParallelRank::Setup setup;
    setup.run = &run;
    setup.plan = &plan;
    setup.compute = &compute;
    setup.network = &network;
    setup.dp_shape = network.shape(grid.data_parallel_group(rank));
    setup.dp_index = grid.data_parallel_id(rank);
    setup.gpu = rank;
    RankReport report;
    report.ranks = ranks;
    std::sort(report.ranks.begin(), report.ranks.end());
    report.label = ranks.size() == 1 ? "rank " + std::to_string(rank)
                                     : "all " + std::to_string(ranks.size()) + " ranks";
    std::int32_t trace_rank = 0;
    if (trace) {
      trace_rank = static_cast<std::int32_t>(trace->ranks.size());
      trace->ranks.push_back(trace::RankInfo{report.label, report.ranks, 0});
    }
    report.trace_rank = trace_rank;
    DataParallelRank sim(setup, trace, trace_rank,
                         {run.cluster.gpu_memory, options.model_allocator});
    sim.begin();
    // The steady state is the second step: what the first leaves allocated is there from the
    // start (optimizer states are booked from the start either way).
    if (options.steps == 0) {
      report.steps.push_back(sim.run_step(1));
    } else {
      for (std::int64_t s = 0; s < options.steps; ++s)
        report.steps.push_back(sim.run_step(s));
    }
    report.transfers = sim.transfers();
    take_memory_peaks(sim.memory(), report);
    report.peak_running = running_label(run.tree, report.peak.running);
    report.model_flops_per_step =
        plan.model_flops_per_micro_batch * static_cast<double>(plan.micro_batches);
    result.ranks.push_back(std::move(report));
  }
  for (const StepReport& s : result.ranks.front().steps)
    result.reported_steps.push_back(s.step);
  for (const RankReport& r : result.ranks) {
    if (!r.steps.empty())
      result.step_time_ns = std::max(result.step_time_ns, r.steps.back().time_ns());
  }
  if (result.step_time_ns > 0) {
    result.mfu = result.ranks.front().model_flops_per_step /
                 (static_cast<double>(result.step_time_ns) * 1e-9 * compute.peak_flops());
  }

  const ZeroConfig& z = run.deepspeed.zero;
  if (z.offload_param && z.offload_param->device != OffloadDevice::kNone) {
    result.warnings.push_back({where(run, "zero_optimization.offload_param"),
                               "offloads parameters only with ZeRO stage 3; DeepSpeed ignores it "
                               "at stage " +
                                   std::to_string(z.stage)});
  }
  if (z.offload_optimizer && z.offload_optimizer->device != OffloadDevice::kNone) {
    if (z.stage == 0) {
      result.warnings.push_back({where(run, "zero_optimization.offload_optimizer"),
                                 "needs ZeRO (stage 1 or more); DeepSpeed ignores it at stage 0"});
    } else if (z.offload_optimizer->device == OffloadDevice::kNvme) {
      result.warnings.push_back(
          {where(run, "zero_optimization.offload_optimizer.device"),
           "nvme: stages 1 and 2 keep the optimizer in host memory (DeepSpeedZeroOptimizer "
           "treats any offload device as cpu); NVMe is used only by stage 3"});
    }
  }
  if (run.deepspeed.pipeline.activation_checkpoint_interval > 0) {
    result.warnings.push_back(
        {where(run, "pipeline.activation_checkpoint_interval"),
         "applies only to a PipelineModule, which this run (no pipeline) does not use; "
         "training.checkpoint_interval says what the training script checkpoints"});
  }
  if (z.stage == 1 || z.stage == 2) {
    result.estimate =
        deepspeed_zero2_estimate(run.tree.total_parameters(), run.cluster.gpus_per_node,
                                 run.cluster.nodes, plan.cpu_offload);
  }
  return result;
}

}  // namespace zp::sim
