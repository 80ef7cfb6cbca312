#include "core/model/families/gpt2.h"

#include <vector>

#include "core/model/families/transformer.h"
#include "core/util/error.h"

namespace zp::families {
namespace {

struct Gpt2Block {
  ModuleId block, ln_1, attn, c_attn, attn_proj, attn_dropout, resid_dropout, ln_2, mlp, c_fc,
      mlp_proj, act, mlp_dropout;
};

}  // namespace

ModuleTree build_gpt2(const ModelConfig& config, const BatchShape& shape) {
  ZP_CHECK(config.family == ModelFamily::kGpt2, "build_gpt2 called for ", to_string(config.family));
  const Dims dims(shape);
  const std::int64_t t = dims.tokens, e = dims.elem;
  const std::int64_t h = config.hidden_size, f = config.ffn_size(), v = config.vocab_size;
  const DType dt = shape.dtype;
  const bool eager = config.attention == AttentionImpl::kEager;

  ModuleTree tree(config.name);
  tree.set_shape(shape);

  // --- Structure, in transformers' registration order -------------------------------------------
  const ModuleId root = tree.add_module(kNoModule, "", "GPT2LMHeadModel");
  const ModuleId model = tree.add_module(root, "transformer", "GPT2Model");
  const ModuleId wte = add_embedding(tree, model, "wte", v, h, dt);
  const ModuleId wpe = add_embedding(tree, model, "wpe", config.max_position_embeddings, h, dt);
  const ModuleId drop = add_leaf(tree, model, "drop", "Dropout");
  const ModuleId list = add_leaf(tree, model, "h", "ModuleList");

  const Dense c_attn{h, 3 * h, true, WeightLayout::kConv1D};
  const Dense attn_proj{h, h, true, WeightLayout::kConv1D};
  const Dense c_fc{h, f, true, WeightLayout::kConv1D};
  const Dense mlp_proj{f, h, true, WeightLayout::kConv1D};
  const AttentionCore core = attention_core_of(config);

  std::vector<Gpt2Block> blocks;
  blocks.reserve(static_cast<size_t>(config.num_layers));
  for (std::int64_t i = 0; i < config.num_layers; ++i) {
    Gpt2Block b{};
    b.block = tree.add_module(list, std::to_string(i), "GPT2Block");
    b.ln_1 = add_layer_norm(tree, b.block, "ln_1", h, dt);
    b.attn = tree.add_module(b.block, "attn", "GPT2Attention");
    b.c_attn = add_dense(tree, b.attn, "c_attn", c_attn, dt);
    b.attn_proj = add_dense(tree, b.attn, "c_proj", attn_proj, dt);
    b.attn_dropout = add_leaf(tree, b.attn, "attn_dropout", "Dropout");
    b.resid_dropout = add_leaf(tree, b.attn, "resid_dropout", "Dropout");
    b.ln_2 = add_layer_norm(tree, b.block, "ln_2", h, dt);
    b.mlp = tree.add_module(b.block, "mlp", "GPT2MLP");
    b.c_fc = add_dense(tree, b.mlp, "c_fc", c_fc, dt);
    b.mlp_proj = add_dense(tree, b.mlp, "c_proj", mlp_proj, dt);
    b.act = add_leaf(tree, b.mlp, "act", "NewGELUActivation");
    b.mlp_dropout = add_leaf(tree, b.mlp, "dropout", "Dropout");

    tree.set_cost(b.block, ModuleCost{2 * kAddFlops * t * h, 0, t * h * e});  // two residual adds
    tree.set_cost(b.ln_1, layer_norm_cost(t, h, e));
    tree.set_cost(b.attn, attention_core_cost(dims, core));
    tree.set_cost(b.c_attn, dense_cost(c_attn, t, e, true));
    tree.set_cost(b.attn_proj, dense_cost(attn_proj, t, e, true));
    tree.set_cost(b.attn_dropout, attention_dropout_cost(dims, core));
    tree.set_cost(b.resid_dropout, dropout_cost(t * h, config.dropout, e));
    tree.set_cost(b.ln_2, layer_norm_cost(t, h, e));
    tree.set_cost(b.mlp, ModuleCost{0, 0, t * h * e});
    tree.set_cost(b.c_fc, dense_cost(c_fc, t, e, true));
    tree.set_cost(b.mlp_proj, dense_cost(mlp_proj, t, e, true));
    tree.set_cost(b.act, activation_cost(t * f, e, kGeluFlops));
    tree.set_cost(b.mlp_dropout, dropout_cost(t * h, config.dropout, e));
    blocks.push_back(b);
  }
  const ModuleId ln_f = add_layer_norm(tree, model, "ln_f", h, dt);

  const Dense head{h, v, false, WeightLayout::kLinear};
  const ModuleId lm_head = tree.add_module(root, "lm_head", "Linear");
  if (config.tie_word_embeddings) {
    tree.tie_parameter(lm_head, "weight", tree.module(wte).params.front().param);
  } else {
    tree.add_parameter(lm_head, "weight", {v, h}, dt);
  }

  // The root computes the loss, after lm_head's call: what it keeps and holds are the root's
  // (docs/models.md, "Embedding and output side").
  const LossCost loss = causal_lm_loss_cost(dims, v);
  ModuleCost root_cost{kCrossEntropyFlops * t * v, loss.kept_bytes, t * v * e};
  root_cost.workspace_bytes = loss.root_workspace;
  root_cost.backward_workspace_bytes = loss.root_backward_workspace;
  tree.set_cost(root, root_cost);
  ModuleCost model_cost{kAddFlops * t * h, 0, t * h * e};  // wte + wpe
  // In backward the body passes the hidden states' gradient from block to block.
  model_cost.backward_held_bytes = t * h * e;
  tree.set_cost(model, model_cost);
  tree.set_cost(wte, embedding_cost(t, h, e, t));
  tree.set_cost(wpe, embedding_cost(t, h, e, dims.seq));  // arange(s)[None]
  tree.set_cost(drop, dropout_cost(t * h, config.dropout, e));
  tree.set_cost(ln_f, layer_norm_cost(t, h, e));
  tree.set_cost(lm_head, dense_cost(head, t, e, true));

  // --- Forward calls, in the order GPT2LMHeadModel.forward makes them ---------------------------
  const auto call = [&tree](ModuleId m, std::int32_t parent, bool grad = true) {
    return tree.add_call(m, parent, grad);
  };
  const std::int32_t root_call = call(root, kNoCall, false);
  const std::int32_t model_call = call(model, root_call, false);  // token ids
  call(wte, model_call, false);
  call(wpe, model_call, false);  // position ids
  call(drop, model_call);
  for (const Gpt2Block& b : blocks) {
    const std::int32_t block_call = call(b.block, model_call);
    call(b.ln_1, block_call);
    const std::int32_t attn_call = call(b.attn, block_call);
    call(b.c_attn, attn_call);
    if (eager) call(b.attn_dropout, attn_call);  // flash kernels drop out internally
    call(b.attn_proj, attn_call);
    call(b.resid_dropout, attn_call);
    call(b.ln_2, block_call);
    const std::int32_t mlp_call = call(b.mlp, block_call);
    call(b.c_fc, mlp_call);
    call(b.act, mlp_call);
    call(b.mlp_proj, mlp_call);
    call(b.mlp_dropout, mlp_call);
  }
  call(ln_f, model_call);
  call(lm_head, root_call);
  return tree;
}

}  // namespace zp::families
