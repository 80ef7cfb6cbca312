#include "exec/pipe/pipeline_engine.h"

#include <ATen/ATen.h>
#include <torch/optim/optimizer.h>

#include <algorithm>
#include <string>
#include <utility>

#include "core/util/error.h"
#include "exec/memory/counting_allocator.h"
#include "exec/memory/memory_scope.h"

namespace zp::exec {
namespace {

// Where what an instruction allocates is charged (the counting allocator's categories).
trace::MemoryCategory category_of(pipe::InstructionKind kind) {
  using K = pipe::InstructionKind;
  switch (kind) {
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
    case K::kLoadMicroBatch:
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
constexpr int kTiedTag = 3;
constexpr int kDataTag = 4;
constexpr int kLossTag = 5;

comm::Buffer view(const at::Tensor& t) {
  ZP_CHECK(t.is_contiguous() && t.scalar_type() == at::kFloat && t.device().is_cpu(),
           "pipeline transfers take contiguous fp32 host tensors, got ", t.sizes());
  return comm::host_buffer(t.data_ptr<float>(), t.numel());
}

// What one pipeline buffer holds between a micro-batch's forward and its backward.
struct PipeBuffer {
  int micro_batch = -1;
  at::Tensor input;   // token ids on the first stage, else the received activation
  at::Tensor labels;  // last stage
  at::Tensor output;  // the activation sent on, or the loss on the last stage
  at::Tensor grad;    // the output's gradient, received from the next stage
};

// A send in flight and the tensor it reads, kept alive until the wait.
struct PendingSend {
  comm::WorkPtr work;
  at::Tensor data;
};

struct TiedGrad {
  ParamId param = 0;
  std::vector<std::int64_t> ranks;  // world ranks that sum it, increasing
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
  std::unique_ptr<torch::optim::Optimizer> optimizer;
  std::vector<TiedGrad> tied;
  std::vector<std::int64_t> data_group;
  pipe::StageSchedule schedule;

  std::vector<PipeBuffer> buffers;
  std::vector<PendingSend> pending;
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

  void send(at::Tensor data_out, int to, int tag, const char* label) {
    comm::WorkPtr work = world.send(view(data_out), to, tag, label);
    pending.push_back({std::move(work), std::move(data_out)});
  }

  void recv(const at::Tensor& into, int from, int tag, const char* label) {
    wait(*world.recv(view(into), from, tag, label));
  }

  // Sums `t` in place over `ranks`: the first one adds the others' in rank order and sends the
  // sum back, so every member ends with the same bits.
  void group_sum(at::Tensor& t, const std::vector<std::int64_t>& ranks, int tag,
                 const char* label) {
    if (ranks.size() < 2) return;
    ZP_CHECK(std::find(ranks.begin(), ranks.end(), rank) != ranks.end(), "rank ", rank,
             " reduces in a group it is not in");
    at::Tensor flat = t.contiguous();
    const int leader = static_cast<int>(ranks.front());
    if (rank == leader) {
      at::Tensor other = at::empty_like(flat);
      for (std::size_t i = 1; i < ranks.size(); ++i) {
        recv(other, static_cast<int>(ranks[i]), tag, label);
        flat.add_(other);
      }
      std::vector<comm::WorkPtr> works;
      for (std::size_t i = 1; i < ranks.size(); ++i)
        works.push_back(world.send(view(flat), static_cast<int>(ranks[i]), tag, label));
      for (const comm::WorkPtr& w : works)
        wait(*w);
    } else {
      wait(*world.send(view(flat), leader, tag, label));
      recv(flat, leader, tag, label);
    }
    if (!flat.is_same(t)) t.copy_(flat);
  }

  PipeBuffer& buffer(const Instruction& in) {
    ZP_CHECK(in.buffer_id >= 0 && static_cast<std::size_t>(in.buffer_id) < buffers.size(),
             "buffer ", in.buffer_id, " of ", buffers.size());
    ZP_CHECK(in.micro_batch >= 0 && static_cast<std::size_t>(in.micro_batch) < batches->size(),
             "micro-batch ", in.micro_batch, " of ", batches->size());
    return buffers[static_cast<std::size_t>(in.buffer_id)];
  }

  // The activation shape of a micro-batch: [rows, seq, hidden] fp32.
  at::Tensor activation(int micro_batch) const {
    const TokenBatch& b = (*batches)[static_cast<std::size_t>(micro_batch)];
    return at::empty({b.batch, b.seq, model.config().hidden_size}, at::kFloat);
  }

  void execute(const Instruction& in) {
    memory::MemoryScope scope(category_of(in.kind));
    const std::int64_t start_ns = comm::wall_clock_ns();
    if (logging) log.push_back(in);
    switch (in.kind) {
      case K::kLoadMicroBatch: {
        PipeBuffer& b = buffer(in);
        const at::Tensor ids = token_tensor((*batches)[static_cast<std::size_t>(in.micro_batch)]);
        b.micro_batch = in.micro_batch;
        if (is_first) b.input = ids;
        if (is_last) b.labels = ids;
        return;
      }
      case K::kRecvActivation: {
        PipeBuffer& b = buffer(in);
        at::Tensor x = activation(in.micro_batch);
        recv(x, peer(stage - 1), kActivationTag, "activation");
        b.micro_batch = in.micro_batch;
        b.input = x.requires_grad_(true);
        return;
      }
      case K::kForwardPass: {
        PipeBuffer& b = buffer(in);
        ZP_CHECK(b.micro_batch == in.micro_batch && b.input.defined(), "forward of micro-batch ",
                 in.micro_batch, " on buffer ", in.buffer_id, " holding ", b.micro_batch);
        b.output = model.forward_layers(first, end, b.input, is_last ? b.labels : at::Tensor());
        if (is_last) loss_sum += b.output.item<double>();
        record(trace::OpKind::kForward, start_ns, in.micro_batch);
        return;
      }
      case K::kSendActivation: {
        PipeBuffer& b = buffer(in);
        ZP_CHECK(b.micro_batch == in.micro_batch && b.output.defined(), "no activation of ",
                 in.micro_batch, " in buffer ", in.buffer_id);
        send(b.output.detach().contiguous(), peer(stage + 1), kActivationTag, "activation");
        return;
      }
      case K::kRecvGrad: {
        PipeBuffer& b = buffer(in);
        ZP_CHECK(b.micro_batch == in.micro_batch && b.output.defined(), "no activation of ",
                 in.micro_batch, " in buffer ", in.buffer_id, " for its gradient");
        at::Tensor g = at::empty(b.output.sizes(), at::kFloat);
        recv(g, peer(stage + 1), kGradTag, "gradient");
        b.grad = g;
        return;
      }
      case K::kBackwardPass: {
        PipeBuffer& b = buffer(in);
        ZP_CHECK(b.micro_batch == in.micro_batch && b.output.defined(), "backward of ",
                 in.micro_batch, " on buffer ", in.buffer_id, " holding ", b.micro_batch);
        if (is_last) {
          // DeepSpeed scales the loss by the gradient accumulation steps before backward.
          (b.output / static_cast<double>(options.micro_batches)).backward();
        } else {
          ZP_CHECK(b.grad.defined(), "backward of micro-batch ", in.micro_batch,
                   " before its gradient arrived");
          b.output.backward(b.grad);
        }
        // The parameters' gradients live on to the step: DeepSpeed's gradient buffers, which the
        // simulator counts as such, whatever the backward allocated them under.
        for (const ParamId p : params) {
          const at::Tensor& g = model.parameters()[static_cast<std::size_t>(p)].grad();
          if (g.defined())
            memory::recharge(g.storage().data(), trace::MemoryCategory::kGradBuckets);
        }
        b.output = at::Tensor();
        b.grad = at::Tensor();
        b.labels = at::Tensor();
        if (is_first) b.input = at::Tensor();
        record(trace::OpKind::kBackward, start_ns, in.micro_batch);
        return;
      }
      case K::kSendGrad: {
        PipeBuffer& b = buffer(in);
        ZP_CHECK(b.micro_batch == in.micro_batch && b.input.defined() && b.input.grad().defined(),
                 "no input gradient of micro-batch ", in.micro_batch, " in buffer ", in.buffer_id);
        send(b.input.grad().contiguous(), peer(stage - 1), kGradTag, "gradient");
        b.input = at::Tensor();
        return;
      }
      case K::kReduceTiedGrads: {
        for (const TiedGrad& t : tied) {
          at::Tensor& g = grad_of(t.param);
          group_sum(g, t.ranks, kTiedTag, "tied gradient");
        }
        return;
      }
      case K::kReduceGrads: {
        if (data_group.size() < 2) return;
        std::vector<at::Tensor> grads;
        for (const ParamId p : params)
          grads.push_back(grad_of(p).reshape(-1));
        at::Tensor flat = at::cat(grads);
        group_sum(flat, data_group, kDataTag, "gradients");
        flat.div_(static_cast<double>(data_group.size()));
        std::int64_t offset = 0;
        for (const ParamId p : params) {
          at::Tensor& g = grad_of(p);
          g.copy_(flat.narrow(0, offset, g.numel()).view_as(g));
          offset += g.numel();
        }
        return;
      }
      case K::kOptimizerStep:
        optimizer->step();
        record(trace::OpKind::kOptimizerStep, start_ns, trace::kNone);
        return;
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
                               const PipelineOptions& options) {
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
  s.optimizer = make_optimizer(options.optimizer, s.param_tensors);

  // The tied weights this rank holds a copy of, and the ranks of its pipeline that hold the others.
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
      s.tied.push_back({param, c.ranks});
    }
  }
  s.data_group = s.grid.data_parallel_group(s.rank);

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
  s.optimizer->zero_grad();
  for (const pipe::Step& step : s.schedule.steps)
    for (const Instruction& in : step)
      s.execute(in);
  for (PendingSend& p : s.pending)
    s.wait(*p.work);
  s.pending.clear();
  for (PipeBuffer& b : s.buffers)
    b = PipeBuffer{};

  // DeepSpeed's _aggregate_total_loss: the last stages average over the pipelines, then each
  // sends its pipeline's other stages the result.
  at::Tensor loss = at::zeros({1}, at::kFloat);
  if (s.is_last) {
    loss.fill_(s.loss_sum / s.options.micro_batches);
    s.group_sum(loss, s.data_group, kLossTag, "loss");
    loss.div_(static_cast<double>(s.data_group.size()));
    for (int stage = 0; stage < s.options.stages - 1; ++stage)
      s.wait(*s.world.send(view(loss), s.peer(stage), kLossTag, "loss"));
  } else {
    s.recv(loss, s.peer(s.options.stages - 1), kLossTag, "loss");
  }
  s.batches = nullptr;

  PipelineStepStats stats;
  stats.loss = loss.item<double>();
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

void PipelineEngine::set_instruction_logging(bool on) {
  impl_->logging = on;
}
const std::vector<pipe::Instruction>& PipelineEngine::instruction_log() const {
  return impl_->log;
}

}  // namespace zp::exec
