// Tensor parallelism inside the pipeline step: a two-block GPT-2 over pipeline 2 x tensor 2 on the
// round cluster (tests/sim/sim_test_util.h: links of 1 B/ns and 1 us), every figure worked out by
// hand.
#include <gtest/gtest.h>

#include <filesystem>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

#include "../sim_test_util.h"
#include "core/checkpoint/checkpointing.h"
#include "core/model/tensor_parallel.h"
#include "core/pipe/layers.h"
#include "sim/step/pipeline_step.h"

namespace zp::sim {
namespace {

using testing::ExpectDeterministic;
using testing::ExpectEveryAllocationNamed;
using testing::RoundCluster;
using testing::Simulated;
using testing::SimulateWith;
using trace::OpKind;
using trace::StreamKind;

// GPT-2: vocab 64, hidden 16, 4 heads, MLP 64, two blocks, lm_head tied to wte; 8 tokens in fp32,
// so a hidden state is 8 x 16 x 4 = 512 bytes. The layers are wte, wpe, drop, h.0, h.1, ln_f and
// lm_head; type:GPT2Block puts wte..h.0 on stage 0 and h.1..lm_head on stage 1.
const char* kModel =
    "{family: gpt2, vocab_size: 64, hidden_size: 16, num_heads: 4, num_layers: 2, "
    "max_position_embeddings: 32, intermediate_size: 64, tie_word_embeddings: true}";

// Pipeline 2 x tensor `tp` (data 1), fp32 without ZeRO (no optimizer wrapper), `m` micro-batches;
// `pipeline` adds keys to DeepSpeed's pipeline mapping.
RunSpec PipeRun(int tp, int m = 1, const std::string& pipeline = "") {
  const std::string yaml =
      "name: pptp\nmodel: " + std::string(kModel) + "\ncluster: " + RoundCluster(2 * tp) +
      "\nparallel: {pipeline: 2, tensor: " + std::to_string(tp) +
      "}\ntraining: {micro_batch: 1, sequence_length: 8}\n"
      "deepspeed: {train_micro_batch_size_per_gpu: 1, gradient_accumulation_steps: " +
      std::to_string(m) + ", pipeline: {partition: \"type:GPT2Block\"" + pipeline + "}}\n";
  return parse_run_spec(Document::from_yaml(yaml, "run.yaml"), std::filesystem::path("."));
}

Simulated Simulate(const RunSpec& run, SimOptions options = {}) {
  return SimulateWith(simulate_pipeline, run, options);
}

const TransferTotals& Transfers(const RankReport& r, TransferKind k) {
  return r.transfers[static_cast<std::size_t>(k)];
}

std::int64_t Bytes(const MemorySnapshot& s, trace::MemoryCategory c) {
  return s.bytes[static_cast<std::size_t>(c)];
}

bool TensorAllReduce(const trace::Trace& t, const trace::Op& op) {
  return op.kind == OpKind::kAllReduce && op.group >= 0 &&
         t.groups[static_cast<std::size_t>(op.group)].axis == "model";
}

// A trace rank's tensor all-reduces of one micro-batch, in order: the module, the bytes, and the
// kind of the compute op that ran just before (forward, backward or recompute).
struct Reduce {
  std::string module;
  std::int64_t bytes = 0;
  OpKind after = OpKind::kForward;
  bool operator==(const Reduce&) const = default;
};
std::ostream& operator<<(std::ostream& os, const Reduce& r) {
  return os << r.module << " " << r.bytes << " after " << static_cast<int>(r.after);
}

std::vector<Reduce> Reduces(const trace::Trace& t, std::int32_t rank, std::int32_t micro_batch) {
  std::vector<Reduce> out;
  OpKind last = OpKind::kForward;
  for (const trace::Op& op : t.ops) {
    if (op.rank != rank || op.micro_batch != micro_batch) continue;
    if (op.kind == OpKind::kForward || op.kind == OpKind::kBackward ||
        op.kind == OpKind::kRecompute)
      last = op.kind;
    if (TensorAllReduce(t, op)) out.push_back({t.string(op.name), op.bytes, last});
  }
  return out;
}

constexpr OpKind F = OpKind::kForward;
constexpr OpKind B = OpKind::kBackward;
constexpr OpKind R = OpKind::kRecompute;

TEST(PipelineTensorParallel, EachStageHoldsItsShardWithReplicatedParametersWhole) {
  // Stage 0: wte [64, 16] split by vocabulary (512), wpe [32, 16] whole (512), h.0 (1688: ln_1 and
  // ln_2 32 each, c_attn [16, 24] + 24, attn.c_proj [8, 16] + its whole bias 16, c_fc [16, 32] +
  // 32, mlp.c_proj [32, 16] + 16): 2712 fp32 elements. Stage 1: h.1 (1688), ln_f (32), lm_head's
  // tied weight (512): 2232. Splitting everything by 2 would give 2408 and 2168.
  const RunSpec run = PipeRun(2);
  const Simulated s = Simulate(run);
  ASSERT_EQ(s.result.ranks.size(), 2u);
  EXPECT_EQ(Bytes(s.result.ranks[0].peak, trace::MemoryCategory::kParamPartitions), 2712 * 4);
  EXPECT_EQ(Bytes(s.result.ranks[1].peak, trace::MemoryCategory::kParamPartitions), 2232 * 4);
  // The same from the shard itself.
  const TensorParallelModel shard = shard_for_tensor_parallel(run.tree, run.model.config, 2);
  const pipe::PipelineLayers layers = pipe::layers_from_tree(shard.tree);
  ASSERT_EQ(layers.layers.size(), 7u);
  std::int64_t stage0 = 0, stage1 = 0;
  for (int i = 0; i < 4; ++i)
    stage0 += layers.layers[static_cast<std::size_t>(i)].parameter_numel;
  for (int i = 4; i < 7; ++i)
    stage1 += layers.layers[static_cast<std::size_t>(i)].parameter_numel;
  EXPECT_EQ(stage0, 2712);
  EXPECT_EQ(stage1, 2232);
  // Tensor 1: the whole model, (1024 + 512 + 3280) and (3280 + 32 + 1024) elements.
  const Simulated one = Simulate(PipeRun(1));
  EXPECT_EQ(Bytes(one.result.ranks[0].peak, trace::MemoryCategory::kParamPartitions), 4816 * 4);
  EXPECT_EQ(Bytes(one.result.ranks[1].peak, trace::MemoryCategory::kParamPartitions), 4336 * 4);
  // The tied weight's gradient is all-reduced between the stages as the shard holds it.
  std::int64_t tied = 0;
  for (const trace::Op& op : s.trace.ops) {
    if (op.kind == OpKind::kAllReduce &&
        s.trace.groups[static_cast<std::size_t>(op.group)].axis.rfind("tied", 0) == 0)
      tied = op.bytes;
  }
  EXPECT_EQ(tied, 32 * 16 * 4);
}

TEST(PipelineTensorParallel, TensorAllReducesPerMicroBatchAndStage) {
  // Stage 0: forward wte and the two row-parallel projections of h.0; backward the input gradients
  // of c_fc and c_attn. Stage 1: forward h.1's projections and the vocab-parallel cross entropy's
  // three fp32 per-token values (8 x 4 = 32 bytes), at the end of the last stage's forward;
  // backward lm_head's, c_fc's and c_attn's input gradients. A ring over 2 GPUs of a node:
  // 2 x 1 us + 2 x (bytes / 2) at 1 B/ns, 2512 ns for 512 bytes and 2032 ns for 32.
  const int m = 3;
  const Simulated s = Simulate(PipeRun(2, m));
  const std::string h0 = "transformer.h.0.", h1 = "transformer.h.1.";
  const std::vector<Reduce> stage0 = {{"transformer.wte", 512, F},
                                      {h0 + "attn.c_proj", 512, F},
                                      {h0 + "mlp.c_proj", 512, F},
                                      {h0 + "mlp.c_fc", 512, B},
                                      {h0 + "attn.c_attn", 512, B}};
  const std::vector<Reduce> stage1 = {{h1 + "attn.c_proj", 512, F},
                                      {h1 + "mlp.c_proj", 512, F},
                                      {"model", 32, F},
                                      {"model", 32, F},
                                      {"model", 32, F},
                                      {"lm_head", 512, B},
                                      {h1 + "mlp.c_fc", 512, B},
                                      {h1 + "attn.c_attn", 512, B}};
  for (int mb = 0; mb < m; ++mb) {
    EXPECT_EQ(Reduces(s.trace, 0, mb), stage0) << "micro-batch " << mb;
    EXPECT_EQ(Reduces(s.trace, 1, mb), stage1) << "micro-batch " << mb;
  }
  for (const trace::Op& op : s.trace.ops) {
    if (!TensorAllReduce(s.trace, op)) continue;
    EXPECT_EQ(op.stream, StreamKind::kCompute);  // blocking, as Megatron issues them
    EXPECT_EQ(op.end - op.start, op.bytes == 512 ? 2512 : 2032);
    EXPECT_EQ(s.trace.groups[static_cast<std::size_t>(op.group)].size, 2);
  }
  // The totals: the tensor all-reduces and the tied weight's one (2048 bytes over two stages:
  // 1 us + 2048 / 2 x 2 at 1 B/ns).
  const RankReport& r0 = s.result.ranks[0];
  const RankReport& r1 = s.result.ranks[1];
  EXPECT_EQ(Transfers(r0, TransferKind::kAllReduce).count, 5 * m + 1);
  EXPECT_EQ(Transfers(r0, TransferKind::kAllReduce).bytes, 5 * 512 * m + 2048);
  EXPECT_EQ(Transfers(r0, TransferKind::kAllReduce).busy_ns, 5 * 2512 * m + 4048);
  EXPECT_EQ(Transfers(r1, TransferKind::kAllReduce).count, 8 * m + 1);
  EXPECT_EQ(Transfers(r1, TransferKind::kAllReduce).bytes, (5 * 512 + 3 * 32) * m + 2048);
  EXPECT_EQ(Transfers(r1, TransferKind::kAllReduce).busy_ns, (5 * 2512 + 3 * 2032) * m + 4048);
  EXPECT_TRUE(s.result.warnings.empty());
}

TEST(PipelineTensorParallel, RecomputationRepeatsTheForwardAllReduces) {
  // activation_checkpoint_interval 1 checkpoints every layer with parameters; backward recomputes
  // each segment before its backward, in reverse: h.0 (its two projections again), then wpe and
  // wte (the embedding's all-reduce again) on stage 0; lm_head, ln_f and h.1 on stage 1.
  const Simulated s = Simulate(PipeRun(2, 2, ", activation_checkpoint_interval: 1"));
  const std::string h0 = "transformer.h.0.", h1 = "transformer.h.1.";
  const std::vector<Reduce> stage0 = {{"transformer.wte", 512, F},  {h0 + "attn.c_proj", 512, F},
                                      {h0 + "mlp.c_proj", 512, F},  {h0 + "attn.c_proj", 512, R},
                                      {h0 + "mlp.c_proj", 512, R},  {h0 + "mlp.c_fc", 512, B},
                                      {h0 + "attn.c_attn", 512, B}, {"transformer.wte", 512, R}};
  const std::vector<Reduce> stage1 = {{h1 + "attn.c_proj", 512, F},
                                      {h1 + "mlp.c_proj", 512, F},
                                      {"model", 32, F},
                                      {"model", 32, F},
                                      {"model", 32, F},
                                      {"lm_head", 512, B},
                                      {h1 + "attn.c_proj", 512, R},
                                      {h1 + "mlp.c_proj", 512, R},
                                      {h1 + "mlp.c_fc", 512, B},
                                      {h1 + "attn.c_attn", 512, B}};
  for (int mb = 0; mb < 2; ++mb) {
    EXPECT_EQ(Reduces(s.trace, 0, mb), stage0) << "micro-batch " << mb;
    EXPECT_EQ(Reduces(s.trace, 1, mb), stage1) << "micro-batch " << mb;
  }
  // Without checkpointing, three fewer on stage 0 and two fewer on stage 1 per micro-batch.
  const Simulated plain = Simulate(PipeRun(2, 2));
  EXPECT_EQ(Transfers(s.result.ranks[0], TransferKind::kAllReduce).count -
                Transfers(plain.result.ranks[0], TransferKind::kAllReduce).count,
            2 * 3);
  EXPECT_EQ(Transfers(s.result.ranks[1], TransferKind::kAllReduce).count -
                Transfers(plain.result.ranks[1], TransferKind::kAllReduce).count,
            2 * 2);
}

TEST(PipelineTensorParallel, PipePartitionedSendsASliceAndGathersIt) {
  // pipe_partitioned sends 1/tp of the activation (after a meta message) and the receiver
  // all-gathers it over the slice; grad_partitioned does the same backwards. Stage 0 returns a
  // hidden state: 512 bytes, 64 fp32 elements a slice rank.
  const int m = 3;
  RunSpec run = PipeRun(2, m);
  const SimulationResult r = Simulate(run).result;
  const std::int64_t meta = (1 + 3 + 2 + 2 + 1) * 8;  // ndims, shape, parts, rank, offsets
  const RankReport& s0 = r.ranks[0];
  const RankReport& s1 = r.ranks[1];
  EXPECT_EQ(Transfers(s0, TransferKind::kSendRecv).count, 4 * m);
  EXPECT_EQ(Transfers(s0, TransferKind::kSendRecv).bytes, m * 2 * (meta + 256));
  EXPECT_EQ(Transfers(s1, TransferKind::kAllGather).count, m);  // the input, in forward
  EXPECT_EQ(Transfers(s1, TransferKind::kAllGather).bytes, m * 512);
  EXPECT_EQ(Transfers(s0, TransferKind::kAllGather).count, 2 * m);  // output and grad, backward
  EXPECT_EQ(Transfers(s0, TransferKind::kAllGather).bytes, 2 * m * 512);

  run.deepspeed.pipeline.pipe_partitioned = false;
  run.deepspeed.pipeline.grad_partitioned = false;
  const SimulationResult whole = Simulate(run).result;
  EXPECT_EQ(Transfers(whole.ranks[0], TransferKind::kSendRecv).bytes, m * 2 * 512);
  EXPECT_EQ(Transfers(whole.ranks[0], TransferKind::kAllGather).count, 0);
  EXPECT_EQ(Transfers(whole.ranks[1], TransferKind::kAllGather).count, 0);
  // The tensor all-reduces do not depend on how activations travel between stages.
  EXPECT_EQ(Transfers(whole.ranks[1], TransferKind::kAllReduce).bytes,
            Transfers(s1, TransferKind::kAllReduce).bytes);
}

TEST(PipelineTensorParallel, UtilisationCountsEachStagesWholeWorkOnceOverItsSlice) {
  // A slice rank's model FLOPs are half of its stage's whole work, though it runs the replicated
  // modules in full: tensor 2 reports exactly half of what tensor 1 does, stage by stage.
  const Simulated one = Simulate(PipeRun(1, 2));
  const Simulated two = Simulate(PipeRun(2, 2));
  for (std::size_t s = 0; s < 2; ++s) {
    EXPECT_DOUBLE_EQ(2 * two.result.ranks[s].model_flops_per_step,
                     one.result.ranks[s].model_flops_per_step);
  }
  // What a rank computes is its shard's layers, more than half of the whole: the replicated
  // modules run on both slice ranks.
  const RunSpec run = PipeRun(2, 2);
  const TensorParallelModel shard = shard_for_tensor_parallel(run.tree, run.model.config, 2);
  const auto layers_forward = [](const ModuleTree& tree) {
    std::int64_t flops = 0;
    for (const pipe::Layer& l : pipe::layers_from_tree(tree).layers)
      flops += ckpt::layer_activity(tree, l).forward_flops;
    return flops;
  };
  const auto traced_forward = [](const trace::Trace& t) {
    std::int64_t flops = 0;
    for (const trace::Op& op : t.ops) {
      if (op.kind == OpKind::kForward) flops += op.flops;
    }
    return flops;
  };
  EXPECT_EQ(traced_forward(one.trace), 2 * layers_forward(run.tree));  // two micro-batches
  EXPECT_EQ(traced_forward(two.trace), 2 * layers_forward(shard.tree));
  EXPECT_GT(2 * layers_forward(shard.tree), layers_forward(run.tree));
}

TEST(PipelineTensorParallel, OneTensorRankHasNoTensorGroupTraffic) {
  const Simulated s = Simulate(PipeRun(1, 2, ", activation_checkpoint_interval: 1"));
  for (const trace::Op& op : s.trace.ops)
    EXPECT_FALSE(TensorAllReduce(s.trace, op));
  // Only the tied weight's all-reduce: 64 x 16 fp32.
  for (const RankReport& r : s.result.ranks) {
    EXPECT_EQ(Transfers(r, TransferKind::kAllReduce).count, 1);
    EXPECT_EQ(Transfers(r, TransferKind::kAllReduce).bytes, 64 * 16 * 4);
  }
}

TEST(PipelineTensorParallel, SimulationIsDeterministicAndEveryRankAgrees) {
  const RunSpec run = PipeRun(2, 3, ", activation_checkpoint_interval: 1");
  ExpectDeterministic(simulate_pipeline, run);
  SimOptions all;
  all.all_ranks = true;
  const Simulated classes = Simulate(run);
  const Simulated ranks = Simulate(run, all);
  ASSERT_EQ(ranks.result.ranks.size(), 4u);
  for (const RankReport& r : ranks.result.ranks) {
    // Ranks 0 and 1 are stage 0's slice, 2 and 3 stage 1's.
    const RankReport& c = classes.result.ranks[r.ranks.front() < 2 ? 0 : 1];
    EXPECT_EQ(r.steps.front().time_ns(), c.steps.front().time_ns());
    EXPECT_EQ(Transfers(r, TransferKind::kAllReduce).bytes,
              Transfers(c, TransferKind::kAllReduce).bytes);
    EXPECT_EQ(Transfers(r, TransferKind::kAllReduce).busy_ns,
              Transfers(c, TransferKind::kAllReduce).busy_ns);
  }
  EXPECT_EQ(ranks.result.step_time_ns, classes.result.step_time_ns);
}

TEST(PipelineTensorParallel, RunsItCannotShardAreUserErrors) {
  // A model file does not say which weights are split.
  RunSpec file = PipeRun(2);
  file.model.config.reset();
  const UserError e = testing::ErrorOf([&] { simulate_pipeline(file, {}, nullptr); });
  EXPECT_EQ(e.where().key_path, "parallel.tensor");
  EXPECT_EQ(e.kind(), ErrorKind::kUnsupported);
  // 4 heads over 8 tensor ranks.
  const UserError h = testing::ErrorOf([&] { simulate_pipeline(PipeRun(8), {}, nullptr); });
  EXPECT_EQ(h.where().key_path, "parallel.tensor");
  EXPECT_NE(h.message().find("model.num_heads"), std::string::npos) << h.what();
}

// Every device block is named (the viewer lists the largest live ones by name), those of the
// partitioned paths too: a slice sent, a slice gathered whole, a checkpoint gathered back.
TEST(PipelineTensorParallel, EveryAllocationIsNamed) {
  for (const std::string pipeline :
       {"", ", grad_partitioned: false", ", pipe_partitioned: false, grad_partitioned: false",
        ", activation_checkpoint_interval: 1"}) {
    SCOPED_TRACE(pipeline);
    RunSpec run = PipeRun(2, 3, pipeline);
    if (pipeline.find("checkpoint") != std::string::npos)
      run.deepspeed.activation_checkpointing.partition_activations = true;
    for (std::int64_t steps : {0, 2}) {
      SimOptions options;
      options.steps = steps;
      const Simulated s = Simulate(run, options);
      ExpectEveryAllocationNamed(s.trace);
    }
  }
}

}  // namespace
}  // namespace zp::sim
