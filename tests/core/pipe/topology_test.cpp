#include "core/pipe/topology.h"

#include <gtest/gtest.h>

#include <vector>

#include "core/model/model_config.h"
#include "core/model/presets.h"
#include "core/pipe/partition.h"

namespace zp::pipe {
namespace {

using Ranks = std::vector<std::int64_t>;
using RankLists = std::vector<Ranks>;
using Bounds = std::vector<std::int64_t>;

// --- ProcessTopology ----------------------------------------------------------------------------

struct Shape {
  std::int64_t pipe, data, model;  // model 0: no model axis
};

TEST(ProcessTopology, RankCoordRoundTripIsRowMajorLastAxisFastest) {
  for (const Shape& s :
       {Shape{2, 2, 0}, Shape{4, 2, 2}, Shape{1, 8, 0}, Shape{3, 1, 2}, Shape{2, 3, 4}}) {
    const ProcessTopology t = s.model == 0
                                  ? pipe_data_parallel_topology(s.pipe, s.data)
                                  : pipe_model_data_parallel_topology(s.pipe, s.model, s.data);
    const std::int64_t mp = std::max<std::int64_t>(s.model, 1);
    ASSERT_EQ(t.world_size(), s.pipe * s.data * mp);
    for (std::int64_t r = 0; r < t.world_size(); ++r) {
      const std::vector<std::int64_t> c = t.get_coord(r);
      EXPECT_EQ(t.get_rank(c), r);
      const std::int64_t p = c[0], d = c[1], m = s.model == 0 ? 0 : c[2];
      EXPECT_EQ((p * s.data + d) * mp + m, r) << "shape " << s.pipe << "x" << s.data << "x" << mp;
      EXPECT_EQ(t.get_coord(r, "pipe"), p);
      EXPECT_EQ(t.get_coord(r, "data"), d);
    }
  }
}

TEST(ProcessTopology, FactoriesUseDeepSpeedsAxisOrder) {
  const ProcessTopology pd = pipe_data_parallel_topology(3, 2);
  EXPECT_EQ(pd.axes(), (std::vector<std::string>{"pipe", "data"}));
  EXPECT_EQ(pd.dims(), (std::vector<std::int64_t>{3, 2}));
  // Arguments (num_pp, num_mp, num_dp), axes pipe, data, model.
  const ProcessTopology pmd = pipe_model_data_parallel_topology(2, 3, 4);
  EXPECT_EQ(pmd.axes(), (std::vector<std::string>{"pipe", "data", "model"}));
  EXPECT_EQ(pmd.dims(), (std::vector<std::int64_t>{2, 4, 3}));
  EXPECT_EQ(pmd.get_dim("model"), 3);
  EXPECT_EQ(pmd.get_dim("data"), 4);
  EXPECT_EQ(pd.get_dim("model"), 0);  // absent axis
  EXPECT_EQ(pipe_module_topology(4, 8), pipe_data_parallel_topology(4, 2));
  try {
    pipe_module_topology(3, 8);
    FAIL();
  } catch (const UserError& e) {
    EXPECT_EQ(e.message(), "num_stages (3) must divide distributed world size (8)");
  }
}

TEST(ProcessTopology, DeepSpeedDocstringExamples) {
  const ProcessTopology xy({"x", "y"}, {2, 3});
  EXPECT_EQ(xy.get_rank(std::vector<AxisValue>{{"x", 0}, {"y", 1}}), 1);
  EXPECT_EQ(xy.get_rank(std::vector<AxisValue>{{"y", 1}, {"x", 1}}), 4);  // any order
  EXPECT_EQ(xy.get_dim("y"), 3);
  EXPECT_EQ(xy.get_coord(1), (std::vector<std::int64_t>{0, 1}));
  EXPECT_EQ(xy.get_axis_list("x", 0), (Ranks{0, 1, 2}));
  EXPECT_EQ(xy.get_axis_list("y", 0), (Ranks{0, 3}));

  const ProcessTopology pdm({"pipe", "data", "model"}, {2, 2, 2});
  EXPECT_EQ(pdm.get_axis_comm_lists("pipe"), (RankLists{{0, 4}, {1, 5}, {2, 6}, {3, 7}}));
  EXPECT_EQ(pdm.filter_match({{"pipe", 0}, {"data", 1}}), (Ranks{2, 3}));
}

TEST(ProcessTopology, CommListsByHand) {
  // pipe x data x model = 2 x 2 x 2: rank = 4 p + 2 d + m.
  const ProcessTopology t({"pipe", "data", "model"}, {2, 2, 2});
  // Other axes (pipe, model) in row-major order: (0,0), (0,1), (1,0), (1,1).
  EXPECT_EQ(t.get_axis_comm_lists("data"), (RankLists{{0, 2}, {1, 3}, {4, 6}, {5, 7}}));
  EXPECT_EQ(t.get_axis_comm_lists("model"), (RankLists{{0, 1}, {2, 3}, {4, 5}, {6, 7}}));
  EXPECT_TRUE(t.get_axis_comm_lists("sequence").empty());

  // pipe x data = 3 x 2: rank = 2 p + d.
  const ProcessTopology pd = pipe_data_parallel_topology(3, 2);
  EXPECT_EQ(pd.get_axis_comm_lists("pipe"), (RankLists{{0, 2, 4}, {1, 3, 5}}));
  EXPECT_EQ(pd.get_axis_comm_lists("data"), (RankLists{{0, 1}, {2, 3}, {4, 5}}));

  // An axis of size 1 gives one-rank lists; a data axis of size 1 in 3 x 1 x 2.
  const ProcessTopology thin = pipe_model_data_parallel_topology(3, 2, 1);
  EXPECT_EQ(thin.get_axis_comm_lists("data"), (RankLists{{0}, {1}, {2}, {3}, {4}, {5}}));
  EXPECT_EQ(thin.get_axis_comm_lists("pipe"), (RankLists{{0, 2, 4}, {1, 3, 5}}));

  // filter_match with no criteria is everyone; an out-of-range value matches nobody.
  EXPECT_EQ(pd.filter_match({}), (Ranks{0, 1, 2, 3, 4, 5}));
  EXPECT_TRUE(pd.filter_match({{"pipe", 7}}).empty());
  EXPECT_EQ(pd.filter_match({{"data", 1}}), (Ranks{1, 3, 5}));
}

TEST(ProcessTopology, RejectsBadShapesAndQueries) {
  EXPECT_THROW(ProcessTopology({"pipe", "data"}, {2}), UserError);
  EXPECT_THROW(ProcessTopology({}, {}), UserError);
  EXPECT_THROW(ProcessTopology({"pipe", "pipe"}, {2, 2}), UserError);
  EXPECT_THROW(ProcessTopology({"pipe", "data"}, {2, 0}), UserError);
  const ProcessTopology t = pipe_data_parallel_topology(2, 2);
  EXPECT_THROW(t.get_coord(4), UserError);
  EXPECT_THROW(t.get_coord(-1), UserError);
  EXPECT_THROW(t.get_rank(std::vector<std::int64_t>{2, 0}), UserError);
  EXPECT_THROW(t.get_rank(std::vector<AxisValue>{{"pipe", 1}}), UserError);  // a slice
  EXPECT_THROW(t.filter_match({{"model", 0}}), UserError);
}

// --- PipelineGrid -------------------------------------------------------------------------------

TEST(PipelineGrid, PipeDataGroups) {
  // 4 stages x 2 pipelines: rank = 2 stage + data.
  const PipelineGrid g(pipe_data_parallel_topology(4, 2));
  EXPECT_EQ(g.pipe_parallel_size(), 4);
  EXPECT_EQ(g.data_parallel_size(), 2);
  EXPECT_EQ(g.slice_parallel_size(), 1);
  EXPECT_EQ(g.stage_id(5), 2);
  EXPECT_EQ(g.data_parallel_id(5), 1);
  EXPECT_EQ(g.slice_parallel_rank(5), 0);
  EXPECT_EQ(g.data_parallel_group(5), (Ranks{4, 5}));
  EXPECT_EQ(g.pipe_parallel_group(5), (Ranks{1, 3, 5, 7}));
  EXPECT_EQ(g.model_parallel_group(5), (Ranks{1, 3, 5, 7}));
  EXPECT_EQ(g.model_parallel_rank(5), 2);
  EXPECT_EQ(g.slice_parallel_group(5), (Ranks{5}));
  EXPECT_TRUE(g.is_first_stage(1));
  EXPECT_TRUE(g.is_last_stage(7));
  EXPECT_FALSE(g.is_last_stage(5));
  EXPECT_EQ(g.stage_to_global(3, 0), 6);
  EXPECT_EQ(g.stage_to_global(0, 1), 1);
  EXPECT_EQ(g.stage_to_global_from(5, 0), 1);
  EXPECT_THROW(g.stage_to_global(0, 0, 1), UserError);  // no model axis
  EXPECT_THROW(g.stage_to_global(4, 0), UserError);
  const auto p2p = g.p2p_groups();
  ASSERT_EQ(p2p.size(), 8u);
  EXPECT_EQ(p2p[0], (std::array<std::int64_t, 2>{0, 2}));
  EXPECT_EQ(p2p[5], (std::array<std::int64_t, 2>{5, 7}));
  EXPECT_EQ(p2p[7], (std::array<std::int64_t, 2>{7, 1}));  // last stage wraps to the first
}

TEST(PipelineGrid, PipeDataModelGroups) {
  // 2 stages x 2 pipelines x 2 slices: rank = 4 stage + 2 data + model; rank 5 is (1, 0, 1).
  const PipelineGrid g(pipe_model_data_parallel_topology(2, 2, 2));
  EXPECT_EQ(g.stage_id(5), 1);
  EXPECT_EQ(g.data_parallel_id(5), 0);
  EXPECT_EQ(g.slice_parallel_rank(5), 1);
  EXPECT_EQ(g.data_parallel_group(5), (Ranks{5, 7}));
  EXPECT_EQ(g.pipe_parallel_group(5), (Ranks{1, 5}));
  EXPECT_EQ(g.model_parallel_group(5), (Ranks{0, 1, 4, 5}));
  EXPECT_EQ(g.model_parallel_rank(5), 3);
  EXPECT_EQ(g.slice_parallel_group(5), (Ranks{4, 5}));
  EXPECT_EQ(g.stage_to_global(0, 1, 1), 3);
  EXPECT_EQ(g.stage_to_global(1, 1, 0), 6);
  EXPECT_EQ(g.stage_to_global_from(3, 1), 7);
  EXPECT_EQ(g.p2p_groups()[6], (std::array<std::int64_t, 2>{6, 2}));
}

TEST(PipelineGrid, ModelAxisOfSizeOneHasOneRankSlices) {
  const PipelineGrid g(pipe_model_data_parallel_topology(3, 1, 2));
  EXPECT_EQ(g.slice_parallel_size(), 1);
  EXPECT_EQ(g.slice_parallel_group(4), (Ranks{4}));
  EXPECT_EQ(g.stage_to_global(2, 1, 0), 5);
}

TEST(PipelineGrid, NeedsPipeAndDataAxesOnly) {
  EXPECT_THROW(PipelineGrid(ProcessTopology({"pipe", "model"}, {2, 2})), UserError);
  EXPECT_THROW(PipelineGrid(ProcessTopology({"pipe", "data", "seq"}, {2, 2, 2})), UserError);
}

// --- Tied groups --------------------------------------------------------------------------------

PipelineLayers tiny_gpt2_layers() {
  return layers_from_tree(
      build_model(*find_preset("tiny-gpt2"), BatchShape{1, 8, DType::kBFloat16}));
}

TEST(TiedGroups, FirstAndLastLayerOverThreeStagesAndTwoPipelines) {
  // tiny-gpt2: wte (layer 0) and lm_head (layer 6) share transformer.wte.weight.
  const PipelineLayers layers = tiny_gpt2_layers();
  const Bounds boundaries = partition_uniform(7, 3);  // {0, 3, 5, 7}
  // 3 stages x 2 pipelines: rank = 2 stage + data.
  const PipelineGrid grid(pipe_data_parallel_topology(3, 2));
  const std::vector<TiedGroup> tied = tied_groups(layers, boundaries, grid);
  ASSERT_EQ(tied.size(), 1u);
  EXPECT_EQ(tied[0].key, "transformer.wte.weight");
  EXPECT_EQ(tied[0].weight_attr, "weight");
  EXPECT_EQ(tied[0].layers, (Ranks{0, 6}));
  EXPECT_EQ(tied[0].stages, (Ranks{0, 2}));
  ASSERT_EQ(tied[0].comms.size(), 2u);
  EXPECT_EQ(tied[0].comms[0].data, 0);
  EXPECT_EQ(tied[0].comms[0].ranks, (Ranks{0, 4}));
  EXPECT_EQ(tied[0].comms[1].data, 1);
  EXPECT_EQ(tied[0].comms[1].ranks, (Ranks{1, 5}));
}

TEST(TiedGroups, OneCommunicatorPerDataAndModelCoordinate) {
  const PipelineLayers layers = tiny_gpt2_layers();
  // 3 stages x 2 pipelines x 2 slices: rank = 4 stage + 2 data + model.
  const PipelineGrid grid(pipe_model_data_parallel_topology(3, 2, 2));
  const std::vector<TiedGroup> tied = tied_groups(layers, {0, 3, 5, 7}, grid);
  ASSERT_EQ(tied.size(), 1u);
  ASSERT_EQ(tied[0].comms.size(), 4u);
  const RankLists expected = {{0, 8}, {1, 9}, {2, 10}, {3, 11}};  // data outer, model inner
  for (size_t i = 0; i < 4; ++i) {
    EXPECT_EQ(tied[0].comms[i].data, static_cast<std::int64_t>(i / 2));
    EXPECT_EQ(tied[0].comms[i].model, static_cast<std::int64_t>(i % 2));
    EXPECT_EQ(tied[0].comms[i].ranks, expected[i]);
  }
}

TEST(TiedGroups, SameStageGivesOneRankGroupsAndOneStageGivesNone) {
  const PipelineLayers layers = tiny_gpt2_layers();
  const PipelineGrid two(pipe_data_parallel_topology(2, 2));
  const std::vector<TiedGroup> tied = tied_groups(layers, {0, 7, 7}, two);
  ASSERT_EQ(tied.size(), 1u);
  EXPECT_EQ(tied[0].stages, (Ranks{0}));
  ASSERT_EQ(tied[0].comms.size(), 2u);
  EXPECT_EQ(tied[0].comms[0].ranks, (Ranks{0}));
  EXPECT_EQ(tied[0].comms[1].ranks, (Ranks{1}));

  const PipelineGrid one(pipe_data_parallel_topology(1, 4));
  EXPECT_TRUE(tied_groups(layers, {0, 7}, one).empty());
  EXPECT_THROW(tied_groups(layers, {0, 3, 7}, one), UserError);  // 2 stages, grid has 1
  EXPECT_THROW(tied_groups(layers, {0, 3, 6}, two), UserError);  // 6 of 7 layers
}

}  // namespace
}  // namespace zp::pipe
