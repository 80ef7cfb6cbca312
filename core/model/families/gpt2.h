// GPT-2 (Radford et al. 2019) as transformers' GPT2LMHeadModel: learned absolute positions,
// pre-LayerNorm blocks with Conv1D projections, a tanh-GELU MLP and an lm_head tied to wte.
#pragma once

#include "core/model/model_config.h"
#include "core/model/module_tree.h"

namespace zp::families {

// `config.family` must be kGpt2 and the configuration valid (build_model checks both).
ModuleTree build_gpt2(const ModelConfig& config, const BatchShape& shape);

}  // namespace zp::families
