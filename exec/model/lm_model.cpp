#include "exec/model/lm_model.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <torch/csrc/autograd/autograd.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/nn/module.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <mutex>
#include <string_view>
#include <utility>

#include "core/pipe/layers.h"
#include "core/util/error.h"
#include "exec/memory/memory_scope.h"

namespace zp::exec {
namespace {

using Tensors = std::vector<at::Tensor>;

// transformers' defaults for the epsilons, which ModelConfig does not carry.
constexpr double kGpt2LayerNormEps = 1e-5;  // GPT2Config.layer_norm_epsilon
constexpr double kLlamaRmsNormEps = 1e-6;   // LlamaConfig.rms_norm_eps
constexpr double kInitStd = 0.02;           // initializer_range of both families

// One forward pass: walks tree.calls() as the modules are called, and runs the hooks around each.
class Pass {
 public:
  // Where a pass stands in the call sequence: a checkpointed segment's recomputation resumes there.
  struct Position {
    std::int32_t next = 0;
    std::vector<std::int32_t> stack;
  };

  Pass(const ModuleTree& tree, ModuleHooks* hooks, std::int64_t checkpoint_interval)
      : tree_(&tree),
        calls_(tree.calls()),
        hooks_(hooks),
        checkpoint_interval_(checkpoint_interval) {}
  Pass(const ModuleTree& tree, ModuleHooks* hooks, Position at)
      : tree_(&tree),
        calls_(tree.calls()),
        hooks_(hooks),
        next_(at.next),
        stack_(std::move(at.stack)) {}

  Position position() const { return {next_, stack_}; }
  // Moves to `at`: a pipeline stage runs only its layers' calls, not those of the wrappers
  // around them.
  void seek(Position at) {
    next_ = at.next;
    stack_ = std::move(at.stack);
  }
  const ModuleTree& tree() const { return *tree_; }
  ModuleHooks* hooks() const { return hooks_; }
  std::int64_t checkpoint_interval() const { return checkpoint_interval_; }
  bool cpu_checkpointing() const { return cpu_checkpointing_; }
  void set_cpu_checkpointing(bool on) { cpu_checkpointing_ = on; }

  // Runs `body` as one call of module `id`, with the hooks around it.
  Tensors run(ModuleId id, Tensors inputs, const std::function<Tensors(const Tensors&)>& body) {
    const std::int32_t index = next_++;
    const std::int32_t parent = stack_.empty() ? kNoCall : stack_.back();
    // The engine fetches parameters by these indices: a forward that strays from the tree's call
    // sequence would gather the wrong modules' parameters.
    ZP_CHECK(static_cast<size_t>(index) < calls_.size(),
             "forward makes more calls than the tree's ", calls_.size());
    const ForwardCall& expected = calls_[static_cast<size_t>(index)];
    ZP_CHECK(expected.module == id && expected.parent_call == parent, "forward call ", index,
             " is module ", id, " inside call ", parent, "; the tree has module ", expected.module,
             " inside call ", expected.parent_call);
    stack_.push_back(index);
    const ModuleCall call{id, index};
    if (hooks_ != nullptr) {
      hooks_->pre_forward(call);
      hooks_->wrap_inputs(call, inputs);
    }
    Tensors outputs = body(inputs);
    if (hooks_ != nullptr) {
      hooks_->post_forward(call);
      hooks_->wrap_outputs(call, outputs);
    }
    stack_.pop_back();
    return outputs;
  }

  void finish() const {
    ZP_CHECK(static_cast<size_t>(next_) == calls_.size() && stack_.empty(), "forward made ", next_,
             " calls; the tree has ", calls_.size());
  }

