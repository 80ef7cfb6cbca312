#include "sim/step/zero_step.h"

#include <algorithm>
#include <cmath>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "core/checkpoint/checkpointing.h"
#include "core/model/tensor_parallel.h"
#include "core/pipe/layers.h"
#include "core/pipe/topology.h"
#include "core/zero/partition.h"
#include "core/zero/training_step.h"
#include "sim/hardware/compute_model.h"
#include "sim/network/collectives.h"
#include "sim/step/call_work.h"
#include "sim/step/checkpoint_segments.h"
#include "sim/step/decision_memo.h"
#include "sim/step/model_states.h"
#include "sim/step/rank_timeline.h"
#include "sim/step/sim_cache.h"

namespace zp::sim {
namespace {

using trace::MemoryCategory;
using trace::OpKind;
using trace::StreamKind;
using zero::GatherHandle;
using zero::GatherReason;
using zero::GatherRequest;
using zero::GradBucket;
using zero::ParamStatus;
using zero::StepEvent;
using zero::StepEventKind;
using zero::StepPhase;

// PartitionedParameterCoordinator.__max_ongoing_fetch_events and stage 3's
// max_param_reduce_events: past these the host waits for the oldest.
constexpr std::size_t kMaxOngoingFetchEvents = 2;
constexpr std::size_t kMaxParamReduceEvents = 2;
// Warm-up steps before giving up on a complete trace.
constexpr std::int64_t kMaxWarmupSteps = 8;

// One simulated rank: carries out the coordinator's and the reducer's decisions in time and
// memory. Inactive during warm-up steps, which only advance the coordinator's state.
class ZeroRank final : public RankTimeline,
                       public zero::CoordinatorBackend,
                       public zero::GradientReducerBackend,
                       public zero::StepObserver {
 public:
  struct Setup {
    const RunSpec* run = nullptr;
    const zero::ZeroModel* model = nullptr;
    const ComputeModel* compute = nullptr;
    const CollectiveModel* network = nullptr;
    GroupShape dp_shape;
    GroupShape tp_shape;  // the tensor-parallel group (one rank without tensor parallelism)
    std::int64_t dp = 1;
    OptimizerShape optimizer;
    OffloadDevice offload_param = OffloadDevice::kNone;
    std::int64_t gpu = 0;  // the global rank whose links are costed
  };

  ZeroRank(const Setup& setup, const std::vector<CallWork>& work, const CheckpointWork& checkpoints,
           trace::Trace* trace, std::int32_t trace_rank, MemoryAccountant::Options memory)
      : RankTimeline(trace, trace_rank, *setup.network, setup.dp_shape, setup.dp, setup.gpu,
                     setup.run->cluster.collective_host_ns),
        s_(setup),
        z_(setup.model->settings()),
        work_(work),
        checkpoints_(checkpoints),
        memory_(memory, trace, trace_rank),
        param_block_(setup.model->tree().parameters().size(), -1),
        grad_block_(setup.model->tree().parameters().size(), -1),
        grad_done_(setup.model->tree().parameters().size(), false),
        pending_block_(setup.model->tree().parameters().size(), -1),
        held_grad_block_(work.size(), -1),
        activation_block_(work.size(), -1) {
    // A post-backward hook needs nothing before the coordinator acts, unless hooks take time.
    set_event_kinds(s_.run->cluster.hook_overhead_ns > 0
                        ? kAllEventKinds
                        : kAllEventKinds & ~event_bit(StepEventKind::kPostBackward),
                    kAllEventKinds);
    // Backward reaches a segment's calls outermost first (a pre-backward hook fires as the
    // output's gradient arrives): the last is found by descending into first children.
    const std::vector<ForwardCall>& calls = setup.model->tree().calls();
    for (const auto& [first, segment] : checkpoints_.segments) {
      std::int32_t last = first;
      while (last + 1 < segment.end &&
             calls[static_cast<std::size_t>(last + 1)].parent_call == last &&
             setup.model->is_hooked(calls[static_cast<std::size_t>(last + 1)].module))
        ++last;
      segment_end_.emplace(last, first);
    }
  }

  MemoryAccountant& memory() { return memory_; }
  // While inactive, every call the coordinator makes goes into `digest` with its arguments and its
  // place in the schedule (null: nowhere): what a step decided, for DecisionMemo. The loop runs
  // decisions only then: the hooks and the gradient buckets are the same in every run of a memo's
  // context.
  void record_decisions(DecisionDigest* digest) { digest_ = digest; }
  zero::TrainingLoop* loop = nullptr;
  std::int32_t tensor_group = trace::kNone;  // the trace's group for tensor-parallel collectives

  // Books what exists before the first simulated step: the model states, the gradient buffers, and
  // the parameters the coordinator holds (the persistent ones after a step).
  void begin() {
    active_ = true;
    const zero::ZeroModel& model = *s_.model;
    std::int64_t partition_bytes = 0, partition_numel = 0;
    for (ParamId p : model.params_by_ds_id()) {
      const zero::ZeroParam& zp = model.param(p);
      partition_bytes += zp.shape.partition_numel * dtype_size(zp.dtype);
      if (zp.requires_grad) partition_numel += zp.shape.partition_numel;
    }
    if (s_.offload_param == OffloadDevice::kNone) {
      memory_.allocate(MemoryCategory::kParamPartitions, partition_bytes, now_,
                       AllocStream::kCompute, label("parameter partitions"));
    } else {
      memory_.add_host(s_.offload_param == OffloadDevice::kCpu ? MemoryCategory::kHostParams
                                                               : MemoryCategory::kNvme,
                       partition_bytes, now_);
    }
    const std::int64_t master = partition_numel * s_.optimizer.master_bytes;
    const std::int64_t states = partition_numel * s_.optimizer.state_bytes;
    const zero::GradientBuffers grads = zero::gradient_buffers(model);
    switch (z_.offload_optimizer) {
      case OffloadDevice::kNone:
        memory_.allocate(MemoryCategory::kMasterWeights, master, now_, AllocStream::kCompute,
                         label("master weights"));
        memory_.allocate(MemoryCategory::kOptimizerStates, states, now_, AllocStream::kCompute,
                         label("optimizer states"));
        break;
      case OffloadDevice::kCpu:
        memory_.add_host(MemoryCategory::kHostOptimizer, master + states, now_);
        break;
      case OffloadDevice::kNvme:
        // Master weights and states are swapped in from NVMe for the step; the host keeps the
        // gradients.
        memory_.add_host(MemoryCategory::kNvme, master + states, now_);
        break;
    }
    if (grads.partitions_on_host) {
      memory_.add_host(MemoryCategory::kHostOptimizer, grads.partition_bytes(), now_);
    } else {
      memory_.allocate(MemoryCategory::kGradPartitions, grads.partition_bytes(), now_,
                       AllocStream::kCompute, label("gradient partitions"));
    }
    if (grads.bucket_numel > 0)
      memory_.allocate(MemoryCategory::kGradBuckets, grads.bucket_bytes(), now_,
                       AllocStream::kCompute, label("ipg buffer"));
    for (ParamId p : model.params_by_ds_id()) {
      if (loop->coordinator().status(p) != ParamStatus::kNotAvailable) {
        param_block_[static_cast<std::size_t>(p)] = memory_.allocate(
            category_of(p), gathered_bytes(p), now_, AllocStream::kAllGather, param_label(p));
        live_numel_ += model.param(p).numel;
      }
    }
  }

  StepReport run_step(std::int64_t micro_batches) {
    StepReport report;
    report.step = loop->steps_done();
    report.trace_mode = std::string(zero::to_string(loop->coordinator().mode()));
    const std::int64_t invalidations_before =
        static_cast<std::int64_t>(loop->coordinator().invalidations().size());
    begin_step(report);
    exposed_gather_ns_ = 0;
    await_first_sample();
    memory_.set_step(step_);
    memory_.reset_window(now_);
    loop->step(micro_batches);
    sync_all();
    figures_.invalidations = static_cast<std::int64_t>(loop->coordinator().invalidations().size()) -
                             invalidations_before;
    end_step(report);
    report.peak = memory_.window_peak();
    report.exposed_gather_ns = exposed_gather_ns_;
    return report;
  }

  // A decision, with where in the schedule of hooks it falls: every run of a context runs the same
  // schedule (and the same gradient buckets), so where each decision falls is what can differ.
  void note(std::initializer_list<std::int64_t> words) {
    if (!digest_) return;
    digest_->add(loop->events_run());
    for (std::int64_t w : words)
      digest_->add(w);
  }

  // ---- CoordinatorBackend ----------------------------------------------------------------------

  void start_gather(const GatherRequest& r) override {
    if (!active_) {
      if (digest_) {
        note({1, r.handle, static_cast<std::int64_t>(r.reason), r.forward, r.module,
              loop->coordinator().available_numel()});
        for (ParamId p : r.params)
          digest_->add(p);
      }
      return;
    }
    const std::size_t first_op = trace_ ? trace_->ops.size() : 0;
    count_gather(r);
    const zero::ZeroModel& model = *s_.model;
    Gather& g = new_gather(r.handle);
    g.params.assign(r.params.begin(), r.params.end());
    for (ParamId p : r.params)
      live_numel_ += model.param(p).numel;
    note_live();
    // A group of one rank does not gather: the partition is the parameter.
    if (s_.dp == 1) return;
    std::vector<zero::GatherBuffer>& buffers = scratch_buffers_;
    zero::gather_buffers(model, r.params, z_.use_all_reduce_for_fetch_params, buffers);
    std::int64_t buffer_bytes = 0;
    for (const zero::GatherBuffer& b : buffers)
      buffer_bytes += b.bytes();
    g.single = r.params.size() == 1;
    if (g.single) {
      // The parameter's data is a view of the padded buffer until it is released.
      const ParamId p = r.params.front();
      param_block_[static_cast<std::size_t>(p)] = memory_.allocate(
          category_of(p), buffer_bytes, now_, AllocStream::kAllGather, param_label(p));
    } else {
      for (const zero::GatherBuffer& b : buffers)
        g.flat.push_back(memory_.allocate(MemoryCategory::kGatheredParams, b.bytes(), now_,
                                          AllocStream::kAllGather,
                                          numbered_label("gather ", r.handle)));
    }
    TimeNs ready = now_;
    const std::int32_t name = numbered_label("gather ", r.handle);
    if (s_.offload_param != OffloadDevice::kNone) {
      // Partitions come up from the host (and from NVMe first) before the collective.
      std::int64_t partition_bytes = 0;
      for (ParamId p : r.params)
        partition_bytes += model.param(p).shape.partition_numel * dtype_size(model.param(p).dtype);
      if (s_.offload_param == OffloadDevice::kNvme) {
        ready = transfer(StreamKind::kHostToDevice, OpKind::kCopyToDevice, TransferKind::kNvme,
                         ready, nvme_copy_time(partition_bytes), partition_bytes, name);
      }
      ready =
          transfer(StreamKind::kHostToDevice, OpKind::kCopyToDevice, TransferKind::kHostToDevice,
                   ready, host_copy_time(partition_bytes), partition_bytes, name);
    }
    const CollectiveOp& c = z_.use_all_reduce_for_fetch_params ? kAllReduceOp : kAllGatherOp;
    g.end = collective(allgather_stream(), StreamKind::kAllGather, c, ready, buffer_bytes, name);
    if (trace_) attribute_gather(first_op, r);
  }

  void wait_gather(GatherHandle handle) override {
    if (!active_) return note({2, handle});
    Gather& g = gather(handle);
    // DeepSpeed records an event per wait and makes the host wait once more than two are pending.
    while (!fetch_events_.empty() && fetch_events_.front() <= now_)
      fetch_events_.pop_front();
    if (fetch_events_.size() > kMaxOngoingFetchEvents) {
      wait_until(fetch_events_.front());
      fetch_events_.pop_front();
    }
    if (s_.dp == 1) return;
    TimeNs& stream = allgather_stream();
    if (!g.single) {
      // The wait splits the flat buffer into one new tensor per parameter (torch.cat on the
      // all-gather stream); the compute stream then waits for that stream.
      std::int64_t bytes = 0;
      for (ParamId p : g.params) {
        const std::int64_t b = gathered_bytes(p);
        param_block_[static_cast<std::size_t>(p)] =
            memory_.allocate(category_of(p), b, now_, AllocStream::kAllGather, param_label(p));
        bytes += b;
      }
      const TimeNs start = std::max(stream, g.end);
      stream = start + s_.compute->copy(bytes);
      g.end = stream;
    }
    const TimeNs waited = std::max<TimeNs>(g.end - now_, 0);
    exposed_gather_ns_ += waited;
    wait_until(g.end);
    fetch_events_.push_back(stream);
  }

  void drop_gather(GatherHandle handle) override {
    if (!active_) return note({3, handle});
    const auto h = static_cast<std::size_t>(handle);
    if (h >= slot_of_handle_.size() || slot_of_handle_[h] < 0) return;
    Gather& g = gather_slots_[static_cast<std::size_t>(slot_of_handle_[h])];
    for (MemoryAccountant::Block b : g.flat)
      memory_.free(b, now_);
    free_slots_.push_back(slot_of_handle_[h]);
    slot_of_handle_[h] = -1;
  }

  void release(ParamId param, zero::ReleaseReason reason) override {
    if (!active_) return note({4, param, static_cast<std::int64_t>(reason)});
    if (reason != zero::ReleaseReason::kOutside) ++figures_.releases;
    live_numel_ -= s_.model->param(param).numel;
    MemoryAccountant::Block& b = param_block_[static_cast<std::size_t>(param)];
    if (trace_) record_release(param, b >= 0 ? gathered_bytes(param) : 0);
    if (b >= 0) memory_.free(b, now_);
    b = -1;
  }

  // ---- GradientReducerBackend
  // --------------------------------------------------------------------

  void grad_added(ParamId param, bool contiguous) override {
    if (!active_ || !contiguous) return;
    // Copied into the bucket on the reduce stream, which waits for the compute stream first; the
    // gradient's own tensor is freed as the host moves on.
    const std::int64_t bytes = grad_bytes(param);
    TimeNs& stream = reduce_stream();
    stream = std::max(stream, now_) + s_.compute->copy(bytes);
    MemoryAccountant::Block& b = grad_block_[static_cast<std::size_t>(param)];
    if (b >= 0) memory_.free(b, now_);
    b = -1;
  }

  void reduce(const GradBucket& bucket) override {
    if (!active_) return;
    ++figures_.reduce_calls;
    figures_.reduce_elements += bucket.reduced_numel;
    while (!reduce_events_.empty() && reduce_events_.front() <= now_)
      reduce_events_.pop_front();
    if (reduce_events_.size() > kMaxParamReduceEvents) {
      wait_until(reduce_events_.front());
      reduce_events_.pop_front();
    }
    const int elem = dtype_size(z_.compute_dtype);
    const std::int64_t bytes = bucket.reduced_numel * elem;
    const std::int32_t name = numbered_label("bucket ", bucket.index);
    TimeNs end = 0;
    if (s_.dp == 1) {
      end = std::max(reduce_stream(), now_);
    } else if (bucket.path == zero::ReducePath::kReduceScatter) {
      // reduce_scatter_coalesced builds one flat input of the padded bucket, which lives while the
      // host issues it; the output is this rank's chunk of it. A lone gradient that needs no
      // padding is reduced in place, with nothing allocated.
      const zero::PartitionShape& only = s_.model->param(bucket.params.front()).shape;
      const bool in_place = bucket.params.size() == 1 && only.padded_numel == only.numel;
      MemoryAccountant::Block in = -1;
      if (!in_place) {
        in = memory_.allocate(MemoryCategory::kCommBuffers, bytes, now_,
                              AllocStream::kReduceScatter, name);
      }
      end = collective(reduce_stream(), StreamKind::kReduceScatter, kReduceScatterOp, now_, bytes,
                       name);
      if (in >= 0) memory_.free(in, now_);
    } else {
      end =
          collective(reduce_stream(), StreamKind::kReduceScatter, kAllReduceOp, now_, bytes, name);
    }
    // The partitions go into the flat gradient buffer; to the host when the optimizer is there.
    std::int64_t partition_bytes = 0;
    for (ParamId p : bucket.params) {
      if (s_.model->param(p).requires_grad)
        partition_bytes +=
            s_.model->param(p).shape.partition_numel * dtype_size(z_.grad_accum_dtype);
    }
    if (z_.offload_optimizer != OffloadDevice::kNone && partition_bytes > 0) {
      end = transfer_on(reduce_stream(), StreamKind::kDeviceToHost, OpKind::kCopyToHost,
                        TransferKind::kDeviceToHost, end, host_copy_time(partition_bytes),
                        partition_bytes, name);
    }
    reduce_events_.push_back(end);
    for (ParamId p : bucket.params) {
      MemoryAccountant::Block& b = grad_block_[static_cast<std::size_t>(p)];
      if (b >= 0) memory_.free(b, now_);
      b = -1;
    }
  }

  // ---- StepObserver
  // ------------------------------------------------------------------------------

  void on_phase(StepPhase phase, std::int64_t /*step*/) override {
    if (!active_) return;
    if (phase == StepPhase::kForward) {
      // independent_gradient_partition_epilogue synchronised the reduce stream.
      wait_until(reduce_stream());
      ++micro_batch_;
      std::fill(grad_done_.begin(), grad_done_.end(), false);
    }
    if (phase == StepPhase::kOptimizerStep) {
      wait_until(reduce_stream());
      micro_batch_ = -1;
    }
  }

  void before_event(const StepEvent& e) override {
    if (!active_) return;
    // The engine's own host time in the hook, before it acts: the rank's timeline waits.
    now_ += s_.run->cluster.hook_overhead_ns;
    // A hook's fetch belongs to its module: memory it gathers is "during" that module.
    if (e.kind == StepEventKind::kPreForward || e.kind == StepEventKind::kPreBackward)
      memory_.set_running(e.call);
    if (e.kind == StepEventKind::kPreForward) {
      auto seg = checkpoints_.segments.find(e.call);
      if (seg != checkpoints_.segments.end()) {
        if (e.recompute) {
          begin_recompute(e.call, seg->second);
        } else {
          keep_segment_input(e.call, seg->second);
        }
      }
    } else if (e.kind == StepEventKind::kPostForward) {
      const CallWork& w = work_[static_cast<std::size_t>(e.call)];
      memory_.set_running(e.call);
      // A checkpointed segment's first forward keeps nothing; its recomputation keeps everything
      // until the call's backward.
      const bool keeps = !w.checkpointed || e.recompute;
      const MemoryCategory category =
          e.recompute ? MemoryCategory::kRecompute : MemoryCategory::kActivations;
      if (keeps && w.activation_bytes > 0) {
        activation_block_[static_cast<std::size_t>(e.call)] = memory_.allocate(
            category, w.activation_bytes, now_, AllocStream::kCompute, module_label(e.module));
      }
      // What the forward holds only while it runs (the loss's logits and their fp32 copy).
      const MemoryAccountant::Block workspace =
          w.workspace_bytes > 0 ? memory_.allocate(category, w.workspace_bytes, now_,
                                                   AllocStream::kCompute, module_label(e.module))
                                : -1;
      run_module(e.recompute ? OpKind::kRecompute : OpKind::kForward, w.forward_ns, w.forward_flops,
                 e.module);
      if (workspace >= 0) memory_.free(workspace, now_);
      tensor_all_reduces(w.forward_tensor);
    } else if (e.kind == StepEventKind::kGradReady) {
      // The accumulator hands the gradient over: from here on it waits for its bucket.
      const auto p = static_cast<std::size_t>(e.param);
      if (pending_block_[p] >= 0) memory_.free(pending_block_[p], now_);
      pending_block_[p] = -1;
      if (grad_block_[p] < 0)
        grad_block_[p] = memory_.allocate(MemoryCategory::kGradBuckets, grad_bytes(e.param), now_,
                                          AllocStream::kCompute, param_label(e.param));
      grad_done_[p] = true;
    }
  }

  void on_event(const StepEvent& e) override {
    if (!active_) return;
    if (e.kind == StepEventKind::kPreBackward) {
      const CallWork& w = work_[static_cast<std::size_t>(e.call)];
      memory_.set_running(e.call);
      // The first call inside a call that holds its gradient (a model body's first layer) is
      // handed that gradient as its output's: it is counted there from now on.
      const std::int32_t parent =
          s_.model->tree().calls()[static_cast<std::size_t>(e.call)].parent_call;
      if (parent != kNoCall && e.call == parent + 1) {
        MemoryAccountant::Block& held = held_grad_block_[static_cast<std::size_t>(parent)];
        if (held >= 0) memory_.free(held, now_);
        held = -1;
      }
      // The gradients flowing through the call's own backward, while it runs; the one the call
      // before made for its input is this call's output gradient, counted here from now on.
      release_input_grad();
      const MemoryAccountant::Block flowing =
          w.backward_workspace_bytes > 0
              ? memory_.allocate(MemoryCategory::kActivations, w.backward_workspace_bytes, now_,
                                 AllocStream::kCompute, module_label(e.module))
              : -1;
      run_module(OpKind::kBackward, w.backward_ns, w.backward_flops, e.module);
      // The backward makes a gradient for each of the call's parameters while its output's
      // gradient is still there; autograd holds it until the accumulator takes it. A later
      // contribution to a tied weight is added to the earlier one once the backward has returned,
      // out of place (PyTorch 1.13's InputBuffer): for a moment both and their sum.
      std::vector<std::pair<ParamId, MemoryAccountant::Block>>& added = scratch_added_;
      added.clear();
      for (ParamId p : w.grads) {
        if (grad_done_[static_cast<std::size_t>(p)]) continue;
        const MemoryAccountant::Block made =
            memory_.allocate(MemoryCategory::kActivations, grad_bytes(p), now_,
                             AllocStream::kCompute, param_label(p));
        MemoryAccountant::Block& pending = pending_block_[static_cast<std::size_t>(p)];
        if (pending < 0) {
          pending = made;
        } else {
          added.emplace_back(p, made);
        }
      }
      if (flowing >= 0) memory_.free(flowing, now_);
      if (w.input_grad_bytes > 0)
        input_grad_block_ = memory_.allocate(MemoryCategory::kActivations, w.input_grad_bytes, now_,
                                             AllocStream::kCompute, module_label(e.module));
      for (const auto& [p, made] : added) {
        MemoryAccountant::Block& pending = pending_block_[static_cast<std::size_t>(p)];
        const MemoryAccountant::Block sum =
            memory_.allocate(MemoryCategory::kActivations, grad_bytes(p), now_,
                             AllocStream::kCompute, param_label(p));
        memory_.free(pending, now_);
        memory_.free(made, now_);
        pending = sum;
      }
      MemoryAccountant::Block& b = activation_block_[static_cast<std::size_t>(e.call)];
      if (b >= 0) memory_.free(b, now_);
      b = -1;
      if (w.backward_held_bytes > 0) {
        held_grad_block_[static_cast<std::size_t>(e.call)] =
            memory_.allocate(MemoryCategory::kActivations, w.backward_held_bytes, now_,
                             AllocStream::kCompute, module_label(e.module));
      }
      tensor_all_reduces(w.backward_tensor);
      // The segment's input goes when its backward is done.
      if (auto end = segment_end_.find(e.call); end != segment_end_.end())
        end_segment(end->second, checkpoints_.segments.at(end->second));
    }
    if (first_sample_pending_) note_live();
  }

  // CheckpointFunction.forward: the input is kept (partitioned, on the host, or as it is).
  void keep_segment_input(std::int32_t call, const SegmentWork& w) {
    if (w.held_bytes > 0)
      held_block_[call] = memory_.allocate(MemoryCategory::kActivations, w.held_bytes, now_,
                                           AllocStream::kCompute, label("checkpoint input"));
    if (w.host_bytes > 0) memory_.add_host(MemoryCategory::kHostActivations, w.host_bytes, now_);
    if (w.to_host_bytes > 0) {
      transfer(StreamKind::kDeviceToHost, OpKind::kCopyToHost, TransferKind::kDeviceToHost, now_,
               host_copy_time(w.to_host_bytes), w.to_host_bytes, label("checkpoint input"));
    }
  }

  void release_input_grad() {
    if (input_grad_block_ >= 0) memory_.free(input_grad_block_, now_);
    input_grad_block_ = -1;
  }

  // CheckpointFunction.backward: the input comes back before the forward runs again. The gradient
  // of the segment's output, which the call after it made, is the one the model body holds.
  void begin_recompute(std::int32_t call, const SegmentWork& w) {
    release_input_grad();
    if (w.extra_recompute_bytes > 0)
      extra_block_[call] = memory_.allocate(MemoryCategory::kRecompute, w.extra_recompute_bytes,
                                            now_, AllocStream::kCompute, label("checkpoint input"));
    if (w.allgather_bytes > 0) {
      // The partitioned input is gathered whole again over the tensor group, blocking compute.
      const std::int64_t tp = s_.tp_shape.size;
      const std::int64_t bytes = w.allgather_bytes * tp / (tp - 1);
      const TimeNs time = s_.network->cost(CollectiveKind::kAllGather, s_.tp_shape, bytes).time;
      blocking_collective(kAllGatherOp, time, bytes, label("gather checkpoint"), tensor_group);
    }
    if (w.from_host_bytes > 0) {
      const TimeNs end = transfer(
          StreamKind::kHostToDevice, OpKind::kCopyToDevice, TransferKind::kHostToDevice, now_,
          host_copy_time(w.from_host_bytes), w.from_host_bytes, label("checkpoint input"));
      wait_until(end);
    }
  }

  void end_segment(std::int32_t call, const SegmentWork& w) {
    for (auto* blocks : {&held_block_, &extra_block_}) {
      if (auto it = blocks->find(call); it != blocks->end()) {
        memory_.free(it->second, now_);
        blocks->erase(it);
      }
    }
    if (w.host_bytes > 0) memory_.add_host(MemoryCategory::kHostActivations, -w.host_bytes, now_);
  }

  void on_reset_step() override {
    if (!active_) return;
    // Activations of calls that had no backward (their output needed no gradient) go with the
    // graph.
    for (MemoryAccountant::Block& b : activation_block_) {
      if (b >= 0) memory_.free(b, now_);
      b = -1;
    }
    // So do gradients that were never handed to the reducer, or are still held.
    release_input_grad();
    for (auto* blocks : {&pending_block_, &held_grad_block_}) {
      for (MemoryAccountant::Block& b : *blocks) {
        if (b >= 0) memory_.free(b, now_);
        b = -1;
      }
    }
  }

  void on_optimizer_update(std::int64_t /*step*/) override {
    if (!active_) return;
    memory_.set_running(kRunningOptimizer);
    const zero::GradientBuffers grads = zero::gradient_buffers(*s_.model);
    const std::int64_t numel = grads.partition_numel;
    const std::int32_t name = label("optimizer step");
    if (z_.offload_optimizer == OffloadDevice::kNone) {
      const std::int64_t bytes = numel * s_.optimizer.step_bytes(dtype_size(z_.grad_accum_dtype),
                                                                 dtype_size(z_.compute_dtype));
      run_compute(OpKind::kOptimizerStep, s_.compute->time(0, bytes), 0, name);
    } else {
      const RunSpec& run = *s_.run;
      TimeNs t = now_;
      if (z_.offload_optimizer == OffloadDevice::kNvme) {
        const std::int64_t states = numel * (s_.optimizer.master_bytes + s_.optimizer.state_bytes);
        t = transfer(StreamKind::kHostToDevice, OpKind::kCopyToDevice, TransferKind::kNvme, t,
                     nvme_copy_time(states), states, name);
      }
      // The node's CPU Adam rate is shared by its GPUs.
      const double rate = run.cluster.host_optimizer_rate /
                          static_cast<double>(std::max<std::int64_t>(run.cluster.gpus_per_node, 1));
      const TimeNs host = static_cast<TimeNs>(std::ceil(static_cast<double>(numel) / rate * 1e9));
      record(StreamKind::kHost, OpKind::kOptimizerStep, t, t + host, name, 0, 0);
      t += host;
      if (z_.offload_optimizer == OffloadDevice::kNvme) {
        const std::int64_t states = numel * (s_.optimizer.master_bytes + s_.optimizer.state_bytes);
        t = transfer(StreamKind::kDeviceToHost, OpKind::kCopyToHost, TransferKind::kNvme, t,
                     nvme_copy_time(states), states, name);
      }
      if (s_.offload_param == OffloadDevice::kNone) {
        // The updated 16-bit partitions go back to the GPU.
        const std::int64_t bytes = numel * dtype_size(z_.compute_dtype);
        t = transfer(StreamKind::kHostToDevice, OpKind::kCopyToDevice, TransferKind::kHostToDevice,
                     t, host_copy_time(bytes), bytes, name);
      }
      wait_until(t, /*exposed=*/false);
    }
    memory_.set_running(kRunningPersistentGather);
  }

 private:
  struct Gather {
    std::vector<ParamId> params;
    std::vector<MemoryAccountant::Block> flat;
    bool single = false;
    TimeNs end = 0;
  };

  // A slot for the gather `handle` (slots and their lists are reused: no allocation per gather).
  Gather& new_gather(GatherHandle handle) {
    const auto h = static_cast<std::size_t>(handle);
    if (h >= slot_of_handle_.size())
      slot_of_handle_.resize(std::max(h + 1, 2 * slot_of_handle_.size()), -1);
    ZP_CHECK(slot_of_handle_[h] < 0, "gather ", handle, " started twice");
    std::int32_t slot = -1;
    if (free_slots_.empty()) {
      slot = static_cast<std::int32_t>(gather_slots_.size());
      gather_slots_.emplace_back();
    } else {
      slot = free_slots_.back();
      free_slots_.pop_back();
    }
    slot_of_handle_[h] = slot;
    Gather& g = gather_slots_[static_cast<std::size_t>(slot)];
    g.params.clear();
    g.flat.clear();
    g.single = false;
    g.end = 0;
    return g;
  }
  Gather& gather(GatherHandle handle) {
    const auto h = static_cast<std::size_t>(handle);
    ZP_CHECK(h < slot_of_handle_.size() && slot_of_handle_[h] >= 0, "gather ", handle,
             " waited but never started");
    return gather_slots_[static_cast<std::size_t>(slot_of_handle_[h])];
  }

  // Without overlap_comm, or on ranks whose collectives cannot progress while they compute (CPU
  // ranks filling their cores), a collective holds the compute stream.
  bool comm_streams() const { return z_.overlap_comm && s_.run->cluster.comm_overlaps_compute; }
  TimeNs& allgather_stream() { return comm_streams() ? allgather_ : now_; }
  TimeNs& reduce_stream() { return comm_streams() ? reduce_ : now_; }

  MemoryCategory category_of(ParamId p) const {
    return s_.model->param(p).persistent ? MemoryCategory::kPersistentParams
                                         : MemoryCategory::kGatheredParams;
  }
  std::int64_t gathered_bytes(ParamId p) const {
    return s_.model->param(p).numel * dtype_size(s_.model->param(p).dtype);
  }
  std::int64_t grad_bytes(ParamId p) const {
    return s_.model->param(p).numel * dtype_size(s_.model->param(p).dtype);
  }

  void count_gather(const GatherRequest& r) {
    switch (r.reason) {
      case GatherReason::kDemand:
        ++figures_.demand_gathers;
        break;
      case GatherReason::kPrefetch:
        ++figures_.prefetch_gathers;
        break;
      case GatherReason::kOutside:
        ++figures_.outside_gathers;
        return;
    }
    ++figures_.allgather_calls;
    figures_.params_gathered += static_cast<std::int64_t>(r.params.size());
    figures_.elements_gathered += r.numel;
  }

  // The peaks are sampled after every gather starts and after every event. Both figures rise only
  // when a gather starts (elsewhere they fall, or the counter goes back to 0, which the peaks start
  // at), so a sample after an event can top the others only before the step's first gather, and
  // then the first such sample tops the rest: the events after the first sample need no sample.
  void note_live() {
    figures_.peak_available_counted =
        std::max(figures_.peak_available_counted, loop->coordinator().available_numel());
    figures_.peak_available_live = std::max(figures_.peak_available_live, live_numel_);
    if (first_sample_pending_) {
      first_sample_pending_ = false;
      set_event_kinds(before_event_kinds(), event_bit(StepEventKind::kPreBackward));
    }
  }
  // At the start of a step (the figures start again at 0): the next event is sampled.
  void await_first_sample() {
    first_sample_pending_ = true;
    set_event_kinds(before_event_kinds(), kAllEventKinds);
  }

  // The trace's names for `module`'s work and for a parameter, looked up only with a trace:
  // without one they are asked for per simulated tensor.
  std::int32_t module_label(ModuleId module) { return trace_ ? traced_module_label(module) : -1; }
  std::int32_t traced_module_label(ModuleId module) {
    return label(module == 0 ? std::string("model") : s_.model->tree().qualified_name(module));
  }
  std::int32_t param_label(ParamId param) {
    return trace_ ? label(s_.model->tree().parameter(param).name) : -1;
  }

  // With a trace: the ops recorded from `first` on (the gather's copies and collective) name the
  // module whose fetch issued it and the parameters it gathers.
  void attribute_gather(std::size_t first, const GatherRequest& r) {
    const std::int32_t module = r.module == kNoModule ? trace::kNone : module_label(r.module);
    std::string& text = scratch_text_;
    text.clear();
    for (ParamId p : r.params) {
      if (!text.empty()) text += ", ";
      text += s_.model->tree().parameter(p).name;
    }
    const std::int32_t params = trace_->intern(text);
    for (std::size_t i = first; i < trace_->ops.size(); ++i) {
      trace_->ops[i].module = module;
      trace_->ops[i].params = params;
    }
  }

  // With a trace: an instantaneous release op on the compute stream, named after the parameter,
  // with the module that owns it.
  void record_release(ParamId param, std::int64_t bytes) {
    if (owners_.empty()) owners_ = s_.model->tree().parameter_owners();
    const ModuleId owner = owners_[static_cast<std::size_t>(param)];
    const std::int32_t name = trace_->intern(s_.model->tree().parameter(param).name);
    record(StreamKind::kCompute, OpKind::kRelease, now_, now_, name, bytes, 0);
    trace_->ops.back().module = owner == kNoModule ? trace::kNone : module_label(owner);
    trace_->ops.back().params = name;
  }

  void run_module(OpKind kind, TimeNs duration, std::int64_t flops, ModuleId module) {
    run_compute(kind, duration, flops, module_label(module));
  }

  // Megatron's tensor-parallel all-reduces block the compute stream: all of their time is exposed.
  void tensor_all_reduces(const std::vector<TensorAllReduce>& list) {
    for (const TensorAllReduce& c : list)
      blocking_collective(kAllReduceOp, c.time, c.bytes, module_label(c.module), tensor_group);
  }

  Setup s_;
  const zero::ZeroSettings& z_;
  const std::vector<CallWork>& work_;
  const CheckpointWork& checkpoints_;
  MemoryAccountant memory_;
  bool active_ = false;
  DecisionDigest* digest_ = nullptr;

  std::deque<TimeNs> fetch_events_;
  std::deque<TimeNs> reduce_events_;
  std::vector<Gather> gather_slots_;
  std::vector<std::int32_t> free_slots_;
  std::vector<std::int32_t> slot_of_handle_;  // by handle; -1 when none
  std::vector<zero::GatherBuffer> scratch_buffers_;
  std::vector<MemoryAccountant::Block> param_block_;
  std::vector<MemoryAccountant::Block> grad_block_;
  std::vector<bool> grad_done_;  // by ParamId: handed to the reducer in this micro-step
  // By ParamId: a gradient that backward made and autograd still holds (the sum so far of a tied
  // weight's contributions), until its accumulator hands it to the reducer.
  std::vector<MemoryAccountant::Block> pending_block_;
  // By call: the gradient a call holds through the backward inside it (ModuleCost).
  std::vector<MemoryAccountant::Block> held_grad_block_;
  // The gradient the last backward made for its call's input (CallWork::input_grad_bytes).
  MemoryAccountant::Block input_grad_block_ = -1;
  std::vector<std::pair<ParamId, MemoryAccountant::Block>> scratch_added_;  // reused per backward
  std::vector<MemoryAccountant::Block> activation_block_;
  // Per checkpointed segment (by first call): the kept input, and the extra full input while it
  // recomputes.
  std::map<std::int32_t, MemoryAccountant::Block> held_block_;
  std::map<std::int32_t, MemoryAccountant::Block> extra_block_;
  // The call whose backward runs last in each segment -> the segment's first call.
  std::map<std::int32_t, std::int32_t> segment_end_;
  std::int64_t live_numel_ = 0;
  TimeNs exposed_gather_ns_ = 0;
  bool first_sample_pending_ = true;  // see note_live
  std::vector<ModuleId> owners_;      // by ParamId, built for the first release traced
  std::string scratch_text_;          // a traced gather's parameter list
};

std::string running_label(const ModuleTree& tree, std::int32_t running) {
  if (running == kRunningOptimizer) return "optimizer step";
  if (running == kRunningPersistentGather) return "gathering persistent parameters";
  if (running < 0 || static_cast<std::size_t>(running) >= tree.calls().size()) return "setup";
  const ModuleId m = tree.calls()[static_cast<std::size_t>(running)].module;
  return m == 0 ? std::string("model") : tree.qualified_name(m);
}

}  // namespace

SimulationResult simulate_zero3(const RunSpec& run, const SimOptions& options,
                                trace::Trace* trace) {
  if (run.deepspeed.zero.stage != 3) {
    throw UserError(ErrorKind::kUnsupported, {run.file.string(), 0, 0, "zero_optimization.stage"},
                    "the data-parallel simulation models ZeRO stage 3; stage " +
                        std::to_string(run.deepspeed.zero.stage) +
                        " is simulated only with a pipeline (parallel.pipeline > 1)");
  }
  // With tensor parallelism each rank runs its shard of the model, and ZeRO-3 partitions that
  // shard over the data-parallel group.
  const std::int64_t tp = run.parallel.tensor;
  std::optional<TensorParallelModel> tensor;
  std::optional<RunSpec> sharded_run;
  if (tp > 1) {
    tensor = shard_for_tensor_parallel(run.tree, run.model.config, tp,
                                       {run.file.string(), 0, 0, "parallel.tensor"});
    sharded_run = run;
    sharded_run->tree = tensor->tree;
  }
  const RunSpec& local = sharded_run ? *sharded_run : run;

  const zero::ZeroSettings settings = run.zero_settings();
  // A memo's entry stands for the one rank class of a run without a trace. What the first run of
  // its context kept serves this one: the model and the costs per call if the tree is the same (a
  // tensor-parallel shard is made anew for every run), the warm-up in any case.
  DecisionMemo* const memo =
      options.steps == 0 && !trace && !options.all_ranks ? options.memo : nullptr;
  const ModuleTree* const kept_tree = sharded_run ? nullptr : &local.tree;
  const std::shared_ptr<const DecisionMemo::WarmUp> kept =
      memo ? memo->warm_up(options.memo_context, kept_tree) : nullptr;
  const bool kept_model = kept && kept->model;
  const zero::ZeroModel model =
      kept_model ? kept->model->with_thresholds(settings) : zero::ZeroModel(local.tree, settings);
  const ComputeModel compute(run.cluster, run.training.dtype);
  const CollectiveModel network(run.cluster);
  // The cache is bound to one tree: a tensor-parallel shard is a new tree every time.
  SimCache* const cache = sharded_run ? nullptr : options.cache;
  const CheckpointWork checkpoints = checkpoint_work(local, cache);
  const std::int64_t micro_batches =
      std::max<std::int64_t>(run.deepspeed.batch.gradient_accumulation_steps, 1);

  const pipe::PipelineGrid grid(pipe::pipe_model_data_parallel_topology(
      run.parallel.pipeline, run.parallel.tensor, run.parallel.data));
  // Tensor groups are alike unless the nodes split them unevenly; the work is costed again then.
  GroupShape tensor_shape;
  if (tensor) tensor_shape = network.shape(grid.slice_parallel_group(0));
  std::vector<CallWork> own_work;
  if (!kept_model) {
    own_work =
        call_work(model, compute, checkpoints, tensor ? &*tensor : nullptr, &network, tensor_shape);
  }
  const std::vector<CallWork>* work = kept_model ? &kept->work : &own_work;
  ZeroRank::Setup setup;
  setup.run = &run;
  setup.model = &model;
  setup.compute = &compute;
  setup.network = &network;
  setup.dp = settings.data_parallel_size;
  setup.optimizer = optimizer_shape(run.deepspeed);
  setup.offload_param = run.deepspeed.zero.offload_param ? run.deepspeed.zero.offload_param->device
                                                         : OffloadDevice::kNone;

  SimulationResult result = result_for(run, options);

  std::vector<std::vector<std::int64_t>> classes;
  if (options.all_ranks) {
    for (std::int64_t r = 0; r < run.parallel.world(); ++r)
      classes.push_back({r});
  } else {
    std::vector<std::int64_t> all(static_cast<std::size_t>(run.parallel.world()));
    for (std::int64_t r = 0; r < run.parallel.world(); ++r)
      all[static_cast<std::size_t>(r)] = r;
    classes.push_back(std::move(all));
  }

  double forward_flops = 0;
  for (const ForwardCall& c : run.tree.calls()) {
    const ModuleCost& cost = run.tree.module(c.module).cost;
    forward_flops += static_cast<double>(cost.forward_flops + cost.backward_or_default());
  }

  for (const std::vector<std::int64_t>& ranks : classes) {
    const std::int64_t rank = ranks.front();
    DecisionMemo::Key memo_key{};
    bool memo_hit = false;
    setup.gpu = rank;
    setup.dp_shape = network.shape(grid.data_parallel_group(rank));
    setup.tp_shape = network.shape(grid.slice_parallel_group(rank));
    if (tensor) {
      const GroupShape shape = network.shape(grid.slice_parallel_group(rank));
      if (!(shape == tensor_shape)) {
        tensor_shape = shape;
        own_work = call_work(model, compute, checkpoints, &*tensor, &network, tensor_shape);
        work = &own_work;
      }
    }
    RankReport report;
    report.ranks = ranks;
    report.label = ranks.size() == 1 ? "rank " + std::to_string(rank)
                                     : "all " + std::to_string(ranks.size()) + " ranks";
    std::int32_t trace_rank = 0;
    if (trace) {
      trace_rank = static_cast<std::int32_t>(trace->ranks.size());
      trace->ranks.push_back(trace::RankInfo{report.label, ranks, 0});
    }
    report.trace_rank = trace_rank;
    ZeroRank sim(setup, *work, checkpoints, trace, trace_rank,
                 {run.cluster.gpu_memory, options.model_allocator});
    if (trace && tensor) {
      sim.tensor_group = static_cast<std::int32_t>(trace->groups.size());
      trace->groups.push_back(trace::GroupInfo{"model", tp});
    }
    const zero::TrainingLoop* const warmed = kept && kept->loop ? &*kept->loop : nullptr;
    std::optional<zero::TrainingLoop> held;
    if (warmed) {
      held.emplace(*warmed);
      held->rebind(model, sim, sim, &sim);
    } else if (cache) {
      held.emplace(model, cache->step_schedule(model, checkpoints.ranges), sim, sim, &sim);
    } else {
      held.emplace(model, sim, sim, &sim, checkpoints.ranges);
    }
    zero::TrainingLoop& loop = *held;
    sim.loop = &loop;
    if (!warmed) loop.initialize();
    if (options.steps == 0) {
      if (!warmed) {
        // Warm-up steps only advance the coordinator: nothing of them is reported.
        loop.set_decisions_only(true);
        while (loop.coordinator().mode() != zero::TraceMode::kComplete &&
               loop.steps_done() < kMaxWarmupSteps) {
          loop.step(micro_batches);
        }
        loop.set_decisions_only(false);
        if (memo && !kept) {
          DecisionMemo::WarmUp keep;
          if (kept_tree) {
            keep.model.emplace(model);
            keep.work = *work;
          }
          // Only a warm-up that never read the thresholds serves other values of them.
          if (loop.coordinator().thresholds_unread()) {
            loop.coordinator().index_trace();  // once, for every run that starts from here
            keep.loop.emplace(loop);
          }
          memo->store_warm_up(options.memo_context, kept_tree, std::move(keep));
        }
      }
      if (loop.coordinator().mode() != zero::TraceMode::kComplete) {
        result.warnings.push_back({{},
                                   "the ZeRO-3 trace never completed in " +
                                       std::to_string(kMaxWarmupSteps) +
                                       " steps: the reported step runs without prefetching"});
      }
      if (memo) {
        // The step's decisions first, on a copy of the loop: a run that decided the same has
        // simulated this rank already.
        DecisionDigest digest;
        for (std::int64_t word : options.memo_context)
          digest.add(word);
        digest.add(-1);
        const zero::Coordinator& c = loop.coordinator();
        for (const std::int64_t word :
             {loop.steps_done(), static_cast<std::int64_t>(c.mode()),
              static_cast<std::int64_t>(c.invalidations().size()), c.available_numel()})
          digest.add(word);
        for (ParamId p : model.params_by_ds_id())
          digest.add(static_cast<std::int64_t>(c.status(p)));
        // On the loop itself when the kept warm-up can start it again, else on a copy.
        std::optional<zero::TrainingLoop> copy;
        if (!warmed) copy.emplace(loop);
        zero::TrainingLoop& probe = copy ? *copy : loop;
        sim.loop = &probe;
        sim.record_decisions(&digest);
        probe.set_decisions_only(true);
        probe.step(micro_batches);
        probe.set_decisions_only(false);
        digest.add(static_cast<std::int64_t>(probe.coordinator().invalidations().size()));
        sim.record_decisions(nullptr);
        memo_key = digest.value();
        if (std::optional<RankReport> known = memo->find(memo_key)) {
          known->ranks = std::move(report.ranks);
          known->label = std::move(report.label);
          known->trace_rank = report.trace_rank;
          report = std::move(*known);
          memo_hit = true;
        } else if (!copy) {
          held.emplace(*warmed);
          held->rebind(model, sim, sim, &sim);
        }
        sim.loop = &*held;
      }
      if (!memo_hit) {
        sim.begin();
        report.steps.push_back(sim.run_step(micro_batches));
      }
    } else {
      sim.begin();
      for (std::int64_t s = 0; s < options.steps; ++s)
        report.steps.push_back(sim.run_step(micro_batches));
    }
    if (!memo_hit) {
      report.transfers = sim.transfers();
      take_memory_peaks(sim.memory(), report);
      report.peak_running = running_label(run.tree, report.peak.running);
      if (memo) memo->store(memo_key, report);
    }
    // The rank's share of the whole model's work: the replicated modules that every tensor rank
    // runs again count once.
    report.model_flops_per_step =
        forward_flops * static_cast<double>(micro_batches) / static_cast<double>(tp);
    result.ranks.push_back(std::move(report));
  }
  for (const StepReport& s : result.ranks.front().steps)
    result.reported_steps.push_back(s.step);
  for (const RankReport& r : result.ranks)
    result.step_time_ns = std::max(result.step_time_ns, r.steps.back().time_ns());
  if (result.step_time_ns > 0) {
    result.mfu = result.ranks.front().model_flops_per_step /
                 (static_cast<double>(result.step_time_ns) * 1e-9 * compute.peak_flops());
  }
  for (const Warning& w : model.warnings())
    result.warnings.push_back(w);
  if (run.deepspeed.pipeline.activation_checkpoint_interval > 0) {
    result.warnings.push_back(
        {{run.file.string(), 0, 0, "pipeline.activation_checkpoint_interval"},
         "applies only to a PipelineModule, which this run (no pipeline) does not use; "
         "training.checkpoint_interval says what the training script checkpoints"});
  }
  const bool cpu_offload = settings.offload_optimizer != OffloadDevice::kNone;
  result.estimate = deepspeed_zero3_estimate(
      run.tree.total_parameters(), largest_layer_params(run.tree), run.cluster.gpus_per_node,
      run.cluster.nodes, cpu_offload, cpu_offload && setup.offload_param != OffloadDevice::kNone);
  return result;
}

}  // namespace zp::sim
