// The built-in families: structure against transformers' module names, parameter shapes, the
// per-layer cost closed forms of docs/models.md, and the forward call sequence.
#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "core/model/families/transformer.h"
#include "core/model/model_config.h"
#include "core/model/presets.h"
#include "core/util/error.h"

namespace zp {
namespace {

using families::kAddFlops;

std::vector<std::string> preorder_names(const ModuleTree& tree) {
  std::vector<std::string> names;
  for (ModuleId m : tree.preorder())
    names.push_back(tree.qualified_name(m));
  return names;
}

ModuleId find_module(const ModuleTree& tree, const std::string& qualified) {
  for (ModuleId m : tree.preorder()) {
    if (tree.qualified_name(m) == qualified) return m;
  }
  ADD_FAILURE() << "no module " << qualified;
  return 0;
}

const Parameter& find_param(const ModuleTree& tree, const std::string& name) {
  for (const Parameter& p : tree.parameters()) {
    if (p.name == name) return p;
  }
  ADD_FAILURE() << "no parameter " << name;
  return tree.parameters().front();
}

// The sum of the exclusive costs of every module in the subtree of `qualified`.
ModuleCost subtree_cost(const ModuleTree& tree, const std::string& qualified) {
  ModuleCost sum;
  std::vector<ModuleId> stack = {find_module(tree, qualified)};
  while (!stack.empty()) {
    const Module& m = tree.module(stack.back());
    stack.pop_back();
    sum.forward_flops += m.cost.forward_flops;
    sum.activation_bytes += m.cost.activation_bytes;
    sum.output_bytes += m.cost.output_bytes;
    for (ModuleId c : m.children)
      stack.push_back(c);
  }
  return sum;
}

// Qualified names of the calls, in order.
std::vector<std::string> call_names(const ModuleTree& tree) {
  std::vector<std::string> names;
  for (const ForwardCall& c : tree.calls())
    names.push_back(tree.qualified_name(c.module));
  return names;
}

std::int32_t call_index(const ModuleTree& tree, const std::string& qualified, int occurrence = 0) {
  const ModuleId m = find_module(tree, qualified);
  for (size_t i = 0; i < tree.calls().size(); ++i) {
    if (tree.calls()[i].module == m && occurrence-- == 0) return static_cast<std::int32_t>(i);
  }
  ADD_FAILURE() << "no call of " << qualified;
  return -1;
}

ModelConfig gpt2_config(double dropout, AttentionImpl attention) {
  ModelConfig c = family_defaults(ModelFamily::kGpt2);
  c.name = "test-gpt2";
  c.vocab_size = 320;
  c.hidden_size = 48;
  c.num_layers = 2;
  c.num_heads = 4;
  c.max_position_embeddings = 64;
  c.dropout = dropout;
  c.attention_dropout = dropout;
  c.attention = attention;
  return c;
}

ModelConfig llama_config(AttentionImpl attention) {
  ModelConfig c = family_defaults(ModelFamily::kLlama);
  c.name = "test-llama";
  c.vocab_size = 320;
  c.hidden_size = 64;
  c.intermediate_size = 176;
  c.num_layers = 2;
  c.num_heads = 8;
  c.num_kv_heads = 2;
  c.attention = attention;
  return c;
}

ModelConfig mixtral_config() {
  ModelConfig c = family_defaults(ModelFamily::kMixtral);
  c.name = "test-mixtral";
  c.vocab_size = 320;
  c.hidden_size = 64;
  c.intermediate_size = 96;
  c.num_layers = 2;
  c.num_heads = 8;
  c.num_kv_heads = 2;
  c.num_experts = 4;
  c.experts_per_token = 2;
  return c;
}

ModelConfig bert_config(double dropout, AttentionImpl attention) {
  ModelConfig c = family_defaults(ModelFamily::kBert);
  c.name = "test-bert";
  c.vocab_size = 320;
  c.hidden_size = 48;
  c.intermediate_size = 192;
  c.num_layers = 2;
  c.num_heads = 4;
  c.max_position_embeddings = 64;
  c.dropout = dropout;
  c.attention_dropout = dropout;
  c.attention = attention;
  return c;
}

// Korthikanti et al. 2022, Sec. 4.1, generalised (docs/models.md): per GPT-2 or BERT layer,
// t*h*(8e + 2[p>0]) + 2e*t*f, plus b*a*s^2*(e + [p_attn>0](e+1)) when the scores are stored.
std::int64_t classic_layer_activation(std::int64_t b, std::int64_t s, std::int64_t h,
                                      std::int64_t a, std::int64_t f, std::int64_t e, bool dropout,
                                      bool attn_dropout, bool flash, bool causal) {
  const std::int64_t t = b * s;
  // Korthikanti's terms, and the two LayerNorms' fp32 mean and reciprocal deviation per row.
  std::int64_t bytes = t * h * (8 * e + (dropout ? 2 : 0)) + 2 * e * t * f + 2 * 8 * t;
  if (!flash) bytes += b * a * s * s * (e + (attn_dropout ? e + 1 : 0));
  if (!flash && causal) bytes += s * s;  // the causal mask's booleans
  return bytes;
}

// --- GPT-2 ------------------------------------------------------------------------------------

TEST(FamiliesGpt2, PreorderNamesMatchNamedModules) {
  ModelConfig c = gpt2_config(0.1, AttentionImpl::kEager);
  c.num_layers = 1;
  const ModuleTree tree = build_model(c, BatchShape{1, 8, DType::kBFloat16});
  const std::vector<std::string> expected = {
      "",
      "transformer",
      "transformer.wte",
      "transformer.wpe",
      "transformer.drop",
      "transformer.h",
      "transformer.h.0",
      "transformer.h.0.ln_1",
      "transformer.h.0.attn",
      "transformer.h.0.attn.c_attn",
      "transformer.h.0.attn.c_proj",
      "transformer.h.0.attn.attn_dropout",
      "transformer.h.0.attn.resid_dropout",
      "transformer.h.0.ln_2",
      "transformer.h.0.mlp",
      "transformer.h.0.mlp.c_fc",
      "transformer.h.0.mlp.c_proj",
      "transformer.h.0.mlp.act",
      "transformer.h.0.mlp.dropout",
      "transformer.ln_f",
      "lm_head",
  };
  EXPECT_EQ(preorder_names(tree), expected);
  EXPECT_EQ(tree.module(0).type, "GPT2LMHeadModel");
  EXPECT_EQ(tree.module(find_module(tree, "transformer.h.0.attn.c_attn")).type, "Conv1D");
  EXPECT_EQ(tree.module(find_module(tree, "transformer.h.0.mlp.act")).type, "NewGELUActivation");
  EXPECT_EQ(tree.module(find_module(tree, "lm_head")).type, "Linear");
}

TEST(FamiliesGpt2, ParameterNamesAndConv1DShapes) {
  ModelConfig c = gpt2_config(0.1, AttentionImpl::kEager);
  c.num_layers = 1;
  const ModuleTree tree = build_model(c, BatchShape{1, 8, DType::kBFloat16});
  std::vector<std::string> names;
  for (const Parameter& p : tree.parameters())
    names.push_back(p.name);
  const std::vector<std::string> expected = {
      "transformer.wte.weight",
      "transformer.wpe.weight",
      "transformer.h.0.ln_1.weight",
      "transformer.h.0.ln_1.bias",
      "transformer.h.0.attn.c_attn.weight",
      "transformer.h.0.attn.c_attn.bias",
      "transformer.h.0.attn.c_proj.weight",
      "transformer.h.0.attn.c_proj.bias",
      "transformer.h.0.ln_2.weight",
      "transformer.h.0.ln_2.bias",
      "transformer.h.0.mlp.c_fc.weight",
      "transformer.h.0.mlp.c_fc.bias",
      "transformer.h.0.mlp.c_proj.weight",
      "transformer.h.0.mlp.c_proj.bias",
      "transformer.ln_f.weight",
      "transformer.ln_f.bias",
  };
  EXPECT_EQ(names, expected);  // lm_head.weight is wte's: named once, where first registered
  // Conv1D keeps [in, out], unlike Linear.
  EXPECT_EQ(find_param(tree, "transformer.h.0.attn.c_attn.weight").shape,
            (std::vector<std::int64_t>{48, 144}));
  EXPECT_EQ(find_param(tree, "transformer.h.0.mlp.c_fc.weight").shape,
            (std::vector<std::int64_t>{48, 192}));
  EXPECT_EQ(find_param(tree, "transformer.h.0.mlp.c_proj.weight").shape,
            (std::vector<std::int64_t>{192, 48}));
  EXPECT_EQ(find_param(tree, "transformer.wpe.weight").shape, (std::vector<std::int64_t>{64, 48}));
  for (const Parameter& p : tree.parameters())
    EXPECT_EQ(p.dtype, DType::kBFloat16) << p.name;
}

TEST(FamiliesGpt2, TiedLmHeadIsCountedOnceAndRegisteredTwice) {
  ModelConfig c = gpt2_config(0.1, AttentionImpl::kEager);
  const ModuleTree tied = build_model(c, BatchShape{1, 8, DType::kFloat32});
  const Module& wte = tied.module(find_module(tied, "transformer.wte"));
  const Module& head = tied.module(find_module(tied, "lm_head"));
  ASSERT_EQ(head.params.size(), 1u);
  EXPECT_EQ(head.params[0].attr, "weight");
  EXPECT_EQ(head.params[0].param, wte.params[0].param);
  EXPECT_EQ(tied.parameter(head.params[0].param).name, "transformer.wte.weight");

  c.tie_word_embeddings = false;
  const ModuleTree untied = build_model(c, BatchShape{1, 8, DType::kFloat32});
  EXPECT_EQ(untied.total_parameters() - tied.total_parameters(), 320 * 48);
  EXPECT_EQ(untied.parameters().size(), tied.parameters().size() + 1);
  EXPECT_EQ(find_param(untied, "lm_head.weight").shape, (std::vector<std::int64_t>{320, 48}));
}

struct ActivationCase {
  DType dtype;
  AttentionImpl attention;
  double dropout;
};

class FamiliesGpt2Activation : public testing::TestWithParam<ActivationCase> {};

TEST_P(FamiliesGpt2Activation, PerLayerSumMatchesKorthikantiClosedForm) {
  const ActivationCase& param = GetParam();
  const ModelConfig c = gpt2_config(param.dropout, param.attention);
  const std::int64_t b = 3, s = 16, h = 48, a = 4, f = 192, v = 320;
  const std::int64_t e = dtype_size(param.dtype), t = b * s;
  const bool flash = param.attention == AttentionImpl::kFlash;
  const bool dropout = param.dropout > 0;
  const ModuleTree tree = build_model(c, BatchShape{b, s, param.dtype});
  for (const char* layer : {"transformer.h.0", "transformer.h.1"}) {
    EXPECT_EQ(subtree_cost(tree, layer).activation_bytes,
              classic_layer_activation(b, s, h, a, f, e, dropout, dropout, flash, true))
        << layer;
  }
  // The embedding and output side: the token and position ids, the embedding dropout mask, ln_f's
  // input and statistics, lm_head's input, and what the loss keeps (the root's, whose forward runs
  // it): the fp32 log-probabilities of the b (s - 1) predicted positions and their labels.
  const std::int64_t outside = tree.module(0).cost.activation_bytes +
                               subtree_cost(tree, "lm_head").activation_bytes +
                               tree.module(find_module(tree, "transformer")).cost.activation_bytes +
                               subtree_cost(tree, "transformer.wte").activation_bytes +
                               subtree_cost(tree, "transformer.wpe").activation_bytes +
                               subtree_cost(tree, "transformer.drop").activation_bytes +
                               subtree_cost(tree, "transformer.ln_f").activation_bytes;
  const std::int64_t predicted = b * (s - 1);
  EXPECT_EQ(outside, 8 * t + 8 * s + (dropout ? t * h : 0) + e * t * h + 8 * t + e * t * h +
                         4 * predicted * v + 8 * predicted);
  EXPECT_EQ(tree.module(find_module(tree, "lm_head")).cost.activation_bytes, e * t * h);
  EXPECT_EQ(tree.module(0).cost.activation_bytes, 4 * predicted * v + 8 * predicted);
}

INSTANTIATE_TEST_SUITE_P(
    Families, FamiliesGpt2Activation,
    testing::Values(ActivationCase{DType::kBFloat16, AttentionImpl::kEager, 0.1},
                    ActivationCase{DType::kBFloat16, AttentionImpl::kFlash, 0.1},
                    ActivationCase{DType::kFloat32, AttentionImpl::kEager, 0.1},
                    ActivationCase{DType::kFloat32, AttentionImpl::kFlash, 0.1},
                    ActivationCase{DType::kBFloat16, AttentionImpl::kEager, 0.0},
                    ActivationCase{DType::kFloat16, AttentionImpl::kFlash, 0.0}),
    [](const testing::TestParamInfo<ActivationCase>& param_info) {
      return std::string(to_string(param_info.param.dtype)) + "_" +
             std::string(to_string(param_info.param.attention)) +
             (param_info.param.dropout > 0 ? "_dropout" : "_no_dropout");
    });

TEST(FamiliesGpt2, SixteenBitLayerIsThirtyFourSbhPlusFiveAsSquaredBAndTheSmallTerms) {
  // The paper's own numbers: 16-bit activations, dropout everywhere, ffn = 4h; and what it leaves
  // out: the two LayerNorms' fp32 statistics (8 bytes per row each) and, eager, the causal mask.
  const std::int64_t b = 2, s = 32, h = 48, a = 4;
  const std::int64_t stats = 2 * 8 * s * b, mask = s * s;
  const ModuleTree eager =
      build_model(gpt2_config(0.1, AttentionImpl::kEager), BatchShape{b, s, DType::kFloat16});
  EXPECT_EQ(subtree_cost(eager, "transformer.h.0").activation_bytes,
            s * b * h * 34 + 5 * a * s * s * b + stats + mask);
  const ModuleTree flash =
      build_model(gpt2_config(0.1, AttentionImpl::kFlash), BatchShape{b, s, DType::kFloat16});
  EXPECT_EQ(subtree_cost(flash, "transformer.h.0").activation_bytes, s * b * h * 34 + stats);
  // fp32 doubles every 16-bit term but not the one-byte dropout masks.
  const ModuleTree fp32 =
      build_model(gpt2_config(0.1, AttentionImpl::kEager), BatchShape{b, s, DType::kFloat32});
  EXPECT_EQ(subtree_cost(fp32, "transformer.h.0").activation_bytes,
            s * b * h * (2 * 32 + 2) + a * s * s * b * (2 * 4 + 1) + stats + mask);
}

TEST(FamiliesGpt2, ActivationsAreChargedToTheModulesThatKeepThem) {
  const std::int64_t b = 2, s = 8, h = 48, a = 4, f = 192, e = 2, t = b * s;
  const ModuleTree tree =
      build_model(gpt2_config(0.1, AttentionImpl::kEager), BatchShape{b, s, DType::kBFloat16});
  const auto bytes = [&](const std::string& name) {
    const std::string layer = "transformer.h.0";
    return tree.module(find_module(tree, name.empty() ? layer : layer + "." + name))
        .cost.activation_bytes;
  };
  EXPECT_EQ(bytes("ln_1"), e * t * h + 8 * t);  // the input, and per row the fp32 statistics
  EXPECT_EQ(bytes("attn.c_attn"), e * t * h);
  // Q, K, V, softmax, dropped, and the causal mask's booleans
  EXPECT_EQ(bytes("attn"), 3 * e * t * h + 2 * e * a * s * s * b + s * s);
  EXPECT_EQ(bytes("attn.attn_dropout"), a * s * s * b);  // one-byte mask
  EXPECT_EQ(bytes("attn.c_proj"), e * t * h);
  EXPECT_EQ(bytes("attn.resid_dropout"), t * h);
  EXPECT_EQ(bytes("mlp.act"), e * t * f);  // the GELU input: 8sbh in 16 bits
  EXPECT_EQ(bytes("mlp.c_proj"), e * t * f);
  EXPECT_EQ(bytes("mlp.dropout"), t * h);
  EXPECT_EQ(bytes(""), 0);  // the block's residual adds keep nothing
}

TEST(FamiliesGpt2, TheLossAndTheGradientsOfBackwardAreHeldWhileTheyRun) {
  const std::int64_t b = 2, s = 8, h = 48, f = 192, v = 320, e = 4, t = b * s;
  const std::int64_t predicted = b * (s - 1);
  const ModuleTree tree =
      build_model(gpt2_config(0.1, AttentionImpl::kEager), BatchShape{b, s, DType::kFloat32});
  const auto cost = [&](const std::string& name) {
    return tree.module(name.empty() ? 0 : find_module(tree, name)).cost;
  };
  // The loss (the root's forward) keeps the log-probabilities and labels, holds the logits and
  // their shifted fp32 copy while it runs; its backward, the gradients of the log-probabilities
  // and of that copy.
  EXPECT_EQ(cost("").activation_bytes, 4 * predicted * v + 8 * predicted);
  EXPECT_EQ(cost("").workspace_bytes, e * t * v + 4 * predicted * v);
  EXPECT_EQ(cost("").backward_workspace_bytes, 2 * 4 * predicted * v);
  // A layer's backward holds its output's gradient and makes its input's.
  EXPECT_EQ(cost("lm_head").backward_workspace_bytes, e * t * (h + v));
  EXPECT_EQ(cost("transformer.h.0.mlp.c_proj").backward_workspace_bytes, e * t * (f + h));
  EXPECT_EQ(cost("transformer.h.0.mlp.act").backward_workspace_bytes, 2 * e * t * f);
  EXPECT_EQ(cost("transformer.h.0.ln_2").backward_workspace_bytes, 2 * e * t * h);
  EXPECT_EQ(cost("transformer.wte").backward_workspace_bytes, e * t * h);  // nothing for the ids
  // The body passes the hidden states' gradient from block to block; the containers hold nothing.
  EXPECT_EQ(cost("transformer").backward_held_bytes, e * t * h);
  EXPECT_EQ(cost("transformer.h.0").backward_workspace_bytes, 0);
  EXPECT_EQ(cost("transformer.h.0.mlp").backward_workspace_bytes, 0);
  // Without dropout there is no backward for the dropouts.
  const ModuleTree plain =
      build_model(gpt2_config(0.0, AttentionImpl::kEager), BatchShape{b, s, DType::kFloat32});
  EXPECT_EQ(
      plain.module(find_module(plain, "transformer.h.0.mlp.dropout")).cost.backward_workspace_bytes,
      0);
}

TEST(FamiliesGpt2, MatrixProductFlopsMatchNarayanan) {
  for (AttentionImpl impl : {AttentionImpl::kEager, AttentionImpl::kFlash}) {
    for (double p : {0.0, 0.1}) {
      const std::int64_t b = 2, s = 16, h = 48, a = 4, f = 4 * h, t = b * s;
      const ModuleTree tree = build_model(gpt2_config(p, impl), BatchShape{b, s, DType::kBFloat16});
      // Element-wise terms of docs/models.md: biases, norms, residual adds, GELU, score scaling,
      // mask and softmax, dropouts.
      const std::int64_t elementwise =
          t * h * (17 + (p > 0 ? 4 : 0)) + 9 * t * f + b * a * s * s * (7 + (p > 0 ? 2 : 0));
      const std::int64_t layer = subtree_cost(tree, "transformer.h.1").forward_flops;
      EXPECT_EQ(layer - elementwise, 24 * b * s * h * h + 4 * b * s * s * h);
      // Each Conv1D is 2*m*k*n plus its bias.
      const Module& c_attn = tree.module(find_module(tree, "transformer.h.1.attn.c_attn"));
      EXPECT_EQ(c_attn.cost.forward_flops, 2 * t * h * 3 * h + kAddFlops * t * 3 * h);
    }
  }
  // The logits product: 2 * tokens * h * vocab.
  const ModuleTree tree =
      build_model(gpt2_config(0.1, AttentionImpl::kEager), BatchShape{1, 8, DType::kFloat32});
  EXPECT_EQ(tree.module(find_module(tree, "lm_head")).cost.forward_flops, 2 * 8 * 48 * 320);
}

TEST(FamiliesGpt2, OutputBytesAreTheReturnedTensors) {
  const std::int64_t b = 2, s = 8, h = 48, f = 192, v = 320, e = 4, t = b * s;
  const ModuleTree tree =
      build_model(gpt2_config(0.1, AttentionImpl::kEager), BatchShape{b, s, DType::kFloat32});
  const auto out = [&](const std::string& name) {
    return tree.module(find_module(tree, name)).cost.output_bytes;
  };
  EXPECT_EQ(out(""), t * v * e);  // logits
  EXPECT_EQ(out("transformer"), t * h * e);
  EXPECT_EQ(out("transformer.wte"), t * h * e);
  EXPECT_EQ(out("transformer.h.0.attn.c_attn"), t * 3 * h * e);
  EXPECT_EQ(out("transformer.h.0.attn.attn_dropout"), 2 * 4 * s * s * e);
  EXPECT_EQ(out("transformer.h.0.mlp.c_fc"), t * f * e);
  EXPECT_EQ(out("transformer.h.0.mlp.act"), t * f * e);
  EXPECT_EQ(out("transformer.h.0"), t * h * e);
  EXPECT_EQ(out("lm_head"), t * v * e);
  EXPECT_EQ(out("transformer.h"), 0);  // a ModuleList is never called
}

TEST(FamiliesGpt2, CallOrderNestingAndGradFlags) {
  const ModuleTree tree =
      build_model(gpt2_config(0.1, AttentionImpl::kEager), BatchShape{1, 8, DType::kBFloat16});
  const std::vector<std::string> names = call_names(tree);
  const std::vector<std::string> first = {
      "",
      "transformer",
      "transformer.wte",
      "transformer.wpe",
      "transformer.drop",
      "transformer.h.0",
      "transformer.h.0.ln_1",
      "transformer.h.0.attn",
      "transformer.h.0.attn.c_attn",
      "transformer.h.0.attn.attn_dropout",
      "transformer.h.0.attn.c_proj",
      "transformer.h.0.attn.resid_dropout",
      "transformer.h.0.ln_2",
      "transformer.h.0.mlp",
      "transformer.h.0.mlp.c_fc",
      "transformer.h.0.mlp.act",
      "transformer.h.0.mlp.c_proj",
      "transformer.h.0.mlp.dropout",
      "transformer.h.1",
  };
  ASSERT_GE(names.size(), first.size());
  EXPECT_EQ(std::vector<std::string>(names.begin(), names.begin() + 19), first);
  EXPECT_EQ(names[names.size() - 2], "transformer.ln_f");
  EXPECT_EQ(names.back(), "lm_head");
  // Every module but the ModuleList is called once: 2 layers of 13 modules, and 7 others.
  EXPECT_EQ(names.size(), 2u * 13u + 7u);

  const auto& calls = tree.calls();
  EXPECT_EQ(calls[0].parent_call, kNoCall);
  EXPECT_EQ(calls[call_index(tree, "transformer")].parent_call, 0);
  EXPECT_EQ(calls.back().parent_call, 0);  // lm_head is called by the root
  EXPECT_EQ(calls[call_index(tree, "transformer.ln_f")].parent_call,
            call_index(tree, "transformer"));
  EXPECT_EQ(calls[call_index(tree, "transformer.h.1")].parent_call,
            call_index(tree, "transformer"));
  EXPECT_EQ(calls[call_index(tree, "transformer.h.1.mlp.c_fc")].parent_call,
            call_index(tree, "transformer.h.1.mlp"));
  EXPECT_EQ(calls[call_index(tree, "transformer.h.1.attn.attn_dropout")].parent_call,
            call_index(tree, "transformer.h.1.attn"));

  // Token and position ids require no grad; everything downstream of the embeddings does.
  for (size_t i = 0; i < calls.size(); ++i) {
    EXPECT_EQ(calls[i].inputs_require_grad, i >= 4) << names[i];
  }
}

TEST(FamiliesGpt2, FlashAttentionDoesNotCallTheProbabilityDropout) {
  const ModuleTree tree =
      build_model(gpt2_config(0.1, AttentionImpl::kFlash), BatchShape{1, 8, DType::kBFloat16});
  const ModuleId dropout = find_module(tree, "transformer.h.0.attn.attn_dropout");
  for (const ForwardCall& c : tree.calls())
    EXPECT_NE(c.module, dropout);
  EXPECT_EQ(tree.calls().size(), 2u * 12u + 7u);
  EXPECT_EQ(tree.module(dropout).cost, ModuleCost{});
  // The kernel still drops out: same FLOPs as eager in total.
  const ModuleTree eager =
      build_model(gpt2_config(0.1, AttentionImpl::kEager), BatchShape{1, 8, DType::kBFloat16});
  EXPECT_EQ(subtree_cost(tree, "").forward_flops, subtree_cost(eager, "").forward_flops);
}

// --- Llama ------------------------------------------------------------------------------------

TEST(FamiliesLlama, PreorderNamesMatchNamedModules) {
  ModelConfig c = llama_config(AttentionImpl::kFlash);
  c.num_layers = 1;
  const ModuleTree tree = build_model(c, BatchShape{1, 8, DType::kBFloat16});
  const std::vector<std::string> expected = {
      "",
      "model",
      "model.embed_tokens",
      "model.layers",
      "model.layers.0",
      "model.layers.0.self_attn",
      "model.layers.0.self_attn.q_proj",
      "model.layers.0.self_attn.k_proj",
      "model.layers.0.self_attn.v_proj",
      "model.layers.0.self_attn.o_proj",
      "model.layers.0.mlp",
      "model.layers.0.mlp.gate_proj",
      "model.layers.0.mlp.up_proj",
      "model.layers.0.mlp.down_proj",
      "model.layers.0.mlp.act_fn",
      "model.layers.0.input_layernorm",
      "model.layers.0.post_attention_layernorm",
      "model.norm",
      "model.rotary_emb",
      "lm_head",
  };
  EXPECT_EQ(preorder_names(tree), expected);
  EXPECT_EQ(tree.module(0).type, "LlamaForCausalLM");
  EXPECT_EQ(tree.module(find_module(tree, "model.layers.0")).type, "LlamaDecoderLayer");
  EXPECT_EQ(tree.module(find_module(tree, "model.norm")).type, "LlamaRMSNorm");
  EXPECT_EQ(tree.module(find_module(tree, "model.layers.0.mlp.act_fn")).type, "SiLU");
  EXPECT_TRUE(tree.module(find_module(tree, "model.rotary_emb")).params.empty());
}

TEST(FamiliesLlama, GroupedQueryAttentionShapesAndNoBiases) {
  const ModuleTree tree =
      build_model(llama_config(AttentionImpl::kFlash), BatchShape{1, 8, DType::kBFloat16});
  // 8 heads of 8 over 2 KV heads: K and V project to 16.
  EXPECT_EQ(find_param(tree, "model.layers.0.self_attn.q_proj.weight").shape,
            (std::vector<std::int64_t>{64, 64}));
  EXPECT_EQ(find_param(tree, "model.layers.0.self_attn.k_proj.weight").shape,
            (std::vector<std::int64_t>{16, 64}));
  EXPECT_EQ(find_param(tree, "model.layers.0.self_attn.v_proj.weight").shape,
            (std::vector<std::int64_t>{16, 64}));
  EXPECT_EQ(find_param(tree, "model.layers.0.mlp.gate_proj.weight").shape,
            (std::vector<std::int64_t>{176, 64}));
  EXPECT_EQ(find_param(tree, "model.layers.0.mlp.down_proj.weight").shape,
            (std::vector<std::int64_t>{64, 176}));
  for (const Parameter& p : tree.parameters()) {
    EXPECT_EQ(p.name.find(".bias"), std::string::npos) << p.name;
  }
  // Untied by default: lm_head has its own weight.
  EXPECT_EQ(find_param(tree, "lm_head.weight").shape, (std::vector<std::int64_t>{320, 64}));
  const std::int64_t layer = 2 * 64 * 64 + 2 * 16 * 64 + 3 * 64 * 176 + 2 * 64;
  EXPECT_EQ(tree.total_parameters(), 2 * 320 * 64 + 2 * layer + 64);
}

TEST(FamiliesLlama, TiedEmbeddingsShareOneParameter) {
  ModelConfig c = llama_config(AttentionImpl::kFlash);
  c.tie_word_embeddings = true;
  const ModuleTree tree = build_model(c, BatchShape{1, 8, DType::kBFloat16});
  const Module& head = tree.module(find_module(tree, "lm_head"));
  ASSERT_EQ(head.params.size(), 1u);
  EXPECT_EQ(tree.parameter(head.params[0].param).name, "model.embed_tokens.weight");
  const ModuleTree untied =
      build_model(llama_config(AttentionImpl::kFlash), BatchShape{1, 8, DType::kBFloat16});
  EXPECT_EQ(untied.total_parameters() - tree.total_parameters(), 320 * 64);
}

TEST(FamiliesLlama, PerLayerActivationClosedFormWithGqa) {
  const std::int64_t b = 2, s = 16, h = 64, a = 8, kv = 16, f = 176;
  for (DType dtype : {DType::kBFloat16, DType::kFloat32}) {
    const std::int64_t e = dtype_size(dtype), t = b * s;
    // Each RMSNorm: its normalized rows (e), its input in fp32 and each row's 1/rms in fp32.
    const std::int64_t norms = 2 * (4 * t * h + 4 * t);
    // Flash: norms, q_proj's input, Q and the grouped K and V, o_proj's input, the SwiGLU terms.
    const ModuleTree flash =
        build_model(llama_config(AttentionImpl::kFlash), BatchShape{b, s, dtype});
    EXPECT_EQ(subtree_cost(flash, "model.layers.1").activation_bytes,
              e * t * (6 * h + 2 * kv + 4 * f) + norms);
    // Eager expands K and V to every head and keeps the softmax output.
    const ModuleTree eager =
        build_model(llama_config(AttentionImpl::kEager), BatchShape{b, s, dtype});
    EXPECT_EQ(subtree_cost(eager, "model.layers.1").activation_bytes,
              e * t * (8 * h + 4 * f) + e * b * a * s * s + s * s + norms);
    // Attention dropout is functional in Llama: its mask is the attention module's own.
    ModelConfig with_dropout = llama_config(AttentionImpl::kEager);
    with_dropout.attention_dropout = 0.1;
    const ModuleTree dropped = build_model(with_dropout, BatchShape{b, s, dtype});
    EXPECT_EQ(subtree_cost(dropped, "model.layers.1").activation_bytes,
              e * t * (8 * h + 4 * f) + b * a * s * s * (2 * e + 1) + s * s + norms);
    // The output side: final norm, lm_head's input, and the loss's (the root's) fp32
    // log-probabilities and labels of the b (s - 1) predicted positions.
    EXPECT_EQ(flash.module(find_module(flash, "model.norm")).cost.activation_bytes,
              e * t * h + 4 * t * h + 4 * t);
    EXPECT_EQ(flash.module(find_module(flash, "lm_head")).cost.activation_bytes, e * t * h);
    EXPECT_EQ(flash.module(0).cost.activation_bytes, 4 * b * (s - 1) * 320 + 8 * b * (s - 1));
    // The cos and sin tables, [t, d] each, which every layer's rotation keeps: one pair.
    EXPECT_EQ(flash.module(find_module(flash, "model.rotary_emb")).cost.activation_bytes,
              2 * e * t * (h / a));
  }
}

TEST(FamiliesLlama, SwiGluKeepsGateAndUpOperands) {
  const std::int64_t b = 1, s = 8, h = 64, f = 176, e = 2, t = b * s;
  const ModuleTree tree =
      build_model(llama_config(AttentionImpl::kFlash), BatchShape{b, s, DType::kBFloat16});
  const auto bytes = [&](const std::string& name) {
    return tree.module(find_module(tree, "model.layers.0." + name)).cost.activation_bytes;
  };
  EXPECT_EQ(bytes("mlp.gate_proj"), e * t * h);
  EXPECT_EQ(bytes("mlp.up_proj"), 0);  // the same input as gate_proj
  EXPECT_EQ(bytes("mlp.act_fn"), e * t * f);
  EXPECT_EQ(bytes("mlp"), 2 * e * t * f);  // act(gate) and up, for the product's backward
  EXPECT_EQ(bytes("mlp.down_proj"), e * t * f);
  EXPECT_EQ(bytes("self_attn.q_proj"), e * t * h);
  EXPECT_EQ(bytes("self_attn.k_proj"), 0);
  EXPECT_EQ(bytes("self_attn.v_proj"), 0);
  EXPECT_EQ(bytes("input_layernorm"), e * t * h + 4 * t * h + 4 * t);
}

TEST(FamiliesLlama, MatrixProductFlops) {
  const std::int64_t b = 2, s = 16, h = 64, a = 8, kv = 16, f = 176, t = b * s;
  for (AttentionImpl impl : {AttentionImpl::kEager, AttentionImpl::kFlash}) {
    const ModuleTree tree = build_model(llama_config(impl), BatchShape{b, s, DType::kBFloat16});
    const std::int64_t matmul = 4 * t * h * h + 4 * t * h * kv + 6 * t * h * f + 4 * b * s * s * h;
    const std::int64_t elementwise = 10 * t * h + 3 * t * (h + kv) + 5 * t * f + 7 * b * a * s * s;
    EXPECT_EQ(subtree_cost(tree, "model.layers.0").forward_flops, matmul + elementwise);
  }
}

TEST(FamiliesLlama, CallOrderAndGradFlags) {
  const ModuleTree tree =
      build_model(llama_config(AttentionImpl::kFlash), BatchShape{1, 8, DType::kBFloat16});
  const std::vector<std::string> names = call_names(tree);
  const std::vector<std::string> first = {
      "",
      "model",
      "model.embed_tokens",
      "model.rotary_emb",
      "model.layers.0",
      "model.layers.0.input_layernorm",
      "model.layers.0.self_attn",
      "model.layers.0.self_attn.q_proj",
      "model.layers.0.self_attn.k_proj",
      "model.layers.0.self_attn.v_proj",
      "model.layers.0.self_attn.o_proj",
      "model.layers.0.post_attention_layernorm",
      "model.layers.0.mlp",
      "model.layers.0.mlp.gate_proj",
      "model.layers.0.mlp.act_fn",
      "model.layers.0.mlp.up_proj",
      "model.layers.0.mlp.down_proj",
      "model.layers.1",
  };
  EXPECT_EQ(std::vector<std::string>(names.begin(), names.begin() + 18), first);
  EXPECT_EQ(names[names.size() - 2], "model.norm");
  EXPECT_EQ(names.back(), "lm_head");
  EXPECT_EQ(names.size(), 2u * 13u + 6u);
  const auto& calls = tree.calls();
  EXPECT_EQ(calls.back().parent_call, 0);
  EXPECT_EQ(calls[call_index(tree, "model.layers.1.mlp.down_proj")].parent_call,
            call_index(tree, "model.layers.1.mlp"));
  for (size_t i = 0; i < calls.size(); ++i) {
    EXPECT_EQ(calls[i].inputs_require_grad, i >= 3) << names[i];
  }
}

// --- Mixtral ----------------------------------------------------------------------------------

TEST(FamiliesMixtral, ExpertsRouterAndNames) {
  const ModuleTree tree = build_model(mixtral_config(), BatchShape{2, 8, DType::kBFloat16});
  EXPECT_EQ(tree.module(0).type, "MixtralForCausalLM");
  const ModuleId moe = find_module(tree, "model.layers.0.block_sparse_moe");
  EXPECT_EQ(tree.module(moe).type, "MixtralSparseMoeBlock");
  const ModuleId experts = find_module(tree, "model.layers.0.block_sparse_moe.experts");
  EXPECT_EQ(tree.module(experts).children.size(), 4u);
  for (ModuleId layer : tree.module(find_module(tree, "model.layers")).children) {
    const std::string prefix = tree.qualified_name(layer) + ".block_sparse_moe.experts";
    EXPECT_EQ(tree.module(find_module(tree, prefix)).children.size(), 4u);
  }
  const std::vector<std::string> expert_children = {"w1", "w2", "w3", "act_fn"};
  std::vector<std::string> got;
  for (ModuleId c : tree.module(tree.module(experts).children[3]).children) {
    got.push_back(tree.module(c).name);
  }
  EXPECT_EQ(got, expert_children);
  EXPECT_EQ(tree.module(tree.module(experts).children[3]).type, "MixtralBlockSparseTop2MLP");
  EXPECT_EQ(find_param(tree, "model.layers.0.block_sparse_moe.gate.weight").shape,
            (std::vector<std::int64_t>{4, 64}));
  EXPECT_EQ(find_param(tree, "model.layers.0.block_sparse_moe.experts.2.w1.weight").shape,
            (std::vector<std::int64_t>{96, 64}));
  EXPECT_EQ(find_param(tree, "model.layers.0.block_sparse_moe.experts.2.w2.weight").shape,
            (std::vector<std::int64_t>{64, 96}));
  EXPECT_EQ(find_param(tree, "model.layers.0.block_sparse_moe.experts.2.w3.weight").shape,
            (std::vector<std::int64_t>{96, 64}));
  const std::int64_t layer = 2 * 64 * 64 + 2 * 16 * 64 + 4 * 64 + 4 * 3 * 64 * 96 + 2 * 64;
  EXPECT_EQ(tree.total_parameters(), 2 * 320 * 64 + 2 * layer + 64);
}

TEST(FamiliesMixtral, BalancedRoutingSplitsTokensTimesK) {
  // 2 x 7 tokens, top-2 of 4 experts: 28 assignments, 7 per expert.
  const std::int64_t e = 2, f = 96;
  ModuleTree tree = build_model(mixtral_config(), BatchShape{2, 7, DType::kBFloat16});
  for (int x = 0; x < 4; ++x) {
    const std::string w1 = "model.layers.0.block_sparse_moe.experts." + std::to_string(x) + ".w1";
    EXPECT_EQ(tree.module(find_module(tree, w1)).cost.output_bytes, 7 * f * e);
  }
  // 1 x 5 tokens: 10 assignments, 3, 3, 2, 2 — the total is exact.
  tree = build_model(mixtral_config(), BatchShape{1, 5, DType::kBFloat16});
  std::int64_t rows = 0;
  for (int x = 0; x < 4; ++x) {
    const std::string w1 = "model.layers.0.block_sparse_moe.experts." + std::to_string(x) + ".w1";
    const std::int64_t r = tree.module(find_module(tree, w1)).cost.output_bytes / (f * e);
    EXPECT_EQ(r, x < 2 ? 3 : 2);
    rows += r;
  }
  EXPECT_EQ(rows, 5 * 2);
}

TEST(FamiliesMixtral, PerLayerActivationAndFlopsClosedForms) {
  const std::int64_t b = 2, s = 8, h = 64, a = 8, kv = 16, f = 96, n = 4, k = 2, t = b * s;
  for (DType dtype : {DType::kBFloat16, DType::kFloat32}) {
    const std::int64_t e = dtype_size(dtype);
    const ModuleTree tree = build_model(mixtral_config(), BatchShape{b, s, dtype});
    const ModuleCost layer = subtree_cost(tree, "model.layers.1");
    // Each of the 2 RMSNorms also keeps its input in fp32 and each row's 1/rms.
    EXPECT_EQ(layer.activation_bytes, e * t * (6 * h + 2 * kv) + 4 * t * n +
                                          e * t * k * (2 * h + 4 * f + 1) +
                                          2 * (4 * t * h + 4 * t));
    const std::int64_t matmul =
        4 * t * h * h + 4 * t * h * kv + 4 * b * s * s * h + 2 * t * h * n + 6 * t * k * h * f;
    const std::int64_t elementwise = 10 * t * h + 3 * t * (h + kv) + 7 * b * a * s * s + 5 * t * n +
                                     2 * t * k + 2 * t * k * h + 5 * t * k * f;
    EXPECT_EQ(layer.forward_flops, matmul + elementwise);
  }
}

TEST(FamiliesMixtral, CallsEveryExpertWithTokens) {
  ModuleTree tree = build_model(mixtral_config(), BatchShape{1, 8, DType::kBFloat16});
  const std::vector<std::string> names = call_names(tree);
  const std::int32_t moe = call_index(tree, "model.layers.0.block_sparse_moe");
  const std::vector<std::string> expected = {
      "model.layers.0.block_sparse_moe",
      "model.layers.0.block_sparse_moe.gate",
      "model.layers.0.block_sparse_moe.experts.0",
      "model.layers.0.block_sparse_moe.experts.0.w1",
      "model.layers.0.block_sparse_moe.experts.0.act_fn",
      "model.layers.0.block_sparse_moe.experts.0.w3",
      "model.layers.0.block_sparse_moe.experts.0.w2",
      "model.layers.0.block_sparse_moe.experts.1",
  };
  EXPECT_EQ(std::vector<std::string>(names.begin() + moe, names.begin() + moe + 8), expected);
  EXPECT_EQ(tree.calls()[call_index(tree, "model.layers.0.block_sparse_moe.experts.3")].parent_call,
            moe);
  // Per layer: layer, 2 norms, attention + 4, moe, gate, 4 experts x 5; plus 6 outside.
  EXPECT_EQ(names.size(), 2u * (1 + 2 + 5 + 2 + 4 * 5) + 6u);
  // One token, top-2 of 4: two experts get it, the other two are not called.
  tree = build_model(mixtral_config(), BatchShape{1, 1, DType::kBFloat16});
  EXPECT_EQ(tree.calls().size(), 2u * (1 + 2 + 5 + 2 + 2 * 5) + 6u);
}

// --- BERT -------------------------------------------------------------------------------------

TEST(FamiliesBert, PreorderNamesMatchNamedModules) {
  ModelConfig c = bert_config(0.1, AttentionImpl::kEager);
  c.num_layers = 1;
  const ModuleTree tree = build_model(c, BatchShape{1, 8, DType::kBFloat16});
  const std::vector<std::string> expected = {
      "",
      "embeddings",
      "embeddings.word_embeddings",
      "embeddings.position_embeddings",
      "embeddings.token_type_embeddings",
      "embeddings.LayerNorm",
      "embeddings.dropout",
      "encoder",
      "encoder.layer",
      "encoder.layer.0",
      "encoder.layer.0.attention",
      "encoder.layer.0.attention.self",
      "encoder.layer.0.attention.self.query",
      "encoder.layer.0.attention.self.key",
      "encoder.layer.0.attention.self.value",
      "encoder.layer.0.attention.self.dropout",
      "encoder.layer.0.attention.output",
      "encoder.layer.0.attention.output.dense",
      "encoder.layer.0.attention.output.LayerNorm",
      "encoder.layer.0.attention.output.dropout",
      "encoder.layer.0.intermediate",
      "encoder.layer.0.intermediate.dense",
      "encoder.layer.0.intermediate.intermediate_act_fn",
      "encoder.layer.0.output",
      "encoder.layer.0.output.dense",
      "encoder.layer.0.output.LayerNorm",
      "encoder.layer.0.output.dropout",
      "pooler",
      "pooler.dense",
      "pooler.activation",
  };
  EXPECT_EQ(preorder_names(tree), expected);
  EXPECT_EQ(tree.module(0).type, "BertModel");
  EXPECT_EQ(tree.module(find_module(tree, "encoder.layer.0.attention.self")).type,
            "BertSelfAttention");
  EXPECT_EQ(tree.module(find_module(tree, "encoder.layer.0.intermediate.intermediate_act_fn")).type,
            "GELUActivation");
  EXPECT_EQ(tree.module(find_module(tree, "pooler.activation")).type, "Tanh");
  EXPECT_EQ(find_param(tree, "embeddings.token_type_embeddings.weight").shape,
            (std::vector<std::int64_t>{2, 48}));
  EXPECT_EQ(find_param(tree, "encoder.layer.0.intermediate.dense.weight").shape,
            (std::vector<std::int64_t>{192, 48}));
}

TEST(FamiliesBert, PerLayerActivationMatchesGpt2ClosedForm) {
  const std::int64_t b = 2, s = 16, h = 48, a = 4, f = 192;
  for (DType dtype : {DType::kBFloat16, DType::kFloat32}) {
    for (AttentionImpl impl : {AttentionImpl::kEager, AttentionImpl::kFlash}) {
      for (double p : {0.0, 0.1}) {
        const ModuleTree tree = build_model(bert_config(p, impl), BatchShape{b, s, dtype});
        EXPECT_EQ(subtree_cost(tree, "encoder.layer.1").activation_bytes,
                  classic_layer_activation(b, s, h, a, f, dtype_size(dtype), p > 0, p > 0,
                                           impl == AttentionImpl::kFlash, false));
      }
    }
  }
}

TEST(FamiliesBert, MatrixProductFlopsMatchNarayanan) {
  const std::int64_t b = 2, s = 16, h = 48, a = 4, f = 192, t = b * s;
  const ModuleTree tree =
      build_model(bert_config(0.1, AttentionImpl::kEager), BatchShape{b, s, DType::kBFloat16});
  const std::int64_t elementwise = t * h * (17 + 4) + 9 * t * f + b * a * s * s * (7 + 2);
  EXPECT_EQ(subtree_cost(tree, "encoder.layer.0").forward_flops - elementwise,
            24 * b * s * h * h + 4 * b * s * s * h);
  // The pooler sees one row per sample.
  EXPECT_EQ(tree.module(find_module(tree, "pooler.dense")).cost.forward_flops,
            2 * b * h * h + b * h);
  EXPECT_EQ(tree.module(0).cost.output_bytes, 2 * (t * h + b * h));
}

TEST(FamiliesBert, CallOrderAndGradFlags) {
  const ModuleTree tree =
      build_model(bert_config(0.1, AttentionImpl::kEager), BatchShape{1, 8, DType::kBFloat16});
  const std::vector<std::string> names = call_names(tree);
  const std::vector<std::string> first = {
      "",
      "embeddings",
      "embeddings.word_embeddings",
      "embeddings.token_type_embeddings",
      "embeddings.position_embeddings",
      "embeddings.LayerNorm",
      "embeddings.dropout",
      "encoder",
      "encoder.layer.0",
      "encoder.layer.0.attention",
      "encoder.layer.0.attention.self",
      "encoder.layer.0.attention.self.query",
      "encoder.layer.0.attention.self.key",
      "encoder.layer.0.attention.self.value",
      "encoder.layer.0.attention.self.dropout",
      "encoder.layer.0.attention.output",
      "encoder.layer.0.attention.output.dense",
      "encoder.layer.0.attention.output.dropout",
      "encoder.layer.0.attention.output.LayerNorm",
      "encoder.layer.0.intermediate",
      "encoder.layer.0.intermediate.dense",
      "encoder.layer.0.intermediate.intermediate_act_fn",
      "encoder.layer.0.output",
      "encoder.layer.0.output.dense",
      "encoder.layer.0.output.dropout",
      "encoder.layer.0.output.LayerNorm",
      "encoder.layer.1",
  };
  EXPECT_EQ(std::vector<std::string>(names.begin(), names.begin() + 27), first);
  EXPECT_EQ((std::vector<std::string>(names.end() - 3, names.end())),
            (std::vector<std::string>{"pooler", "pooler.dense", "pooler.activation"}));
  EXPECT_EQ(names.size(), 2u * 18u + 11u);
  const auto& calls = tree.calls();
  EXPECT_EQ(calls[call_index(tree, "pooler")].parent_call, 0);
  EXPECT_EQ(calls[call_index(tree, "encoder.layer.1.output.LayerNorm")].parent_call,
            call_index(tree, "encoder.layer.1.output"));
  for (size_t i = 0; i < calls.size(); ++i) {
    EXPECT_EQ(calls[i].inputs_require_grad, i >= 5) << names[i];
  }
}

// --- build_model --------------------------------------------------------------------------------

TEST(FamiliesBuild, RejectsShapesAndConfigsItCannotBuild) {
  const ModelConfig gpt2 = *find_preset("tiny-gpt2");
  EXPECT_THROW(build_model(gpt2, BatchShape{1, 257, DType::kBFloat16}), UserError);
  EXPECT_NO_THROW(build_model(gpt2, BatchShape{1, 256, DType::kBFloat16}));
  EXPECT_THROW(build_model(gpt2, BatchShape{1, 8, DType::kInt64}), UserError);
  EXPECT_THROW(build_model(gpt2, BatchShape{0, 8, DType::kBFloat16}), UserError);
  // Rotary positions extrapolate: a Llama sequence may exceed max_position_embeddings.
  EXPECT_NO_THROW(build_model(*find_preset("tiny-llama"), BatchShape{1, 512, DType::kBFloat16}));

  ModelConfig bad = gpt2;
  bad.num_heads = 5;
  try {
    build_model(bad, BatchShape{1, 8, DType::kBFloat16});
    FAIL() << "expected a UserError";
  } catch (const UserError& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kValue);
    EXPECT_EQ(e.where().key_path, "num_heads");
    EXPECT_NE(e.message().find("not divisible"), std::string::npos) << e.message();
  }
  ModelConfig llama = *find_preset("tiny-llama");
  llama.dropout = 0.1;  // Llama has no hidden dropout modules
  EXPECT_THROW(build_model(llama, BatchShape{1, 8, DType::kBFloat16}), UserError);
}

}  // namespace
}  // namespace zp