 private:
  const ModuleTree* tree_;
  const std::vector<ForwardCall>& calls_;
  ModuleHooks* hooks_;
  std::int64_t checkpoint_interval_ = 0;
  bool cpu_checkpointing_ = false;
  std::int32_t next_ = 0;
  std::vector<std::int32_t> stack_;
};

// --- Checkpointed segments
// ------------------------------------------------------------------------

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// What recomputing one checkpointed segment needs once backward reaches it.
struct Segment : torch::CustomClassHolder {
  Segment(const ModuleTree* tree_in, ModuleHooks* hooks_in,
          std::function<at::Tensor(Pass&, const at::Tensor&)> body_in)
      : tree(tree_in), hooks(hooks_in), body(std::move(body_in)) {}
  const ModuleTree* tree;
  ModuleHooks* hooks;
  std::function<at::Tensor(Pass&, const at::Tensor&)> body;
  Pass::Position start;
  std::int32_t end = 0;
  at::Tensor rng_state;  // the CPU generator's, as the forward found it
  bool on_host = false;  // cpu_checkpointing: the input waits in host memory
  at::Tensor host_input;
};

// A copy of the CPU generator's state. checkpoint() keeps it from forward to backward in host
// memory (torch.get_rng_state() is a CPU tensor, on a GPU run too): charged to host activations.
at::Tensor cpu_rng_state() {
  memory::MemoryScope scope(memory::MemoryCategory::kHostActivations);
  at::Generator gen = at::detail::getDefaultCPUGenerator();
  std::lock_guard<std::mutex> lock(gen.mutex());
  return gen.get_state();
}

void set_cpu_rng_state(const at::Tensor& state) {
  at::Generator gen = at::detail::getDefaultCPUGenerator();
  std::lock_guard<std::mutex> lock(gen.mutex());
  gen.set_state(state);
}

// deepspeed.checkpointing.checkpoint: the segment's forward runs without a graph and keeps only
// its input; backward runs it again with grad, from the same random state, and differentiates
// that. The hooks fire again during the recomputation, so ZeRO-3 gathers the segment's
// parameters a second time, as it does in DeepSpeed.
struct CheckpointFunction : torch::autograd::Function<CheckpointFunction> {
  static variable_list forward(AutogradContext* ctx, const at::Tensor& x, Pass* pass,
                               const c10::intrusive_ptr<Segment>& segment) {
    segment->start = pass->position();
    segment->rng_state = cpu_rng_state();
    at::Tensor out;
    {
      at::NoGradGuard no_grad;
      out = segment->body(*pass, x);
    }
    segment->end = pass->position().next;
    if (segment->on_host) {
      memory::MemoryScope scope(memory::MemoryCategory::kHostActivations);
      segment->host_input = x.detach().to(at::kCPU, /*non_blocking=*/false, /*copy=*/true);
    } else {
      ctx->save_for_backward({x});
    }
    ctx->saved_data["segment"] = c10::IValue::make_capsule(segment);
    return {out};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto segment =
        c10::static_intrusive_pointer_cast<Segment>(ctx->saved_data["segment"].toCapsule());
    at::Tensor saved;
    if (segment->on_host) {
      // Back in full for the recomputation: recompute memory, as the simulator counts it.
      memory::MemoryScope scope(memory::MemoryCategory::kRecompute);
      saved = segment->host_input.to(grads.at(0).device(), /*non_blocking=*/false, /*copy=*/true);
      segment->host_input = at::Tensor();
    } else {
      saved = ctx->get_saved_variables().at(0);
    }
    const at::Tensor input = saved.detach().requires_grad_(true);
    // Recompute from the forward's random state, and leave the generator where backward had it.
    const at::Tensor backward_rng = cpu_rng_state();
    set_cpu_rng_state(segment->rng_state);
    Pass pass(*segment->tree, segment->hooks, segment->start);
    at::Tensor out;
    {
      // What the recomputation allocates and keeps for the backward below is recompute memory.
      memory::MemoryScope scope(memory::MemoryCategory::kRecompute);
      at::AutoGradMode grad(true);
      out = segment->body(pass, input);
    }
    set_cpu_rng_state(backward_rng);
    ZP_CHECK(pass.position().next == segment->end, "recomputation made calls up to ",
             pass.position().next, "; the forward up to ", segment->end);
    torch::autograd::backward({out}, {grads.at(0)});
    return {input.grad(), at::Tensor(), at::Tensor()};
  }
};

// Runs `count` layers over x, layer(pass, i, x) each; with a checkpoint interval (and grad on),
// every `interval` consecutive layers form one checkpointed segment. `layer` must hold what it
// needs by value: a segment calls it again during backward.
at::Tensor run_layers(
    Pass& pass, std::size_t count, at::Tensor x,
    const std::function<at::Tensor(Pass&, std::size_t, const at::Tensor&)>& layer) {
  const auto interval = static_cast<std::size_t>(pass.checkpoint_interval());
  if (interval == 0 || !at::GradMode::is_enabled()) {
    for (std::size_t i = 0; i < count; ++i)
      x = layer(pass, i, x);
    return x;
  }
  for (std::size_t first = 0; first < count; first += interval) {
    const std::size_t end = std::min(count, first + interval);
    auto segment = c10::make_intrusive<Segment>(&pass.tree(), pass.hooks(),
                                                [layer, first, end](Pass& p, const at::Tensor& in) {
                                                  at::Tensor h = in;
                                                  for (std::size_t i = first; i < end; ++i)
                                                    h = layer(p, i, h);
                                                  return h;
                                                });
    segment->on_host = pass.cpu_checkpointing();
    x = CheckpointFunction::apply(x, &pass, segment).at(0);
  }
  return x;
}

// x @ weight^T, as DeepSpeed's LinearFunctionForZeroStage3 computes it: the weight itself is
// saved for backward, not a transposed view of it, so that releasing a ZeRO-3 parameter after its
// module frees the gathered storage (a view would keep it alive until backward). The bias is
// added outside, since a custom function cannot take an undefined tensor.
struct LinearFunction : torch::autograd::Function<LinearFunction> {
  static variable_list forward(AutogradContext* ctx, const at::Tensor& x,
                               const at::Tensor& weight) {
    ctx->save_for_backward({x, weight});
    return {at::matmul(x, weight.t())};
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const variable_list saved = ctx->get_saved_variables();
    const at::Tensor &x = saved[0], &weight = saved[1];
    const at::Tensor& grad = grads.at(0);
    at::Tensor grad_x, grad_weight;
    if (ctx->needs_input_grad(0)) grad_x = at::matmul(grad, weight);
    if (ctx->needs_input_grad(1)) {
      grad_weight = grad.reshape({-1, grad.size(-1)}).t().mm(x.reshape({-1, x.size(-1)}));
    }
    return {grad_x, grad_weight};
  }
};

at::Tensor zero3_linear(const at::Tensor& x, const at::Tensor& weight,
                        const at::Tensor& bias = {}) {
  at::Tensor out = LinearFunction::apply(x, weight).at(0);
  return bias.defined() ? out + bias : out;
}

// A module of the tree. Its libtorch name() is the tree's class name; `id` is set once the
// hierarchy is complete, by matching qualified names.
class Node : public torch::nn::Module {
 public:
  explicit Node(const std::string& type) : torch::nn::Module(type) {}
  ModuleId id = kNoModule;

 protected:
  // One call of this module on one tensor.
  at::Tensor call(Pass& pass, at::Tensor x,
                  const std::function<at::Tensor(const at::Tensor&)>& body) const {
    Tensors out = pass.run(id, {std::move(x)}, [&](const Tensors& in) {
      ZP_CHECK(in.size() == 1, "a hook changed the number of inputs");
      return Tensors{body(in[0])};
    });
    ZP_CHECK(out.size() == 1, "a hook changed the number of outputs");
    return out[0];
  }
  template <class M>
  std::shared_ptr<M> child(const std::string& name, std::shared_ptr<M> module) {
    return register_module(name, std::move(module));
  }
};

// --- Leaves ----------------------------------------------------------------------------------

class Embedding : public Node {
 public:
  Embedding(std::int64_t count, std::int64_t dim) : Node("Embedding") {
    weight = register_parameter("weight", at::empty({count, dim}));
  }
  at::Tensor forward(Pass& pass, const at::Tensor& ids) const {
    return call(pass, ids, [&](const at::Tensor& x) { return at::embedding(weight, x); });
  }
  at::Tensor weight;
};

// torch.nn.Linear ([out, in] weight), or transformers' Conv1D ([in, out] weight). A tied Linear
// has no parameter of its own: it reads the weight of the module it is tied to at each call, so
// that the tree's parameter is registered once and replacing its data is seen here too.
class Dense : public Node {
 public:
  Dense(std::int64_t in, std::int64_t out, bool has_bias, bool conv1d)
      : Node(conv1d ? "Conv1D" : "Linear"), conv1d_(conv1d), out_(out) {
    weight = register_parameter("weight", conv1d ? at::empty({in, out}) : at::empty({out, in}));
    if (has_bias) bias = register_parameter("bias", at::empty({out}));
  }
  explicit Dense(const at::Tensor* tied) : Node("Linear"), tied_(tied) {}

