// Plain data parallelism, the baseline ZeRO-3's speed is judged against: every rank holds the whole
// model and optimizer, runs its micro-batches, and the gradients are averaged with one all-reduce
// of a flat buffer after backward; then each rank steps its own optimizer on the same averaged
// gradients. No partitioning, no hooks.
//
// Every rank of the group must call step() together. Not thread-safe.
#pragma once

#include <memory>
#include <vector>

#include "exec/comm/communicator.h"
#include "exec/model/lm_model.h"
#include "exec/train/reference_trainer.h"

namespace zp::exec {

struct DataParallelStats {
  double loss = 0.0;  // mean over this rank's micro-batches
  std::int64_t step_ns = 0;
  std::int64_t comm_wait_ns = 0;
};

class DataParallelTrainer {
 public:
  // `model` must hold the same initial values on every rank, and outlive the trainer.
  DataParallelTrainer(LmModel& model, comm::Communicator& group, const OptimizerSpec& optimizer);
  ~DataParallelTrainer();
  DataParallelTrainer(const DataParallelTrainer&) = delete;
  DataParallelTrainer& operator=(const DataParallelTrainer&) = delete;

  DataParallelStats step(const std::vector<TokenBatch>& micro_batches);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace zp::exec
