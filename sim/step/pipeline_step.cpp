#include "sim/step/pipeline_step.h"

#include <algorithm>
#include <array>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>
#include <vector>

#include "core/checkpoint/checkpointing.h"
#include "core/model/tensor_parallel.h"
#include "core/pipe/layers.h"
#include "core/pipe/partition.h"
#include "core/pipe/schedule.h"
#include "core/pipe/topology.h"
#include "sim/engine/simulator.h"
#include "sim/hardware/compute_model.h"
#include "sim/network/collectives.h"
#include "sim/step/model_states.h"
#include "sim/step/optimizer_wrappers.h"

namespace zp::sim {
namespace {

using pipe::Instruction;
using pipe::InstructionKind;
using trace::MemoryCategory;
using trace::OpKind;
using trace::StreamKind;

// engine.py's TENSOR_META_SIZE int32 values: the shape message before the first activation.
constexpr std::int64_t kTensorMetaBytes = 256 * 4;
// Token ids and labels are int64.
constexpr std::int64_t kTokenBytes = 8;
// The loss: a scalar all-reduced over data parallel, then [dp_group_loss, agg_loss] in fp32
// broadcast from the last stage.
constexpr std::int64_t kLossBytes = 4;
constexpr std::int64_t kLossBroadcastBytes = 8;
// The overflow flag or gradient norm the wrappers all-reduce over the model-parallel group.
constexpr std::int64_t kNormBytes = 4;

// A PartitionedTensor's meta (utils.py to_meta): ndims, the shape (batch, sequence, hidden),
// num_parts, rank and the tp + 1 partition offsets, as int64.
std::int64_t partition_meta_bytes(std::int64_t tp) {
  return (1 + 3 + 2 + tp + 1) * 8;
}

// ---- Groups -------------------------------------------------------------------------------------

// A process's communicators, by what the schedule names them.
enum Sel : std::int32_t { kPrev, kNext, kData, kSlice, kModelParallel, kPipe, kSelCount };

struct Group {
  std::vector<std::int64_t> ranks;    // global ranks, increasing
  std::vector<std::int32_t> parties;  // the simulated processes among them, increasing
  GroupShape shape;
  std::int64_t peer = -1;  // kPrev / kNext: the other rank
  std::int32_t trace_group = trace::kNone;
};

// Communicators from grid coordinates, as PipelineParallelGrid builds them.
class Groups {
 public:
  explicit Groups(const pipe::PipelineGrid& grid) : grid_(grid) {}
  std::int64_t rank(std::int64_t s, std::int64_t d, std::int64_t m) const {
    return grid_.stage_to_global(s, d, m);
  }
  std::vector<std::int64_t> data(std::int64_t s, std::int64_t m) const {
    std::vector<std::int64_t> g;
    for (std::int64_t d = 0; d < grid_.data_parallel_size(); ++d)
      g.push_back(rank(s, d, m));
    return g;
  }
  std::vector<std::int64_t> slice(std::int64_t s, std::int64_t d) const {
    std::vector<std::int64_t> g;
    for (std::int64_t m = 0; m < grid_.slice_parallel_size(); ++m)
      g.push_back(rank(s, d, m));
    return g;
  }
  std::vector<std::int64_t> pipe(std::int64_t d, std::int64_t m) const {
    std::vector<std::int64_t> g;
    for (std::int64_t s = 0; s < grid_.pipe_parallel_size(); ++s)
      g.push_back(rank(s, d, m));
    return g;
  }
  // ds_model_proc_group: every stage and slice of pipeline d.
  std::vector<std::int64_t> model_parallel(std::int64_t d) const {
    std::vector<std::int64_t> g;
    for (std::int64_t s = 0; s < grid_.pipe_parallel_size(); ++s) {
      for (std::int64_t m = 0; m < grid_.slice_parallel_size(); ++m)
        g.push_back(rank(s, d, m));
    }
    std::sort(g.begin(), g.end());
    return g;
  }

 private:
  const pipe::PipelineGrid& grid_;
};

// ---- What each stage does ---------------------------------------------------------------------

// A tensor-parallel all-reduce issued on the slice group after a module's forward or backward.
struct TensorReduce {
  std::int64_t bytes = 0;
  std::string name;  // the module that issues it
};

struct LayerWork {
  std::int64_t index = 0;  // in the pipeline's layer list
  TimeNs forward_ns = 0;
  TimeNs backward_ns = 0;
  std::int64_t forward_flops = 0;  // this rank's share
  std::int64_t backward_flops = 0;
  ckpt::LayerCheckpointCost ckpt;    // this rank's share
  std::int64_t grad_bytes = 0;       // gradients this layer's backward creates first on the stage
  std::int64_t workspace_bytes = 0;  // held only while its forward runs
  std::int64_t backward_workspace_bytes = 0;  // held only while its backward runs
  std::int32_t name = trace::kNone;
  std::vector<TensorReduce> forward_reduces, backward_reduces;  // in the order they run
};

struct TiedReduce {
  std::int32_t index = 0;  // into the run's tied groups
  std::int64_t bytes = 0;  // the tied weight's gradient
};

struct StagePlan {
  std::int64_t stage = 0;
  std::int64_t gpu = 0;             // a rank of the stage, for host copies
  std::int64_t begin = 0, end = 0;  // layers [begin, end)
  std::vector<LayerWork> layers;
  // The last stage's all-reduces of calls outside every layer (the vocab-parallel cross entropy,
  // which the loss runs there).
  std::vector<TensorReduce> loss_forward_reduces, loss_backward_reduces;
  std::int64_t loss_kept_bytes = 0;       // what the loss keeps for its backward
  std::int64_t loss_workspace_bytes = 0;  // what the loss holds while it runs
  std::int64_t loss_backward_workspace_bytes = 0;
  std::vector<ckpt::Segment> segments;
  std::int64_t contiguous_bytes = 0;
  bool contiguous_on_host = false;
  std::int64_t in_bytes = 0;   // what the stage receives (the first stage: token ids)
  std::int64_t out_bytes = 0;  // what it returns
  std::int64_t trainable_numel = 0;
  std::int64_t frozen_bytes = 0;
  std::int64_t trainable_bytes = 0;
  std::vector<std::int64_t> grad_numels;  // trainable parameters, in the optimizer's order
  std::vector<TiedReduce> tied;
  std::vector<Chunk> reduce_chunks;  // ReduceGrads' all-reduces
  int num_buffers = 0;
  std::vector<Instruction> stream;
  double model_flops_per_micro_batch = 0;
};

// ---- Programs ---------------------------------------------------------------------------------

// A stage's step, compiled once: the simulated process interprets it.
enum class Code : std::uint8_t {
  kCompute,     // a kernel on the compute stream
  kTransfer,    // a host copy on the compute stream (cpu_checkpointing)
  kAlloc,       // allocate into a register, then free what it held (a Python reassignment)
  kAllocOnce,   // allocate unless the register holds a block (lazily created buffers)
  kFree,        // free the register's block, if any
  kMove,        // hand the block of register `seq` to register `reg` (freeing what that held)
  kHost,        // add to a host category
  kSync,        // a send, a receive or a collective
  kRunning,     // what runs from now on
  kMicroBatch,  // the micro-batch from now on
};

enum class SyncKind : std::uint8_t { kSend, kRecv, kCollective };

// What a rendezvous is matched on, with the step and the communicator.
enum Tag : std::int32_t {
  kTagActivation,
  kTagActivationMeta,
  kTagGrad,
  kTagGradMeta,
  kTagShape,
  kTagLocal,  // a collective among one stage's ranks: matched by program position
  kTagTied,
  kTagNorm,
  kTagLoss,
  kTagLossBroadcast,
};

struct Op {
  Code code = Code::kCompute;
  bool first_step_only = false;
  SyncKind sync = SyncKind::kCollective;
  CollectiveKind collective = CollectiveKind::kAllReduce;
  TransferKind transfer = TransferKind::kAllReduce;
  OpKind kind = OpKind::kForward;
  StreamKind stream = StreamKind::kCompute;
  MemoryCategory category = MemoryCategory::kActivations;
  std::int32_t group = 0;  // Sel, or kSelCount + the tied group's index
  std::int32_t reg = -1;   // register; kRunning: the code; kMicroBatch: the micro-batch
  std::int32_t name = trace::kNone;
  std::int32_t tag = 0;
  std::int32_t seq = 0;
  std::int32_t micro_batch = -1;
  TimeNs duration = 0;
  std::int64_t bytes = 0;
  std::int64_t flops = 0;
};

struct Program {
  std::vector<Op> ops;
  std::int32_t registers = 0;
};

// Register numbering of a stage's program.
struct Registers {
  std::int32_t buffers = 0, layers = 0;
  std::int32_t in(int b) const { return b; }             // the buffer's input (loaded or received)
  std::int32_t out(int b) const { return buffers + b; }  // its output
  std::int32_t out_full(int b) const { return 2 * buffers + b; }   // output restored (tp)
  std::int32_t grad_full(int b) const { return 3 * buffers + b; }  // received grad gathered
  std::int32_t in_grad(int b) const { return 4 * buffers + b; }    // the input's gradient
  std::int32_t labels(int b) const { return 5 * buffers + b; }     // the last stage's labels
  std::int32_t loss(int b) const { return 6 * buffers + b; }       // what the loss keeps
  std::int32_t act(int b, std::int64_t k) const {                  // a layer's saved tensors
    return 7 * buffers + b * layers + static_cast<std::int32_t>(k);
  }
  std::int32_t grad(std::int64_t k) const {  // parameter gradients a layer creates
    return 7 * buffers + buffers * layers + static_cast<std::int32_t>(k);
  }
  std::int32_t single(int i) const { return 7 * buffers + buffers * layers + layers + i; }
  std::int32_t recv_buf() const { return single(0); }
  std::int32_t grad_buf() const { return single(1); }
  std::int32_t tmp() const { return single(2); }
  std::int32_t recompute() const { return single(3); }
  std::int32_t ipg() const { return single(4); }
  std::int32_t part_grads() const { return single(5); }
  std::int32_t fp32_grads() const { return single(6); }
  std::int32_t flat() const { return single(7); }
  // The last stage's input and its gradient after SendGrad: the output's autograd graph still
  // reaches them (the input's AccumulateGrad node holds it, and it holds its .grad) until the
  // buffer's next forward replaces the output.
  std::int32_t graph_in(int b) const { return single(8) + b; }
  std::int32_t graph_in_grad(int b) const { return single(8) + buffers + b; }
  std::int32_t count() const { return single(8) + 2 * buffers; }
};

struct Shared {
  const RunSpec* run = nullptr;
  const pipe::PipelineLayers* layers = nullptr;
  const ComputeModel* compute = nullptr;
  const CollectiveModel* network = nullptr;
  trace::Trace* trace = nullptr;
  std::int64_t p = 1, dp = 1, tp = 1, m = 1;
  bool pipe_partitioned = false;  // is_pipe_partitioned: tp > 1 and pipeline.pipe_partitioned
  bool grad_partitioned = false;
  Precision precision;
  OptimizerShape optimizer;
  std::int64_t activation_elem = 2;
  std::int64_t token_bytes = 0;  // one micro-batch's ids (and labels)
};

// A PartitionedTensor's local part on slice rank 0, the largest (partition_uniform).
std::int64_t partition_bytes(const Shared& s, std::int64_t bytes) {
  const std::int64_t numel = bytes / s.activation_elem;
  return ceil_div(numel, s.tp) * s.activation_elem;
}

class Builder {
 public:
  Builder(const Shared& shared, const StagePlan& plan)
      : s_(shared), plan_(plan), first_(plan.stage == 0), last_(plan.stage == shared.p - 1) {
    r_.buffers = plan.num_buffers;
    r_.layers = static_cast<std::int32_t>(plan.layers.size());
    prog_.registers = r_.count();
    part_ = s_.pipe_partitioned;
    gpart_ = s_.grad_partitioned;
  }