  at::Tensor forward(Pass& pass, const at::Tensor& x) const {
    return call(pass, x, [&](const at::Tensor& in) {
      if (tied_ != nullptr) return zero3_linear(in, *tied_);
      if (!conv1d_) return zero3_linear(in, weight, bias);
      std::vector<std::int64_t> shape = in.sizes().vec();
      shape.back() = out_;
      const at::Tensor flat = in.reshape({-1, in.size(-1)});
      return (bias.defined() ? at::addmm(bias, flat, weight) : at::mm(flat, weight)).view(shape);
    });
  }
  at::Tensor weight, bias;

 private:
  bool conv1d_ = false;
  std::int64_t out_ = 0;
  const at::Tensor* tied_ = nullptr;
};

class LayerNorm : public Node {
 public:
  explicit LayerNorm(std::int64_t dim) : Node("LayerNorm"), dim_(dim) {
    weight = register_parameter("weight", at::empty({dim}));
    bias = register_parameter("bias", at::empty({dim}));
  }
  at::Tensor forward(Pass& pass, const at::Tensor& x) const {
    return call(pass, x, [&](const at::Tensor& in) {
      return at::layer_norm(in, {dim_}, weight, bias, kGpt2LayerNormEps);
    });
  }
  at::Tensor weight, bias;

 private:
  std::int64_t dim_;
};

// LlamaRMSNorm: x / sqrt(mean(x^2) + eps), scaled; computed in fp32 as transformers does.
class RmsNorm : public Node {
 public:
  RmsNorm(const std::string& type, std::int64_t dim) : Node(type) {
    weight = register_parameter("weight", at::empty({dim}));
  }
  at::Tensor forward(Pass& pass, const at::Tensor& x) const {
    return call(pass, x, [&](const at::Tensor& in) {
      const at::Tensor f = in.to(at::kFloat);
      // mean(-1) as a sum divided in place: this libtorch's MeanBackward keeps its whole input
      // (x^2, as large as x) where torch 2's keeps only its sizes, as its sum does here.
      const at::Tensor variance =
          f.pow(2).sum({-1}, /*keepdim=*/true).div_(static_cast<double>(f.size(-1)));
      return weight * (f * at::rsqrt(variance + kLlamaRmsNormEps)).to(in.scalar_type());
    });
  }
  at::Tensor weight;
};

// Dropout as PyTorch runs it on a GPU: native_dropout, which keeps a one-byte mask for backward.
// (at::dropout takes that kernel on GPUs only; on the CPU it multiplies by a mask of the input's
// dtype, which would keep four times the bytes in fp32.) With p = 0, or outside training, the
// input is returned as it is.
at::Tensor fused_dropout(const at::Tensor& x, double p, bool training) {
  if (p <= 0.0 || !training) return x;
  return std::get<0>(at::native_dropout(x, p, training));
}

class Dropout : public Node {
 public:
  explicit Dropout(double p) : Node("Dropout"), p_(p) {}
  at::Tensor forward(Pass& pass, const at::Tensor& x) const {
    return call(pass, x,
                [&](const at::Tensor& in) { return fused_dropout(in, p_, is_training()); });
  }

 private:
  double p_;
};

class Activation : public Node {
 public:
  enum class Kind { kGeluTanh, kSilu };
  Activation(const std::string& type, Kind kind) : Node(type), kind_(kind) {}
  at::Tensor forward(Pass& pass, const at::Tensor& x) const {
    return call(pass, x, [&](const at::Tensor& in) {
      return kind_ == Kind::kGeluTanh ? at::gelu(in, "tanh") : at::silu(in);
    });
  }

 private:
  Kind kind_;
};

// A ModuleList: never called itself, it only names its children "0", "1", ...
template <class M>
class NodeList : public Node {
 public:
  NodeList() : Node("ModuleList") {}
  void push_back(std::shared_ptr<M> m) {
    items.push_back(register_module(std::to_string(items.size()), std::move(m)));
  }
  std::vector<std::shared_ptr<M>> items;
};

// Causal attention of q [b, heads, s, d] over k and v [b, heads, s, d], scaled by 1/sqrt(d); the
// probabilities go through `dropout` before they weight the values. Returns [b, s, heads * d].
at::Tensor causal_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                            const std::function<at::Tensor(const at::Tensor&)>& dropout) {
  const std::int64_t b = q.size(0), heads = q.size(1), s = q.size(2), d = q.size(3);
  const at::Tensor scores = at::matmul(q, k.transpose(-1, -2)) / std::sqrt(static_cast<double>(d));
  const at::Tensor future = at::ones({s, s}, at::TensorOptions().dtype(at::kBool)).triu(1);
  const at::Tensor masked = scores.masked_fill(future, std::numeric_limits<float>::lowest());
  const at::Tensor probs = at::softmax(masked, -1, at::kFloat).to(q.scalar_type());
  return at::matmul(dropout(probs), v).transpose(1, 2).reshape({b, s, heads * d});
}

// [b, s, heads * d] -> [b, heads, s, d]
at::Tensor split_heads(const at::Tensor& x, std::int64_t heads) {
  return x.view({x.size(0), x.size(1), heads, -1}).transpose(1, 2);
}

// [b, kv_heads, s, d] -> [b, kv_heads * groups, s, d]: each kv head serving `groups` query heads
// (transformers' repeat_kv).
at::Tensor repeat_kv(const at::Tensor& x, std::int64_t groups) {
  if (groups == 1) return x;
  const std::int64_t b = x.size(0), kv = x.size(1), s = x.size(2), d = x.size(3);
  return x.unsqueeze(2).expand({b, kv, groups, s, d}).reshape({b, kv * groups, s, d});
}

// Attention as a fused (flash) kernel keeps it for backward: only Q and the grouped K and V; the
// scores and probabilities are made again in backward. Without dropout (a fused kernel's dropout
// replays its own random state, which this does not).
struct FusedAttentionFunction : torch::autograd::Function<FusedAttentionFunction> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& q,
                            const at::Tensor& k, const at::Tensor& v, std::int64_t groups) {
    ctx->save_for_backward({q, k, v});
    ctx->saved_data["groups"] = groups;
    return causal_attention(q, repeat_kv(k, groups), repeat_kv(v, groups),
                            [](const at::Tensor& p) { return p; });
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const torch::autograd::variable_list saved = ctx->get_saved_variables();
    const std::int64_t groups = ctx->saved_data["groups"].toInt();
    const at::Tensor q = saved[0].detach().requires_grad_(true);
    const at::Tensor k = saved[1].detach().requires_grad_(true);
    const at::Tensor v = saved[2].detach().requires_grad_(true);
    at::Tensor out;
    {
      const at::AutoGradMode enable(true);
      out = causal_attention(q, repeat_kv(k, groups), repeat_kv(v, groups),
                             [](const at::Tensor& p) { return p; });
    }
    const torch::autograd::variable_list g = torch::autograd::grad({out}, {q, k, v}, {grads[0]});
    return {g[0], g[1], g[2], at::Tensor()};
  }
};

