#include "core/model/summary.h"

#include <algorithm>
#include <map>

namespace zp {

std::int64_t own_parameters(const ModuleTree& tree, ModuleId id) {
  std::int64_t total = 0;
  const auto& slots = tree.module(id).params;
  for (size_t i = 0; i < slots.size(); ++i) {
    // The same parameter under two attribute names of one module counts once.
    const bool repeat = std::any_of(slots.begin(), slots.begin() + static_cast<std::ptrdiff_t>(i),
                                    [&](const ParamSlot& s) { return s.param == slots[i].param; });
    if (!repeat) total += tree.parameter(slots[i].param).numel();
  }
  return total;
}

ModelSummary summarize_model(const ModuleTree& tree, size_t top) {
  ModelSummary s;
  s.modules = static_cast<std::int64_t>(tree.modules().size());
  s.parameter_tensors = static_cast<std::int64_t>(tree.parameters().size());
  s.parameters = tree.total_parameters();
  s.trainable_parameters = tree.trainable_parameters();
  s.parameter_bytes = tree.total_parameter_bytes();

  std::vector<int> registrations(tree.parameters().size(), 0);
  std::vector<bool> counted(tree.parameters().size(), false);
  std::map<std::string, ModuleTypeTotals> types;
  std::vector<std::pair<std::int64_t, ModuleId>> sizes;
  for (ModuleId id : tree.preorder()) {
    const Module& m = tree.module(id);
    ModuleTypeTotals& t = types[m.type];
    t.type = m.type;
    ++t.modules;
    for (const ParamSlot& slot : m.params) {
      ++registrations[static_cast<size_t>(slot.param)];
      if (!counted[static_cast<size_t>(slot.param)]) {
        counted[static_cast<size_t>(slot.param)] = true;
        t.parameters += tree.parameter(slot.param).numel();
      }
    }
    if (const std::int64_t own = own_parameters(tree, id); own > 0) sizes.emplace_back(own, id);
  }
  s.tied_parameters =
      std::count_if(registrations.begin(), registrations.end(), [](int r) { return r > 1; });
  for (auto& [name, totals] : types)
    s.by_type.push_back(totals);
  std::stable_sort(s.by_type.begin(), s.by_type.end(), [](const auto& a, const auto& b) {
    return a.parameters != b.parameters ? a.parameters > b.parameters : a.type < b.type;
  });
  std::stable_sort(sizes.begin(), sizes.end(),
                   [](const auto& a, const auto& b) { return a.first > b.first; });
  for (size_t i = 0; i < sizes.size() && i < top; ++i)
    s.largest.push_back(sizes[i].second);

  for (const ForwardCall& call : tree.calls()) {
    s.forward_flops += tree.module(call.module).cost.forward_flops;
    s.activation_bytes += tree.module(call.module).cost.activation_bytes;
  }
  return s;
}

}  // namespace zp
