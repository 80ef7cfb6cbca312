// Tensor parallelism inside the ZeRO-3 data-parallel step: a one-block GPT-2 on the round cluster
// (tests/sim/sim_test_util.h: links of 1 B/ns and 1 us), every figure worked out by hand.
#include <gtest/gtest.h>

#include <filesystem>
#include <limits>
#include <string>

#include "../sim_test_util.h"
#include "core/model/tensor_parallel.h"
#include "sim/step/zero_step.h"

namespace zp::sim {
namespace {

using testing::ErrorOf;
using testing::ExpectDeterministic;
using testing::MakeRun;
using testing::RoundCluster;
using testing::Simulated;
using testing::SimulateWith;
using trace::OpKind;
using trace::StreamKind;

// GPT-2: vocab 64, hidden 16, 4 heads, MLP 64, one block, lm_head tied to wte; 8 tokens in fp32,
// so a hidden state is 8 x 16 x 4 = 512 bytes.
const char* kModel =
    "{family: gpt2, vocab_size: 64, hidden_size: 16, num_heads: 4, num_layers: 1, "
    "max_position_embeddings: 32, intermediate_size: 64, tie_word_embeddings: true}";

// Demand-only ZeRO-3: no prefetch, nothing kept for reuse, nothing persistent.
const char* kDemandOnly =
    ", stage3_prefetch_bucket_size: 0, stage3_max_reuse_distance: 0, "
    "stage3_param_persistence_threshold: 0";

RunSpec FamilyRun(int gpus, int tp, const std::string& zero = kDemandOnly,
                  const std::string& model = kModel) {
  const std::string yaml = "name: tp\nmodel: " + model + "\ncluster: " + RoundCluster(gpus) +
                           "\nparallel: {tensor: " + std::to_string(tp) +
                           "}\ntraining: {micro_batch: 1, sequence_length: 8}\n"
                           "deepspeed: {train_micro_batch_size_per_gpu: 1, zero_optimization: "
                           "{stage: 3" +
                           zero + "}}\n";
  return parse_run_spec(Document::from_yaml(yaml, "run.yaml"), std::filesystem::path("."));
}

Simulated Simulate(const RunSpec& run, SimOptions options = {}) {
  return SimulateWith(simulate_zero3, run, options);
}

bool OnTensorGroup(const trace::Trace& t, const trace::Op& op) {
  return op.group >= 0 && t.groups[static_cast<std::size_t>(op.group)].axis == "model";
}

std::vector<const trace::Op*> TensorOps(const trace::Trace& t) {
  std::vector<const trace::Op*> out;
  for (const trace::Op& op : t.ops) {
    if (OnTensorGroup(t, op)) out.push_back(&op);
  }
  return out;
}

std::int64_t TotalGatherBytes(const trace::Trace& t) {
  std::int64_t n = 0;
  for (const trace::Op& op : t.ops) {
    if (op.kind == OpKind::kAllGather) n += op.bytes;
  }
  return n;
}

std::vector<std::int64_t> GatherBytes(const trace::Trace& t) {
  std::vector<std::int64_t> out;
  for (const trace::Op& op : t.ops) {
    if (op.kind == OpKind::kAllGather) out.push_back(op.bytes);
  }
  return out;
}

TEST(TensorParallelStep, TensorAllReducesOfAStepByCountBytesAndTime) {
  // 4 GPUs, tensor 2, data 2. Forward: attn.c_proj, mlp.c_proj and wte all-reduce a hidden state
  // (512 bytes), the cross entropy three fp32 per-token values (32 bytes); backward: the input
  // gradients of c_attn, c_fc and lm_head (512 bytes each). 9 all-reduces, 6 x 512 + 3 x 32 =
  // 3168 bytes. Ring over 2 GPUs of a node: 2 x 1 us + 2 x (bytes / 2) at 1 B/ns: 2512 ns for
  // 512 bytes, 2032 ns for 32.
  const Simulated s = Simulate(FamilyRun(4, 2));
  const auto ops = TensorOps(s.trace);
  ASSERT_EQ(ops.size(), 9u);
  std::int64_t bytes = 0;
  for (const trace::Op* op : ops) {
    bytes += op->bytes;
    EXPECT_EQ(op->kind, OpKind::kAllReduce);
    EXPECT_EQ(op->stream, StreamKind::kCompute);  // blocking, as Megatron issues them
    EXPECT_EQ(op->end - op->start, op->bytes == 512 ? 2512 : 2032);
  }
  EXPECT_EQ(bytes, 3168);
  EXPECT_EQ(s.trace.groups[static_cast<std::size_t>(ops.front()->group)].size, 2);
  const RankReport& r = s.result.ranks.front();
  const TransferTotals& ar = r.transfers[static_cast<std::size_t>(TransferKind::kAllReduce)];
  EXPECT_EQ(ar.count, 9);
  EXPECT_EQ(ar.bytes, 3168);
  EXPECT_EQ(ar.busy_ns, 6 * 2512 + 3 * 2032);
  EXPECT_GE(r.steps.front().exposed_comm_ns, 6 * 2512 + 3 * 2032);

  // attn.c_proj's all-reduce follows its forward at once, and compute waits for it.
  const trace::Op* proj = nullptr;
  const trace::Op* reduce = nullptr;
  for (const trace::Op& op : s.trace.ops) {
    if (s.trace.string(op.name) != "transformer.h.0.attn.c_proj") continue;
    if (op.kind == OpKind::kForward) proj = &op;
    if (op.kind == OpKind::kAllReduce && !reduce) reduce = &op;
  }
  ASSERT_TRUE(proj && reduce);
  EXPECT_EQ(reduce->start, proj->end);
  for (const trace::Op& op : s.trace.ops) {
    if (op.stream == StreamKind::kCompute && op.start >= reduce->start && &op != reduce) {
      EXPECT_GE(op.start, reduce->end);
    }
  }
}

TEST(TensorParallelStep, GradientAccumulationRepeatsThemPerMicroBatch) {
  RunSpec run = FamilyRun(4, 2);
  run.deepspeed.batch.gradient_accumulation_steps = 3;
  const Simulated s = Simulate(run);
  const TransferTotals& ar =
      s.result.ranks.front().transfers[static_cast<std::size_t>(TransferKind::kAllReduce)];
  EXPECT_EQ(ar.count, 3 * 9);
  EXPECT_EQ(ar.bytes, 3 * 3168);
}

TEST(TensorParallelStep, RecomputationIssuesItsForwardAllReducesAgain) {
  // The model's one block is a checkpointed segment: backward runs its forward again, with its
  // two all-reduces of 512 bytes (the row-parallel projections').
  RunSpec run = FamilyRun(4, 2);
  run.training.checkpoint_interval = 1;
  const Simulated s = Simulate(run);
  const TransferTotals& ar =
      s.result.ranks.front().transfers[static_cast<std::size_t>(TransferKind::kAllReduce)];
  EXPECT_EQ(ar.count, 9 + 2);
  EXPECT_EQ(ar.bytes, 3168 + 2 * 512);
  EXPECT_TRUE(s.result.warnings.empty());
  EXPECT_EQ(
      s.result.ranks.front().transfers[static_cast<std::size_t>(TransferKind::kAllGather)].bytes,
      TotalGatherBytes(s.trace));
}

TEST(TensorParallelStep, PartitionedCheckpointsAreGatheredOverTheTensorGroup) {
  // partition_activations keeps each tensor rank's half of a checkpointed floating input (a hidden
  // state: 512 bytes whole, 256 kept) and gathers it whole before the recomputation, blocking
  // compute: a ring over 2 GPUs of a node, 1 us + 256 bytes at 1 B/ns = 1256 ns. The one
  // checkpointed segment, the block h.0, has such an input.
  RunSpec run = FamilyRun(4, 2);
  run.training.checkpoint_interval = 1;
  const Simulated whole = Simulate(run);
  run.deepspeed.activation_checkpointing.partition_activations = true;
  const Simulated p = Simulate(run);
  EXPECT_TRUE(p.result.warnings.empty());
  std::vector<const trace::Op*> gathers;
  for (const trace::Op* op : TensorOps(p.trace)) {
    if (op->kind == OpKind::kAllGather) gathers.push_back(op);
  }
  ASSERT_EQ(gathers.size(), 1u);
  for (const trace::Op* op : gathers) {
    EXPECT_EQ(op->bytes, 512);
    EXPECT_EQ(op->end - op->start, 1256);
    EXPECT_EQ(op->stream, StreamKind::kCompute);
  }
  EXPECT_EQ(p.result.step_time_ns - whole.result.step_time_ns, 1256);
  // The kept input is halved: at the end of forward h.0's input is held, 256 bytes fewer than
  // whole.
  const auto kept_at_end_of_forward = [](const trace::Trace& t) {
    TimeNs end = std::numeric_limits<TimeNs>::max();
    for (const trace::Op& op : t.ops) {
      if (op.kind == OpKind::kBackward) end = std::min(end, op.start);
    }
    std::int64_t kept = 0;
    for (const trace::MemorySample& m : t.memory) {
      if (m.time < end && m.category == trace::MemoryCategory::kActivations) kept = m.bytes;
    }
    return kept;
  };
  EXPECT_EQ(kept_at_end_of_forward(whole.trace) - kept_at_end_of_forward(p.trace), 256);
}

TEST(TensorParallelStep, ZeroGathersTheRanksShardOverTheDataParallelGroup) {
  // Data 2 in both runs: tensor 1 on 2 GPUs, tensor 2 on 4. The first gathers of forward, fp32:
  // wte 64 x 16 (split: half), wpe 32 x 16 (whole), ln_1 16 + 16 (whole), c_attn 16 x 48 + 48
  // (split: half), attn.c_proj 16 x 16 (split) + 16 (its bias, whole).
  const std::vector<std::int64_t> one = GatherBytes(Simulate(FamilyRun(2, 1)).trace);
  const std::vector<std::int64_t> two = GatherBytes(Simulate(FamilyRun(4, 2)).trace);
  ASSERT_EQ(one.size(), two.size());  // the same decisions
  ASSERT_GE(one.size(), 5u);
  EXPECT_EQ(std::vector<std::int64_t>(one.begin(), one.begin() + 5),
            (std::vector<std::int64_t>{4096, 2048, 128, 3264, 1088}));
  EXPECT_EQ(std::vector<std::int64_t>(two.begin(), two.begin() + 5),
            (std::vector<std::int64_t>{2048, 2048, 128, 1632, 512 + 64}));
  // The data-parallel group of rank 0 is {0, 2}: tensor peers are adjacent ranks.
  const Simulated s = Simulate(FamilyRun(4, 2));
  for (const trace::Op& op : s.trace.ops) {
    if (op.kind == OpKind::kAllGather) {
      EXPECT_EQ(s.trace.groups[static_cast<std::size_t>(op.group)].axis, "data");
    }
  }
}

double WholeModelFlops(const ModuleTree& tree) {
  double flops = 0;
  for (const ForwardCall& c : tree.calls()) {
    const ModuleCost& cost = tree.module(c.module).cost;
    flops += static_cast<double>(cost.forward_flops + cost.backward_or_default());
  }
  return flops;
}

TEST(TensorParallelStep, UtilisationCountsTheWholeModelOnceOverAllGpus) {
  const RunSpec run = FamilyRun(4, 2);
  const Simulated s = Simulate(run);
  const RankReport& r = s.result.ranks.front();
  const double whole = WholeModelFlops(run.tree);
  EXPECT_DOUBLE_EQ(r.model_flops_per_step, whole / 2);
  EXPECT_DOUBLE_EQ(s.result.mfu,
                   whole / 2 / (static_cast<double>(s.result.step_time_ns) * 1e-9 * 1e12));
  // A rank's forward is more than half of the model's: the replicated modules run on both.
  const TensorParallelModel shard = shard_for_tensor_parallel(run.tree, run.model.config, 2);
  const auto forward = [](const ModuleTree& tree) {
    std::int64_t flops = 0;
    for (const ForwardCall& c : tree.calls())
      flops += tree.module(c.module).cost.forward_flops;
    return flops;
  };
  EXPECT_GT(2 * forward(shard.tree), forward(run.tree));
  std::int64_t traced = 0;
  for (const trace::Op& op : s.trace.ops) {
    if (op.kind == OpKind::kForward) traced += op.flops;
  }
  EXPECT_EQ(traced, forward(shard.tree));
}

TEST(TensorParallelStep, OneTensorRankIsTheRunAsItWas) {
  // The family model at tensor 1 simulates exactly as the same tree read from a model file,
  // which never reaches tensor-parallel code; neither has a tensor group or an all-reduce.
  const RunSpec family = FamilyRun(2, 1);
  const Simulated a = Simulate(family);
  const Simulated b = Simulate(MakeRun(family.tree, 2, kDemandOnly, ", sequence_length: 8"));
  EXPECT_TRUE(a.trace.ops == b.trace.ops);
  EXPECT_TRUE(a.trace.memory == b.trace.memory);
  EXPECT_TRUE(a.trace.groups == b.trace.groups);
  EXPECT_EQ(a.result.step_time_ns, b.result.step_time_ns);
  EXPECT_DOUBLE_EQ(a.result.mfu, b.result.mfu);
  EXPECT_TRUE(TensorOps(a.trace).empty());
  EXPECT_EQ(
      a.result.ranks.front().transfers[static_cast<std::size_t>(TransferKind::kAllReduce)].count,
      0);
  EXPECT_DOUBLE_EQ(a.result.ranks.front().model_flops_per_step, WholeModelFlops(family.tree));
}

TEST(TensorParallelStep, SimulationIsDeterministicAndEveryRankAgrees) {
  const RunSpec run = FamilyRun(4, 2, ", stage3_prefetch_bucket_size: 2000");
  ExpectDeterministic(simulate_zero3, run);
  SimOptions all;
  all.all_ranks = true;
  const Simulated classes = Simulate(run);
  const Simulated ranks = Simulate(run, all);
  ASSERT_EQ(ranks.result.ranks.size(), 4u);
  for (const RankReport& r : ranks.result.ranks) {
    EXPECT_EQ(r.steps.front().time_ns(), classes.result.ranks.front().steps.front().time_ns());
    EXPECT_EQ(r.transfers[static_cast<std::size_t>(TransferKind::kAllReduce)].bytes,
              classes.result.ranks.front()
                  .transfers[static_cast<std::size_t>(TransferKind::kAllReduce)]
                  .bytes);
  }
  EXPECT_DOUBLE_EQ(ranks.result.mfu, classes.result.mfu);
}

TEST(TensorParallelStep, RunsItCannotShardAreUserErrors) {
  // A model file does not say which weights are split.
  RunSpec file = MakeRun(FamilyRun(2, 1).tree, 4, kDemandOnly, ", sequence_length: 8");
  file.parallel.tensor = 2;
  file.parallel.data = 2;
  const UserError e = ErrorOf([&] { simulate_zero3(file, {}, nullptr); });
  EXPECT_EQ(e.where().key_path, "parallel.tensor");
  EXPECT_EQ(e.kind(), ErrorKind::kUnsupported);
  // 4 heads over 8 tensor ranks.
  const RunSpec heads = FamilyRun(8, 8);
  const UserError h = ErrorOf([&] { simulate_zero3(heads, {}, nullptr); });
  EXPECT_EQ(h.where().key_path, "parallel.tensor");
  EXPECT_NE(h.message().find("model.num_heads"), std::string::npos) << h.what();
}

}  // namespace
}  // namespace zp::sim
