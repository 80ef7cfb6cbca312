#include "exec/train/reference_trainer.h"

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "core/util/error.h"
#include "tests/exec/model/tiny_models.h"

namespace zp::exec {
namespace {

using testing::kTinyVocab;
using testing::tiny_family;
using testing::tiny_gpt2;
using testing::tiny_llama;
using testing::tiny_tree;

SyntheticData data(std::int64_t global_batch = 8) {
  return SyntheticData{.seed = 7, .global_batch = global_batch, .seq = 12, .vocab = kTinyVocab};
}

// --- Data ----------------------------------------------------------------------------------------

TEST(SyntheticData, IsAPureFunctionOfSeedAndStep) {
  const TokenBatch a = synthetic_batch(data(), 3);
  EXPECT_EQ(a.batch, 8);
  EXPECT_EQ(a.seq, 12);
  ASSERT_EQ(a.ids.size(), 96u);
  EXPECT_EQ(a, synthetic_batch(data(), 3));
  EXPECT_NE(a, synthetic_batch(data(), 4));
  SyntheticData other = data();
  other.seed = 8;
  EXPECT_NE(a, synthetic_batch(other, 3));
  for (const std::int64_t id : a.ids) {
    EXPECT_GE(id, 0);
    EXPECT_LT(id, kTinyVocab);
  }
}

TEST(SyntheticData, MostlyFollowsItsRuleSoItCanBeLearned) {
  const TokenBatch b = synthetic_batch(data(64), 0);
  int follows = 0, pairs = 0;
  for (std::int64_t row = 0; row < b.batch; ++row) {
    for (std::int64_t t = 1; t < b.seq; ++t) {
      const std::int64_t prev = b.ids[static_cast<size_t>(row * b.seq + t - 1)];
      follows += b.ids[static_cast<size_t>(row * b.seq + t)] == (5 * prev + 3) % kTinyVocab;
      ++pairs;
    }
  }
  // Three in four by rule, and one in 64 of the random draws by chance.
  EXPECT_NEAR(static_cast<double>(follows) / pairs, 0.75 + 0.25 / kTinyVocab, 0.05);
}

TEST(MicroBatch, RanksAndMicroStepsConcatenateToTheGlobalBatch) {
  const TokenBatch global = synthetic_batch(data(16), 0);
  for (const auto& [world, accumulation] : {std::pair{1, 1}, {2, 1}, {4, 2}, {2, 4}}) {
    TokenBatch joined{0, global.seq, {}};
    for (int rank = 0; rank < world; ++rank) {
      for (int step = 0; step < accumulation; ++step) {
        const TokenBatch part = micro_batch(global, rank, world, step, accumulation);
        EXPECT_EQ(part.batch, 16 / (world * accumulation));
        EXPECT_EQ(part.seq, global.seq);
        joined.batch += part.batch;
        joined.ids.insert(joined.ids.end(), part.ids.begin(), part.ids.end());
      }
    }
    EXPECT_EQ(joined, global) << world << " ranks x " << accumulation;
  }
  // Rank 1 of 2 owns the second half.
  const TokenBatch second = micro_batch(global, 1, 2);
  EXPECT_EQ(std::vector<std::int64_t>(global.ids.begin() + 8 * global.seq, global.ids.end()),
            second.ids);
}

TEST(MicroBatch, MeanOfMicroBatchLossesIsTheGlobalLoss) {
  // What makes N ranks x micro-batch equal to the reference: equal-sized micro-batches whose mean
  // losses average to the global batch's mean loss.
  const ModelConfig c = tiny_gpt2();
  LmModel model(c, tiny_tree(c), 1);
  const TokenBatch global = synthetic_batch(data(8), 0);
  double sum = 0;
  for (int rank = 0; rank < 4; ++rank)
    sum += model.loss(micro_batch(global, rank, 4));
  EXPECT_NEAR(sum / 4, model.loss(global), 1e-6);
}

// --- Training ------------------------------------------------------------------------------------

ReferenceRun run(OptimizerKind kind, double lr, std::int64_t steps, std::int64_t batch = 8) {
  ReferenceRun r;
  r.steps = steps;
  r.init_seed = 3;
  r.data = data(batch);
  r.optimizer.kind = kind;
  r.optimizer.lr = lr;
  return r;
}

void expect_loss_falls(const ReferenceResult& result) {
  ASSERT_GE(result.losses.size(), 2u);
  EXPECT_NEAR(result.losses.front(), std::log(static_cast<double>(kTinyVocab)), 0.05);
  EXPECT_LT(result.losses.back(), result.losses.front() - 0.2)
      << "first " << result.losses.front() << ", last " << result.losses.back();
}

TEST(ReferenceTrainer, SgdLowersTheLoss) {
  // Each step sees a new batch, so the loss is noisy; the margin is well above that noise.
  ReferenceRun gpt2_run = run(OptimizerKind::kSgd, 0.1, 10, 16);
  gpt2_run.optimizer.momentum = 0.9;
  const ReferenceResult gpt2 = train_reference(tiny_gpt2(), tiny_tree(tiny_gpt2()), gpt2_run);
  EXPECT_EQ(gpt2.losses.size(), 10u);
  expect_loss_falls(gpt2);
  expect_loss_falls(
      train_reference(tiny_llama(), tiny_tree(tiny_llama()), run(OptimizerKind::kSgd, 0.3, 10)));
}

TEST(ReferenceTrainer, AdamWLowersTheLoss) {
  for (const ModelConfig& c : {tiny_gpt2(), tiny_llama()}) {
    SCOPED_TRACE(c.name);
    expect_loss_falls(train_reference(c, tiny_tree(c), run(OptimizerKind::kAdamW, 1e-2, 10)));
  }
}

TEST(ReferenceTrainer, RunsAreIdenticalAndReturnTheTrainedParameters) {
  const ModelConfig c = tiny_llama();
  const ModuleTree tree = tiny_tree(c);
  const ReferenceRun r = run(OptimizerKind::kSgd, 0.5, 3);
  const ReferenceResult a = train_reference(c, tree, r), b = train_reference(c, tree, r);
  EXPECT_EQ(a.losses, b.losses);
  EXPECT_EQ(a.parameters, b.parameters);
  ASSERT_EQ(a.parameters.size(), tree.parameters().size());
  for (size_t p = 0; p < a.parameters.size(); ++p)
    EXPECT_EQ(static_cast<std::int64_t>(a.parameters[p].size()), tree.parameters()[p].numel());
  // Trained: the parameters moved away from their initial values.
  EXPECT_NE(a.parameters[0], LmModel(c, tree, r.init_seed).parameter_values(0));
}

TEST(ReferenceTrainer, RefusesFamiliesExecCannotRun) {
  const ModelConfig bert = tiny_family(ModelFamily::kBert);
  EXPECT_THROW(train_reference(bert, tiny_tree(bert), run(OptimizerKind::kSgd, 0.1, 1)), UserError);
}

}  // namespace
}  // namespace zp::exec
