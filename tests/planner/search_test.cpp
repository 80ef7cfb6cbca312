#include "planner/search.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <set>
#include <string>

#include "core/config/run_spec.h"
#include "core/util/error.h"

namespace zp::planner {
namespace {

RunSpec Example(const std::string& name) {
  return load_run_spec(std::string(ZEROPLAN_SOURCE_DIR) + "/configs/examples/" + name);
}

// "llama2-7b-offload.yaml" -> "llama2_7b_offload": a test name.
std::string ExampleTestName(const ::testing::TestParamInfo<const char*>& param) {
  std::string name = param.param;
  name = name.substr(0, name.find('.'));
  std::replace(name.begin(), name.end(), '-', '_');
  return name;
}

// Two fronts, point for point: the same configurations with the same figures.
void ExpectSameFront(const std::vector<Point>& a, const std::vector<Point>& b) {
  ASSERT_EQ(a.size(), b.size());
  for (std::size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].candidate, b[i].candidate);
    EXPECT_EQ(a[i].eval.step_ns, b[i].eval.step_ns);
    EXPECT_EQ(a[i].eval.memory, b[i].eval.memory);
    EXPECT_EQ(a[i].eval.allocated, b[i].eval.allocated);
    EXPECT_EQ(a[i].eval.gathered_bytes, b[i].eval.gathered_bytes);
  }
}

// GPT-2 (124M) on 8 GPUs: a space small enough to simulate exhaustively, with the knobs that move
// memory most left free.
SearchSpace ReducedSpace(const RunSpec& run) {
  SpaceOptions o;
  o.grid_ratio = 4;
  o.pins = {{"contiguous_gradients", "true"},
            {"reduce_bucket_size", "5e8"},
            {"module_granularity_threshold", "0"}};
  return build_search_space(run, o);
}

// What the exhaustive search and the branch and bound are compared on: the objective's values.
struct Outcome {
  bool found;
  TimeNs step;
  std::int64_t memory;
  bool operator==(const Outcome&) const = default;
};
Outcome OutcomeOf(const SearchResult& r) {
  if (!r.best) return {false, 0, 0};
  return {true, r.best->eval.step_ns, r.best->eval.memory};
}
std::ostream& operator<<(std::ostream& os, const Outcome& o) {
  return os << (o.found ? "" : "none ") << o.step << " ns, " << o.memory << " B";
}

class SearchVsExhaustive : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    run_ = new RunSpec(Example("gpt2-zero3.yaml"));
    space_ = new SearchSpace(ReducedSpace(*run_));
    SearchOptions all;
    all.exhaustive = true;
    all.objective = Objective::kPareto;
    everything_ = new SearchResult(search(*run_, *space_, all));
  }
  static void TearDownTestSuite() {
    delete everything_;
    delete space_;
    delete run_;
  }
  // The memory of the configurations simulated exhaustively, least first, to pick budgets from.
  static std::vector<std::int64_t> Memories() {
    std::vector<std::int64_t> m;
    for (const Point& p : everything_->pareto)
      m.push_back(p.eval.memory);
    return m;
  }
  static RunSpec* run_;
  static SearchSpace* space_;
  static SearchResult* everything_;
};
RunSpec* SearchVsExhaustive::run_ = nullptr;
SearchSpace* SearchVsExhaustive::space_ = nullptr;
SearchResult* SearchVsExhaustive::everything_ = nullptr;

TEST_F(SearchVsExhaustive, TheSpaceIsSmallButNotTrivial) {
  EXPECT_GE(space_->size(), 200);
  EXPECT_LE(space_->size(), 10000);
  EXPECT_EQ(everything_->stats.simulated, static_cast<std::int64_t>(everything_->stats.space));
  // Memory and time trade: the front has several points.
  EXPECT_GE(everything_->pareto.size(), 3u);
}