// --- GPT-2 -----------------------------------------------------------------------------------

class Gpt2Attention : public Node {
 public:
  explicit Gpt2Attention(const ModelConfig& c)
      : Node("GPT2Attention"),
        heads_(c.num_heads),
        eager_(c.attention == AttentionImpl::kEager),
        attention_dropout_(c.attention_dropout) {
    const std::int64_t h = c.hidden_size;
    c_attn = child("c_attn", std::make_shared<Dense>(h, 3 * h, true, true));
    c_proj = child("c_proj", std::make_shared<Dense>(h, h, true, true));
    attn_dropout = child("attn_dropout", std::make_shared<Dropout>(c.attention_dropout));
    resid_dropout = child("resid_dropout", std::make_shared<Dropout>(c.dropout));
  }
  at::Tensor forward(Pass& pass, const at::Tensor& x) const {
    return call(pass, x, [&](const at::Tensor& in) {
      const std::vector<at::Tensor> qkv = c_attn->forward(pass, in).split(in.size(-1), -1);
      const at::Tensor context =
          causal_attention(split_heads(qkv[0], heads_), split_heads(qkv[1], heads_),
                           split_heads(qkv[2], heads_), [&](const at::Tensor& probs) {
                             // Flash kernels drop out inside; the tree has no call for it then.
                             if (eager_) return attn_dropout->forward(pass, probs);
                             return fused_dropout(probs, attention_dropout_, is_training());
                           });
      return resid_dropout->forward(pass, c_proj->forward(pass, context));
    });
  }
  std::shared_ptr<Dense> c_attn, c_proj;
  std::shared_ptr<Dropout> attn_dropout, resid_dropout;

 private:
  std::int64_t heads_;
  bool eager_;
  double attention_dropout_;
};

class Gpt2Mlp : public Node {
 public:
  explicit Gpt2Mlp(const ModelConfig& c) : Node("GPT2MLP") {
    c_fc = child("c_fc", std::make_shared<Dense>(c.hidden_size, c.ffn_size(), true, true));
    c_proj = child("c_proj", std::make_shared<Dense>(c.ffn_size(), c.hidden_size, true, true));
    act = child("act",
                std::make_shared<Activation>("NewGELUActivation", Activation::Kind::kGeluTanh));
    dropout = child("dropout", std::make_shared<Dropout>(c.dropout));
  }
  at::Tensor forward(Pass& pass, const at::Tensor& x) const {
    return call(pass, x, [&](const at::Tensor& in) {
      const at::Tensor hidden = act->forward(pass, c_fc->forward(pass, in));
      return dropout->forward(pass, c_proj->forward(pass, hidden));
    });
  }
  std::shared_ptr<Dense> c_fc, c_proj;
  std::shared_ptr<Activation> act;
  std::shared_ptr<Dropout> dropout;
};

class Gpt2Block : public Node {
 public:
  explicit Gpt2Block(const ModelConfig& c) : Node("GPT2Block") {
    ln_1 = child("ln_1", std::make_shared<LayerNorm>(c.hidden_size));
    attn = child("attn", std::make_shared<Gpt2Attention>(c));
    ln_2 = child("ln_2", std::make_shared<LayerNorm>(c.hidden_size));
    mlp = child("mlp", std::make_shared<Gpt2Mlp>(c));
  }
  at::Tensor forward(Pass& pass, const at::Tensor& x) const {
    return call(pass, x, [&](const at::Tensor& in) {
      const at::Tensor h = in + attn->forward(pass, ln_1->forward(pass, in));
      return h + mlp->forward(pass, ln_2->forward(pass, h));
    });
  }
  std::shared_ptr<LayerNorm> ln_1, ln_2;
  std::shared_ptr<Gpt2Attention> attn;
  std::shared_ptr<Gpt2Mlp> mlp;
};

at::Tensor position_ids(const at::Tensor& ids) {
  return at::arange(ids.size(1), ids.options()).unsqueeze(0).expand({ids.size(0), ids.size(1)});
}

// The positions of x [batch, seq, ...] on a stage that has no token ids: the same values.
at::Tensor positions_of(const at::Tensor& x) {
  return at::arange(x.size(1), x.options().dtype(at::kLong))
      .unsqueeze(0)
      .expand({x.size(0), x.size(1)});
}

class Gpt2Model : public Node {
 public:
  explicit Gpt2Model(const ModelConfig& c) : Node("GPT2Model") {
    wte = child("wte", std::make_shared<Embedding>(c.vocab_size, c.hidden_size));
    wpe = child("wpe", std::make_shared<Embedding>(c.max_position_embeddings, c.hidden_size));
    drop = child("drop", std::make_shared<Dropout>(c.dropout));
    h = child("h", std::make_shared<NodeList<Gpt2Block>>());
    for (std::int64_t i = 0; i < c.num_layers; ++i)
      h->push_back(std::make_shared<Gpt2Block>(c));
    ln_f = child("ln_f", std::make_shared<LayerNorm>(c.hidden_size));
  }
  at::Tensor forward(Pass& pass, const at::Tensor& ids) const {
    return call(pass, ids, [&](const at::Tensor& in) {
      const at::Tensor tokens = wte->forward(pass, in);
      at::Tensor x = drop->forward(pass, tokens + wpe->forward(pass, position_ids(in)));
      x = run_layers(pass, h->items.size(), x,
                     [blocks = h](Pass& p, std::size_t i, const at::Tensor& hidden) {
                       return blocks->items[i]->forward(p, hidden);
                     });
      return ln_f->forward(pass, x);
    });
  }
  std::shared_ptr<Embedding> wte, wpe;
  std::shared_ptr<Dropout> drop;
  std::shared_ptr<NodeList<Gpt2Block>> h;
  std::shared_ptr<LayerNorm> ln_f;
};

// --- Llama -----------------------------------------------------------------------------------

