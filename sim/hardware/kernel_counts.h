// How many kernels a module's own work launches per call, in forward and in backward: the
// operations of its forward that are not its children's, as PyTorch runs them one kernel at a
// time, and the autograd nodes those operations leave for backward. Each kernel pays a fixed
// cost (ComputeModel), which is what a small module's pass mostly costs: a GPT-2 attention's own
// forward is a dozen kernels around two small batched products.
//
// The counts follow the module's class (the tree's type names, those of transformers and
// torch.nn), as docs/simulator.md tabulates them; views (view, transpose, split, narrow, expand)
// launch nothing and are not counted. A class the table does not know counts one kernel forward
// and two backward when it is a leaf (one operation, its input's and its weight's gradients),
// none when it only calls its children.
#pragma once

#include <cstdint>

#include "core/model/module_tree.h"

namespace zp::sim {

struct KernelCounts {
  std::int64_t forward = 0;   // per forward call (a recomputation runs the same)
  std::int64_t backward = 0;  // per backward of that call
  // Whether that work is element-wise (ClusterSpec::elementwise_flops) rather than matrix
  // products: every class but the dense layers, the attention cores and an unknown leaf.
  bool elementwise = false;
  bool operator==(const KernelCounts&) const = default;
};

KernelCounts module_kernels(const ModuleTree& tree, ModuleId module);

}  // namespace zp::sim