// The exhaustive optimum under a budget is on the exhaustive front: the fastest point that fits
// (ties: the least memory), or the least memory that is fast enough.
Outcome FastestOnFront(const std::vector<Point>& front, std::int64_t budget) {
  Outcome o{false, 0, 0};
  for (const Point& p : front) {
    if (p.eval.memory > budget) continue;
    if (!o.found || p.eval.step_ns < o.step ||
        (p.eval.step_ns == o.step && p.eval.memory < o.memory))
      o = {true, p.eval.step_ns, p.eval.memory};
  }
  return o;
}
Outcome LeastMemoryOnFront(const std::vector<Point>& front, TimeNs budget) {
  Outcome o{false, 0, 0};
  for (const Point& p : front) {
    if (p.eval.step_ns > budget) continue;
    if (!o.found || p.eval.memory < o.memory ||
        (p.eval.memory == o.memory && p.eval.step_ns < o.step))
      o = {true, p.eval.step_ns, p.eval.memory};
  }
  return o;
}

TEST_F(SearchVsExhaustive, FastestUnderABudgetEqualsTheExhaustiveOptimum) {
  const std::vector<std::int64_t> memories = Memories();
  std::vector<std::int64_t> budgets;
  for (std::size_t i = 0; i < memories.size(); i += 2) {
    budgets.push_back(memories[i]);      // exactly a front point's memory
    budgets.push_back(memories[i] - 1);  // just below it
  }
  budgets.push_back(memories.back() * 2);   // everything fits
  budgets.push_back(memories.front() / 2);  // nothing fits
  for (std::int64_t budget : budgets) {
    SearchOptions o;
    o.memory_budget = budget;
    const SearchResult r = search(*run_, *space_, o);
    EXPECT_EQ(OutcomeOf(r), FastestOnFront(everything_->pareto, budget)) << "budget " << budget;
    EXPECT_LT(r.stats.simulated, everything_->stats.simulated) << "budget " << budget;
  }
}

TEST_F(SearchVsExhaustive, LeastMemoryUnderATimeBudgetEqualsTheExhaustiveOptimum) {
  const std::vector<Point>& front = everything_->pareto;
  for (std::size_t i = 0; i < front.size(); i += 2) {
    for (TimeNs budget : {front[i].eval.step_ns, front[i].eval.step_ns - 1}) {
      SearchOptions o;
      o.objective = Objective::kLeastMemory;
      o.time_budget = budget;
      EXPECT_EQ(OutcomeOf(search(*run_, *space_, o)), LeastMemoryOnFront(front, budget))
          << "time budget " << budget;
    }
  }
}

TEST_F(SearchVsExhaustive, TheParetoFrontEqualsTheExhaustiveFront) {
  SearchOptions bnb;
  bnb.objective = Objective::kPareto;
  const SearchResult r = search(*run_, *space_, bnb);
  ASSERT_EQ(r.pareto.size(), everything_->pareto.size());
  for (std::size_t i = 0; i < r.pareto.size(); ++i) {
    EXPECT_EQ(r.pareto[i].eval.memory, everything_->pareto[i].eval.memory) << i;
    EXPECT_EQ(r.pareto[i].eval.step_ns, everything_->pareto[i].eval.step_ns) << i;
  }
  EXPECT_LT(r.stats.simulated, everything_->stats.simulated);
}

TEST_F(SearchVsExhaustive, EveryConfigurationIsSimulatedOrPrunedOnce) {
  SearchOptions o;
  o.memory_budget = Memories()[Memories().size() / 2];
  const SearchResult r = search(*run_, *space_, o);
  const double covered = static_cast<double>(r.stats.reached) + r.stats.pruned_over_budget +
                         r.stats.pruned_dominated + r.stats.pruned_too_slow;
  EXPECT_DOUBLE_EQ(covered, r.stats.space);
  EXPECT_GT(r.stats.pruned_over_budget, 0);
  EXPECT_GT(r.stats.pruned_dominated, 0);
}

