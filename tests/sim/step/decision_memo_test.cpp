// Steps shared between runs that decide alike: the memo must hand back exactly the rank a full
// simulation gives, and share only where the decisions really are the same.
#include "sim/step/decision_memo.h"

#include <gtest/gtest.h>

#include <set>
#include <string>

#include "core/config/document.h"
#include "core/config/run_spec.h"
#include "sim/report/result_json.h"
#include "sim/simulate.h"
#include "sim/step/sim_cache.h"

namespace zp::sim {
namespace {

TEST(DecisionDigest, OrderAndValuesCount) {
  const auto digest = [](std::initializer_list<std::int64_t> words) {
    DecisionDigest d;
    for (std::int64_t w : words)
      d.add(w);
    return d.value();
  };
  EXPECT_EQ(digest({1, 2, 3}), digest({1, 2, 3}));
  EXPECT_NE(digest({1, 2, 3}), digest({3, 2, 1}));
  EXPECT_NE(digest({1, 2, 3}), digest({1, 2, 3, 0}));
  EXPECT_NE(digest({0}), digest({}));
  // Each half on its own tells these apart too: a false match needs both to collide.
  EXPECT_NE(digest({1, 2}).first, digest({2, 1}).first);
  EXPECT_NE(digest({1, 2}).second, digest({2, 1}).second);
}

TEST(DecisionMemo, FindsWhatWasStored) {
  DecisionMemo memo;
  RankReport r;
  r.peak_reserved = 42;
  memo.store({1, 2}, r);
  EXPECT_FALSE(memo.find({1, 3}).has_value());
  ASSERT_TRUE(memo.find({1, 2}).has_value());
  EXPECT_EQ(memo.find({1, 2})->peak_reserved, 42);
  EXPECT_EQ(memo.hits(), 2);
  EXPECT_EQ(memo.size(), 1);
}

// Warm-ups are large (a model, its schedule, the trace): the memo keeps the most recently used.
TEST(DecisionMemo, KeepsTheMostRecentlyUsedWarmUps) {
  DecisionMemo memo;
  const auto context = [](std::int64_t i) { return std::vector<std::int64_t>{i}; };
  for (std::int64_t i = 0; i < static_cast<std::int64_t>(DecisionMemo::kMaxWarmUps); ++i)
    memo.store_warm_up(context(i), nullptr, {});
  ASSERT_NE(memo.warm_up(context(0), nullptr), nullptr);  // now the most recently used
  memo.store_warm_up(context(-1), nullptr, {});
  EXPECT_NE(memo.warm_up(context(0), nullptr), nullptr);
  EXPECT_EQ(memo.warm_up(context(1), nullptr), nullptr);  // the least recently used went
  EXPECT_NE(memo.warm_up(context(2), nullptr), nullptr);
  EXPECT_NE(memo.warm_up(context(-1), nullptr), nullptr);
  // The tree is part of the key.
  ModuleTree other;
  EXPECT_EQ(memo.warm_up(context(0), &other), nullptr);
}

RunSpec Gpt2(std::int64_t live, std::int64_t reuse, std::int64_t bucket,
             std::int64_t accumulation = 1) {
  const std::string yaml =
      "model: gpt2\ncluster: {preset: dgx-a100-80g, nodes: 1}\n"
      "training: {sequence_length: 1024, micro_batch: 2, dtype: bf16, checkpoint_interval: 1}\n"
      "deepspeed: {train_micro_batch_size_per_gpu: 2, gradient_accumulation_steps: " +
      std::to_string(accumulation) +
      ", "
      "bf16: {enabled: true}, zero_optimization: {stage: 3, stage3_max_live_parameters: " +
      std::to_string(live) + ", stage3_max_reuse_distance: " + std::to_string(reuse) +
      ", stage3_prefetch_bucket_size: " + std::to_string(bucket) + "}}\n";
  return parse_run_spec(Document::from_yaml(yaml, "memo.yaml"), ".");
}

// Over a grid of the three thresholds, every result through the memo equals the full simulation's,
// field for field; some runs share a step (no prefetch makes the live limit moot) and some do not.
// With two micro-steps the warm-up reads the thresholds (its second micro-step runs with the trace
// complete), so it must not be shared: the results still equal.
class SharedSteps : public ::testing::TestWithParam<std::int64_t> {};

TEST_P(SharedSteps, EqualFullSimulations) {
  DecisionMemo memo;
  std::set<std::string> distinct;
  int runs = 0;
  for (std::int64_t live : {20'000'000, 60'000'000, 1'000'000'000})
    for (std::int64_t reuse : {0, 10'000'000, 1'000'000'000})
      for (std::int64_t bucket : {0, 5'000'000, 50'000'000}) {
        const RunSpec run = Gpt2(live, reuse, bucket, GetParam());
        SimOptions plain;
        SimOptions shared;
        shared.memo = &memo;
        shared.memo_context = {7};
        const std::string full = result_to_json(simulate(run, plain)).dump();
        const std::string through_memo = result_to_json(simulate(run, shared)).dump();
        EXPECT_EQ(through_memo, full) << live << " " << reuse << " " << bucket;
        distinct.insert(full);
        ++runs;
      }
  // Without prefetch the three live limits decide alike: at least those runs share.
  EXPECT_GE(memo.hits(), 6);
  EXPECT_EQ(memo.size() + memo.hits(), runs);
  // Only identical decisions share: as many entries as the runs gave different results, or more
  // (different decisions may still come out the same).
  EXPECT_GE(memo.size(), static_cast<std::int64_t>(distinct.size()));
  EXPECT_GT(distinct.size(), 1u);
  // One warm-up served the whole grid, or none was kept.
  EXPECT_EQ(memo.warm_ups(), GetParam() == 1 ? 1 : 0);
}
INSTANTIATE_TEST_SUITE_P(Accumulation, SharedSteps, ::testing::Values(1, 2));

// The context is part of the key: runs the caller says differ never share a step.
TEST(DecisionMemo, ContextSeparatesRuns) {
  DecisionMemo memo;
  const RunSpec run = Gpt2(1'000'000'000, 1'000'000'000, 50'000'000);
  SimOptions a;
  a.memo = &memo;
  a.memo_context = {1};
  SimOptions b = a;
  b.memo_context = {2};
  simulate(run, a);
  simulate(run, b);
  EXPECT_EQ(memo.hits(), 0);
  EXPECT_EQ(memo.size(), 2);
  simulate(run, a);
  EXPECT_EQ(memo.hits(), 1);
}

// A trace needs the step simulated: the memo is not consulted then.
TEST(DecisionMemo, NotUsedWithATrace) {
  DecisionMemo memo;
  const RunSpec run = Gpt2(1'000'000'000, 1'000'000'000, 50'000'000);
  SimOptions options;
  options.memo = &memo;
  trace::Trace t;
  simulate(run, options, &t);
  simulate(run, options, &t);
  EXPECT_EQ(memo.size(), 0);
  EXPECT_FALSE(t.ops.empty());
}

}  // namespace
}  // namespace zp::sim
