#include "core/model/families/bert.h"

#include <vector>

#include "core/model/families/transformer.h"
#include "core/util/error.h"

namespace zp::families {
namespace {

struct BertLayer {
  ModuleId layer, attention, self, query, key, value, probs_dropout, self_output, attn_dense,
      attn_dropout, attn_norm, intermediate, inter_dense, act, output, out_dense, out_dropout,
      out_norm;
};

}  // namespace

ModuleTree build_bert(const ModelConfig& config, const BatchShape& shape) {
  ZP_CHECK(config.family == ModelFamily::kBert, "build_bert called for ", to_string(config.family));
  const Dims dims(shape);
  const std::int64_t b = dims.batch, t = dims.tokens, e = dims.elem;
  const std::int64_t h = config.hidden_size, f = config.ffn_size();
  const DType dt = shape.dtype;
  const bool eager = config.attention == AttentionImpl::kEager;

  ModuleTree tree(config.name);
  tree.set_shape(shape);

  // --- Structure, in transformers' registration order -------------------------------------------
  const ModuleId root = tree.add_module(kNoModule, "", "BertModel");
  const ModuleId embeddings = tree.add_module(root, "embeddings", "BertEmbeddings");
  const ModuleId word =
      add_embedding(tree, embeddings, "word_embeddings", config.vocab_size, h, dt);
  const ModuleId position =
      add_embedding(tree, embeddings, "position_embeddings", config.max_position_embeddings, h, dt);
  const ModuleId token_type =
      add_embedding(tree, embeddings, "token_type_embeddings", config.type_vocab_size, h, dt);
  const ModuleId emb_norm = add_layer_norm(tree, embeddings, "LayerNorm", h, dt);
  const ModuleId emb_dropout = add_leaf(tree, embeddings, "dropout", "Dropout");
  const ModuleId encoder = tree.add_module(root, "encoder", "BertEncoder");
  const ModuleId list = add_leaf(tree, encoder, "layer", "ModuleList");

  const Dense square{h, h, true}, up{h, f, true}, down{f, h, true};
  const AttentionCore core = attention_core_of(config);

  std::vector<BertLayer> layers;
  layers.reserve(static_cast<size_t>(config.num_layers));
  for (std::int64_t i = 0; i < config.num_layers; ++i) {
    BertLayer l{};
    l.layer = tree.add_module(list, std::to_string(i), "BertLayer");
    l.attention = tree.add_module(l.layer, "attention", "BertAttention");
    l.self = tree.add_module(l.attention, "self", "BertSelfAttention");
    l.query = add_dense(tree, l.self, "query", square, dt);
    l.key = add_dense(tree, l.self, "key", square, dt);
    l.value = add_dense(tree, l.self, "value", square, dt);
    l.probs_dropout = add_leaf(tree, l.self, "dropout", "Dropout");
    l.self_output = tree.add_module(l.attention, "output", "BertSelfOutput");
    l.attn_dense = add_dense(tree, l.self_output, "dense", square, dt);
    l.attn_norm = add_layer_norm(tree, l.self_output, "LayerNorm", h, dt);
    l.attn_dropout = add_leaf(tree, l.self_output, "dropout", "Dropout");
    l.intermediate = tree.add_module(l.layer, "intermediate", "BertIntermediate");
    l.inter_dense = add_dense(tree, l.intermediate, "dense", up, dt);
    l.act = add_leaf(tree, l.intermediate, "intermediate_act_fn", "GELUActivation");
    l.output = tree.add_module(l.layer, "output", "BertOutput");
    l.out_dense = add_dense(tree, l.output, "dense", down, dt);
    l.out_norm = add_layer_norm(tree, l.output, "LayerNorm", h, dt);
    l.out_dropout = add_leaf(tree, l.output, "dropout", "Dropout");

    const ModuleCost hidden{0, 0, t * h * e};  // a container that returns the hidden states
    const ModuleCost residual{kAddFlops * t * h, 0, t * h * e};  // LayerNorm(x + input)
    tree.set_cost(l.layer, hidden);
    tree.set_cost(l.attention, hidden);
    tree.set_cost(l.self, attention_core_cost(dims, core));
    tree.set_cost(l.query, dense_cost(square, t, e, true));
    // key and value read the tensor query already keeps.
    tree.set_cost(l.key, dense_cost(square, t, e, false));
    tree.set_cost(l.value, dense_cost(square, t, e, false));
    tree.set_cost(l.probs_dropout, attention_dropout_cost(dims, core));
    tree.set_cost(l.self_output, residual);
    tree.set_cost(l.attn_dense, dense_cost(square, t, e, true));
    tree.set_cost(l.attn_dropout, dropout_cost(t * h, config.dropout, e));
    tree.set_cost(l.attn_norm, layer_norm_cost(t, h, e));
    tree.set_cost(l.intermediate, ModuleCost{0, 0, t * f * e});
    tree.set_cost(l.inter_dense, dense_cost(up, t, e, true));
    tree.set_cost(l.act, activation_cost(t * f, e, kGeluFlops));
    tree.set_cost(l.output, residual);
    tree.set_cost(l.out_dense, dense_cost(down, t, e, true));
    tree.set_cost(l.out_dropout, dropout_cost(t * h, config.dropout, e));
    tree.set_cost(l.out_norm, layer_norm_cost(t, h, e));
    layers.push_back(l);
  }
  const ModuleId pooler = tree.add_module(root, "pooler", "BertPooler");
  const ModuleId pool_dense = add_dense(tree, pooler, "dense", square, dt);
  const ModuleId pool_act = add_leaf(tree, pooler, "activation", "Tanh");

  // BertModel returns the sequence output and the pooled first token of each sample.
  tree.set_cost(root, ModuleCost{0, 0, t * h * e + b * h * e});
  tree.set_cost(embeddings, ModuleCost{2 * kAddFlops * t * h, 0, t * h * e});  // three summed
  // Position and token type ids are views of BertEmbeddings' buffers: only the word ids are kept.
  tree.set_cost(word, embedding_cost(t, h, e, t));
  tree.set_cost(position, embedding_cost(t, h, e, 0));
  tree.set_cost(token_type, embedding_cost(t, h, e, 0));
  tree.set_cost(emb_norm, layer_norm_cost(t, h, e));
  tree.set_cost(emb_dropout, dropout_cost(t * h, config.dropout, e));
  ModuleCost encoder_cost{0, 0, t * h * e};
  // In backward the encoder passes the hidden states' gradient from layer to layer.
  encoder_cost.backward_held_bytes = t * h * e;
  tree.set_cost(encoder, encoder_cost);
  tree.set_cost(pooler, ModuleCost{0, 0, b * h * e});
  tree.set_cost(pool_dense, dense_cost(square, b, e, true));
  tree.set_cost(pool_act, activation_cost(b * h, e, kTanhFlops));  // keeps its output

  // --- Forward calls
  // ------------------------------------------------------------------------------
  const auto call = [&tree](ModuleId m, std::int32_t parent, bool grad = true) {
    return tree.add_call(m, parent, grad);
  };
  const std::int32_t root_call = call(root, kNoCall, false);
  const std::int32_t emb_call = call(embeddings, root_call, false);  // token ids
  // BertEmbeddings.forward looks up words, then token types, then positions.
  call(word, emb_call, false);
  call(token_type, emb_call, false);
  call(position, emb_call, false);
  call(emb_norm, emb_call);
  call(emb_dropout, emb_call);
  const std::int32_t encoder_call = call(encoder, root_call);
  for (const BertLayer& l : layers) {
    const std::int32_t layer_call = call(l.layer, encoder_call);
    const std::int32_t attention_call = call(l.attention, layer_call);
    const std::int32_t self_call = call(l.self, attention_call);
    call(l.query, self_call);
    call(l.key, self_call);
    call(l.value, self_call);
    if (eager) call(l.probs_dropout, self_call);  // flash kernels drop out internally
    const std::int32_t self_output_call = call(l.self_output, attention_call);
    call(l.attn_dense, self_output_call);
    call(l.attn_dropout, self_output_call);
    call(l.attn_norm, self_output_call);
    const std::int32_t intermediate_call = call(l.intermediate, layer_call);
    call(l.inter_dense, intermediate_call);
    call(l.act, intermediate_call);
    const std::int32_t output_call = call(l.output, layer_call);
    call(l.out_dense, output_call);
    call(l.out_dropout, output_call);
    call(l.out_norm, output_call);
  }
  const std::int32_t pooler_call = call(pooler, root_call);
  call(pool_dense, pooler_call);
  call(pool_act, pooler_call);
  return tree;
}

}  // namespace zp::families
