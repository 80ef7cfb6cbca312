// Built-in model presets: published configurations (Hugging Face hub config.json files) under short
// names, plus tiny ones for fast runs and tests. docs/models.md lists them with their sources and
// parameter counts. The table is immutable; lookups are safe from many threads.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "core/model/model_config.h"

namespace zp {

// The preset called `name` (exact, e.g. "llama-2-7b"), or nullptr.
const ModelConfig* find_preset(std::string_view name);

// All preset names, grouped by family, smallest first.
std::vector<std::string> preset_names();

}  // namespace zp
