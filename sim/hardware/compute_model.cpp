#include "sim/hardware/compute_model.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "core/util/error.h"
#include "sim/hardware/kernel_counts.h"

namespace zp::sim {

const char* peak_flops_key(DType dtype) {
  // The dtype names are the peak_flops keys; integer types have no rate of their own.
  return is_floating(dtype) ? to_string(dtype).data() : "fp32";
}

ComputeModel::ComputeModel(const ClusterSpec& cluster, DType dtype) {
  const std::string key = peak_flops_key(dtype);
  const auto it = cluster.peak_flops.find(key);
  if (it == cluster.peak_flops.end() || !(it->second > 0)) {
    throw UserError(ErrorKind::kMissing, {"", 0, 0, "cluster.peak_flops." + key},
                    "the cluster gives no " + key + " FLOP rate, which a " +
                        std::string(to_string(dtype)) + " run needs");
  }
  if (!(cluster.hbm_bandwidth > 0)) {
    throw UserError(ErrorKind::kMissing, {"", 0, 0, "cluster.hbm_bandwidth"},
                    "the cluster gives no HBM bandwidth");
  }
  peak_ = it->second;
  // A step's calls run slower than the isolated ones the cluster's figures describe.
  const double compute = cluster.efficiency.compute / cluster.step_slowdown.rates;
  flops_per_ns_ = peak_ * compute / 1e9;
  elementwise_per_ns_ =
      cluster.elementwise_flops > 0 ? cluster.elementwise_flops * compute / 1e9 : flops_per_ns_;
  for (const auto& [type, flops] : cluster.module_flops)
    class_per_ns_.emplace_back(type, flops * compute / 1e9);
  bytes_per_ns_ =
      cluster.hbm_bandwidth * cluster.efficiency.hbm / cluster.step_slowdown.rates / 1e9;
  launch_ns_ =
      std::llround(static_cast<double>(cluster.kernel_launch_ns) * cluster.step_slowdown.kernels);
  node_ns_ =
      std::llround(static_cast<double>(cluster.autograd_node_ns) * cluster.step_slowdown.kernels);
  overlap_ = cluster.asynchronous_launch;
}

TimeNs ComputeModel::roofline_at(double flops_per_ns, std::int64_t flops,
                                 std::int64_t bytes) const {
  const double t = std::max(static_cast<double>(std::max<std::int64_t>(flops, 0)) / flops_per_ns,
                            static_cast<double>(std::max<std::int64_t>(bytes, 0)) / bytes_per_ns_);
  return static_cast<TimeNs>(std::ceil(t));
}

TimeNs ComputeModel::kernels_at(double flops_per_ns, std::int64_t count, std::int64_t flops,
                                std::int64_t bytes, bool backward) const {
  const TimeNs each = backward ? launch_ns_ + node_ns_ : launch_ns_;
  return with_launches(std::max<std::int64_t>(count, 0) * each,
                       roofline_at(flops_per_ns, flops, bytes));
}

ModuleTimes ComputeModel::module_call(const ModuleTree& tree, ModuleId module) const {
  const Module& m = tree.module(module);
  std::int64_t param_bytes = 0;
  for (const ParamSlot& s : m.params)
    param_bytes += tree.parameter(s.param).bytes();
  return module_call(m.cost, param_bytes, module_kernels(tree, module), m.type);
}

ModuleTimes ComputeModel::module_call(const ModuleCost& cost, std::int64_t param_bytes,
                                      KernelCounts k, std::string_view type) const {
  const std::int64_t moved = param_bytes + cost.activation_bytes + cost.output_bytes;
  double rate = k.elementwise ? elementwise_per_ns_ : flops_per_ns_;
  for (const auto& [name, per_ns] : class_per_ns_)
    if (name == type) rate = per_ns;
  return {kernels_at(rate, k.forward, cost.forward_flops, moved, false),
          kernels_at(rate, k.backward, cost.backward_or_default(), 2 * moved, true)};
}

}  // namespace zp::sim
