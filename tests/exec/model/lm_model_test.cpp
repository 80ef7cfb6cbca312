#include "exec/model/lm_model.h"

#include <gtest/gtest.h>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>
#include <string>
#include <vector>

#include "core/util/error.h"
#include "exec/memory/counting_allocator.h"
#include "tests/exec/model/tiny_models.h"

namespace zp::exec {
namespace {

using testing::kTinyVocab;
using testing::tiny_family;
using testing::tiny_gpt2;
using testing::tiny_llama;
using testing::tiny_tree;

TokenBatch tokens(std::int64_t batch, std::int64_t seq) {
  TokenBatch t{batch, seq, {}};
  for (std::int64_t i = 0; i < batch * seq; ++i)
    t.ids.push_back((7 * i + 3) % kTinyVocab);
  return t;
}

std::vector<NamedShape> tree_parameters(const ModuleTree& tree) {
  std::vector<NamedShape> out;
  for (const Parameter& p : tree.parameters())
    out.push_back({p.name, p.shape});
  return out;
}

std::vector<NamedType> tree_modules(const ModuleTree& tree) {
  std::vector<NamedType> out;
  for (const ModuleId m : tree.preorder())
    out.push_back({tree.qualified_name(m), tree.module(m).type});
  return out;
}

std::int64_t numel(const std::vector<NamedShape>& params) {
  std::int64_t total = 0;
  for (const NamedShape& p : params)
    total += std::accumulate(p.shape.begin(), p.shape.end(), std::int64_t{1}, std::multiplies<>());
  return total;
}

bool has_parameter(const std::vector<NamedShape>& params, const std::string& name) {
  for (const NamedShape& p : params)
    if (p.name == name) return true;
  return false;
}

ParamId param_id(const ModuleTree& tree, const std::string& name) {
  for (size_t p = 0; p < tree.parameters().size(); ++p)
    if (tree.parameters()[p].name == name) return static_cast<ParamId>(p);
  ADD_FAILURE() << "no parameter " << name;
  return 0;
}

double stddev(const std::vector<float>& v) {
  double sum = 0, sq = 0;
  for (const float x : v) {
    sum += x;
    sq += static_cast<double>(x) * x;
  }
  const double n = static_cast<double>(v.size());
  return std::sqrt(sq / n - (sum / n) * (sum / n));
}

// --- Parameters and modules ----------------------------------------------------------------------

TEST(LmModel, Gpt2ParametersAreTheTreesWithTheTiedHeadListedOnce) {
  const ModelConfig c = tiny_gpt2();
  const ModuleTree tree = tiny_tree(c);
  LmModel model(c, tree, 1);
  const std::vector<NamedShape> params = model.named_parameters();
  EXPECT_EQ(params, tree_parameters(tree));
  EXPECT_EQ(params.size(), tree.parameters().size());
  EXPECT_EQ(numel(params), tree.total_parameters());
  EXPECT_FALSE(has_parameter(params, "lm_head.weight"));
  EXPECT_EQ(model.named_modules(), tree_modules(tree));
  EXPECT_EQ(params[param_id(tree, "transformer.h.0.attn.c_attn.weight")].shape,
            (std::vector<std::int64_t>{32, 96}));  // Conv1D: [in, out]

  // The head reads wte's weight: with it zeroed, every logit is 0 and the loss is exactly ln(V).
  model.parameters()[static_cast<size_t>(param_id(tree, "transformer.wte.weight"))]
      .detach()
      .zero_();
  EXPECT_NEAR(model.loss(tokens(2, 8)), std::log(static_cast<double>(kTinyVocab)), 1e-6);
}

TEST(LmModel, Gpt2UntiedHeadHasItsOwnWeight) {
  ModelConfig c = tiny_gpt2();
  c.tie_word_embeddings = false;
  const ModuleTree tree = tiny_tree(c);
  LmModel model(c, tree, 1);
  const std::vector<NamedShape> params = model.named_parameters();
  EXPECT_EQ(params, tree_parameters(tree));
  EXPECT_TRUE(has_parameter(params, "lm_head.weight"));
  model.parameters()[static_cast<size_t>(param_id(tree, "transformer.wte.weight"))]
      .detach()
      .zero_();
  EXPECT_GT(std::abs(model.loss(tokens(2, 8)) - std::log(static_cast<double>(kTinyVocab))), 1e-6);
}

TEST(LmModel, LlamaParametersAreTheTreesWithGroupedKeyValueHeads) {
  const ModelConfig c = tiny_llama();
  const ModuleTree tree = tiny_tree(c);
  LmModel model(c, tree, 1);
  const std::vector<NamedShape> params = model.named_parameters();
  EXPECT_EQ(params, tree_parameters(tree));
  EXPECT_EQ(numel(params), tree.total_parameters());
  EXPECT_EQ(model.named_modules(), tree_modules(tree));
  // 2 key/value heads of 8: [16, 32], against q_proj's [32, 32].
  EXPECT_EQ(params[param_id(tree, "model.layers.1.self_attn.k_proj.weight")].shape,
            (std::vector<std::int64_t>{16, 32}));
  EXPECT_EQ(params[param_id(tree, "model.layers.1.self_attn.q_proj.weight")].shape,
            (std::vector<std::int64_t>{32, 32}));
}

// --- Hooks ---------------------------------------------------------------------------------------

// Records every hook and checks the brackets nest: pre and post of a call enclose its children's.
class Recorder : public ModuleHooks {
 public:
  struct Event {
    bool pre;
    ModuleCall call;
    std::int32_t parent;  // the call open when it began
  };

