#include "core/zero/partition.h"

#include <gtest/gtest.h>

#include "core/zero/zero_model.h"
#include "zero_test_util.h"

namespace zp::zero {
namespace {

TEST(Partition, PaddedToAMultipleOfTheGroup) {
  const PartitionShape s = partition_shape(10, 4);
  EXPECT_EQ(s.padded_numel, 12);
  EXPECT_EQ(s.partition_numel, 3);
  EXPECT_EQ(s.valid_numel(0), 3);
  EXPECT_EQ(s.valid_numel(3), 1);  // the tail rank holds the last element and two of padding
  EXPECT_EQ(partition_shape(12, 4).padded_numel, 12);
  EXPECT_EQ(partition_shape(12, 4).valid_numel(3), 3);
}

TEST(Partition, SmallParametersLeaveRanksEmpty) {
  const PartitionShape s = partition_shape(3, 8);
  EXPECT_EQ(s.padded_numel, 8);
  EXPECT_EQ(s.partition_numel, 1);
  EXPECT_EQ(s.valid_numel(2), 1);
  EXPECT_EQ(s.valid_numel(3), 0);
  EXPECT_EQ(s.valid_numel(7), 0);
}

TEST(Persistence, ThresholdIsInclusive) {
  const ModuleTree t = testing::Chain({100, 101, 50});
  const auto p = persistent_parameters(t, 100, INT64_MAX);
  ASSERT_EQ(p.size(), 2u);
  EXPECT_EQ(t.parameter(p[0]).name, "m0.weight");
  EXPECT_EQ(t.parameter(p[1]).name, "m2.weight");
}

TEST(Persistence, ModelBudgetSkipsAndTheScanGoesOn) {
  // 60 fits, 50 would make 110 > 100 and is skipped, 40 still fits (100 in all).
  const ModuleTree t = testing::Chain({60, 50, 40});
  const auto p = persistent_parameters(t, 1000, 100);
  ASSERT_EQ(p.size(), 2u);
  EXPECT_EQ(t.parameter(p[0]).name, "m0.weight");
  EXPECT_EQ(t.parameter(p[1]).name, "m2.weight");
  // With a budget of 99: 60, then 50 is skipped (110), then 40 is skipped too (100 > 99).
  EXPECT_EQ(persistent_parameters(t, 1000, 99).size(), 1u);
}

TEST(Persistence, NamedParametersOrderCountsTiedWeightsOnce) {
  testing::TreeBuilder b;
  const ModuleId a = b.add(0, "a", "Embedding", {10});
  const ModuleId c = b.add(0, "c", "Linear", {5});
  b.tree().tie_parameter(c, "tied", 0);
  EXPECT_EQ(named_parameter_order(b.tree()), (std::vector<ParamId>{0, 1}));
  EXPECT_EQ(persistent_parameters(b.tree(), 100, 12).size(), 1u);  // 10, then 5 would pass 12
  (void)a;
}

}  // namespace
}  // namespace zp::zero

namespace zp::zero {
namespace {

TEST(GatherBuffers, SizedAsDeepSpeedCoalescesThem) {
  testing::TreeBuilder b;
  b.add(0, "a", "Linear", {10});
  b.add(0, "c", "Linear", {7});
  const ModuleId h = b.add(0, "h", "Linear");
  b.tree().add_parameter(h, "weight", {5}, DType::kBFloat16);
  const ModuleTree& t = b.tree();
  // One parameter: its padded size.
  EXPECT_EQ(gather_buffers(t, {0}, 4, false).at(0).numel, 12);
  // Several: per dtype, partitions times the group: (3 + 2) * 4 fp32, then 2 * 4 bf16.
  const auto buffers = gather_buffers(t, {0, 1, 2}, 4, false);
  ASSERT_EQ(buffers.size(), 2u);
  EXPECT_EQ(buffers[0].dtype, DType::kFloat32);
  EXPECT_EQ(buffers[0].numel, 20);
  EXPECT_EQ(buffers[1].dtype, DType::kBFloat16);
  EXPECT_EQ(buffers[1].bytes(), 16);
  // With all-reduce fetching: one buffer of the padded sizes.
  EXPECT_EQ(gather_buffers(t, {0, 1}, 4, true).at(0).numel, 12 + 8);
  // A group of one rank gathers nothing.
  EXPECT_TRUE(gather_buffers(t, {0, 1}, 1, false).empty());
}

// The simulator sizes gathers from the model's partition shapes: the same buffers as the tree's.
TEST(GatherBuffers, FromTheModelAsFromTheTree) {
  testing::TreeBuilder b;
  b.add(0, "a", "Linear", {10});
  b.add(0, "c", "Linear", {7});
  const ModuleId h = b.add(0, "h", "Linear");
  b.tree().add_parameter(h, "weight", {5}, DType::kBFloat16);
  for (std::int64_t dp : {1, 3, 4}) {
    const ZeroModel model(b.tree(), testing::Settings(dp));
    for (bool all_reduce : {false, true}) {
      for (const std::vector<ParamId>& params :
           {std::vector<ParamId>{}, {0}, {2}, {0, 1}, {0, 1, 2}}) {
        std::vector<GatherBuffer> out = {{DType::kFloat32, 99}};
        gather_buffers(model, params, all_reduce, out);
        const auto expected = gather_buffers(b.tree(), params, dp, all_reduce);
        ASSERT_EQ(out.size(), expected.size()) << dp << " " << all_reduce;
        for (std::size_t i = 0; i < out.size(); ++i) {
          EXPECT_EQ(out[i].dtype, expected[i].dtype);
          EXPECT_EQ(out[i].numel, expected[i].numel);
        }
      }
    }
  }
}

}  // namespace
}  // namespace zp::zero