class LlamaRotary : public Node {
 public:
  explicit LlamaRotary(const ModelConfig& c)
      : Node("LlamaRotaryEmbedding"), head_dim_(c.head_dim()), theta_(c.rope_theta) {}
  // (hidden states, position ids) -> (cos, sin), each [b, s, head_dim].
  Tensors forward(Pass& pass, const at::Tensor& hidden, const at::Tensor& positions) const {
    return pass.run(id, {hidden, positions},
                    [&](const Tensors& in) { return tables(in[0], in[1]); });
  }
  // The same outside any call: a pipeline stage whose decoder layers need the tables that the
  // stage before it computed (they depend on the positions alone).
  Tensors tables(const at::Tensor& hidden, const at::Tensor& positions) const {
    const at::NoGradGuard no_grad;  // tables, as transformers computes them
    const at::Tensor exponents =
        at::arange(0, head_dim_, 2, at::TensorOptions().dtype(at::kFloat)) /
        static_cast<double>(head_dim_);
    const at::Tensor inv_freq = at::pow(theta_, exponents).reciprocal();
    const at::Tensor freqs = positions.to(at::kFloat).unsqueeze(-1) * inv_freq;
    const at::Tensor angles = at::cat({freqs, freqs}, -1);
    const auto dtype = hidden.scalar_type();
    return Tensors{angles.cos().to(dtype), angles.sin().to(dtype)};
  }

 private:
  std::int64_t head_dim_;
  double theta_;
};

// x * cos + rotate_half(x) * sin, where rotate_half swaps the halves of the head dimension and
// negates the new first half. x: [b, heads, s, d]; cos, sin: [b, s, d].
at::Tensor apply_rotary(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin) {
  const std::int64_t half = x.size(-1) / 2;
  const at::Tensor rotated = at::cat({-x.narrow(-1, half, half), x.narrow(-1, 0, half)}, -1);
  return x * cos.unsqueeze(1) + rotated * sin.unsqueeze(1);
}

// Grouped-query attention: kv heads repeated to all heads before the products (repeat_kv).
class LlamaAttention : public Node {
 public:
  explicit LlamaAttention(const ModelConfig& c)
      : Node("LlamaAttention"),
        heads_(c.num_heads),
        kv_heads_(c.kv_heads()),
        attention_dropout_(c.attention_dropout),
        // A flash configuration keeps what a fused kernel keeps; with attention dropout it runs
        // eagerly (and keeps more than the model's costs say).
        fused_(c.attention == AttentionImpl::kFlash && c.attention_dropout == 0.0) {
    const std::int64_t h = c.hidden_size, kv = c.kv_heads() * c.head_dim();
    q_proj = child("q_proj", std::make_shared<Dense>(h, h, false, false));
    k_proj = child("k_proj", std::make_shared<Dense>(h, kv, false, false));
    v_proj = child("v_proj", std::make_shared<Dense>(h, kv, false, false));
    o_proj = child("o_proj", std::make_shared<Dense>(h, h, false, false));
  }
  at::Tensor forward(Pass& pass, const at::Tensor& x, const Tensors& cos_sin) const {
    Tensors out = pass.run(id, {x, cos_sin[0], cos_sin[1]}, [&](const Tensors& in) {
      const at::Tensor q = split_heads(q_proj->forward(pass, in[0]), heads_);
      const at::Tensor k = split_heads(k_proj->forward(pass, in[0]), kv_heads_);
      const at::Tensor v = split_heads(v_proj->forward(pass, in[0]), kv_heads_);
      const at::Tensor q_rot = apply_rotary(q, in[1], in[2]);
      const at::Tensor k_rot = apply_rotary(k, in[1], in[2]);
      const std::int64_t groups = heads_ / kv_heads_;
      const at::Tensor context =
          fused_
              ? FusedAttentionFunction::apply(q_rot, k_rot, v, groups)
              : causal_attention(q_rot, repeat_kv(k_rot, groups), repeat_kv(v, groups),
                                 [&](const at::Tensor& probs) {
                                   return fused_dropout(probs, attention_dropout_, is_training());
                                 });
      return Tensors{o_proj->forward(pass, context)};
    });
    return out.at(0);
  }
  std::shared_ptr<Dense> q_proj, k_proj, v_proj, o_proj;

 private:
  std::int64_t heads_, kv_heads_;
  double attention_dropout_;
  bool fused_;
};

class LlamaMlp : public Node {
 public:
  explicit LlamaMlp(const ModelConfig& c) : Node("LlamaMLP") {
    const std::int64_t h = c.hidden_size, f = c.ffn_size();
    gate_proj = child("gate_proj", std::make_shared<Dense>(h, f, false, false));
    up_proj = child("up_proj", std::make_shared<Dense>(h, f, false, false));
    down_proj = child("down_proj", std::make_shared<Dense>(f, h, false, false));
    act_fn = child("act_fn", std::make_shared<Activation>("SiLU", Activation::Kind::kSilu));
  }
  at::Tensor forward(Pass& pass, const at::Tensor& x) const {
    return call(pass, x, [&](const at::Tensor& in) {
      // down(act(gate(x)) * up(x)), the left operand first as Python evaluates it.
      const at::Tensor gated = act_fn->forward(pass, gate_proj->forward(pass, in));
      return down_proj->forward(pass, gated * up_proj->forward(pass, in));
    });
  }
  std::shared_ptr<Dense> gate_proj, up_proj, down_proj;
  std::shared_ptr<Activation> act_fn;
};

class LlamaLayer : public Node {
 public:
  explicit LlamaLayer(const ModelConfig& c) : Node("LlamaDecoderLayer") {
    self_attn = child("self_attn", std::make_shared<LlamaAttention>(c));
    mlp = child("mlp", std::make_shared<LlamaMlp>(c));
    input_layernorm =
        child("input_layernorm", std::make_shared<RmsNorm>("LlamaRMSNorm", c.hidden_size));
    post_attention_layernorm =
        child("post_attention_layernorm", std::make_shared<RmsNorm>("LlamaRMSNorm", c.hidden_size));
  }
  at::Tensor forward(Pass& pass, const at::Tensor& x, const Tensors& cos_sin) const {
    return call(pass, x, [&](const at::Tensor& in) {
      const at::Tensor h =
          in + self_attn->forward(pass, input_layernorm->forward(pass, in), cos_sin);
      return h + mlp->forward(pass, post_attention_layernorm->forward(pass, h));
    });
  }
  std::shared_ptr<LlamaAttention> self_attn;
  std::shared_ptr<LlamaMlp> mlp;
  std::shared_ptr<RmsNorm> input_layernorm, post_attention_layernorm;
};

