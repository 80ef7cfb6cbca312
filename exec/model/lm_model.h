// A language model on libtorch, built from the ModuleTree the simulator reads: one libtorch module
// per tree module, under the tree's names, so that named_parameters() lists exactly the tree's
// parameters (qualified names, shapes, order; a tied weight once) and a forward calls the modules
// in exactly the order of tree.calls().
//
// Families: GPT-2 (learned positions, pre-LayerNorm blocks, Conv1D projections, tanh-GELU MLP) and
// Llama (RMSNorm, rotary embeddings, grouped-query attention, SwiGLU MLP), as transformers writes
// them; the forward on token ids [batch, seq] returns the next-token cross entropy, averaged over
// the batch * (seq - 1) predicted tokens. Parameters are fp32.
//
// Hooks: every module call brackets its own forward with ModuleHooks (pre_forward, post_forward)
// naming the tree's ModuleId and the call's index in tree.calls(); the ZeRO-3 engine gathers and
// releases parameters there. wrap_inputs and wrap_outputs are the seam for backward hooks: they see
// (and may replace) the tensors that enter and leave each call, where the engine will apply its
// custom autograd functions, in the order DeepSpeed registers its hooks (pre_forward, wrap_inputs,
// the module's own forward, post_forward, wrap_outputs).
//
// Initialisation depends only on (seed, ParamId): each parameter draws from a generator of its own,
// so every rank, and a plain single-process run, start from the same weights whatever the
// partitioning.
//
// The header names torch's types only by forward declaration, so that code using the model without
// tensors (the CLI, tests of names and hooks) compiles without torch's headers.
//
// Not thread-safe: one forward at a time.
#pragma once

#include <ATen/core/ATen_fwd.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/model/model_config.h"
#include "core/model/module_tree.h"
#include "core/pipe/layers.h"

namespace torch::nn {
class Module;
}  // namespace torch::nn

namespace zp::exec {

// Token ids, row-major [batch, seq].
struct TokenBatch {
  std::int64_t batch = 0;
  std::int64_t seq = 0;
  std::vector<std::int64_t> ids;
  bool operator==(const TokenBatch&) const = default;
};

// One module call of a forward: the tree's module and the call's index in tree.calls().
struct ModuleCall {
  ModuleId module = kNoModule;
  std::int32_t index = kNoCall;
};

// Callbacks around every module call. Exceptions propagate out of the forward.
class ModuleHooks {
 public:
  virtual ~ModuleHooks() = default;
  virtual void pre_forward(const ModuleCall& /*call*/) {}
  virtual void post_forward(const ModuleCall& /*call*/) {}
  // The tensors the call's forward receives (after pre_forward) and returns (after post_forward);
  // a hook may replace them with tensors of the same shape, e.g. through an autograd function.
  virtual void wrap_inputs(const ModuleCall& /*call*/, std::vector<at::Tensor>& /*inputs*/) {}
  virtual void wrap_outputs(const ModuleCall& /*call*/, std::vector<at::Tensor>& /*outputs*/) {}
};

struct NamedShape {
  std::string name;
  std::vector<std::int64_t> shape;
  bool operator==(const NamedShape&) const = default;
};

struct NamedType {
  std::string name;  // qualified: "transformer.h.0.attn"; "" for the root
  std::string type;  // the tree's class name: "GPT2Attention"
  bool operator==(const NamedType&) const = default;
};

// int64 ids [batch, seq] on the CPU.
at::Tensor token_tensor(const TokenBatch& tokens);

// The families exec builds, for messages: "gpt2, llama".
std::string supported_families();

// Throws a UserError at key `model` unless exec can run the model: a preset or family model
// (`config` set) of a supported family. A tree with non-fp32 parameters or activations is a
// UserError at `training.dtype`.
void check_runnable(const std::optional<ModelConfig>& config, const ModuleTree& tree);

class LmModel {
 public:
  // `tree` must be the tree that `config` builds (at any batch shape); check_runnable's errors
  // first. Parameters are initialised from `seed`.
  LmModel(const std::optional<ModelConfig>& config, const ModuleTree& tree, std::uint64_t seed);
  ~LmModel();
  LmModel(LmModel&&) noexcept;
  LmModel& operator=(LmModel&&) noexcept;

