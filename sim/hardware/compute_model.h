// How long a GPU takes for a piece of work: a roofline over the cluster's peak FLOP/s and HBM
// bandwidth, each derated by the cluster's efficiency, plus a fixed cost per kernel launched.
//
//   time = kernels x kernel_launch + max(flops / (peak_flops[dtype] * efficiency.compute),
//                                        bytes / (hbm_bandwidth * efficiency.hbm))
//
// rounded up to whole nanoseconds; a backward kernel also pays autograd_node, the engine's work
// for the node that runs it. The cluster's step_slowdown multiplies the per-kernel costs and
// divides both rates (a CPU step's calls against the same calls alone). A module's pass runs many
// kernels (kernel_counts.h), and for the small modules of a model their fixed costs are most of its
// time. Pure and cheap; safe from many threads.
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/config/cluster.h"
#include "core/model/dtype.h"
#include "core/model/module_tree.h"
#include "sim/engine/simulator.h"
#include "sim/hardware/kernel_counts.h"

namespace zp::sim {

// One call of a module's own work (not its children's).
struct ModuleTimes {
  TimeNs forward = 0;  // also a recomputation's
  TimeNs backward = 0;
};

class ComputeModel {
 public:
  // UserError (naming cluster.peak_flops.<dtype>) when the cluster has no peak for `dtype`, or
  // cluster.hbm_bandwidth when it is not positive.
  ComputeModel(const ClusterSpec& cluster, DType dtype);

  // One kernel doing `flops` and moving `bytes` through HBM; 0 when both are 0.
  TimeNs time(std::int64_t flops, std::int64_t bytes) const {
    return flops > 0 || bytes > 0 ? kernels(1, flops, bytes) : 0;
  }
  // `count` kernels doing `flops` and moving `bytes` between them: each pays its launch. (A
  // module whose own work is its children's launches nothing; what it moves is still priced.)
  TimeNs kernels(std::int64_t count, std::int64_t flops, std::int64_t bytes) const {
    return kernels_at(flops_per_ns_, count, flops, bytes, false);
  }
  // The same run by autograd in backward: each kernel also pays autograd_node.
  TimeNs backward_kernels(std::int64_t count, std::int64_t flops, std::int64_t bytes) const {
    return kernels_at(flops_per_ns_, count, flops, bytes, true);
  }
  // A call of `module`: its kernels (module_kernels), its FLOPs (backward: the model's or twice
  // the forward's; element-wise work at elementwise_flops, a class in module_flops at its own
  // rate) and the bytes it moves (its parameters, what it keeps and its output; twice those in
  // backward).
  ModuleTimes module_call(const ModuleTree& tree, ModuleId module) const;
  // The same from the call's parts, for a caller that has them at hand: the module's costs, the
  // bytes of its parameter slots, its kernels and its class.
  ModuleTimes module_call(const ModuleCost& cost, std::int64_t param_bytes, KernelCounts kernels,
                          std::string_view type) const;
  // A memory-bound copy of `bytes` (read and written once), as torch.cat and copy_ do.
  TimeNs copy(std::int64_t bytes) const { return time(0, 2 * bytes); }

  double flops_per_second() const { return flops_per_ns_ * 1e9; }  // after efficiency, slowdown
  double peak_flops() const { return peak_; }                      // before

 private:
  double peak_ = 0;
  double flops_per_ns_ = 0;
  double elementwise_per_ns_ = 0;  // ClusterSpec::elementwise_flops, or flops_per_ns_
  // ClusterSpec::module_flops, by class: a few at most, and none unless calibrated.
  std::vector<std::pair<std::string, double>> class_per_ns_;
  double bytes_per_ns_ = 0;
  TimeNs launch_ns_ = 0;
  TimeNs node_ns_ = 0;
  bool overlap_ = true;  // ClusterSpec::asynchronous_launch
  TimeNs with_launches(TimeNs launches, TimeNs roofline) const {
    return overlap_ ? std::max(launches, roofline) : launches + roofline;
  }
  TimeNs roofline_at(double flops_per_ns, std::int64_t flops, std::int64_t bytes) const;
  // `count` kernels at `flops_per_ns`; in backward each also pays autograd_node.
  TimeNs kernels_at(double flops_per_ns, std::int64_t count, std::int64_t flops, std::int64_t bytes,
                    bool backward) const;
};

// The name of `dtype` in cluster.peak_flops: fp32 (PyTorch computes fp32 without TF32 unless told
// to), fp16, bf16, fp64; int types have no FLOP rate.
const char* peak_flops_key(DType dtype);

}  // namespace zp::sim
