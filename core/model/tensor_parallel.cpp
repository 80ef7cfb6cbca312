#include "core/model/tensor_parallel.h"

#include <algorithm>
#include <string>

#include "core/model/families/transformer.h"

namespace zp {
namespace {

// A role held by a module of a given class, wherever it sits.
struct TypeRule {
  std::string_view type;
  TensorRole role;
};
constexpr TypeRule kTypeRules[] = {
    {"GPT2LMHeadModel", TensorRole::kLossHead},
    {"LlamaForCausalLM", TensorRole::kLossHead},
    {"MixtralForCausalLM", TensorRole::kLossHead},
    {"GPT2Attention", TensorRole::kSharded},
    {"LlamaAttention", TensorRole::kSharded},
    {"MixtralAttention", TensorRole::kSharded},
    {"BertSelfAttention", TensorRole::kSharded},
    {"BertIntermediate", TensorRole::kSharded},
    {"LlamaMLP", TensorRole::kShardedInner},
    {"MixtralBlockSparseTop2MLP", TensorRole::kShardedInner},
};

// A role held by the child `name` of a module of class `parent`.
struct ChildRule {
  std::string_view parent;
  std::string_view name;
  TensorRole role;
};
constexpr ChildRule kChildRules[] = {
    // GPT-2
    {"GPT2Model", "wte", TensorRole::kVocabEmbedding},
    {"GPT2Attention", "c_attn", TensorRole::kColumnEntry},
    {"GPT2Attention", "c_proj", TensorRole::kRow},
    {"GPT2Attention", "attn_dropout", TensorRole::kSharded},
    {"GPT2MLP", "c_fc", TensorRole::kColumnEntry},
    {"GPT2MLP", "act", TensorRole::kSharded},
    {"GPT2MLP", "c_proj", TensorRole::kRow},
    {"GPT2LMHeadModel", "lm_head", TensorRole::kVocabHead},
    // Llama and Mixtral. q_proj, k_proj and v_proj read one input, as Megatron's fused QKV does;
    // q_proj's backward runs last of the three, so the input gradient is reduced there. The same
    // for gate and up, whose backward ends at gate.
    {"LlamaModel", "embed_tokens", TensorRole::kVocabEmbedding},
    {"MixtralModel", "embed_tokens", TensorRole::kVocabEmbedding},
    {"LlamaAttention", "q_proj", TensorRole::kColumnEntry},
    {"LlamaAttention", "k_proj", TensorRole::kColumn},
    {"LlamaAttention", "v_proj", TensorRole::kColumn},
    {"LlamaAttention", "o_proj", TensorRole::kRow},
    {"MixtralAttention", "q_proj", TensorRole::kColumnEntry},
    {"MixtralAttention", "k_proj", TensorRole::kColumn},
    {"MixtralAttention", "v_proj", TensorRole::kColumn},
    {"MixtralAttention", "o_proj", TensorRole::kRow},
    {"LlamaMLP", "gate_proj", TensorRole::kColumnEntry},
    {"LlamaMLP", "up_proj", TensorRole::kColumn},
    {"LlamaMLP", "act_fn", TensorRole::kSharded},
    {"LlamaMLP", "down_proj", TensorRole::kRow},
    {"MixtralBlockSparseTop2MLP", "w1", TensorRole::kColumnEntry},
    {"MixtralBlockSparseTop2MLP", "w3", TensorRole::kColumn},
    {"MixtralBlockSparseTop2MLP", "act_fn", TensorRole::kSharded},
    {"MixtralBlockSparseTop2MLP", "w2", TensorRole::kRow},
    {"LlamaForCausalLM", "lm_head", TensorRole::kVocabHead},
    {"MixtralForCausalLM", "lm_head", TensorRole::kVocabHead},
    // BERT
    {"BertEmbeddings", "word_embeddings", TensorRole::kVocabEmbedding},
    {"BertSelfAttention", "query", TensorRole::kColumnEntry},
    {"BertSelfAttention", "key", TensorRole::kColumn},
    {"BertSelfAttention", "value", TensorRole::kColumn},
    {"BertSelfAttention", "dropout", TensorRole::kSharded},
    {"BertSelfOutput", "dense", TensorRole::kRow},
    {"BertIntermediate", "dense", TensorRole::kColumnEntry},
    {"BertIntermediate", "intermediate_act_fn", TensorRole::kSharded},
    {"BertOutput", "dense", TensorRole::kRow},
};

TensorRole role_of(const ModuleTree& tree, ModuleId id) {
  const Module& m = tree.module(id);
  for (const TypeRule& r : kTypeRules) {
    if (m.type == r.type) return r.role;
  }
  if (m.parent == kNoModule) return TensorRole::kReplicated;
  const std::string& parent = tree.module(m.parent).type;
  for (const ChildRule& r : kChildRules) {
    if (parent == r.parent && m.name == r.name) return r.role;
  }
  return TensorRole::kReplicated;
}

bool is_dense(TensorRole role) {
  return role == TensorRole::kColumn || role == TensorRole::kColumnEntry ||
         role == TensorRole::kRow || role == TensorRole::kVocabHead;
}

std::int64_t ceil_div(std::int64_t a, std::int64_t b) {
  return (a + b - 1) / b;
}

// A dense module's geometry as its parameters and cost give it.
struct DenseShape {
  std::int64_t in = 0, out = 0, rows = 0;
  bool conv1d = false;  // weight [in, out] rather than [out, in]
  bool bias = false;
};

DenseShape dense_shape(const ModuleTree& tree, ModuleId id, std::int64_t elem) {
  const Module& m = tree.module(id);
  ZP_CHECK(m.type == "Linear" || m.type == "Conv1D", tree.qualified_name(id), " is a ", m.type,
           ", not a dense layer");
  DenseShape d;
  d.conv1d = m.type == "Conv1D";
  for (const ParamSlot& s : m.params) {
    const Parameter& p = tree.parameter(s.param);
    if (s.attr == "weight") {
      ZP_CHECK(p.shape.size() == 2, p.name, " is not a matrix");
      d.in = d.conv1d ? p.shape[0] : p.shape[1];
      d.out = d.conv1d ? p.shape[1] : p.shape[0];
    } else if (s.attr == "bias") {
      d.bias = true;
    }
  }
  ZP_CHECK(d.out > 0 && m.cost.output_bytes % (d.out * elem) == 0, tree.qualified_name(id),
           "'s output is not whole rows");
  d.rows = m.cost.output_bytes / (d.out * elem);
  return d;
}

// The axis of a dense parameter that a role divides, or kNotSplit.
std::int32_t dense_split_axis(TensorRole role, const DenseShape& d, std::string_view attr) {
  const bool column = role == TensorRole::kColumn || role == TensorRole::kColumnEntry ||
                      role == TensorRole::kVocabHead;
  if (attr == "bias") return column ? 0 : kNotSplit;  // a row-parallel bias is added after the sum
  const std::int32_t out_axis = d.conv1d ? 1 : 0;
  return column ? out_axis : 1 - out_axis;
}

void require_divides(std::int64_t tp, std::int64_t value, const char* key, const char* why,
                     const SourceLocation& where) {
  if (value % tp == 0) return;
  throw UserError(ErrorKind::kConflict, where,
                  "parallel.tensor " + std::to_string(tp) + " does not divide model." + key + " " +
                      std::to_string(value) + ": " + why);
}

}  // namespace

std::string_view to_string(TensorRole role) {
  switch (role) {
    case TensorRole::kReplicated:
      return "replicated";
    case TensorRole::kColumn:
      return "column";
    case TensorRole::kColumnEntry:
      return "column_entry";
    case TensorRole::kRow:
      return "row";
    case TensorRole::kVocabEmbedding:
      return "vocab_embedding";
    case TensorRole::kVocabHead:
      return "vocab_head";
    case TensorRole::kSharded:
      return "sharded";
    case TensorRole::kShardedInner:
      return "sharded_inner";
    case TensorRole::kLossHead:
      return "loss_head";
  }
  return "?";
}

std::int64_t TensorParallelModel::sharded_parameters() const {
  std::int64_t n = 0;
  for (std::size_t p = 0; p < split_axis.size(); ++p) {
    if (split_axis[p] != kNotSplit) n += tree.parameters()[p].numel();
  }
  return n;
}

std::int64_t TensorParallelModel::replicated_parameters() const {
  return tree.total_parameters() - sharded_parameters();
}

TensorParallelModel shard_for_tensor_parallel(const ModuleTree& tree,
                                              const std::optional<ModelConfig>& config,
                                              std::int64_t tp, const SourceLocation& where) {
  if (tp < 1) {
    throw UserError(ErrorKind::kValue, where,
                    "parallel.tensor " + std::to_string(tp) + " must be at least 1");
  }
  TensorParallelModel out;
  out.size = tp;
  out.tree = tree;
  out.roles.assign(tree.modules().size(), TensorRole::kReplicated);
  out.collectives.resize(tree.modules().size());
  out.split_axis.assign(tree.parameters().size(), kNotSplit);
  if (tp == 1) return out;
  if (!config) {
    throw UserError(ErrorKind::kUnsupported, where,
                    "parallel.tensor " + std::to_string(tp) +
                        " needs a built-in model (model.preset or model.family): a model file "
                        "does not say which weights Megatron-style tensor parallelism splits");
  }
  require_divides(tp, config->hidden_size, "hidden_size",
                  "the replicated hidden state splits into equal column blocks", where);
  require_divides(tp, config->num_heads, "num_heads",
                  "each tensor rank holds whole attention heads", where);
  if (config->family == ModelFamily::kLlama || config->family == ModelFamily::kMixtral) {
    require_divides(tp, config->kv_heads(), "num_kv_heads",
                    "each tensor rank holds whole key/value heads", where);
  }
  require_divides(tp, config->ffn_size(), "intermediate_size",
                  "the MLP's features split into equal blocks", where);
  require_divides(tp, config->vocab_size, "vocab_size",
                  "the embedding and the head split the vocabulary into equal blocks (pad it as "
                  "Megatron's make-vocab-size-divisible-by does)",
                  where);

  const std::int64_t elem = dtype_size(tree.shape().dtype);
  const std::int64_t tokens = tree.shape().tokens();
  const auto split = [&](ParamId p, std::int32_t axis) {
    std::int32_t& current = out.split_axis[static_cast<std::size_t>(p)];
    if (current == axis) return;  // a tied weight, split once
    ZP_CHECK(current == kNotSplit, tree.parameter(p).name, " is split along two axes");
    current = axis;
    Parameter& param = out.tree.mutable_parameter(p);
    std::int64_t& dim = param.shape.at(static_cast<std::size_t>(axis));
    ZP_CHECK(dim % tp == 0, param.name, " dimension ", axis, " (", dim, ") does not divide by ",
             tp);
    dim /= tp;
  };

  for (std::size_t i = 0; i < tree.modules().size(); ++i) {
    const auto id = static_cast<ModuleId>(i);
    const TensorRole role = role_of(tree, id);
    out.roles[i] = role;
    const Module& m = tree.module(id);
    const ModuleCost& c = m.cost;
    ModuleCost cost = c;
    ModuleCollectives& coll = out.collectives[i];
    const std::int64_t backward = c.backward_flops > 0 ? ceil_div(c.backward_flops, tp) : 0;
    if (is_dense(role)) {
      const DenseShape d = dense_shape(tree, id, elem);
      for (const ParamSlot& s : m.params)
        split(s.param, dense_split_axis(role, d, s.attr));
      const std::int64_t input = d.rows * d.in * elem;
      if (role == TensorRole::kRow) {
        // The input arrives split; the bias is added to the summed output on every rank.
        const std::int64_t bias = d.bias ? families::kAddFlops * d.rows * d.out : 0;
        cost.forward_flops = ceil_div(c.forward_flops - bias, tp) + bias;
        cost.activation_bytes = ceil_div(c.activation_bytes, tp);
        cost.backward_workspace_bytes = ceil_div(c.backward_workspace_bytes, tp);
        cost.backward_flops = backward;
        coll.forward.push_back({TensorCollectiveKind::kAllReduce, c.output_bytes});
      } else {
        // The whole input is kept on every rank; what else the layer keeps (the head's fp32
        // logits) is per output feature.
        const std::int64_t kept = std::min(c.activation_bytes, input);
        cost.forward_flops = ceil_div(c.forward_flops, tp);
        cost.activation_bytes = kept + ceil_div(c.activation_bytes - kept, tp);
        cost.output_bytes = ceil_div(c.output_bytes, tp);
        cost.workspace_bytes = ceil_div(c.workspace_bytes, tp);
        cost.backward_workspace_bytes = ceil_div(c.backward_workspace_bytes, tp);
        cost.backward_flops = backward;
        if (role != TensorRole::kColumn)
          coll.backward.push_back({TensorCollectiveKind::kAllReduce, input});
      }
    } else if (role == TensorRole::kVocabEmbedding) {
      for (const ParamSlot& s : m.params)
        split(s.param, 0);
      // Each rank looks up its rows (zeros elsewhere); the sum makes the output whole.
      coll.forward.push_back({TensorCollectiveKind::kAllReduce, c.output_bytes});
    } else if (role == TensorRole::kSharded || role == TensorRole::kShardedInner ||
               role == TensorRole::kLossHead) {
      ZP_CHECK(m.params.empty(), tree.qualified_name(id), " has parameters of its own");
      cost.forward_flops = ceil_div(c.forward_flops, tp);
      cost.activation_bytes = ceil_div(c.activation_bytes, tp);
      cost.workspace_bytes = ceil_div(c.workspace_bytes, tp);
      cost.backward_workspace_bytes = ceil_div(c.backward_workspace_bytes, tp);
      cost.backward_flops = backward;
      if (role != TensorRole::kShardedInner) cost.output_bytes = ceil_div(c.output_bytes, tp);
      if (role == TensorRole::kLossHead) {
        // Vocab-parallel cross entropy: the max logit, the target's logit and the sum of
        // exponentials, one fp32 value per token each.
        for (int k = 0; k < 3; ++k)
          coll.forward.push_back(
              {TensorCollectiveKind::kAllReduce, tokens * dtype_size(DType::kFloat32)});
      }
    }
    out.tree.set_cost(id, cost);
  }
  return out;
}

}  // namespace zp
