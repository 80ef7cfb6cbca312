#include "sim/step/pipeline_step.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "../sim_test_util.h"
#include "core/checkpoint/checkpointing.h"
#include "core/model/model_config.h"
#include "core/model/presets.h"
#include "core/pipe/layers.h"
#include "core/pipe/schedule.h"

namespace zp::sim {
namespace {

using testing::ExpectEveryAllocationNamed;

const std::filesystem::path kSource = ZEROPLAN_SOURCE_DIR;

// Round numbers: 1000 FLOP/ns, 1000 HBM bytes/ns, no fixed cost per kernel; inside a node 1 byte/ns
// after 1000 ns of latency, between nodes 1 byte/ns after 2000 ns.
ClusterSpec TestCluster(std::int64_t nodes, std::int64_t gpus_per_node) {
  ClusterSpec c;
  c.name = "test";
  c.nodes = nodes;
  c.gpus_per_node = gpus_per_node;
  c.gpu_memory = 1'000'000'000'000;
  c.peak_flops = {{"fp32", 1e12}, {"bf16", 1e12}, {"fp16", 1e12}};
  c.hbm_bandwidth = 1e12;
  c.intra_node = {1e9, 1000};
  c.inter_node = {1e9, 2000};
  c.pcie_bandwidth = 1e9;
  c.efficiency = {1, 1, 1};
  c.kernel_launch_ns = 0;
  c.autograd_node_ns = 0;
  return c;
}

// `n` blocks l0..l{n-1} called one after the other by the root, each with `params` fp32
// parameters (none for 0) and the same cost.
ModuleTree Chain(int n, std::int64_t params, ModuleCost cost) {
  ModuleTree t("chain");
  t.set_shape({1, 4, DType::kFloat32});
  const ModuleId root = t.add_module(kNoModule, "", "Chain");
  std::vector<ModuleId> blocks;
  for (int i = 0; i < n; ++i) {
    const ModuleId m = t.add_module(root, "l" + std::to_string(i), "Block");
    if (params > 0) t.add_parameter(m, "weight", {params}, DType::kFloat32);
    t.set_cost(m, cost);
    blocks.push_back(m);
  }
  const std::int32_t call = t.add_call(root, kNoCall, false);
  for (int i = 0; i < n; ++i)
    t.add_call(blocks[static_cast<size_t>(i)], call, i > 0);
  return t;
}

RunSpec MakeRun(ModuleTree tree, ParallelDegrees parallel, std::int64_t micro_batches,
                ClusterSpec cluster) {
  RunSpec r;
  r.name = "test";
  r.tree = std::move(tree);
  r.cluster = std::move(cluster);
  r.training.dtype = DType::kFloat32;
  r.parallel = parallel;
  r.deepspeed.batch.gradient_accumulation_steps = micro_batches;
  r.deepspeed.pipeline.partition = "uniform";
  return r;
}

SimOptions Exact() {
  SimOptions o;
  o.model_allocator = false;  // block sizes as asked, not rounded to 512 bytes
  return o;
}

std::int64_t Bytes(const MemorySnapshot& s, MemoryCategory c) {
  return s.bytes[static_cast<size_t>(c)];
}
const TransferTotals& Transfers(const RankReport& r, TransferKind k) {
  return r.transfers[static_cast<size_t>(k)];
}

// The largest total a category reached on a trace rank.
std::int64_t MaxOf(const trace::Trace& t, std::int32_t rank, MemoryCategory c) {
  std::int64_t most = 0;
  for (const trace::MemorySample& s : t.memory) {
    if (s.rank == rank && s.category == c) most = std::max(most, s.bytes);
  }
  return most;
}

UserError ErrorOf(const RunSpec& run) {
  try {
    simulate_pipeline(run, Exact(), nullptr);
  } catch (const UserError& e) {
    return e;
  }
  ADD_FAILURE() << "simulated";
  return UserError(ErrorKind::kValue, {}, "");
}

// Two stages of one block each: weight [1000] fp32, 10^6 FLOPs, 10000 bytes kept for backward,
// 2000 bytes of output, over two GPUs of one node; two micro-batches.
RunSpec HandWorked() {
  return MakeRun(Chain(2, 1000, {1'000'000, 10'000, 2'000}), {1, 2, 1}, 2, TestCluster(1, 2));
}

// Worked by hand from the rules (docs/pipeline-simulation.md):
//  - forward 10^6 / 1000 = 1000 ns (bytes 4000 + 10000 + 2000 take 16 ns), backward 2000 ns;
//  - an activation or gradient of 2000 bytes: 1000 + 2000 = 3000 ns, both sides busy;
//  - the optimizer (no wrapper in fp32): 1000 x (4 + 2 x 4 + 8 x 2) = 28000 bytes, 28 ns;
//  - the loss broadcast over the pipe: 1000 ns of latency + 8 bytes = 1008 ns.
// Streams (TrainSchedule, m = 2, p = 2) and times:
//  stage 0: FW0 0-1000 | SA0 1000-4000 | FW1 4000-5000 | RG0 waits to 7000, 7000-10000,
//           SA1 10000-13000, BW0 13000-15000 | - | RG1 waits 15000-16000, 16000-19000,
//           BW1 19000-21000, OPT 21000-21028; broadcast 21028-22036.
//  stage 1: RA0 waits 0-1000, 1000-4000, FW0 4000-5000 | BW0 5000-7000 | SG0 7000-10000,
//           RA1 10000-13000, FW1 13000-14000 | BW1 14000-16000 | SG1 16000-19000, OPT
//           19000-19028; waits for the broadcast until 21028, 21028-22036.
TEST(PipelineStep, HandWorkedTwoStages) {
  trace::Trace trace;
  const SimulationResult r = simulate_pipeline(HandWorked(), Exact(), &trace);
  ASSERT_EQ(r.ranks.size(), 2u);
  EXPECT_EQ(r.step_time_ns, 22036);
  EXPECT_TRUE(r.steady_state);
  for (const RankReport& rk : r.ranks) {
    ASSERT_EQ(rk.steps.size(), 1u);
    const StepReport& s = rk.steps[0];
    EXPECT_EQ(s.start_ns, 0);
    EXPECT_EQ(s.end_ns, 22036);
    EXPECT_EQ(s.compute_ns, 2 * 1000 + 2 * 2000 + 28);
    EXPECT_EQ(s.exposed_comm_ns, 4 * 3000 + 1008);
    EXPECT_EQ(rk.bubble_ns, 3000);  // stage 0: 2000 + 1000 waiting for grads; stage 1: 1000 + 2000
    EXPECT_EQ(Transfers(rk, TransferKind::kSendRecv).count, 4);
    EXPECT_EQ(Transfers(rk, TransferKind::kSendRecv).bytes, 8000);
    EXPECT_EQ(Transfers(rk, TransferKind::kSendRecv).busy_ns, 12000);
    EXPECT_EQ(Transfers(rk, TransferKind::kBroadcast).count, 1);
    EXPECT_EQ(Transfers(rk, TransferKind::kBroadcast).bytes, 8);
    EXPECT_EQ(Transfers(rk, TransferKind::kBroadcast).busy_ns, 1008);
    EXPECT_EQ(Transfers(rk, TransferKind::kAllReduce).count, 0);  // one pipeline
    EXPECT_DOUBLE_EQ(rk.model_flops_per_step, 2 * 3e6);
    EXPECT_EQ(Bytes(rk.peak, MemoryCategory::kParamPartitions), 4000);
    EXPECT_EQ(Bytes(rk.peak, MemoryCategory::kOptimizerStates), 8000);  // Adam: 2 fp32 moments
    EXPECT_EQ(Bytes(rk.peak, MemoryCategory::kMasterWeights), 0);       // fp32: no master copy
    EXPECT_EQ(Bytes(rk.peak, MemoryCategory::kGradBuckets), 4000);
  }
  // Stage 0 peaks when BW0 creates the gradient: both micro-batches' activations and outputs,
  // the two loaded id buffers (32 bytes each) and the gradient receive buffer (2000).
  const RankReport& s0 = r.ranks[0];
  EXPECT_EQ(s0.label, "stage 0 (rank 0)");
  EXPECT_EQ(s0.peak.allocated, 42064);
  EXPECT_EQ(s0.peak.time, 15000);
  EXPECT_EQ(Bytes(s0.peak, MemoryCategory::kActivations), 20000);
  EXPECT_EQ(Bytes(s0.peak, MemoryCategory::kPipeBuffers), 2 * 32 + 2000 + 2 * 2000);
  EXPECT_EQ(s0.peak.running, 2 + 0);  // backward of layer 0: L + 0
  EXPECT_EQ(s0.peak_running, "backward of l0 (micro-batch 0)");
  // Stage 1 peaks at the end of FW1, when its new output sits beside the two outputs the
  // buffers hold (the last stage keeps its outputs until the buffer is reused), and each kept
  // output's graph still holds its micro-batch's input and that input's gradient: receive buffer
  // 2000, labels 2 x 32, outputs 3 x 2000, input 2000, the two kept inputs and gradients
  // 2 x (2000 + 2000).
  const RankReport& s1 = r.ranks[1];
  EXPECT_EQ(s1.peak.allocated, 44064);
  EXPECT_EQ(s1.peak.time, 14000);
  EXPECT_EQ(Bytes(s1.peak, MemoryCategory::kActivations), 10000);
  EXPECT_EQ(Bytes(s1.peak, MemoryCategory::kPipeBuffers),
            2000 + 64 + 3 * 2000 + 2000 + 2 * (2000 + 2000));
  EXPECT_EQ(s1.peak_running, "forward of l1 (micro-batch 1)");
  EXPECT_DOUBLE_EQ(r.mfu, 12e6 / (2 * 22036e-9 * 1e12));
  // The trace: stage 0's second backward and stage 1's wait for the broadcast.
  bool found = false;
  for (const trace::Op& op : trace.ops) {
    if (op.rank == 0 && op.kind == trace::OpKind::kBackward && op.micro_batch == 1) {
      EXPECT_EQ(op.start, 19000);
      EXPECT_EQ(op.end, 21000);
      found = true;
    }
    if (op.rank == 1 && op.kind == trace::OpKind::kBroadcast) {
      EXPECT_EQ(op.start, 21028);
    }
  }
  EXPECT_TRUE(found);
  ASSERT_EQ(trace.ranks.size(), 2u);
  EXPECT_EQ(trace.ranks[1].pipeline_stage, 1);
}

// The last stage keeps its outputs (the logits) until each buffer's next forward, and with them
// their autograd graph, which holds the micro-batch's input and the input's gradient after
// SendGrad: a step ends with both buffers' outputs, inputs and input gradients allocated (the
// receive buffer and the labels beside them). Stage 0 frees its outputs in backward.
TEST(PipelineStep, TheLastStagesOutputsKeepTheirInputsAndGradients) {
  trace::Trace trace;
  SimOptions options = Exact();
  options.steps = 2;
  simulate_pipeline(HandWorked(), options, &trace);
  const auto last_value = [&](std::int32_t rank, MemoryCategory c) {
    std::int64_t value = -1;
    trace::TimeNs at = -1;
    for (const trace::MemorySample& m : trace.memory) {
      if (m.rank == rank && m.category == c && m.time >= at) {
        at = m.time;
        value = m.bytes;
      }
    }
    return value;
  };
  EXPECT_EQ(last_value(1, MemoryCategory::kPipeBuffers),
            2000 + 2 * 32 + 2 * 2000 + 2 * (2000 + 2000));
  // Stage 0: the gradient receive buffer and the two loaded id buffers.
  EXPECT_EQ(last_value(0, MemoryCategory::kPipeBuffers), 2000 + 2 * 32);
}

// With every stage alike and communication free, the idle share of device time is
// (p - 1) / (m + p - 1), and the step is the schedule replay's makespan.
TEST(PipelineStep, BubbleEqualsTheClosedForm) {
  ClusterSpec free_links = TestCluster(1, 8);
  free_links.intra_node = {1e18, 0};
  for (const auto& [p, m] : std::vector<std::pair<int, int>>{
           {2, 1}, {2, 4}, {3, 5}, {4, 4}, {4, 8}, {8, 3}, {8, 16}, {5, 12}}) {
    SCOPED_TRACE(::testing::Message() << "p " << p << " m " << m);
    // Two parameterless blocks per stage, nothing crossing the stage boundaries.
    const RunSpec run = MakeRun(Chain(2 * p, 0, {1'000'000, 0, 0}), {1, p, 1}, m, free_links);
    const SimulationResult r = simulate_pipeline(run, Exact(), nullptr);
    ASSERT_EQ(r.ranks.size(), static_cast<size_t>(p));
    std::int64_t idle = 0;
    for (const RankReport& rk : r.ranks) {
      EXPECT_EQ(rk.steps[0].time_ns(), r.step_time_ns);
      EXPECT_EQ(rk.steps[0].compute_ns, m * (2000 + 4000));
      idle += rk.bubble_ns;
    }
    const pipe::ScheduleSpec spec{pipe::ScheduleKind::kTrain, m, p, 1};
    const pipe::Ratio closed = pipe::closed_form_bubble(spec).over_total;
    EXPECT_EQ(idle * closed.denominator, closed.numerator * p * r.step_time_ns);
    EXPECT_EQ(r.step_time_ns, pipe::replay_bubble(spec, {2000, 4000}).makespan);
  }
}

// 1F1B: stage s keeps min(p - s, m) micro-batches' activations at once, and that is its peak
// when activations dominate.
TEST(PipelineStep, ActivationsAtThePeakArePeakInFlightMicroBatches) {
  const int p = 4, m = 8;
  const std::int64_t kept = 1'000'000;
  const RunSpec run =
      MakeRun(Chain(2 * p, 100, {1000, kept, 100}), {1, p, 1}, m, TestCluster(1, 4));
  const SimulationResult r = simulate_pipeline(run, Exact(), nullptr);
  const pipe::ScheduleSpec spec{pipe::ScheduleKind::kTrain, m, p, 1};
  for (int s = 0; s < p; ++s) {
    EXPECT_EQ(Bytes(r.ranks[static_cast<size_t>(s)].peak, MemoryCategory::kActivations),
              pipe::peak_in_flight(spec, s) * 2 * kept)
        << "stage " << s;
  }
  EXPECT_EQ(pipe::peak_in_flight(spec, 0), 4);
}

// tiny-gpt2 (wte, wpe, drop, h.0 | h.1, ln_f, lm_head) over two stages.
RunSpec TinyGpt2(int micro_batches) {
  RunSpec run = MakeRun(build_model(*find_preset("tiny-gpt2"), BatchShape{2, 8, DType::kFloat32}),
                        {1, 2, 1}, micro_batches, TestCluster(1, 2));
  return run;
}

// The run with its model's transient costs taken out (what calls hold only while their forward or
// backward runs), so that activation memory is what the calls keep.
RunSpec KeptOnly(RunSpec run) {
  for (std::size_t m = 0; m < run.tree.modules().size(); ++m) {
    ModuleCost& c = run.tree.mutable_module(static_cast<ModuleId>(m)).cost;
    c.workspace_bytes = c.backward_workspace_bytes = c.backward_held_bytes = 0;
  }
  return run;
}

// What the core's plan says each stage keeps, for the partition {0, 4, 7}.
std::vector<ckpt::CheckpointPlan> Plans(const RunSpec& run, const pipe::PipelineLayers& layers,
                                        int micro_batches) {
  const ckpt::CheckpointSettings s = ckpt::CheckpointSettings::from(run.deepspeed, 1);
  ckpt::LayerActivity ids;
  ids.output_bytes = run.tree.shape().tokens() * 8;
  ids.output_numel = run.tree.shape().tokens();
  ids.output_floating = false;
  const pipe::ScheduleSpec spec{pipe::ScheduleKind::kTrain, micro_batches, 2, 1};
  return {ckpt::plan_checkpointing(run.tree, layers, 0, 4, ids, pipe::peak_in_flight(spec, 0), s),
          ckpt::plan_checkpointing(run.tree, layers, 4, 7,
                                   ckpt::layer_activity(run.tree, layers.layers[3]),
                                   pipe::peak_in_flight(spec, 1), s)};
}

TEST(PipelineStep, CheckpointingKeepsWhatThePlanSaysAndRecomputes) {
  const int m = 4;
  RunSpec plain = KeptOnly(TinyGpt2(m));
  RunSpec checkpointed = plain;
  checkpointed.deepspeed.pipeline.activation_checkpoint_interval = 1;
  const pipe::PipelineLayers layers = pipe::layers_from_tree(plain.tree);
  ASSERT_EQ(layers.layers.size(), 7u);
  const std::vector<ckpt::CheckpointPlan> off = Plans(plain, layers, m);
  const std::vector<ckpt::CheckpointPlan> on = Plans(checkpointed, layers, m);
  trace::Trace t_off, t_on;
  simulate_pipeline(plain, Exact(), &t_off);
  simulate_pipeline(checkpointed, Exact(), &t_on);
  const pipe::ScheduleSpec spec{pipe::ScheduleKind::kTrain, m, 2, 1};
  for (int s = 0; s < 2; ++s) {
    SCOPED_TRACE(::testing::Message() << "stage " << s);
    std::int64_t held_off = 0, held_on = 0, extra = 0, recompute = 0;
    for (const ckpt::LayerCheckpointCost& c : off[static_cast<size_t>(s)].layers)
      held_off += c.held_bytes;
    for (const ckpt::LayerCheckpointCost& c : on[static_cast<size_t>(s)].layers) {
      held_on += c.held_bytes;
      extra += c.extra_forward_flops;
      recompute = std::max(recompute, c.recompute_bytes);  // one-layer segments
    }
    ASSERT_LT(held_on, held_off);
    const std::int64_t in_flight = pipe::peak_in_flight(spec, s);
    // The last stage also keeps what the loss (the root's call, outside every layer) keeps.
    const std::int64_t loss = s == 1 ? plain.tree.module(0).cost.activation_bytes : 0;
    EXPECT_EQ(MaxOf(t_off, s, MemoryCategory::kActivations), in_flight * (held_off + loss));
    EXPECT_EQ(MaxOf(t_on, s, MemoryCategory::kActivations), in_flight * (held_on + loss));
    EXPECT_EQ(MaxOf(t_off, s, MemoryCategory::kRecompute), 0);
    EXPECT_EQ(MaxOf(t_on, s, MemoryCategory::kRecompute), recompute);
    std::int64_t recompute_flops = 0;
    for (const trace::Op& op : t_on.ops) {
      if (op.rank == s && op.kind == trace::OpKind::kRecompute) recompute_flops += op.flops;
    }
    EXPECT_GT(extra, 0);
    EXPECT_EQ(recompute_flops, m * extra);
  }
}

TEST(PipelineStep, CpuCheckpointingCopiesSegmentInputsToTheHostAndBack) {
  const int m = 4;
  RunSpec run = TinyGpt2(m);
  run.deepspeed.pipeline.activation_checkpoint_interval = 1;
  run.deepspeed.activation_checkpointing.cpu_checkpointing = true;
  const pipe::PipelineLayers layers = pipe::layers_from_tree(run.tree);
  const std::vector<ckpt::CheckpointPlan> plans = Plans(run, layers, m);
  const SimulationResult r = simulate_pipeline(run, Exact(), nullptr);
  for (int s = 0; s < 2; ++s) {
    std::int64_t to_host = 0, host = 0;
    for (const ckpt::LayerCheckpointCost& c : plans[static_cast<size_t>(s)].layers) {
      to_host += c.to_host_bytes;
      host += c.host_bytes;
    }
    ASSERT_GT(to_host, 0);
    const RankReport& rk = r.ranks[static_cast<size_t>(s)];
    EXPECT_EQ(Transfers(rk, TransferKind::kDeviceToHost).bytes, m * to_host);
    EXPECT_EQ(Transfers(rk, TransferKind::kHostToDevice).bytes, m * to_host);
    EXPECT_GE(rk.peak_host, host);
  }
}

// ZeRO stage 1 keeps the fp32 master weights and Adam's states for this rank's partition of
// the flat buffer, which is padded to a multiple of 2 x dp elements: 1001 -> 1008, 252 per rank.
TEST(PipelineStep, Stage1PartitionsOptimizerStates) {
  RunSpec run = MakeRun(Chain(2, 1001, {1'000'000, 1000, 400}), {4, 2, 1}, 4, TestCluster(1, 8));
  run.deepspeed.zero.reduce_bucket_size = 600;
  RunSpec stage0 = run;
  run.deepspeed.zero.stage = 1;
  const SimulationResult one = simulate_pipeline(run, Exact(), nullptr);
  const SimulationResult zero = simulate_pipeline(stage0, Exact(), nullptr);
  ASSERT_EQ(one.ranks.size(), 2u);
  for (int s = 0; s < 2; ++s) {
    SCOPED_TRACE(::testing::Message() << "stage " << s);
    const RankReport& a = one.ranks[static_cast<size_t>(s)];
    const RankReport& b = zero.ranks[static_cast<size_t>(s)];
    EXPECT_EQ(a.label, "stage " + std::to_string(s) + " (4 ranks)");
    EXPECT_EQ(Bytes(a.peak, MemoryCategory::kParamPartitions), 1008 * 4);
    EXPECT_EQ(Bytes(a.peak, MemoryCategory::kMasterWeights), 252 * 4);
    EXPECT_EQ(Bytes(a.peak, MemoryCategory::kOptimizerStates), 252 * 8);
    EXPECT_EQ(Bytes(b.peak, MemoryCategory::kParamPartitions), 1001 * 4);
    EXPECT_EQ(Bytes(b.peak, MemoryCategory::kMasterWeights), 0);
    EXPECT_EQ(Bytes(b.peak, MemoryCategory::kOptimizerStates), 1001 * 8);
    // Stage 1: the one gradient is larger than the 600-element bucket, so it is reduced alone;
    // cut at the partitions (252 each), its slices are all-reduced once more than 600 elements
    // are collected: 756, then 245. Then the gradient norm (4 bytes over the pipeline), and the
    // updated flat buffer all-gathered. Stage 0: one all-reduce of the whole gradient.
    const std::int64_t loss = s == 1 ? 1 : 0;  // the last stage averages the loss over dp
    EXPECT_EQ(Transfers(a, TransferKind::kAllReduce).count, 3 + loss);
    EXPECT_EQ(Transfers(a, TransferKind::kAllReduce).bytes, 756 * 4 + 245 * 4 + 4 + 4 * loss);
    EXPECT_EQ(Transfers(a, TransferKind::kAllGather).count, 1);
    EXPECT_EQ(Transfers(a, TransferKind::kAllGather).bytes, 1008 * 4);
    EXPECT_EQ(Transfers(b, TransferKind::kAllReduce).count, 1 + loss);
    EXPECT_EQ(Transfers(b, TransferKind::kAllReduce).bytes, 1001 * 4 + 4 * loss);
    EXPECT_EQ(Transfers(b, TransferKind::kAllGather).count, 0);
  }
}

// A bf16 model without ZeRO gets BF16_Optimizer: partitioned fp32 states like stage 1, plus a
// whole fp32 gradient buffer that is all-reduced at once.
TEST(PipelineStep, Bf16WithoutZeroUsesThePartitioningBf16Optimizer) {
  ModuleTree tree = Chain(2, 1001, {1'000'000, 1000, 400});
  for (std::size_t p = 0; p < tree.parameters().size(); ++p)
    tree.mutable_parameter(static_cast<ParamId>(p)).dtype = DType::kBFloat16;
  RunSpec run = MakeRun(std::move(tree), {4, 2, 1}, 4, TestCluster(1, 8));
  run.training.dtype = DType::kBFloat16;
  run.deepspeed.bf16.enabled = true;
  const SimulationResult r = simulate_pipeline(run, Exact(), nullptr);
  const RankReport& s0 = r.ranks[0];
  EXPECT_EQ(Bytes(s0.peak, MemoryCategory::kParamPartitions), 1008 * 2);
  EXPECT_EQ(Bytes(s0.peak, MemoryCategory::kMasterWeights), 252 * 4);
  // fp32 accumulation buffer (1008 x 4) and the bf16 gradients (1001 x 2).
  EXPECT_EQ(Bytes(s0.peak, MemoryCategory::kGradBuckets), 1008 * 4 + 1001 * 2);
  EXPECT_EQ(Transfers(s0, TransferKind::kAllReduce).bytes, 1008 * 4 + 4);
  EXPECT_EQ(Transfers(s0, TransferKind::kAllGather).bytes, 1008 * 2);
}

// tiny-gpt2 ties wte (stage 0) to lm_head (stage 1): both stages hold the weight and all-reduce
// its gradient between them.
TEST(PipelineStep, TiedWeightsAllReduceTheirGradientAcrossStages) {
  const RunSpec run = TinyGpt2(2);
  const pipe::PipelineLayers layers = pipe::layers_from_tree(run.tree);
  std::int64_t wte = 0;
  for (const Parameter& p : run.tree.parameters()) {
    if (p.name == "transformer.wte.weight") wte = p.numel();
  }
  ASSERT_GT(wte, 0);
  const SimulationResult r = simulate_pipeline(run, Exact(), nullptr);
  for (int s = 0; s < 2; ++s) {
    const RankReport& rk = r.ranks[static_cast<size_t>(s)];
    EXPECT_EQ(Transfers(rk, TransferKind::kAllReduce).count, 1);
    EXPECT_EQ(Transfers(rk, TransferKind::kAllReduce).bytes, wte * 4);
    std::int64_t numel = 0;
    for (int i = s == 0 ? 0 : 4; i < (s == 0 ? 4 : 7); ++i)
      numel += layers.layers[static_cast<size_t>(i)].parameter_numel;
    EXPECT_EQ(Bytes(rk.peak, MemoryCategory::kParamPartitions), numel * 4);
  }
  // Untied, nothing is all-reduced with one pipeline.
  const SimulationResult untied = simulate_pipeline(
      MakeRun(Chain(4, 100, {1000, 100, 100}), {1, 2, 1}, 2, TestCluster(1, 2)), Exact(), nullptr);
  EXPECT_EQ(Transfers(untied.ranks[0], TransferKind::kAllReduce).count, 0);
}

// Each collective that moves anything takes collective_host_time of its rank's timeline before
// the rank joins it: one pipeline's collectives (the tied embedding's all-reduce, the loss's
// broadcast over the stages), one after the other at the end of the step, come that much later
// each on both stages, and the step with them. Sends and receives take none.
TEST(PipelineStep, EachCollectiveTakesItsHostTime) {
  RunSpec run = TinyGpt2(2);
  const SimulationResult free = simulate_pipeline(run, Exact(), nullptr);
  run.cluster.collective_host_ns = 7000;
  const SimulationResult costly = simulate_pipeline(run, Exact(), nullptr);
  for (int s = 0; s < 2; ++s) {
    const RankReport& a = free.ranks[static_cast<size_t>(s)];
    const RankReport& b = costly.ranks[static_cast<size_t>(s)];
    ASSERT_EQ(Transfers(a, TransferKind::kAllReduce).count, 1);
    ASSERT_EQ(Transfers(a, TransferKind::kBroadcast).count, 1);
    EXPECT_GT(Transfers(a, TransferKind::kSendRecv).count, 0);
    EXPECT_EQ(b.steps.front().time_ns() - a.steps.front().time_ns(), 2 * 7000) << "stage " << s;
    EXPECT_EQ(b.steps.front().compute_ns, a.steps.front().compute_ns);
  }
}

TEST(PipelineStep, StepsReportEachStepAndTheFirstSendsTheShape) {
  SimOptions o = Exact();
  o.steps = 3;
  const SimulationResult r = simulate_pipeline(HandWorked(), o, nullptr);
  EXPECT_FALSE(r.steady_state);
  EXPECT_EQ(r.reported_steps, (std::vector<std::int64_t>{0, 1, 2}));
  const RankReport& s0 = r.ranks[0];
  ASSERT_EQ(s0.steps.size(), 3u);
  // Four transfers a step, and the first activation's 1024-byte shape message in step 0.
  EXPECT_EQ(Transfers(s0, TransferKind::kSendRecv).count, 3 * 4 + 1);
  EXPECT_EQ(Transfers(s0, TransferKind::kSendRecv).bytes, 3 * 8000 + 1024);
  EXPECT_EQ(s0.steps[0].time_ns(), 22036 + 1000 + 1024);
  EXPECT_EQ(s0.steps[1].time_ns(), 22036);
  EXPECT_EQ(s0.steps[2].time_ns(), 22036);
  EXPECT_EQ(s0.steps[1].start_ns, s0.steps[0].end_ns);
  // The buffers created in step 0 stay: later steps peak where the steady state does.
  const SimulationResult steady = simulate_pipeline(HandWorked(), Exact(), nullptr);
  EXPECT_EQ(steady.reported_steps, (std::vector<std::int64_t>{1}));
  EXPECT_EQ(s0.steps[2].peak.allocated, steady.ranks[0].peak.allocated);
  EXPECT_EQ(r.ranks[1].steps[2].peak.allocated, steady.ranks[1].peak.allocated);
}

TEST(PipelineStep, EveryRankAgreesWithTheRankClasses) {
  RunSpec run = HandWorked();
  run.parallel = {2, 2, 1};
  run.cluster = TestCluster(1, 4);
  SimOptions all = Exact();
  all.all_ranks = true;
  const SimulationResult classes = simulate_pipeline(run, Exact(), nullptr);
  const SimulationResult ranks = simulate_pipeline(run, all, nullptr);
  ASSERT_EQ(classes.ranks.size(), 2u);
  ASSERT_EQ(ranks.ranks.size(), 4u);
  EXPECT_EQ(classes.ranks[0].ranks, (std::vector<std::int64_t>{0, 1}));
  EXPECT_EQ(ranks.step_time_ns, classes.step_time_ns);
  EXPECT_DOUBLE_EQ(ranks.mfu, classes.mfu);
  for (const RankReport& rk : ranks.ranks) {
    const RankReport& c = classes.ranks[static_cast<size_t>(rk.ranks[0] / 2)];
    EXPECT_EQ(rk.peak.allocated, c.peak.allocated);
    EXPECT_EQ(rk.bubble_ns, c.bubble_ns);
    EXPECT_EQ(rk.transfers[static_cast<size_t>(TransferKind::kAllReduce)].bytes,
              c.transfers[static_cast<size_t>(TransferKind::kAllReduce)].bytes);
  }
}

// Stage s of pipeline d is rank 2s + d; with three GPUs a node, (0, 2) share a node but (1, 3)
// do not, so the stage's ranks are not alike and each is simulated.
TEST(PipelineStep, PipelinesPlacedUnlikeAreSimulatedRankByRank) {
  const RunSpec run =
      MakeRun(Chain(3, 100, {1'000'000, 1000, 1000}), {2, 3, 1}, 4, TestCluster(2, 3));
  const SimulationResult r = simulate_pipeline(run, Exact(), nullptr);
  ASSERT_EQ(r.ranks.size(), 6u);
  EXPECT_EQ(r.ranks[3].label, "rank 3 (stage 1)");
  ASSERT_FALSE(r.warnings.empty());
  EXPECT_NE(r.warnings.back().message.find("every rank"), std::string::npos);
  // Pipeline 1 crosses nodes and waits at the gradient all-reduce; pipeline 0 waits for it there.
  EXPECT_GT(r.ranks[1].steps[0].exposed_comm_ns, r.ranks[0].steps[0].exposed_comm_ns);
  EXPECT_EQ(r.ranks[0].steps[0].time_ns(), r.ranks[1].steps[0].time_ns());
}

TEST(PipelineStep, SameInputSameTrace) {
  RunSpec run = TinyGpt2(4);
  run.deepspeed.pipeline.activation_checkpoint_interval = 2;
  trace::Trace a, b;
  simulate_pipeline(run, SimOptions{}, &a);
  simulate_pipeline(run, SimOptions{}, &b);
  EXPECT_FALSE(a.ops.empty());
  EXPECT_TRUE(a == b);
}

TEST(PipelineStep, TheBundledExampleSimulates) {
  const RunSpec run = load_run_spec(kSource / "configs/examples/bert-large-pipeline.yaml");
  trace::Trace trace;
  const SimulationResult r = simulate_pipeline(run, SimOptions{}, &trace);
  ASSERT_EQ(r.ranks.size(), 2u);
  EXPECT_GT(r.step_time_ns, 0);
  EXPECT_GT(r.mfu, 0);
  EXPECT_LT(r.mfu, 1);
  for (const RankReport& rk : r.ranks) {
    EXPECT_GT(rk.peak.allocated, 0);
    EXPECT_FALSE(rk.peak_running.empty());
    EXPECT_GT(Bytes(rk.peak, MemoryCategory::kMasterWeights), 0);  // ZeRO-1's partition
    EXPECT_GT(rk.bubble_ns, 0);
  }
  // activation_checkpoint_interval 1: every BertLayer is recomputed.
  EXPECT_TRUE(std::any_of(trace.ops.begin(), trace.ops.end(), [](const trace::Op& op) {
    return op.kind == trace::OpKind::kRecompute;
  }));
}

// ---- The trace's allocation names ------------------------------------------------------------

// The blocks on `rank` at the peak `time`, by name with their bytes: those live then, and those
// freed at that instant (after the allocation that made the peak).
std::map<std::string, std::int64_t> AtPeak(const trace::Trace& t, std::int32_t rank,
                                           trace::TimeNs time) {
  std::map<std::string, std::int64_t> out;
  for (const trace::Allocation& a : t.allocations) {
    if (a.rank == rank && a.start <= time && time <= a.end)
      out[a.name >= 0 ? t.string(a.name) : "(unnamed)"] += a.bytes;
  }
  return out;
}

TEST(PipelineStep, EveryAllocationIsNamed) {
  std::vector<std::pair<std::string, RunSpec>> runs;
  runs.emplace_back("hand-worked", HandWorked());
  RunSpec zero1 = MakeRun(Chain(2, 1001, {1'000'000, 1000, 400}), {4, 2, 1}, 4, TestCluster(1, 8));
  zero1.deepspeed.zero.stage = 1;
  zero1.deepspeed.zero.reduce_bucket_size = 600;
  runs.emplace_back("zero-1", zero1);
  RunSpec fp16 = zero1;
  fp16.deepspeed.zero.stage = 0;
  for (std::size_t p = 0; p < fp16.tree.parameters().size(); ++p)
    fp16.tree.mutable_parameter(static_cast<ParamId>(p)).dtype = DType::kFloat16;
  fp16.training.dtype = DType::kFloat16;
  fp16.deepspeed.fp16.enabled = true;
  runs.emplace_back("fp16", fp16);
  RunSpec bf16 = fp16;
  for (std::size_t p = 0; p < bf16.tree.parameters().size(); ++p)
    bf16.tree.mutable_parameter(static_cast<ParamId>(p)).dtype = DType::kBFloat16;
  bf16.training.dtype = DType::kBFloat16;
  bf16.deepspeed.fp16.enabled = false;
  bf16.deepspeed.bf16.enabled = true;
  runs.emplace_back("bf16", bf16);
  RunSpec checkpointed = TinyGpt2(4);
  checkpointed.deepspeed.pipeline.activation_checkpoint_interval = 1;
  runs.emplace_back("checkpointed", checkpointed);
  RunSpec on_host = checkpointed;
  on_host.deepspeed.activation_checkpointing.cpu_checkpointing = true;
  runs.emplace_back("cpu_checkpointing", on_host);
  for (const auto& [what, run] : runs) {
    SCOPED_TRACE(what);
    // The steady state (what the step before left is booked at the start) and a cold start.
    for (std::int64_t steps : {0, 2}) {
      SCOPED_TRACE(::testing::Message() << steps << " steps");
      SimOptions options = Exact();
      options.steps = steps;
      trace::Trace trace;
      simulate_pipeline(run, options, &trace);
      ExpectEveryAllocationNamed(trace);
    }
  }
}

// HandWorkedTwoStages' peaks, block by block: each tensor named by what holds it and the
// micro-batch it belongs to.
TEST(PipelineStep, TheBlocksAtThePeakAreNamedByLayerAndMicroBatch) {
  trace::Trace trace;
  const SimulationResult r = simulate_pipeline(HandWorked(), Exact(), &trace);
  ASSERT_EQ(r.ranks.size(), 2u);
  // Stage 0 as BW0 creates the gradient: both micro-batches' activations and outputs, the loaded
  // ids and the gradient receive buffer.
  const std::map<std::string, std::int64_t> s0 = AtPeak(trace, 0, r.ranks[0].peak.time);
  EXPECT_EQ(s0, (std::map<std::string, std::int64_t>{{"parameters", 4000},
                                                     {"optimizer states", 8000},
                                                     {"l0 gradients", 4000},
                                                     {"l0 (micro-batch 0)", 10'000},
                                                     {"l0 (micro-batch 1)", 10'000},
                                                     {"output (micro-batch 0)", 2000},
                                                     {"output (micro-batch 1)", 2000},
                                                     {"inputs (micro-batch 0)", 32},
                                                     {"inputs (micro-batch 1)", 32},
                                                     {"gradient receive buffer", 2000}}));
  std::int64_t total = 0;
  for (const auto& [name, bytes] : s0)
    total += bytes;
  EXPECT_EQ(total, r.ranks[0].peak.allocated);
  // Stage 1 at the end of FW1: micro-batch 1's activations and new logits, beside the logits
  // the buffer held until then (the previous step's micro-batch 1) and what their graphs hold.
  const std::map<std::string, std::int64_t> s1 = AtPeak(trace, 1, r.ranks[1].peak.time);
  EXPECT_EQ(s1.count("(unnamed)"), 0u);
  EXPECT_EQ(s1.at("l1 (micro-batch 1)"), 10'000);
  EXPECT_EQ(s1.at("logits (micro-batch 1)"), 2 * 2000);
  EXPECT_EQ(s1.at("logits (micro-batch 0)"), 2000);
  EXPECT_EQ(s1.at("labels (micro-batch 1)"), 32);
  EXPECT_EQ(s1.at("receive buffer"), 2000);
  EXPECT_EQ(s1.at("input gradient (micro-batch 1)"), 2000);
  total = 0;
  for (const auto& [name, bytes] : s1)
    total += bytes;
  EXPECT_EQ(total, r.ranks[1].peak.allocated);
}

// ---- Errors and warnings ----------------------------------------------------------------------

TEST(PipelineStep, ZeroStage2And3AreRejectedAsDeepSpeedDoes) {
  for (int stage : {2, 3}) {
    RunSpec run = HandWorked();
    run.deepspeed.zero.stage = stage;
    const UserError e = ErrorOf(run);
    EXPECT_EQ(e.kind(), ErrorKind::kConflict);
    EXPECT_EQ(e.where().key_path, "zero_optimization.stage");
    EXPECT_NE(e.message().find("ZeRO-2 and ZeRO-3 are incompatible"), std::string::npos);
  }
}

TEST(PipelineStep, PipelineStagesMustMatchTheDegree) {
  RunSpec run = HandWorked();
  run.deepspeed.pipeline.stages = 3;
  const UserError e = ErrorOf(run);
  EXPECT_EQ(e.where().key_path, "pipeline.stages");
  run.deepspeed.pipeline.stages = 2;
  EXPECT_NO_THROW(simulate_pipeline(run, Exact(), nullptr));
}

TEST(PipelineStep, FewerMicroBatchesThanStagesWarns) {
  RunSpec run = HandWorked();
  run.deepspeed.batch.gradient_accumulation_steps = 1;
  const SimulationResult r = simulate_pipeline(run, Exact(), nullptr);
  ASSERT_EQ(r.warnings.size(), 1u);
  EXPECT_NE(r.warnings[0].message.find("1 micro-batches for 2 pipeline stages"), std::string::npos);
  EXPECT_TRUE(simulate_pipeline(HandWorked(), Exact(), nullptr).warnings.empty());
}

TEST(PipelineStep, MoreStagesThanLayersWarnsAndPassesActivationsThrough) {
  const RunSpec run =
      MakeRun(Chain(2, 100, {1'000'000, 1000, 1000}), {1, 3, 1}, 4, TestCluster(1, 3));
  const SimulationResult r = simulate_pipeline(run, Exact(), nullptr);
  ASSERT_FALSE(r.warnings.empty());
  EXPECT_NE(r.warnings[0].message.find("stage 2"), std::string::npos);
  const RankReport& empty = r.ranks[2];
  EXPECT_EQ(empty.steps[0].compute_ns, 0);
  // It still receives and forwards the second layer's output.
  EXPECT_EQ(Transfers(empty, TransferKind::kSendRecv).bytes, 2 * 4 * 1000);
}

TEST(PipelineStep, CheckpointingErrorsPropagate) {
  RunSpec run = TinyGpt2(4);
  run.deepspeed.pipeline.activation_checkpoint_interval = 1;
  run.deepspeed.activation_checkpointing.partition_activations = true;
  run.deepspeed.activation_checkpointing.contiguous_memory_optimization = true;
  run.deepspeed.activation_checkpointing.number_checkpoints = 1;
  const UserError e = ErrorOf(run);
  EXPECT_NE(e.message().find("number_checkpoints"), std::string::npos);
}

TEST(PipelineStep, OffloadedOptimizerIsNotSimulated) {
  RunSpec run = HandWorked();
  run.deepspeed.zero.stage = 1;
  run.deepspeed.zero.offload_optimizer = OffloadOptimizerConfig{};
  run.deepspeed.zero.offload_optimizer->device = OffloadDevice::kCpu;
  EXPECT_EQ(ErrorOf(run).kind(), ErrorKind::kUnsupported);
}

}  // namespace
}  // namespace zp::sim
