#include "core/model/module_tree.h"

#include <algorithm>

#include "core/util/error.h"

namespace zp {

std::int64_t Parameter::numel() const {
  std::int64_t n = 1;
  for (std::int64_t d : shape)
    n *= d;
  return n;
}

ModuleTree ModuleTree::from_parts(std::string name, BatchShape shape, std::vector<Module> modules,
                                  std::vector<Parameter> params, std::vector<ForwardCall> calls) {
  ModuleTree tree(std::move(name));
  tree.shape_ = shape;
  tree.modules_ = std::move(modules);
  tree.params_ = std::move(params);
  tree.calls_ = std::move(calls);
  return tree;
}

ModuleId ModuleTree::add_module(ModuleId parent, std::string name, std::string type) {
  const auto id = static_cast<ModuleId>(modules_.size());
  if (parent == kNoModule) {
    ZP_CHECK(modules_.empty(), "a tree has one root; it is added first");
  } else {
    ZP_CHECK(parent >= 0 && parent < id, "parent ", parent, " does not exist");
    modules_[static_cast<size_t>(parent)].children.push_back(id);
  }
  modules_.push_back(Module{std::move(name), std::move(type), parent, {}, {}, {}, {}});
  return id;
}

ParamId ModuleTree::add_parameter(ModuleId owner, std::string attr, std::vector<std::int64_t> shape,
                                  DType dtype, bool requires_grad) {
  const auto id = static_cast<ParamId>(params_.size());
  std::string prefix = qualified_name(owner);
  std::string name = prefix.empty() ? attr : prefix + "." + attr;
  params_.push_back(Parameter{std::move(name), std::move(shape), dtype, requires_grad});
  mutable_module(owner).params.push_back(ParamSlot{std::move(attr), id});
  return id;
}

void ModuleTree::tie_parameter(ModuleId module, std::string attr, ParamId param) {
  ZP_CHECK(param >= 0 && static_cast<size_t>(param) < params_.size(), "no parameter ", param);
  mutable_module(module).params.push_back(ParamSlot{std::move(attr), param});
}

void ModuleTree::set_cost(ModuleId module, ModuleCost cost) {
  mutable_module(module).cost = cost;
}

void ModuleTree::add_external_parameter(ModuleId module, ParamId param) {
  ZP_CHECK(param >= 0 && static_cast<size_t>(param) < params_.size(), "no parameter ", param);
  auto& list = mutable_module(module).external_params;
  if (std::find(list.begin(), list.end(), param) == list.end()) list.push_back(param);
}

std::int32_t ModuleTree::add_call(ModuleId module, std::int32_t parent_call,
                                  bool inputs_require_grad) {
  ZP_CHECK(module >= 0 && static_cast<size_t>(module) < modules_.size(), "no module ", module);
  const auto index = static_cast<std::int32_t>(calls_.size());
  ZP_CHECK(parent_call >= kNoCall && parent_call < index, "parent call ", parent_call,
           " must precede call ", index);
  calls_.push_back(ForwardCall{module, parent_call, inputs_require_grad});
  return index;
}

void ModuleTree::no_module(ModuleId id) const {
  detail::internal_check_failed("id >= 0 && static_cast<size_t>(id) < modules_.size()", __FILE__,
                                __LINE__, detail::concat("no module ", id));
}

void ModuleTree::no_parameter(ParamId id) const {
  detail::internal_check_failed("id >= 0 && static_cast<size_t>(id) < params_.size()", __FILE__,
                                __LINE__, detail::concat("no parameter ", id));
}

Module& ModuleTree::mutable_module(ModuleId id) {
  ZP_CHECK(id >= 0 && static_cast<size_t>(id) < modules_.size(), "no module ", id);
  return modules_[static_cast<size_t>(id)];
}

Parameter& ModuleTree::mutable_parameter(ParamId id) {
  ZP_CHECK(id >= 0 && static_cast<size_t>(id) < params_.size(), "no parameter ", id);
  return params_[static_cast<size_t>(id)];
}

std::vector<ModuleId> ModuleTree::parameter_owners() const {
  std::vector<ModuleId> owners(params_.size(), kNoModule);
  std::vector<ModuleId> first(params_.size(), kNoModule);
  for (std::size_t m = 0; m < modules_.size(); ++m) {
    const std::string prefix = qualified_name(static_cast<ModuleId>(m));
    for (const ParamSlot& slot : modules_[m].params) {
      const auto p = static_cast<std::size_t>(slot.param);
      if (p >= params_.size()) continue;
      if (first[p] == kNoModule) first[p] = static_cast<ModuleId>(m);
      const std::string& name = params_[p].name;
      const bool names_it = prefix.empty()
                                ? name == slot.attr
                                : name.size() == prefix.size() + 1 + slot.attr.size() &&
                                      name.starts_with(prefix) && name[prefix.size()] == '.' &&
                                      name.ends_with(slot.attr);
      if (names_it && owners[p] == kNoModule) owners[p] = static_cast<ModuleId>(m);
    }
  }
  for (std::size_t p = 0; p < owners.size(); ++p)
    if (owners[p] == kNoModule) owners[p] = first[p];
  return owners;
}

std::string ModuleTree::qualified_name(ModuleId id) const {
  std::vector<const std::string*> parts;
  for (ModuleId m = id; m != kNoModule && module(m).parent != kNoModule; m = module(m).parent) {
    parts.push_back(&module(m).name);
  }
  std::string out;
  for (auto it = parts.rbegin(); it != parts.rend(); ++it) {
    if (!out.empty()) out += '.';
    out += **it;
  }
  return out;
}

std::vector<ModuleId> ModuleTree::preorder() const {
  std::vector<ModuleId> order;
  if (modules_.empty()) return order;
  order.reserve(modules_.size());
  std::vector<ModuleId> stack = {0};
  while (!stack.empty()) {
    ModuleId m = stack.back();
    stack.pop_back();
    order.push_back(m);
    const auto& children = module(m).children;
    for (auto it = children.rbegin(); it != children.rend(); ++it)
      stack.push_back(*it);
  }
  return order;
}

std::int64_t ModuleTree::subtree_parameters(ModuleId id) const {
  std::vector<bool> seen(params_.size(), false);
  std::int64_t total = 0;
  std::vector<ModuleId> stack = {id};
  while (!stack.empty()) {
    ModuleId m = stack.back();
    stack.pop_back();
    for (const ParamSlot& slot : module(m).params) {
      if (!seen[static_cast<size_t>(slot.param)]) {
        seen[static_cast<size_t>(slot.param)] = true;
        total += parameter(slot.param).numel();
      }
    }
    for (ModuleId c : module(m).children)
      stack.push_back(c);
  }
  return total;
}

std::int64_t ModuleTree::total_parameters() const {
  std::int64_t total = 0;
  for (const Parameter& p : params_)
    total += p.numel();
  return total;
}

std::int64_t ModuleTree::trainable_parameters() const {
  std::int64_t total = 0;
  for (const Parameter& p : params_) {
    if (p.requires_grad) total += p.numel();
  }
  return total;
}

std::int64_t ModuleTree::total_parameter_bytes() const {
  std::int64_t total = 0;
  for (const Parameter& p : params_)
    total += p.bytes();
  return total;
}

}  // namespace zp
