#include "core/pipe/layers.h"

#include <algorithm>
#include <map>

#include "core/util/error.h"

namespace zp::pipe {
namespace {

bool is_container(const std::string& type) {
  return type == "Sequential" || type == "ModuleList" || type == "ModuleDict";
}

}  // namespace

std::vector<std::string> PipelineLayers::tied_keys() const {
  std::vector<std::string> keys;
  for (const Layer& l : layers) {
    if (!l.tied_key.empty() && std::find(keys.begin(), keys.end(), l.tied_key) == keys.end()) {
      keys.push_back(l.tied_key);
    }
  }
  return keys;
}

PipelineLayers layers_from_tree(const ModuleTree& tree) {
  const auto& calls = tree.calls();
  if (calls.empty()) {
    throw UserError(ErrorKind::kValue, {},
                    "the model has no forward calls, so it cannot be split into pipeline layers");
  }
  std::vector<std::vector<std::int32_t>> children(calls.size());
  std::vector<std::int32_t> roots;
  for (size_t i = 0; i < calls.size(); ++i) {
    if (calls[i].parent_call == kNoCall) {
      roots.push_back(static_cast<std::int32_t>(i));
    } else {
      children[static_cast<size_t>(calls[i].parent_call)].push_back(static_cast<std::int32_t>(i));
    }
  }
  // A wrapper registers a container (ModuleList is never called itself: its wrapper calls the
  // elements directly).
  auto holds_container = [&](ModuleId m) {
    const auto& kids = tree.module(m).children;
    return std::any_of(kids.begin(), kids.end(),
                       [&](ModuleId k) { return is_container(tree.module(k).type); });
  };

  // The parameters of a module's subtree, each once, in first-seen order. One stamp array for
  // every call, since this runs once per simulation.
  std::vector<std::int32_t> stamp(tree.parameters().size(), -1);
  std::int32_t visit_id = 0;
  std::vector<ModuleId> stack;
  auto subtree_params = [&](ModuleId root) {
    std::vector<ParamId> params;
    ++visit_id;
    stack.assign(1, root);
    while (!stack.empty()) {
      const ModuleId id = stack.back();
      stack.pop_back();
      for (const ParamSlot& slot : tree.module(id).params) {
        std::int32_t& seen = stamp[static_cast<size_t>(slot.param)];
        if (seen == visit_id) continue;
        seen = visit_id;
        params.push_back(slot.param);
      }
      for (ModuleId k : tree.module(id).children)
        stack.push_back(k);
    }
    return params;
  };

  PipelineLayers out;
  auto visit = [&](auto&& self, std::int32_t c, bool is_root) -> void {
    const Module& m = tree.module(calls[static_cast<size_t>(c)].module);
    const bool expand =
        !children[static_cast<size_t>(c)].empty() &&
        (is_root || is_container(m.type) || holds_container(calls[static_cast<size_t>(c)].module));
    if (expand) {
      for (std::int32_t k : children[static_cast<size_t>(c)])
        self(self, k, false);
      return;
    }
    Layer layer;
    layer.module = calls[static_cast<size_t>(c)].module;
    layer.call = c;
    layer.name = tree.qualified_name(layer.module);
    layer.type = m.type;
    // Parameters of the layer's subtree, each once.
    for (ParamId p : subtree_params(layer.module)) {
      const Parameter& param = tree.parameter(p);
      layer.parameter_numel += param.numel();
      if (param.requires_grad) layer.trainable_parameters += param.numel();
    }
    out.layers.push_back(std::move(layer));
  };
  for (std::int32_t r : roots)
    visit(visit, r, true);

  // Tied layers: a parameter registered under two layers' subtrees.
  // The layers holding each parameter, by parameter id; most hold one.
  std::vector<std::vector<size_t>> holders(tree.parameters().size());
  for (size_t i = 0; i < out.layers.size(); ++i) {
    for (ParamId p : subtree_params(out.layers[i].module))
      holders[static_cast<size_t>(p)].push_back(i);
  }
  for (size_t param = 0; param < holders.size(); ++param) {
    const std::vector<size_t>& layer_indices = holders[param];
    if (layer_indices.size() < 2) continue;
    std::vector<size_t> distinct;
    for (size_t li : layer_indices) {
      if (std::find_if(distinct.begin(), distinct.end(), [&](size_t d) {
            return out.layers[d].module == out.layers[li].module;
          }) == distinct.end()) {
        distinct.push_back(li);
      }
    }
    if (distinct.size() < 2) continue;
    for (size_t li : layer_indices) {
      Layer& l = out.layers[li];
      l.tied_key = tree.parameter(static_cast<ParamId>(param)).name;
      for (const ParamSlot& slot : tree.module(l.module).params) {
        if (slot.param == static_cast<ParamId>(param)) l.tied_weight_attr = slot.attr;
      }
      if (l.tied_weight_attr.empty()) l.tied_weight_attr = "weight";
    }
  }
  return out;
}

}  // namespace zp::pipe