  Program build() {
    bool first_send = true, first_recv = true;
    for (const Instruction& in : plan_.stream) {
      const int b = in.buffer_id;
      const int mb = in.micro_batch;
      micro_batch(mb);  // -1 for the batch-level instructions
      switch (in.kind) {
        case InstructionKind::kLoadMicroBatch:
          load(b);
          break;
        case InstructionKind::kRecvActivation:
          recv_activation(b, first_recv);
          first_recv = false;
          break;
        case InstructionKind::kForwardPass:
          forward(b);
          break;
        case InstructionKind::kSendActivation:
          send_activation(first_send);
          first_send = false;
          break;
        case InstructionKind::kRecvGrad:
          recv_grad(b);
          break;
        case InstructionKind::kBackwardPass:
          backward(b);
          break;
        case InstructionKind::kSendGrad:
          send_grad(b);
          break;
        case InstructionKind::kReduceTiedGrads:
          reduce_tied();
          break;
        case InstructionKind::kReduceGrads:
          reduce_grads();
          break;
        case InstructionKind::kOptimizerStep:
          optimizer_step();
          break;
      }
    }
    aggregate_loss();
    return std::move(prog_);
  }

 private:
  std::int32_t label(const std::string& text) const {
    return s_.trace ? s_.trace->intern(text) : trace::kNone;
  }
  // "what (micro-batch k)" for a tensor of the current micro-batch, "what" outside one: a block's
  // name in the trace. Formatted only when there is a trace.
  std::int32_t mb_label(std::string_view what) const {
    if (!s_.trace) return trace::kNone;
    std::string text(what);
    if (mb_ >= 0) text += " (micro-batch " + std::to_string(mb_) + ")";
    return s_.trace->intern(text);
  }
  std::int32_t layer_label(const LayerWork& l) const {
    return s_.trace ? mb_label(s_.layers->layers[static_cast<std::size_t>(l.index)].name)
                    : trace::kNone;
  }
  // The gradients of a layer's parameters, made once a step.
  std::int32_t grads_label(const LayerWork& l) const {
    return s_.trace ? s_.trace->intern(s_.layers->layers[static_cast<std::size_t>(l.index)].name +
                                       " gradients")
                    : trace::kNone;
  }

  Op& push(Code code) {
    prog_.ops.emplace_back();
    prog_.ops.back().code = code;
    prog_.ops.back().micro_batch = mb_;
    return prog_.ops.back();
  }
  void running(std::int32_t code) { push(Code::kRunning).reg = code; }
  void micro_batch(int mb) {
    if (mb == mb_) return;
    mb_ = mb;
    push(Code::kMicroBatch).reg = mb;
  }
  // `name`: the block's name in the trace.
  void alloc(std::int32_t reg, MemoryCategory category, std::int64_t bytes, std::int32_t name,
             bool once = false) {
    Op& op = push(once ? Code::kAllocOnce : Code::kAlloc);
    op.reg = reg;
    op.category = category;
    op.bytes = bytes;
    op.name = name;
  }
  void free(std::int32_t reg) { push(Code::kFree).reg = reg; }
  void move(std::int32_t from, std::int32_t to) {
    Op& op = push(Code::kMove);
    op.reg = to;
    op.seq = from;
  }
  // `body` with `bytes` of `category` held around it (in the scratch register).
  template <class F>
  void with_workspace(MemoryCategory category, std::int64_t bytes, std::int32_t name, F&& body) {
    if (bytes > 0) alloc(r_.tmp(), category, bytes, name);
    body();
    if (bytes > 0) free(r_.tmp());
  }
  void host(MemoryCategory category, std::int64_t delta) {
    Op& op = push(Code::kHost);
    op.category = category;
    op.bytes = delta;
  }
  void compute(OpKind kind, TimeNs duration, std::int64_t flops, std::int32_t name) {
    if (duration <= 0 && flops <= 0) return;
    Op& op = push(Code::kCompute);
    op.kind = kind;
    op.duration = duration;
    op.flops = flops;
    op.name = name;
  }
  void host_copy(bool to_host, std::int64_t bytes, std::int32_t name) {
    Op& op = push(Code::kTransfer);
    op.kind = to_host ? OpKind::kCopyToHost : OpKind::kCopyToDevice;
    op.transfer = to_host ? TransferKind::kDeviceToHost : TransferKind::kHostToDevice;
    op.stream = to_host ? StreamKind::kDeviceToHost : StreamKind::kHostToDevice;
    op.duration = s_.network->host_copy(plan_.gpu, bytes);
    op.bytes = bytes;
    op.name = name;
  }
  Op& p2p(bool send, Sel group, Tag tag, std::int64_t bytes, const char* what) {
    Op& op = push(Code::kSync);
    op.sync = send ? SyncKind::kSend : SyncKind::kRecv;
    op.collective = CollectiveKind::kSendRecv;
    op.transfer = TransferKind::kSendRecv;
    op.kind = send ? OpKind::kSend : OpKind::kRecv;
    op.stream = send ? StreamKind::kPipeSend : StreamKind::kPipeRecv;
    op.group = group;
    op.tag = tag;
    op.seq = mb_;
    op.bytes = bytes;
    op.name = label(what);
    return op;
  }
  void collective(CollectiveKind kind, std::int32_t group, Tag tag, std::int64_t bytes,
                  const std::string& what, std::int32_t seq = 0) {
    Op& op = push(Code::kSync);
    op.sync = SyncKind::kCollective;
    op.collective = kind;
    switch (kind) {
      case CollectiveKind::kAllGather:
        op.transfer = TransferKind::kAllGather;
        op.kind = OpKind::kAllGather;
        break;
      case CollectiveKind::kReduceScatter:
        op.transfer = TransferKind::kReduceScatter;
        op.kind = OpKind::kReduceScatter;
        break;
      case CollectiveKind::kAllReduce:
        op.transfer = TransferKind::kAllReduce;
        op.kind = OpKind::kAllReduce;
        break;
      case CollectiveKind::kBroadcast:
        op.transfer = TransferKind::kBroadcast;
        op.kind = OpKind::kBroadcast;
        break;
      case CollectiveKind::kSendRecv:
        ZP_CHECK(false, "send/recv is not a collective here");
    }
    op.group = group;
    op.tag = tag;
    // Collectives among one stage's ranks run the same program: its position matches them.
    op.seq = tag == kTagLocal ? static_cast<std::int32_t>(prog_.ops.size()) : seq;
    op.bytes = bytes;
    op.name = label(what);
  }
  // Megatron's tensor-parallel all-reduces block the compute stream, over the slice group.
  void tensor_reduces(const std::vector<TensorReduce>& list) {
    for (const TensorReduce& t : list)
      collective(CollectiveKind::kAllReduce, kSlice, kTagLocal, t.bytes, t.name);
  }
  std::int32_t layer_code(std::int64_t k, int phase) const {
    const auto total = static_cast<std::int64_t>(s_.layers->layers.size());
    return static_cast<std::int32_t>(phase * total + plan_.layers[static_cast<size_t>(k)].index);
  }

  // Sizes on the wire.
  std::int64_t act_sent() const {  // this stage's output, as sent to the next
    return part_ ? partition_bytes(s_, plan_.out_bytes) : plan_.out_bytes;
  }
  std::int64_t act_received() const {  // the previous stage's output, as received
    return part_ ? partition_bytes(s_, plan_.in_bytes) : plan_.in_bytes;
  }
  std::int64_t grad_sent() const {
    return gpart_ ? partition_bytes(s_, plan_.in_bytes) : plan_.in_bytes;
  }
  std::int64_t grad_received() const {
    return gpart_ ? partition_bytes(s_, plan_.out_bytes) : plan_.out_bytes;
  }

