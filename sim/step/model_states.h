// What a rank holds for good under ZeRO: parameter partitions, master weights, optimizer states
// and gradient partitions, on the GPU or offloaded; and DeepSpeed's own closed-form estimate of
// the same, estimate_zero3_model_states_mem_needs.
#pragma once

#include <cstdint>
#include <string>

#include "core/config/ds_config.h"
#include "core/model/module_tree.h"
#include "sim/step/step_result.h"

namespace zp::sim {

// Bytes per partitioned element of the fp32 master copy and of the optimizer's states. Adam and
// its variants (adam, adamw, fusedadam, cpuadam, lamb, onebitadam, zerooneadam, onebitlamb) keep
// two fp32 moments; SGD one momentum buffer; Adagrad one sum of squares; Lion one moment. A config
// without an optimizer section is taken as Adam, what nearly every ZeRO-3 run uses. UserError for
// an optimizer type this table does not know.
struct OptimizerShape {
  std::string name;
  int master_bytes = 4;
  int state_bytes = 8;
  // Bytes read and written per element by one step on the GPU: gradient, master weights and
  // states read and written, the 16-bit parameter written.
  int step_bytes(int grad_bytes, int param_bytes) const {
    return grad_bytes + 2 * master_bytes + 2 * state_bytes + param_bytes;
  }
};
OptimizerShape optimizer_shape(const DeepSpeedConfig& config);

// DeepSpeed's model_to_params: the largest number of elements registered directly on one module
// (what the estimate takes as the largest layer). A tied parameter counts on every module that
// registers it; one registered twice on the same module counts once there, as
// parameters(recurse=False) yields it once.
std::int64_t largest_layer_params(const ModuleTree& tree);

// DeepSpeed's estimate_zero3_model_states_mem_needs, with zero_init and additional_buffer_factor
// 1.5 as its defaults. gpu: 4 bytes per element of the largest layer plus 18 per element of the
// model over the GPUs (2 with the optimizer offloaded but parameters on the GPU, none with both
// offloaded); cpu: per node.
DeepSpeedEstimate deepspeed_zero3_estimate(std::int64_t total_params,
                                           std::int64_t largest_layer_params,
                                           std::int64_t gpus_per_node, std::int64_t nodes,
                                           bool cpu_offload, bool cpu_offload_params);

}  // namespace zp::sim
