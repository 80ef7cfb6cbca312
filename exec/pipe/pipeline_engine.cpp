#include "exec/pipe/pipeline_engine.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "core/util/error.h"
#include "exec/memory/counting_allocator.h"
#include "exec/memory/memory_scope.h"
#include "exec/train/fused_optimizer.h"

namespace zp::exec {
namespace {

// Where what an instruction allocates is charged (the counting allocator's categories).
trace::MemoryCategory category_of(pipe::InstructionKind kind) {
  using K = pipe::InstructionKind;
  switch (kind) {
    case K::kLoadMicroBatch:
    case K::kSendActivation:
    case K::kRecvActivation:
    case K::kSendGrad:
    case K::kRecvGrad:
      return trace::MemoryCategory::kPipeBuffers;
    case K::kReduceTiedGrads:
    case K::kReduceGrads:
      return trace::MemoryCategory::kCommBuffers;
    case K::kOptimizerStep:
      return trace::MemoryCategory::kOptimizerStates;
    case K::kForwardPass:
    case K::kBackwardPass:
      return trace::MemoryCategory::kActivations;
  }
  return trace::MemoryCategory::kActivations;
}

using pipe::Instruction;
using K = pipe::InstructionKind;

// Gloo matches a send to a receive by (peer, tag): each kind of traffic has its own.
constexpr int kActivationTag = 1;
constexpr int kGradTag = 2;
constexpr int kMetaTag = 3;

// engine.py's TENSOR_META_SIZE: the int32 values of the shape message.
constexpr std::int64_t kTensorMetaSize = 256;

comm::Buffer view(const at::Tensor& t) {
  ZP_CHECK(t.is_contiguous() && t.scalar_type() == at::kFloat && t.device().is_cpu(),
           "pipeline transfers take contiguous fp32 host tensors, got ", t.sizes());
  return comm::host_buffer(t.data_ptr<float>(), t.numel());
}

// What one pipeline buffer holds (DeepSpeed's pipe_buffers at one buffer id).
struct PipeBuffer {
  int micro_batch = -1;
  at::Tensor input;   // token ids on the first stage, else the received activation's clone
  at::Tensor labels;  // last stage
  at::Tensor output;  // the stage's output: the activation sent on, or the logits
  at::Tensor loss;    // last stage: the micro-batch's loss, which backward starts from
};

struct TiedGrad {
  ParamId param = 0;
  comm::Communicator* comm = nullptr;
};

struct OwnedGroup {
  std::string name;
  std::unique_ptr<comm::Communicator> comm;
};

// While tracing, names what a forward allocates after the module running (the innermost call), as
// the trace's allocations name activations.
class MemoryNaming final : public ModuleHooks {
 public:
  explicit MemoryNaming(const ModuleTree& tree) {
    for (ModuleId m = 0; m < static_cast<ModuleId>(tree.modules().size()); ++m)
      labels_.push_back(
          memory::intern_label(m == 0 ? std::string("model") : tree.qualified_name(m)));
  }
  void pre_forward(const ModuleCall& call) override {
    running_.push_back(call.module);
    memory::set_memory_label(labels_[static_cast<std::size_t>(call.module)]);
  }
  void post_forward(const ModuleCall& /*call*/) override {
    running_.pop_back();
    memory::set_memory_label(
        labels_[static_cast<std::size_t>(running_.empty() ? 0 : running_.back())]);
  }

 private:
  std::vector<memory::Label> labels_;  // by ModuleId
  std::vector<ModuleId> running_;
};

}  // namespace

struct PipelineEngine::Impl {
  LmModel& model;
  comm::Communicator& world;
  PipelineOptions options;
  pipe::PipelineGrid grid;
  int rank = 0;
  int stage = 0;
  int data = 0;
  std::int64_t first = 0, end = 0;
  bool is_first = false, is_last = false;
  std::vector<ParamId> params;
  std::vector<at::Tensor> param_tensors;
  std::optional<FusedOptimizer> optimizer;
  std::vector<TiedGrad> tied;
  comm::Communicator* data_comm = nullptr;  // the stage's data-parallel group, when D > 1
  comm::Communicator* pipe_comm = nullptr;  // this pipeline's stages, when P > 1
  int pipe_root = 0;                        // the last stage's rank in it
  std::vector<OwnedGroup> groups;
  pipe::StageSchedule schedule;

