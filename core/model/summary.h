// Totals of a module tree for reports: parameters per module type, the largest modules, and the
// forward cost of one micro-batch.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/model/module_tree.h"

namespace zp {

struct ModuleTypeTotals {
  std::string type;
  std::int64_t modules = 0;
  std::int64_t parameters = 0;  // registered directly on modules of this type, each counted once
};

struct ModelSummary {
  std::int64_t modules = 0;
  std::int64_t parameter_tensors = 0;
  std::int64_t parameters = 0;
  std::int64_t trainable_parameters = 0;
  std::int64_t parameter_bytes = 0;
  std::int64_t tied_parameters = 0;       // registered on more than one module
  std::int64_t forward_flops = 0;         // one micro-batch: every call's own FLOPs
  std::int64_t activation_bytes = 0;      // saved for backward by one micro-batch's forward
  std::vector<ModuleTypeTotals> by_type;  // most parameters first, then by name
  std::vector<ModuleId> largest;          // by own parameters, most first (at most `top`)
};

ModelSummary summarize_model(const ModuleTree& tree, size_t top = 10);

// Parameters registered directly on `id`, each once.
std::int64_t own_parameters(const ModuleTree& tree, ModuleId id);

}  // namespace zp