TEST_F(SearchVsExhaustive, TheAnswerDoesNotDependOnTheWorkers) {
  SearchOptions one;
  one.memory_budget = Memories()[1];
  one.workers = 1;
  SearchOptions two = one;
  two.workers = 2;
  const SearchResult a = search(*run_, *space_, one);
  const SearchResult b = search(*run_, *space_, two);
  ASSERT_TRUE(a.best && b.best);
  EXPECT_EQ(a.best->candidate, b.best->candidate);
  EXPECT_EQ(a.stats.simulated, b.stats.simulated);
}

// Steps shared between configurations that decide alike (sim::DecisionMemo) change no figure:
// the whole front, point for point, is the one every configuration simulated in full gives.
TEST_F(SearchVsExhaustive, SharedStepsChangeNoResult) {
  SearchOptions all;
  all.exhaustive = true;
  all.objective = Objective::kPareto;
  all.share_decisions = false;
  const SearchResult full = search(*run_, *space_, all);
  EXPECT_EQ(full.stats.shared_steps, 0);
  EXPECT_GT(everything_->stats.shared_steps, 0);
  ExpectSameFront(everything_->pareto, full.pareto);
}

TEST_F(SearchVsExhaustive, NothingFitsGivesTheLeastMemoryFound) {
  SearchOptions o;
  o.memory_budget = Memories().front() - 1;
  const SearchResult r = search(*run_, *space_, o);
  EXPECT_FALSE(r.best);
  ASSERT_TRUE(r.least_memory);
  EXPECT_EQ(r.least_memory->eval.memory, Memories().front());
}

TEST_F(SearchVsExhaustive, AStopKeepsTheBestSoFar) {
  std::atomic<bool> stop{false};
  SearchOptions o;
  o.stop = &stop;
  int calls = 0;
  o.progress = [&](std::int64_t, std::int64_t, const std::optional<Point>&) {
    if (++calls == 1) stop = true;
  };
  SearchOptions all = o;
  all.exhaustive = true;
  const SearchResult r = search(*run_, *space_, all);
  // The progress callback fires a few times a second; on a fast machine the whole space may be
  // done before it first does.
  if (calls > 0) {
    EXPECT_TRUE(r.stats.interrupted);
    EXPECT_LT(r.stats.simulated, static_cast<std::int64_t>(r.stats.space));
  }
  stop = true;
  const SearchResult none = search(*run_, *space_, o);
  EXPECT_TRUE(none.stats.interrupted);
  EXPECT_EQ(none.stats.simulated, 0);
  EXPECT_FALSE(none.best);
}

// Every configuration of `space` simulated, and the branch and bound's fastest choice checked
// against that front at each of its points' memory.
SearchResult ExpectFastestEqualsExhaustive(const RunSpec& run, const SearchSpace& space) {
  SearchOptions all;
  all.exhaustive = true;
  all.objective = Objective::kPareto;
  SearchResult everything = search(run, space, all);
  EXPECT_FALSE(everything.pareto.empty());
  for (const Point& target : everything.pareto) {
    SearchOptions o;
    o.memory_budget = target.eval.memory;
    EXPECT_EQ(OutcomeOf(search(run, space, o)),
              FastestOnFront(everything.pareto, target.eval.memory))
        << "budget " << target.eval.memory;
  }
  return everything;
}

// The layout: each micro-batch is a run of its own (its own model tree and cache per worker). The
// search over it, with a few knobs free beside it, equals the exhaustive search.
TEST(SearchLayout, FastestOverMicroBatchesEqualsTheExhaustiveOptimum) {
  const RunSpec run = Example("gpt2-zero3.yaml");
  SpaceOptions so;
  so.search_layout = true;
  so.pins = {{"contiguous_gradients", "true"},
             {"reduce_bucket_size", "5e8"},
             {"module_granularity_threshold", "0"},
             {"param_persistence_threshold", "1e5"},
             {"max_reuse_distance", "1e9"},
             {"cpu_checkpointing", "false"},
             {"offload_param", "none"}};
  const SearchSpace space = build_search_space(run, so);
  const SearchResult everything = ExpectFastestEqualsExhaustive(run, space);
  ASSERT_FALSE(everything.pareto.empty());
  // Some front point uses a micro-batch other than the run's 8, so the layout changes the answer.
  const std::size_t micro = 0;
  ASSERT_EQ(space.dims[micro].knob->name, "micro_batch");
  bool other = false;
  for (const Point& p : everything.pareto)
    other |= space.dims[micro].values[static_cast<std::size_t>(p.candidate[micro])] != 8;
  EXPECT_TRUE(other);
  // Each layout's prediction is the one its own run spec gives.
  const Point& least = everything.pareto.front();
  RunSpec direct = run;
  set_micro_batch(direct,
                  space.dims[micro].values[static_cast<std::size_t>(least.candidate[micro])]);
  apply(space, least.candidate, direct);
  EXPECT_EQ(evaluate(direct, true).memory, least.eval.memory);
}

