// The ZeRO-3 data-parallel step: each test works a rule out by hand on a tiny model and a cluster
// with round numbers (tests/sim/sim_test_util.h), and would fail if the rule were different.
#include "sim/step/zero_step.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <set>
#include <string>

#include "../sim_test_util.h"
#include "core/zero/training_step.h"
#include "sim/simulate.h"
#include "sim/step/model_states.h"

namespace zp::sim {
namespace {

using testing::ExpectEveryAllocationNamed;
using testing::MakeRun;
using testing::OpsOf;
using testing::Simulated;
using testing::SimulateWith;
using testing::TwoLayers;
using trace::MemoryCategory;
using trace::OpKind;
using trace::StreamKind;

// Demand-only ZeRO-3: no prefetch, nothing kept for reuse, nothing persistent.
const char* kDemandOnly =
    ", stage3_prefetch_bucket_size: 0, stage3_max_reuse_distance: 0, "
    "stage3_param_persistence_threshold: 0, reduce_bucket_size: 1000";

Simulated Simulate(const RunSpec& run, SimOptions options = {}) {
  return SimulateWith(simulate_zero3, run, options);
}

const trace::Op* ComputeOf(const trace::Trace& t, OpKind kind, const std::string& module) {
  for (const trace::Op& op : t.ops) {
    if (op.kind == kind && t.string(op.name) == module) return &op;
  }
  return nullptr;
}

TEST(ZeroStep, ExactBytesAndTimesOfEachCollective) {
  const Simulated s = Simulate(MakeRun(TwoLayers(), 4, kDemandOnly));
  const RankReport& r = s.result.ranks.front();
  // Gathers, forward and backward: a alone (24 elements, padded 24: 96 bytes) and b coalesced
  // (partitions 3 + 1 per rank, times 4 ranks: 16 elements, 64 bytes).
  const auto gathers = OpsOf(s.trace, OpKind::kAllGather);
  ASSERT_EQ(gathers.size(), 4u);
  EXPECT_EQ(gathers[0]->bytes, 96);
  EXPECT_EQ(gathers[1]->bytes, 64);
  EXPECT_EQ(gathers[2]->bytes, 64);
  EXPECT_EQ(gathers[3]->bytes, 96);
  const TransferTotals& ag = r.transfers[static_cast<std::size_t>(TransferKind::kAllGather)];
  EXPECT_EQ(ag.count, 4);
  EXPECT_EQ(ag.bytes, 320);
  // Ring over 4 ranks of one node: 3 steps of 1 us, and 3 chunks of bytes/4 at 1 B/ns.
  EXPECT_EQ(gathers[0]->end - gathers[0]->start, 3000 + 3 * 24);
  EXPECT_EQ(gathers[1]->end - gathers[1]->start, 3000 + 3 * 16);
  EXPECT_EQ(ag.busy_ns, 2 * 3072 + 2 * 3048);
  // One bucket of every gradient, padded per parameter: 24 + 12 + 4 elements, 160 bytes.
  const auto rs = OpsOf(s.trace, OpKind::kReduceScatter);
  ASSERT_EQ(rs.size(), 1u);
  EXPECT_EQ(rs[0]->bytes, 160);
  EXPECT_EQ(rs[0]->end - rs[0]->start, 3000 + 3 * 40);
  EXPECT_EQ(rs[0]->stream, StreamKind::kReduceScatter);
  EXPECT_EQ(gathers[0]->stream, StreamKind::kAllGather);
}

TEST(ZeroStep, GathersNameTheirModuleAndParametersAndReleasesAreRecorded) {
  const Simulated s = Simulate(MakeRun(TwoLayers(), 4, kDemandOnly));
  const auto gathers = OpsOf(s.trace, OpKind::kAllGather);
  ASSERT_EQ(gathers.size(), 4u);  // a, b forward; b, a backward
  const std::vector<std::string> modules = {"a", "b", "b", "a"};
  for (std::size_t i = 0; i < gathers.size(); ++i) {
    ASSERT_NE(gathers[i]->module, trace::kNone) << i;
    EXPECT_EQ(s.trace.string(gathers[i]->module), modules[i]) << i;
  }
  EXPECT_EQ(s.trace.string(gathers[0]->params), "a.weight");
  EXPECT_EQ(s.trace.string(gathers[1]->params), "b.weight, b.bias");
  // Nothing reused, nothing persistent: every parameter is released after each use, as an
  // instant on the compute stream named by the parameter and the module that owns it.
  const auto releases = OpsOf(s.trace, OpKind::kRelease);
  std::int64_t counted = 0;
  for (const StepReport& step : s.result.ranks.front().steps)
    counted += step.coordinator.releases;
  ASSERT_EQ(static_cast<std::int64_t>(releases.size()), counted);
  ASSERT_EQ(releases.size(), 6u);
  for (const trace::Op* r : releases) {
    EXPECT_EQ(r->start, r->end);
    EXPECT_EQ(r->stream, StreamKind::kCompute);
    const std::string param = s.trace.string(r->params);
    EXPECT_EQ(r->name, r->params) << "named after the parameter";
    EXPECT_EQ(s.trace.string(r->module), param.substr(0, 1)) << param;
    EXPECT_EQ(r->bytes, param == "a.weight" ? 96 : (param == "b.weight" ? 48 : 8)) << param;
  }
  // a's forward release comes when a's forward is done.
  const trace::Op* a = ComputeOf(s.trace, OpKind::kForward, "a");
  ASSERT_TRUE(a);
  EXPECT_EQ(s.trace.string(releases[0]->params), "a.weight");
  EXPECT_GE(releases[0]->start, a->end);
  // Without a trace, the same simulation (the trace only records).
  SimOptions exact;
  exact.model_allocator = false;
  const SimulationResult untraced =
      simulate_zero3(MakeRun(TwoLayers(), 4, kDemandOnly), exact, nullptr);
  EXPECT_EQ(untraced.ranks.front().steps.back().end_ns, s.result.ranks.front().steps.back().end_ns);
}

TEST(ZeroStep, ComputeWaitsForItsGatherAndACoalescedGatherIsSplitFirst) {
  const Simulated s = Simulate(MakeRun(TwoLayers(), 4, kDemandOnly));
  const auto gathers = OpsOf(s.trace, OpKind::kAllGather);
  const trace::Op* a = ComputeOf(s.trace, OpKind::kForward, "a");
  const trace::Op* b = ComputeOf(s.trace, OpKind::kForward, "b");
  ASSERT_TRUE(a && b);
  // a's gather is one parameter: its buffer is the parameter, compute starts when it lands.
  EXPECT_EQ(a->start, gathers[0]->end);
  EXPECT_EQ(a->end - a->start, 1);  // 1000 FLOPs at 1000 FLOP/ns
  // b's gather is coalesced: the wait splits it with torch.cat (56 bytes read and written at
  // 1000 B/ns: 1 ns, rounded up) on the gather stream before compute may start.
  EXPECT_EQ(gathers[1]->start, a->end);  // no prefetch: asked for at b's pre-forward
  EXPECT_EQ(b->start, gathers[1]->end + 1);
}

TEST(ZeroStep, MemoryOfGathersFollowsDeepSpeedsBuffers) {
  const Simulated s = Simulate(MakeRun(TwoLayers(), 4, kDemandOnly));
  const RankReport& r = s.result.ranks.front();
  // For good: partitions (6 + 3 + 1) x 4 B = 40, master 40, Adam 80, gradient partitions 40,
  // contiguous bucket 1000 x 4 = 4000: 4200.
  // In forward, the most is at b's wait: its flat buffer (64) and the per-parameter copies
  // (48 + 8) are both live, a's parameter already released (reuse distance 0).
  std::int64_t forward_most = 0;
  const trace::Op* b_forward = ComputeOf(s.trace, OpKind::kForward, "b");
  ASSERT_NE(b_forward, nullptr);
  std::array<std::int64_t, trace::kMemoryCategoryCount> now{};
  for (const trace::MemorySample& m : s.trace.memory) {
    now[static_cast<std::size_t>(m.category)] = m.bytes;
    if (m.time > b_forward->end) break;
    std::int64_t device = 0;
    for (std::size_t c = 0; c < now.size(); ++c) {
      if (trace::on_device(static_cast<MemoryCategory>(c))) device += now[c];
    }
    forward_most = std::max(forward_most, device);
  }
  EXPECT_EQ(forward_most, 4200 + 64 + 56);
  // The step's peak comes when the gradients are reduce-scattered at the end of backward: the
  // flat input (160) is live (the output is this rank's chunk of it, reduce_scatter_coalesced),
  // and so is a's parameter (96), which backward gathered again and which nothing releases before
  // the optimizer step, since a's input needs no gradient and so a gets no post-backward hook.
  EXPECT_EQ(r.peak.allocated, 4200 + 96 + 160);
  const auto at = [&](MemoryCategory c) { return r.peak.bytes[static_cast<std::size_t>(c)]; };
  EXPECT_EQ(at(MemoryCategory::kGatheredParams), 96);
  EXPECT_EQ(at(MemoryCategory::kCommBuffers), 160);
  EXPECT_EQ(at(MemoryCategory::kParamPartitions), 40);
  EXPECT_EQ(at(MemoryCategory::kMasterWeights), 40);
  EXPECT_EQ(at(MemoryCategory::kOptimizerStates), 80);
  EXPECT_EQ(at(MemoryCategory::kGradPartitions), 40);
  EXPECT_EQ(at(MemoryCategory::kGradBuckets), 4000);
  EXPECT_EQ(r.peak.step, s.result.reported_steps.front());
}

TEST(ZeroStep, ALoneGradientThatNeedsNoPaddingIsReduceScatteredInPlace) {
  // A bucket of 20 elements: b's gradients (12 + 2) go together, padded to 12 + 4, and are
  // reduce-scattered from a flat input of 64 bytes when a's arrives; a's 24 elements, too many
  // for a bucket and a multiple of the 4 ranks, go alone and need no buffer at all
  // (reduce_scatter_coalesced reduces the gradient itself).
  const Simulated s =
      Simulate(MakeRun(TwoLayers(), 4,
                       ", stage3_prefetch_bucket_size: 0, stage3_max_reuse_distance: 0, "
                       "stage3_param_persistence_threshold: 0, reduce_bucket_size: 20"));
  const auto rs = OpsOf(s.trace, OpKind::kReduceScatter);
  ASSERT_EQ(rs.size(), 2u);
  EXPECT_EQ(rs[0]->bytes, 64);
  EXPECT_EQ(rs[1]->bytes, 96);
  std::int64_t most = 0;
  for (const trace::MemorySample& m : s.trace.memory) {
    if (m.category == MemoryCategory::kCommBuffers) most = std::max(most, m.bytes);
  }
  EXPECT_EQ(most, 64);
}

TEST(ZeroStep, ModelStatesEqualDeepSpeedsEstimateUnderItsAssumptions) {
  // One bf16 layer of 1024 x 1024 over 8 GPUs, fp32 gradient partitions as the estimate assumes
  // (with ZeRO, DeepSpeed accumulates bf16 gradients in bf16 unless told); no buffers (no
  // contiguous bucket, no persistence), no activations: at the moment the layer's parameters and
  // gradient are both live the model states are 4 bytes per element of the largest layer plus 18
  // per element over the GPUs.
  ModuleTree t("one");
  t.add_module(kNoModule, "", "Net");
  const ModuleId l = t.add_module(0, "l", "Linear");
  t.add_parameter(l, "weight", {1024, 1024}, DType::kBFloat16);
  t.set_shape({1, 1, DType::kBFloat16});
  const auto root = t.add_call(0, kNoCall, false);
  t.add_call(l, root, true);
  const RunSpec run =
      MakeRun(t, 8,
              ", stage3_param_persistence_threshold: 0, contiguous_gradients: "
              "false, stage3_prefetch_bucket_size: 0",
              ", dtype: bf16", ", bf16: {enabled: true}, data_types: {grad_accum_dtype: fp32}");
  const Simulated s = Simulate(run);
  // Replay the samples: the largest sum of the model-state categories at any moment.
  std::array<std::int64_t, trace::kMemoryCategoryCount> now{};
  std::int64_t most = 0;
  for (const trace::MemorySample& m : s.trace.memory) {
    now[static_cast<std::size_t>(m.category)] = m.bytes;
    std::int64_t states = 0;
    for (auto c : {MemoryCategory::kParamPartitions, MemoryCategory::kGatheredParams,
                   MemoryCategory::kPersistentParams, MemoryCategory::kGradBuckets,
                   MemoryCategory::kGradPartitions, MemoryCategory::kMasterWeights,
                   MemoryCategory::kOptimizerStates})
      states += now[static_cast<std::size_t>(c)];
    most = std::max(most, states);
  }
  const DeepSpeedEstimate e = deepspeed_zero3_estimate(1 << 20, 1 << 20, 8, 1, false, false);
  EXPECT_EQ(e.gpu_bytes, 4 * (1 << 20) + 18 * (1 << 20) / 8);
  EXPECT_EQ(most, e.gpu_bytes);
  ASSERT_TRUE(s.result.estimate.has_value());
  EXPECT_EQ(s.result.estimate->gpu_bytes, e.gpu_bytes);
}

// Counts the core's decisions for a step, to compare with what the simulation reports.
struct Counter : zero::CoordinatorBackend, zero::GradientReducerBackend {
  std::int64_t gathers = 0, params = 0, elements = 0, releases = 0, buckets = 0, reduced = 0;
  void start_gather(const zero::GatherRequest& r) override {
    if (r.reason == zero::GatherReason::kOutside) return;
    ++gathers;
    params += static_cast<std::int64_t>(r.params.size());
    elements += r.numel;
  }
  void wait_gather(zero::GatherHandle) override {}
  void release(ParamId, zero::ReleaseReason reason) override {
    if (reason != zero::ReleaseReason::kOutside) ++releases;
  }
  void reduce(const zero::GradBucket& b) override {
    ++buckets;
    reduced += b.reduced_numel;
  }
};

TEST(ZeroStep, TheSimulatedDecisionsAreTheCores) {
  // Prefetching on, nothing persistent (by default these tiny parameters would all be), three
  // steps from the start.
  const RunSpec run = MakeRun(
      TwoLayers(), 4, ", stage3_prefetch_bucket_size: 30, stage3_param_persistence_threshold: 0");
  SimOptions options;
  options.steps = 3;
  const Simulated s = Simulate(run, options);
  const zero::ZeroModel model(run.tree, run.zero_settings());
  Counter counter;
  zero::TrainingLoop loop(model, counter, counter);
  loop.initialize();
  for (const StepReport& step : s.result.ranks.front().steps) {
    counter = Counter{};
    loop.step();
    EXPECT_EQ(step.coordinator.allgather_calls, counter.gathers) << "step " << step.step;
    EXPECT_EQ(step.coordinator.params_gathered, counter.params);
    EXPECT_EQ(step.coordinator.elements_gathered, counter.elements);
    EXPECT_EQ(step.coordinator.releases, counter.releases);
    EXPECT_EQ(step.coordinator.reduce_calls, counter.buckets);
    EXPECT_EQ(step.coordinator.reduce_elements, counter.reduced);
  }
  // The first steps run without prefetching; once the trace is complete, they prefetch.
  EXPECT_EQ(s.result.ranks.front().steps.front().coordinator.prefetch_gathers, 0);
  EXPECT_GT(s.result.ranks.front().steps.back().coordinator.prefetch_gathers, 0);
}

TEST(ZeroStep, TheSteadyStateStepIsTheFirstWithACompleteTrace) {
  const Simulated s = Simulate(MakeRun(TwoLayers(), 4, ", stage3_prefetch_bucket_size: 30"));
  ASSERT_EQ(s.result.ranks.front().steps.size(), 1u);
  const StepReport& step = s.result.ranks.front().steps.front();
  EXPECT_EQ(step.trace_mode, "complete");
  SimOptions first;
  first.steps = 4;
  const Simulated all =
      Simulate(MakeRun(TwoLayers(), 4, ", stage3_prefetch_bucket_size: 30"), first);
  std::int64_t first_complete = -1;
  for (const StepReport& r : all.result.ranks.front().steps) {
    if (r.trace_mode == "complete") {
      first_complete = r.step;
      break;
    }
  }
  EXPECT_EQ(step.step, first_complete);
  // Warm-up steps are not simulated in time: the steady step starts at 0.
  EXPECT_EQ(step.start_ns, 0);
}

TEST(ZeroStep, SimulationIsDeterministic) {
  const RunSpec run = MakeRun(TwoLayers(), 4, ", stage3_prefetch_bucket_size: 30");
  SimOptions options;
  options.steps = 2;
  const Simulated a = Simulate(run, options);
  const Simulated b = Simulate(run, options);
  EXPECT_TRUE(a.trace == b.trace);
  EXPECT_EQ(a.result.step_time_ns, b.result.step_time_ns);
}

// Every device block is recorded: at each sampled time, the allocations live then (start <= t <
// end) add up, per category, to the accountant's totals that the samples give. One missing,
// misnamed in category or freed at the wrong time breaks the sum.
TEST(ZeroStep, TracedAllocationsAddUpToTheAccountantsTotals) {
  for (const char* knobs : {kDemandOnly, ", stage3_prefetch_bucket_size: 30"}) {
    SCOPED_TRACE(knobs);
    SimOptions options;
    options.steps = 2;
    const Simulated s = Simulate(MakeRun(TwoLayers(), 4, knobs), options);
    const trace::Trace& t = s.trace;
    ASSERT_FALSE(t.allocations.empty());
    std::vector<trace::MemorySample> samples = t.memory;
    std::stable_sort(samples.begin(), samples.end(),
                     [](const auto& a, const auto& b) { return a.time < b.time; });
    std::array<std::int64_t, trace::kMemoryCategoryCount> totals{};
    std::int64_t checked = 0, peak_seen = 0;
    for (std::size_t i = 0; i < samples.size(); ++i) {
      ASSERT_EQ(samples[i].rank, 0);
      totals[static_cast<std::size_t>(samples[i].category)] = samples[i].bytes;
      if (i + 1 < samples.size() && samples[i + 1].time == samples[i].time) continue;
      const trace::TimeNs time = samples[i].time;
      std::array<std::int64_t, trace::kMemoryCategoryCount> live{};
      for (const trace::Allocation& a : t.allocations) {
        if (a.start <= time && time < a.end) live[static_cast<std::size_t>(a.category)] += a.bytes;
      }
      std::int64_t allocated = 0;
      for (std::size_t c = 0; c < trace::kMemoryCategoryCount; ++c) {
        if (!trace::on_device(static_cast<MemoryCategory>(c))) continue;
        EXPECT_EQ(live[c], totals[c])
            << "at " << time << ": " << trace::to_string(static_cast<MemoryCategory>(c));
        allocated += totals[c];
      }
      peak_seen = std::max(peak_seen, allocated);
      ++checked;
    }
    EXPECT_GT(checked, 10);
    EXPECT_GT(peak_seen, 0);
    // Gathered (or persistent) parameters are named after the parameter.
    const bool named = std::any_of(t.allocations.begin(), t.allocations.end(), [&](const auto& a) {
      return (a.category == MemoryCategory::kGatheredParams ||
              a.category == MemoryCategory::kPersistentParams) &&
             a.name != trace::kNone && t.string(a.name).find("weight") != std::string::npos;
    });
    EXPECT_TRUE(named);
  }
}

TEST(ZeroStep, WithoutOverlapCommCommunicationRunsOnTheComputeStream) {
  const Simulated s =
      Simulate(MakeRun(TwoLayers(), 4, std::string(kDemandOnly) + ", overlap_comm: false"));
  for (const trace::Op& op : s.trace.ops) {
    if (op.kind == OpKind::kAllGather || op.kind == OpKind::kReduceScatter) {
      EXPECT_EQ(op.stream, StreamKind::kCompute);
    }
  }
  const StepReport& step = s.result.ranks.front().steps.front();
  // Every collective is exposed: 2 x 3072 + 2 x 3048 gathers and the 3120 reduce-scatter.
  EXPECT_EQ(step.exposed_comm_ns, 2 * 3072 + 2 * 3048 + 3120);
}

// Ranks whose collectives cannot progress while they compute (CPU ranks filling their cores) take
// turns: with overlap_comm the collectives leave their streams for the compute stream, while the
// memory stays overlap_comm's.
TEST(ZeroStep, WhereCommunicationCannotOverlapComputeEveryCollectiveHoldsTheComputeStream) {
  const std::string zero = std::string(kDemandOnly) + ", overlap_comm: true";
  const Simulated beside = Simulate(MakeRun(TwoLayers(), 4, zero));
  const Simulated turns =
      Simulate(MakeRun(TwoLayers(), 4, zero, "", "", ", comm_overlaps_compute: false"));
  std::size_t collectives = 0;
  for (const trace::Op& op : turns.trace.ops) {
    if (op.kind == OpKind::kAllGather || op.kind == OpKind::kReduceScatter) {
      EXPECT_EQ(op.stream, StreamKind::kCompute);
      ++collectives;
    }
  }
  EXPECT_EQ(collectives, OpsOf(beside.trace, OpKind::kAllGather).size() +
                             OpsOf(beside.trace, OpKind::kReduceScatter).size());
  EXPECT_FALSE(OpsOf(beside.trace, OpKind::kReduceScatter).empty());
  for (const trace::Op* op : OpsOf(beside.trace, OpKind::kReduceScatter))
    EXPECT_EQ(op->stream, StreamKind::kReduceScatter);
  const StepReport& step = turns.result.ranks.front().steps.front();
  EXPECT_EQ(step.exposed_comm_ns, 2 * 3072 + 2 * 3048 + 3120);
  EXPECT_GT(step.time_ns(), beside.result.ranks.front().steps.front().time_ns());
  EXPECT_EQ(turns.result.ranks.front().peak.allocated, beside.result.ranks.front().peak.allocated);
}

// Each hook the engine runs (zero::training_step_schedule's events) holds the rank's timeline for
// hook_overhead; with collectives taking turns with compute, nothing hides it. By default hooks
// cost nothing.
TEST(ZeroStep, EachHookHoldsTheRankForHookOverhead) {
  const std::string zero = std::string(kDemandOnly) + ", overlap_comm: true";
  const RunSpec free = MakeRun(TwoLayers(), 4, zero, "", "", ", comm_overlaps_compute: false");
  const RunSpec costly =
      MakeRun(TwoLayers(), 4, zero, "", "", ", comm_overlaps_compute: false, hook_overhead: 5us");
  EXPECT_EQ(free.cluster.hook_overhead_ns, 0);
  const zero::StepSchedule schedule =
      zero::training_step_schedule(zero::ZeroModel(free.tree, free.zero_settings()));
  const auto events = static_cast<TimeNs>(schedule.forward.size() + schedule.backward.size());
  ASSERT_GT(events, 4);
  const Simulated free_run = Simulate(free), costly_run = Simulate(costly);
  const StepReport& a = free_run.result.ranks.front().steps.front();
  const StepReport& b = costly_run.result.ranks.front().steps.front();
  EXPECT_EQ(b.time_ns() - a.time_ns(), events * 5000);
  EXPECT_EQ(b.compute_ns, a.compute_ns) << "hooks are host time, not compute";
}

// Each collective that moves anything takes collective_host_time of its rank's host before it is
// issued; with collectives taking turns with compute, the step grows by that per call.
TEST(ZeroStep, EachCollectiveTakesItsHostTime) {
  const std::string zero = std::string(kDemandOnly) + ", overlap_comm: true";
  const RunSpec free = MakeRun(TwoLayers(), 4, zero, "", "", ", comm_overlaps_compute: false");
  const RunSpec costly = MakeRun(TwoLayers(), 4, zero, "", "",
                                 ", comm_overlaps_compute: false, collective_host_time: 7us");
  const Simulated free_run = Simulate(free), costly_run = Simulate(costly);
  TimeNs calls = 0;  // the first trace rank's in its first step
  const auto first = free_run.result.ranks.front().steps.front().step;
  for (OpKind kind : {OpKind::kAllGather, OpKind::kReduceScatter})
    for (const auto* op : OpsOf(free_run.trace, kind))
      calls += op->rank == free_run.trace.ops.front().rank && op->step == first ? 1 : 0;
  ASSERT_GT(calls, 4);
  const StepReport& a = free_run.result.ranks.front().steps.front();
  const StepReport& b = costly_run.result.ranks.front().steps.front();
  EXPECT_EQ(b.time_ns() - a.time_ns(), calls * 7000);
  EXPECT_EQ(b.compute_ns, a.compute_ns) << "host time, not compute";
  EXPECT_EQ(b.exposed_comm_ns, a.exposed_comm_ns);
}

TEST(ZeroStep, OffloadedParametersComeUpOverPcieBeforeEachGather) {
  const Simulated s = Simulate(
      MakeRun(TwoLayers(), 4, std::string(kDemandOnly) + ", offload_param: {device: cpu}"));
  const auto copies = OpsOf(s.trace, OpKind::kCopyToDevice);
  const auto gathers = OpsOf(s.trace, OpKind::kAllGather);
  ASSERT_GE(copies.size(), gathers.size());
  // a's partition: 6 elements x 4 B = 24 bytes at 1 B/ns, then its gather.
  EXPECT_EQ(copies[0]->bytes, 24);
  EXPECT_EQ(copies[0]->end - copies[0]->start, 24);
  EXPECT_EQ(gathers[0]->start, copies[0]->end);
  const RankReport& r = s.result.ranks.front();
  EXPECT_EQ(r.peak.bytes[static_cast<std::size_t>(MemoryCategory::kParamPartitions)], 0);
  EXPECT_EQ(r.peak.bytes[static_cast<std::size_t>(MemoryCategory::kHostParams)], 40);
}

TEST(ZeroStep, OffloadedOptimizerStepsOnTheHost) {
  const Simulated s = Simulate(
      MakeRun(TwoLayers(), 4, std::string(kDemandOnly) + ", offload_optimizer: {device: cpu}", "",
              "", ", host_optimizer_rate: 1e9"));
  const auto host = OpsOf(s.trace, OpKind::kOptimizerStep);
  ASSERT_EQ(host.size(), 1u);
  EXPECT_EQ(host[0]->stream, StreamKind::kHost);
  // 10 partitioned elements at 1e9 per second shared by 4 GPUs: 40 ns.
  EXPECT_EQ(host[0]->end - host[0]->start, 40);
  const RankReport& r = s.result.ranks.front();
  EXPECT_EQ(r.peak.bytes[static_cast<std::size_t>(MemoryCategory::kOptimizerStates)], 0);
  // Master weights and Adam (40 + 80) and the fp32 gradient partitions (40) on the host.
  EXPECT_EQ(r.peak.bytes[static_cast<std::size_t>(MemoryCategory::kHostOptimizer)], 160);
}

// Net{l0..l3: Linear(weight 4)} called in turn; each saves 100 bytes and runs 1000 FLOPs.
ModuleTree FourBlocks() {
  ModuleTree t("four");
  t.add_module(kNoModule, "", "Net");
  std::vector<ModuleId> ls;
  for (int i = 0; i < 4; ++i) {
    ls.push_back(t.add_module(0, "l" + std::to_string(i), "Block"));
    t.add_parameter(ls.back(), "weight", {4}, DType::kFloat32);
    t.set_cost(ls.back(), {1000, 100, 16});
  }
  const auto root = t.add_call(0, kNoCall, false);
  for (ModuleId l : ls)
    t.add_call(l, root, true);
  return t;
}

TEST(ZeroStep, EveryAllocationIsNamed) {
  // Cold steps (model states booked at the start) and the steady state, with and without
  // checkpointing (its kept inputs and recompute buffers).
  for (const std::string checkpoint : {"", ", checkpoint_interval: 2"}) {
    for (const std::int64_t steps : {0, 2}) {
      SCOPED_TRACE(checkpoint + " steps " + std::to_string(steps));
      SimOptions options;
      options.steps = steps;
      const Simulated s = Simulate(MakeRun(FourBlocks(), 4, kDemandOnly, checkpoint), options);
      const std::set<std::string> names = ExpectEveryAllocationNamed(s.trace);
      for (const char* state : {"parameter partitions", "master weights", "optimizer states",
                                "gradient partitions", "ipg buffer"})
        EXPECT_TRUE(names.count(state)) << state;
      if (!checkpoint.empty()) {
        EXPECT_TRUE(names.count("checkpoint input"));
      }
    }
  }
}

TEST(ZeroStep, CheckpointingKeepsSegmentInputsAndRecomputesInBackward) {
  const Simulated plain = Simulate(MakeRun(FourBlocks(), 4, kDemandOnly));
  const Simulated ckpt =
      Simulate(MakeRun(FourBlocks(), 4, kDemandOnly, ", checkpoint_interval: 2"));
  const auto at = [](const Simulated& s, MemoryCategory c) {
    return s.result.ranks.front().peak.bytes[static_cast<std::size_t>(c)];
  };
  // Without checkpointing all four blocks' 100 bytes are held at the end of forward; l3's backward
  // makes its weight's gradient (16 bytes, autograd's until the accumulator takes it) before its
  // saved tensors go.
  EXPECT_EQ(at(plain, MemoryCategory::kActivations), 400 + 16);
  EXPECT_TRUE(OpsOf(plain.trace, OpKind::kRecompute).empty());
  // Segments {l0, l1}, {l2, l3}: the first keeps token ids (an integer input, 8 bytes), the
  // second l1's output (16 bytes); each block runs its forward again in backward.
  const auto recomputed = OpsOf(ckpt.trace, OpKind::kRecompute);
  ASSERT_EQ(recomputed.size(), 4u);
  EXPECT_EQ(recomputed[0]->flops, 1000);
  // Backward reaches the second segment first.
  EXPECT_EQ(ckpt.trace.string(recomputed[0]->name), "l2");
  EXPECT_EQ(ckpt.trace.string(recomputed[2]->name), "l0");
  std::int64_t most_activations = 0, most_recompute = 0;
  std::array<std::int64_t, trace::kMemoryCategoryCount> now{};
  for (const trace::MemorySample& m : ckpt.trace.memory) {
    now[static_cast<std::size_t>(m.category)] = m.bytes;
    most_activations =
        std::max(most_activations, now[static_cast<std::size_t>(MemoryCategory::kActivations)]);
    most_recompute =
        std::max(most_recompute, now[static_cast<std::size_t>(MemoryCategory::kRecompute)]);
  }
  EXPECT_EQ(most_activations, 8 + 16 + 16);  // the kept inputs, and a weight's gradient
  EXPECT_EQ(most_recompute, 200);            // one segment's two blocks at a time
  // Recomputation gathers the blocks' parameters once more.
  EXPECT_EQ(OpsOf(ckpt.trace, OpKind::kAllGather).size(),
            OpsOf(plain.trace, OpKind::kAllGather).size() + 4);
}

TEST(ZeroStep, RunsItCannotSimulateAreUserErrors) {
  const ModuleTree tree = TwoLayers();
  RunSpec run = MakeRun(tree, 4, kDemandOnly);
  run.deepspeed.zero.stage = 2;
  EXPECT_THROW(simulate_zero3(run, {}, nullptr), UserError);
  RunSpec no_flops = MakeRun(tree, 4, kDemandOnly);
  no_flops.cluster.peak_flops.erase("fp32");
  try {
    simulate_zero3(no_flops, {}, nullptr);
    ADD_FAILURE() << "accepted a cluster without an fp32 FLOP rate";
  } catch (const UserError& e) {
    EXPECT_EQ(e.where().key_path, "cluster.peak_flops.fp32");
  }
}

}  // namespace
}  // namespace zp::sim