  const ModuleTree& tree() const;
  const ModelConfig& config() const;

  // The root libtorch module; its named_parameters() are the tree's parameters.
  torch::nn::Module& module();
  // The parameters in ParamId order (the tensors the modules use: replacing their data with
  // set_data() is seen by the next forward).
  const std::vector<at::Tensor>& parameters() const;

  // Re-draws every parameter: parameter p from a generator seeded by (seed, p), with transformers'
  // initialisation for its kind (normal(0, 0.02) for projections and embeddings, GPT-2's residual
  // projections scaled by 1/sqrt(2 * layers), ones and zeros for norms and biases).
  void initialize(std::uint64_t seed);
  // Moves every parameter to `device` ("cpu", "cuda:0"); the tensors stay the same objects.
  void to(const std::string& device);
  // Dropout acts only in training mode (the default).
  void train(bool on);
  // Activation checkpointing (deepspeed.checkpointing.checkpoint around every `layers`
  // consecutive transformer blocks, as training.checkpoint_interval says); 0, the default, keeps
  // every activation. A checkpointed segment saves only its input, and in backward runs its
  // forward again, hooks included, from the random state its forward started from.
  void set_checkpoint_interval(std::int64_t layers);
  // activation_checkpointing.cpu_checkpointing: a checkpointed segment's input waits for backward
  // in host memory (charged to host activations) and is copied back before the recomputation.
  void set_cpu_checkpointing(bool on);

  // Mean next-token cross entropy of int64 token ids [batch, seq], seq >= 2.
  at::Tensor loss(const at::Tensor& tokens, ModuleHooks* hooks = nullptr);

  // ---- Pipeline stages: the model as DeepSpeed's PipelineModule lists it
  // (pipe::layers_from_tree(tree())), one contiguous range of layers per stage.

  const pipe::PipelineLayers& pipeline_layers() const;
  // Runs layers [first, last) on `input`: int64 token ids [batch, seq] when first is 0, else the
  // hidden states [batch, seq, hidden] the layer before `first` produced. Returns the hidden
  // states after layer last - 1, or, when the range ends with the last layer (lm_head), the loss
  // against `labels` (the micro-batch's token ids), exactly as loss() computes it; `labels` is
  // unused otherwise (pass an undefined tensor). Each layer's calls go through `hooks` with their
  // indices in tree.calls(); the wrappers around the layers (the root, GPT2Model, LlamaModel) are
  // not called. A Llama stage whose decoder layers come after rotary_emb's stage computes the
  // rotary tables itself, outside any call. A tied layer (GPT-2's lm_head) reads this model's own
  // copy of the tied weight. Without `labels`, a range ending with lm_head returns the logits
  // (DeepSpeed's last stage keeps them as its output; its loss_fn is next_token_loss).
  at::Tensor forward_layers(std::int64_t first, std::int64_t last, const at::Tensor& input,
                            const at::Tensor& labels, ModuleHooks* hooks = nullptr);
  // The loss forward_layers computes from the logits of lm_head and the micro-batch's token ids.
  static at::Tensor next_token_loss(const at::Tensor& logits, const at::Tensor& labels);
  // The parameters that layers [first, last) use, in ParamId order; a tied weight belongs to every
  // range holding one of its layers.
  std::vector<ParamId> layer_parameters(std::int64_t first, std::int64_t last) const;
  // Gives up the storage of every parameter not in `keep`: its tensor then holds no elements, so a
  // stage pays only for its own layers. Such a parameter must not be used again.
  void release_parameters_except(const std::vector<ParamId>& keep);

  // The same without tensors in the caller.
  double loss(const TokenBatch& tokens, ModuleHooks* hooks = nullptr);
  std::vector<NamedShape> named_parameters() const;  // the libtorch module's, in its order
  std::vector<NamedType> named_modules() const;      // the libtorch module's, in its order
  std::vector<float> parameter_values(ParamId id) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace zp::exec