  // _exec_load_micro_batch: the first stage loads the inputs, the last the labels; each replaces
  // what the buffer held.
  void load(int b) {
    running(kRunningLoadMicroBatch);
    if (first_) alloc(r_.in(b), MemoryCategory::kPipeBuffers, s_.token_bytes, mb_label("inputs"));
    if (last_)
      alloc(r_.labels(b), MemoryCategory::kPipeBuffers, s_.token_bytes, mb_label("labels"));
  }

  // _exec_recv_activations: the first receive takes the shape message and allocates the receive
  // buffer (pipe_recv_buf), kept for good; every receive is cloned into the pipeline buffer.
  void recv_activation(int b, bool first) {
    running(kRunningRecvActivation);
    if (first) p2p(false, kPrev, kTagShape, kTensorMetaBytes, "recv meta").first_step_only = true;
    alloc(r_.recv_buf(), MemoryCategory::kPipeBuffers, act_received(), label("receive buffer"),
          /*once=*/true);
    if (part_) p2p(false, kPrev, kTagActivationMeta, partition_meta_bytes(s_.tp), "recv meta");
    p2p(false, kPrev, kTagActivation, act_received(), "recv activation");
    alloc(r_.in(b), MemoryCategory::kPipeBuffers, act_received(),
          mb_label(part_ ? "input part" : "input"));
  }

  void send_activation(bool first) {
    running(kRunningSendActivation);
    if (first) p2p(true, kNext, kTagShape, kTensorMetaBytes, "send meta").first_step_only = true;
    if (part_) p2p(true, kNext, kTagActivationMeta, partition_meta_bytes(s_.tp), "send meta");
    p2p(true, kNext, kTagActivation, act_sent(), "send activation");
  }

  // _exec_forward_pass: a partitioned input is gathered over the slice group first; each layer
  // keeps what checkpointing says; the output stays in the pipeline buffer (partitioned when it
  // goes to a next stage with pipe_partitioned).
  void forward(int b) {
    if (part_ && !first_) {
      running(kRunningRecvActivation);
      collective(CollectiveKind::kAllGather, kSlice, kTagLocal, plan_.in_bytes, "gather input");
      alloc(r_.in(b), MemoryCategory::kPipeBuffers, plan_.in_bytes, mb_label("input"));
    }
    for (std::size_t k = 0; k < plan_.layers.size(); ++k) {
      const LayerWork& l = plan_.layers[k];
      running(layer_code(static_cast<std::int64_t>(k), 0));
      const std::int32_t name = layer_label(l);
      alloc(r_.act(b, static_cast<std::int64_t>(k)), MemoryCategory::kActivations,
            l.ckpt.held_bytes, name);
      if (l.ckpt.host_bytes > 0) host(MemoryCategory::kHostActivations, l.ckpt.host_bytes);
      if (l.ckpt.to_host_bytes > 0) host_copy(true, l.ckpt.to_host_bytes, l.name);
      with_workspace(MemoryCategory::kActivations, l.workspace_bytes, name,
                     [&] { compute(OpKind::kForward, l.forward_ns, l.forward_flops, l.name); });
      tensor_reduces(l.forward_reduces);
    }
    if (last_) {
      // The logits go into the pipeline buffer before the loss is computed from them; the
      // previous micro-batch's go then, and with them the graph that held its input.
      alloc(r_.out(b), MemoryCategory::kPipeBuffers, plan_.out_bytes, mb_label("logits"));
      if (!first_) {
        free(r_.graph_in(b));
        free(r_.graph_in_grad(b));
      }
      // The loss (loss_fn on the last layer's output) keeps what its backward needs, and holds
      // its workspace while it runs.
      const std::int32_t loss = mb_label("loss");
      if (plan_.loss_kept_bytes > 0)
        alloc(r_.loss(b), MemoryCategory::kActivations, plan_.loss_kept_bytes, loss);
      with_workspace(MemoryCategory::kActivations, plan_.loss_workspace_bytes, loss, [] {});
      tensor_reduces(plan_.loss_forward_reduces);
    }
    if (part_ && !last_) {
      alloc(r_.tmp(), MemoryCategory::kPipeBuffers, plan_.out_bytes, mb_label("output"));
      alloc(r_.out(b), MemoryCategory::kPipeBuffers, partition_bytes(s_, plan_.out_bytes),
            mb_label("output part"));
      free(r_.tmp());
    } else if (!last_) {
      alloc(r_.out(b), MemoryCategory::kPipeBuffers, plan_.out_bytes, mb_label("output"));
    }
  }

  // _exec_recv_grads: with pipe_partitioned but not grad_partitioned the output is gathered back
  // first; the gradient buffer is allocated once and shares the receive buffer when that is
  // large enough (_allocate_or_extend_buffers, by tensor index: a partitioned message carries
  // its meta first).
  void recv_grad(int b) {
    running(kRunningRecvGrad);
    if (part_ && !gpart_) {
      collective(CollectiveKind::kAllGather, kSlice, kTagLocal, plan_.out_bytes, "gather output");
      alloc(r_.out(b), MemoryCategory::kPipeBuffers, plan_.out_bytes, mb_label("output"));
    }
    const int recv_index = part_ ? 1 : 0;
    const int grad_index = gpart_ ? 1 : 0;
    if (first_ || recv_index != grad_index || grad_received() > act_received()) {
      alloc(r_.grad_buf(), MemoryCategory::kPipeBuffers, grad_received(),
            label("gradient receive buffer"), /*once=*/true);
    }
    if (gpart_) p2p(false, kNext, kTagGradMeta, partition_meta_bytes(s_.tp), "recv meta");
    p2p(false, kNext, kTagGrad, grad_received(), "recv grad");
  }

  void send_grad(int b) {
    running(kRunningSendGrad);
    if (gpart_) {
      alloc(r_.tmp(), MemoryCategory::kPipeBuffers, partition_bytes(s_, plan_.in_bytes),
            mb_label("input gradient part"));
      p2p(true, kPrev, kTagGradMeta, partition_meta_bytes(s_.tp), "send meta");
    }
    p2p(true, kPrev, kTagGrad, grad_sent(), "send grad");
    if (gpart_) free(r_.tmp());
    if (last_) {
      // The buffer lets go of them, but the output's graph holds them until its next forward.
      move(r_.in(b), r_.graph_in(b));
      move(r_.in_grad(b), r_.graph_in_grad(b));
    } else {
      free(r_.in(b));
      free(r_.in_grad(b));
    }
  }

  // _exec_backward_pass: checkpointed segments recompute their forward first (inputs back from
  // the host or gathered over the slice group), then every layer runs backward in reverse; a
  // layer's saved tensors go at the end of its backward, a segment's recomputed ones at the end of
  // the segment's.
  void backward(int b) {
    const Wrapper w = s_.precision.wrapper;
    if (w == Wrapper::kBf16) {
      // BF16_Optimizer.clear_lp_grads sets the 16-bit gradients to None before each backward.
      for (std::size_t k = 0; k < plan_.layers.size(); ++k)
        free(r_.grad(static_cast<std::int64_t>(k)));
    }
    if (!last_ && part_ && gpart_) {
      running(kRunningRecvGrad);
      collective(CollectiveKind::kAllGather, kSlice, kTagLocal, plan_.out_bytes, "gather output");
      alloc(r_.out_full(b), MemoryCategory::kPipeBuffers, plan_.out_bytes, mb_label("output"));
    }
    if (!last_ && gpart_) {
      running(kRunningRecvGrad);
      collective(CollectiveKind::kAllGather, kSlice, kTagLocal, plan_.out_bytes, "gather grad");
      alloc(r_.grad_full(b), MemoryCategory::kPipeBuffers, plan_.out_bytes,
            mb_label("output gradient"));
    }
    if (last_) {
      with_workspace(MemoryCategory::kActivations, plan_.loss_backward_workspace_bytes,
                     mb_label("loss"), [] {});
      if (plan_.loss_kept_bytes > 0) free(r_.loss(b));
      tensor_reduces(plan_.loss_backward_reduces);
    }
    for (auto seg = plan_.segments.rbegin(); seg != plan_.segments.rend(); ++seg) {
      const std::int64_t first = seg->begin - plan_.begin;
      const std::int64_t end = seg->end - plan_.begin;
      if (seg->checkpointed) {
        const LayerWork& head = plan_.layers[static_cast<size_t>(first)];
        running(layer_code(first, 2));
        if (head.ckpt.from_host_bytes > 0) host_copy(false, head.ckpt.from_host_bytes, head.name);
        if (head.ckpt.allgather_bytes > 0) {
          collective(CollectiveKind::kAllGather, kSlice, kTagLocal,
                     head.ckpt.allgather_bytes * s_.tp / (s_.tp - 1), "gather checkpoint");
        }
        std::int64_t recompute = 0;
        for (std::int64_t k = first; k < end; ++k)
          recompute += plan_.layers[static_cast<size_t>(k)].ckpt.recompute_bytes;
        alloc(r_.recompute(), MemoryCategory::kRecompute, recompute, layer_label(head));
        for (std::int64_t k = first; k < end; ++k) {
          const LayerWork& l = plan_.layers[static_cast<size_t>(k)];
          running(layer_code(k, 2));
          with_workspace(MemoryCategory::kRecompute, l.workspace_bytes, layer_label(l), [&] {
            compute(OpKind::kRecompute, l.forward_ns, l.ckpt.extra_forward_flops, l.name);
          });
          tensor_reduces(l.forward_reduces);
        }
      }
      for (std::int64_t k = end - 1; k >= first; --k) {
        const LayerWork& l = plan_.layers[static_cast<size_t>(k)];
        running(layer_code(k, 1));
        with_workspace(
            MemoryCategory::kActivations, l.backward_workspace_bytes, layer_label(l),
            [&] { compute(OpKind::kBackward, l.backward_ns, l.backward_flops, l.name); });
        tensor_reduces(l.backward_reduces);
        // Autograd creates a parameter's .grad at its first backward of the step.
        alloc(r_.grad(k), MemoryCategory::kGradBuckets, l.grad_bytes, grads_label(l),
              /*once=*/true);
        if (!seg->checkpointed || k != first) free(r_.act(b, k));
      }
      if (seg->checkpointed) {
        const LayerWork& head = plan_.layers[static_cast<size_t>(first)];
        free(r_.act(b, first));
        free(r_.recompute());
        if (head.ckpt.host_bytes > 0) host(MemoryCategory::kHostActivations, -head.ckpt.host_bytes);
      }
    }
    if (w == Wrapper::kBf16 && plan_.trainable_numel > 0) {
      // update_hp_grads: the 16-bit gradients are added into the fp32 accumulation buffer.
      const std::int64_t accum = dtype_size(s_.precision.accum);
      const std::int64_t bytes =
          plan_.trainable_numel * (dtype_size(s_.precision.model) + 2 * accum);
      compute(OpKind::kBackward, s_.compute->time(0, bytes), 0, label("update_hp_grads"));
    }
    if (!last_) {
      free(r_.out(b));
      free(r_.out_full(b));
      free(r_.grad_full(b));
    }
    if (!first_)
      alloc(r_.in_grad(b), MemoryCategory::kPipeBuffers, plan_.in_bytes,
            mb_label("input gradient"));
  }

