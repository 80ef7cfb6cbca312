#include "exec/zero/zero3_engine.h"

#include <ATen/ATen.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/function_hook.h>
#include <torch/csrc/autograd/variable.h>

#include <algorithm>
#include <sstream>
#include <string>
#include <unordered_map>
#include <utility>

#include "core/util/error.h"
#include "core/zero/grad_reducer.h"
#include "core/zero/partition.h"
#include "exec/memory/counting_allocator.h"
#include "exec/memory/memory_scope.h"
#include "exec/runtime/tensor_buffer.h"
#include "exec/train/fused_optimizer.h"

namespace zp::exec {

namespace {

using memory::MemoryCategory;
using memory::MemoryScope;
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// What the backward hooks call back into.
class BackwardHooks {
 public:
  virtual ~BackwardHooks() = default;
  virtual void output_wrapped(ModuleId module) = 0;
  virtual void output_backward(ModuleId module) = 0;
  virtual void input_wrapped(ModuleId module) = 0;
  virtual void input_backward(ModuleId module) = 0;
};

struct HookTarget : torch::CustomClassHolder {
  HookTarget(BackwardHooks* hooks_in, ModuleId module_in) : hooks(hooks_in), module(module_in) {}
  BackwardHooks* hooks;
  ModuleId module;
};

c10::intrusive_ptr<HookTarget> target_of(AutogradContext* ctx) {
  return c10::static_intrusive_pointer_cast<HookTarget>(ctx->saved_data["target"].toCapsule());
}

// Wraps a module's output: its backward runs before the module's own backward (DeepSpeed's
// PreBackwardFunctionForModule).
struct PreBackwardFunction : torch::autograd::Function<PreBackwardFunction> {
  static variable_list forward(AutogradContext* ctx, const at::Tensor& output,
                               const c10::intrusive_ptr<HookTarget>& target) {
    ctx->saved_data["target"] = c10::IValue::make_capsule(target);
    target->hooks->output_wrapped(target->module);
    return {output};
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto target = target_of(ctx);
    target->hooks->output_backward(target->module);
    return {grads.at(0), at::Tensor()};
  }
};

// Wraps a module's input: its backward runs once the gradient of that input is known, i.e. after
// the module's backward (DeepSpeed's PostBackwardFunctionForModule).
struct PostBackwardFunction : torch::autograd::Function<PostBackwardFunction> {
  static variable_list forward(AutogradContext* ctx, const at::Tensor& input,
                               const c10::intrusive_ptr<HookTarget>& target) {
    ctx->saved_data["target"] = c10::IValue::make_capsule(target);
    target->hooks->input_wrapped(target->module);
    return {input};
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto target = target_of(ctx);
    target->hooks->input_backward(target->module);
    return {grads.at(0), at::Tensor()};
  }
};

// Runs after a parameter's gradient accumulator: the gradient is in param.grad().
class GradReadyHook : public torch::autograd::FunctionPostHook {
 public:
  GradReadyHook(std::function<void(ParamId)> ready, ParamId param)
      : ready_(std::move(ready)), param_(param) {}
  variable_list operator()(const variable_list& outputs, const variable_list& /*inputs*/) override {
    ready_(param_);
    return outputs;
  }

