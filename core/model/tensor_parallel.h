// Megatron-style tensor parallelism (Shoeybi et al. 2019) applied to a built-in family's module
// tree: what one tensor-parallel rank holds and computes, and the collectives it issues on the
// tensor (model-parallel) group. docs/tensor-parallelism.md derives every rule.
//
// Roles, decided from the module types and attribute names the families produce:
//  - column-parallel dense (QKV, MLP up and gate, each Mixtral expert's w1 and w3): the weight and
//    bias split along the output features; the input is whole on every rank;
//  - row-parallel dense (attention output, MLP down, an expert's w2): the weight split along the
//    input features, the bias whole (added after the reduction); the output is whole;
//  - vocab-parallel embedding (the word embedding) and head (lm_head, tied or not): the
//    [vocab, hidden] weight split along the vocabulary;
//  - the attention core and its probability dropout, the MLP activation and SwiGLU gating: 1/tp of
//    the heads or features each;
//  - everything else (norms, position embeddings, residual dropouts, routers, the pooler, rotary
//    tables) is replicated: whole on every rank, and its work done on every rank.
// Collectives, all blocking all-reduces over the tensor group (no sequence parallelism):
//  - forward: a row-parallel layer's output; the vocab-parallel embedding's output; the parallel
//    cross entropy's three per-token fp32 reductions (max, target logit, sum of exponentials);
//  - backward: the input gradient of each column-parallel entry (once per fused QKV or up/gate
//    pair, at the module whose backward runs last) and of the vocab-parallel head.
//
// Plain values; const access is safe from many threads.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>
#include <vector>

#include "core/model/model_config.h"
#include "core/model/module_tree.h"
#include "core/util/error.h"

namespace zp {

enum class TensorRole : std::uint8_t {
  kReplicated,
  kColumn,          // column-parallel dense
  kColumnEntry,     // column-parallel dense whose backward all-reduces the shared input gradient
  kRow,             // row-parallel dense
  kVocabEmbedding,  // vocab-parallel embedding
  kVocabHead,       // vocab-parallel output layer
  kSharded,         // heads or features split: every cost over tp
  kShardedInner,    // features split inside, the output whole (SwiGLU MLP, a Mixtral expert)
  kLossHead,        // a causal LM's root: the vocab-parallel cross entropy
};
std::string_view to_string(TensorRole role);

// Without sequence parallelism every collective is an all-reduce; the kind leaves room for the
// all-gathers and reduce-scatters that sequence parallelism would use.
enum class TensorCollectiveKind : std::uint8_t { kAllReduce };

struct TensorCollective {
  TensorCollectiveKind kind = TensorCollectiveKind::kAllReduce;
  std::int64_t bytes = 0;  // the whole buffer, as the network model counts it
  bool operator==(const TensorCollective&) const = default;
};

// What one call of a module issues on the tensor group, after its own forward or backward work.
struct ModuleCollectives {
  std::vector<TensorCollective> forward;
  std::vector<TensorCollective> backward;
  bool operator==(const ModuleCollectives&) const = default;
};

inline constexpr std::int32_t kNotSplit = -1;

struct TensorParallelModel {
  std::int64_t size = 1;                       // tp
  ModuleTree tree;                             // one tensor rank's: shapes and costs of its shard
  std::vector<TensorRole> roles;               // by module
  std::vector<ModuleCollectives> collectives;  // by module, per call
  std::vector<std::int32_t> split_axis;        // by parameter: the axis divided, or kNotSplit

  // Elements one rank holds of the split parameters, and of the replicated ones.
  std::int64_t sharded_parameters() const;
  std::int64_t replicated_parameters() const;
};

// The tree one of `tp` tensor ranks holds. `config` is the built-in family's configuration the
// tree was built from; nullopt for a model file. With tp == 1 the tree comes back unchanged, with
// no collectives. UserError (at `where`, normally parallel.tensor) when tp < 1, when tp > 1 and the
// model has no family, or when tp does not divide hidden_size, num_heads, num_kv_heads,
// intermediate_size or vocab_size.
TensorParallelModel shard_for_tensor_parallel(
    const ModuleTree& tree, const std::optional<ModelConfig>& config, std::int64_t tp,
    const SourceLocation& where = {"", 0, 0, "parallel.tensor"});

}  // namespace zp