// The pipeline layout of a ZeRO-1 run: depth, partition method (idle without a pipeline) and
// micro-batch, with the checkpoint interval and optimizer offload free beside them.
TEST(SearchLayout, FastestOverPipelineDepthsEqualsTheExhaustiveOptimum) {
  const RunSpec run = Example("bert-large-pipeline.yaml");
  SpaceOptions so;
  so.search_layout = true;
  so.ranges = {{"micro_batch", {"4", "16"}}};
  so.pins = {{"contiguous_gradients", "true"},
             {"reduce_bucket_size", "5e8"},
             {"cpu_checkpointing", "false"},
             {"overlap_comm", "false"}};
  const SearchSpace space = build_search_space(run, so);
  const SearchResult everything = ExpectFastestEqualsExhaustive(run, space);
  // Depth 1 leaves the partition method idle: 1 + 2 x 3 layouts of depth and method.
  EXPECT_EQ(everything.stats.space, 7 * 3 * 3 * 2);
  EXPECT_EQ(everything.stats.simulated, 7 * 3 * 3 * 2);
  std::set<std::int64_t> depths;
  for (const Point& p : everything.pareto)
    depths.insert(space.dims[0].values[static_cast<std::size_t>(p.candidate[0])]);
  EXPECT_GE(depths.size(), 2u) << "the front mixes pipeline depths";
}

// Every bundled example, each over a reduced space of its own (coarse grids, the knobs that move
// memory most left free): the branch and bound's answer equals the exhaustive search's. The
// pipeline example searches its layout.
class EveryBundledExample : public ::testing::TestWithParam<const char*> {};

TEST_P(EveryBundledExample, FastestEqualsTheExhaustiveOptimum) {
  const RunSpec run = Example(GetParam());
  SpaceOptions so;
  so.grid_ratio = 16;
  so.pins = {{"contiguous_gradients", "true"},
             {"reduce_bucket_size", "5e8"},
             {"overlap_comm", "true"},
             {"cpu_checkpointing", "false"},
             {"partition_activations", "true"}};
  if (run.deepspeed.zero.stage == 3) {
    so.pins.insert({{"module_granularity_threshold", "0"},
                    {"max_reuse_distance", "1e9"},
                    {"param_persistence_threshold", "1e5"},
                    {"offload_param", "none"}});
  }
  // Tensor-parallel runs simulate slowest: the optimizer stays where the run has it.
  if (run.parallel.tensor > 1) so.pins.insert({"offload_optimizer", "none"});
  if (run.parallel.pipeline > 1) {
    so.search_layout = true;
    so.ranges = {{"micro_batch", {"2", "8"}}};
  }
  const SearchSpace space = build_search_space(run, so);
  ASSERT_LE(space.size(), 300) << "keep the exhaustive search small";
  const SearchResult everything = ExpectFastestEqualsExhaustive(run, space);
  EXPECT_GE(everything.stats.space, 6);
  EXPECT_EQ(everything.stats.simulated, static_cast<std::int64_t>(everything.stats.space));
}