class LlamaModel : public Node {
 public:
  explicit LlamaModel(const ModelConfig& c) : Node("LlamaModel") {
    embed_tokens = child("embed_tokens", std::make_shared<Embedding>(c.vocab_size, c.hidden_size));
    layers = child("layers", std::make_shared<NodeList<LlamaLayer>>());
    for (std::int64_t i = 0; i < c.num_layers; ++i)
      layers->push_back(std::make_shared<LlamaLayer>(c));
    norm = child("norm", std::make_shared<RmsNorm>("LlamaRMSNorm", c.hidden_size));
    rotary_emb = child("rotary_emb", std::make_shared<LlamaRotary>(c));
  }
  at::Tensor forward(Pass& pass, const at::Tensor& ids) const {
    return call(pass, ids, [&](const at::Tensor& in) {
      at::Tensor x = embed_tokens->forward(pass, in);
      const Tensors cos_sin = rotary_emb->forward(pass, x, position_ids(in));
      x = run_layers(pass, layers->items.size(), x,
                     [list = layers, cos_sin](Pass& p, std::size_t i, const at::Tensor& hidden) {
                       return list->items[i]->forward(p, hidden, cos_sin);
                     });
      return norm->forward(pass, x);
    });
  }
  std::shared_ptr<Embedding> embed_tokens;
  std::shared_ptr<NodeList<LlamaLayer>> layers;
  std::shared_ptr<RmsNorm> norm;
  std::shared_ptr<LlamaRotary> rotary_emb;
};

// --- The root: body, lm_head, loss ---------------------------------------------------------------

class CausalLm : public Node {
 public:
  CausalLm(const ModelConfig& c)
      : Node(c.family == ModelFamily::kGpt2 ? "GPT2LMHeadModel" : "LlamaForCausalLM") {
    const at::Tensor* input_embedding = nullptr;
    if (c.family == ModelFamily::kGpt2) {
      gpt2 = child("transformer", std::make_shared<Gpt2Model>(c));
      input_embedding = &gpt2->wte->weight;
    } else {
      llama = child("model", std::make_shared<LlamaModel>(c));
      input_embedding = &llama->embed_tokens->weight;
    }
    lm_head =
        child("lm_head", c.tie_word_embeddings
                             ? std::make_shared<Dense>(input_embedding)
                             : std::make_shared<Dense>(c.hidden_size, c.vocab_size, false, false));
  }
  at::Tensor forward(Pass& pass, const at::Tensor& ids) const {
    return call(pass, ids, [&](const at::Tensor& in) {
      const at::Tensor hidden = gpt2 ? gpt2->forward(pass, in) : llama->forward(pass, in);
      return next_token_loss(lm_head->forward(pass, hidden), in);
    });
  }

  // Pipeline layers [first, last) on x (token ids when first is 0), each call at its own place in
  // the call sequence (`starts`); the loss against `labels` when the range ends with lm_head.
  at::Tensor forward_layers(Pass& pass, const std::vector<pipe::Layer>& layers,
                            const std::vector<Pass::Position>& starts,
                            const std::vector<std::int32_t>& ends, std::size_t first,
                            std::size_t last, at::Tensor x, const at::Tensor& labels) const {
    Tensors cos_sin;
    // A layer must make exactly the calls of its subtree, or the hooks would name wrong calls.
    const auto check_end = [&](std::size_t layer) {
      ZP_CHECK(pass.position().next == ends[layer], "pipeline layer ", layer, " (",
               layers[layer].name, ") ended at call ", pass.position().next, "; its calls end at ",
               ends[layer]);
    };
    for (std::size_t i = first; i < last;) {
      const ModuleId m = layers[i].module;
      pass.seek(starts[i]);
      if (const std::int64_t block = block_index(m); block >= 0) {
        // Consecutive blocks run together, so that checkpointing segments them as it does the
        // whole model (DeepSpeed checkpoints a stage's layers in runs of the interval).
        std::size_t end = i + 1;
        while (end < last &&
               block_index(layers[end].module) == block + static_cast<std::int64_t>(end - i))
          ++end;
        if (gpt2) {
          x = run_layers(pass, end - i, x,
                         [blocks = gpt2->h, block](Pass& p, std::size_t k, const at::Tensor& h) {
                           return blocks->items[static_cast<std::size_t>(block) + k]->forward(p, h);
                         });
        } else {
          if (cos_sin.empty()) cos_sin = llama->rotary_emb->tables(x, positions_of(x));
          x = run_layers(
              pass, end - i, x,
              [list = llama->layers, block, cos_sin](Pass& p, std::size_t k, const at::Tensor& h) {
                return list->items[static_cast<std::size_t>(block) + k]->forward(p, h, cos_sin);
              });
        }
        check_end(end - 1);
        i = end;
        continue;
      }
      if (m == lm_head->id) {
        ZP_CHECK(i + 1 == layers.size(), "lm_head is layer ", i, " of ", layers.size());
        x = lm_head->forward(pass, x);
        if (labels.defined()) x = next_token_loss(x, labels);
      } else if (gpt2 && m == gpt2->wte->id) {
        x = gpt2->wte->forward(pass, x);
      } else if (gpt2 && m == gpt2->wpe->id) {
        x = x + gpt2->wpe->forward(pass, positions_of(x));
      } else if (gpt2 && m == gpt2->drop->id) {
        x = gpt2->drop->forward(pass, x);
      } else if (gpt2 && m == gpt2->ln_f->id) {
        x = gpt2->ln_f->forward(pass, x);
      } else if (llama && m == llama->embed_tokens->id) {
        x = llama->embed_tokens->forward(pass, x);
      } else if (llama && m == llama->rotary_emb->id) {
        cos_sin = llama->rotary_emb->forward(pass, x, positions_of(x));
      } else if (llama && m == llama->norm->id) {
        x = llama->norm->forward(pass, x);
      } else {
        ZP_CHECK(false, "pipeline layer ", i, " (", layers[i].name, ") is no module of the model");
      }
      check_end(i);
      ++i;
    }
    return x;
  }

  // Position t predicts token t + 1; the mean over every predicted token.
  static at::Tensor next_token_loss(const at::Tensor& logits, const at::Tensor& ids) {
    const std::int64_t s = ids.size(1);
    const at::Tensor predicted = logits.narrow(1, 0, s - 1).to(at::kFloat);
    const at::Tensor targets = ids.narrow(1, 1, s - 1);
    return at::cross_entropy_loss(predicted.reshape({-1, predicted.size(-1)}),
                                  targets.reshape({-1}));
  }

  // The index of the transformer block `m`; -1 for another module.
  std::int64_t block_index(ModuleId m) const {
    const auto find = [m](const auto& items) -> std::int64_t {
      for (std::size_t k = 0; k < items.size(); ++k)
        if (items[k]->id == m) return static_cast<std::int64_t>(k);
      return -1;
    };
    return gpt2 ? find(gpt2->h->items) : find(llama->layers->items);
  }
  std::shared_ptr<Gpt2Model> gpt2;
  std::shared_ptr<LlamaModel> llama;
  std::shared_ptr<Dense> lm_head;
};