 private:
  std::function<void(ParamId)> ready_;
  ParamId param_;
};

}  // namespace

struct Zero3Engine::Impl final : zero::CoordinatorBackend,
                                 zero::GradientReducerBackend,
                                 ModuleHooks,
                                 BackwardHooks {
  Impl(LmModel& model, const zero::ZeroModel& zero_model, comm::Communicator& group,
       const Zero3Options& options);

  // --- CoordinatorBackend ---
  void start_gather(const zero::GatherRequest& request) override;
  void wait_gather(zero::GatherHandle handle) override;
  void release(ParamId param, zero::ReleaseReason reason) override;
  void drop_gather(zero::GatherHandle handle) override;

  // --- GradientReducerBackend ---
  void reduce(const zero::GradBucket& bucket) override;
  void grad_added(ParamId param, bool contiguous) override;

  // --- ModuleHooks ---
  void pre_forward(const ModuleCall& call) override;
  void post_forward(const ModuleCall& call) override;
  void wrap_inputs(const ModuleCall& call, std::vector<at::Tensor>& inputs) override;
  void wrap_outputs(const ModuleCall& call, std::vector<at::Tensor>& outputs) override;

  // --- BackwardHooks ---
  void output_wrapped(ModuleId module) override { ++modules[idx(module)].pre_backward_refs; }
  void output_backward(ModuleId module) override;
  void input_wrapped(ModuleId module) override { ++modules[idx(module)].grads_remaining; }
  void input_backward(ModuleId module) override;

  void grad_ready(ParamId p);
  // Gives the reducer parameter p's gradient.
  void hand_over(ParamId p);
  Zero3StepStats step(const std::vector<TokenBatch>& micro_batches);

  // Timing: the time between hooks is the model's compute, charged to the module running then;
  // the time inside them is the engine's.
  void enter_hook();
  void leave_hook();
  std::int32_t module_label(ModuleId m);
  // The trace's name for module m: its qualified name, the root's type for the root.
  std::string module_name(ModuleId m) const;
  // Brackets a hook for the timing.
  class HookTimer {
   public:
    explicit HookTimer(Impl& impl) : impl_(impl) { impl_.enter_hook(); }
    ~HookTimer() { impl_.leave_hook(); }
    HookTimer(const HookTimer&) = delete;
    HookTimer& operator=(const HookTimer&) = delete;

   private:
    Impl& impl_;
  };
  // A decision for the log, as "what id"; nothing is built unless logging is on (hooks are hot).
  void log(const char* what, std::int64_t id) {
    if (log_decisions) decisions.push_back(std::string(what) + " " + std::to_string(id));
  }
  static std::size_t idx(std::int64_t i) { return static_cast<std::size_t>(i); }

  struct ModuleState {
    std::int32_t grads_remaining = 0;    // wrapped inputs whose gradient has not arrived
    std::int32_t pre_backward_refs = 0;  // wrapped outputs not yet reached by backward
  };
  struct Gather {
    comm::WorkPtr work;
    at::Tensor flat;  // [world, sum of partitions]: rank r's partitions in row r
    std::vector<ParamId> params;
  };

  LmModel& model;
  const zero::ZeroModel& zm;
  comm::Communicator& group;
  const std::int64_t world;
  const std::int64_t rank;
  const std::vector<at::Tensor>& params;  // the model's tensors, by ParamId

  // Partitions: one flat buffer, each parameter's partition a view at its offset (ds_id order).
  std::vector<std::int64_t> offset;  // by ParamId
  at::Tensor partition_flat;
  std::vector<at::Tensor> partition;
  // Gradient partitions, summed over micro-steps; and the fp32 master copy the optimizer steps.
  at::Tensor grad_flat;
  std::vector<at::Tensor> grad_partition;
  at::Tensor master;
  FusedOptimizer optimizer;

  zero::Coordinator coordinator;
  zero::GradientReducer reducer;
  std::vector<std::shared_ptr<torch::autograd::Node>> accumulators;  // by ParamId: kept alive
  std::vector<ModuleState> modules;
  std::unordered_map<zero::GatherHandle, Gather> gathers;
  std::vector<c10::intrusive_ptr<HookTarget>> targets;  // by ModuleId

  // The reduce bucket: gradients waiting for their bucket's reduction, as tensors of their own or
  // as views of the contiguous buffer.
  at::Tensor contiguous;
  std::int64_t contiguous_fill = 0;
  std::vector<at::Tensor> bucket_grad;  // by ParamId
  // Gradients of z3 leaves' parameters wait for the leaf's post-backward.
  std::vector<std::vector<ParamId>> leaf_ready;  // by ModuleId

  enum class Phase : std::uint8_t { kIdle, kForward, kBackward };
  Phase phase = Phase::kIdle;
  std::vector<ModuleId> forward_stack;   // calls running in forward (or recomputation)
  ModuleId backward_module = kNoModule;  // the module whose pre-backward came last
  std::int64_t resume_ns = 0;            // when the last hook returned
  std::int64_t hook_start_ns = 0;
  int hook_depth = 0;
  trace::Trace* trace = nullptr;
  std::int32_t trace_rank = 0;
  std::int64_t origin_ns = 0;
  std::int32_t step_index = 0;
  std::int32_t micro_index = 0;
  std::vector<std::int32_t> labels;  // by ModuleId: the interned name, -1 until needed
  std::vector<ModuleId> owners;      // by ParamId, built for the first release traced
  // Names for the trace's allocations, as the simulator gives them: a parameter's name, the
  // module running (the root as "model"), "gather N", "bucket N". Set only while tracing.
  bool name_memory = false;
  std::vector<memory::Label> param_memory_labels;   // by ParamId
  std::vector<memory::Label> module_memory_labels;  // by ModuleId
  memory::Label contiguous_label = memory::kNoLabel, optimizer_label = memory::kNoLabel;
  // Names what the model allocates from here on after the module running now.
  void name_running_module();
  memory::Label numbered_memory_label(const char* what, std::int64_t n) const {
    return name_memory ? memory::intern_label(what + std::to_string(n)) : memory::kNoLabel;
  }

  std::function<void()> synchronize;  // Zero3Options::synchronize

  Zero3StepStats stats;
  bool log_decisions = false;
  std::vector<std::string> decisions;
};

Zero3Engine::Impl::Impl(LmModel& model_in, const zero::ZeroModel& zero_model,
                        comm::Communicator& group_in, const Zero3Options& options)
    : model(model_in),
      zm(zero_model),
      group(group_in),
      world(group_in.size()),
      rank(group_in.rank()),
      params(model_in.parameters()),
      optimizer(options.optimizer),
      coordinator(zero_model, *this),
      reducer(zero_model, *this),
      synchronize(options.synchronize) {
  ZP_CHECK(zm.settings().data_parallel_size == world, "the ZeRO model is partitioned over ",
           zm.settings().data_parallel_size, " ranks; the group has ", world);
  ZP_CHECK(params.size() == zm.tree().parameters().size(), "the model has ", params.size(),
           " parameters; the tree ", zm.tree().parameters().size());
  const std::size_t n = params.size();
  modules.resize(zm.tree().modules().size());
  leaf_ready.resize(modules.size());
  for (ModuleId m = 0; m < static_cast<ModuleId>(modules.size()); ++m)
    targets.push_back(c10::make_intrusive<HookTarget>(this, m));
  bucket_grad.resize(n);
  labels.assign(modules.size(), -1);
  for (ParamId p = 0; p < static_cast<ParamId>(n); ++p)
    param_memory_labels.push_back(memory::intern_label(zm.tree().parameter(p).name));
  for (ModuleId m = 0; m < static_cast<ModuleId>(modules.size()); ++m)
    module_memory_labels.push_back(
        memory::intern_label(m == 0 ? std::string("model") : zm.tree().qualified_name(m)));
  contiguous_label = memory::intern_label("ipg buffer");
  optimizer_label = memory::intern_label("optimizer states");

  // This rank's partitions, cut from the full initial values every rank holds.
  offset.assign(n, 0);
  std::int64_t total = 0;
  for (ParamId p : zm.params_by_ds_id()) {
    offset[idx(p)] = total;
    total += zm.param(p).shape.partition_numel;
  }
  {
    MemoryScope scope(MemoryCategory::kParamPartitions,
                      memory::intern_label("parameter partitions"));
    partition_flat = at::zeros({total}, params.front().options().requires_grad(false));
  }
  partition.resize(n);
  for (ParamId p = 0; p < static_cast<ParamId>(n); ++p) {
    const zero::PartitionShape& shape = zm.param(p).shape;
    partition[idx(p)] = partition_flat.narrow(0, offset[idx(p)], shape.partition_numel);
    const std::int64_t begin = rank * shape.partition_numel;
    const std::int64_t valid = shape.valid_numel(rank);
    if (valid > 0) {
      partition[idx(p)]
          .narrow(0, 0, valid)
          .copy_(params[idx(p)].detach().reshape(-1).narrow(0, begin, valid));
    }
  }
  {
    MemoryScope scope(MemoryCategory::kGradPartitions, memory::intern_label("gradient partitions"));
    grad_flat = at::zeros({total}, partition_flat.options());
  }
  grad_partition.resize(n);
  for (ParamId p = 0; p < static_cast<ParamId>(n); ++p)
    grad_partition[idx(p)] = grad_flat.narrow(0, offset[idx(p)], zm.param(p).shape.partition_numel);
  {
    MemoryScope scope(MemoryCategory::kMasterWeights, memory::intern_label("master weights"));
    master = partition_flat.clone();
  }

  // The gradient accumulators are made while the parameters have their full shape: autograd
  // checks each gradient against the shape its accumulator was made for. DeepSpeed keeps them
  // alive for the same reason.
  accumulators.resize(n);
  for (ParamId p = 0; p < static_cast<ParamId>(n); ++p) {
    if (!zm.param(p).requires_grad) continue;
    accumulators[idx(p)] = torch::autograd::impl::grad_accumulator(params[idx(p)]);
    ZP_CHECK(accumulators[idx(p)] != nullptr, "parameter ", p, " has no gradient accumulator");
    accumulators[idx(p)]->add_post_hook(
        std::make_unique<GradReadyHook>([this](ParamId q) { grad_ready(q); }, p));
  }
  // Partitioned: every module's tensor gives its storage up.
  for (ParamId p = 0; p < static_cast<ParamId>(n); ++p)
    params[idx(p)].set_data(at::empty({0}, params[idx(p)].options()));
  // deepspeed.initialize gathers each trainable parameter once and partitions it again.
  for (ParamId p : zm.params_by_ds_id()) {
    if (!zm.param(p).requires_grad) continue;
    const ParamId one[] = {p};
    coordinator.gather_outside(one);
    coordinator.release_outside(p);
  }
}

// --- Gathers
// --------------------------------------------------------------------------------------

void Zero3Engine::Impl::start_gather(const zero::GatherRequest& request) {
  Gather g;
  g.params = request.params;
  std::int64_t sum = 0;
  for (ParamId p : g.params)
    sum += zm.param(p).shape.partition_numel;
  // As DeepSpeed gathers: one flat buffer, this rank's partitions copied into its own row, and an
  // all-gather in place. A single parameter becomes a view of the buffer (its padded form), so the
  // buffer is charged as the parameter is.
  const bool single = g.params.size() == 1;
  {
    MemoryScope scope(single && zm.param(g.params.front()).persistent
                          ? MemoryCategory::kPersistentParams
                          : MemoryCategory::kGatheredParams,
                      single ? param_memory_labels[idx(g.params.front())]
                             : numbered_memory_label("gather ", request.handle));
    g.flat = at::empty({world, sum}, partition_flat.options());
  }
  at::Tensor mine = g.flat[rank];
  if (single) {
    mine.copy_(partition[idx(g.params.front())]);
  } else {
    std::vector<at::Tensor> parts;
    parts.reserve(g.params.size());
    for (ParamId p : g.params)
      parts.push_back(partition[idx(p)]);
    at::cat_out(mine, parts);
  }
  if (world > 1) {
    const std::string label = "gather " + std::to_string(request.handle);
    if (trace != nullptr) {
      // The trace's gather op names the module whose fetch issued it and what it gathers.
      std::string names;
      for (ParamId p : g.params)
        names += (names.empty() ? "" : ", ") + zm.tree().parameter(p).name;
      group.log().attribute(label, request.module == kNoModule ? "" : module_name(request.module),
                            std::move(names));
    }
    g.work = group.all_gather(buffer_of(mine), buffer_of(g.flat), label);
  }
  ++stats.gathers;
  stats.gathered_numel += request.numel;
  if (log_decisions) {
    std::ostringstream line;
    line << "gather " << request.handle << " [";
    for (std::size_t i = 0; i < g.params.size(); ++i)
      line << (i ? " " : "") << g.params[i];
    line << "] " << to_string(request.reason);
    decisions.push_back(line.str());
  }
  gathers.emplace(request.handle, std::move(g));
}

void Zero3Engine::Impl::wait_gather(zero::GatherHandle handle) {
  const auto it = gathers.find(handle);
  ZP_CHECK(it != gathers.end(), "gather ", handle, " was never started");
  Gather& g = it->second;
  if (g.work) {
    const std::int64_t begin = comm::wall_clock_ns();
    g.work->wait();
    g.work.reset();
    stats.comm_wait_ns += comm::wall_clock_ns() - begin;
  }
  if (g.params.size() == 1) {
    const ParamId p = g.params.front();
    params[idx(p)].set_data(
        g.flat.view(-1).narrow(0, 0, zm.param(p).numel).view(zm.tree().parameter(p).shape));
    log("wait", handle);
    return;
  }
  // Each parameter from its slice of every rank's row, the padding cut off.
  std::int64_t column = 0;
  for (ParamId p : g.params) {
    const zero::ZeroParam& zp = zm.param(p);
    MemoryScope scope(
        zp.persistent ? MemoryCategory::kPersistentParams : MemoryCategory::kGatheredParams,
        param_memory_labels[idx(p)]);
    // One allocation, filled row by row, as torch.cat fills DeepSpeed's: a reshape of the strided
    // slice and a clone of it would hold the parameter twice for a moment.
    at::Tensor full = at::empty({zp.numel}, g.flat.options());
    for (std::int64_t r = 0, filled = 0; r < world && filled < zp.numel; ++r) {
      const std::int64_t n = std::min(zp.shape.partition_numel, zp.numel - filled);
      full.narrow(0, filled, n).copy_(g.flat[r].narrow(0, column, n));
      filled += n;
    }
    params[idx(p)].set_data(full.view(zm.tree().parameter(p).shape));
    column += zp.shape.partition_numel;
  }
  log("wait", handle);
}

void Zero3Engine::Impl::drop_gather(zero::GatherHandle handle) {
  gathers.erase(handle);
}

void Zero3Engine::Impl::release(ParamId param, zero::ReleaseReason /*reason*/) {
  params[idx(param)].set_data(at::empty({0}, partition_flat.options()));
  ++stats.releases;
  log("release", param);
  if (trace != nullptr) {
    // An instant on the compute stream, named after the parameter, with the module that owns it.
    if (owners.empty()) owners = zm.tree().parameter_owners();
    const ModuleId owner = owners[idx(param)];
    trace::Op op;
    op.rank = trace_rank;
    op.stream = trace::StreamKind::kCompute;
    op.kind = trace::OpKind::kRelease;
    op.start = comm::wall_clock_ns() - origin_ns;
    op.end = op.start;
    op.bytes = zm.param(param).numel * static_cast<std::int64_t>(partition_flat.element_size());
    op.step = step_index;
    op.micro_batch = phase != Phase::kIdle ? micro_index : trace::kNone;
    op.module = owner == kNoModule ? trace::kNone : module_label(owner);
    op.name = trace->intern(zm.tree().parameter(param).name);
    op.params = op.name;
    trace->ops.push_back(op);
  }
}

// --- Hooks
// ----------------------------------------------------------------------------------------

std::string Zero3Engine::Impl::module_name(ModuleId m) const {
  std::string name = zm.tree().qualified_name(m);
  return name.empty() ? zm.tree().module(m).type : name;
}

std::int32_t Zero3Engine::Impl::module_label(ModuleId m) {
  std::int32_t& label = labels[idx(m)];
  if (label < 0) label = trace->intern(module_name(m));
  return label;
}

void Zero3Engine::Impl::enter_hook() {
  if (hook_depth++ > 0) return;
  if (synchronize) synchronize();  // the device's queued compute belongs to the interval ending
  const std::int64_t now = comm::wall_clock_ns();
  hook_start_ns = now;
  if (phase == Phase::kIdle || resume_ns == 0) return;
  stats.compute_ns += now - resume_ns;
  const ModuleId running = !forward_stack.empty() ? forward_stack.back() : backward_module;
  if (trace == nullptr || running == kNoModule) return;
  trace::Op op;
  op.rank = trace_rank;
  op.stream = trace::StreamKind::kCompute;
  op.kind = phase == Phase::kForward ? trace::OpKind::kForward
            : !forward_stack.empty() ? trace::OpKind::kRecompute
                                     : trace::OpKind::kBackward;
  op.start = resume_ns - origin_ns;
  op.end = now - origin_ns;
  op.name = module_label(running);
  op.step = step_index;
  op.micro_batch = micro_index;
  trace->ops.push_back(op);
}

void Zero3Engine::Impl::name_running_module() {
  // Outside every call (the loss, the start of backward, the step's end) the model is running.
  const ModuleId running = !forward_stack.empty()      ? forward_stack.back()
                           : phase == Phase::kBackward ? backward_module
                                                       : kNoModule;
  memory::set_memory_label(module_memory_labels[idx(running == kNoModule ? 0 : running)]);
}

void Zero3Engine::Impl::leave_hook() {
  if (--hook_depth > 0) return;
  if (name_memory) name_running_module();
  if (synchronize) synchronize();
  const std::int64_t now = comm::wall_clock_ns();
  stats.hook_ns += now - hook_start_ns;
  resume_ns = now;
}

void Zero3Engine::Impl::pre_forward(const ModuleCall& call) {
  HookTimer timer(*this);
  forward_stack.push_back(call.module);
  if (!zm.is_hooked(call.module)) return;
  log("pre_forward", call.module);
  coordinator.pre_forward(call.module);
}

void Zero3Engine::Impl::wrap_inputs(const ModuleCall& call, std::vector<at::Tensor>& inputs) {
  if (!zm.is_hooked(call.module) || !at::GradMode::is_enabled()) return;
  HookTimer timer(*this);
  // DeepSpeed counts anew at each forward call, so only the last call's inputs reach zero.
  modules[idx(call.module)].grads_remaining = 0;
  for (at::Tensor& t : inputs) {
    if (t.defined() && t.requires_grad())
      t = PostBackwardFunction::apply(t, targets[idx(call.module)]).at(0);
  }
}

void Zero3Engine::Impl::post_forward(const ModuleCall& call) {
  HookTimer timer(*this);
  ZP_CHECK(!forward_stack.empty() && forward_stack.back() == call.module, "module ", call.module,
           " returned but was not the innermost call");
  forward_stack.pop_back();
  if (!zm.is_hooked(call.module)) return;
  log("post_forward", call.module);
  coordinator.post_forward(call.module);
}

void Zero3Engine::Impl::wrap_outputs(const ModuleCall& call, std::vector<at::Tensor>& outputs) {
  if (!zm.is_hooked(call.module) || !at::GradMode::is_enabled()) return;
  HookTimer timer(*this);
  for (at::Tensor& t : outputs) {
    if (t.defined() && t.requires_grad())
      t = PreBackwardFunction::apply(t, targets[idx(call.module)]).at(0);
  }
}

void Zero3Engine::Impl::output_backward(ModuleId module) {
  HookTimer timer(*this);
  backward_module = module;
  ModuleState& s = modules[idx(module)];
  if (s.pre_backward_refs <= 0) return;
  --s.pre_backward_refs;
  log("pre_backward", module);
  coordinator.pre_backward(module);
}

void Zero3Engine::Impl::input_backward(ModuleId module) {
  HookTimer timer(*this);
  ModuleState& s = modules[idx(module)];
  if (--s.grads_remaining != 0) return;
  log("post_backward", module);
  coordinator.post_backward(module);
  // A z3 leaf reduces its subtree's gradients once its backward is done, in id order.
  std::vector<ParamId>& ready = leaf_ready[idx(module)];
  std::sort(ready.begin(), ready.end());
  for (ParamId p : ready)
    hand_over(p);
  ready.clear();
}

// --- Gradients
// ------------------------------------------------------------------------------------

void Zero3Engine::Impl::grad_ready(ParamId p) {
  HookTimer timer(*this);
  const ModuleId leaf = zm.param(p).leaf;
  log("grad", p);
  if (leaf != kNoModule) {
    leaf_ready[idx(leaf)].push_back(p);
    return;
  }
  hand_over(p);
}

void Zero3Engine::Impl::hand_over(ParamId p) {
  // Autograd made the gradient during backward, as the backward's memory (activations): from
  // here on it is a gradient waiting for its bucket, as the simulator counts it.
  const at::Tensor& grad = params[idx(p)].grad();
  if (grad.defined()) {
    memory::recharge(grad.storage().data(), MemoryCategory::kGradBuckets,
                     param_memory_labels[idx(p)]);
  }
  reducer.grad_ready(p);
}

void Zero3Engine::Impl::grad_added(ParamId param, bool in_contiguous) {
  at::Tensor& grad = params[idx(param)].mutable_grad();
  ZP_CHECK(grad.defined(), "parameter ", param, " is ready but has no gradient");
  if (in_contiguous) {
    if (!contiguous.defined()) {
      MemoryScope scope(MemoryCategory::kGradBuckets, contiguous_label);
      contiguous = at::empty({zero::gradient_buffers(zm).bucket_numel}, partition_flat.options());
    }
    const std::int64_t numel = grad.numel();
    at::Tensor slot = contiguous.narrow(0, contiguous_fill, numel);
    slot.copy_(grad.reshape(-1));
    bucket_grad[idx(param)] = slot;
    contiguous_fill += numel;
  } else {
    bucket_grad[idx(param)] = grad.reshape(-1);
  }
  grad = at::Tensor();
}

void Zero3Engine::Impl::reduce(const zero::GradBucket& bucket) {
  MemoryScope scope(MemoryCategory::kCommBuffers, numbered_memory_label("bucket ", bucket.index));
  const std::string label = "bucket " + std::to_string(bucket.index);
  if (bucket.path == zero::ReducePath::kContiguousAllReduce) {
    // __avg_scatter_contiguous_grads: the contiguous buffer, averaged and all-reduced in place.
    ZP_CHECK(bucket.contiguous_numel == bucket.numel && contiguous_fill == bucket.numel, "bucket ",
             bucket.index, " is all-reduced but not all in the contiguous buffer");
    at::Tensor flat = contiguous.narrow(0, 0, bucket.numel);
    flat.div_(static_cast<double>(world));
    if (world > 1) {
      const std::int64_t begin = comm::wall_clock_ns();
      group.all_reduce(buffer_of(flat), comm::ReduceOp::kSum, label)->wait();
      stats.comm_wait_ns += comm::wall_clock_ns() - begin;
    }
    std::int64_t at = 0;
    for (ParamId p : bucket.params) {
      const zero::ZeroParam& zp = zm.param(p);
      const std::int64_t valid = zp.shape.valid_numel(rank);
      if (valid > 0) {
        grad_partition[idx(p)]
            .narrow(0, 0, valid)
            .add_(flat.narrow(0, at + rank * zp.shape.partition_numel, valid));
      }
      at += zp.numel;
    }
  } else {
    // reduce_scatter_coalesced: row r of one flat [world, sum] buffer holds every gradient's
    // chunk r, padded, and the reduce-scatter leaves this rank's row, summed, in place. A lone
    // gradient that needs no padding is that buffer itself: nothing is copied.
    std::int64_t sum = 0;
    for (ParamId p : bucket.params)
      sum += zm.param(p).shape.partition_numel;
    const ParamId first = bucket.params.front();
    const zero::PartitionShape& only = zm.param(first).shape;
    at::Tensor flat;
    if (bucket.params.size() == 1 && only.padded_numel == only.numel) {
      flat = bucket_grad[idx(first)].view({world, sum});
    } else {
      flat = at::empty({world, sum}, partition_flat.options());
      std::int64_t column = 0;
      for (ParamId p : bucket.params) {
        const zero::PartitionShape& shape = zm.param(p).shape;
        const at::Tensor& g = bucket_grad[idx(p)];
        for (std::int64_t r = 0; r < world; ++r) {
          at::Tensor chunk = flat[r].narrow(0, column, shape.partition_numel);
          const std::int64_t valid = shape.valid_numel(r);
          if (valid > 0)
            chunk.narrow(0, 0, valid).copy_(g.narrow(0, r * shape.partition_numel, valid));
          if (valid < shape.partition_numel)
            chunk.narrow(0, valid, shape.partition_numel - valid).zero_();
        }
        column += shape.partition_numel;
      }
    }
    flat.div_(static_cast<double>(world));
    at::Tensor output = flat[rank];
    if (world > 1) {
      const std::int64_t begin = comm::wall_clock_ns();
      group.reduce_scatter(buffer_of(flat), buffer_of(output), comm::ReduceOp::kSum, label)->wait();
      stats.comm_wait_ns += comm::wall_clock_ns() - begin;
    }
    std::int64_t at = 0;
    for (ParamId p : bucket.params) {
      const std::int64_t part = zm.param(p).shape.partition_numel;
      grad_partition[idx(p)].add_(output.narrow(0, at, part));
      at += part;
    }
  }
  for (ParamId p : bucket.params)
    bucket_grad[idx(p)] = at::Tensor();
  contiguous_fill = 0;
  ++stats.buckets;
  stats.reduced_numel += bucket.numel;
  log("bucket", bucket.index);
}

// --- The step
// -------------------------------------------------------------------------------------

Zero3StepStats Zero3Engine::Impl::step(const std::vector<TokenBatch>& micro_batches) {
  ZP_CHECK(!micro_batches.empty(), "a step needs at least one micro-batch");
  stats = Zero3StepStats{};
  const std::int64_t step_start = comm::wall_clock_ns();
  if (trace != nullptr) {
    trace->markers.push_back(trace::Marker{trace_rank, step_start - origin_ns,
                                           trace->intern("step " + std::to_string(step_index))});
  }
  grad_flat.zero_();
  const auto scale = 1.0 / static_cast<double>(micro_batches.size());
  double loss_sum = 0.0;
  micro_index = 0;
  for (const TokenBatch& batch : micro_batches) {
    coordinator.start_of_forward();
    at::Tensor loss;
    {
      MemoryScope scope(MemoryCategory::kActivations);
      if (name_memory) name_running_module();
      // The token ids: the embedding keeps them for its backward.
      const at::Tensor tokens = token_tensor(batch).to(partition_flat.device());
      phase = Phase::kForward;
      resume_ns = comm::wall_clock_ns();
      loss = model.loss(tokens, this);
      loss_sum += loss.item<double>();
      phase = Phase::kBackward;
      backward_module = kNoModule;
      // DeepSpeed's engine scales the loss by the accumulation steps before backward.
      (loss * scale).backward();
      enter_hook();  // closes the last backward interval
      leave_hook();
      phase = Phase::kIdle;
    }
    // Gradients of leaves whose post-backward never fired (their inputs needed no gradient).
    for (std::vector<ParamId>& ready : leaf_ready) {
      std::sort(ready.begin(), ready.end());
      for (ParamId p : ready)
        hand_over(p);
      ready.clear();
    }
    {
      HookTimer timer(*this);
      coordinator.reset_step();
      reducer.epilogue();
    }
    ++micro_index;
  }
  {
    HookTimer timer(*this);
    coordinator.release_and_reset_all();
  }
  const std::int64_t optimizer_start = comm::wall_clock_ns();
  {
    MemoryScope scope(MemoryCategory::kOptimizerStates, optimizer_label);
    optimizer.step({master}, {grad_flat});
    partition_flat.copy_(master);
  }
  const std::int64_t optimizer_end = comm::wall_clock_ns();
  stats.optimizer_ns = optimizer_end - optimizer_start;
  if (trace != nullptr) {
    trace::Op op;
    op.rank = trace_rank;
    op.kind = trace::OpKind::kOptimizerStep;
    op.start = optimizer_start - origin_ns;
    op.end = optimizer_end - origin_ns;
    op.name = trace->intern("optimizer");
    op.step = step_index;
    trace->ops.push_back(op);
  }
  const std::vector<ParamId>& persistent = zm.persistent_params();
  if (!persistent.empty()) {
    HookTimer timer(*this);
    coordinator.gather_outside(persistent);
  }
  stats.loss = loss_sum * scale;
  stats.step_ns = comm::wall_clock_ns() - step_start;
  ++step_index;
  return stats;
}

// --- Zero3Engine
// ----------------------------------------------------------------------------------

Zero3Engine::Zero3Engine(LmModel& model, const zero::ZeroModel& zero_model,
                         comm::Communicator& group, const Zero3Options& options)
    : impl_(std::make_unique<Impl>(model, zero_model, group, options)) {}

Zero3Engine::~Zero3Engine() = default;

Zero3StepStats Zero3Engine::step(const std::vector<TokenBatch>& micro_batches) {
  return impl_->step(micro_batches);
}

std::vector<float> Zero3Engine::gathered_parameter(ParamId p) {
  ZP_CHECK(p >= 0 && static_cast<std::size_t>(p) < impl_->params.size(), "no parameter ", p);
  const zero::PartitionShape& shape = impl_->zm.param(p).shape;
  at::Tensor part = impl_->partition[Impl::idx(p)].contiguous();
  at::Tensor flat = at::empty({shape.padded_numel}, part.options());
  if (impl_->world > 1) {
    impl_->group.all_gather(buffer_of(part), buffer_of(flat), "check " + std::to_string(p))->wait();
  } else {
    flat.copy_(part);
  }
  const at::Tensor host = flat.cpu();
  const float* data = host.data_ptr<float>();
  return std::vector<float>(data, data + shape.numel);
}

void Zero3Engine::record_into(trace::Trace* trace, std::int32_t rank, std::int64_t origin_ns) {
  impl_->trace = trace;
  impl_->trace_rank = rank;
  impl_->origin_ns = origin_ns;
  impl_->labels.assign(impl_->modules.size(), -1);
  impl_->name_memory = trace != nullptr;
}

const zero::Coordinator& Zero3Engine::coordinator() const {
  return impl_->coordinator;
}

const std::vector<std::string>& Zero3Engine::decision_log() const {
  return impl_->decisions;
}

void Zero3Engine::set_decision_logging(bool on) {
  impl_->log_decisions = on;
}

}  // namespace zp::exec