  std::vector<PipeBuffer> buffers;
  bool first_output_send = true;  // DeepSpeed's: the shape message goes before the first send
  at::Tensor recv_buf;            // pipe_recv_buf, from the shape message, kept for good
  at::Tensor grad_layer;          // the received gradient's buffer, kept for good
  const std::vector<TokenBatch>* batches = nullptr;
  double loss_sum = 0.0;
  std::int64_t comm_wait_ns = 0;
  bool logging = false;
  std::vector<Instruction> log;
  // record_into's target.
  trace::Trace* trace = nullptr;
  std::int32_t trace_rank = 0;
  std::int64_t origin_ns = 0;
  std::int32_t step_index = 0;
  std::int32_t stage_label = -1;
  std::optional<MemoryNaming> naming;  // while tracing

  // While tracing, the name of what an instruction allocates, as the simulator names the blocks
  // of a pipeline stage: "what (micro-batch k)" for a micro-batch's tensors.
  memory::Label memory_label(const std::string& what, int micro_batch = -1) const {
    if (trace == nullptr) return memory::kNoLabel;
    return memory::intern_label(
        micro_batch < 0 ? what : what + " (micro-batch " + std::to_string(micro_batch) + ")");
  }
  memory::Label memory_label(const Instruction& in) const {
    switch (in.kind) {
      case K::kLoadMicroBatch:
        return memory_label(is_first ? "inputs" : "labels", in.micro_batch);
      case K::kRecvActivation:
        return memory_label("input", in.micro_batch);
      case K::kForwardPass:
        return memory_label("model");
      case K::kSendActivation:
      case K::kRecvGrad:
        return memory_label("output", in.micro_batch);
      case K::kBackwardPass:
        return memory_label("backward", in.micro_batch);
      case K::kSendGrad:
        return memory_label("input gradient", in.micro_batch);
      case K::kReduceTiedGrads:
        return memory_label("tied gradient");
      case K::kReduceGrads:
        return memory_label("gradients");
      case K::kOptimizerStep:
        return memory_label("optimizer states");
    }
    return memory::kNoLabel;
  }

  // The compute instructions as trace ops on the compute stream.
  void record(trace::OpKind kind, std::int64_t start_ns, std::int32_t micro_batch) {
    if (trace == nullptr) return;
    if (stage_label < 0) stage_label = trace->intern("stage " + std::to_string(stage));
    trace::Op op;
    op.rank = trace_rank;
    op.kind = kind;
    op.start = start_ns - origin_ns;
    op.end = comm::wall_clock_ns() - origin_ns;
    op.name = stage_label;
    op.step = step_index;
    op.micro_batch = micro_batch;
    trace->ops.push_back(op);
  }

  Impl(LmModel& m, comm::Communicator& w, PipelineOptions o, pipe::PipelineGrid g)
      : model(m), world(w), options(std::move(o)), grid(std::move(g)) {}

  int peer(int s) const { return static_cast<int>(grid.stage_to_global(s, data)); }

  void wait(comm::Work& work) {
    const std::int64_t begin = comm::wall_clock_ns();
    work.wait();
    comm_wait_ns += comm::wall_clock_ns() - begin;
  }

  // p2p.send and p2p.recv: blocking.
  void send(const at::Tensor& data_out, int to, int tag, const char* label) {
    wait(*world.send(view(data_out), to, tag, label));
  }

  void recv(const at::Tensor& into, int from, int tag, const char* label) {
    wait(*world.recv(view(into), from, tag, label));
  }

