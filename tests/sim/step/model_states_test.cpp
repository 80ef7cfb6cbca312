#include "sim/step/model_states.h"

#include <gtest/gtest.h>

#include "../sim_test_util.h"

#include <cstdint>
#include <functional>
#include <string>

#include "core/config/document.h"
#include "core/util/error.h"

namespace zp::sim {
namespace {

using testing::ErrorOf;

DeepSpeedConfig Parse(const std::string& json) {
  const Document doc = Document::from_json(json, "ds.json");
  return parse_deepspeed_config(Node(doc), DeepSpeedContext{});
}

DeepSpeedConfig WithOptimizer(const std::string& type) {
  DeepSpeedConfig c;
  c.optimizer_type = type;
  return c;
}

TEST(OptimizerShape, AdamWhenTheConfigHasNoOptimizer) {
  const OptimizerShape s = optimizer_shape(Parse(R"({"train_micro_batch_size_per_gpu": 1})"));
  EXPECT_EQ(s.name, "adam");
  EXPECT_EQ(s.master_bytes, 4);
  EXPECT_EQ(s.state_bytes, 8);  // two fp32 moments
}

TEST(OptimizerShape, ReadsTheConfigsType) {
  const OptimizerShape s = optimizer_shape(
      Parse(R"({"train_micro_batch_size_per_gpu": 1, "optimizer": {"type": "SGD"}})"));
  EXPECT_EQ(s.name, "SGD");
  EXPECT_EQ(s.state_bytes, 4);  // one momentum buffer
}

TEST(OptimizerShape, NamesAreCaseInsensitive) {
  const OptimizerShape s = optimizer_shape(WithOptimizer("AdamW"));
  EXPECT_EQ(s.name, "AdamW");  // kept as written
  EXPECT_EQ(s.state_bytes, 8);
  EXPECT_EQ(optimizer_shape(WithOptimizer("FUSEDADAM")).state_bytes, 8);
  EXPECT_EQ(optimizer_shape(WithOptimizer("sgd")).state_bytes, 4);
}

TEST(OptimizerShape, StatesPerOptimizer) {
  for (const char* adam_like : {"adam", "adamw", "fusedadam", "cpuadam", "deepspeedcpuadam", "lamb",
                                "onebitadam", "zerooneadam", "onebitlamb"}) {
    EXPECT_EQ(optimizer_shape(WithOptimizer(adam_like)).state_bytes, 8) << adam_like;
    EXPECT_EQ(optimizer_shape(WithOptimizer(adam_like)).master_bytes, 4) << adam_like;
  }
  for (const char* one_state : {"sgd", "adagrad", "lion"}) {
    EXPECT_EQ(optimizer_shape(WithOptimizer(one_state)).state_bytes, 4) << one_state;
    EXPECT_EQ(optimizer_shape(WithOptimizer(one_state)).master_bytes, 4) << one_state;
  }
}

TEST(OptimizerShape, UnknownOptimizerIsUnsupported) {
  const UserError e = ErrorOf([] { optimizer_shape(WithOptimizer("Shampoo")); });
  EXPECT_EQ(e.kind(), ErrorKind::kUnsupported);
  EXPECT_EQ(e.where().key_path, "optimizer.type");
  EXPECT_NE(e.message().find("Shampoo"), std::string::npos);
}

TEST(OptimizerShape, StepBytes) {
  // bf16 gradient and parameter, fp32 master and Adam's two moments, read and written:
  // 2 + 2*4 + 2*8 + 2 = 28 bytes per element.
  EXPECT_EQ(optimizer_shape(WithOptimizer("adam")).step_bytes(2, 2), 28);
  // SGD with an fp32 gradient: 4 + 2*4 + 2*4 + 2 = 22.
  EXPECT_EQ(optimizer_shape(WithOptimizer("sgd")).step_bytes(4, 2), 22);
}

// A tree where the largest layer by DeepSpeed's rule differs from every other plausible reading:
//   root   scale [10]                           own 10
//   embed  weight [50, 4]                       own 200
//   block  w1 [10, 10], w2 [10, 10], b [20]     own 220 (subtree 370 with fc)
//     fc   weight [10, 15]                      own 150
//   head   weight = embed.weight (tied), bias [50] (frozen)   own 200 + 50 = 250
// Largest own: head, 250. Not counting the tied weight on head: block, 220. Counting subtrees: the
// root, 10 + 200 + 220 + 150 + 50 = 630. Largest single parameter: 200. Skipping frozen
// parameters: block, 220.
ModuleTree Tree() {
  ModuleTree t("toy");
  const ModuleId root = t.add_module(kNoModule, "", "Toy");
  t.add_parameter(root, "scale", {10}, DType::kFloat32);
  const ModuleId embed = t.add_module(root, "embed", "Embedding");
  const ParamId wte = t.add_parameter(embed, "weight", {50, 4}, DType::kFloat32);
  const ModuleId block = t.add_module(root, "block", "Block");
  t.add_parameter(block, "w1", {10, 10}, DType::kFloat32);
  t.add_parameter(block, "w2", {10, 10}, DType::kFloat32);
  t.add_parameter(block, "b", {20}, DType::kFloat32);
  const ModuleId fc = t.add_module(block, "fc", "Linear");
  t.add_parameter(fc, "weight", {10, 15}, DType::kFloat32);
  const ModuleId head = t.add_module(root, "head", "Linear");
  t.tie_parameter(head, "weight", wte);
  t.add_parameter(head, "bias", {50}, DType::kFloat32, /*requires_grad=*/false);
  return t;
}

TEST(ModelStates, LargestLayerIsTheLargestSumRegisteredOnOneModule) {
  const ModuleTree t = Tree();
  ASSERT_EQ(t.total_parameters(), 630);  // the tied weight once
  EXPECT_EQ(largest_layer_params(t), 250);
}

TEST(ModelStates, LargestLayerCountsAParameterTwiceOnOneModuleOnce) {
  // m.parameters(recurse=False) yields a parameter once however many attributes name it.
  ModuleTree t = Tree();
  const ModuleId twice = t.add_module(0, "twice", "Twice");
  const ParamId p = t.add_parameter(twice, "a", {16, 16}, DType::kFloat32);  // 256
  t.tie_parameter(twice, "b", p);
  EXPECT_EQ(largest_layer_params(t), 256);  // not 512
}

TEST(ModelStates, LargestLayerEmptyTree) {
  EXPECT_EQ(largest_layer_params(ModuleTree()), 0);
}

// Expected values are DeepSpeed's estimate_zero3_model_states_mem_needs (deepspeed/runtime/zero/
// stage3.py, zero_init=True, additional_buffer_factor=1.5), evaluated by Python 3 on the same
// arguments; the hand arithmetic is in the comments.
struct EstimateCase {
  std::int64_t total, largest, gpus_per_node, nodes;
  bool cpu_offload, cpu_offload_params;
  std::int64_t gpu, cpu;
};

TEST(DeepSpeedEstimate, MatchesDeepSpeed) {
  const EstimateCase cases[] = {
      // Both offloaded: gpu 4*3 = 12; cpu 7*18*(1/1)*1.5 = 189.
      {7, 3, 3, 1, true, true, 12, 189},
      // Optimizer offloaded: gpu 12 + int(2*7/3 = 4.67) = 16; cpu 7*16*1.5 = 168.
      {7, 3, 3, 1, true, false, 16, 168},
      // Nothing offloaded: gpu 12 + int(18*7/3) = 54; cpu 3*4*3*1.5 = 54 (the largest layer).
      {7, 3, 3, 1, false, false, 54, 54},
      // Two nodes, 6 GPUs: cpu 7*18*0.5*1.5 = 94.5 -> 94.
      {7, 3, 3, 2, true, true, 12, 94},
      // gpu 12 + int(14/6 = 2.33) = 14; cpu 7*16*0.5*1.5 = 84.
      {7, 3, 3, 2, true, false, 14, 84},
      // gpu 12 + int(126/6) = 33; cpu per node does not depend on the node count: 54.
      {7, 3, 3, 2, false, false, 33, 54},
      // A billion parameters, 8 GPUs on 2 nodes:
      //   gpu 4*50e6 = 200e6; cpu 1e9*18*0.5*1.5 = 13.5e9.
      {1'000'000'000, 50'000'000, 8, 2, true, true, 200'000'000, 13'500'000'000},
      //   gpu 200e6 + 2e9/16 = 325e6; cpu 1e9*16*0.5*1.5 = 12e9.
      {1'000'000'000, 50'000'000, 8, 2, true, false, 325'000'000, 12'000'000'000},
      //   gpu 200e6 + 18e9/16 = 1325e6; cpu 50e6*4*8*1.5 = 2.4e9.
      {1'000'000'000, 50'000'000, 8, 2, false, false, 1'325'000'000, 2'400'000'000},
      // Python's float order: 918664801511*16 * (1/3) * 1.5 is 7349318412087.999 in doubles and
      // truncates to ...087, where exact arithmetic (or dividing by 3 instead of multiplying by
      // 1/3) gives ...088.
      {918'664'801'511, 1'234'567, 8, 3, true, false, 76'560'338'393, 7'349'318'412'087},
      //   gpu 4938268 + int(918664801511*18/24 = 688998601133.25) = 689003539401.
      {918'664'801'511, 1'234'567, 8, 3, false, false, 689'003'539'401, 59'259'216},
      //   cpu 918664801511*18/3*1.5 = 8267983213599.
      {918'664'801'511, 1'234'567, 8, 3, true, true, 4'938'268, 8'267'983'213'599},
  };
  for (const EstimateCase& c : cases) {
    const DeepSpeedEstimate e = deepspeed_zero3_estimate(
        c.total, c.largest, c.gpus_per_node, c.nodes, c.cpu_offload, c.cpu_offload_params);
    const std::string what = std::to_string(c.total) + " params, largest " +
                             std::to_string(c.largest) + ", " + std::to_string(c.gpus_per_node) +
                             "x" + std::to_string(c.nodes) + ", offload " +
                             std::to_string(c.cpu_offload) + std::to_string(c.cpu_offload_params);
    EXPECT_EQ(e.gpu_bytes, c.gpu) << what;
    EXPECT_EQ(e.cpu_bytes, c.cpu) << what;
    EXPECT_EQ(e.total_params, c.total) << what;
    EXPECT_EQ(e.largest_layer_params, c.largest) << what;
    EXPECT_EQ(e.cpu_offload, c.cpu_offload) << what;
    EXPECT_EQ(e.cpu_offload_params, c.cpu_offload_params) << what;
  }
}

}  // namespace
}  // namespace zp::sim