  void reduce_tied() {
    running(kRunningReduceTiedGrads);
    for (const TiedReduce& t : plan_.tied) {
      collective(CollectiveKind::kAllReduce, kSelCount + t.index, kTagTied, t.bytes,
                 "tied grad " + std::to_string(t.index), t.index);
    }
  }

  void free_grads() {
    for (std::size_t k = 0; k < plan_.layers.size(); ++k)
      free(r_.grad(static_cast<std::int64_t>(k)));
  }

  void reduce_grads() {
    running(kRunningReduceGrads);
    const Wrapper w = s_.precision.wrapper;
    const std::int64_t elem =
        w == Wrapper::kBf16 ? dtype_size(s_.precision.accum) : dtype_size(s_.precision.model);
    const ZeroConfig& z = s_.run->deepspeed.zero;
    if (w == Wrapper::kZero && z.contiguous_gradients) {
      alloc(r_.ipg(), MemoryCategory::kGradBuckets, z.reduce_bucket_size * elem,
            label("ipg buffer"));
    }
    int index = 0;
    for (const Chunk& c : plan_.reduce_chunks) {
      const std::int64_t bytes = c.numel * elem;
      if (s_.dp > 1) {
        const std::string name = "bucket " + std::to_string(index);
        if (c.copied) alloc(r_.flat(), MemoryCategory::kCommBuffers, bytes, label(name));
        collective(CollectiveKind::kAllReduce, kData, kTagLocal, bytes, name);
        if (c.copied) free(r_.flat());
      }
      ++index;
    }
    if (w == Wrapper::kZero) {
      free(r_.ipg());
      // The partition's gradients (averaged_gradients) until the step; the full ones go.
      alloc(r_.part_grads(), MemoryCategory::kGradPartitions,
            partition_numel() * dtype_size(s_.precision.accum), label("gradient partition"));
      free_grads();
    }
  }

  std::int64_t padded_numel() const {
    const std::int64_t align = kNcclStartAlignmentFactor * s_.dp;
    return ceil_div(plan_.trainable_numel, align) * align;
  }
  std::int64_t partition_numel() const { return padded_numel() / s_.dp; }

  void optimizer_step() {
    running(kRunningOptimizer);
    const Wrapper w = s_.precision.wrapper;
    const std::int64_t model = dtype_size(s_.precision.model);
    const std::int64_t accum = dtype_size(s_.precision.accum);
    if (w != Wrapper::kNone) {
      // Overflow check or global gradient norm, over every stage and slice of the pipeline.
      collective(CollectiveKind::kAllReduce, kModelParallel, kTagNorm, kNormBytes, "grad norm");
    }
    std::int64_t numel = plan_.trainable_numel;
    OptimizerShape shape = s_.optimizer;
    std::int64_t grad = accum, param = model;
    switch (w) {
      case Wrapper::kNone:
        // No master copy: the fp32 parameters are read and written as the master would be.
        shape.master_bytes = 4;
        param = 0;
        grad = 4;
        break;
      case Wrapper::kFp16:
        // FP16_Optimizer flattens the gradients into fp32 and drops the fp16 ones.
        alloc(r_.fp32_grads(), MemoryCategory::kGradBuckets, numel * 4, label("fp32 gradients"));
        free_grads();
        grad = 4;
        break;
      case Wrapper::kBf16:
      case Wrapper::kZero:
        numel = partition_numel();
        break;
    }
    compute(OpKind::kOptimizerStep, s_.compute->time(0, numel * shape.step_bytes(grad, param)), 0,
            label("optimizer step"));
    switch (w) {
      case Wrapper::kNone:
        free_grads();  // DeepSpeedEngine.zero_grad
        break;
      case Wrapper::kFp16:
        free(r_.fp32_grads());
        break;
      case Wrapper::kZero:
        free(r_.part_grads());
        [[fallthrough]];
      case Wrapper::kBf16:
        if (s_.dp > 1) {
          // all_gather_into_tensor_dp_groups: the updated flat buffer, whole.
          collective(CollectiveKind::kAllGather, kData, kTagLocal, padded_numel() * model,
                     "gather parameters");
        }
        break;
    }
  }

  // _aggregate_total_loss: the last stage averages the loss over data parallel and broadcasts it
  // to the pipeline.
  void aggregate_loss() {
    running(kRunningLoss);
    if (last_ && s_.dp > 1) {
      collective(CollectiveKind::kAllReduce, kData, kTagLoss, kLossBytes, "loss");
    }
    if (s_.p > 1) {
      collective(CollectiveKind::kBroadcast, kPipe, kTagLossBroadcast, kLossBroadcastBytes,
                 "loss broadcast");
    }
  }

  const Shared& s_;
  const StagePlan& plan_;
  bool first_, last_;
  bool part_ = false, gpart_ = false;
  Registers r_;
  Program prog_;
  int mb_ = -1;
};

// ---- Processes --------------------------------------------------------------------------------

struct Process {
  std::int32_t index = 0;
  std::int64_t stage = 0;
  std::vector<std::int64_t> ranks;
  std::int64_t rep = 0;  // the rank whose links are costed
  std::string label;
  const Program* program = nullptr;
  std::array<Group, kSelCount> groups;
  std::vector<Group> tied;  // by tied group index; empty where the stage holds none
  std::unique_ptr<MemoryAccountant> memory;
  std::vector<MemoryAccountant::Block> regs;
  std::int32_t trace_rank = 0;

  TimeNs now = 0;
  std::size_t pc = 0;
  std::int64_t step = 0;
  std::int64_t steps_left = 0;
  bool first_step = true;
  bool done = false;
  std::int32_t micro_batch = -1;
  TimeNs compute_ns = 0;
  TimeNs comm_ns = 0;
  StepReport current;
  std::array<TransferTotals, kTransferKindCount> transfers{};
  std::vector<StepReport> steps;
  std::int64_t peak_seen = -1;
  std::int32_t peak_micro_batch = -1;
  TimeNs bubble_ns = 0;
};

class Runner {
 public:
  // `collective_host_ns`: ClusterSpec::collective_host_ns, taken by each collective that moves
  // anything from its rank's timeline before the rank joins it.
  Runner(Simulator& sim, std::vector<Process>& procs, const CollectiveModel& network,
         trace::Trace* trace, TimeNs collective_host_ns)
      : sim_(sim),
        procs_(procs),
        network_(network),
        trace_(trace),
        collective_host_ns_(collective_host_ns) {}

  void begin_step(Process& pr) {
    pr.pc = 0;
    pr.micro_batch = -1;
    pr.compute_ns = 0;
    pr.comm_ns = 0;
    pr.current = StepReport{};
    pr.current.step = pr.step;
    pr.current.start_ns = pr.now;
    pr.memory->set_step(static_cast<std::int32_t>(pr.step));
    pr.memory->reset_window(pr.now);
    if (trace_) {
      trace_->markers.push_back(
          trace::Marker{pr.trace_rank, pr.now, trace_->intern("step " + std::to_string(pr.step))});
    }
  }

