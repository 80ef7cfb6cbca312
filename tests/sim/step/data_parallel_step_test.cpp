// The data-parallel step under ZeRO stages 0-2: each test works a rule out by hand on a tiny model
// and a cluster with round numbers (tests/sim/sim_test_util.h), and would fail if the rule were
// different.
#include "sim/step/data_parallel_step.h"

#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <climits>
#include <filesystem>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "../sim_test_util.h"
#include "core/config/document.h"
#include "core/model/model_json.h"
#include "sim/report/result_json.h"
#include "sim/simulate.h"
#include "sim/step/optimizer_wrappers.h"

namespace zp::sim {
namespace {

using testing::ErrorOf;
using testing::ExpectEveryAllocationNamed;
using testing::OpsOf;
using testing::RoundCluster;
using testing::Simulated;
using testing::SimulateWith;
using testing::TwoLayers;
using trace::MemoryCategory;
using trace::OpKind;
using trace::StreamKind;

// `n` blocks, each one weight of `numel` elements, a forward of `flops` and no activations.
ModuleTree Chain(int n, std::int64_t numel, std::int64_t flops, DType dtype = DType::kFloat32) {
  ModuleTree t("chain");
  t.add_module(kNoModule, "", "Chain");
  std::vector<ModuleId> blocks;
  for (int i = 0; i < n; ++i) {
    const ModuleId m = t.add_module(0, "l" + std::to_string(i), "Block");
    t.add_parameter(m, "weight", {numel}, dtype);
    t.set_cost(m, {flops, 0, 0});
    blocks.push_back(m);
  }
  t.set_shape({1, 1, dtype});
  const auto root = t.add_call(0, kNoCall, false);
  for (int i = 0; i < n; ++i)
    t.add_call(blocks[static_cast<std::size_t>(i)], root, i > 0);
  return t;
}

// A run of `tree` on one node of `gpus` round GPUs with `zero` as the whole zero_optimization
// mapping's contents and `top` as extra top-level DeepSpeed keys.
RunSpec MakeRun(const ModuleTree& tree, int gpus, const std::string& zero,
                const std::string& top = "", const std::string& training = "") {
  const std::filesystem::path dir =
      std::filesystem::temp_directory_path() / ("zeroplan_dp_test." + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  save_model_file(tree, dir / "model.json");
  const std::string dtype = tree.shape().dtype == DType::kBFloat16  ? ", bf16: {enabled: true}"
                            : tree.shape().dtype == DType::kFloat16 ? ", fp16: {enabled: true}"
                                                                    : "";
  const std::string yaml = "name: test\nmodel: {file: model.json}\ncluster: " + RoundCluster(gpus) +
                           "\ntraining: {micro_batch: 1" + training +
                           "}\ndeepspeed: {train_micro_batch_size_per_gpu: 1" + dtype + top +
                           ", zero_optimization: {" + zero + "}}\n";
  const RunSpec run = parse_run_spec(Document::from_yaml(yaml, "run.yaml"), dir);
  std::filesystem::remove_all(dir);
  return run;
}

Simulated Simulate(const RunSpec& run, SimOptions options = {}) {
  return SimulateWith(simulate_data_parallel, run, options);
}

// The gradient all-reduces (the norm and overflow flags are named otherwise).
std::vector<const trace::Op*> GradReduces(const trace::Trace& t) {
  std::vector<const trace::Op*> out;
  for (const trace::Op* op : OpsOf(t, OpKind::kAllReduce)) {
    if (t.string(op->name).rfind("bucket", 0) == 0) out.push_back(op);
  }
  return out;
}

std::vector<std::int64_t> BytesOf(const std::vector<const trace::Op*>& ops) {
  std::vector<std::int64_t> out;
  for (const trace::Op* op : ops)
    out.push_back(op->bytes);
  return out;
}

std::int64_t At(const MemorySnapshot& s, MemoryCategory c) {
  return s.bytes[static_cast<std::size_t>(c)];
}

TEST(DataParallelStep, ModelStatesPerStageWithPadding) {
  // bf16, 38 trainable elements over 4 ranks: flat buffer 40 (80 bytes), partition 10.
  const ModuleTree tree = TwoLayers(DType::kBFloat16);
  // Stage 0 with bf16: BF16_Optimizer (fp32 accumulation by default): partitioned master (40) and
  // Adam states (80); the fp32 flat gradient buffer (160) and the bf16 gradients (76).
  const DataParallelModelStates s0 = data_parallel_model_states(MakeRun(tree, 4, "stage: 0"), 0);
  EXPECT_EQ(s0.params, 80);
  EXPECT_EQ(s0.gradients, 160 + 76);
  EXPECT_EQ(s0.master, 40);
  EXPECT_EQ(s0.optimizer, 80);
  // Stages 1 and 2: DeepSpeedZeroOptimizer. Rank 0's partition [0, 10) touches a.weight only:
  // averaged_gradients keeps it whole in bf16 (48), and the fp32 partition is 40.
  for (const char* stage : {"stage: 1", "stage: 2"}) {
    const DataParallelModelStates s = data_parallel_model_states(MakeRun(tree, 4, stage), 0);
    EXPECT_EQ(s.params, 80) << stage;
    EXPECT_EQ(s.gradients, 48 + 40) << stage;
    EXPECT_EQ(s.master, 40) << stage;
    EXPECT_EQ(s.optimizer, 80) << stage;
  }
  // Rank 3's partition [30, 40) is straddled by b.weight [24, 36) and holds b.bias: 14 elements.
  EXPECT_EQ(data_parallel_model_states(MakeRun(tree, 4, "stage: 2"), 3).gradients, 28 + 40);
  // The simulation books the same states.
  const Simulated sim = Simulate(MakeRun(tree, 4, "stage: 2"));
  const MemorySnapshot& peak = sim.result.ranks.front().peak;
  EXPECT_EQ(At(peak, MemoryCategory::kParamPartitions), 80);
  EXPECT_EQ(At(peak, MemoryCategory::kMasterWeights), 40);
  EXPECT_EQ(At(peak, MemoryCategory::kOptimizerStates), 80);
}

TEST(DataParallelStep, Stage2StatesEqualDeepSpeedsEstimateUnderItsAssumptions) {
  // Four bf16 weights of 1024 over 4 GPUs: nothing to pad, each partition exactly one weight, Adam.
  const RunSpec run = MakeRun(Chain(4, 1024, 1000, DType::kBFloat16), 4, "stage: 2");
  const DataParallelModelStates s = data_parallel_model_states(run, 0);
  const DeepSpeedEstimate e = deepspeed_zero2_estimate(4096, 4, 1, false);
  EXPECT_EQ(e.gpu_bytes, 2 * 4096 + 18 * 4096 / 4);
  EXPECT_EQ(s.total(), e.gpu_bytes);
  // With the optimizer offloaded, the GPU keeps the 16-bit parameters only, as the estimate says.
  const RunSpec offload = MakeRun(Chain(4, 1024, 1000, DType::kBFloat16), 4,
                                  "stage: 2, offload_optimizer: {device: cpu}");
  EXPECT_EQ(data_parallel_model_states(offload, 0).total(),
            deepspeed_zero2_estimate(4096, 4, 1, true).gpu_bytes);
  // estimate_zero2_model_states_mem_needs' host figures: 4 x 4 x 1.5 and max(4 x 4, 16) x 1.5.
  EXPECT_EQ(e.cpu_bytes, 4096 * 4 * 4 * 3 / 2);
  EXPECT_EQ(deepspeed_zero2_estimate(4096, 4, 1, true).cpu_bytes, 4096 * 16 * 3 / 2);
  // The simulation reports it beside the prediction.
  const SimulationResult r = simulate(run, SimOptions{});
  ASSERT_TRUE(r.estimate.has_value());
  EXPECT_EQ(r.estimate->stage, 2);
  EXPECT_EQ(r.estimate->gpu_bytes, e.gpu_bytes);
  EXPECT_EQ(result_to_json(r)["deepspeed_estimate"]["function"],
            "estimate_zero2_model_states_mem_needs");
}

TEST(DataParallelStep, GradientBucketsFollowReduceBucketSize) {
  // Stage 2, fp32, reduce_bucket_size 15. Backward produces b.bias (2), b.weight (12), a.weight
  // (24). a.weight overflows the bucket: [b.bias, b.weight] is reduced. Its slices by partition:
  // b.bias -> rank 3 (2), b.weight [24, 30) -> rank 2 (6), [30, 36) -> rank 3 (6): 14 elements in
  // one all-reduce (56 bytes). a.weight, larger than a bucket, is reduced alone by the epilogue:
  // slices 10, 10, 4; allreduce_and_scatter flushes after 20 > 15, then 4: 80 and 16 bytes.
  const Simulated rs = Simulate(
      MakeRun(TwoLayers(), 4, "stage: 2, reduce_bucket_size: 15, allgather_bucket_size: 1000"));
  EXPECT_EQ(BytesOf(GradReduces(rs.trace)), (std::vector<std::int64_t>{56, 80, 16}));
  EXPECT_EQ(rs.result.ranks.front().steps.front().coordinator.reduce_calls, 3);
  EXPECT_EQ(rs.result.ranks.front().steps.front().coordinator.reduce_elements, 38);
  // A bucket is reduced only when the next gradient would take it past reduce_bucket_size, and a
  // chunk flushed only past it: at 14, [b.bias, b.weight] (exactly 14) is still one bucket and one
  // all-reduce.
  const Simulated exact = Simulate(MakeRun(TwoLayers(), 4, "stage: 2, reduce_bucket_size: 14"));
  EXPECT_EQ(BytesOf(GradReduces(exact.trace)), (std::vector<std::int64_t>{56, 80, 16}));
  // Without reduce_scatter each bucket is one all-reduce in place: 14 and 24 elements.
  const Simulated ar = Simulate(MakeRun(
      TwoLayers(), 4,
      "stage: 2, reduce_bucket_size: 15, reduce_scatter: false, allgather_bucket_size: 1000"));
  EXPECT_EQ(BytesOf(GradReduces(ar.trace)), (std::vector<std::int64_t>{56, 96}));
  // A bucket large enough for everything: one reduction at the end of backward.
  const Simulated one = Simulate(MakeRun(TwoLayers(), 4, "stage: 2, reduce_bucket_size: 1000"));
  EXPECT_EQ(BytesOf(GradReduces(one.trace)), (std::vector<std::int64_t>{152}));
  // Every all-reduce is a ring over 4 ranks of one node.
  for (const trace::Op* op : GradReduces(rs.trace))
    EXPECT_EQ(op->group, 0);
}

TEST(DataParallelStep, ChunksCutAtPartitionBoundariesAndMergePerRank) {
  // Direct check of average_tensor's slicing: two gradients of one partition merge.
  const std::vector<FlatRange> grads = {{0, 3}, {3, 3}, {6, 8}};  // partitions of 5
  const std::vector<Chunk> c = ipg_bucket_chunks(grads, 5, 100, true);
  // Slices: rank 0: 3 + 2 merged (5), rank 1: 1 + 4 (5), rank 2: 4 -> 14 in one chunk, copied.
  ASSERT_EQ(c.size(), 1u);
  EXPECT_EQ(c[0].numel, 14);
  EXPECT_TRUE(c[0].copied);
  // allreduce_and_scatter flushes once more than 6 elements are collected: 5 + 5, then 4 alone.
  const std::vector<Chunk> small = ipg_bucket_chunks(grads, 5, 6, true);
  ASSERT_EQ(small.size(), 2u);
  EXPECT_EQ(small[0].numel, 10);
  EXPECT_EQ(small[1].numel, 4);
  EXPECT_FALSE(small[1].copied);
  // Reaching the bucket size is not passing it: at 5, the slices 5 and 5 go together.
  const std::vector<Chunk> at = ipg_bucket_chunks(grads, 5, 5, true);
  ASSERT_EQ(at.size(), 2u);
  EXPECT_EQ(at[0].numel, 10);
  // Two gradients of one partition are one slice: nothing to flatten.
  const std::vector<FlatRange> one_rank = {{0, 3}, {3, 2}};
  const std::vector<Chunk> merged = ipg_bucket_chunks(one_rank, 5, 100, true);
  ASSERT_EQ(merged.size(), 1u);
  EXPECT_FALSE(merged[0].copied);
}

TEST(DataParallelStep, Stage1ReducesOnlyAtTheAccumulationBoundary) {
  const std::string top = ", gradient_accumulation_steps: 2, train_batch_size: 8";
  // Stage 2 reduces in both micro-batches' backward; stage 1 (hooks from overlap_comm) only in
  // the second's.
  const Simulated s2 = Simulate(
      MakeRun(TwoLayers(), 4, "stage: 2, reduce_bucket_size: 15, overlap_comm: true", top));
  const Simulated s1 = Simulate(
      MakeRun(TwoLayers(), 4, "stage: 1, reduce_bucket_size: 15, overlap_comm: true", top));
  std::vector<std::int32_t> mb2, mb1;
  for (const trace::Op* op : GradReduces(s2.trace))
    mb2.push_back(op->micro_batch);
  for (const trace::Op* op : GradReduces(s1.trace))
    mb1.push_back(op->micro_batch);
  EXPECT_EQ(mb2, (std::vector<std::int32_t>{0, 0, 0, 1, 1, 1}));
  EXPECT_EQ(mb1, (std::vector<std::int32_t>{1, 1, 1}));
  // Stage 1 without overlap_comm has no hooks: reduce_gradients walks the flat buffer's order
  // after backward. a.weight (24) is alone in its bucket (slices 10 + 10 flushed past 15, then 4);
  // then [b.weight, b.bias]: slices 6 (rank 2) and 6 + 2 (rank 3) in one all-reduce.
  const Simulated s1n = Simulate(MakeRun(TwoLayers(), 4, "stage: 1, reduce_bucket_size: 15", top));
  EXPECT_EQ(BytesOf(GradReduces(s1n.trace)), (std::vector<std::int64_t>{80, 16, 56}));
  for (const trace::Op* op : GradReduces(s1n.trace))
    EXPECT_EQ(op->micro_batch, 1);
}

TEST(DataParallelStep, OverlapCommHidesReductionsBehindBackward) {
  // Four fp32 layers of 1000 elements, 1 us of forward each (2 us of backward); every gradient
  // fills a bucket, reduced when the next one arrives.
  const std::string zero = "stage: 2, reduce_bucket_size: 1000, allgather_bucket_size: 1000";
  const Simulated off = Simulate(MakeRun(Chain(4, 1000, 1'000'000), 4, zero));
  const Simulated on =
      Simulate(MakeRun(Chain(4, 1000, 1'000'000), 4, zero + ", overlap_comm: true"));
  const StepReport& a = off.result.ranks.front().steps.front();
  const StepReport& b = on.result.ranks.front().steps.front();
  // Without overlap every collective holds the compute stream: exposure is their whole time.
  TimeNs busy = 0;
  for (const TransferTotals& t : off.result.ranks.front().transfers)
    busy += t.busy_ns;
  EXPECT_EQ(a.exposed_comm_ns, busy);
  for (const trace::Op* op : GradReduces(off.trace))
    EXPECT_EQ(op->stream, StreamKind::kCompute);
  // With it, the reductions run on their own stream during the next layers' backward.
  for (const trace::Op* op : GradReduces(on.trace))
    EXPECT_EQ(op->stream, StreamKind::kReduceScatter);
  EXPECT_LT(b.exposed_comm_ns, a.exposed_comm_ns);
  EXPECT_LT(b.time_ns(), a.time_ns());
  // The first bucket is issued when the second gradient arrives, after l2's backward, and runs
  // while l1 computes.
  const std::vector<const trace::Op*> reduces = GradReduces(on.trace);
  ASSERT_EQ(reduces.size(), 4u);
  const auto backward = OpsOf(on.trace, OpKind::kBackward);
  EXPECT_LT(reduces[0]->start, backward.back()->end);
}

// Ranks whose collectives cannot progress while they compute take turns even with overlap_comm.
TEST(DataParallelStep, WhereCommunicationCannotOverlapComputeReductionsHoldTheComputeStream) {
  const std::string zero =
      "stage: 2, reduce_bucket_size: 1000, allgather_bucket_size: 1000, overlap_comm: true";
  RunSpec run = MakeRun(Chain(4, 1000, 1'000'000), 4, zero);
  const Simulated beside = Simulate(run);
  run.cluster.comm_overlaps_compute = false;
  const Simulated turns = Simulate(run);
  ASSERT_EQ(GradReduces(turns.trace).size(), 4u);
  for (const trace::Op* op : GradReduces(turns.trace))
    EXPECT_EQ(op->stream, StreamKind::kCompute);
  TimeNs busy = 0;
  for (const TransferTotals& t : turns.result.ranks.front().transfers)
    busy += t.busy_ns;
  EXPECT_EQ(turns.result.ranks.front().steps.front().exposed_comm_ns, busy);
  EXPECT_GT(turns.result.ranks.front().steps.front().time_ns(),
            beside.result.ranks.front().steps.front().time_ns());
}

TEST(DataParallelStep, UpdatedParametersAreGatheredWhole) {
  // all_gather_into_tensor: the padded flat buffer (40 x 4 bytes) in one all-gather after the step,
  // whatever allgather_bucket_size says.
  for (const char* size : {"16", "1000"}) {
    const Simulated s =
        Simulate(MakeRun(TwoLayers(), 4, std::string("stage: 2, allgather_bucket_size: ") + size));
    EXPECT_EQ(BytesOf(OpsOf(s.trace, OpKind::kAllGather)), (std::vector<std::int64_t>{160}))
        << size;
    const auto steps = OpsOf(s.trace, OpKind::kOptimizerStep);
    ASSERT_EQ(steps.size(), 1u);
    EXPECT_GE(OpsOf(s.trace, OpKind::kAllGather).front()->start, steps.front()->end);
  }
  // Without all_gather_into_tensor the partition (10) goes in shards: 40 // 16 = 2 shards of
  // 10 // 2 = 5 rounded down to the alignment (4), the last taking the rest (6).
  EXPECT_EQ(allgather_shards(10, 4, 16), (std::vector<std::int64_t>{4, 6}));
  EXPECT_EQ(allgather_shards(10, 4, 1000), (std::vector<std::int64_t>{10}));
  EXPECT_TRUE(allgather_shards(10, 1, 16).empty());
}

TEST(DataParallelStep, Stage0AllReducesEveryGradientAfterBackward) {
  // fp32 without ZeRO: no wrapper; buffered_allreduce_fallback flattens all 38 gradients into one
  // all-reduce after the boundary's backward, on the compute stream; no all-gather.
  const Simulated s = Simulate(MakeRun(TwoLayers(), 4, "stage: 0"));
  const auto reduces = GradReduces(s.trace);
  ASSERT_EQ(reduces.size(), 1u);
  EXPECT_EQ(reduces[0]->bytes, 152);
  EXPECT_EQ(reduces[0]->stream, StreamKind::kCompute);
  EXPECT_GE(reduces[0]->start, OpsOf(s.trace, OpKind::kBackward).back()->end);
  EXPECT_TRUE(OpsOf(s.trace, OpKind::kAllGather).empty());
  EXPECT_FALSE(s.result.estimate.has_value());
  const MemorySnapshot& peak = s.result.ranks.front().peak;
  EXPECT_EQ(At(peak, MemoryCategory::kOptimizerStates), 38 * 8);
}

TEST(DataParallelStep, SameInputSameTrace) {
  const RunSpec run = MakeRun(Chain(4, 1000, 1'000'000), 4,
                              "stage: 2, reduce_bucket_size: 1500, overlap_comm: true");
  const Simulated a = Simulate(run);
  const Simulated b = Simulate(run);
  EXPECT_TRUE(a.trace == b.trace);
  EXPECT_EQ(result_to_json(a.result), result_to_json(b.result));
  // Every rank simulated alone agrees with the class for rank 0.
  SimOptions all;
  all.all_ranks = true;
  const Simulated each = Simulate(run, all);
  ASSERT_EQ(each.result.ranks.size(), 4u);
  EXPECT_EQ(each.result.ranks.front().steps.front().time_ns(),
            a.result.ranks.front().steps.front().time_ns());
}

// A device category's bytes at `time` (the last sample at or before it).
std::int64_t CategoryAt(const trace::Trace& t, MemoryCategory c, TimeNs time) {
  std::int64_t bytes = 0;
  for (const trace::MemorySample& m : t.memory) {
    if (m.time > time) break;
    if (m.category == c) bytes = m.bytes;
  }
  return bytes;
}

const trace::Op* FirstForwardOf(const trace::Trace& t, std::int32_t micro_batch) {
  for (const trace::Op& op : t.ops) {
    if (op.kind == OpKind::kForward && op.micro_batch == micro_batch) return &op;
  }
  return nullptr;
}

TEST(DataParallelStep, Stage1KeepsWholeGradientsBetweenMicroBatchesAndStage2ItsPartition) {
  const std::string top = ", gradient_accumulation_steps: 2, train_batch_size: 8";
  const std::string zero = ", reduce_bucket_size: 1000";
  // Stage 1 reduces nothing before the boundary: the second micro-batch's forward starts with all
  // 38 fp32 gradients (152 bytes) and the first backward's ipg buffer (1000 x 4) still held.
  const Simulated s1 = Simulate(MakeRun(TwoLayers(), 4, "stage: 1" + zero, top));
  const trace::Op* f1 = FirstForwardOf(s1.trace, 1);
  ASSERT_NE(f1, nullptr);
  EXPECT_EQ(CategoryAt(s1.trace, MemoryCategory::kGradBuckets, f1->start), 152 + 4000);
  EXPECT_EQ(CategoryAt(s1.trace, MemoryCategory::kGradPartitions, f1->start), 0);
  // Stage 2 reduced them in the first backward and kept only averaged_gradients: every parameter
  // touching the simulated rank's partition, whole. The class is the rank holding the most:
  // rank 2, whose partition [20, 30) is touched by a.weight and b.weight (36 elements).
  const Simulated s2 = Simulate(MakeRun(TwoLayers(), 4, "stage: 2" + zero, top));
  const trace::Op* f2 = FirstForwardOf(s2.trace, 1);
  ASSERT_NE(f2, nullptr);
  EXPECT_EQ(CategoryAt(s2.trace, MemoryCategory::kGradBuckets, f2->start), 0);
  EXPECT_EQ(CategoryAt(s2.trace, MemoryCategory::kGradPartitions, f2->start), 36 * 4);
}

TEST(DataParallelStep, TheRankClassIsTheRankHoldingTheMostGradients) {
  // At the step each rank holds averaged_gradients (the parameters touching its partition, whole)
  // and the fp32 partition (10 x 4): rank 0 and 1 touch a.weight (24), rank 2 a.weight and
  // b.weight (36), rank 3 b.weight and b.bias (14).
  const RunSpec run = MakeRun(TwoLayers(), 4, "stage: 2, reduce_bucket_size: 100");
  const auto most = [](const trace::Trace& t, std::int32_t rank) {
    std::int64_t out = 0;
    for (const trace::MemorySample& m : t.memory) {
      if (m.rank == rank && m.category == MemoryCategory::kGradPartitions)
        out = std::max(out, m.bytes);
    }
    return out;
  };
  SimOptions all;
  all.all_ranks = true;
  const Simulated each = Simulate(run, all);
  ASSERT_EQ(each.result.ranks.size(), 4u);
  std::vector<std::int64_t> per_rank;
  for (const RankReport& r : each.result.ranks)
    per_rank.push_back(most(each.trace, r.trace_rank));
  EXPECT_EQ(per_rank, (std::vector<std::int64_t>{96 + 40, 96 + 40, 144 + 40, 56 + 40}));
  const Simulated one = Simulate(run);
  EXPECT_EQ(most(one.trace, one.result.ranks.front().trace_rank), 144 + 40);
  EXPECT_EQ(one.result.ranks.front().ranks, (std::vector<std::int64_t>{0, 1, 2, 3}));
}

TEST(DataParallelStep, CheckpointedLayersRecomputeInBackward) {
  // Four layers with 1000 bytes of activations each, every layer its own segment.
  ModuleTree tree = Chain(4, 1000, 1'000'000);
  for (ModuleId m = 1; m <= 4; ++m)
    tree.set_cost(m, {1'000'000, 1000, 100});
  const Simulated plain = Simulate(MakeRun(tree, 4, "stage: 2"));
  const Simulated ckpt = Simulate(MakeRun(tree, 4, "stage: 2", "", ", checkpoint_interval: 1"));
  EXPECT_TRUE(OpsOf(plain.trace, OpKind::kRecompute).empty());
  EXPECT_EQ(OpsOf(ckpt.trace, OpKind::kRecompute).size(), 4u);
  // Without: all four layers' activations are held at the end of forward. With: each segment
  // keeps its input only, and a segment's activations live while it recomputes and runs backward.
  const auto most = [](const trace::Trace& t, MemoryCategory c) {
    std::int64_t out = 0;
    for (const trace::MemorySample& m : t.memory) {
      if (m.category == c) out = std::max(out, m.bytes);
    }
    return out;
  };
  EXPECT_EQ(most(plain.trace, MemoryCategory::kActivations), 4000);
  EXPECT_LT(most(ckpt.trace, MemoryCategory::kActivations), 4000);
  EXPECT_GT(most(ckpt.trace, MemoryCategory::kRecompute), 0);
}

TEST(DataParallelStep, WrapperAsDeepSpeedPicksIt) {
  const ModuleTree bf16 = TwoLayers(DType::kBFloat16);
  const std::string fp32_accum = ", data_types: {grad_accum_dtype: fp32}";
  const auto wrapper = [](const RunSpec& run) {
    return choose_precision(run, /*pipeline=*/false).wrapper;
  };
  // Without ZeRO bf16 accumulates in fp32 by default: BF16_Optimizer.
  EXPECT_EQ(wrapper(MakeRun(bf16, 4, "stage: 0")), Wrapper::kBf16);
  // With ZeRO the accumulation dtype defaults to the model's: DeepSpeedZeroOptimizer.
  EXPECT_EQ(wrapper(MakeRun(bf16, 4, "stage: 1")), Wrapper::kZero);
  // fp32 accumulation hands stage 1 to BF16_Optimizer, but not stage 2, nor an offloaded stage 1.
  EXPECT_EQ(wrapper(MakeRun(bf16, 4, "stage: 1", fp32_accum)), Wrapper::kBf16);
  EXPECT_EQ(wrapper(MakeRun(bf16, 4, "stage: 2", fp32_accum)), Wrapper::kZero);
  EXPECT_EQ(wrapper(MakeRun(bf16, 4, "stage: 1, offload_optimizer: {device: cpu}", fp32_accum)),
            Wrapper::kZero);
  EXPECT_EQ(wrapper(MakeRun(TwoLayers(DType::kFloat16), 4, "stage: 0")), Wrapper::kFp16);
  EXPECT_EQ(wrapper(MakeRun(TwoLayers(), 4, "stage: 0")), Wrapper::kNone);
}

TEST(DataParallelStep, SimulateDispatchesStagesBelow3WithoutAPipeline) {
  const RunSpec run = MakeRun(TwoLayers(), 4, "stage: 1");
  trace::Trace t;
  const SimulationResult r = simulate(run, SimOptions{}, &t);
  EXPECT_EQ(r.ranks.size(), 1u);
  EXPECT_EQ(r.reported_steps, (std::vector<std::int64_t>{1}));
  EXPECT_GT(r.step_time_ns, 0);
}

TEST(DataParallelStep, BadCombinationsNameTheirKey) {
  const UserError odd =
      ErrorOf([] { Simulate(MakeRun(TwoLayers(), 4, "stage: 2, allgather_bucket_size: 15")); });
  EXPECT_EQ(odd.where().key_path, "zero_optimization.allgather_bucket_size");
  EXPECT_NE(std::string(odd.what()).find("multiple of"), std::string::npos);
  // bf16 accumulating in bf16 without ZeRO and without a pipeline: DeepSpeed refuses.
  const UserError bf16 = ErrorOf([] {
    Simulate(MakeRun(TwoLayers(DType::kBFloat16), 4, "stage: 0",
                     ", data_types: {grad_accum_dtype: bf16}"));
  });
  EXPECT_EQ(bf16.where().key_path, "data_types.grad_accum_dtype");
  const UserError reduce = ErrorOf([] {
    Simulate(MakeRun(TwoLayers(), 4, "stage: 2, use_multi_rank_bucket_allreduce: false"));
  });
  EXPECT_EQ(reduce.where().key_path, "zero_optimization.use_multi_rank_bucket_allreduce");
}

TEST(DataParallelStep, OffloadedOptimizerStepsOnTheHost) {
  const Simulated s =
      Simulate(MakeRun(TwoLayers(), 4, "stage: 2, offload_optimizer: {device: cpu}"));
  const RankReport& r = s.result.ranks.front();
  // Host: the fp32 partition (40), Adam states (80) and the fp32 gradient partition (40).
  EXPECT_EQ(r.peak_host, 160);
  EXPECT_EQ(At(r.peak, MemoryCategory::kMasterWeights), 0);
  bool host_step = false;
  for (const trace::Op* op : OpsOf(s.trace, OpKind::kOptimizerStep))
    host_step = host_step || op->stream == StreamKind::kHost;
  EXPECT_TRUE(host_step);
  // Rank 0's slice of a.weight goes to the host as fp32: 10 elements, 40 bytes.
  EXPECT_EQ(r.transfers[static_cast<std::size_t>(TransferKind::kDeviceToHost)].bytes, 40);
}

// ---- The trace's allocation names ------------------------------------------------------------

// The blocks on trace rank 0 live at `time` (start <= time < end), by name with their bytes. At a
// peak this is what made it: a backward frees its layer's activations before its gradient is
// allocated, at the same instant.
std::map<std::string, std::int64_t> LiveAt(const trace::Trace& t, TimeNs time) {
  std::map<std::string, std::int64_t> out;
  for (const trace::Allocation& a : t.allocations) {
    if (a.rank == 0 && a.start <= time && time < a.end)
      out[a.name >= 0 ? t.string(a.name) : "(unnamed)"] += a.bytes;
  }
  return out;
}

// Every device block is named as the ZeRO-3 step names its own (the viewer lists the largest live
// tensors by name), under each wrapper and reduction path, and each path by its own name.
TEST(DataParallelStep, EveryAllocationIsNamed) {
  ModuleTree tree = Chain(4, 1000, 1'000'000);
  for (ModuleId m = 1; m <= 4; ++m)
    tree.set_cost(m, {1'000'000, 1000, 100});
  ModuleTree fp16 = Chain(4, 1000, 1'000'000, DType::kFloat16);
  ModuleTree bf16 = Chain(4, 1000, 1'000'000, DType::kBFloat16);
  const std::string accumulate = ", gradient_accumulation_steps: 2, train_batch_size: 8";
  const std::string checkpoint = ", checkpoint_interval: 1";
  struct Case {
    const ModuleTree* tree;
    std::string zero, top, training;
  };
  const std::vector<Case> cases = {
      {&tree, "stage: 2, reduce_bucket_size: 1500, overlap_comm: true", accumulate, checkpoint},
      {&tree, "stage: 2, contiguous_gradients: false, reduce_bucket_size: 2500", accumulate, ""},
      {&tree, "stage: 1, reduce_bucket_size: 1500", accumulate, checkpoint},
      {&tree, "stage: 2, offload_optimizer: {device: cpu}", accumulate, ""},
      {&tree, "stage: 0", accumulate, ""},
      {&fp16, "stage: 0", "", ""},
      {&bf16, "stage: 0", "", ""},
      {&bf16, "stage: 2, reduce_bucket_size: 1500", "", ""},
  };
  std::set<std::string> seen;
  for (const Case& c : cases) {
    SCOPED_TRACE(c.zero + c.top + c.training);
    RunSpec run = MakeRun(*c.tree, 4, c.zero, c.top, c.training);
    run.cluster.peak_flops["fp16"] = 1e12;
    for (std::int64_t steps : {0, 2}) {
      SimOptions options;
      options.steps = steps;
      const Simulated s = Simulate(run, options);
      const std::set<std::string> names = ExpectEveryAllocationNamed(s.trace);
      seen.insert(names.begin(), names.end());
    }
  }
  for (const char* name :
       {"parameters", "master weights", "optimizer states", "l0", "l3.weight", "checkpoint input",
        "ipg buffer 0", "ipg buffer 1", "bucket 0", "gradient partition", "flat gradient partition",
        "fp32 gradient partition", "fp32 gradients", "fp32 gradients (flat)",
        "offload gradient buffer", "fp32 partition"})
    EXPECT_EQ(seen.count(name), 1u) << name;
}

// ZeRO-2 with every layer's activations kept: the peak is the last layer's gradient at the start
// of backward, and each block then is named by what holds it.
TEST(DataParallelStep, TheBlocksAtThePeakAreNamedByParameterModuleAndBuffer) {
  ModuleTree tree = Chain(4, 1000, 1'000'000);
  for (ModuleId m = 1; m <= 4; ++m)
    tree.set_cost(m, {1'000'000, 1000, 100});
  const Simulated s = Simulate(MakeRun(tree, 4, "stage: 2, reduce_bucket_size: 1500"));
  const RankReport& r = s.result.ranks.front();
  const std::map<std::string, std::int64_t> peak = LiveAt(s.trace, r.peak.time);
  // The flat fp32 buffer of 4000 elements, this rank's partition of 1000 (master and Adam's two
  // moments), the three layers' activations backward has not reached, the contiguous bucket
  // buffer and l3's gradient, made before it is copied into that buffer.
  EXPECT_EQ(peak, (std::map<std::string, std::int64_t>{{"parameters", 4000 * 4},
                                                       {"master weights", 1000 * 4},
                                                       {"optimizer states", 1000 * 8},
                                                       {"l0", 1000},
                                                       {"l1", 1000},
                                                       {"l2", 1000},
                                                       {"ipg buffer 0", 1500 * 4},
                                                       {"l3.weight", 1000 * 4}}));
  std::int64_t total = 0;
  for (const auto& [name, bytes] : peak)
    total += bytes;
  EXPECT_EQ(total, r.peak.allocated);
}

}  // namespace
}  // namespace zp::sim
