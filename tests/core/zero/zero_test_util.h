// Helpers for the ZeRO-3 tests: small module trees and a backend that writes decisions down.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/model/module_tree.h"
#include "core/zero/training_step.h"

namespace zp::zero::testing {

// Builds trees by hand: modules with parameters of given sizes, and calls.
class TreeBuilder {
 public:
  TreeBuilder() { tree_.add_module(kNoModule, "", "Net"); }
  ModuleId add(ModuleId parent, const std::string& name, const std::string& type,
               std::vector<std::int64_t> param_numels = {}, bool requires_grad = true) {
    const ModuleId m = tree_.add_module(parent, name, type);
    for (size_t i = 0; i < param_numels.size(); ++i) {
      tree_.add_parameter(m, i == 0 ? "weight" : "p" + std::to_string(i), {param_numels[i]},
                          DType::kFloat32, requires_grad);
    }
    return m;
  }
  std::int32_t call(ModuleId m, std::int32_t parent, bool inputs_require_grad = true) {
    return tree_.add_call(m, parent, inputs_require_grad);
  }
  ModuleTree& tree() { return tree_; }

 private:
  ModuleTree tree_{"test"};
};

// root{m0, m1, ...}: one parameter per module, called in order from the root; the root's input
// does not require grad, and neither does m0's.
inline ModuleTree Chain(const std::vector<std::int64_t>& numels) {
  TreeBuilder b;
  std::vector<ModuleId> ms;
  for (size_t i = 0; i < numels.size(); ++i)
    ms.push_back(b.add(0, "m" + std::to_string(i), "Linear", {numels[i]}));
  const auto root = b.call(0, kNoCall, false);
  for (size_t i = 0; i < ms.size(); ++i)
    b.call(ms[i], root, i != 0);
  return b.tree();
}

inline std::string ModuleName(const ModuleTree& tree, ModuleId m) {
  const std::string name = tree.qualified_name(m);
  return name.empty() ? "<root>" : name;
}

inline std::string NameList(const ModuleTree& tree, const std::vector<ParamId>& params) {
  std::string out = "[";
  for (ParamId p : params)
    out += (out.size() > 1 ? " " : "") + tree.parameter(p).name;
  return out + "]";
}

// Writes every decision as a line: "gather demand m1 [m1.weight]", "release m1.weight",
// "reduce rs [m1.weight m2.weight]", hooks, "reset_step".
class Recorder : public CoordinatorBackend, public GradientReducerBackend, public StepObserver {
 public:
  explicit Recorder(const ModuleTree& tree, bool hooks = false) : tree_(tree), hooks_(hooks) {}
  std::vector<std::string> lines;
  std::vector<GatherRequest> gathers;
  std::vector<GradBucket> buckets;

  void start_gather(const GatherRequest& r) override {
    gathers.push_back(r);
    lines.push_back(
        "gather " + std::string(to_string(r.reason)) +
        (r.reason == GatherReason::kOutside ? std::string() : " " + ModuleName(tree_, r.module)) +
        " " + NameList(tree_, r.params));
  }
  // Also lists waits, drops and gradients joining a bucket ("wait 0", "drop 0", "add m0.weight
  // copied") when set.
  bool lifetimes = false;
  void wait_gather(GatherHandle h) override {
    if (lifetimes) lines.push_back("wait " + std::to_string(h));
  }
  void drop_gather(GatherHandle h) override {
    if (lifetimes) lines.push_back("drop " + std::to_string(h));
  }
  void grad_added(ParamId p, bool contiguous) override {
    if (lifetimes)
      lines.push_back("add " + tree_.parameter(p).name + (contiguous ? " copied" : " as is"));
  }
  void release(ParamId p, ReleaseReason reason) override {
    if (reason != ReleaseReason::kOutside) lines.push_back("release " + tree_.parameter(p).name);
  }
  void reduce(const GradBucket& b) override {
    buckets.push_back(b);
    lines.push_back(std::string("reduce ") +
                    (b.path == ReducePath::kReduceScatter ? "rs " : "ar ") +
                    NameList(tree_, b.params));
  }
  void on_event(const StepEvent& e) override {
    if (hooks_ && e.kind != StepEventKind::kGradReady) {
      lines.push_back(std::string(to_string(e.kind)) + " " + ModuleName(tree_, e.module));
    }
  }
  void on_reset_step() override {
    if (hooks_) lines.push_back("reset_step");
  }
  void clear() {
    lines.clear();
    gathers.clear();
    buckets.clear();
  }
  bool has(const std::string& line) const {
    for (const std::string& l : lines) {
      if (l == line) return true;
    }
    return false;
  }

