#include "sim/hardware/compute_model.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "core/util/error.h"

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
  flops_per_ns_ = peak_ * cluster.efficiency.compute / 1e9;
  bytes_per_ns_ = cluster.hbm_bandwidth * cluster.efficiency.hbm / 1e9;
  launch_ns_ = cluster.kernel_launch_ns;
}

TimeNs ComputeModel::time(std::int64_t flops, std::int64_t bytes) const {
  if (flops <= 0 && bytes <= 0) return 0;
  const double t = std::max(static_cast<double>(flops) / flops_per_ns_,
                            static_cast<double>(bytes) / bytes_per_ns_);
  return launch_ns_ + static_cast<TimeNs>(std::ceil(t));
}

}  // namespace zp::sim
