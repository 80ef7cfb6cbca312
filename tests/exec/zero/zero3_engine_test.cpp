#include "exec/zero/zero3_engine.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <mutex>
#include <string>
#include <vector>

#include "core/trace/trace.h"
#include "core/zero/training_step.h"
#include "exec/comm/trace_records.h"
#include "tests/exec/comm/rank_threads.h"
#include "tests/exec/model/tiny_models.h"
#include "tests/exec/train/same_training.h"

namespace zp::exec {
namespace {

using testing::kTinyVocab;
using testing::tiny_gpt2;
using testing::tiny_llama;
using testing::tiny_tree;

// Thresholds small enough for the tiny models (parameters of 32 to 4096 elements) that every
// mechanism acts: prefetch in the traced steps, releases after each module, parameters gathered
// again in backward, several gradient buckets, and a few persistent parameters (the norms).
zero::ZeroSettings tight(int world) {
  zero::ZeroSettings s;
  s.data_parallel_size = world;
  s.prefetch_bucket_size = 3000;
  s.max_live_parameters = 8000;
  s.max_reuse_distance = 2000;
  s.param_persistence_threshold = 40;
  s.reduce_bucket_size = 5000;
  return s;
}

struct Case {
  ModelConfig config;
  int world = 2;
  int accumulation = 1;
  std::int64_t checkpoint_interval = 0;
  std::int64_t steps = 3;
  OptimizerSpec optimizer;
  zero::ZeroSettings settings;
};

struct Outcome {
  std::vector<double> losses;                  // per step, the mean over ranks
  std::vector<std::vector<float>> parameters;  // by ParamId, gathered after the last step
  std::vector<Zero3StepStats> stats;           // rank 0's, per step
  std::vector<std::string> decisions;          // rank 0's
};

SyntheticData data_for(const Case& c) {
  return SyntheticData{
      .seed = 11, .global_batch = 2 * c.world * c.accumulation, .seq = 12, .vocab = kTinyVocab};
}

Outcome train_zero3(const Case& c) {
  const ModuleTree tree = tiny_tree(c.config);
  zero::ZeroSettings settings = c.settings;
  settings.data_parallel_size = c.world;
  const zero::ZeroModel zero_model(tree, settings);
  const SyntheticData data = data_for(c);

  Outcome out;
  out.losses.assign(static_cast<std::size_t>(c.steps), 0.0);
  std::mutex mutex;
  comm::testing::run_ranks(c.world, [&](comm::Communicator& group) {
    LmModel model(c.config, tree, /*seed=*/5);
    model.set_checkpoint_interval(c.checkpoint_interval);
    Zero3Engine engine(model, zero_model, group, Zero3Options{c.optimizer});
    engine.set_decision_logging(group.rank() == 0);
    std::vector<Zero3StepStats> stats;
    for (std::int64_t step = 0; step < c.steps; ++step) {
      const TokenBatch global = synthetic_batch(data, step);
      std::vector<TokenBatch> micro;
      for (int s = 0; s < c.accumulation; ++s)
        micro.push_back(micro_batch(global, group.rank(), c.world, s, c.accumulation));
      stats.push_back(engine.step(micro));
      std::lock_guard<std::mutex> lock(mutex);
      out.losses[static_cast<std::size_t>(step)] += stats.back().loss / c.world;
    }
    std::vector<std::vector<float>> params;
    for (ParamId p = 0; p < static_cast<ParamId>(tree.parameters().size()); ++p)
      params.push_back(engine.gathered_parameter(p));
    if (group.rank() == 0) {
      std::lock_guard<std::mutex> lock(mutex);
      out.parameters = std::move(params);
      out.stats = std::move(stats);
      out.decisions = engine.decision_log();
    }
  });
  return out;
}

ReferenceResult train_plain(const Case& c) {
  return train_reference(
      c.config, tiny_tree(c.config),
      ReferenceRun{
          .steps = c.steps, .init_seed = 5, .data = data_for(c), .optimizer = c.optimizer});
}

void expect_same_training(const Case& c) {
  const Outcome got = train_zero3(c);
  testing::expect_same_training(tiny_tree(c.config), c.optimizer, train_plain(c), got.losses,
                                got.parameters);
}

OptimizerSpec sgd() {
  return testing::test_sgd();
}
OptimizerSpec adamw() {
  return testing::test_adamw();
}

TEST(Zero3Engine, TwoRanksTrainLikeOneProcess) {
  expect_same_training(
      Case{.config = tiny_gpt2(), .world = 2, .optimizer = sgd(), .settings = tight(2)});
}

TEST(Zero3Engine, FourRanksWithAccumulationAndAdamWTrainLikeOneProcess) {
  expect_same_training(Case{.config = tiny_llama(),
                            .world = 4,
                            .accumulation = 2,
                            .optimizer = adamw(),
                            .settings = tight(4)});
}

TEST(Zero3Engine, CheckpointedTrainingMatchesToo) {
  expect_same_training(Case{.config = tiny_gpt2(),
                            .world = 2,
                            .checkpoint_interval = 1,
                            .optimizer = sgd(),
                            .settings = tight(2)});
  expect_same_training(Case{.config = tiny_llama(),
                            .world = 4,
                            .checkpoint_interval = 2,
                            .optimizer = adamw(),
                            .settings = tight(4)});
}

TEST(Zero3Engine, GptWithAdamWMatchesWhereTheGradientIsNotNoise) {
  expect_same_training(
      Case{.config = tiny_gpt2(), .world = 2, .optimizer = adamw(), .settings = tight(2)});
}

TEST(Zero3Engine, ContiguousAllReducePathMatchesToo) {
  zero::ZeroSettings s = tight(2);
  s.reduce_scatter = false;
  expect_same_training(Case{.config = tiny_llama(), .world = 2, .optimizer = sgd(), .settings = s});
}

TEST(Zero3Engine, TightThresholdsPrefetchReleaseAndGatherAgainInBackward) {
  const Outcome got = train_zero3(
      Case{.config = tiny_gpt2(), .world = 2, .optimizer = sgd(), .settings = tight(2)});
  const auto count = [&](const std::string& what) {
    return std::count_if(got.decisions.begin(), got.decisions.end(),
                         [&](const std::string& d) { return d.find(what) != std::string::npos; });
  };
  EXPECT_GT(count("] prefetch"), 0);
  EXPECT_GT(count("] demand"), 0);
  EXPECT_GT(count("release "), 0);
  EXPECT_GT(count("pre_backward "), 0);
  EXPECT_GT(count("post_backward "), 0);
  // Several buckets per step: reduce_bucket_size is below the model's size.
  EXPECT_GT(got.stats.back().buckets, 1);
  // Each step gathers more than the model, since backward gathers parameters again.
  const ModuleTree tree = tiny_tree(tiny_gpt2());
  EXPECT_GT(got.stats.back().gathered_numel, tree.total_parameters());
}

// A measured trace names each gather's module and parameters (through the communicator's log)
// and has a release op for each parameter released, named by the parameter and its module.
TEST(Zero3Engine, TracedGathersNameTheirModuleAndReleasesAreRecorded) {
  const Case c{.config = tiny_gpt2(), .world = 2, .optimizer = sgd(), .settings = tight(2)};
  const ModuleTree tree = tiny_tree(c.config);
  const zero::ZeroModel zero_model(tree, c.settings);
  const SyntheticData data = data_for(c);
  trace::Trace t;
  std::int64_t releases = 0, gathers = 0;
  std::mutex mutex;
  comm::testing::run_ranks(c.world, [&](comm::Communicator& group) {
    LmModel model(c.config, tree, /*seed=*/5);
    Zero3Engine engine(model, zero_model, group, Zero3Options{c.optimizer});
    trace::Trace mine;
    mine.ranks.push_back({"rank", {group.rank()}, 0});
    engine.record_into(&mine, 0, 0);
    group.log().clear();
    std::int64_t released = 0, gathered = 0;
    for (std::int64_t step = 0; step < 2; ++step) {
      const TokenBatch global = synthetic_batch(data, step);
      const Zero3StepStats stats = engine.step({micro_batch(global, group.rank(), c.world, 0, 1)});
      released += stats.releases;
      gathered += stats.gathers;
      comm::append_to_trace(
          group.log().records(),
          comm::TraceTarget{0, "data", c.world, 0, static_cast<std::int32_t>(step)}, mine);
      group.log().clear();
    }
    engine.record_into(nullptr, 0, 0);
    if (group.rank() == 0) {
      std::lock_guard<std::mutex> lock(mutex);
      t = std::move(mine);
      releases = released;
      gathers = gathered;
    }
  });
  std::int64_t release_ops = 0, attributed = 0;
  for (const trace::Op& op : t.ops) {
    if (op.kind == trace::OpKind::kRelease) {
      ++release_ops;
      ASSERT_NE(op.module, trace::kNone);
      ASSERT_NE(op.params, trace::kNone);
      // The module that owns the parameter qualifies its name.
      EXPECT_TRUE(t.string(op.params).starts_with(t.string(op.module) + "."))
          << t.string(op.params) << " released by " << t.string(op.module);
      EXPECT_EQ(op.start, op.end);
      EXPECT_GT(op.bytes, 0);
      EXPECT_EQ(op.name, op.params);
    }
    if (op.kind == trace::OpKind::kAllGather && op.module != trace::kNone) {
      ++attributed;
      ASSERT_NE(op.params, trace::kNone);
      EXPECT_FALSE(t.string(op.params).empty());
    }
  }
  EXPECT_EQ(release_ops, releases);
  EXPECT_GT(release_ops, 0);
  // Every gather but those outside the coordinator (persistent parameters after the step).
  EXPECT_GT(attributed, 0);
  EXPECT_LE(attributed, gathers);
}

// The real hooks drive the coordinator exactly as the simulator's schedule does: the same gathers,
// with the same parameters for the same reasons, step after step.
class RecordingBackend : public zero::CoordinatorBackend, public zero::GradientReducerBackend {
 public:
  void start_gather(const zero::GatherRequest& r) override {
    std::string line = "gather " + std::to_string(r.handle) + " [";
    for (std::size_t i = 0; i < r.params.size(); ++i)
      line += (i ? " " : "") + std::to_string(r.params[i]);
    gathers.push_back(line + "] " + std::string(zero::to_string(r.reason)));
  }
  void wait_gather(zero::GatherHandle) override {}
  void release(ParamId, zero::ReleaseReason) override {}
  void reduce(const zero::GradBucket&) override {}
  std::vector<std::string> gathers;
};

// The calls of each decoder block: the segments that checkpointing every block recomputes.
std::vector<zero::RecomputeRange> block_ranges(const ModuleTree& tree) {
  std::vector<zero::RecomputeRange> ranges;
  const std::vector<ForwardCall>& calls = tree.calls();
  for (std::size_t i = 0; i < calls.size(); ++i) {
    if (tree.module(calls[i].module).type != "GPT2Block") continue;
    std::size_t end = i + 1;
    const auto inside = [&](std::int32_t c) {
      for (; c != kNoCall; c = calls[static_cast<std::size_t>(c)].parent_call)
        if (c == static_cast<std::int32_t>(i)) return true;
      return false;
    };
    while (end < calls.size() && inside(static_cast<std::int32_t>(end)))
      ++end;
    ranges.push_back({static_cast<std::int32_t>(i), static_cast<std::int32_t>(end)});
  }
  return ranges;
}

struct DecisionCase {
  const char* name;
  zero::ZeroSettings settings;
  std::int64_t checkpoint_interval = 0;
};

class Zero3Decisions : public ::testing::TestWithParam<DecisionCase> {};

TEST_P(Zero3Decisions, GathersAreTheSimulatorsDecisions) {
  const Case c{.config = tiny_gpt2(),
               .world = 2,
               .checkpoint_interval = GetParam().checkpoint_interval,
               .steps = 3,
               .optimizer = sgd(),
               .settings = GetParam().settings};
  const Outcome got = train_zero3(c);
  std::vector<std::string> real;
  for (const std::string& d : got.decisions)
    if (d.rfind("gather ", 0) == 0) real.push_back(d);

  const ModuleTree tree = tiny_tree(c.config);
  const zero::ZeroModel zero_model(tree, c.settings);
  RecordingBackend backend;
  zero::TrainingLoop loop(
      zero_model, backend, backend, nullptr,
      c.checkpoint_interval > 0 ? block_ranges(tree) : std::vector<zero::RecomputeRange>{});
  loop.initialize();
  backend.gathers.clear();  // the engine's log starts after its setup
  for (std::int64_t s = 0; s < c.steps; ++s)
    loop.step();
  EXPECT_EQ(real, backend.gathers);
  EXPECT_GT(real.size(), 10u);
}

zero::ZeroSettings with_leaves(std::vector<std::string> classes) {
  zero::ZeroSettings s = tight(2);
  s.leaf_module_classes = std::move(classes);
  return s;
}

zero::ZeroSettings with_granularity(std::int64_t threshold) {
  zero::ZeroSettings s = tight(2);
  s.module_granularity_threshold = threshold;
  return s;
}

zero::ZeroSettings prefetch_off() {
  zero::ZeroSettings s = tight(2);
  s.prefetch_bucket_size = 0;
  s.max_reuse_distance = 0;
  s.param_persistence_threshold = 0;
  return s;
}

INSTANTIATE_TEST_SUITE_P(Settings, Zero3Decisions,
                         ::testing::Values(DecisionCase{"tight", tight(2)},
                                           DecisionCase{"defaults",
                                                        [] {
                                                          zero::ZeroSettings s;
                                                          s.data_parallel_size = 2;
                                                          return s;
                                                        }()},
                                           DecisionCase{"prefetch_off", prefetch_off()},
                                           DecisionCase{"checkpointed", tight(2), 1},
                                           DecisionCase{"mlp_leaves", with_leaves({"GPT2MLP"})},
                                           DecisionCase{"granularity", with_granularity(1000)}),
                         [](const ::testing::TestParamInfo<DecisionCase>& p) {
                           return p.param.name;
                         });

// z3 leaves gather their whole subtree at once and reduce its gradients together; the mathematics
// stays the same.
TEST(Zero3Engine, LeafModulesTrainLikeOneProcess) {
  expect_same_training(Case{.config = tiny_gpt2(),
                            .world = 2,
                            .optimizer = sgd(),
                            .settings = with_leaves({"GPT2MLP", "GPT2Attention"})});
}

}  // namespace
}  // namespace zp::exec