 private:
  const ModuleTree& tree_;
  bool hooks_;
};

inline ZeroSettings Settings(std::int64_t dp = 2) {
  ZeroSettings s;
  s.data_parallel_size = dp;
  s.param_persistence_threshold = 0;
  s.version = DeepSpeedVersion::kV0_14;
  return s;
}

}  // namespace zp::zero::testing

#include <random>

namespace zp::zero::testing {

// A random model: a tree of up to `max_modules` modules, zero to two parameters each, and a forward
// that calls children in order, sometimes twice, and sometimes calls a module registered elsewhere
// (as TinyNet calls stem.2 again from the root).
inline ModuleTree RandomModel(std::mt19937& rng, int max_modules = 12) {
  auto pick = [&](int n) { return static_cast<int>(rng() % static_cast<unsigned>(n)); };
  TreeBuilder b;
  std::vector<ModuleId> modules = {0};
  const int count = 2 + pick(max_modules - 1);
  for (int i = 1; i < count; ++i) {
    const ModuleId parent = modules[static_cast<size_t>(pick(static_cast<int>(modules.size())))];
    std::vector<std::int64_t> params;
    const int np = pick(3);
    for (int k = 0; k < np; ++k)
      params.push_back(1 + pick(4) * (1 + pick(300)));
    const std::string type = pick(4) == 0 ? "Block" : (pick(5) == 0 ? "Sequential" : "Linear");
    modules.push_back(b.add(parent, "m" + std::to_string(i), type, params, pick(8) != 0));
  }
  ModuleTree& tree = b.tree();
  // Sometimes a tied weight: a parameter registered on a second module as well.
  if (!tree.parameters().empty() && pick(3) == 0) {
    const ParamId p = static_cast<ParamId>(pick(static_cast<int>(tree.parameters().size())));
    const ModuleId other = modules[static_cast<size_t>(pick(static_cast<int>(modules.size())))];
    tree.tie_parameter(other, "tied", p);
  }
  auto visit = [&](auto&& self, ModuleId m, std::int32_t parent_call, bool grad) -> void {
    const std::int32_t call = b.call(m, parent_call, grad);
    bool child_grad = grad;
    for (ModuleId c : tree.module(m).children) {
      const int times = pick(6) == 0 ? 2 : 1;
      for (int t = 0; t < times; ++t) {
        self(self, c, call, child_grad || pick(3) == 0);
        child_grad = true;
      }
    }
    if (pick(6) == 0 && tree.modules().size() > 2) {
      // A module registered elsewhere, called from here (a leaf module of the tree, so that its
      // call has no children of its own to repeat).
      const ModuleId other =
          static_cast<ModuleId>(1 + pick(static_cast<int>(tree.modules().size()) - 1));
      if (tree.module(other).children.empty() && other != m) b.call(other, call, true);
    }
  };
  visit(visit, 0, kNoCall, false);
  return tree;
}

inline ZeroSettings RandomSettings(std::mt19937& rng, DeepSpeedVersion version) {
  auto pick = [&](int n) { return static_cast<std::int64_t>(rng() % static_cast<unsigned>(n)); };
  ZeroSettings s;
  s.version = version;
  s.data_parallel_size = 1 + pick(4);
  s.prefetch_bucket_size = pick(4) == 0 ? 0 : pick(1500);
  s.max_live_parameters = pick(3000);
  s.max_reuse_distance = pick(4) == 0 ? 0 : pick(2000);
  s.param_persistence_threshold = pick(3) == 0 ? 0 : pick(200);
  s.model_persistence_threshold = pick(3) == 0 ? INT64_MAX : pick(500);
  s.reduce_bucket_size = 1 + pick(1500);
  s.reduce_scatter = pick(2) == 0;
  s.contiguous_gradients = pick(4) != 0;
  if (pick(4) == 0) s.leaf_module_classes = {"Block"};
  if (pick(5) == 0) s.module_granularity_threshold = 1 + pick(400);
  return s;
}

}  // namespace zp::zero::testing
