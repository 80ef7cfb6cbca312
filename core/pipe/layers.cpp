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
    std::vector<bool> seen(tree.parameters().size(), false);
    std::vector<ModuleId> stack = {layer.module};
    while (!stack.empty()) {
      const ModuleId id = stack.back();
      stack.pop_back();
      for (const ParamSlot& slot : tree.module(id).params) {
        if (seen[static_cast<size_t>(slot.param)]) continue;
        seen[static_cast<size_t>(slot.param)] = true;
        const Parameter& p = tree.parameter(slot.param);
        layer.parameter_numel += p.numel();
        if (p.requires_grad) layer.trainable_parameters += p.numel();
      }
      for (ModuleId k : tree.module(id).children)
        stack.push_back(k);
    }
    out.layers.push_back(std::move(layer));
  };
  for (std::int32_t r : roots)
    visit(visit, r, true);

  // Tied layers: a parameter registered under two layers' subtrees.
  std::map<ParamId, std::vector<size_t>> holders;
  for (size_t i = 0; i < out.layers.size(); ++i) {
    std::vector<ModuleId> stack = {out.layers[i].module};
    std::vector<ParamId> mine;
    while (!stack.empty()) {
      const ModuleId id = stack.back();
      stack.pop_back();
      for (const ParamSlot& slot : tree.module(id).params) {
        if (std::find(mine.begin(), mine.end(), slot.param) == mine.end())
          mine.push_back(slot.param);
      }
      for (ModuleId k : tree.module(id).children)
        stack.push_back(k);
    }
    for (ParamId p : mine)
      holders[p].push_back(i);
  }
  for (const auto& [param, layer_indices] : holders) {
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
      l.tied_key = tree.parameter(param).name;
      for (const ParamSlot& slot : tree.module(l.module).params) {
        if (slot.param == param) l.tied_weight_attr = slot.attr;
      }
      if (l.tied_weight_attr.empty()) l.tied_weight_attr = "weight";
    }
  }
  return out;
}

}  // namespace zp::pipe
