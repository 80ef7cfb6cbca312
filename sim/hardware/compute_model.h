// How long a GPU takes for a piece of work: a roofline over the cluster's peak FLOP/s and HBM
// bandwidth, each derated by the cluster's efficiency, plus a fixed launch cost.
//
//   time = kernel_launch + max(flops / (peak_flops[dtype] * efficiency.compute),
//                              bytes / (hbm_bandwidth * efficiency.hbm))
//
// rounded up to whole nanoseconds. Pure and cheap; safe from many threads.
#pragma once

#include <cstdint>

#include "core/config/cluster.h"
#include "core/model/dtype.h"
#include "sim/engine/simulator.h"

namespace zp::sim {

class ComputeModel {
 public:
  // UserError (naming cluster.peak_flops.<dtype>) when the cluster has no peak for `dtype`, or
  // cluster.hbm_bandwidth when it is not positive.
  ComputeModel(const ClusterSpec& cluster, DType dtype);

  // A kernel sequence doing `flops` and moving `bytes` through HBM; 0 when both are 0.
  TimeNs time(std::int64_t flops, std::int64_t bytes) const;
  // A memory-bound copy of `bytes` (read and written once), as torch.cat and copy_ do.
  TimeNs copy(std::int64_t bytes) const { return time(0, 2 * bytes); }

  double flops_per_second() const { return flops_per_ns_ * 1e9; }  // after efficiency
  double peak_flops() const { return peak_; }                      // before

 private:
  double peak_ = 0;
  double flops_per_ns_ = 0;
  double bytes_per_ns_ = 0;
  TimeNs launch_ns_ = 0;
};

// The name of `dtype` in cluster.peak_flops: fp32 (PyTorch computes fp32 without TF32 unless told
// to), fp16, bf16, fp64; int types have no FLOP rate.
const char* peak_flops_key(DType dtype);

}  // namespace zp::sim
