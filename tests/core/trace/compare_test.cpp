#include "core/trace/compare.h"

#include <gtest/gtest.h>

#include <string>

#include "core/util/error.h"

namespace zp::trace {
namespace {

using MC = MemoryCategory;

// A run of `steps` steps on one rank class standing for `ranks`: per step a forward of "model"
// and of "h.0", two gathers and one reduction, each step `step_ns` long; memory rises to
// `partitions` + `activations` in step 0.
struct Builder {
  Trace trace;
  std::int32_t rank = 0;

  Builder(Source source, std::vector<std::int64_t> ranks) {
    trace.source = source;
    trace.ranks.push_back(RankInfo{"class", std::move(ranks), 0});
    trace.groups.push_back(GroupInfo{"data", 2});
  }
  Builder& op(OpKind kind, StreamKind stream, std::int32_t step, TimeNs start, TimeNs end,
              const std::string& name, std::int64_t bytes = 0) {
    Op o;
    o.rank = rank;
    o.kind = kind;
    o.stream = stream;
    o.step = step;
    o.start = start;
    o.end = end;
    o.name = trace.intern(name);
    o.bytes = bytes;
    o.group = bytes > 0 ? 0 : kNone;
    trace.ops.push_back(o);
    return *this;
  }
  Builder& memory(TimeNs time, MC category, std::int64_t bytes) {
    trace.memory.push_back(MemorySample{rank, time, category, bytes});
    return *this;
  }
  Builder& step_marker(std::int32_t step, TimeNs time) {
    trace.markers.push_back(Marker{rank, time, trace.intern("step " + std::to_string(step))});
    return *this;
  }
  // The standard step: gathers "gather 2s" and "gather 2s+1", reduction "bucket 0".
  Builder& standard_step(std::int32_t step, TimeNs t0, TimeNs length, TimeNs model_ns = 100) {
    step_marker(step, t0);
    op(OpKind::kAllGather, StreamKind::kAllGather, step, t0, t0 + 10,
       "gather " + std::to_string(2 * step), 4096);
    op(OpKind::kForward, StreamKind::kCompute, step, t0 + 10, t0 + 10 + model_ns, "model");
    op(OpKind::kAllGather, StreamKind::kAllGather, step, t0 + 20, t0 + 30,
       "gather " + std::to_string(2 * step + 1), 1024);
    op(OpKind::kForward, StreamKind::kCompute, step, t0 + 200, t0 + 300, "h.0");
    op(OpKind::kReduceScatter, StreamKind::kReduceScatter, step, t0 + 300, t0 + 400, "bucket 0",
       2048);
    op(OpKind::kOptimizerStep, StreamKind::kCompute, step, t0 + length - 10, t0 + length,
       "optimizer");
    return *this;
  }
};

CompareOptions judged_time() {
  CompareOptions options;
  options.judge_time = true;
  return options;
}

Trace run(Source source, std::vector<std::int64_t> ranks, std::int64_t partitions = 1000,
          std::int64_t activations = 3000, TimeNs step_ns = 1000, TimeNs model_ns = 100) {
  Builder b(source, std::move(ranks));
  b.memory(0, MC::kParamPartitions, partitions);
  b.memory(50, MC::kActivations, activations);
  b.memory(60, MC::kActivations, 0);
  for (std::int32_t s = 0; s < 3; ++s)
    b.standard_step(s, s * step_ns, step_ns, model_ns);
  return b.trace;
}

TEST(CompareTraces, IdenticalTracesMeetEveryTarget) {
  const Comparison c =
      compare_traces(run(Source::kSimulated, {0, 1}), run(Source::kMeasured, {0}), judged_time());
  EXPECT_TRUE(c.within_targets());
  EXPECT_EQ(c.steps, 3);
  EXPECT_EQ(c.steady_from, 1);
  ASSERT_EQ(c.ranks.size(), 1u);
  const RankComparison& r = c.ranks[0];
  EXPECT_EQ(r.peak.predicted, 4000);
  EXPECT_EQ(r.peak.measured, 4000);
  ASSERT_TRUE(r.decisions.has_value());
  EXPECT_EQ(r.decisions->compared, 9);  // 3 steps x (2 gathers + 1 reduction)
  EXPECT_EQ(r.step_time.measured, 1000);
  ASSERT_EQ(r.collectives.size(), 2u);
  EXPECT_EQ(r.collectives[0].kind, OpKind::kAllGather);
  EXPECT_EQ(r.collectives[0].count.measured, 6);
  EXPECT_EQ(r.collectives[0].bytes.measured, 3 * (4096 + 1024));
}

// Every measured rank is compared with the class that stands for it.
TEST(CompareTraces, EachMeasuredRankIsComparedWithItsClass) {
  Trace measured = run(Source::kMeasured, {1});
  Trace second = run(Source::kMeasured, {0});
  append_ranks(measured, second);
  const Comparison c = compare_traces(run(Source::kSimulated, {0, 1}), measured);
  ASSERT_EQ(c.ranks.size(), 2u);
  EXPECT_EQ(c.ranks[0].global_rank, 0);
  EXPECT_EQ(c.ranks[1].global_rank, 1);
  EXPECT_TRUE(c.within_targets());
}

TEST(CompareTraces, AMeasuredRankNoClassPredictsIsAUserError) {
  EXPECT_THROW(compare_traces(run(Source::kSimulated, {0, 1}), run(Source::kMeasured, {2})),
               UserError);
}

// The peak's target is 3% of the measured peak: 2.9% passes, 3.1% does not.
TEST(CompareTraces, PeakWithinThreePercent) {
  const Trace measured = run(Source::kMeasured, {0}, 1000, 9000);  // peak 10000
  const Comparison near =
      compare_traces(run(Source::kSimulated, {0}, 1000, 9290), measured);  // +2.9%
  EXPECT_TRUE(near.ranks[0].peak.ok);
  EXPECT_NEAR(near.ranks[0].peak.error, 0.029, 1e-12);
  EXPECT_TRUE(near.memory_ok());
  const Comparison far = compare_traces(run(Source::kSimulated, {0}, 1000, 9310), measured);
  EXPECT_FALSE(far.ranks[0].peak.ok);
  EXPECT_FALSE(far.memory_ok());
  EXPECT_FALSE(far.within_targets());
}

// A category is held to 5% of the measured peak even when the peak itself is right.
TEST(CompareTraces, CategoriesWithinFivePercentOfThePeak) {
  const Trace measured = run(Source::kMeasured, {0}, 1000, 9000);
  const Comparison shifted = compare_traces(run(Source::kSimulated, {0}, 1600, 8400), measured);
  EXPECT_TRUE(shifted.ranks[0].peak.ok);
  EXPECT_FALSE(shifted.memory_ok());
  const Comparison small = compare_traces(run(Source::kSimulated, {0}, 1400, 8600), measured);
  EXPECT_TRUE(small.memory_ok());
  for (const CategoryFigure& c : small.ranks[0].categories) {
    if (c.category == MC::kParamPartitions) {
      EXPECT_NEAR(c.figure.error, 0.04, 1e-12);
    }
  }
}

// Host memory is not part of the device peak; each host category is compared at its own peak.
TEST(CompareTraces, HostCategoriesStayOutOfThePeak) {
  Builder p(Source::kSimulated, {0});
  p.memory(0, MC::kParamPartitions, 100).memory(1, MC::kHostActivations, 1'000'000);
  p.standard_step(0, 0, 1000);
  Builder m(Source::kMeasured, {0});
  m.memory(0, MC::kParamPartitions, 100).memory(1, MC::kHostActivations, 1'000'000);
  m.memory(2, MC::kHostActivations, 0);
  m.standard_step(0, 0, 1000);
  const Comparison c = compare_traces(p.trace, m.trace);
  EXPECT_EQ(c.ranks[0].peak.measured, 100);
  ASSERT_EQ(c.ranks[0].categories.size(), 2u);
  EXPECT_EQ(c.ranks[0].categories[1].category, MC::kHostActivations);
  EXPECT_EQ(c.ranks[0].categories[1].figure.measured, 1'000'000);
}

// Samples are changes in order: a transient between two samples at one time counts.
TEST(PeakMemory, SamplesAreAppliedOneByOne) {
  Builder b(Source::kMeasured, {0});
  b.memory(10, MC::kActivations, 500).memory(10, MC::kGatheredParams, 300);
  b.memory(10, MC::kActivations, 0);
  const PeakMemory peak = peak_memory(b.trace, 0);
  EXPECT_EQ(peak.allocated, 800);
  EXPECT_EQ(peak.bytes[static_cast<std::size_t>(MC::kActivations)], 500);
  EXPECT_EQ(peak.time, 10);
}

// Collective bytes and counts are exact: one byte more is a miss.
TEST(CompareTraces, CollectivesMustBeExact) {
  Trace predicted = run(Source::kSimulated, {0});
  predicted.ops[0].bytes += 1;
  const Comparison c = compare_traces(predicted, run(Source::kMeasured, {0}));
  EXPECT_FALSE(c.collectives_ok());
  EXPECT_FALSE(c.within_targets());
  EXPECT_TRUE(c.memory_ok());
}

TEST(CompareTraces, AnExtraCollectiveIsAMiss) {
  Builder m(Source::kMeasured, {0});
  for (std::int32_t s = 0; s < 3; ++s)
    m.standard_step(s, s * 1000, 1000);
  m.op(OpKind::kAllReduce, StreamKind::kCompute, 1, 1500, 1510, "tied", 8);
  const Comparison c = compare_traces(run(Source::kSimulated, {0}), m.trace);
  EXPECT_FALSE(c.collectives_ok());
  ASSERT_EQ(c.ranks[0].collectives.size(), 3u);
  const CollectiveFigure& all_reduce = c.ranks[0].collectives[2];
  EXPECT_EQ(all_reduce.kind, OpKind::kAllReduce);
  EXPECT_EQ(all_reduce.count.predicted, 0);
  EXPECT_EQ(all_reduce.count.measured, 1);
  EXPECT_TRUE(c.ranks[0].collectives[0].count.ok);
}

// Two gathers issued in the other order are a different decision, though every total agrees.
TEST(CompareTraces, GathersInAnotherOrderAreDifferentDecisions) {
  Trace measured = run(Source::kMeasured, {0});
  std::swap(measured.ops[0].start, measured.ops[2].start);  // step 0's two gathers
  std::swap(measured.ops[0].end, measured.ops[2].end);
  const Comparison c = compare_traces(run(Source::kSimulated, {0}), measured);
  EXPECT_TRUE(c.collectives_ok());
  EXPECT_FALSE(c.decisions_ok());
  ASSERT_TRUE(c.ranks[0].decisions.has_value());
  EXPECT_EQ(c.ranks[0].decisions->mismatches, 2);
  EXPECT_NE(c.ranks[0].decisions->first_mismatch.find("step 0, gather 0"), std::string::npos)
      << c.ranks[0].decisions->first_mismatch;
}

// When a reduction runs between two gathers is timing; the gathers' order and the reductions'
// order are the decisions.
TEST(CompareTraces, AReductionMovingPastAGatherIsNotADecision) {
  Trace measured = run(Source::kMeasured, {0});
  measured.ops[4].start = 15;  // step 0's reduction, now before its second gather
  measured.ops[4].end = 16;
  const Comparison c = compare_traces(run(Source::kSimulated, {0}), measured);
  EXPECT_TRUE(c.decisions_ok());
}

TEST(CompareTraces, NoGathersOrReductionsMeansNoDecisions) {
  Builder p(Source::kSimulated, {0});
  p.op(OpKind::kSend, StreamKind::kPipeSend, 0, 0, 10, "activation", 64);
  Builder m(Source::kMeasured, {0});
  m.op(OpKind::kSend, StreamKind::kPipeSend, 0, 0, 10, "activation", 64);
  const Comparison c = compare_traces(p.trace, m.trace);
  EXPECT_FALSE(c.ranks[0].decisions.has_value());
  EXPECT_TRUE(c.decisions_ok());
}

// Step time counts from the second step, and only when judged: 9% passes, 11% does not.
TEST(CompareTraces, StepTimeIsJudgedOnlyWhenAsked) {
  const Trace measured = run(Source::kMeasured, {0}, 1000, 3000, 1000);
  const Trace slow = run(Source::kSimulated, {0}, 1000, 3000, 1110);
  EXPECT_TRUE(compare_traces(slow, measured).within_targets());
  const Comparison judged = compare_traces(slow, measured, judged_time());
  EXPECT_FALSE(judged.time_ok());
  EXPECT_FALSE(judged.within_targets());
  EXPECT_NEAR(judged.ranks[0].step_time.error, 0.11, 1e-12);
  const Comparison close =
      compare_traces(run(Source::kSimulated, {0}, 1000, 3000, 1090), measured, judged_time());
  EXPECT_TRUE(close.time_ok());
}

TEST(CompareTraces, TheFirstStepDoesNotCountForTime) {
  Trace measured = run(Source::kMeasured, {0});
  // Step 0 twice as long: the markers of steps 1 and 2 move by 1000 ns.
  for (Marker& m : measured.markers)
    if (m.time > 0) m.time += 1000;
  for (Op& op : measured.ops) {
    if (op.step > 0) {
      op.start += 1000;
      op.end += 1000;
    }
  }
  const Comparison c = compare_traces(run(Source::kSimulated, {0}), measured, judged_time());
  EXPECT_EQ(c.ranks[0].step_times[0].measured, 2000);
  EXPECT_EQ(c.ranks[0].step_time.measured, 1000);
  EXPECT_TRUE(c.time_ok());
}

Trace steps_of(Source source, const std::vector<TimeNs>& lengths) {
  Builder b(source, {0});
  b.memory(0, MC::kParamPartitions, 1000);
  TimeNs t0 = 0;
  for (std::size_t s = 0; s < lengths.size(); ++s) {
    b.standard_step(static_cast<std::int32_t>(s), t0, lengths[s], 100);
    t0 += lengths[s];
  }
  return b.trace;
}

// One step that the machine's other work stretched moves the mean by all its excess; the
// median of the steady-state steps not.
TEST(CompareTraces, StepTimeIsTheMedianOfTheSteadyStateSteps) {
  const Trace predicted = steps_of(Source::kSimulated, {1000, 1000, 1000, 1000, 1000});
  const Comparison odd = compare_traces(
      predicted, steps_of(Source::kMeasured, {9000, 1000, 1050, 8000, 1020}), judged_time());
  EXPECT_EQ(odd.ranks[0].step_time.measured, 1035);  // of 1000, 1020, 1050, 8000
  EXPECT_TRUE(odd.time_ok());
  const Comparison three =
      compare_traces(steps_of(Source::kSimulated, {1000, 1000, 1000, 1000}),
                     steps_of(Source::kMeasured, {9000, 1000, 8000, 1020}), judged_time());
  EXPECT_EQ(three.ranks[0].step_time.measured, 1020);
  EXPECT_EQ(three.ranks[0].step_time.predicted, 1000);
}

// The root module's measured name is mapped onto the predicted one.
TEST(CompareTraces, ModuleTimesUseTheAliases) {
  Trace measured = run(Source::kMeasured, {0}, 1000, 3000, 1000, 150);
  for (Op& op : measured.ops)
    if (op.name != kNone && measured.string(op.name) == "model")
      op.name = measured.intern("GPT2LMHeadModel");
  CompareOptions options;
  options.measured_aliases = {{"GPT2LMHeadModel", "model"}};
  const Comparison c = compare_traces(run(Source::kSimulated, {0}), measured, options);
  const auto& modules = c.ranks[0].modules;
  ASSERT_EQ(modules.size(), 2u);  // model and h.0 forward
  EXPECT_EQ(modules[0].module, "model");
  EXPECT_EQ(modules[0].time.predicted, 100);
  EXPECT_EQ(modules[0].time.measured, 150);
  const Comparison unaliased = compare_traces(run(Source::kSimulated, {0}), measured);
  EXPECT_EQ(unaliased.ranks[0].modules.size(), 3u);
}

// A pipeline's measured passes are whole stages: the predicted layers are summed into their
// rank's stage, recomputation into backward, and nothing is left unmatched on either side.
TEST(CompareTraces, APipelinesModulesAreComparedAsItsStages) {
  Builder p(Source::kSimulated, {0});
  Builder m(Source::kMeasured, {0});
  p.trace.ranks[0].pipeline_stage = 1;
  for (std::int32_t s = 0; s < 3; ++s) {
    const TimeNs t0 = s * 1000;
    p.standard_step(s, t0, 1000);  // forward "model" 100 and "h.0" 100
    p.op(OpKind::kRecompute, StreamKind::kCompute, s, t0 + 400, t0 + 450, "h.0");
    p.op(OpKind::kBackward, StreamKind::kCompute, s, t0 + 450, t0 + 650, "h.0");
    m.standard_step(s, t0, 1000, 150);  // forward "model" 150 and "h.0" 100
    m.op(OpKind::kBackward, StreamKind::kCompute, s, t0 + 400, t0 + 700, "stage 1");
  }
  for (Op& op : m.trace.ops)
    if (op.kind == OpKind::kForward) op.name = m.trace.intern("stage 1");
  CompareOptions options;
  options.modules_as_stages = true;
  const Comparison c = compare_traces(p.trace, m.trace, options);
  const auto& modules = c.ranks[0].modules;
  ASSERT_EQ(modules.size(), 2u);
  EXPECT_EQ(modules[0].module, "stage 1");
  EXPECT_EQ(modules[0].kind, OpKind::kBackward);
  EXPECT_EQ(modules[0].time.predicted, 250);  // recomputation 50 and backward 200
  EXPECT_EQ(modules[0].time.measured, 300);
  EXPECT_EQ(modules[1].module, "stage 1");
  EXPECT_EQ(modules[1].kind, OpKind::kForward);
  EXPECT_EQ(modules[1].time.predicted, 200);
  EXPECT_EQ(modules[1].time.measured, 250);
  // Layer by layer, the two sides share no name.
  EXPECT_EQ(compare_traces(p.trace, m.trace).ranks[0].modules.size(), 6u);
}

// The measured trace's steal share says whether its host was quiet enough to judge step time by:
// up to 5% it was; a host that does not count it is taken as quiet. The verdict stands either way.
TEST(CompareTraces, AHostWhoseHypervisorTookMoreThanFivePercentIsBusy) {
  const Trace predicted = run(Source::kSimulated, {0}, 1000, 3000, 1110);
  Trace measured = run(Source::kMeasured, {0});
  Comparison c = compare_traces(predicted, measured, judged_time());
  EXPECT_FALSE(c.host_steal.has_value());
  EXPECT_TRUE(c.host_quiet());
  EXPECT_TRUE(comparison_to_json(c).at("host_steal_share").is_null());
  measured.metadata["host_steal_share"] = 0.05;
  c = compare_traces(predicted, measured, judged_time());
  ASSERT_TRUE(c.host_steal.has_value());
  EXPECT_DOUBLE_EQ(*c.host_steal, 0.05);
  EXPECT_TRUE(c.host_quiet());
  measured.metadata["host_steal_share"] = 0.06;
  c = compare_traces(predicted, measured, judged_time());
  EXPECT_FALSE(c.host_quiet());
  EXPECT_FALSE(c.time_ok()) << "the verdict stands on a busy host";
  const Json j = comparison_to_json(c);
  EXPECT_FALSE(j.at("host_quiet").get<bool>());
  EXPECT_DOUBLE_EQ(j.at("host_steal_share").get<double>(), 0.06);
  EXPECT_DOUBLE_EQ(j.at("targets").at("quiet_host_steal").get<double>(), 0.05);
}

TEST(CompareTraces, JsonCarriesTheVerdicts) {
  Trace predicted = run(Source::kSimulated, {0});
  predicted.ops[0].bytes += 1;
  const Json j = comparison_to_json(compare_traces(predicted, run(Source::kMeasured, {0})));
  EXPECT_FALSE(j.at("within_targets").get<bool>());
  EXPECT_FALSE(j.at("verdicts").at("collectives").get<bool>());
  EXPECT_TRUE(j.at("verdicts").at("memory").get<bool>());
  const Json& rank = j.at("ranks").at(0);
  EXPECT_EQ(rank.at("peak_bytes").at("measured").get<std::int64_t>(), 4000);
  EXPECT_FALSE(rank.at("collectives").at("allgather").at("bytes").at("ok").get<bool>());
  EXPECT_TRUE(rank.at("decisions").at("ok").is_boolean());
}

}  // namespace
}  // namespace zp::trace
