#include "core/model/families/llama.h"

#include <string>
#include <vector>

#include "core/model/families/transformer.h"
#include "core/util/error.h"

namespace zp::families {
namespace {

// A SwiGLU MLP, act(gate(x)) * up(x) then down: LlamaMLP, or one Mixtral expert.
struct SwiGlu {
  ModuleId mlp, gate, up, down, act;
};

struct Expert {
  SwiGlu mlp;
  std::int64_t rows;  // tokens routed to it
};

struct DecoderLayer {
  ModuleId layer, attn, q_proj, k_proj, v_proj, o_proj, input_norm, post_norm;
  SwiGlu mlp{};                 // Llama
  ModuleId moe = kNoModule;     // Mixtral
  ModuleId router = kNoModule;  // Mixtral's gate
  std::vector<Expert> experts;  // Mixtral
};

// Sets the costs of a SwiGLU MLP over `rows` tokens. The gating product act(gate) * up keeps both
// of its operands; the MLP itself runs it, so those bytes are its own.
void set_swiglu_costs(ModuleTree& tree, const SwiGlu& m, const Dense& gate, const Dense& down,
                      std::int64_t rows, std::int64_t e) {
  const std::int64_t f = gate.out;
  ModuleCost product{kAddFlops * rows * f, 2 * rows * f * e, rows * down.out * e};
  // Backward of the gating product: its output's gradient and both operands'.
  product.backward_workspace_bytes = 3 * rows * f * e;
  tree.set_cost(m.mlp, product);
  tree.set_cost(m.gate, dense_cost(gate, rows, e, true));
  tree.set_cost(m.up, dense_cost(gate, rows, e, false));  // the same input as gate
  tree.set_cost(m.act, activation_cost(rows * f, e, kSiluFlops));
  tree.set_cost(m.down, dense_cost(down, rows, e, true));
}

}  // namespace

ModuleTree build_llama(const ModelConfig& config, const BatchShape& shape) {
  const bool moe = config.family == ModelFamily::kMixtral;
  ZP_CHECK(moe || config.family == ModelFamily::kLlama, "build_llama called for ",
           to_string(config.family));
  const std::string prefix = moe ? "Mixtral" : "Llama";
  const Dims dims(shape);
  const std::int64_t t = dims.tokens, e = dims.elem;
  const std::int64_t h = config.hidden_size, f = config.ffn_size(), v = config.vocab_size;
  const std::int64_t d = config.head_dim(), kv = config.kv_heads() * d;
  const std::int64_t n_experts = config.num_experts, top_k = config.experts_per_token;
  const DType dt = shape.dtype;

  ModuleTree tree(config.name);
  tree.set_shape(shape);

  // --- Structure, in transformers' registration order -------------------------------------------
  const ModuleId root = tree.add_module(kNoModule, "", prefix + "ForCausalLM");
  const ModuleId model = tree.add_module(root, "model", prefix + "Model");
  const ModuleId embed = add_embedding(tree, model, "embed_tokens", v, h, dt);
  const ModuleId list = add_leaf(tree, model, "layers", "ModuleList");

  const Dense q_proj{h, h, false}, kv_proj{h, kv, false}, o_proj{h, h, false};
  const Dense gate_proj{h, f, false}, down_proj{f, h, false};
  const Dense router{h, n_experts, false};
  const AttentionCore core = attention_core_of(config);

  const auto add_swiglu = [&](ModuleId parent, std::string name, std::string type, const char* gate,
                              const char* up, const char* down) {
    SwiGlu m{};
    m.mlp = tree.add_module(parent, std::move(name), std::move(type));
    m.gate = add_dense(tree, m.mlp, gate, gate_proj, dt);
    // Registration order: LlamaMLP has gate, up, down; a Mixtral expert has w1, w2, w3.
    if (moe) {
      m.down = add_dense(tree, m.mlp, down, down_proj, dt);
      m.up = add_dense(tree, m.mlp, up, gate_proj, dt);
    } else {
      m.up = add_dense(tree, m.mlp, up, gate_proj, dt);
      m.down = add_dense(tree, m.mlp, down, down_proj, dt);
    }
    m.act = add_leaf(tree, m.mlp, "act_fn", "SiLU");
    return m;
  };

  std::vector<DecoderLayer> layers(static_cast<size_t>(config.num_layers));
  for (std::int64_t i = 0; i < config.num_layers; ++i) {
    DecoderLayer& l = layers[static_cast<size_t>(i)];
    l.layer = tree.add_module(list, std::to_string(i), prefix + "DecoderLayer");
    l.attn = tree.add_module(l.layer, "self_attn", prefix + "Attention");
    l.q_proj = add_dense(tree, l.attn, "q_proj", q_proj, dt);
    l.k_proj = add_dense(tree, l.attn, "k_proj", kv_proj, dt);
    l.v_proj = add_dense(tree, l.attn, "v_proj", kv_proj, dt);
    l.o_proj = add_dense(tree, l.attn, "o_proj", o_proj, dt);
    if (moe) {
      l.moe = tree.add_module(l.layer, "block_sparse_moe", "MixtralSparseMoeBlock");
      l.router = add_dense(tree, l.moe, "gate", router, dt);
      const ModuleId experts = add_leaf(tree, l.moe, "experts", "ModuleList");
      // Balanced routing: the tokens * k assignments spread evenly, the remainder to the first
      // experts, so that the per-expert rows add up to exactly tokens * k.
      const std::int64_t assignments = t * top_k;
      for (std::int64_t x = 0; x < n_experts; ++x) {
        const std::int64_t rows = assignments / n_experts + (x < assignments % n_experts ? 1 : 0);
        l.experts.push_back(Expert{
            add_swiglu(experts, std::to_string(x), "MixtralBlockSparseTop2MLP", "w1", "w3", "w2"),
            rows});
      }
    } else {
      l.mlp = add_swiglu(l.layer, "mlp", "LlamaMLP", "gate_proj", "up_proj", "down_proj");
    }
    l.input_norm = add_rms_norm(tree, l.layer, "input_layernorm", prefix + "RMSNorm", h, dt);
    l.post_norm =
        add_rms_norm(tree, l.layer, "post_attention_layernorm", prefix + "RMSNorm", h, dt);

    tree.set_cost(l.layer, ModuleCost{2 * kAddFlops * t * h, 0, t * h * e});  // residual adds
    tree.set_cost(l.attn, attention_core_cost(dims, core));
    tree.set_cost(l.q_proj, dense_cost(q_proj, t, e, true));
    // k_proj and v_proj read the tensor q_proj already keeps.
    tree.set_cost(l.k_proj, dense_cost(kv_proj, t, e, false));
    tree.set_cost(l.v_proj, dense_cost(kv_proj, t, e, false));
    tree.set_cost(l.o_proj, dense_cost(o_proj, t, e, true));
    tree.set_cost(l.input_norm, rms_norm_cost(t, h, e));
    tree.set_cost(l.post_norm, rms_norm_cost(t, h, e));
    if (moe) {
      // Router softmax in fp32 (kept for its backward), top-k renormalisation, and per expert the
      // product of its output with the routing weight (which keeps both) and the scatter-add back.
      ModuleCost c;
      c.forward_flops =
          kSoftmaxFlops * t * n_experts + 2 * kAddFlops * t * top_k + 2 * kAddFlops * t * top_k * h;
      c.activation_bytes = 4 * t * n_experts + t * top_k * (h + 1) * e;
      c.output_bytes = t * h * e + t * n_experts * e;  // hidden states and router logits
      // Backward: the output's gradient, the experts' outputs' and routing weights' gradients,
      // and the router probabilities' (fp32).
      c.backward_workspace_bytes = t * h * e + t * top_k * (h + 1) * e + 4 * t * n_experts;
      tree.set_cost(l.moe, c);
      tree.set_cost(l.router, dense_cost(router, t, e, true));
      for (const Expert& x : l.experts)
        set_swiglu_costs(tree, x.mlp, gate_proj, down_proj, x.rows, e);
    } else {
      set_swiglu_costs(tree, l.mlp, gate_proj, down_proj, t, e);
    }
  }
  const ModuleId norm = add_rms_norm(tree, model, "norm", prefix + "RMSNorm", h, dt);
  const ModuleId rotary = add_leaf(tree, model, "rotary_emb", prefix + "RotaryEmbedding");

  const Dense head{h, v, false};
  const ModuleId lm_head = tree.add_module(root, "lm_head", "Linear");
  if (config.tie_word_embeddings) {
    tree.tie_parameter(lm_head, "weight", tree.module(embed).params.front().param);
  } else {
    tree.add_parameter(lm_head, "weight", {v, h}, dt);
  }

  // The loss, the root's (as GPT-2's).
  const LossCost loss = causal_lm_loss_cost(dims, v);
  ModuleCost root_cost{kCrossEntropyFlops * t * v, loss.kept_bytes, t * v * e};
  root_cost.workspace_bytes = loss.root_workspace;
  root_cost.backward_workspace_bytes = loss.root_backward_workspace;
  tree.set_cost(root, root_cost);
  ModuleCost model_cost{0, 0, t * h * e};
  // In backward the body passes the hidden states' gradient from layer to layer.
  model_cost.backward_held_bytes = t * h * e;
  tree.set_cost(model, model_cost);
  tree.set_cost(embed, embedding_cost(t, h, e, t));
  tree.set_cost(norm, rms_norm_cost(t, h, e));
  // cos and sin tables, [batch, seq, head_dim] each, computed under no_grad. Every layer's
  // rotation (q * cos + rotate_half(q) * sin) keeps them for its backward: one pair, kept from
  // here until the first layer's backward, when the call's own backward frees it.
  tree.set_cost(rotary, ModuleCost{kRotaryTableFlops * t * d, 2 * t * d * e, 2 * t * d * e});
  tree.set_cost(lm_head, dense_cost(head, t, e, true));

  // --- Forward calls
  // ------------------------------------------------------------------------------
  const auto call = [&tree](ModuleId m, std::int32_t parent, bool grad = true) {
    return tree.add_call(m, parent, grad);
  };
  const auto call_swiglu = [&](const SwiGlu& m, std::int32_t parent) {
    // down(act(gate(x)) * up(x)): Python evaluates the argument left to right first.
    const std::int32_t mlp_call = call(m.mlp, parent);
    call(m.gate, mlp_call);
    call(m.act, mlp_call);
    call(m.up, mlp_call);
    call(m.down, mlp_call);
  };
  const std::int32_t root_call = call(root, kNoCall, false);
  const std::int32_t model_call = call(model, root_call, false);  // token ids
  call(embed, model_call, false);
  call(rotary, model_call);  // takes the embeddings (for their dtype) and the position ids
  for (const DecoderLayer& l : layers) {
    const std::int32_t layer_call = call(l.layer, model_call);
    call(l.input_norm, layer_call);
    const std::int32_t attn_call = call(l.attn, layer_call);
    call(l.q_proj, attn_call);
    call(l.k_proj, attn_call);
    call(l.v_proj, attn_call);
    call(l.o_proj, attn_call);
    call(l.post_norm, layer_call);
    if (moe) {
      const std::int32_t moe_call = call(l.moe, layer_call);
      call(l.router, moe_call);
      // transformers skips experts that no token was routed to.
      for (const Expert& x : l.experts) {
        if (x.rows > 0) call_swiglu(x.mlp, moe_call);
      }
    } else {
      call_swiglu(l.mlp, layer_call);
    }
  }
  call(norm, model_call);
  call(lm_head, root_call);
  return tree;
}

}  // namespace zp::families
