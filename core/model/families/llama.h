// Llama (Touvron et al. 2023) as transformers' LlamaForCausalLM, and Mixtral (Jiang et al. 2024) as
// MixtralForCausalLM: pre-RMSNorm decoder layers with rotary embeddings and grouped-query
// attention; a SwiGLU MLP (Llama) or a top-k routed mixture of SwiGLU experts (Mixtral). The two
// differ only in the feed-forward block and the class names, so one builder serves both.
#pragma once

#include "core/model/model_config.h"
#include "core/model/module_tree.h"

namespace zp::families {

// `config.family` must be kLlama or kMixtral and the configuration valid (build_model checks both).
ModuleTree build_llama(const ModelConfig& config, const BatchShape& shape);

}  // namespace zp::families