std::uint64_t splitmix64(std::uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

bool ends_with(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

}  // namespace

at::Tensor token_tensor(const TokenBatch& tokens) {
  ZP_CHECK(static_cast<std::int64_t>(tokens.ids.size()) == tokens.batch * tokens.seq,
           "token batch of ", tokens.ids.size(), " ids for ", tokens.batch, " x ", tokens.seq);
  return at::tensor(at::ArrayRef<std::int64_t>(tokens.ids)).view({tokens.batch, tokens.seq});
}

std::string supported_families() {
  return "gpt2, llama";
}

void check_runnable(const std::optional<ModelConfig>& config, const ModuleTree& tree) {
  SourceLocation model_key;
  model_key.key_path = "model";
  if (!config) {
    throw UserError(ErrorKind::kUnsupported, model_key,
                    "a model file '" + tree.name() +
                        "' names no family; exec builds the families " + supported_families() +
                        " (give the model as a preset or {family: ...})");
  }
  if (config->family != ModelFamily::kGpt2 && config->family != ModelFamily::kLlama) {
    throw UserError(ErrorKind::kUnsupported, model_key,
                    std::string(to_string(config->family)) + ": exec builds the families " +
                        supported_families());
  }
  bool fp32 = tree.shape().dtype == DType::kFloat32;
  for (const Parameter& p : tree.parameters())
    fp32 = fp32 && p.dtype == DType::kFloat32;
  if (!fp32) {
    SourceLocation dtype_key;
    dtype_key.key_path = "training.dtype";
    throw UserError(
        ErrorKind::kUnsupported, dtype_key,
        std::string(to_string(tree.shape().dtype)) + ": exec trains in float32 only for now");
  }
}

struct LmModel::Impl {
  ModelConfig config;
  ModuleTree tree;
  std::shared_ptr<CausalLm> root;
  std::vector<at::Tensor> params;                       // by ParamId
  std::vector<std::pair<ModuleId, std::string>> owner;  // by ParamId: first module and attribute
  std::int64_t checkpoint_interval = 0;
  bool cpu_checkpointing = false;
  // The model as a pipeline sees it, and where each layer's calls start and end.
  pipe::PipelineLayers layers;
  std::vector<Pass::Position> layer_starts;
  std::vector<std::int32_t> layer_ends;
};

LmModel::LmModel(const std::optional<ModelConfig>& config, const ModuleTree& tree,
                 std::uint64_t seed) {
  check_runnable(config, tree);
  impl_ = std::make_unique<Impl>();
  impl_->config = *config;
  impl_->tree = tree;
  impl_->root = std::make_shared<CausalLm>(*config);

  // The hierarchy must be the tree's, module for module, or the hooks would name wrong modules.
  const std::vector<ModuleId> order = tree.preorder();
  const auto modules = impl_->root->named_modules();
  ZP_CHECK(modules.size() == order.size(), "the ", to_string(config->family), " model has ",
           modules.size(), " modules; the tree ", order.size());
  for (size_t i = 0; i < order.size(); ++i) {
    const auto& item = modules[i];
    const std::string name = tree.qualified_name(order[i]);
    ZP_CHECK(item.key() == name && item.value()->name() == tree.module(order[i]).type, "module ", i,
             " is ", item.key(), " (", item.value()->name(), "); the tree's is ", name, " (",
             tree.module(order[i]).type, ")");
    auto* node = dynamic_cast<Node*>(item.value().get());
    ZP_CHECK(node != nullptr, "module ", name, " is not a tree node");
    node->id = order[i];
  }

  const auto named = impl_->root->named_parameters();
  ZP_CHECK(named.size() == tree.parameters().size(), "the model has ", named.size(),
           " parameters; the tree ", tree.parameters().size());
  for (size_t p = 0; p < named.size(); ++p) {
    const Parameter& expected = tree.parameters()[p];
    ZP_CHECK(named[p].key() == expected.name && named[p].value().sizes().vec() == expected.shape,
             "parameter ", p, " is ", named[p].key(), " ", named[p].value().sizes(),
             "; the tree's is ", expected.name);
    impl_->params.push_back(named[p].value());
  }
  impl_->owner.assign(tree.parameters().size(), {kNoModule, ""});
  for (const ModuleId m : order) {
    for (const ParamSlot& slot : tree.module(m).params) {
      auto& owner = impl_->owner[static_cast<size_t>(slot.param)];
      if (owner.first == kNoModule) owner = {m, slot.attr};
    }
  }
  impl_->layers = pipe::layers_from_tree(tree);
  const std::vector<ForwardCall>& calls = tree.calls();
  const auto n = static_cast<std::int32_t>(calls.size());
  const auto inside = [&](std::int32_t c, std::int32_t ancestor) {
    for (std::int32_t at = calls[static_cast<size_t>(c)].parent_call; at != kNoCall;
         at = calls[static_cast<size_t>(at)].parent_call) {
      if (at == ancestor) return true;
    }
    return false;
  };
  for (const pipe::Layer& layer : impl_->layers.layers) {
    Pass::Position start{layer.call, {}};
    for (std::int32_t at = calls[static_cast<size_t>(layer.call)].parent_call; at != kNoCall;
         at = calls[static_cast<size_t>(at)].parent_call) {
      start.stack.insert(start.stack.begin(), at);
    }
    impl_->layer_starts.push_back(std::move(start));
    std::int32_t end = layer.call + 1;
    while (end < n && inside(end, layer.call))
      ++end;
    impl_->layer_ends.push_back(end);
  }
  initialize(seed);
}

LmModel::~LmModel() = default;
LmModel::LmModel(LmModel&&) noexcept = default;
LmModel& LmModel::operator=(LmModel&&) noexcept = default;

const ModuleTree& LmModel::tree() const {
  return impl_->tree;
}
const ModelConfig& LmModel::config() const {
  return impl_->config;
}
torch::nn::Module& LmModel::module() {
  return *impl_->root;
}
const std::vector<at::Tensor>& LmModel::parameters() const {
  return impl_->params;
}

void LmModel::initialize(std::uint64_t seed) {
  const at::NoGradGuard no_grad;
  const ModelConfig& c = impl_->config;
  for (size_t p = 0; p < impl_->params.size(); ++p) {
    at::Tensor& param = impl_->params[p];
    const auto& [module_id, attr] = impl_->owner[p];
    const Module& m = impl_->tree.module(module_id);
    if (m.type == "LayerNorm" || ends_with(m.type, "RMSNorm")) {
      param.fill_(attr == "weight" ? 1.0 : 0.0);
    } else if (attr == "bias") {
      param.zero_();
    } else {
      // GPT-2 scales the projections that write into the residual stream (attn.c_proj and
      // mlp.c_proj), so that its variance does not grow with depth.
      const bool residual = c.family == ModelFamily::kGpt2 && m.name == "c_proj";
      const double std =
          residual ? kInitStd / std::sqrt(2.0 * static_cast<double>(c.num_layers)) : kInitStd;
      // A generator per parameter: the values depend on (seed, p) alone.
      at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(
          splitmix64(seed ^ splitmix64(static_cast<std::uint64_t>(p))));
      at::Tensor value = at::empty(param.sizes(), param.options().device(at::kCPU));
      value.normal_(0.0, std, gen);
      param.copy_(value);
    }
  }
}

void LmModel::to(const std::string& device) {
  impl_->root->to(at::Device(device));
}

void LmModel::set_cpu_checkpointing(bool on) {
  impl_->cpu_checkpointing = on;
}

void LmModel::set_checkpoint_interval(std::int64_t layers) {
  ZP_CHECK(layers >= 0, "checkpoint interval ", layers);
  impl_->checkpoint_interval = layers;
}

void LmModel::train(bool on) {
  impl_->root->train(on);
}

at::Tensor LmModel::loss(const at::Tensor& tokens, ModuleHooks* hooks) {
  ZP_CHECK(tokens.dim() == 2 && tokens.size(1) >= 2 && tokens.scalar_type() == at::kLong,
           "token ids must be int64 [batch, seq >= 2], got ", tokens.sizes());
  Pass pass(impl_->tree, hooks, impl_->checkpoint_interval);
  pass.set_cpu_checkpointing(impl_->cpu_checkpointing);
  at::Tensor loss = impl_->root->forward(pass, tokens);
  pass.finish();
  return loss;
}

const pipe::PipelineLayers& LmModel::pipeline_layers() const {
  return impl_->layers;
}

at::Tensor LmModel::forward_layers(std::int64_t first, std::int64_t last, const at::Tensor& input,
                                   const at::Tensor& labels, ModuleHooks* hooks) {
  const auto count = static_cast<std::int64_t>(impl_->layers.layers.size());
  ZP_CHECK(0 <= first && first < last && last <= count, "layers [", first, ", ", last, ") of ",
           count);
  if (first == 0) {
    ZP_CHECK(input.dim() == 2 && input.size(1) >= 2 && input.scalar_type() == at::kLong,
             "the first stage takes int64 token ids [batch, seq >= 2], got ", input.sizes());
  } else {
    ZP_CHECK(input.dim() == 3 && input.size(2) == impl_->config.hidden_size,
             "a later stage takes hidden states [batch, seq, ", impl_->config.hidden_size,
             "], got ", input.sizes());
  }
  if (last == count && labels.defined()) {
    ZP_CHECK(labels.dim() == 2 && labels.size(0) == input.size(0) &&
                 labels.size(1) == input.size(1) && labels.scalar_type() == at::kLong,
             "the last stage takes int64 labels [", input.size(0), ", ", input.size(1), "]");
  }
  Pass pass(impl_->tree, hooks, impl_->checkpoint_interval);
  pass.set_cpu_checkpointing(impl_->cpu_checkpointing);
  return impl_->root->forward_layers(pass, impl_->layers.layers, impl_->layer_starts,
                                     impl_->layer_ends, static_cast<std::size_t>(first),
                                     static_cast<std::size_t>(last), input, labels);
}

at::Tensor LmModel::next_token_loss(const at::Tensor& logits, const at::Tensor& labels) {
  ZP_CHECK(logits.dim() == 3 && labels.dim() == 2 && labels.size(0) == logits.size(0) &&
               labels.size(1) == logits.size(1) && labels.size(1) >= 2 &&
               labels.scalar_type() == at::kLong,
           "a loss of logits ", logits.sizes(), " against labels ", labels.sizes());
  return CausalLm::next_token_loss(logits, labels);
}

std::vector<ParamId> LmModel::layer_parameters(std::int64_t first, std::int64_t last) const {
  const auto count = static_cast<std::int64_t>(impl_->layers.layers.size());
  ZP_CHECK(0 <= first && first <= last && last <= count, "layers [", first, ", ", last, ") of ",
           count);
  std::vector<bool> used(impl_->params.size(), false);
  for (std::int64_t i = first; i < last; ++i) {
    std::vector<ModuleId> stack = {impl_->layers.layers[static_cast<size_t>(i)].module};
    while (!stack.empty()) {
      const Module& m = impl_->tree.module(stack.back());
      stack.pop_back();
      for (const ParamSlot& slot : m.params)
        used[static_cast<size_t>(slot.param)] = true;
      stack.insert(stack.end(), m.children.begin(), m.children.end());
    }
  }
  std::vector<ParamId> out;
  for (size_t p = 0; p < used.size(); ++p)
    if (used[p]) out.push_back(static_cast<ParamId>(p));
  return out;
}

void LmModel::release_parameters_except(const std::vector<ParamId>& keep) {
  std::vector<bool> kept(impl_->params.size(), false);
  for (const ParamId p : keep) {
    ZP_CHECK(p >= 0 && static_cast<size_t>(p) < kept.size(), "no parameter ", p);
    kept[static_cast<size_t>(p)] = true;
  }
  const at::NoGradGuard no_grad;
  for (size_t p = 0; p < kept.size(); ++p) {
    if (!kept[p]) impl_->params[p].set_data(at::empty({0}, impl_->params[p].options()));
  }
}

double LmModel::loss(const TokenBatch& tokens, ModuleHooks* hooks) {
  return loss(token_tensor(tokens), hooks).item<double>();
}

std::vector<NamedShape> LmModel::named_parameters() const {
  std::vector<NamedShape> out;
  for (const auto& item : impl_->root->named_parameters())
    out.push_back({item.key(), item.value().sizes().vec()});
  return out;
}

std::vector<NamedType> LmModel::named_modules() const {
  std::vector<NamedType> out;
  for (const auto& item : impl_->root->named_modules())
    out.push_back({item.key(), item.value()->name()});
  return out;
}

std::vector<float> LmModel::parameter_values(ParamId id) const {
  ZP_CHECK(id >= 0 && static_cast<size_t>(id) < impl_->params.size(), "no parameter ", id);
  const at::Tensor t = impl_->params[static_cast<size_t>(id)].detach().to(at::kCPU).contiguous();
  const float* data = t.data_ptr<float>();
  return std::vector<float>(data, data + t.numel());
}

}  // namespace zp::exec
