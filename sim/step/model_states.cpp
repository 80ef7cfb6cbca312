#include "sim/step/model_states.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <utility>
#include <vector>

namespace zp::sim {

OptimizerShape optimizer_shape(const DeepSpeedConfig& config) {
  std::string name = config.optimizer_type.value_or("adam");
  std::string lower = name;
  std::transform(lower.begin(), lower.end(), lower.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  static const std::array<std::pair<const char*, int>, 12> kStates = {{{"adam", 8},
                                                                       {"adamw", 8},
                                                                       {"fusedadam", 8},
                                                                       {"cpuadam", 8},
                                                                       {"deepspeedcpuadam", 8},
                                                                       {"lamb", 8},
                                                                       {"onebitadam", 8},
                                                                       {"zerooneadam", 8},
                                                                       {"onebitlamb", 8},
                                                                       {"sgd", 4},
                                                                       {"adagrad", 4},
                                                                       {"lion", 4}}};
  for (const auto& [known, bytes] : kStates) {
    if (lower == known) return OptimizerShape{name, 4, bytes};
  }
  throw UserError(ErrorKind::kUnsupported, {"", 0, 0, "optimizer.type"},
                  "optimizer \"" + name +
                      "\" is not modelled: the simulator knows the states of Adam, AdamW, "
                      "FusedAdam, CPUAdam, Lamb, OneBitAdam, ZeroOneAdam, OneBitLamb, SGD, "
                      "Adagrad and Lion");
}

std::int64_t largest_layer_params(const ModuleTree& tree) {
  std::int64_t largest = 0;
  std::vector<ParamId> seen;
  for (const Module& m : tree.modules()) {
    // m.parameters(recurse=False) yields a parameter registered twice on one module once.
    seen.clear();
    std::int64_t own = 0;
    for (const ParamSlot& s : m.params) {
      if (std::find(seen.begin(), seen.end(), s.param) != seen.end()) continue;
      seen.push_back(s.param);
      own += tree.parameter(s.param).numel();
    }
    largest = std::max(largest, own);
  }
  return largest;
}

DeepSpeedEstimate deepspeed_zero3_estimate(std::int64_t total_params, std::int64_t largest,
                                           std::int64_t gpus_per_node, std::int64_t nodes,
                                           bool cpu_offload, bool cpu_offload_params) {
  // The formula as DeepSpeed writes it, in doubles and truncated at the end as Python's int().
  const double total = static_cast<double>(total_params);
  const double total_gpus = static_cast<double>(gpus_per_node * nodes);
  const double gpus_factor = 1.0 / static_cast<double>(nodes);
  const double buffer_factor = 1.5;
  const std::int64_t largest_layer_memory = 4 * largest;
  double gpu = 0, cpu = 0;
  if (cpu_offload) {
    if (cpu_offload_params) {
      gpu = static_cast<double>(largest_layer_memory);
      cpu = total * 18 * gpus_factor * buffer_factor;
    } else {
      gpu = static_cast<double>(largest_layer_memory +
                                static_cast<std::int64_t>(2 * total / total_gpus));
      cpu = total * 16 * gpus_factor * buffer_factor;
    }
  } else {
    gpu = static_cast<double>(largest_layer_memory +
                              static_cast<std::int64_t>(18 * total / total_gpus));
    cpu = static_cast<double>(largest) * 4 * static_cast<double>(gpus_per_node) * buffer_factor;
  }
  DeepSpeedEstimate e;
  e.total_params = total_params;
  e.largest_layer_params = largest;
  e.gpu_bytes = static_cast<std::int64_t>(gpu);
  e.cpu_bytes = static_cast<std::int64_t>(cpu);
  e.cpu_offload = cpu_offload;
  e.cpu_offload_params = cpu_offload_params;
  return e;
}

}  // namespace zp::sim