  // The communicator of a group of world ranks (increasing) that holds this rank; none for a
  // group of one. The axis names the member set, so that distinct groups never share keys.
  comm::Communicator* make_group(const comm::GroupMaker& maker, const std::string& name,
                                 const std::vector<std::int64_t>& ranks) {
    if (ranks.size() < 2) return nullptr;
    const auto it = std::find(ranks.begin(), ranks.end(), rank);
    ZP_CHECK(it != ranks.end(), "rank ", rank, " makes group '", name, "' it is not in");
    ZP_CHECK(static_cast<bool>(maker), "the pipeline's group '", name,
             "' needs a GroupMaker: the engine was given none");
    comm::GroupSpec spec;
    spec.axis = name;
    for (std::size_t i = 0; i < ranks.size(); ++i)
      spec.axis += (i == 0 ? " " : ",") + std::to_string(ranks[i]);
    spec.rank = static_cast<int>(it - ranks.begin());
    spec.size = static_cast<int>(ranks.size());
    spec.timeout = world.group().timeout;
    groups.push_back({name, maker(spec)});
    ZP_CHECK(groups.back().comm != nullptr, "no communicator for group '", spec.axis, "'");
    return groups.back().comm.get();
  }

  // _send_tensor_meta for one tensor: [type 0 (a tensor), dtype id 0 (fp32), ndims, shape...].
  void send_meta(const at::Tensor& t) {
    std::vector<std::int32_t> meta(static_cast<std::size_t>(kTensorMetaSize), 0);
    meta[1] = 0;
    meta[2] = static_cast<std::int32_t>(t.dim());
    for (std::int64_t d = 0; d < t.dim(); ++d)
      meta[static_cast<std::size_t>(3 + d)] = static_cast<std::int32_t>(t.size(d));
    wait(*world.send(comm::host_buffer(meta.data(), kTensorMetaSize), peer(stage + 1), kMetaTag,
                     "meta"));
  }

  // _recv_tensor_meta: the shape message, and the receive buffer it describes (zeros).
  at::Tensor recv_meta() {
    std::vector<std::int32_t> meta(static_cast<std::size_t>(kTensorMetaSize), 0);
    wait(*world.recv(comm::host_buffer(meta.data(), kTensorMetaSize), peer(stage - 1), kMetaTag,
                     "meta"));
    ZP_CHECK(meta[0] == 0 && meta[1] == 0 && meta[2] >= 1 && meta[2] <= kTensorMetaSize - 3,
             "a shape message of type ", meta[0], ", dtype ", meta[1], ", ", meta[2],
             " dimensions");
    std::vector<std::int64_t> shape;
    for (std::int32_t d = 0; d < meta[2]; ++d)
      shape.push_back(meta[static_cast<std::size_t>(3 + d)]);
    return at::zeros(shape, at::kFloat);
  }

  PipeBuffer& buffer(const Instruction& in) {
    ZP_CHECK(in.buffer_id >= 0 && static_cast<std::size_t>(in.buffer_id) < buffers.size(),
             "buffer ", in.buffer_id, " of ", buffers.size());
    ZP_CHECK(in.micro_batch >= 0 && static_cast<std::size_t>(in.micro_batch) < batches->size(),
             "micro-batch ", in.micro_batch, " of ", batches->size());
    return buffers[static_cast<std::size_t>(in.buffer_id)];
  }

  // The activation shape of a micro-batch: [rows, seq, hidden].
  std::vector<std::int64_t> activation_shape(int micro_batch) const {
    const TokenBatch& b = (*batches)[static_cast<std::size_t>(micro_batch)];
    return {b.batch, b.seq, model.config().hidden_size};
  }

