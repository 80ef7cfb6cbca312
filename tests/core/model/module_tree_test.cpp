#include "core/model/module_tree.h"

#include <gtest/gtest.h>

#include "core/model/summary.h"
#include "core/util/error.h"

namespace zp {
namespace {

// root{embed, block{fc, act}, head} with head.weight tied to embed.weight.
ModuleTree SmallTree() {
  ModuleTree t("small");
  const ModuleId root = t.add_module(kNoModule, "", "Net");
  const ModuleId embed = t.add_module(root, "embed", "Embedding");
  const ModuleId block = t.add_module(root, "block", "Block");
  const ModuleId fc = t.add_module(block, "fc", "Linear");
  t.add_module(block, "act", "ReLU");
  const ModuleId head = t.add_module(root, "head", "Linear");
  const ParamId w = t.add_parameter(embed, "weight", {10, 4}, DType::kFloat32);
  t.add_parameter(fc, "weight", {4, 4}, DType::kFloat32);
  t.add_parameter(fc, "bias", {4}, DType::kFloat32, /*requires_grad=*/false);
  t.tie_parameter(head, "weight", w);
  return t;
}

TEST(ModuleTree, NamesAndOrder) {
  const ModuleTree t = SmallTree();
  EXPECT_EQ(t.qualified_name(0), "");
  EXPECT_EQ(t.qualified_name(3), "block.fc");
  EXPECT_EQ(t.parameter(1).name, "block.fc.weight");
  EXPECT_EQ(t.preorder(), (std::vector<ModuleId>{0, 1, 2, 3, 4, 5}));
}

TEST(ModuleTree, TiedParametersCountOnce) {
  const ModuleTree t = SmallTree();
  EXPECT_EQ(t.total_parameters(), 40 + 16 + 4);
  EXPECT_EQ(t.trainable_parameters(), 40 + 16);
  EXPECT_EQ(t.total_parameter_bytes(), 60 * 4);
  EXPECT_EQ(t.subtree_parameters(0), 60);
  EXPECT_EQ(t.subtree_parameters(2), 20);
  EXPECT_EQ(t.subtree_parameters(5), 40);
  const ModelSummary s = summarize_model(t);
  EXPECT_EQ(s.tied_parameters, 1);
  EXPECT_EQ(s.parameters, 60);
  ASSERT_FALSE(s.by_type.empty());
  EXPECT_EQ(s.by_type[0].type, "Embedding");  // the tied weight counts for its first registration
  EXPECT_EQ(s.by_type[0].parameters, 40);
  EXPECT_EQ(s.by_type[1].type, "Linear");
  EXPECT_EQ(s.by_type[1].parameters, 20);
}

TEST(ModuleTree, BrokenInvariantsAreInternalErrors) {
  ModuleTree t = SmallTree();
  EXPECT_THROW(t.add_module(kNoModule, "x", "Root"), InternalError);
  EXPECT_THROW(t.add_module(99, "x", "Y"), InternalError);
  EXPECT_THROW(t.add_call(0, 5, false), InternalError);
  EXPECT_THROW(t.module(42), InternalError);
}

TEST(ModuleTree, SummarySumsEveryCall) {
  ModuleTree t = SmallTree();
  t.set_cost(3, ModuleCost{100, 64, 16});
  const auto root_call = t.add_call(0, kNoCall, false);
  const auto block_call = t.add_call(2, root_call, true);
  t.add_call(3, block_call, true);
  t.add_call(3, block_call, true);  // fc runs twice
  const ModelSummary s = summarize_model(t);
  EXPECT_EQ(s.forward_flops, 200);
  EXPECT_EQ(s.activation_bytes, 128);
}

}  // namespace
}  // namespace zp
