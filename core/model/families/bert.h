// BERT (Devlin et al. 2019) as transformers' BertModel: word, position and token-type embeddings,
// post-LayerNorm encoder layers with an exact-GELU MLP, and the tanh pooler. No pre-training heads.
#pragma once

#include "core/model/model_config.h"
#include "core/model/module_tree.h"

namespace zp::families {

// `config.family` must be kBert and the configuration valid (build_model checks both).
ModuleTree build_bert(const ModelConfig& config, const BatchShape& shape);

}  // namespace zp::families
