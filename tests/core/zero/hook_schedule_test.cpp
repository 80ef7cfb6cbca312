#include "core/zero/hook_schedule.h"

#include <gtest/gtest.h>

#include "zero_test_util.h"

namespace zp::zero {
namespace {

using testing::Settings;
using testing::TreeBuilder;

std::vector<std::string> Lines(const ModuleTree& tree, const std::vector<StepEvent>& events) {
  std::vector<std::string> out;
  for (const StepEvent& e : events) {
    std::string line = std::string(to_string(e.kind)) + " " + testing::ModuleName(tree, e.module);
    if (e.kind == StepEventKind::kGradReady) line = "grad " + tree.parameter(e.param).name;
    out.push_back(line);
  }
  return out;
}

// root{s{s0, s1}, h}: root calls s (which calls s0, s1), then s1 again, then h.
ModuleTree Net(bool s_input_grad) {
  TreeBuilder t;
  const ModuleId s = t.add(0, "s", "Sequential");
  const ModuleId s0 = t.add(s, "s0", "Linear", {4, 2});
  const ModuleId s1 = t.add(s, "s1", "Linear", {4});
  const ModuleId h = t.add(0, "h", "Linear", {3});
  const auto root = t.call(0, kNoCall, false);
  const auto sc = t.call(s, root, s_input_grad);
  t.call(s0, sc, s_input_grad);
  t.call(s1, sc);
  t.call(s1, root);
  t.call(h, root);
  return t.tree();
}

TEST(HookSchedule, ForwardHooksNestAroundCalls) {
  const ModuleTree tree = Net(false);
  const StepSchedule s = training_step_schedule(ZeroModel(tree, Settings()));
  EXPECT_EQ(
      Lines(tree, s.forward),
      (std::vector<std::string>{"pre_fwd <root>", "pre_fwd s", "pre_fwd s.s0", "post_fwd s.s0",
                                "pre_fwd s.s1", "post_fwd s.s1", "post_fwd s", "pre_fwd s.s1",
                                "post_fwd s.s1", "pre_fwd h", "post_fwd h", "post_fwd <root>"}));
}

// root{a, b, c}: three layers called in turn, each with a parameter, inputs needing grad.
ModuleTree Layers() {
  TreeBuilder t;
  const ModuleId a = t.add(0, "a", "Block", {4});
  const ModuleId b = t.add(0, "b", "Block", {4});
  const ModuleId c = t.add(0, "c", "Block", {4});
  const auto root = t.call(0, kNoCall, true);
  t.call(a, root, true);
  t.call(b, root, true);
  t.call(c, root, true);
  return t.tree();
}

TEST(HookSchedule, CheckpointedSegmentsRunTheirForwardAgainBeforeTheirBackward) {
  const ModuleTree tree = Layers();
  const ZeroModel model(tree, Settings());
  // Segments {a, b} (calls 1, 2) and {c} (call 3).
  const StepSchedule s = training_step_schedule(model, {{1, 3}, {3, 4}});
  EXPECT_EQ(s.forward, training_step_schedule(model).forward);
  EXPECT_EQ(
      Lines(tree, s.backward),
      (std::vector<std::string>{
          "pre_bwd <root>", "pre_fwd c", "post_fwd c", "pre_bwd c", "grad c.weight", "post_bwd c",
          "pre_fwd a", "post_fwd a", "pre_fwd b", "post_fwd b", "pre_bwd b", "grad b.weight",
          "post_bwd b", "pre_bwd a", "grad a.weight", "post_bwd a", "post_bwd <root>"}));
  int recomputed = 0;
  for (const StepEvent& e : s.backward) {
    const bool forward_hook =
        e.kind == StepEventKind::kPreForward || e.kind == StepEventKind::kPostForward;
    EXPECT_EQ(e.recompute, forward_hook);
    recomputed += e.recompute;
  }
  EXPECT_EQ(recomputed, 6);
}

TEST(HookSchedule, BackwardRunsInReverseWithPostBackwardOnlyWhereDeepSpeedHasIt) {
  const ModuleTree tree = Net(false);
  const StepSchedule s = training_step_schedule(ZeroModel(tree, Settings()));
  // Pre-backward for every call, in reverse order of the post-forward hooks. Post-backward: not for
  // the root, s or s.s0 (inputs need no grad); s.s1 only after its last call (from the root), since
  // its first call's counter never reaches zero. Gradients: at the first forward use, parameters of
  // a module in reverse registration order.
  EXPECT_EQ(Lines(tree, s.backward),
            (std::vector<std::string>{"pre_bwd <root>", "pre_bwd h", "grad h.weight", "post_bwd h",
                                      "pre_bwd s.s1", "post_bwd s.s1", "pre_bwd s", "pre_bwd s.s1",
                                      "grad s.s1.weight", "pre_bwd s.s0", "grad s.s0.p1",
                                      "grad s.s0.weight"}));
}

TEST(HookSchedule, CallsWhoseOutputNeedsNoGradGetNoBackward) {
  TreeBuilder t;
  const ModuleId frozen = t.add(0, "frozen", "Embedding", {10}, /*requires_grad=*/false);
  const ModuleId lin = t.add(0, "lin", "Linear", {4});
  const auto root = t.call(0, kNoCall, false);
  t.call(frozen, root, false);
  t.call(lin, root, false);
  const ModuleTree& tree = t.tree();
  const StepSchedule s = training_step_schedule(ZeroModel(tree, Settings()));
  EXPECT_EQ(Lines(tree, s.backward),
            (std::vector<std::string>{"pre_bwd <root>", "pre_bwd lin", "grad lin.weight"}));
}

TEST(HookSchedule, LeafModulesReduceTheirParametersTogetherAtTheEnd) {
  TreeBuilder t;
  const ModuleId blk = t.add(0, "blk", "Block", {2});
  const ModuleId a = t.add(blk, "a", "Linear", {4});
  const ModuleId b = t.add(blk, "b", "Linear", {4});
  const auto root = t.call(0, kNoCall, false);
  const auto bc = t.call(blk, root, true);
  t.call(a, bc);
  t.call(b, bc);
  ZeroSettings settings = Settings();
  settings.leaf_module_classes = {"Block"};
  const ModuleTree& tree = t.tree();
  const StepSchedule s = training_step_schedule(ZeroModel(tree, settings));
  EXPECT_EQ(Lines(tree, s.forward), (std::vector<std::string>{"pre_fwd <root>", "pre_fwd blk",
                                                              "post_fwd blk", "post_fwd <root>"}));
  EXPECT_EQ(Lines(tree, s.backward),
            (std::vector<std::string>{"pre_bwd <root>", "pre_bwd blk", "grad blk.weight",
                                      "grad blk.a.weight", "grad blk.b.weight", "post_bwd blk"}));
}

TEST(HookSchedule, LeafWithoutGradInputsIsRefusedAsDeepSpeedDoes) {
  TreeBuilder t;
  const ModuleId blk = t.add(0, "blk", "Block", {2});
  const auto root = t.call(0, kNoCall, false);
  t.call(blk, root, false);
  ZeroSettings settings = Settings();
  settings.leaf_module_classes = {"Block"};
  const ZeroModel model(t.tree(), settings);
  EXPECT_THROW(training_step_schedule(model), UserError);
}

}  // namespace
}  // namespace zp::zero