  void execute(const Instruction& in) {
    memory::MemoryScope scope(category_of(in.kind), memory_label(in));
    const std::int64_t start_ns = comm::wall_clock_ns();
    if (logging) log.push_back(in);
    switch (in.kind) {
      case K::kLoadMicroBatch: {
        // The new micro-batch replaces what the buffer held (its last forward's on the last stage
        // included: DeepSpeed keeps the output until the buffer's next forward).
        PipeBuffer& b = buffer(in);
        const at::Tensor ids = token_tensor((*batches)[static_cast<std::size_t>(in.micro_batch)]);
        b.micro_batch = in.micro_batch;
        if (is_first) b.input = ids;
        if (is_last) b.labels = ids;
        return;
      }
      case K::kRecvActivation: {
        PipeBuffer& b = buffer(in);
        if (!recv_buf.defined()) {
          memory::MemoryScope named(trace::MemoryCategory::kPipeBuffers,
                                    memory_label("receive buffer"));
          recv_buf = recv_meta();
        }
        ZP_CHECK(recv_buf.sizes() == activation_shape(in.micro_batch), "an activation of ",
                 recv_buf.sizes(), " announced; micro-batch ", in.micro_batch, " needs ",
                 activation_shape(in.micro_batch));
        recv(recv_buf, peer(stage - 1), kActivationTag, "activation");
        b.micro_batch = in.micro_batch;
        b.input = recv_buf.clone().requires_grad_(true);
        return;
      }
      case K::kForwardPass: {
        PipeBuffer& b = buffer(in);
        ZP_CHECK(b.micro_batch == in.micro_batch && b.input.defined(), "forward of micro-batch ",
                 in.micro_batch, " on buffer ", in.buffer_id, " holding ", b.micro_batch);
        // _exec_forward_pass runs the module on a clone of the buffer's input, puts the output in
        // the pipeline buffer (the previous one goes only now), then, on the last stage, computes
        // the loss from it.
        at::Tensor output;
        {
          memory::MemoryScope forward(trace::MemoryCategory::kActivations);
          output = model.forward_layers(first, end, b.input.clone(), at::Tensor(),
                                        naming ? &*naming : nullptr);
        }
        // The output is the pipeline buffer's (the simulator's pipe_buffers), whatever the
        // forward allocated it under.
        memory::recharge(output.storage().data(), trace::MemoryCategory::kPipeBuffers,
                         memory_label(is_last ? "logits" : "output", in.micro_batch));
        b.output = output;
        if (is_last) {
          memory::MemoryScope loss(trace::MemoryCategory::kActivations,
                                   memory_label("loss", in.micro_batch));
          b.loss = LmModel::next_token_loss(b.output, b.labels);
          loss_sum += b.loss.item<double>();
        }
        record(trace::OpKind::kForward, start_ns, in.micro_batch);
        return;
      }
      case K::kSendActivation: {
        PipeBuffer& b = buffer(in);
        ZP_CHECK(b.micro_batch == in.micro_batch && b.output.defined(), "no activation of ",
                 in.micro_batch, " in buffer ", in.buffer_id);
        const at::Tensor out = b.output.detach();
        ZP_CHECK(out.is_contiguous(), "a stage's output must be contiguous to be sent");
        if (first_output_send) {
          first_output_send = false;
          send_meta(out);
        }
        send(out, peer(stage + 1), kActivationTag, "activation");
        return;
      }
      case K::kRecvGrad: {
        PipeBuffer& b = buffer(in);
        ZP_CHECK(b.micro_batch == in.micro_batch && b.output.defined(), "no activation of ",
                 in.micro_batch, " in buffer ", in.buffer_id, " for its gradient");
        // _allocate_or_extend_buffers: allocated once; a middle stage's shares the receive
        // buffer, which is large enough (every activation has the same shape here).
        if (!grad_layer.defined()) {
          memory::MemoryScope named(trace::MemoryCategory::kPipeBuffers,
                                    memory_label("gradient receive buffer"));
          grad_layer = recv_buf.defined() && recv_buf.sizes() == b.output.sizes()
                           ? recv_buf
                           : at::zeros(b.output.sizes(), at::kFloat);
        }
        recv(grad_layer, peer(stage + 1), kGradTag, "gradient");
        return;
      }
      case K::kBackwardPass: {
        PipeBuffer& b = buffer(in);
        ZP_CHECK(b.micro_batch == in.micro_batch && b.output.defined(), "backward of ",
                 in.micro_batch, " on buffer ", in.buffer_id, " holding ", b.micro_batch);
        {
          memory::MemoryScope backward(trace::MemoryCategory::kActivations);
          if (is_last) {
            // DeepSpeed scales the loss by the gradient accumulation steps before backward.
            (b.loss / static_cast<double>(options.micro_batches)).backward();
          } else {
            ZP_CHECK(grad_layer.defined(), "backward of micro-batch ", in.micro_batch,
                     " before its gradient arrived");
            b.output.backward(grad_layer);
          }
        }
        // The parameters' gradients live on to the step: DeepSpeed's gradient buffers, which the
        // simulator counts as such, whatever the backward allocated them under.
        for (const ParamId p : params) {
          const at::Tensor& g = model.parameters()[static_cast<std::size_t>(p)].grad();
          if (g.defined()) {
            memory::recharge(g.storage().data(), trace::MemoryCategory::kGradBuckets,
                             memory_label(model.tree().parameter(p).name));
          }
        }
        // So is the input's gradient, a pipeline buffer's until SendGrad.
        if (!is_first && b.input.grad().defined())
          memory::recharge(b.input.grad().storage().data(), trace::MemoryCategory::kPipeBuffers,
                           memory_label("input gradient", in.micro_batch));
        // The last stage's backward returns before freeing its output (the logits stay).
        b.loss = at::Tensor();
        if (!is_last) b.output = at::Tensor();
        record(trace::OpKind::kBackward, start_ns, in.micro_batch);
        return;
      }
      case K::kSendGrad: {
        PipeBuffer& b = buffer(in);
        ZP_CHECK(b.micro_batch == in.micro_batch && b.input.defined() && b.input.grad().defined(),
                 "no input gradient of micro-batch ", in.micro_batch, " in buffer ", in.buffer_id);
        const at::Tensor g = b.input.grad();
        ZP_CHECK(g.is_contiguous(), "an input gradient must be contiguous to be sent");
        send(g, peer(stage - 1), kGradTag, "gradient");
        b.input = at::Tensor();
        return;
      }
      case K::kReduceTiedGrads: {
        for (const TiedGrad& t : tied)
          wait(*t.comm->all_reduce(view(grad_of(t.param)), comm::ReduceOp::kSum, "tied gradient"));
        return;
      }
      case K::kReduceGrads: {
        // buffered_allreduce_fallback: one bucket (MEMORY_OPT_ALLREDUCE_SIZE elements is far
        // above a stage here), flattened, all-reduced, averaged, copied back.
        if (data_comm == nullptr) return;
        std::vector<at::Tensor> grads;
        for (const ParamId p : params)
          grads.push_back(grad_of(p).reshape(-1));
        at::Tensor flat = at::cat(grads);
        grads.clear();
        wait(*data_comm->all_reduce(view(flat), comm::ReduceOp::kSum, "gradients"));
        flat.div_(static_cast<double>(data_comm->size()));
        std::int64_t offset = 0;
        for (const ParamId p : params) {
          at::Tensor& g = grad_of(p);
          g.copy_(flat.narrow(0, offset, g.numel()).view_as(g));
          offset += g.numel();
        }
        return;
      }
      case K::kOptimizerStep: {
        std::vector<at::Tensor> grads;
        grads.reserve(param_tensors.size());
        for (const at::Tensor& p : param_tensors)
          grads.push_back(p.grad());
        optimizer->step(param_tensors, grads);
        // DeepSpeedEngine.zero_grad after the step sets every gradient to None: freed.
        for (at::Tensor& p : param_tensors)
          p.mutable_grad() = at::Tensor();
        record(trace::OpKind::kOptimizerStep, start_ns, trace::kNone);
        return;
      }
    }
    ZP_CHECK(false, "unknown instruction ", pipe::to_string(in));
  }

