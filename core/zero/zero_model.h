// What ZeRO-3 sees of a model: the module ids DeepSpeed assigns, which modules are z3 leaves (and
// so gathered whole, with no hooks below them), which parameters each hooked module fetches, the
// parameters' ids, partitions and persistence.
//
// Rules, after DeepSpeed's parameter_offload.py and utils/z3_leaf_module.py:
//  - Module ids: depth-first in registration order from the root (id 0), each child one more than
//    the last id handed out; a z3 leaf's descendants get no id and no hooks.
//  - Leaves by class (set_z3_leaf_modules): every module whose class name is listed; none matching
//    is an error.
//  - Leaves by stage3_module_granularity_threshold (> 0): a module's granularity is its subtree's
//    parameter count over its layer count (torch leaf modules count one layer each, containers
//    (Sequential, ModuleList, ...) none, every other module one more); containers, parameterless
//    modules and torch leaf modules are never leaves, nor is a subtree above 1e9 parameters. The
//    topmost modules with granularity <= threshold become leaves. When even the smallest
//    granularity is above the threshold nothing changes and a warning says which value would work.
//  - Parameter ids: named_parameters() order. A hooked module fetches its own parameters
//    (recurse=False), a leaf its whole subtree's, and in both cases the external parameters
//    registered on it.
//
// Immutable after construction; safe to share between threads.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include "core/model/module_tree.h"
#include "core/util/error.h"
#include "core/zero/partition.h"
#include "core/zero/settings.h"

namespace zp::zero {

inline constexpr std::int64_t kNoDsId = -1;

struct ZeroParam {
  std::int64_t ds_id = 0;
  std::int64_t numel = 0;
  PartitionShape shape;
  DType dtype = DType::kFloat32;
  bool requires_grad = true;
  bool persistent = false;
  ModuleId leaf = kNoModule;  // the z3 leaf whose subtree holds it
  // Registered as an external parameter on some module: DeepSpeed never releases it after a
  // module, only at the optimizer step.
  bool external = false;
};

class ZeroModel {
 public:
  // Throws UserError when leaf classes match no module.
  ZeroModel(const ModuleTree& tree, const ZeroSettings& settings);
  // This model under `settings`, which may differ from its own only in the thresholds the
  // coordinator alone reads (max_live_parameters, max_reuse_distance, prefetch_bucket_size):
  // nothing else of the model depends on them, so it is a copy rather than a rebuild.
  ZeroModel with_thresholds(const ZeroSettings& settings) const;

  const ModuleTree& tree() const { return *tree_; }
  const ZeroSettings& settings() const { return settings_; }

  std::int64_t module_ds_id(ModuleId m) const { return module_ds_id_[static_cast<size_t>(m)]; }
  bool is_hooked(ModuleId m) const { return module_ds_id(m) != kNoDsId; }
  bool is_leaf(ModuleId m) const { return leaf_[static_cast<size_t>(m)]; }
  // Leaves in preorder.
  std::vector<ModuleId> leaves() const;

  // iter_params(module, recurse): direct parameters, or the subtree's, then the module's external
  // parameters; DeepSpeed's iteration order.
  std::span<const ParamId> params_span(ModuleId m, bool recurse) const {
    const std::int32_t e = with_external_[static_cast<size_t>(m)];
    if (e < 0) return named_span(m, recurse);
    check_subtree(m, recurse);
    return recurse ? subtree_with_external_[static_cast<size_t>(e)]
                   : direct_with_external_[static_cast<size_t>(e)];
  }
  // named_parameters(recurse) alone, without external parameters.
  std::span<const ParamId> named_span(ModuleId m, bool recurse) const {
    check_subtree(m, recurse);
    return recurse ? subtree_.list(static_cast<size_t>(m)) : direct_.list(static_cast<size_t>(m));
  }
  // What a hook on `m` fetches and releases: iter_params(m, recurse=is_leaf(m)).
  std::span<const ParamId> fetch_span(ModuleId m) const { return params_span(m, is_leaf(m)); }