  void pre_forward(const ModuleCall& call) override {
    events.push_back({true, call, open.empty() ? kNoCall : open.back()});
    open.push_back(call.index);
  }
  void post_forward(const ModuleCall& call) override {
    EXPECT_FALSE(open.empty());
    if (!open.empty()) {
      EXPECT_EQ(open.back(), call.index);
      open.pop_back();
    }
    events.push_back({false, call, kNoCall});
  }
  void wrap_inputs(const ModuleCall& call, std::vector<at::Tensor>& inputs) override {
    bool grad = false;
    for (const at::Tensor& t : inputs)
      grad = grad || (t.is_floating_point() && t.requires_grad());
    inputs_require_grad.push_back(grad);
    EXPECT_EQ(call.index, static_cast<std::int32_t>(inputs_require_grad.size()) - 1);
  }

  std::vector<Event> events;
  std::vector<std::int32_t> open;
  std::vector<bool> inputs_require_grad;  // by call index
};

void expect_hooks_follow_the_tree(const ModelConfig& c) {
  SCOPED_TRACE(c.name);
  const ModuleTree tree = tiny_tree(c);
  LmModel model(c, tree, 1);
  Recorder recorder;
  model.loss(tokens(2, 8), &recorder);

  const std::vector<ForwardCall>& calls = tree.calls();
  ASSERT_EQ(recorder.events.size(), 2 * calls.size());
  EXPECT_TRUE(recorder.open.empty());
  std::int32_t next = 0;
  for (const Recorder::Event& e : recorder.events) {
    if (!e.pre) continue;
    ASSERT_LT(static_cast<size_t>(next), calls.size());
    const ForwardCall& expected = calls[static_cast<size_t>(next)];
    EXPECT_EQ(e.call.index, next);
    EXPECT_EQ(e.call.module, expected.module)
        << "call " << next << ": " << tree.qualified_name(e.call.module) << ", the tree has "
        << tree.qualified_name(expected.module);
    EXPECT_EQ(e.parent, expected.parent_call) << "call " << next;
    ++next;
  }
  EXPECT_EQ(static_cast<size_t>(next), calls.size());
  // DeepSpeed's backward hooks fire only for calls whose inputs require grad; the tree says which.
  ASSERT_EQ(recorder.inputs_require_grad.size(), calls.size());
  for (size_t i = 0; i < calls.size(); ++i) {
    EXPECT_EQ(recorder.inputs_require_grad[i], calls[i].inputs_require_grad)
        << "call " << i << " of " << tree.qualified_name(calls[i].module);
  }
}

TEST(LmModelHooks, Gpt2ForwardFiresTheTreesCallsInOrder) {
  expect_hooks_follow_the_tree(tiny_gpt2());
}

TEST(LmModelHooks, Gpt2FlashForwardSkipsTheAttentionDropoutModule) {
  expect_hooks_follow_the_tree(tiny_gpt2(AttentionImpl::kFlash));
}

TEST(LmModelHooks, LlamaForwardFiresTheTreesCallsInOrder) {
  expect_hooks_follow_the_tree(tiny_llama());
}

// The seam for backward hooks: what wrap_outputs returns is what the caller of the module gets.
TEST(LmModelHooks, WrappedOutputsReplaceTheModulesOutputs) {
  class DoubleTheLoss : public ModuleHooks {
   public:
    void wrap_outputs(const ModuleCall& call, std::vector<at::Tensor>& outputs) override {
      if (call.index == 0) outputs[0] = outputs[0].mul(2.0);
    }
  };
  const ModelConfig c = tiny_llama();
  LmModel model(c, tiny_tree(c), 3);
  DoubleTheLoss hooks;
  EXPECT_NEAR(model.loss(tokens(2, 8), &hooks), 2.0 * model.loss(tokens(2, 8)), 1e-6);
}

// --- Loss and initialisation ---------------------------------------------------------------------

TEST(LmModel, UntrainedLossIsNearLnVocab) {
  // Weights of std 0.02 make near-uniform predictions: the mean cross entropy is close to ln(V).
  for (const ModelConfig& c : {tiny_gpt2(), tiny_llama()}) {
    LmModel model(c, tiny_tree(c), 5);
    EXPECT_NEAR(model.loss(tokens(3, 10)), std::log(static_cast<double>(kTinyVocab)), 0.05)
        << c.name;
  }
}

TEST(LmModel, InitialisationIsDeterministicPerSeed) {
  const ModelConfig c = tiny_llama();
  const ModuleTree tree = tiny_tree(c);
  LmModel a(c, tree, 42), b(c, tree, 42), other(c, tree, 43);
  for (ParamId p = 0; p < static_cast<ParamId>(tree.parameters().size()); ++p)
    EXPECT_EQ(a.parameter_values(p), b.parameter_values(p)) << tree.parameter(p).name;
  const ParamId q = param_id(tree, "model.layers.0.self_attn.q_proj.weight");
  EXPECT_NE(a.parameter_values(q), other.parameter_values(q));
  EXPECT_EQ(a.loss(tokens(2, 8)), b.loss(tokens(2, 8)));
}

TEST(LmModel, EachParameterDrawsFromItsOwnGenerator) {
  // wpe is parameter 1 in both trees, after a wte of different size: a shared generator would
  // give it different values.
  ModelConfig big = tiny_gpt2();
  big.vocab_size = 2 * kTinyVocab;
  const ModuleTree small_tree = tiny_tree(tiny_gpt2()), big_tree = tiny_tree(big);
  ASSERT_EQ(small_tree.parameter(1).name, "transformer.wpe.weight");
  ASSERT_EQ(big_tree.parameter(1).name, "transformer.wpe.weight");
  EXPECT_EQ(LmModel(tiny_gpt2(), small_tree, 9).parameter_values(1),
            LmModel(big, big_tree, 9).parameter_values(1));
}

TEST(LmModel, InitialisationFollowsTransformers) {
  const ModelConfig c = tiny_gpt2();
  const ModuleTree tree = tiny_tree(c);
  const LmModel model(c, tree, 11);
  const auto values = [&](const std::string& name) {
    return model.parameter_values(param_id(tree, name));
  };
  EXPECT_NEAR(stddev(values("transformer.h.0.attn.c_attn.weight")), 0.02, 0.002);
  // Residual projections: 0.02 / sqrt(2 * layers).
  EXPECT_NEAR(stddev(values("transformer.h.1.mlp.c_proj.weight")), 0.01, 0.001);
  EXPECT_NEAR(stddev(values("transformer.h.0.attn.c_proj.weight")), 0.01, 0.001);
  for (const float x : values("transformer.h.0.ln_1.weight"))
    EXPECT_EQ(x, 1.0f);
  for (const float x : values("transformer.h.0.ln_1.bias"))
    EXPECT_EQ(x, 0.0f);
  for (const float x : values("transformer.h.0.mlp.c_fc.bias"))
    EXPECT_EQ(x, 0.0f);
}

// --- Refusals ------------------------------------------------------------------------------------

void expect_refused(const std::optional<ModelConfig>& config, const ModuleTree& tree,
                    const std::string& key, const std::string& says) {
  try {
    LmModel model(config, tree, 0);
    ADD_FAILURE() << "no UserError for " << tree.name();
  } catch (const UserError& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kUnsupported);
    EXPECT_EQ(e.where().key_path, key);
    EXPECT_NE(std::string(e.what()).find(says), std::string::npos) << e.what();
  }
}

TEST(LmModel, RefusesFamiliesItCannotRun) {
  for (const ModelFamily family : {ModelFamily::kBert, ModelFamily::kMixtral}) {
    const ModelConfig c = tiny_family(family);
    expect_refused(c, tiny_tree(c), "model", "exec builds the families gpt2, llama");
  }
  // A model file: a tree without a family.
  expect_refused(std::nullopt, tiny_tree(tiny_gpt2()), "model",
                 "exec builds the families gpt2, llama");
}

TEST(LmModel, RefusesTreesThatAreNotFloat32) {
  const ModelConfig c = tiny_gpt2();
  expect_refused(c, build_model(c, BatchShape{2, 8, DType::kBFloat16}), "training.dtype",
                 "float32");
}

// --- Activation checkpointing
// ---------------------------------------------------------------------

// Loss and every gradient after one forward and backward, from the same random state.
std::pair<double, std::vector<at::Tensor>> loss_and_grads(const ModelConfig& c,
                                                          std::int64_t interval,
                                                          ModuleHooks* hooks = nullptr,
                                                          bool on_host = false) {
  const ModuleTree tree = tiny_tree(c);
  LmModel model(c, tree, 4);
  model.set_checkpoint_interval(interval);
  model.set_cpu_checkpointing(on_host);
  at::manual_seed(99);
  const at::Tensor loss = model.loss(token_tensor(tokens(2, 8)), hooks);
  loss.backward();
  std::vector<at::Tensor> grads;
  for (const at::Tensor& p : model.parameters())
    grads.push_back(p.grad().clone());
  return {loss.item<double>(), grads};
}

TEST(LmModelCheckpointing, RecomputesWithTheForwardsRandomStateSoDropoutMatches) {
  ModelConfig c = tiny_gpt2();
  c.dropout = 0.2;
  c.attention_dropout = 0.2;
  const auto [plain_loss, plain] = loss_and_grads(c, 0);
  for (const std::int64_t interval : {1, 2}) {
    SCOPED_TRACE(interval);
    const auto [loss, grads] = loss_and_grads(c, interval);
    EXPECT_DOUBLE_EQ(loss, plain_loss);
    ASSERT_EQ(grads.size(), plain.size());
    // A recomputation with other dropout masks would give other gradients.
    for (std::size_t p = 0; p < grads.size(); ++p)
      EXPECT_TRUE(at::allclose(grads[p], plain[p], 1e-5, 1e-7)) << "parameter " << p;
  }
}

TEST(LmModelCheckpointing, CpuCheckpointingKeepsTheInputsInHostMemoryAndChangesNothingElse) {
  ModelConfig c = tiny_gpt2();
  c.dropout = 0.2;
  const auto [plain_loss, plain] = loss_and_grads(c, 0);
  const auto host_peak = [&](bool on_host) {
    memory::CountingAllocator counting;
    const auto [loss, grads] = loss_and_grads(c, 1, nullptr, on_host);
    EXPECT_DOUBLE_EQ(loss, plain_loss);
    for (std::size_t p = 0; p < grads.size(); ++p)
      EXPECT_TRUE(at::allclose(grads[p], plain[p], 1e-5, 1e-7)) << "parameter " << p;
    return counting.read().category_peaks[memory::MemoryCategory::kHostActivations];
  };
  // Each checkpoint keeps the CPU generator's state in host memory (as torch.get_rng_state()
  // does in DeepSpeed), and the recomputation saves backward's for the time it runs.
  const std::int64_t rng = at::detail::getDefaultCPUGenerator().get_state().nbytes();
  // Two segments, each keeping one [2, 8, 32] fp32 input there too, until its recomputation.
  const std::int64_t input = 2 * 8 * 32 * 4;
  EXPECT_EQ(host_peak(true), std::max(2 * input + 2 * rng, input + 3 * rng));
  EXPECT_EQ(host_peak(false), 3 * rng);
}

// Counts hook calls, and how many ran while autograd was recording.
class CallCounter : public ModuleHooks {
 public:
  void pre_forward(const ModuleCall& call) override {
    ++calls[call.index];
    if (at::GradMode::is_enabled()) ++with_grad;
  }
  std::map<std::int32_t, int> calls;
  int with_grad = 0;
};

TEST(LmModelCheckpointing, SegmentsRunTheirCallsAgainInBackwardAndOnlyThem) {
  const ModelConfig c = tiny_llama();
  const ModuleTree tree = tiny_tree(c);
  // A call is in a segment when it, or a call it is nested in, is a decoder layer's.
  std::vector<bool> in_layer(tree.calls().size(), false);
  for (std::size_t i = 0; i < tree.calls().size(); ++i) {
    const ForwardCall& call = tree.calls()[i];
    in_layer[i] = tree.module(call.module).type == "LlamaDecoderLayer" ||
                  (call.parent_call != kNoCall && in_layer[static_cast<size_t>(call.parent_call)]);
  }
  CallCounter counter;
  loss_and_grads(c, 1, &counter);
  int recomputed = 0;
  for (std::size_t i = 0; i < tree.calls().size(); ++i) {
    EXPECT_EQ(counter.calls[static_cast<std::int32_t>(i)], in_layer[i] ? 2 : 1) << "call " << i;
    recomputed += in_layer[i];
  }
  // The segments' first forward keeps no graph; everything else does.
  EXPECT_EQ(counter.with_grad, static_cast<int>(tree.calls().size()));
  EXPECT_GT(recomputed, 0);
}

}  // namespace
}  // namespace zp::exec
