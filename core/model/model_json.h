// The model file format: a ModuleTree as JSON, read and written losslessly.
// docs/model-format.md describes it; tools/export_model.py writes it from any torch.nn.Module.
#pragma once

#include <filesystem>
#include <string>

#include "core/config/document.h"
#include "core/model/module_tree.h"

namespace zp {

inline constexpr const char* kModelFormat = "zeroplan.model";
inline constexpr int kModelFormatVersion = 1;

Json model_to_json(const ModuleTree& tree);
// Validates the structure (ids in range, one root, parents and children agree, every module
// reachable from the root, calls nested properly); a violation is a UserError at its key path.
ModuleTree model_from_json(const Node& node);

ModuleTree load_model_file(const std::filesystem::path& path);
// Written atomically: a temporary file, then a rename.
void save_model_file(const ModuleTree& tree, const std::filesystem::path& path);

}  // namespace zp