INSTANTIATE_TEST_SUITE_P(Examples, EveryBundledExample,
                         ::testing::Values("tiny-gpt2-cpu.yaml", "tiny-gpt2-pipeline-cpu.yaml",
                                           "gpt2-zero2.yaml", "bert-large-pipeline.yaml",
                                           "llama2-7b-offload.yaml", "mixtral-8x7b-h200.yaml",
                                           "llama2-70b-h100.yaml"),
                         ExampleTestName);

// On every bundled ZeRO-3 example (offload, a mixture of experts, tensor parallelism, CPU), the
// three thresholds that configurations share warm-ups and steps over, searched exhaustively with
// and without sharing: every point of the Pareto front is the same, and some steps were shared.
class SharedStepsOnEveryZero3Example : public ::testing::TestWithParam<const char*> {};

TEST_P(SharedStepsOnEveryZero3Example, ChangeNoResult) {
  const RunSpec run = Example(GetParam());
  SpaceOptions so;
  so.grid_ratio = 16;
  SearchSpace space = build_search_space(run, so);
  // The other knobs at one value each (their least-memory one).
  for (Dimension& d : space.dims) {
    const std::string_view name = d.knob->name;
    if (name == "max_live_parameters" || name == "max_reuse_distance" ||
        name == "prefetch_bucket_size")
      continue;
    d.values.resize(1);
    if (!d.model_caps.empty()) d.model_caps.resize(1);
  }
  ASSERT_LE(space.size(), 200) << "keep the exhaustive searches small";
  SearchOptions o;
  o.exhaustive = true;
  o.objective = Objective::kPareto;
  const SearchResult shared = search(run, space, o);
  o.share_decisions = false;
  const SearchResult full = search(run, space, o);
  EXPECT_GT(shared.stats.shared_steps, 0);
  ExpectSameFront(shared.pareto, full.pareto);
}

INSTANTIATE_TEST_SUITE_P(Examples, SharedStepsOnEveryZero3Example,
                         ::testing::Values("tiny-gpt2-cpu.yaml", "gpt2-zero3.yaml",
                                           "llama2-7b-offload.yaml", "mixtral-8x7b-h200.yaml",
                                           "llama2-70b-h100.yaml"),
                         ExampleTestName);

TEST(Evaluate, MemoryIsReservedWithTheAllocatorModelAndAllocatedWithout) {
  const RunSpec run = Example("gpt2-zero3.yaml");
  const Evaluation with = evaluate(run, true);
  const Evaluation without = evaluate(run, false);
  EXPECT_GT(with.memory, with.allocated);
  EXPECT_EQ(without.memory, without.allocated);
  // Blocks rounded by the allocator model allocate a little more.
  EXPECT_NEAR(static_cast<double>(with.allocated), static_cast<double>(without.allocated),
              0.01 * static_cast<double>(without.allocated));
  EXPECT_GT(with.step_ns, 0);
  EXPECT_GT(with.gathered_bytes, 0);
  EXPECT_TRUE(with.rejected.empty());
}

TEST(Evaluate, TheCheckpointCacheChangesNoResult) {
  RunSpec run = Example("gpt2-zero3.yaml");
  const SearchSpace space = build_search_space(run, {});
  sim::SimCache cache;
  // Every checkpointing setting twice, in an order that revisits cached ones.
  for (int pass = 0; pass < 2; ++pass) {
    for (std::int64_t interval : {1, 2, 0}) {
      for (bool cpu : {false, true}) {
        run.training.checkpoint_interval = interval;
        run.deepspeed.activation_checkpointing.cpu_checkpointing = cpu;
        const Evaluation cached = evaluate(run, true, &cache);
        const Evaluation fresh = evaluate(run, true);
        EXPECT_EQ(cached.step_ns, fresh.step_ns) << interval << cpu;
        EXPECT_EQ(cached.memory, fresh.memory) << interval << cpu;
        EXPECT_EQ(cached.allocated, fresh.allocated) << interval << cpu;
      }
    }
  }
  RunSpec other = run;
  EXPECT_THROW(evaluate(other, true, &cache), InternalError);
}

}  // namespace
}  // namespace zp::planner
