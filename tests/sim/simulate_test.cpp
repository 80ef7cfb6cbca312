// The simulation front door: the warnings a person reads first, the trace's description, and the
// bundled examples.
#include "sim/simulate.h"

#include <gtest/gtest.h>

#include <filesystem>

#include "sim/report/result_json.h"

namespace zp::sim {
namespace {

const std::filesystem::path kSource = ZEROPLAN_SOURCE_DIR;

bool Mentions(const std::vector<Warning>& warnings, const std::string& text) {
  for (const Warning& w : warnings) {
    if (w.str().find(text) != std::string::npos) return true;
  }
  return false;
}

RunSpec Gpt2() {
  return load_run_spec(kSource / "configs/examples/gpt2-zero3.yaml");
}

SimulationResult OneRank(std::int64_t peak, std::int64_t host) {
  SimulationResult r;
  RankReport rank;
  rank.label = "all 8 ranks";
  rank.ranks = {0, 1, 2, 3, 4, 5, 6, 7};
  rank.peak.allocated = peak;
  rank.peak.bytes[static_cast<std::size_t>(trace::MemoryCategory::kActivations)] = peak;
  rank.peak_reserved = peak;
  rank.peak_host = host;
  rank.peak_running = "lm_head";
  StepReport step;
  step.trace_mode = "complete";
  step.end_ns = 1000;
  rank.steps.push_back(step);
  r.ranks.push_back(rank);
  return r;
}

TEST(SimulationWarnings, OverGpuMemoryNamesTheLargestContributors) {
  const RunSpec run = Gpt2();  // 80 GiB GPUs
  EXPECT_TRUE(result_warnings(run, OneRank(run.cluster.gpu_memory, 0)).empty());
  const auto w = result_warnings(run, OneRank(run.cluster.gpu_memory + 1, 0));
  ASSERT_EQ(w.size(), 1u);
  EXPECT_NE(w[0].str().find("over GPU memory"), std::string::npos);
  EXPECT_NE(w[0].str().find("activations"), std::string::npos);
  EXPECT_NE(w[0].str().find("lm_head"), std::string::npos);
}

TEST(SimulationWarnings, OverHostMemoryCountsEveryRankOfANode) {
  const RunSpec run = Gpt2();  // 8 GPUs and 2 TiB per node
  const std::int64_t per_rank = run.cluster.host_memory / 8;
  EXPECT_FALSE(Mentions(result_warnings(run, OneRank(0, per_rank)), "host memory"));
  EXPECT_TRUE(Mentions(result_warnings(run, OneRank(0, per_rank + 1)), "over host memory"));
}

TEST(SimulationWarnings, PrefetchStarvedAboveATenthOfTheStep) {
  const RunSpec run = Gpt2();
  SimulationResult r = OneRank(0, 0);
  r.ranks[0].steps[0].exposed_gather_ns = 100;  // a tenth: not yet
  EXPECT_FALSE(Mentions(result_warnings(run, r), "prefetch starved"));
  r.ranks[0].steps[0].exposed_gather_ns = 101;
  EXPECT_TRUE(Mentions(result_warnings(run, r), "prefetch starved"));
  // Before the trace is complete there is no prefetching to starve.
  r.ranks[0].steps[0].trace_mode = "record";
  EXPECT_FALSE(Mentions(result_warnings(run, r), "prefetch starved"));
}

TEST(SimulationWarnings, TraceInvalidationIsReported) {
  const RunSpec run = Gpt2();
  SimulationResult r = OneRank(0, 0);
  r.ranks[0].steps[0].coordinator.invalidations = 2;
  EXPECT_TRUE(Mentions(result_warnings(run, r), "invalidated 2 time(s)"));
}

TEST(Simulate, FillsTheTraceDescriptionAndTheSummary) {
  const RunSpec run = Gpt2();
  trace::Trace t;
  SimOptions options;
  options.model_allocator = false;
  const SimulationResult r = simulate(run, options, &t);
  EXPECT_EQ(t.source, trace::Source::kSimulated);
  EXPECT_EQ(t.metadata["run"], "gpt2-zero3-dgx-a100");
  EXPECT_EQ(t.metadata["summary"], result_to_json(r));
  EXPECT_EQ(t.ranks.size(), 1u);
  EXPECT_EQ(t.ranks[0].ranks.size(), 8u);
  EXPECT_GT(r.step_time_ns, 0);
  EXPECT_GT(r.mfu, 0);
  EXPECT_LT(r.mfu, 1);
}

TEST(Simulate, AllRanksSimulatesEachAndTheyAgreeForDataParallelRuns) {
  RunSpec run = load_run_spec(kSource / "configs/examples/tiny-gpt2-cpu.yaml");
  SimOptions options;
  options.all_ranks = true;
  const SimulationResult r = simulate(run, options);
  ASSERT_EQ(r.ranks.size(), static_cast<std::size_t>(run.parallel.world()));
  for (const RankReport& rank : r.ranks) {
    EXPECT_EQ(rank.ranks.size(), 1u);
    EXPECT_EQ(rank.peak.allocated, r.ranks.front().peak.allocated);
  }
}

TEST(Simulate, BadOptionsAreUserErrors) {
  const RunSpec run = Gpt2();
  SimOptions options;
  options.steps = -1;
  EXPECT_THROW(simulate(run, options), UserError);
}

}  // namespace
}  // namespace zp::sim