  // The same lists as vectors (the first call builds them all; the spans above cost nothing).
  const std::vector<ParamId>& params_of(ModuleId m, bool recurse) const {
    const std::int32_t e = with_external_[static_cast<size_t>(m)];
    if (e < 0) return named_params(m, recurse);
    ZP_CHECK(!recurse || all_subtrees_ || m == 0, "subtree of module ", m, " not built");
    return recurse ? subtree_with_external_[static_cast<size_t>(e)]
                   : direct_with_external_[static_cast<size_t>(e)];
  }
  const std::vector<ParamId>& named_params(ModuleId m, bool recurse) const;
  const std::vector<ParamId>& fetch_params(ModuleId m) const { return params_of(m, is_leaf(m)); }

  const ZeroParam& param(ParamId p) const { return params_[static_cast<size_t>(p)]; }
  // Tree parameter ids in ds_id order.
  const std::vector<ParamId>& params_by_ds_id() const { return by_ds_id_; }
  const std::vector<ParamId>& persistent_params() const { return persistent_; }
  std::int64_t persistent_numel() const;

  // The granularity DeepSpeed computes for each module (INT64_MAX where it cannot be a leaf);
  // empty unless stage3_module_granularity_threshold > 0.
  const std::vector<std::int64_t>& granularity() const { return granularity_; }
  const std::vector<Warning>& warnings() const { return warnings_; }

 private:
  // Out of line, so that the span accessors stay small enough to inline.
  void check_subtree(ModuleId m, bool recurse) const {
    if (recurse && !all_subtrees_ && m != 0) [[unlikely]]
      check_subtree_failed(m, recurse);
  }
  void check_subtree_failed(ModuleId m, bool recurse) const;
  void mark_leaves_by_class();
  void mark_leaves_by_granularity();
  void assign_module_ids();

  const ModuleTree* tree_;
  ZeroSettings settings_;
  std::vector<std::int64_t> module_ds_id_;
  std::vector<bool> leaf_;
  // One list per module, all in one array: list i is items[begin[i] .. begin[i + 1]). (A vector
  // per module would cost an allocation each.)
  struct ListPool {
    std::vector<ParamId> items;
    std::vector<std::int32_t> begin = {0};
    std::span<const ParamId> list(size_t i) const {
      return {items.data() + begin[i], static_cast<size_t>(begin[i + 1] - begin[i])};
    }
    void close_list() { begin.push_back(static_cast<std::int32_t>(items.size())); }
    size_t size() const { return begin.size() - 1; }
  };
  ListPool direct_;            // named, recurse=False
  ListPool subtree_;           // named, recurse=True; the root's alone unless
  bool all_subtrees_ = false;  // leaves may exist
  // named_params' vectors, built on first use (tests and tools want vectors; the hot paths take
  // spans). Shared by copies: they hold the same lists.
  struct NamedVectors {
    std::once_flag built;
    std::vector<std::vector<ParamId>> direct, subtree;
  };
  std::shared_ptr<NamedVectors> named_vectors_;
  // Modules with external parameters: their index into the lists below, -1 for the others.
  std::vector<std::int32_t> with_external_;
  std::vector<std::vector<ParamId>> direct_with_external_;
  std::vector<std::vector<ParamId>> subtree_with_external_;
  std::vector<ZeroParam> params_;
  std::vector<ParamId> by_ds_id_;
  std::vector<ParamId> persistent_;  // in ds_id order
  std::vector<std::int64_t> granularity_;
  std::vector<Warning> warnings_;
};

// gather_buffers (partition.h) for the model's own data-parallel group, from the partition shapes
// it already holds rather than from the tree's parameter shapes. `out` is cleared first.
void gather_buffers(const ZeroModel& model, std::span<const ParamId> params, bool use_all_reduce,
                    std::vector<GatherBuffer>& out);

// The modules of `tree` whose class is listed, in preorder (set_z3_leaf_modules' matches).
std::vector<ModuleId> modules_of_classes(const ModuleTree& tree,
                                         const std::vector<std::string>& classes);

}  // namespace zp::zero
