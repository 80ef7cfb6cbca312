#pragma once
// The optimizers the engines step: AdamW and SGD with torch::optim's semantics, each tensor
// updated in one pass over its elements, as DeepSpeed's fused optimizers do (FusedAdam on a GPU,
// DeepSpeedCPUAdam on a CPU). torch::optim's update is a chain of element-wise operations, each a
// pass over memory and a dispatch of its own, with temporaries; the simulator prices the fused
// update, so the engines run that one.

#include <cstdint>
#include <vector>

#include <ATen/core/ATen_fwd.h>

#include "exec/train/reference_trainer.h"

namespace zp::exec {

class FusedOptimizer {
 public:
  explicit FusedOptimizer(const OptimizerSpec& spec);

  // One step of params[i] against grads[i] (same numel, contiguous; an undefined gradient skips
  // its parameter, as torch::optim does). The state of params[i] (AdamW's moments, SGD's momentum)
  // is made on its first step and kept by position: pass the same tensors in the same order every
  // step. fp32 tensors on the CPU take the one-pass loop; any other (CUDA, other dtypes) torch's
  // element-wise chain with the same arithmetic, over pieces of 16 Ki elements so that its
  // temporaries stay small.
  void step(const std::vector<at::Tensor>& params, const std::vector<at::Tensor>& grads);

 private:
  OptimizerSpec spec_;
  std::vector<std::int64_t> steps_;  // by position: steps params[i] has taken
  std::vector<at::Tensor> first_;    // AdamW's exp_avg; SGD's momentum buffer
  std::vector<at::Tensor> second_;   // AdamW's exp_avg_sq
};

}  // namespace zp::exec
