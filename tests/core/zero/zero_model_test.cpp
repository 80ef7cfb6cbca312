#include "core/zero/zero_model.h"

#include <gtest/gtest.h>

#include "zero_test_util.h"

namespace zp::zero {
namespace {

using testing::Settings;
using testing::TreeBuilder;

// root{a{a1, a2}, b{b1}, c}
ModuleTree Nested() {
  TreeBuilder t;
  const ModuleId a = t.add(0, "a", "Block", {4});
  t.add(a, "a1", "Linear", {8, 2});
  t.add(a, "a2", "Linear", {8});
  const ModuleId b = t.add(0, "b", "Block");
  t.add(b, "b1", "Linear", {16});
  t.add(0, "c", "Linear", {1000});
  return t.tree();
}

TEST(ZeroModel, ModuleIdsAreDepthFirstAndSkipLeafSubtrees) {
  const ModuleTree tree = Nested();
  const ZeroModel plain(tree, Settings());
  EXPECT_EQ(plain.module_ds_id(0), 0);
  EXPECT_EQ(plain.module_ds_id(1), 1);  // a
  EXPECT_EQ(plain.module_ds_id(2), 2);  // a.a1
  EXPECT_EQ(plain.module_ds_id(4), 4);  // b
  EXPECT_EQ(plain.module_ds_id(6), 6);  // c

  ZeroSettings s = Settings();
  s.leaf_module_classes = {"Block"};
  const ZeroModel leaves(tree, s);
  EXPECT_TRUE(leaves.is_leaf(1));
  EXPECT_FALSE(leaves.is_hooked(2));  // inside leaf a: no id, no hooks
  EXPECT_FALSE(leaves.is_hooked(3));
  // The count moves on per child visited; a's children are never visited: b gets 2, c 3.
  EXPECT_EQ(leaves.module_ds_id(4), 2);
  EXPECT_EQ(leaves.module_ds_id(6), 3);
  EXPECT_EQ(leaves.leaves(), (std::vector<ModuleId>{1, 4}));
}

TEST(ZeroModel, LeafFetchesItsWholeSubtree) {
  const ModuleTree tree = Nested();
  ZeroSettings s = Settings();
  s.leaf_module_classes = {"Block"};
  const ZeroModel m(tree, s);
  EXPECT_EQ(m.fetch_params(1).size(), 4u);  // a.weight, a1.weight, a1.p1, a2.weight
  EXPECT_EQ(m.param(1).leaf, 1);
  const ZeroModel plain(tree, Settings());
  EXPECT_EQ(plain.fetch_params(1).size(), 1u);
  EXPECT_EQ(plain.param(1).leaf, kNoModule);
}

TEST(ZeroModel, LeafClassesMatchingNothingAreAnError) {
  const ModuleTree tree = Nested();
  ZeroSettings s = Settings();
  s.leaf_module_classes = {"NoSuchBlock"};
  EXPECT_THROW(ZeroModel(tree, s), UserError);
  s.leaf_module_classes = {"NoSuchBlock", "Block"};  // one match is enough
  EXPECT_NO_THROW(ZeroModel(tree, s));
}

TEST(ZeroModel, ParameterIdsFollowNamedParameters) {
  const ModuleTree tree = Nested();
  const ZeroModel m(tree, Settings(4));
  for (size_t i = 0; i < tree.parameters().size(); ++i)
    EXPECT_EQ(m.param(static_cast<ParamId>(i)).ds_id, static_cast<std::int64_t>(i));
  EXPECT_EQ(m.param(1).shape.partition_numel, 2);
  EXPECT_EQ(m.param(2).shape.padded_numel, 4);  // a1.p1: 2 elements over 4 ranks
}

// Granularity: a{a1(8+2), a2(8)} + 4 own = 22 params over 3 layers -> 7; b{b1(16)} -> 16 over 2 =
// 8; the root: 1038 over 7 layers (3 + 2 + c's 1 + its own) -> 148.
TEST(ZeroModel, GranularityIsParametersOverLayers) {
  const ModuleTree tree = Nested();
  ZeroSettings s = Settings();
  s.module_granularity_threshold = 7;
  const ZeroModel m(tree, s);
  EXPECT_EQ(m.granularity()[1], 22 / 3);
  EXPECT_EQ(m.granularity()[4], 8);
  EXPECT_EQ(m.granularity()[0], 1038 / 7);
  EXPECT_EQ(m.granularity()[2], INT64_MAX);  // torch leaf modules are never leaves
  EXPECT_EQ(m.granularity()[6], INT64_MAX);
  EXPECT_TRUE(m.is_leaf(1));
  EXPECT_FALSE(m.is_leaf(4));
  EXPECT_TRUE(m.warnings().empty());
}

TEST(ZeroModel, TopmostQualifyingModuleWins) {
  const ModuleTree tree = Nested();
  ZeroSettings s = Settings();
  s.module_granularity_threshold = 148;
  const ZeroModel m(tree, s);
  EXPECT_TRUE(m.is_leaf(0));
  EXPECT_FALSE(m.is_leaf(1));  // a qualifies too, but its ancestor was taken first
  EXPECT_FALSE(m.is_hooked(1));
  s.module_granularity_threshold = 147;
  const ZeroModel n(tree, s);
  EXPECT_FALSE(n.is_leaf(0));
  EXPECT_TRUE(n.is_leaf(1));
  EXPECT_TRUE(n.is_leaf(4));
}

TEST(ZeroModel, ContainersAreNeverLeaves) {
  TreeBuilder t;
  const ModuleId seq = t.add(0, "layers", "Sequential");
  t.add(seq, "0", "Linear", {10});
  t.add(seq, "1", "Linear", {10});
  t.add(0, "head", "Linear", {1000});
  ZeroSettings s = Settings();
  s.module_granularity_threshold = 1'000'000;
  const ZeroModel m(t.tree(), s);
  EXPECT_EQ(m.granularity()[1], INT64_MAX);
  EXPECT_FALSE(m.is_leaf(1));
  // The root: 1020 over (2 from the container + 1 head + 1) = 255.
  EXPECT_EQ(m.granularity()[0], 1020 / 4);
  EXPECT_TRUE(m.is_leaf(0));
}

TEST(ZeroModel, ThresholdBelowTheSmallestGranularityWarns) {
  const ModuleTree tree = Nested();
  ZeroSettings s = Settings();
  s.module_granularity_threshold = 6;
  const ZeroModel m(tree, s);
  EXPECT_TRUE(m.leaves().empty());
  ASSERT_EQ(m.warnings().size(), 1u);
  EXPECT_NE(m.warnings()[0].message.find("smallest granularity is 7 (Block)"), std::string::npos)
      << m.warnings()[0].message;
}

TEST(ZeroModel, SubtreesAboveABillionParametersAreNeverLeaves) {
  TreeBuilder t;
  const ModuleId big = t.add(0, "big", "Block");
  t.add(big, "w", "Linear", {600'000'000});
  t.add(big, "v", "Linear", {500'000'000});
  t.add(0, "small", "Block");
  t.add(3, "x", "Linear", {10});
  ZeroSettings s = Settings();
  s.module_granularity_threshold = 2'000'000'000;
  const ZeroModel m(t.tree(), s);
  EXPECT_EQ(m.granularity()[1], INT64_MAX);
  EXPECT_EQ(m.granularity()[0], INT64_MAX);
  EXPECT_FALSE(m.is_leaf(1));
  EXPECT_TRUE(m.is_leaf(3));
}

TEST(ZeroModel, PersistenceFromTheSettings) {
  const ModuleTree tree = Nested();
  ZeroSettings s = Settings();
  s.param_persistence_threshold = 4;
  const ZeroModel m(tree, s);
  EXPECT_TRUE(m.param(0).persistent);   // a.weight: 4
  EXPECT_TRUE(m.param(2).persistent);   // a1.p1: 2
  EXPECT_FALSE(m.param(1).persistent);  // a1.weight: 8
  EXPECT_FALSE(m.param(5).persistent);  // c.weight: 1000
  EXPECT_EQ(m.persistent_numel(), 4 + 2);
}

}  // namespace
}  // namespace zp::zero