  // Runs a process until it waits for others or has no step left.
  void resume(std::int32_t index) {
    Process& pr = procs_[static_cast<std::size_t>(index)];
    const std::vector<Op>& ops = pr.program->ops;
    while (!pr.done) {
      if (pr.pc == ops.size()) {
        end_step(pr);
        continue;
      }
      const Op& op = ops[pr.pc++];
      if (op.first_step_only && !pr.first_step) continue;
      switch (op.code) {
        case Code::kCompute:
          record(pr, op, StreamKind::kCompute, pr.now, pr.now + op.duration);
          pr.now += op.duration;
          pr.compute_ns += op.duration;
          break;
        case Code::kTransfer: {
          TransferTotals& t = pr.transfers[static_cast<std::size_t>(op.transfer)];
          ++t.count;
          t.bytes += op.bytes;
          t.busy_ns += op.duration;
          record(pr, op, op.stream, pr.now, pr.now + op.duration);
          pr.now += op.duration;
          pr.comm_ns += op.duration;
          break;
        }
        case Code::kAlloc: {
          MemoryAccountant::Block& reg = pr.regs[static_cast<std::size_t>(op.reg)];
          const MemoryAccountant::Block old = reg;
          reg = op.bytes > 0 ? pr.memory->allocate(op.category, op.bytes, pr.now,
                                                   AllocStream::kCompute, op.name)
                             : -1;
          if (old >= 0) pr.memory->free(old, pr.now);
          note_peak(pr);
          break;
        }
        case Code::kAllocOnce: {
          MemoryAccountant::Block& reg = pr.regs[static_cast<std::size_t>(op.reg)];
          if (reg < 0 && op.bytes > 0) {
            reg =
                pr.memory->allocate(op.category, op.bytes, pr.now, AllocStream::kCompute, op.name);
            note_peak(pr);
          }
          break;
        }
        case Code::kFree: {
          MemoryAccountant::Block& reg = pr.regs[static_cast<std::size_t>(op.reg)];
          if (reg >= 0) pr.memory->free(reg, pr.now);
          reg = -1;
          break;
        }
        case Code::kMove: {
          MemoryAccountant::Block& from = pr.regs[static_cast<std::size_t>(op.seq)];
          MemoryAccountant::Block& to = pr.regs[static_cast<std::size_t>(op.reg)];
          if (to >= 0) pr.memory->free(to, pr.now);
          to = from;
          from = -1;
          break;
        }
        case Code::kHost:
          pr.memory->add_host(op.category, op.bytes, pr.now);
          break;
        case Code::kRunning:
          pr.memory->set_running(op.reg);
          break;
        case Code::kMicroBatch:
          pr.micro_batch = op.reg;
          break;
        case Code::kSync:
          if (!arrive(pr, op)) return;
          break;
      }
    }
  }

  bool idle() const { return pending_.empty(); }

 private:
  using Key = std::tuple<std::int64_t, std::int32_t, std::int64_t, std::int64_t>;
  struct Arrival {
    std::int32_t process = 0;
    TimeNs time = 0;
    const Op* op = nullptr;
  };
  struct Pending {
    std::vector<Arrival> arrivals;
  };

  static const Group& group_of(const Process& pr, const Op& op) {
    if (op.group < kSelCount) return pr.groups[static_cast<std::size_t>(op.group)];
    return pr.tied[static_cast<std::size_t>(op.group - kSelCount)];
  }

  void note_peak(Process& pr) {
    if (pr.memory->peak().allocated != pr.peak_seen) {
      pr.peak_seen = pr.memory->peak().allocated;
      pr.peak_micro_batch = pr.micro_batch;
    }
  }

  void record(const Process& pr, const Op& op, StreamKind stream, TimeNs start, TimeNs end,
              std::int32_t group = trace::kNone) {
    if (!trace_) return;
    trace::Op t;
    t.rank = pr.trace_rank;
    t.stream = stream;
    t.kind = op.kind;
    t.start = start;
    t.end = end;
    t.name = op.name;
    t.bytes = op.code == Code::kCompute ? 0 : op.bytes;
    t.flops = op.flops;
    t.step = static_cast<std::int32_t>(pr.step);
    t.micro_batch = op.micro_batch >= 0 ? op.micro_batch : trace::kNone;
    t.group = group;
    trace_->ops.push_back(t);
  }

  // Joins the rendezvous of `op`; true when it completed at once (the process continues).
  bool arrive(Process& pr, const Op& op) {
    const Group& g = group_of(pr, op);
    ZP_CHECK(!g.parties.empty(), "stage ", pr.stage, " has no communicator for ", op.name);
    const std::size_t expected = op.sync == SyncKind::kCollective ? g.parties.size() : 2;
    if (op.sync == SyncKind::kCollective && collective_host_ns_ > 0 && cost(op, g) > 0)
      pr.now += collective_host_ns_;
    if (expected == 1) {
      // Every member is this process's own rank class: they arrive together.
      finish(pr, op, g, pr.now, pr.now + cost(op, g));
      return true;
    }
    std::int64_t instance = g.ranks.front();
    if (op.sync == SyncKind::kSend) instance = pr.rep;
    if (op.sync == SyncKind::kRecv) instance = g.peer;
    const Key key{pr.step, op.tag, op.seq, instance};
    Pending& pending = pending_[key];
    pending.arrivals.push_back({pr.index, pr.now, &op});
    if (pending.arrivals.size() < expected) return false;
    TimeNs start = 0;
    for (const Arrival& a : pending.arrivals)
      start = std::max(start, a.time);
    const TimeNs end = start + cost(op, g);
    const std::vector<Arrival> arrivals = std::move(pending.arrivals);
    pending_.erase(key);
    for (const Arrival& a : arrivals) {
      Process& q = procs_[static_cast<std::size_t>(a.process)];
      finish(q, *a.op, group_of(q, *a.op), start, end);
      if (a.process != pr.index) {
        const std::int32_t index = a.process;
        sim_.schedule_at(end, [this, index] { resume(index); });
      }
    }
    return true;
  }

  TimeNs cost(const Op& op, const Group& g) const {
    return network_.cost(op.collective, g.shape, op.bytes).time;
  }

  void finish(Process& pr, const Op& op, const Group& g, TimeNs start, TimeNs end) {
    TransferTotals& t = pr.transfers[static_cast<std::size_t>(op.transfer)];
    ++t.count;
    t.bytes += op.bytes;
    t.busy_ns += end - start;
    // Without overlap_comm a collective holds the compute stream; send/recv show on the pipe
    // streams, which the compute stream waits for.
    record(pr, op, op.sync == SyncKind::kCollective ? StreamKind::kCompute : op.stream, start, end,
           g.trace_group);
    pr.comm_ns += end - start;
    pr.now = end;
  }

  void end_step(Process& pr) {
    StepReport& s = pr.current;
    s.end_ns = pr.now;
    s.peak = pr.memory->window_peak();
    s.compute_ns = pr.compute_ns;
    s.exposed_comm_ns = pr.comm_ns;
    pr.bubble_ns = s.time_ns() - pr.compute_ns - pr.comm_ns;
    s.bubble_ns = pr.bubble_ns;
    pr.steps.push_back(s);
    if (--pr.steps_left <= 0) {
      pr.done = true;
      return;
    }
    ++pr.step;
    pr.first_step = false;
    begin_step(pr);
  }

