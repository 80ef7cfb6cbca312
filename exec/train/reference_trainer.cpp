#include "exec/train/reference_trainer.h"

#include <ATen/ATen.h>
#include <torch/optim/adamw.h>
#include <torch/optim/sgd.h>

#include <memory>
#include <tuple>

#include "core/util/error.h"

namespace zp::exec {
namespace {

std::uint64_t splitmix64(std::uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

}  // namespace

TokenBatch synthetic_batch(const SyntheticData& data, std::int64_t step) {
  ZP_CHECK(data.global_batch >= 1 && data.seq >= 2 && data.vocab >= 2, "synthetic data ",
           data.global_batch, " x ", data.seq, " over ", data.vocab, " tokens");
  // A counter-based stream (no library distribution, whose output the standard leaves to the
  // implementation): the same tokens on every platform.
  const std::uint64_t base = splitmix64(data.seed) ^ splitmix64(static_cast<std::uint64_t>(step));
  std::uint64_t counter = 0;
  const auto draw = [&] { return splitmix64(base + counter++); };
  const auto vocab = static_cast<std::uint64_t>(data.vocab);

  TokenBatch batch{data.global_batch, data.seq, {}};
  batch.ids.reserve(static_cast<size_t>(data.global_batch * data.seq));
  for (std::int64_t row = 0; row < data.global_batch; ++row) {
    std::uint64_t token = draw() % vocab;
    batch.ids.push_back(static_cast<std::int64_t>(token));
    for (std::int64_t t = 1; t < data.seq; ++t) {
      const std::uint64_t r = draw();
      token = (r & 3) != 0 ? (5 * token + 3) % vocab : (r >> 2) % vocab;
      batch.ids.push_back(static_cast<std::int64_t>(token));
    }
  }
  return batch;
}

TokenBatch micro_batch(const TokenBatch& global, int rank, int world, int micro_step,
                       int accumulation_steps) {
  ZP_CHECK(world >= 1 && rank >= 0 && rank < world, "rank ", rank, " of ", world);
  ZP_CHECK(accumulation_steps >= 1 && micro_step >= 0 && micro_step < accumulation_steps,
           "micro step ", micro_step, " of ", accumulation_steps);
  const std::int64_t parts = static_cast<std::int64_t>(world) * accumulation_steps;
  ZP_CHECK(global.batch % parts == 0, "a global batch of ", global.batch,
           " rows does not split into ", world, " ranks x ", accumulation_steps, " micro steps");
  const std::int64_t rows = global.batch / parts;
  const std::int64_t first =
      (static_cast<std::int64_t>(rank) * accumulation_steps + micro_step) * rows;
  const auto begin = global.ids.begin() + first * global.seq;
  return TokenBatch{rows, global.seq, std::vector<std::int64_t>(begin, begin + rows * global.seq)};
}

std::unique_ptr<torch::optim::Optimizer> make_optimizer(const OptimizerSpec& o,
                                                        const std::vector<at::Tensor>& params) {
  if (o.kind == OptimizerKind::kSgd) {
    return std::make_unique<torch::optim::SGD>(
        params, torch::optim::SGDOptions(o.lr).momentum(o.momentum).weight_decay(o.weight_decay));
  }
  return std::make_unique<torch::optim::AdamW>(params, torch::optim::AdamWOptions(o.lr)
                                                           .betas(std::make_tuple(o.beta1, o.beta2))
                                                           .eps(o.eps)
                                                           .weight_decay(o.weight_decay));
}

ReferenceResult train_reference(const std::optional<ModelConfig>& config, const ModuleTree& tree,
                                const ReferenceRun& run) {
  LmModel model(config, tree, run.init_seed);
  ZP_CHECK(run.data.vocab <= model.config().vocab_size, "synthetic vocabulary ", run.data.vocab,
           " exceeds the model's ", model.config().vocab_size);
  const std::unique_ptr<torch::optim::Optimizer> optimizer =
      make_optimizer(run.optimizer, model.parameters());

  ReferenceResult result;
  for (std::int64_t step = 0; step < run.steps; ++step) {
    const at::Tensor tokens = token_tensor(synthetic_batch(run.data, step));
    optimizer->zero_grad();
    const at::Tensor loss = model.loss(tokens);
    loss.backward();
    optimizer->step();
    result.losses.push_back(loss.item<double>());
  }
  for (ParamId p = 0; p < static_cast<ParamId>(model.parameters().size()); ++p)
    result.parameters.push_back(model.parameter_values(p));
  return result;
}

}  // namespace zp::exec
