#include "core/zero/zero_model.h"

#include <algorithm>
#include <array>
#include <limits>

namespace zp::zero {
namespace {

constexpr std::int64_t kMaxSize = std::numeric_limits<std::int64_t>::max();  // sys.maxsize
constexpr double kMaxLeafSize = 1e9;                                         // Z3_MAX_LEAF_SIZE

// torch.nn.modules.container.__all__
bool is_container(const std::string& type) {
  static constexpr std::array<std::string_view, 6> kContainers = {
      "Container", "Sequential", "ModuleList", "ModuleDict", "ParameterList", "ParameterDict"};
  return std::find(kContainers.begin(), kContainers.end(), type) != kContainers.end();
}

// Appends the parameters of `m` without repeats, in registration order:
// named_parameters(recurse=False).
void append_direct_params(const ModuleTree& tree, ModuleId m, std::vector<ParamId>& out) {
  const auto first = static_cast<std::ptrdiff_t>(out.size());
  for (const ParamSlot& slot : tree.module(m).params) {
    if (std::find(out.begin() + first, out.end(), slot.param) == out.end())
      out.push_back(slot.param);
  }
}

// Appends named_parameters() of the subtree of `m`: preorder, each parameter at its first
// registration. `seen` is scratch shared by the calls (one entry per parameter, last module that
// saw it), so each call costs its subtree, not the whole model; `stack` is scratch too.
void append_subtree_params(const ModuleTree& tree, ModuleId m, std::vector<ModuleId>& seen,
                           std::vector<ModuleId>& stack, std::vector<ParamId>& out) {
  stack.assign(1, m);
  while (!stack.empty()) {
    const ModuleId id = stack.back();
    stack.pop_back();
    for (const ParamSlot& slot : tree.module(id).params) {
      if (seen[static_cast<size_t>(slot.param)] != m) {
        seen[static_cast<size_t>(slot.param)] = m;
        out.push_back(slot.param);
      }
    }
    const auto& children = tree.module(id).children;
    for (auto it = children.rbegin(); it != children.rend(); ++it)
      stack.push_back(*it);
  }
}

}  // namespace

std::vector<ModuleId> modules_of_classes(const ModuleTree& tree,
                                         const std::vector<std::string>& classes) {
  std::vector<ModuleId> out;
  for (ModuleId m : tree.preorder()) {
    if (std::find(classes.begin(), classes.end(), tree.module(m).type) != classes.end())
      out.push_back(m);
  }
  return out;
}

ZeroModel ZeroModel::with_thresholds(const ZeroSettings& settings) const {
  ZeroSettings same = settings;
  same.max_live_parameters = settings_.max_live_parameters;
  same.max_reuse_distance = settings_.max_reuse_distance;
  same.prefetch_bucket_size = settings_.prefetch_bucket_size;
  ZP_CHECK(same == settings_, "with_thresholds given settings that change more than thresholds");
  ZeroModel out = *this;
  out.settings_ = settings;
  return out;
}

ZeroModel::ZeroModel(const ModuleTree& tree, const ZeroSettings& settings)
    : tree_(&tree), settings_(settings) {
  const size_t n = tree.modules().size();
  leaf_.assign(n, false);
  // A module's whole subtree matters only to z3 leaves (and to the root's parameter order), so
  // without leaves only the root's is built (and the list holds only the root's).
  all_subtrees_ =
      !settings.leaf_module_classes.empty() || settings.module_granularity_threshold > 0;
  const size_t params = tree.parameters().size();
  direct_.items.reserve(params);
  direct_.begin.reserve(n + 1);
  subtree_.items.reserve(params);
  std::vector<ModuleId> seen(params, kNoModule);
  std::vector<ModuleId> stack;
  stack.reserve(n);
  for (size_t m = 0; m < n; ++m) {
    append_direct_params(tree, static_cast<ModuleId>(m), direct_.items);
    direct_.close_list();
    if (all_subtrees_ || m == 0) {
      append_subtree_params(tree, static_cast<ModuleId>(m), seen, stack, subtree_.items);
      subtree_.close_list();
    }
  }
  const std::span<const ParamId> root = subtree_.list(0);
  by_ds_id_.assign(root.begin(), root.end());
  named_vectors_ = std::make_shared<NamedVectors>();
  // iter_params chains the module's external parameters after its named ones; most modules have
  // none and share their named lists.
  with_external_.assign(n, -1);
  for (size_t m = 0; m < n; ++m) {
    const std::vector<ParamId>& external = tree.module(static_cast<ModuleId>(m)).external_params;
    if (external.empty()) continue;
    with_external_[m] = static_cast<std::int32_t>(direct_with_external_.size());
    const std::span<const ParamId> direct = direct_.list(m);
    direct_with_external_.emplace_back(direct.begin(), direct.end());
    if (m < subtree_.size()) {
      const std::span<const ParamId> subtree = subtree_.list(m);
      subtree_with_external_.emplace_back(subtree.begin(), subtree.end());
    } else {
      subtree_with_external_.emplace_back();
    }
    for (ParamId p : external) {
      for (auto* list : {&direct_with_external_.back(), &subtree_with_external_.back()}) {
        if (std::find(list->begin(), list->end(), p) == list->end()) list->push_back(p);
      }
    }
  }

  // Parameters: ds ids in named_parameters() order, partitions, persistence.
  params_.resize(tree.parameters().size());
  ZP_CHECK(by_ds_id_.size() == tree.parameters().size(),
           "every parameter is registered under the root");
  for (size_t i = 0; i < by_ds_id_.size(); ++i) {
    const Parameter& p = tree.parameter(by_ds_id_[i]);
    ZeroParam& z = params_[static_cast<size_t>(by_ds_id_[i])];
    z.ds_id = static_cast<std::int64_t>(i);
    z.numel = p.numel();
    z.shape = partition_shape(z.numel, settings.data_parallel_size);
    z.dtype = p.dtype;
    z.requires_grad = p.requires_grad;
  }
  for (const Module& m : tree.modules()) {
    for (ParamId p : m.external_params)
      params_[static_cast<size_t>(p)].external = true;
  }
  // by_ds_id_ is named_parameters() order already.
  for (ParamId p : persistent_parameters(tree, by_ds_id_, settings.param_persistence_threshold,
                                         settings.model_persistence_threshold)) {
    params_[static_cast<size_t>(p)].persistent = true;
  }

  for (ParamId p : by_ds_id_) {
    if (params_[static_cast<size_t>(p)].persistent) persistent_.push_back(p);
  }

  if (!settings.leaf_module_classes.empty()) mark_leaves_by_class();
  if (settings.module_granularity_threshold > 0) mark_leaves_by_granularity();
  assign_module_ids();
}

void ZeroModel::mark_leaves_by_class() {
  const std::vector<ModuleId> matches = modules_of_classes(*tree_, settings_.leaf_module_classes);
  if (matches.empty()) {
    std::string list;
    for (const std::string& c : settings_.leaf_module_classes)
      list += (list.empty() ? "" : ", ") + c;
    throw UserError(ErrorKind::kValue, {},
                    "no module of the leaf classes [" + list +
                        "] is in the model (DeepSpeed's set_z3_leaf_modules raises here)");
  }
  for (ModuleId m : matches)
    leaf_[static_cast<size_t>(m)] = true;
}

void ZeroModel::mark_leaves_by_granularity() {
  const ModuleTree& tree = *tree_;
  granularity_.assign(tree.modules().size(), kMaxSize);
  std::int64_t smallest = kMaxSize;
  std::string smallest_type;

  // Returns (layers, parameters) of the subtree, as DeepSpeed's recursion counts them: each
  // child's parameters are counted within that child, so a parameter shared by two children
  // counts twice.
  struct Counts {
    std::int64_t layers, params;
  };
  auto visit = [&](auto&& self, ModuleId m) -> Counts {
    const Module& mod = tree.module(m);
    if (subtree_.list(static_cast<size_t>(m)).empty()) return {0, 0};
    std::int64_t params = 0;
    for (ParamId p : direct_.list(static_cast<size_t>(m)))
      params += tree.parameter(p).numel();
    if (mod.children.empty()) return {1, params};
    std::int64_t layers = 0;
    for (ModuleId c : mod.children) {
      const Counts child = self(self, c);
      layers += child.layers;
      params += child.params;
    }
    if (is_container(mod.type)) return {layers, params};
    layers += 1;
    const std::int64_t g = static_cast<double>(params) <= kMaxLeafSize ? params / layers : kMaxSize;
    granularity_[static_cast<size_t>(m)] = g;
    if (g < smallest) {
      smallest = g;
      smallest_type = mod.type;
    }
    return {layers, params};
  };
  visit(visit, 0);

  const std::int64_t threshold = settings_.module_granularity_threshold;
  if (smallest > threshold) {
    warnings_.push_back(
        Warning{{},
                "stage3_module_granularity_threshold " + std::to_string(threshold) +
                    " selects no leaf module: the smallest granularity is " +
                    (smallest == kMaxSize ? std::string("unbounded") : std::to_string(smallest)) +
                    " (" + smallest_type + "); set it to at least that"});
    return;
  }
  auto mark = [&](auto&& self, ModuleId m) -> void {
    if (subtree_.list(static_cast<size_t>(m)).empty()) return;
    if (granularity_[static_cast<size_t>(m)] <= threshold) {
      leaf_[static_cast<size_t>(m)] = true;
      return;
    }
    for (ModuleId c : tree.module(m).children)
      self(self, c);
  };
  mark(mark, 0);
}

void ZeroModel::assign_module_ids() {
  const ModuleTree& tree = *tree_;
  module_ds_id_.assign(tree.modules().size(), kNoDsId);
  // Preorder numbering, without recursion: a module's id is one more than the last handed out.
  std::int64_t count = 0;
  std::vector<ModuleId> stack;
  stack.reserve(tree.modules().size());
  stack.push_back(0);
  while (!stack.empty()) {
    const ModuleId m = stack.back();
    stack.pop_back();
    module_ds_id_[static_cast<size_t>(m)] = count++;
    if (is_leaf(m)) {
      for (ParamId p : subtree_.list(static_cast<size_t>(m)))
        params_[static_cast<size_t>(p)].leaf = m;
      continue;
    }
    const auto& children = tree.module(m).children;
    for (auto it = children.rbegin(); it != children.rend(); ++it)
      stack.push_back(*it);
  }
}

void gather_buffers(const ZeroModel& model, std::span<const ParamId> params, bool use_all_reduce,
                    std::vector<GatherBuffer>& out) {
  out.clear();
  if (model.settings().data_parallel_size == 1 || params.empty()) return;
  if (params.size() == 1) {
    const ZeroParam& p = model.param(params[0]);
    out.push_back({p.dtype, p.shape.padded_numel});
    return;
  }
  if (use_all_reduce) {
    std::int64_t numel = 0;
    for (ParamId id : params)
      numel += model.param(id).shape.padded_numel;
    out.push_back({model.param(params[0]).dtype, numel});
    return;
  }
  for (ParamId id : params) {
    const ZeroParam& p = model.param(id);
    auto it = std::find_if(out.begin(), out.end(),
                           [&](const GatherBuffer& b) { return b.dtype == p.dtype; });
    if (it == out.end()) it = out.insert(out.end(), GatherBuffer{p.dtype, 0});
    it->numel += p.shape.padded_numel;  // the partition times the group size
  }
}

void ZeroModel::check_subtree_failed(ModuleId m, bool recurse) const {
  ZP_CHECK(!recurse || all_subtrees_ || m == 0, "subtree of module ", m, " not built");
}

const std::vector<ParamId>& ZeroModel::named_params(ModuleId m, bool recurse) const {
  check_subtree(m, recurse);
  NamedVectors& v = *named_vectors_;
  std::call_once(v.built, [&] {
    for (auto [pool, lists] : {std::pair{&direct_, &v.direct}, std::pair{&subtree_, &v.subtree}}) {
      lists->reserve(pool->size());
      for (size_t i = 0; i < pool->size(); ++i) {
        const std::span<const ParamId> list = pool->list(i);
        lists->emplace_back(list.begin(), list.end());
      }
    }
  });
  return recurse ? v.subtree[static_cast<size_t>(m)] : v.direct[static_cast<size_t>(m)];
}

std::vector<ModuleId> ZeroModel::leaves() const {
  std::vector<ModuleId> out;
  for (ModuleId m : tree_->preorder()) {
    if (is_leaf(m) && is_hooked(m)) out.push_back(m);
  }
  return out;
}

std::int64_t ZeroModel::persistent_numel() const {
  std::int64_t n = 0;
  for (ParamId p : persistent_params())
    n += param(p).numel;
  return n;
}

}  // namespace zp::zero
