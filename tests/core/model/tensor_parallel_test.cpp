// Megatron-style tensor parallelism on the built-in families: each count below is worked out by
// hand from the family's parameter shapes (docs/models.md) and the split rules
// (docs/tensor-parallelism.md).
#include "core/model/tensor_parallel.h"

#include <gtest/gtest.h>

#include <string>

namespace zp {
namespace {

// GPT-2: vocab 64, hidden 16, 4 heads, MLP 64, 2 blocks, 32 positions, lm_head tied to wte.
// Tokens 2 x 8 = 16, fp32.
ModelConfig TinyGpt2() {
  ModelConfig c = family_defaults(ModelFamily::kGpt2);
  c.vocab_size = 64;
  c.hidden_size = 16;
  c.num_heads = 4;
  c.num_layers = 2;
  c.max_position_embeddings = 32;
  c.intermediate_size = 64;
  c.tie_word_embeddings = true;
  return c;
}

// Llama with grouped-query attention: vocab 64, hidden 32, 8 heads of 4, 4 KV heads (K and V are
// 16 wide), MLP 64, 2 layers, lm_head untied.
ModelConfig TinyLlama() {
  ModelConfig c = family_defaults(ModelFamily::kLlama);
  c.vocab_size = 64;
  c.hidden_size = 32;
  c.num_heads = 8;
  c.num_kv_heads = 4;
  c.num_layers = 2;
  c.max_position_embeddings = 64;
  c.intermediate_size = 64;
  c.tie_word_embeddings = false;
  return c;
}

const BatchShape kShape{2, 8, DType::kFloat32};

TensorParallelModel Shard(const ModelConfig& c, std::int64_t tp) {
  return shard_for_tensor_parallel(build_model(c, kShape), c, tp);
}

ModuleId Find(const ModuleTree& t, const std::string& name) {
  for (std::size_t i = 0; i < t.modules().size(); ++i) {
    if (t.qualified_name(static_cast<ModuleId>(i)) == name) return static_cast<ModuleId>(i);
  }
  ADD_FAILURE() << "no module " << name;
  return 0;
}

const Parameter& Param(const ModuleTree& t, const std::string& module, const std::string& attr) {
  for (const ParamSlot& s : t.module(Find(t, module)).params) {
    if (s.attr == attr) return t.parameter(s.param);
  }
  ADD_FAILURE() << "no parameter " << module << "." << attr;
  return t.parameters().front();
}

TEST(TensorParallel, Gpt2ParameterCountsPerRank) {
  // Per block: ln_1 32, c_attn 16x48 + 48, attn.c_proj 16x16 + 16, ln_2 32, c_fc 16x64 + 64,
  // mlp.c_proj 64x16 + 16 = 3280; split: c_attn (816), attn.c_proj's weight (256), c_fc (1088),
  // mlp.c_proj's weight (1024) = 3184; replicated: two norms and two row biases = 96.
  // Model: wte 64x16 = 1024 (split, lm_head tied to it), wpe 32x16 = 512 and ln_f 32 replicated.
  // Whole: 1024 + 512 + 2 x 3280 + 32 = 8128; split 1024 + 2 x 3184 = 7392; replicated 736.
  const ModelConfig c = TinyGpt2();
  EXPECT_EQ(build_model(c, kShape).total_parameters(), 8128);
  const TensorParallelModel tp2 = Shard(c, 2);
  EXPECT_EQ(tp2.sharded_parameters(), 7392 / 2);
  EXPECT_EQ(tp2.replicated_parameters(), 736);
  EXPECT_EQ(tp2.tree.total_parameters(), 3696 + 736);
  const TensorParallelModel tp4 = Shard(c, 4);
  EXPECT_EQ(tp4.sharded_parameters(), 1848);
  EXPECT_EQ(tp4.replicated_parameters(), 736);
  EXPECT_EQ(tp4.tree.total_parameters(), 1848 + 736);

  // Conv1D keeps [in, out]: column-parallel splits axis 1, row-parallel axis 0.
  const ModuleTree& t = tp4.tree;
  EXPECT_EQ(Param(t, "transformer.h.0.attn.c_attn", "weight").shape,
            (std::vector<std::int64_t>{16, 12}));
  EXPECT_EQ(Param(t, "transformer.h.0.attn.c_attn", "bias").shape, (std::vector<std::int64_t>{12}));
  EXPECT_EQ(Param(t, "transformer.h.0.attn.c_proj", "weight").shape,
            (std::vector<std::int64_t>{4, 16}));
  EXPECT_EQ(Param(t, "transformer.h.0.attn.c_proj", "bias").shape, (std::vector<std::int64_t>{16}));
  EXPECT_EQ(Param(t, "transformer.h.1.mlp.c_fc", "weight").shape,
            (std::vector<std::int64_t>{16, 16}));
  EXPECT_EQ(Param(t, "transformer.h.1.mlp.c_proj", "weight").shape,
            (std::vector<std::int64_t>{16, 16}));
  EXPECT_EQ(Param(t, "transformer.wte", "weight").shape, (std::vector<std::int64_t>{16, 16}));
  EXPECT_EQ(Param(t, "lm_head", "weight").shape, (std::vector<std::int64_t>{16, 16}));  // tied
  EXPECT_EQ(Param(t, "transformer.wpe", "weight").shape, (std::vector<std::int64_t>{32, 16}));
  EXPECT_EQ(Param(t, "transformer.h.0.ln_1", "weight").shape, (std::vector<std::int64_t>{16}));
}

TEST(TensorParallel, LlamaWithGroupedQueryAttentionParameterCountsPerRank) {
  // Per layer: q 32x32 = 1024, k and v 16x32 = 512 each, o 1024, gate, up and down 64x32 = 2048
  // each, two RMSNorms 32 each: 9280, of which 9216 split and 64 replicated. Model: embed_tokens
  // and lm_head 64x32 = 2048 each (split), norm 32. Whole: 4096 + 32 + 2 x 9280 = 22688; split
  // 4096 + 2 x 9216 = 22528; replicated 160.
  const ModelConfig c = TinyLlama();
  EXPECT_EQ(build_model(c, kShape).total_parameters(), 22688);
  const TensorParallelModel tp2 = Shard(c, 2);
  EXPECT_EQ(tp2.sharded_parameters(), 11264);
  EXPECT_EQ(tp2.replicated_parameters(), 160);
  const TensorParallelModel tp4 = Shard(c, 4);
  EXPECT_EQ(tp4.sharded_parameters(), 5632);
  EXPECT_EQ(tp4.replicated_parameters(), 160);
  EXPECT_EQ(tp4.tree.total_parameters(), 5792);

  // Linear keeps [out, in]: column-parallel splits axis 0, row-parallel axis 1. One KV head each.
  const ModuleTree& t = tp4.tree;
  EXPECT_EQ(Param(t, "model.layers.0.self_attn.q_proj", "weight").shape,
            (std::vector<std::int64_t>{8, 32}));
  EXPECT_EQ(Param(t, "model.layers.0.self_attn.k_proj", "weight").shape,
            (std::vector<std::int64_t>{4, 32}));
  EXPECT_EQ(Param(t, "model.layers.0.self_attn.o_proj", "weight").shape,
            (std::vector<std::int64_t>{32, 8}));
  EXPECT_EQ(Param(t, "model.layers.1.mlp.up_proj", "weight").shape,
            (std::vector<std::int64_t>{16, 32}));
  EXPECT_EQ(Param(t, "model.layers.1.mlp.down_proj", "weight").shape,
            (std::vector<std::int64_t>{32, 16}));
  EXPECT_EQ(Param(t, "model.embed_tokens", "weight").shape, (std::vector<std::int64_t>{16, 32}));
  EXPECT_EQ(Param(t, "lm_head", "weight").shape, (std::vector<std::int64_t>{16, 32}));
  EXPECT_EQ(Param(t, "model.norm", "weight").shape, (std::vector<std::int64_t>{32}));
}

TEST(TensorParallel, SplitTimesRanksPlusReplicatedIsTheWholeModel) {
  ModelConfig bert = family_defaults(ModelFamily::kBert);
  bert.vocab_size = 64;
  bert.hidden_size = 16;
  bert.num_heads = 4;
  bert.num_layers = 2;
  bert.max_position_embeddings = 32;
  bert.intermediate_size = 64;
  ModelConfig mixtral = family_defaults(ModelFamily::kMixtral);
  mixtral.vocab_size = 64;
  mixtral.hidden_size = 32;
  mixtral.num_heads = 8;
  mixtral.num_kv_heads = 4;
  mixtral.num_layers = 1;
  mixtral.intermediate_size = 48;
  mixtral.num_experts = 4;
  mixtral.max_position_embeddings = 64;
  for (const ModelConfig& c : {TinyGpt2(), TinyLlama(), bert, mixtral}) {
    const std::int64_t whole = build_model(c, kShape).total_parameters();
    for (std::int64_t tp : {1, 2, 4}) {
      const TensorParallelModel m = Shard(c, tp);
      EXPECT_EQ(tp * m.sharded_parameters() + m.replicated_parameters(), whole)
          << to_string(c.family) << " tp " << tp;
      if (tp > 1) {
        EXPECT_GT(m.sharded_parameters(), 0);
        EXPECT_GT(m.replicated_parameters(), 0);
      }
    }
  }
  // Mixtral: every expert's MLP is split, the router is not; BERT's pooler and position
  // embeddings are replicated, its word embeddings split.
  const ModuleTree& t = Shard(mixtral, 4).tree;
  EXPECT_EQ(Param(t, "model.layers.0.block_sparse_moe.experts.3.w1", "weight").shape,
            (std::vector<std::int64_t>{12, 32}));
  EXPECT_EQ(Param(t, "model.layers.0.block_sparse_moe.experts.3.w2", "weight").shape,
            (std::vector<std::int64_t>{32, 12}));
  EXPECT_EQ(Param(t, "model.layers.0.block_sparse_moe.gate", "weight").shape,
            (std::vector<std::int64_t>{4, 32}));
  const ModuleTree& b = Shard(bert, 2).tree;
  EXPECT_EQ(Param(b, "embeddings.word_embeddings", "weight").shape,
            (std::vector<std::int64_t>{32, 16}));
  EXPECT_EQ(Param(b, "embeddings.position_embeddings", "weight").shape,
            (std::vector<std::int64_t>{32, 16}));
  EXPECT_EQ(Param(b, "pooler.dense", "weight").shape, (std::vector<std::int64_t>{16, 16}));
  EXPECT_EQ(Param(b, "encoder.layer.0.output.dense", "weight").shape,
            (std::vector<std::int64_t>{16, 32}));
}

TEST(TensorParallel, CostsAreSplitWhereTheWorkIsAndWholeWhereItIsReplicated) {
  // 16 tokens, hidden 16, fp32 (4 bytes).
  const ModelConfig c = TinyGpt2();
  const ModuleTree whole = build_model(c, kShape);
  const TensorParallelModel tp2 = Shard(c, 2);
  const auto cost = [&](const ModuleTree& t, const std::string& name) {
    return t.module(Find(t, name)).cost;
  };
  // c_attn (column): 2 x 16 x 16 x 48 + 16 x 48 = 25344 FLOPs, half each; its input (16 x 16 x 4
  // = 1024 bytes) is kept whole on both ranks; half of the 3072-byte output.
  const ModuleCost qkv = cost(tp2.tree, "transformer.h.0.attn.c_attn");
  EXPECT_EQ(cost(whole, "transformer.h.0.attn.c_attn").forward_flops, 25344);
  EXPECT_EQ(qkv.forward_flops, 12672);
  EXPECT_EQ(qkv.activation_bytes, 1024);
  EXPECT_EQ(qkv.output_bytes, 1536);
  // attn.c_proj (row): 2 x 16 x 16 x 16 = 8192 FLOPs of product, halved, plus the bias added to
  // the summed output on every rank (256); it keeps half of its input; its output is whole.
  const ModuleCost proj = cost(tp2.tree, "transformer.h.0.attn.c_proj");
  EXPECT_EQ(proj.forward_flops, 4096 + 256);
  EXPECT_EQ(proj.activation_bytes, 512);
  EXPECT_EQ(proj.output_bytes, 1024);
  // lm_head (vocab-parallel): 2 x 16 x 16 x 64 = 32768 FLOPs halved; it keeps its whole input
  // (1024); half of the output.
  const ModuleCost head = cost(tp2.tree, "lm_head");
  EXPECT_EQ(head.forward_flops, 16384);
  EXPECT_EQ(head.activation_bytes, 1024);
  EXPECT_EQ(head.output_bytes, 2048);
  // The loss (the root, vocab-parallel): half of what it keeps, the fp32 log-probabilities of the
  // 2 x 7 predicted positions (14 x 64 x 4 = 3584) and their labels (14 x 8).
  EXPECT_EQ(tp2.tree.module(0).cost.activation_bytes, (3584 + 112) / 2);
  // The attention core (half the heads) and the MLP activation are halved; norms are whole.
  const ModuleCost attn = cost(whole, "transformer.h.0.attn");
  EXPECT_EQ(cost(tp2.tree, "transformer.h.0.attn"),
            (ModuleCost{attn.forward_flops / 2, attn.activation_bytes / 2, attn.output_bytes / 2, 0,
                        0, attn.backward_workspace_bytes / 2}));
  EXPECT_EQ(cost(tp2.tree, "transformer.h.0.mlp.act").forward_flops,
            cost(whole, "transformer.h.0.mlp.act").forward_flops / 2);
  EXPECT_EQ(cost(tp2.tree, "transformer.h.0.ln_1"), cost(whole, "transformer.h.0.ln_1"));
  EXPECT_EQ(cost(tp2.tree, "transformer.wte"), cost(whole, "transformer.wte"));
  EXPECT_EQ(tp2.roles[static_cast<std::size_t>(Find(whole, "transformer.h.0.mlp.dropout"))],
            TensorRole::kReplicated);
}

TEST(TensorParallel, CollectivesOfEachModule) {
  // Every hidden-state all-reduce is 16 tokens x 16 x 4 bytes = 1024; the cross entropy's are one
  // fp32 per token (64 bytes), three of them.
  const ModelConfig c = TinyGpt2();
  const TensorParallelModel tp2 = Shard(c, 2);
  const auto of = [&](const std::string& name) {
    return tp2.collectives[static_cast<std::size_t>(Find(tp2.tree, name))];
  };
  const TensorCollective hidden{TensorCollectiveKind::kAllReduce, 1024};
  const std::vector<TensorCollective> none;
  EXPECT_EQ(of("transformer.h.0.attn.c_proj").forward, std::vector{hidden});
  EXPECT_EQ(of("transformer.h.0.attn.c_proj").backward, none);
  EXPECT_EQ(of("transformer.h.0.mlp.c_proj").forward, std::vector{hidden});
  EXPECT_EQ(of("transformer.h.0.attn.c_attn").forward, none);
  EXPECT_EQ(of("transformer.h.0.attn.c_attn").backward, std::vector{hidden});
  EXPECT_EQ(of("transformer.h.0.mlp.c_fc").backward, std::vector{hidden});
  EXPECT_EQ(of("transformer.wte").forward, std::vector{hidden});
  EXPECT_EQ(of("transformer.wpe").forward, none);
  EXPECT_EQ(of("lm_head").backward, std::vector{hidden});
  const TensorCollective token{TensorCollectiveKind::kAllReduce, 64};
  EXPECT_EQ(of("").forward, (std::vector{token, token, token}));
  std::int64_t forward = 0, backward = 0;
  for (const ModuleCollectives& m : tp2.collectives) {
    forward += static_cast<std::int64_t>(m.forward.size());
    backward += static_cast<std::int64_t>(m.backward.size());
  }
  // Two per block and the embedding forward, plus the loss's three; two per block and the head
  // backward.
  EXPECT_EQ(forward, 2 * 2 + 1 + 3);
  EXPECT_EQ(backward, 2 * 2 + 1);

  // Llama: q_proj alone reduces the fused QKV input gradient, gate_proj the gate/up one.
  const TensorParallelModel llama = Shard(TinyLlama(), 2);
  const auto backward_of = [&](const std::string& name) {
    return llama.collectives[static_cast<std::size_t>(Find(llama.tree, name))].backward.size();
  };
  EXPECT_EQ(backward_of("model.layers.0.self_attn.q_proj"), 1u);
  EXPECT_EQ(backward_of("model.layers.0.self_attn.k_proj"), 0u);
  EXPECT_EQ(backward_of("model.layers.0.self_attn.v_proj"), 0u);
  EXPECT_EQ(backward_of("model.layers.0.mlp.gate_proj"), 1u);
  EXPECT_EQ(backward_of("model.layers.0.mlp.up_proj"), 0u);
}

TEST(TensorParallel, OneRankIsTheModelAsItIs) {
  const ModelConfig c = TinyLlama();
  const ModuleTree whole = build_model(c, kShape);
  const TensorParallelModel m = shard_for_tensor_parallel(whole, c, 1);
  EXPECT_TRUE(m.tree == whole);
  for (const ModuleCollectives& x : m.collectives) {
    EXPECT_TRUE(x.forward.empty());
    EXPECT_TRUE(x.backward.empty());
  }
  // A model file needs nothing with one tensor rank.
  EXPECT_TRUE(shard_for_tensor_parallel(whole, std::nullopt, 1).tree == whole);
}

UserError ErrorOf(const ModuleTree& tree, const std::optional<ModelConfig>& c, std::int64_t tp) {
  try {
    shard_for_tensor_parallel(tree, c, tp);
  } catch (const UserError& e) {
    return e;
  }
  ADD_FAILURE() << "no UserError for tp " << tp;
  return UserError(ErrorKind::kValue, {}, "none");
}

TEST(TensorParallel, DivisibilityIsAUserErrorNamingTheDimension) {
  const auto expect = [](const ModelConfig& c, std::int64_t tp, const std::string& dimension) {
    const UserError e = ErrorOf(build_model(c, kShape), c, tp);
    EXPECT_EQ(e.where().key_path, "parallel.tensor");
    EXPECT_NE(e.message().find("model." + dimension + " "), std::string::npos) << e.what();
  };
  expect(TinyLlama(), 3, "hidden_size");  // 32
  ModelConfig heads = TinyGpt2();
  heads.hidden_size = 24;
  heads.num_heads = 6;
  heads.intermediate_size = 96;
  expect(heads, 4, "num_heads");           // 24 divides by 4, 6 heads do not
  expect(TinyLlama(), 8, "num_kv_heads");  // 8 heads, 4 KV heads
  ModelConfig ffn = TinyLlama();
  ffn.intermediate_size = 34;
  expect(ffn, 4, "intermediate_size");
  ModelConfig vocab = TinyGpt2();
  vocab.vocab_size = 66;
  expect(vocab, 4, "vocab_size");
  EXPECT_NO_THROW(Shard(vocab, 2));
}

TEST(TensorParallel, AModelFileIsRefusedWithMoreThanOneTensorRank) {
  const UserError e = ErrorOf(build_model(TinyGpt2(), kShape), std::nullopt, 2);
  EXPECT_EQ(e.kind(), ErrorKind::kUnsupported);
  EXPECT_EQ(e.where().key_path, "parallel.tensor");
  EXPECT_NE(e.message().find("model file"), std::string::npos);
}

}  // namespace
}  // namespace zp
