// Plain single-process training on the global batch: the reference that ZeRO-3 runs must match
// (losses and parameters after several steps, issue 6's correctness criterion). No partitioning,
// no hooks: one LmModel, torch::optim's SGD or AdamW, the whole global batch per step.
//
// The data: a synthetic token stream from a seed, the same on every run and every rank, and the
// split of a global batch into per-rank micro-batches that the ZeRO-3 engine uses too, so that
// "world ranks x accumulation steps x micro-batch" covers exactly the reference's global batch.
// The loss of a micro-batch is a mean over its tokens and every micro-batch has as many tokens, so
// the mean of the micro-batch losses is the global batch's loss.
//
// For equivalence the model's dropouts must be 0: dropout draws differ between one global batch
// and its micro-batches.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "core/model/model_config.h"
#include "core/model/module_tree.h"
#include "exec/model/lm_model.h"

namespace torch::optim {
class Optimizer;
}  // namespace torch::optim

namespace zp::exec {

struct SyntheticData {
  std::uint64_t seed = 0;
  std::int64_t global_batch = 1;  // rows per step
  std::int64_t seq = 2;
  std::int64_t vocab = 2;
};

// The global batch of training step `step`: each row starts at a random token and then follows a
// fixed rule (next = 5 * token + 3 mod vocab) three times in four, a random token otherwise, so a
// model can learn it and its loss falls. A pure function of (data, step).
TokenBatch synthetic_batch(const SyntheticData& data, std::int64_t step);

// The rows that `rank` of `world` trains on in accumulation step `micro_step` of
// `accumulation_steps`: rank r owns the contiguous rows [r, r + 1) * accumulation_steps * m, and
// its micro step s the m rows at offset s * m in them, m = global.batch / (world *
// accumulation_steps), which must divide evenly. Concatenated in (rank, micro step) order they are
// the global batch.
TokenBatch micro_batch(const TokenBatch& global, int rank, int world, int micro_step = 0,
                       int accumulation_steps = 1);

enum class OptimizerKind : std::uint8_t { kSgd, kAdamW };

// torch::optim's hyperparameters (DeepSpeed's optimizer params carry the same names).
struct OptimizerSpec {
  OptimizerKind kind = OptimizerKind::kSgd;
  double lr = 1e-3;
  double momentum = 0.0;  // SGD
  double weight_decay = 0.0;
  double beta1 = 0.9;  // AdamW
  double beta2 = 0.999;
  double eps = 1e-8;
};

// torch::optim's optimizer for `spec` over `params`.
std::unique_ptr<torch::optim::Optimizer> make_optimizer(const OptimizerSpec& spec,
                                                        const std::vector<at::Tensor>& params);

struct ReferenceRun {
  std::int64_t steps = 1;
  std::uint64_t init_seed = 0;  // LmModel's initialisation
  SyntheticData data;
  OptimizerSpec optimizer;
};

struct ReferenceResult {
  std::vector<double> losses;                  // per step, before that step's update
  std::vector<std::vector<float>> parameters;  // by ParamId, after the last step
};

// Trains `tree` (built from `config`; LmModel's UserErrors for models exec cannot run) for
// `run.steps` steps on synthetic_batch(run.data, step).
ReferenceResult train_reference(const std::optional<ModelConfig>& config, const ModuleTree& tree,
                                const ReferenceRun& run);

}  // namespace zp::exec