  // A held parameter's gradient, zeros when backward gave it none.
  at::Tensor& grad_of(ParamId p) {
    const at::Tensor& param = model.parameters()[static_cast<std::size_t>(p)];
    if (!param.grad().defined()) param.mutable_grad() = at::zeros_like(param);
    return param.mutable_grad();
  }
};

PipelineEngine::PipelineEngine(LmModel& model, comm::Communicator& world,
                               const PipelineOptions& options, const comm::GroupMaker& make_group) {
  const int p = options.stages;
  if (p < 1 || world.size() % p != 0) {
    SourceLocation key;
    key.key_path = "parallel.pipeline";
    throw UserError(ErrorKind::kValue, key,
                    std::to_string(p) + " pipeline stages do not divide the " +
                        std::to_string(world.size()) + " ranks");
  }
  if (options.micro_batches < 1) {
    SourceLocation key;
    key.key_path = "gradient_accumulation_steps";
    throw UserError(ErrorKind::kValue, key,
                    std::to_string(options.micro_batches) +
                        " micro-batches: a pipeline step needs at least one");
  }
  impl_ = std::make_unique<Impl>(
      model, world, options,
      pipe::PipelineGrid(pipe::pipe_data_parallel_topology(p, world.size() / p)));
  Impl& s = *impl_;
  s.rank = world.rank();
  s.stage = static_cast<int>(s.grid.stage_id(s.rank));
  s.data = static_cast<int>(s.grid.data_parallel_id(s.rank));
  s.is_first = s.stage == 0;
  s.is_last = s.stage == p - 1;

  const pipe::PipelineLayers& layers = model.pipeline_layers();
  const pipe::PipelinePartition partition = pipe::partition_layers(layers, p, options.partition);
  s.first = partition.stage_begin(s.stage);
  s.end = partition.stage_end(s.stage);
  if (s.first >= s.end) {
    SourceLocation key;
    key.key_path = "parallel.pipeline";
    throw UserError(ErrorKind::kValue, key,
                    "stage " + std::to_string(s.stage) + " of " + std::to_string(p) +
                        " gets no layers: the model has " + std::to_string(layers.layers.size()));
  }

  s.params = model.layer_parameters(s.first, s.end);
  model.release_parameters_except(s.params);
  for (const ParamId id : s.params)
    s.param_tensors.push_back(model.parameters()[static_cast<std::size_t>(id)]);
  for (std::size_t i = 0; i < s.param_tensors.size(); ++i)
    ZP_CHECK(s.param_tensors[i].is_contiguous(), "parameter ", s.params[i], " is not contiguous");
  s.optimizer.emplace(options.optimizer);

  // The groups, made in the same order on every rank (tied, data-parallel, pipe), so that no
  // member waits for one that is joining another group first. The tied weights this rank holds
  // a copy of are all-reduced with the ranks of its pipeline that hold the others.
  const ModuleTree& tree = model.tree();
  for (const pipe::TiedGroup& group : pipe::tied_groups(layers, partition.boundaries, s.grid)) {
    for (const pipe::TiedGroup::Comm& c : group.comms) {
      if (c.data != s.data || std::find(c.ranks.begin(), c.ranks.end(), s.rank) == c.ranks.end()) {
        continue;
      }
      ParamId param = -1;
      for (std::size_t i = 0; i < tree.parameters().size(); ++i)
        if (tree.parameters()[i].name == group.key) param = static_cast<ParamId>(i);
      ZP_CHECK(param >= 0, "tied key ", group.key, " names no parameter");
      ZP_CHECK(std::binary_search(s.params.begin(), s.params.end(), param), "stage ", s.stage,
               " shares tied ", group.key, " but does not hold it");
      if (comm::Communicator* c_comm = s.make_group(make_group, "tied " + group.key, c.ranks))
        s.tied.push_back({param, c_comm});
    }
  }
  s.data_comm = s.make_group(make_group, "data", s.grid.data_parallel_group(s.rank));
  const std::vector<std::int64_t> pipe_ranks = s.grid.pipe_parallel_group(s.rank);
  s.pipe_comm = s.make_group(make_group, "pipe", pipe_ranks);
  s.pipe_root = static_cast<int>(
      std::find(pipe_ranks.begin(), pipe_ranks.end(), s.grid.stage_to_global(p - 1, s.data)) -
      pipe_ranks.begin());

  s.schedule = pipe::stage_schedule(
      pipe::ScheduleSpec{pipe::ScheduleKind::kTrain, options.micro_batches, p, 1}, s.stage);
  s.buffers.resize(static_cast<std::size_t>(s.schedule.num_pipe_buffers));
}

PipelineEngine::~PipelineEngine() = default;

PipelineStepStats PipelineEngine::step(const std::vector<TokenBatch>& micro_batches) {
  Impl& s = *impl_;
  ZP_CHECK(static_cast<int>(micro_batches.size()) == s.options.micro_batches, "a step of ",
           micro_batches.size(), " micro-batches; the engine runs ", s.options.micro_batches);
  const std::int64_t start = comm::wall_clock_ns();
  if (s.trace != nullptr) {
    s.trace->markers.push_back(
        trace::Marker{s.trace_rank, start - s.origin_ns,
                      s.trace->intern("step " + std::to_string(s.step_index))});
  }
  s.batches = &micro_batches;
  s.loss_sum = 0.0;
  s.comm_wait_ns = 0;
  for (const pipe::Step& step : s.schedule.steps)
    for (const Instruction& in : step)
      s.execute(in);

  // _aggregate_total_loss: the last stage averages its loss over the micro-batches and the
  // pipelines, then broadcasts [its pipeline's loss, the average] to the pipeline's stages.
  at::Tensor losses = at::zeros({2}, at::kFloat);
  if (s.is_last) {
    const at::Tensor loss = at::full({1}, s.loss_sum / s.options.micro_batches, at::kFloat);
    const at::Tensor average = loss.clone();
    if (s.data_comm != nullptr) {
      s.wait(*s.data_comm->all_reduce(view(average), comm::ReduceOp::kSum, "loss"));
      average.div_(static_cast<double>(s.data_comm->size()));
    }
    losses = at::cat({loss, average});
  }
  if (s.pipe_comm != nullptr) {
    s.wait(*s.pipe_comm->broadcast(view(losses), s.pipe_root, "loss"));
  }
  s.batches = nullptr;

  PipelineStepStats stats;
  stats.loss = losses[1].item<double>();
  stats.comm_wait_ns = s.comm_wait_ns;
  stats.step_ns = comm::wall_clock_ns() - start;
  ++s.step_index;
  return stats;
}

void PipelineEngine::record_into(trace::Trace* trace, std::int32_t rank, std::int64_t origin_ns) {
  impl_->trace = trace;
  impl_->trace_rank = rank;
  impl_->origin_ns = origin_ns;
  impl_->stage_label = -1;
  if (trace != nullptr) {
    impl_->naming.emplace(impl_->model.tree());
  } else {
    impl_->naming.reset();
  }
}

const pipe::PipelineGrid& PipelineEngine::grid() const {
  return impl_->grid;
}
int PipelineEngine::stage() const {
  return impl_->stage;
}
int PipelineEngine::data_index() const {
  return impl_->data;
}
std::int64_t PipelineEngine::first_layer() const {
  return impl_->first;
}
std::int64_t PipelineEngine::end_layer() const {
  return impl_->end;
}
const std::vector<ParamId>& PipelineEngine::parameters() const {
  return impl_->params;
}

std::vector<float> PipelineEngine::parameter_values(ParamId id) const {
  ZP_CHECK(std::binary_search(impl_->params.begin(), impl_->params.end(), id), "stage ",
           impl_->stage, " does not hold parameter ", id);
  return impl_->model.parameter_values(id);
}

std::vector<PipelineEngine::Group> PipelineEngine::groups() const {
  std::vector<Group> out;
  for (const OwnedGroup& g : impl_->groups)
    out.push_back({g.name, g.comm.get()});
  return out;
}

void PipelineEngine::set_instruction_logging(bool on) {
  impl_->logging = on;
}
const std::vector<pipe::Instruction>& PipelineEngine::instruction_log() const {
  return impl_->log;
}

}  // namespace zp::exec