  Simulator& sim_;
  std::vector<Process>& procs_;
  const CollectiveModel& network_;
  trace::Trace* trace_;
  TimeNs collective_host_ns_;
  std::map<Key, Pending> pending_;
};

// ---- Setup ------------------------------------------------------------------------------------

SourceLocation where(const RunSpec& run, const std::string& key) {
  return {run.file.string(), 0, 0, key};
}

void check_run(const RunSpec& run) {
  const DeepSpeedConfig& c = run.deepspeed;
  if (c.zero.stage >= 2) {
    throw UserError(ErrorKind::kConflict, where(run, "zero_optimization.stage"),
                    "ZeRO stage " + std::to_string(c.zero.stage) +
                        " cannot be combined with pipeline parallelism: DeepSpeed's "
                        "PipelineEngine asserts \"ZeRO-2 and ZeRO-3 are incompatible with "
                        "pipeline parallelism\"");
  }
  if (c.pipeline.stages && *c.pipeline.stages != run.parallel.pipeline) {
    throw UserError(ErrorKind::kConflict, where(run, "pipeline.stages"),
                    "pipeline.stages is " + std::to_string(*c.pipeline.stages) +
                        ", but the run's pipeline degree is " +
                        std::to_string(run.parallel.pipeline) + " (parallel.pipeline)");
  }
  if (c.zero.offload_optimizer && c.zero.offload_optimizer->device != OffloadDevice::kNone) {
    throw UserError(ErrorKind::kUnsupported, where(run, "zero_optimization.offload_optimizer"),
                    "an offloaded optimizer is not simulated with a pipeline yet");
  }
  if (run.parallel.pipeline < 1 || run.parallel.data < 1 || run.parallel.tensor < 1) {
    throw UserError(ErrorKind::kValue, where(run, "parallel"),
                    "parallel degrees must be at least 1");
  }
}

// The layer whose call each forward call runs inside; -1 outside every layer.
std::vector<std::int32_t> call_owners(const ModuleTree& tree, const pipe::PipelineLayers& layers) {
  const auto& calls = tree.calls();
  std::vector<std::int32_t> layer_of(calls.size(), -1);
  for (std::size_t i = 0; i < layers.layers.size(); ++i) {
    if (layers.layers[i].call != kNoCall)
      layer_of[static_cast<std::size_t>(layers.layers[i].call)] = static_cast<std::int32_t>(i);
  }
  std::vector<std::int32_t> owner(calls.size(), -1);
  for (std::size_t c = 0; c < calls.size(); ++c) {
    if (layer_of[c] >= 0) {
      owner[c] = layer_of[c];
    } else if (calls[c].parent_call != kNoCall) {
      owner[c] = owner[static_cast<std::size_t>(calls[c].parent_call)];
    }
  }
  return owner;
}

// Per layer: its forward and backward time and FLOPs on one rank holding `tree`, and, when
// `tree` is the shard `tensor`, the all-reduces its modules issue on the slice group.
struct LayerCost {
  TimeNs forward_ns = 0, backward_ns = 0;
  std::int64_t forward_flops = 0, backward_flops = 0;
  std::int64_t workspace_bytes = 0;           // the most one of its calls holds while it runs
  std::int64_t backward_workspace_bytes = 0;  // the same in backward
  std::vector<TensorReduce> forward_reduces, backward_reduces;
};

struct LayerCosts {
  std::vector<LayerCost> layers;
  // Calls outside every layer run on no stage; only their all-reduces and memory are kept (for
  // the loss, which the last stage runs).
  LayerCost outside;
  std::int64_t outside_activation_bytes = 0;
};

LayerCosts layer_costs(const ModuleTree& tree, const pipe::PipelineLayers& layers,
                       const ComputeModel& compute, const TensorParallelModel* tensor) {
  const std::vector<std::int32_t> owner = call_owners(tree, layers);
  LayerCosts out;
  out.layers.resize(layers.layers.size());
  const auto& calls = tree.calls();
  for (std::size_t c = 0; c < calls.size(); ++c) {
    LayerCost& l = owner[c] < 0 ? out.outside : out.layers[static_cast<std::size_t>(owner[c])];
    const ModuleCollectives* mc =
        tensor ? &tensor->collectives[static_cast<std::size_t>(calls[c].module)] : nullptr;
    if (mc && !(mc->forward.empty() && mc->backward.empty())) {
      // Only leaves (the dense and embedding layers) and the root (the loss) issue all-reduces,
      // so call order is the order their forwards end in, and its reverse that of backward.
      const ModuleId id = calls[c].module;
      const std::string name = id == 0 ? std::string("model") : tree.qualified_name(id);
      for (const TensorCollective& t : mc->forward) {
        ZP_CHECK(t.kind == TensorCollectiveKind::kAllReduce, "only all-reduces are simulated");
        l.forward_reduces.push_back({t.bytes, name});
      }
      for (const TensorCollective& t : mc->backward) {
        ZP_CHECK(t.kind == TensorCollectiveKind::kAllReduce, "only all-reduces are simulated");
        l.backward_reduces.insert(l.backward_reduces.begin(), {t.bytes, name});
      }
    }
    const Module& m = tree.module(calls[c].module);
    l.workspace_bytes = std::max(l.workspace_bytes, m.cost.workspace_bytes);
    l.backward_workspace_bytes =
        std::max(l.backward_workspace_bytes, m.cost.backward_workspace_bytes);
    if (owner[c] < 0) {
      out.outside_activation_bytes += m.cost.activation_bytes;
      continue;
    }
    const ModuleTimes times = compute.module_call(tree, calls[c].module);
    l.forward_flops += m.cost.forward_flops;
    l.backward_flops += m.cost.backward_or_default();
    l.forward_ns += times.forward;
    l.backward_ns += times.backward;
  }
  return out;
}

std::string running_label(const pipe::PipelineLayers& layers, std::int32_t running,
                          std::int32_t micro_batch) {
  const std::string mb =
      micro_batch >= 0 ? " (micro-batch " + std::to_string(micro_batch) + ")" : std::string();
  switch (running) {
    case kRunningOptimizer:
      return "optimizer step";
    case kRunningLoadMicroBatch:
      return "loading a micro-batch" + mb;
    case kRunningRecvActivation:
      return "receiving an activation" + mb;
    case kRunningSendActivation:
      return "sending an activation" + mb;
    case kRunningRecvGrad:
      return "receiving a gradient" + mb;
    case kRunningSendGrad:
      return "sending a gradient" + mb;
    case kRunningReduceTiedGrads:
      return "reducing tied gradients";
    case kRunningReduceGrads:
      return "reducing gradients";
    case kRunningLoss:
      return "aggregating the loss";
    default:
      break;
  }
  const auto total = static_cast<std::int32_t>(layers.layers.size());
  if (running < 0 || total == 0 || running >= 3 * total) return "setup";
  static const char* const kPhase[] = {"forward of ", "backward of ", "recompute of "};
  return kPhase[running / total] + layers.layers[static_cast<std::size_t>(running % total)].name +
         mb;
}

}  // namespace

SimulationResult simulate_pipeline(const RunSpec& run, const SimOptions& options,
                                   trace::Trace* trace) {
  check_run(run);
  // With tensor parallelism every rank builds its shard of each layer (Megatron's column- and
  // row-parallel layers, replicated norms and biases) and issues the shard's all-reduces.
  std::optional<TensorParallelModel> tensor;
  if (run.parallel.tensor > 1) {
    tensor = shard_for_tensor_parallel(run.tree, run.model.config, run.parallel.tensor,
                                       where(run, "parallel.tensor"));
  }
  const ModuleTree& tree = tensor ? tensor->tree : run.tree;
  const pipe::PipelineLayers layers = pipe::layers_from_tree(tree);
  const ComputeModel compute(run.cluster, run.training.dtype);
  const CollectiveModel network(run.cluster);
  const pipe::PipelineGrid grid(pipe::pipe_model_data_parallel_topology(
      run.parallel.pipeline, run.parallel.tensor, run.parallel.data));
  const Groups coords(grid);

  Shared sh;
  sh.run = &run;
  sh.layers = &layers;
  sh.compute = &compute;
  sh.network = &network;
  sh.trace = trace;
  sh.p = run.parallel.pipeline;
  sh.dp = run.parallel.data;
  sh.tp = run.parallel.tensor;
  sh.m = std::max<std::int64_t>(run.deepspeed.batch.gradient_accumulation_steps, 1);
  sh.pipe_partitioned = sh.tp > 1 && run.deepspeed.pipeline.pipe_partitioned;
  sh.grad_partitioned = sh.tp > 1 && run.deepspeed.pipeline.grad_partitioned;
  sh.precision = choose_precision(run, /*pipeline=*/true);
  sh.optimizer = optimizer_shape(run.deepspeed);
  sh.activation_elem = dtype_size(tree.shape().dtype);
  sh.token_bytes = tree.shape().tokens() * kTokenBytes;
  if (sh.m > std::numeric_limits<int>::max() || sh.p > std::numeric_limits<int>::max()) {
    throw UserError(ErrorKind::kValue, where(run, "gradient_accumulation_steps"),
                    "too many micro-batches or stages to schedule");
  }
  const pipe::ScheduleSpec spec{pipe::ScheduleKind::kTrain, static_cast<int>(sh.m),
                                static_cast<int>(sh.p), 1};

  SimulationResult result = result_for(run, options);

  // Per-layer costs, the partition, and what checkpointing keeps, all of one rank's shard.
  const LayerCosts shard_costs = layer_costs(tree, layers, compute, tensor ? &*tensor : nullptr);
  const std::vector<LayerCost>& costs = shard_costs.layers;
  // The whole model's FLOPs per layer, which model_flops_per_step shares over the slice.
  std::optional<LayerCosts> whole_costs;
  if (tensor) whole_costs = layer_costs(run.tree, layers, compute, nullptr);
  const std::vector<LayerCost>& whole = whole_costs ? whole_costs->layers : costs;
  std::vector<ckpt::LayerActivity> activity;
  activity.reserve(layers.layers.size());
  for (const pipe::Layer& l : layers.layers)
    activity.push_back(ckpt::layer_activity(tree, l));

  const Wrapper wrapper = sh.precision.wrapper;
  const bool partitioned_states = wrapper == Wrapper::kBf16 || wrapper == Wrapper::kZero;
  pipe::PartitionCosts pcosts;
  {
    std::vector<std::int64_t> time_ns;
    pipe::StageMemoryCosts memory;
    const std::int64_t model_elem = dtype_size(sh.precision.model);
    const std::int64_t grad_elem =
        wrapper == Wrapper::kBf16 ? model_elem + dtype_size(sh.precision.accum) : model_elem;
    const std::int64_t state_elem =
        (wrapper == Wrapper::kNone ? 0 : sh.optimizer.master_bytes) + sh.optimizer.state_bytes;
    for (std::size_t i = 0; i < layers.layers.size(); ++i) {
      const pipe::Layer& l = layers.layers[i];
      time_ns.push_back(costs[i].forward_ns + costs[i].backward_ns);
      const std::int64_t numel = l.parameter_numel;
      const std::int64_t trainable = l.trainable_parameters;
      memory.static_bytes.push_back(
          numel * model_elem + trainable * grad_elem +
          (partitioned_states ? ceil_div(trainable * state_elem, sh.dp) : trainable * state_elem));
      memory.activation_bytes.push_back(activity[i].activation_bytes);
    }
    for (std::int64_t s = 0; s < sh.p; ++s)
      memory.in_flight.push_back(pipe::peak_in_flight(spec, static_cast<int>(s)));
    pcosts.time_ns = std::move(time_ns);
    pcosts.memory = std::move(memory);
  }
  const pipe::PipelinePartition partition = pipe::partition_layers(
      layers, sh.p, pipe::parse_partition_method(run.deepspeed.pipeline.partition), pcosts);
  for (const Warning& w : partition.warnings)
    result.warnings.push_back(w);
  if (sh.m < sh.p) {
    result.warnings.push_back(
        {where(run, "gradient_accumulation_steps"),
         std::to_string(sh.m) + " micro-batches for " + std::to_string(sh.p) +
             " pipeline stages: each stage idles for most of the step (bubble " +
             std::to_string(sh.p - 1) + "/" + std::to_string(sh.m + sh.p - 1) +
             " of it); DeepSpeed allows it, but more micro-batches than stages fill the pipeline"});
  }
  const std::vector<pipe::TiedGroup> tied = pipe::tied_groups(layers, partition.boundaries, grid);
  const ckpt::CheckpointSettings ckpt_settings =
      ckpt::CheckpointSettings::from(run.deepspeed, sh.tp);

  // Parameters by name, for the tied weights.
  std::map<std::string, ParamId> param_by_name;
  for (std::size_t p = 0; p < tree.parameters().size(); ++p)
    param_by_name.emplace(tree.parameters()[p].name, static_cast<ParamId>(p));

  std::vector<StagePlan> plans(static_cast<std::size_t>(sh.p));
  ckpt::LayerActivity input;
  input.output_bytes = sh.token_bytes;
  input.output_numel = tree.shape().tokens();
  input.output_floating = false;
  for (std::int64_t s = 0; s < sh.p; ++s) {
    StagePlan& sp = plans[static_cast<std::size_t>(s)];
    sp.stage = s;
    sp.gpu = coords.rank(s, 0, 0);
    sp.begin = partition.stage_begin(s);
    sp.end = partition.stage_end(s);
    sp.in_bytes = input.output_bytes;
    const ckpt::CheckpointPlan plan =
        ckpt::plan_checkpointing(tree, layers, sp.begin, sp.end, input,
                                 pipe::peak_in_flight(spec, static_cast<int>(s)), ckpt_settings);
    sp.segments = plan.segments;
    sp.contiguous_bytes = plan.contiguous_buffer_bytes;
    sp.contiguous_on_host = plan.contiguous_buffer_on_host;

    // module.parameters() of the stage: tied modules first (PipelineModule registers
    // tied_modules before the layers), then the layers in order; each parameter once.
    std::vector<bool> seen(tree.parameters().size(), false);
    std::vector<ParamId> order;
    for (std::int64_t i = sp.begin; i < sp.end; ++i) {
      const pipe::Layer& l = layers.layers[static_cast<std::size_t>(i)];
      if (!l.tied_key.empty()) parameters_in_order(tree, l.module, order, seen);
    }
    for (std::int64_t i = sp.begin; i < sp.end; ++i) {
      const pipe::Layer& l = layers.layers[static_cast<std::size_t>(i)];
      if (l.tied_key.empty()) parameters_in_order(tree, l.module, order, seen);
    }
    // The layer whose backward first produces each gradient: the last one holding it.
    std::vector<std::int64_t> grad_layer(tree.parameters().size(), -1);
    for (std::int64_t i = sp.begin; i < sp.end; ++i) {
      std::vector<ParamId> mine;
      std::vector<bool> mine_seen(tree.parameters().size(), false);
      parameters_in_order(tree, layers.layers[static_cast<std::size_t>(i)].module, mine, mine_seen);
      for (ParamId p : mine)
        grad_layer[static_cast<std::size_t>(p)] = i - sp.begin;
    }
    sp.layers.resize(static_cast<std::size_t>(sp.end - sp.begin));
    for (ParamId p : order) {
      const Parameter& param = tree.parameter(p);
      const std::int64_t numel = param.numel();
      if (!param.requires_grad) {
        sp.frozen_bytes += numel * dtype_size(param.dtype);
        continue;
      }
      sp.trainable_numel += numel;
      sp.trainable_bytes += numel * dtype_size(param.dtype);
      sp.grad_numels.push_back(numel);
      const std::int64_t k = grad_layer[static_cast<std::size_t>(p)];
      if (k >= 0)
        sp.layers[static_cast<std::size_t>(k)].grad_bytes += numel * dtype_size(param.dtype);
    }
    for (std::int64_t k = 0; k < sp.end - sp.begin; ++k) {
      const std::int64_t i = sp.begin + k;
      LayerWork& w = sp.layers[static_cast<std::size_t>(k)];
      const LayerCost& c = costs[static_cast<std::size_t>(i)];
      w.index = i;
      w.forward_ns = c.forward_ns;
      w.backward_ns = c.backward_ns;
      w.forward_flops = c.forward_flops;
      w.backward_flops = c.backward_flops;
      w.forward_reduces = c.forward_reduces;
      w.backward_reduces = c.backward_reduces;
      w.workspace_bytes = c.workspace_bytes;
      w.backward_workspace_bytes = c.backward_workspace_bytes;
      w.ckpt = plan.layers[static_cast<std::size_t>(k)];
      w.name =
          trace ? trace->intern(layers.layers[static_cast<std::size_t>(i)].name) : trace::kNone;
      const LayerCost& all = whole[static_cast<std::size_t>(i)];
      sp.model_flops_per_micro_batch +=
          static_cast<double>(all.forward_flops) + static_cast<double>(all.backward_flops);
    }
    if (s == sh.p - 1) {
      // The loss runs on the last stage (_exec_forward_pass calls loss_fn there).
      sp.loss_forward_reduces = shard_costs.outside.forward_reduces;
      sp.loss_backward_reduces = shard_costs.outside.backward_reduces;
      sp.loss_kept_bytes = shard_costs.outside_activation_bytes;
      sp.loss_workspace_bytes = shard_costs.outside.workspace_bytes;
      sp.loss_backward_workspace_bytes = shard_costs.outside.backward_workspace_bytes;
    }
    if (sp.end > sp.begin) {
      input = activity[static_cast<std::size_t>(sp.end - 1)];
    }
    sp.out_bytes = input.output_bytes;  // an empty stage passes its input on
    sp.num_buffers = pipe::num_pipe_buffers(spec, static_cast<int>(s));
    const pipe::StageSchedule sched = pipe::stage_schedule(spec, static_cast<int>(s));
    for (const pipe::Step& step : sched.steps)
      sp.stream.insert(sp.stream.end(), step.begin(), step.end());

    const std::int64_t grad_elem =
        wrapper == Wrapper::kBf16 ? dtype_size(sh.precision.accum) : dtype_size(sh.precision.model);
    for (std::size_t t = 0; t < tied.size(); ++t) {
      if (!std::binary_search(tied[t].stages.begin(), tied[t].stages.end(), s)) continue;
      if (tied[t].stages.size() < 2) continue;  // a one-rank all-reduce moves nothing
      const auto it = param_by_name.find(tied[t].key);
      ZP_CHECK(it != param_by_name.end(), "tied key ", tied[t].key, " names no parameter");
      sp.tied.push_back(
          {static_cast<std::int32_t>(t), tree.parameter(it->second).numel() * grad_elem});
    }
    switch (wrapper) {
      case Wrapper::kNone:
      case Wrapper::kFp16:
        sp.reduce_chunks = fallback_chunks(sp.grad_numels, kMemoryOptAllreduceSize);
        break;
      case Wrapper::kBf16: {
        const std::int64_t align = kNcclStartAlignmentFactor * sh.dp;
        if (sp.trainable_numel > 0)
          sp.reduce_chunks.push_back({ceil_div(sp.trainable_numel, align) * align, false});
        break;
      }
      case Wrapper::kZero: {
        const std::int64_t align = kNcclStartAlignmentFactor * sh.dp;
        const std::int64_t padded = ceil_div(sp.trainable_numel, align) * align;
        sp.reduce_chunks = zero1_chunks(sp.grad_numels, run.deepspeed.zero.reduce_bucket_size,
                                        std::max<std::int64_t>(padded / sh.dp, 1),
                                        run.deepspeed.zero.reduce_scatter);
        break;
      }
    }
  }

  std::vector<Program> programs;
  programs.reserve(plans.size());
  for (const StagePlan& sp : plans)
    programs.push_back(Builder(sh, sp).build());

  // Rank classes: one per stage when every pipeline is placed alike, else every rank.
  bool alike = true;
  {
    auto shape_of = [&](const std::vector<std::int64_t>& g) { return network.shape(g); };
    for (std::int64_t s = 0; s < sh.p && alike; ++s) {
      const GroupShape data0 = shape_of(coords.data(s, 0));
      const GroupShape slice0 = shape_of(coords.slice(s, 0));
      for (std::int64_t m = 1; m < sh.tp && alike; ++m)
        alike = shape_of(coords.data(s, m)) == data0;
      for (std::int64_t d = 1; d < sh.dp && alike; ++d)
        alike = shape_of(coords.slice(s, d)) == slice0;
      if (s + 1 < sh.p) {
        const GroupShape pair0 =
            shape_of(std::vector<std::int64_t>{coords.rank(s, 0, 0), coords.rank(s + 1, 0, 0)});
        for (std::int64_t d = 0; d < sh.dp && alike; ++d) {
          for (std::int64_t m = 0; m < sh.tp && alike; ++m) {
            alike = shape_of(std::vector<std::int64_t>{coords.rank(s, d, m),
                                                       coords.rank(s + 1, d, m)}) == pair0;
          }
        }
      }
    }
    const GroupShape pipe0 = shape_of(coords.pipe(0, 0));
    const GroupShape model0 = shape_of(coords.model_parallel(0));
    for (std::int64_t d = 0; d < sh.dp && alike; ++d) {
      alike = shape_of(coords.model_parallel(d)) == model0;
      for (std::int64_t m = 0; m < sh.tp && alike; ++m) {
        alike = shape_of(coords.pipe(d, m)) == pipe0;
        for (const pipe::TiedGroup& t : tied) {
          if (t.stages.size() < 2 || !alike) continue;
          alike = shape_of(t.comms[static_cast<std::size_t>(d * sh.tp + m)].ranks) ==
                  shape_of(t.comms.front().ranks);
        }
      }
    }
  }
  const bool per_rank = options.all_ranks || !alike;
  if (!options.all_ranks && !alike) {
    result.warnings.push_back(
        {where(run, "parallel"),
         "the pipelines are not placed alike on the cluster (their links or groups differ), so "
         "every rank is simulated"});
  }
  auto process_of = [&](std::int64_t rank) -> std::int32_t {
    return static_cast<std::int32_t>(per_rank ? rank : grid.stage_id(rank));
  };

  std::map<std::pair<std::string, std::int64_t>, std::int32_t> trace_groups;
  auto trace_group = [&](const std::string& axis, std::int64_t size) -> std::int32_t {
    if (!trace) return trace::kNone;
    const auto key = std::make_pair(axis, size);
    const auto it = trace_groups.find(key);
    if (it != trace_groups.end()) return it->second;
    const auto id = static_cast<std::int32_t>(trace->groups.size());
    trace->groups.push_back(trace::GroupInfo{axis, size});
    trace_groups.emplace(key, id);
    return id;
  };
  auto make_group = [&](std::vector<std::int64_t> ranks, const std::string& axis) {
    Group g;
    g.shape = network.shape(ranks);
    for (std::int64_t r : ranks)
      g.parties.push_back(process_of(r));
    std::sort(g.parties.begin(), g.parties.end());
    g.parties.erase(std::unique(g.parties.begin(), g.parties.end()), g.parties.end());
    g.trace_group = trace_group(axis, static_cast<std::int64_t>(ranks.size()));
    g.ranks = std::move(ranks);
    return g;
  };

  // The processes.
  std::vector<Process> procs;
  const std::int64_t count = per_rank ? run.parallel.world() : sh.p;
  procs.reserve(static_cast<std::size_t>(count));
  for (std::int64_t i = 0; i < count; ++i) {
    Process pr;
    pr.index = static_cast<std::int32_t>(i);
    pr.rep = per_rank ? i : coords.rank(i, 0, 0);
    pr.stage = grid.stage_id(pr.rep);
    const std::int64_t d = grid.data_parallel_id(pr.rep);
    const std::int64_t m = grid.slice_parallel_rank(pr.rep);
    const std::int64_t s = pr.stage;
    if (per_rank) {
      pr.ranks = {pr.rep};
    } else {
      for (std::int64_t dd = 0; dd < sh.dp; ++dd) {
        for (std::int64_t mm = 0; mm < sh.tp; ++mm)
          pr.ranks.push_back(coords.rank(s, dd, mm));
      }
    }
    pr.program = &programs[static_cast<std::size_t>(s)];
    if (s > 0) {
      const std::int64_t prev = coords.rank(s - 1, d, m);
      pr.groups[kPrev] =
          make_group({prev, pr.rep}, "pipe " + std::to_string(s - 1) + "-" + std::to_string(s));
      pr.groups[kPrev].peer = prev;
    }
    if (s + 1 < sh.p) {
      const std::int64_t next = coords.rank(s + 1, d, m);
      pr.groups[kNext] =
          make_group({pr.rep, next}, "pipe " + std::to_string(s) + "-" + std::to_string(s + 1));
      pr.groups[kNext].peer = next;
    }
    pr.groups[kData] = make_group(coords.data(s, m), "data");
    pr.groups[kSlice] = make_group(coords.slice(s, d), "model");
    pr.groups[kModelParallel] = make_group(coords.model_parallel(d), "pipe x model");
    pr.groups[kPipe] = make_group(coords.pipe(d, m), "pipe");
    pr.tied.resize(tied.size());
    for (const TiedReduce& t : plans[static_cast<std::size_t>(s)].tied) {
      const pipe::TiedGroup& g = tied[static_cast<std::size_t>(t.index)];
      pr.tied[static_cast<std::size_t>(t.index)] =
          make_group(g.comms[static_cast<std::size_t>(d * sh.tp + m)].ranks, "tied " + g.key);
    }
    procs.push_back(std::move(pr));
  }

  // Labels, trace ranks, accountants, and what exists before the reported steps.
  const std::int64_t model_elem = dtype_size(sh.precision.model);
  for (Process& pr : procs) {
    const StagePlan& sp = plans[static_cast<std::size_t>(pr.stage)];
    if (per_rank) {
      pr.label = "rank " + std::to_string(pr.rep) + " (stage " + std::to_string(pr.stage) + ")";
    } else if (pr.ranks.size() == 1) {
      pr.label = "stage " + std::to_string(pr.stage) + " (rank " + std::to_string(pr.rep) + ")";
    } else {
      pr.label =
          "stage " + std::to_string(pr.stage) + " (" + std::to_string(pr.ranks.size()) + " ranks)";
    }
    if (trace) {
      pr.trace_rank = static_cast<std::int32_t>(trace->ranks.size());
      trace->ranks.push_back(
          trace::RankInfo{pr.label, pr.ranks, static_cast<std::int32_t>(pr.stage)});
    }
    pr.memory = std::make_unique<MemoryAccountant>(
        MemoryAccountant::Options{run.cluster.gpu_memory, options.model_allocator}, trace,
        pr.trace_rank);
    pr.regs.assign(static_cast<std::size_t>(pr.program->registers), -1);
    MemoryAccountant& mem = *pr.memory;
    mem.set_running(kRunningNothing);

    // Model states, for good.
    const std::int64_t align = kNcclStartAlignmentFactor * sh.dp;
    const std::int64_t padded = ceil_div(sp.trainable_numel, align) * align;
    const std::int64_t part = padded / sh.dp;
    // Named as the data-parallel step names them.
    auto hold = [&](MemoryCategory c, std::int64_t bytes, const char* name) {
      if (bytes > 0)
        mem.allocate(c, bytes, 0, AllocStream::kCompute,
                     trace ? trace->intern(name) : trace::kNone);
    };
    switch (wrapper) {
      case Wrapper::kNone:
        hold(MemoryCategory::kParamPartitions, sp.trainable_bytes + sp.frozen_bytes, "parameters");
        hold(MemoryCategory::kOptimizerStates, sp.trainable_numel * sh.optimizer.state_bytes,
             "optimizer states");
        break;
      case Wrapper::kFp16:
        hold(MemoryCategory::kParamPartitions, sp.trainable_bytes + sp.frozen_bytes, "parameters");
        hold(MemoryCategory::kMasterWeights, sp.trainable_numel * sh.optimizer.master_bytes,
             "master weights");
        hold(MemoryCategory::kOptimizerStates, sp.trainable_numel * sh.optimizer.state_bytes,
             "optimizer states");
        break;
      case Wrapper::kBf16:
      case Wrapper::kZero:
        // The flat bit16 buffer, padded; the fp32 partition and its states.
        hold(MemoryCategory::kParamPartitions, padded * model_elem + sp.frozen_bytes, "parameters");
        hold(MemoryCategory::kMasterWeights, part * sh.optimizer.master_bytes, "master weights");
        hold(MemoryCategory::kOptimizerStates, part * sh.optimizer.state_bytes, "optimizer states");
        if (wrapper == Wrapper::kBf16) {
          // fp32_groups_gradients_flat: the whole flat buffer in the accumulation dtype.
          hold(MemoryCategory::kGradBuckets, padded * dtype_size(sh.precision.accum),
               "fp32 gradients (flat)");
        }
        break;
    }
    if (sp.contiguous_bytes > 0) {
      // contiguous_memory_optimization's buffers, kept once created.
      if (sp.contiguous_on_host) {
        mem.add_host(MemoryCategory::kHostActivations, sp.contiguous_bytes, 0);
      } else {
        hold(MemoryCategory::kActivations, sp.contiguous_bytes, "contiguous checkpoint buffers");
      }
    }
    if (options.steps == 0) {
      // The steady state: what one step leaves allocated (buffers created at first use, the
      // tensors the last micro-batches left in the pipeline buffers) is there at the start.
      struct Live {
        MemoryCategory category = MemoryCategory::kActivations;
        std::int64_t bytes = -1;
        std::int32_t name = trace::kNone;  // as the previous step named it
      };
      std::vector<Live> live(pr.regs.size());
      for (const Op& op : pr.program->ops) {
        if (op.code == Code::kMove) {
          live[static_cast<std::size_t>(op.reg)] = live[static_cast<std::size_t>(op.seq)];
          live[static_cast<std::size_t>(op.seq)].bytes = -1;
          continue;
        }
        if (op.code != Code::kAlloc && op.code != Code::kAllocOnce && op.code != Code::kFree)
          continue;
        Live& r = live[static_cast<std::size_t>(op.reg)];
        if (op.code == Code::kAlloc) r = {op.category, op.bytes > 0 ? op.bytes : -1, op.name};
        if (op.code == Code::kAllocOnce && r.bytes < 0 && op.bytes > 0)
          r = {op.category, op.bytes, op.name};
        if (op.code == Code::kFree) r.bytes = -1;
      }
      for (std::size_t r = 0; r < live.size(); ++r) {
        if (live[r].bytes > 0) {
          pr.regs[r] =
              mem.allocate(live[r].category, live[r].bytes, 0, AllocStream::kCompute, live[r].name);
        }
      }
      pr.step = 1;
      pr.first_step = false;
      pr.steps_left = 1;
    } else {
      pr.step = 0;
      pr.first_step = true;
      pr.steps_left = options.steps;
    }
    pr.peak_seen = mem.peak().allocated;
  }

  Simulator sim;
  Runner runner(sim, procs, network, trace, run.cluster.collective_host_ns);
  for (Process& pr : procs) {
    runner.begin_step(pr);
    const std::int32_t index = pr.index;
    sim.schedule_at(0, [&runner, index] { runner.resume(index); });
  }
  sim.run();
  for (const Process& pr : procs) {
    ZP_CHECK(pr.done && runner.idle(), "the pipeline schedule deadlocked: stage ", pr.stage,
             " stopped at instruction ", pr.pc);
  }

  // Reports.
  double flops = 0;
  for (Process& pr : procs) {
    const StagePlan& sp = plans[static_cast<std::size_t>(pr.stage)];
    RankReport report;
    report.trace_rank = pr.trace_rank;
    report.label = pr.label;
    report.ranks = pr.ranks;
    take_memory_peaks(*pr.memory, report);
    report.transfers = pr.transfers;
    report.steps = pr.steps;
    report.peak_running = running_label(layers, report.peak.running, pr.peak_micro_batch);
    // The whole model's work shared over the slice: replicated modules, which every slice rank
    // runs, count once.
    report.model_flops_per_step =
        sp.model_flops_per_micro_batch * static_cast<double>(sh.m) / static_cast<double>(sh.tp);
    report.bubble_ns = pr.bubble_ns;
    flops += report.model_flops_per_step * static_cast<double>(pr.ranks.size());
    result.step_time_ns = std::max(result.step_time_ns, pr.steps.back().time_ns());
    result.ranks.push_back(std::move(report));
  }
  for (const StepReport& s : result.ranks.front().steps)
    result.reported_steps.push_back(s.step);
  if (result.step_time_ns > 0) {
    result.mfu = flops / (static_cast<double>(result.world_size) *
                          static_cast<double>(result.step_time_ns) * 1e-9 * compute.peak_flops());
  }
  return result;
}

}  // namespace zp::sim
