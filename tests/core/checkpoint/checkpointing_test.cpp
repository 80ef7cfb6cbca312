#include "core/checkpoint/checkpointing.h"

#include <gtest/gtest.h>

#include "core/model/presets.h"

namespace zp::ckpt {
namespace {

// tiny-gpt2 as a pipeline: wte, wpe, drop, h.0, h.1, ln_f, lm_head.
struct Fixture {
  Fixture()
      : tree(build_model(*find_preset("tiny-gpt2"), BatchShape{2, 8, DType::kBFloat16})),
        layers(pipe::layers_from_tree(tree)) {
    for (const pipe::Layer& l : layers.layers)
      activity.push_back(layer_activity(tree, l));
    ids.output_bytes = 2 * 8 * 8;  // int64 token ids
    ids.output_numel = 16;
    ids.output_floating = false;
  }
  CheckpointPlan plan(const CheckpointSettings& s, std::int64_t inflight = 1) const {
    return plan_checkpointing(tree, layers, 0, static_cast<std::int64_t>(layers.layers.size()), ids,
                              inflight, s);
  }
  ModuleTree tree;
  pipe::PipelineLayers layers;
  std::vector<LayerActivity> activity;
  LayerActivity ids;
};

TEST(Checkpointing, LayerActivityAddsEveryCallInside) {
  const Fixture f;
  ASSERT_EQ(f.layers.layers.size(), 7u);
  ASSERT_EQ(f.layers.layers[3].name, "transformer.h.0");
  // A block's saved activations are its own plus its children's (costs are exclusive per call).
  std::int64_t sum = 0;
  for (size_t i = static_cast<size_t>(f.layers.layers[3].call); i < f.tree.calls().size(); ++i) {
    const ForwardCall& c = f.tree.calls()[i];
    if (i != static_cast<size_t>(f.layers.layers[3].call) &&
        c.parent_call < f.layers.layers[3].call)
      break;
    sum += f.tree.module(c.module).cost.activation_bytes;
  }
  EXPECT_EQ(f.activity[3].activation_bytes, sum);
  EXPECT_EQ(f.activity[3].output_bytes, 2 * 8 * 64 * 2);  // [2, 8, 64] in bf16
  EXPECT_EQ(f.activity[3].output_numel, 2 * 8 * 64);
}

TEST(Checkpointing, OffKeepsEveryActivation) {
  const Fixture f;
  const CheckpointPlan p = f.plan({});
  ASSERT_EQ(p.segments.size(), 1u);
  EXPECT_FALSE(p.segments[0].checkpointed);
  for (size_t i = 0; i < p.layers.size(); ++i) {
    EXPECT_EQ(p.layers[i].held_bytes, f.activity[i].activation_bytes);
    EXPECT_EQ(p.layers[i].extra_forward_flops, 0);
  }
}

TEST(Checkpointing, SegmentsWithParametersKeepOnlyTheirInputs) {
  const Fixture f;
  CheckpointSettings s;
  s.interval = 2;
  const CheckpointPlan p = f.plan(s);
  // [wte, wpe] [drop, h.0] [h.1, ln_f] [lm_head], counted from the stage's first layer.
  ASSERT_EQ(p.segments.size(), 4u);
  EXPECT_EQ(p.segments[1].begin, 2);
  EXPECT_EQ(p.segments[1].end, 4);
  for (const Segment& seg : p.segments)
    EXPECT_TRUE(seg.checkpointed);
  // [drop, h.0]: holds wpe's output (its input); drop and h.0 are recomputed in backward.
  EXPECT_EQ(p.layers[2].held_bytes, f.activity[1].output_bytes);
  EXPECT_EQ(p.layers[3].held_bytes, 0);
  EXPECT_EQ(p.layers[3].recompute_bytes, f.activity[3].activation_bytes);
  EXPECT_EQ(p.layers[3].extra_forward_flops, f.activity[3].forward_flops);
  // The first segment's input is token ids, kept as they are.
  EXPECT_EQ(p.layers[0].held_bytes, f.ids.output_bytes);
}

TEST(Checkpointing, SegmentsStartAtTheStagesFirstLayer) {
  const Fixture f;
  CheckpointSettings s;
  s.interval = 2;
  // A stage holding layers 3..6: its segments are [3, 5) and [5, 7), whatever the other stages
  // hold.
  const CheckpointPlan p = plan_checkpointing(f.tree, f.layers, 3, 7, f.activity[2], 1, s);
  ASSERT_EQ(p.segments.size(), 2u);
  EXPECT_EQ(p.segments[0].begin, 3);
  EXPECT_EQ(p.segments[0].end, 5);
  EXPECT_EQ(p.segments[1].begin, 5);
  EXPECT_EQ(p.layers[0].held_bytes, f.activity[2].output_bytes);  // the stage's input
  EXPECT_EQ(p.layers[2].held_bytes, f.activity[4].output_bytes);
}

TEST(Checkpointing, SegmentsWithoutParametersAreNotCheckpointed) {
  const Fixture f;
  CheckpointSettings s;
  s.interval = 1;
  const CheckpointPlan p = f.plan(s);
  ASSERT_EQ(p.segments.size(), 7u);
  EXPECT_FALSE(p.segments[2].checkpointed);  // drop: a Dropout, no parameters
  EXPECT_EQ(p.layers[2].held_bytes, f.activity[2].activation_bytes);
  EXPECT_TRUE(p.segments[3].checkpointed);
}

TEST(Checkpointing, CheckpointableLayersByType) {
  const Fixture f;
  CheckpointSettings s;
  s.interval = 1;
  s.checkpointable_layers = std::vector<std::string>{"GPT2Block"};
  const CheckpointPlan p = f.plan(s);
  for (size_t i = 0; i < p.segments.size(); ++i)
    EXPECT_EQ(p.segments[i].checkpointed, i == 3 || i == 4) << i;
  s.interval = 2;  // a segment is checkpointed only when all its layers are listed
  const CheckpointPlan q = f.plan(s);
  for (const Segment& seg : q.segments)
    EXPECT_FALSE(seg.checkpointed);
}

TEST(Checkpointing, PartitionedInputsKeepASliceAndGatherInBackward) {
  const Fixture f;
  CheckpointSettings s;
  s.interval = 1;
  s.partition_activations = true;
  s.tensor_parallel_size = 2;
  const CheckpointPlan p = f.plan(s);
  const std::int64_t input = f.activity[2].output_bytes;  // h.0's input
  EXPECT_EQ(p.layers[3].held_bytes, input / 2);
  EXPECT_EQ(p.layers[3].allgather_bytes, input / 2);
  EXPECT_EQ(p.layers[3].recompute_bytes, f.activity[3].activation_bytes + input);
  EXPECT_EQ(p.layers[0].held_bytes, f.ids.output_bytes);  // integer inputs are never partitioned
  // 1,024 elements do not split over 3 ranks: DeepSpeed's assertion.
  s.tensor_parallel_size = 3;
  EXPECT_THROW(f.plan(s), UserError);
}

TEST(Checkpointing, CpuCheckpointingMovesInputsToTheHost) {
  const Fixture f;
  CheckpointSettings s;
  s.interval = 1;
  s.cpu_checkpointing = true;
  const CheckpointPlan p = f.plan(s);
  const std::int64_t input = f.activity[2].output_bytes;
  EXPECT_EQ(p.layers[3].held_bytes, 0);
  EXPECT_EQ(p.layers[3].host_bytes, input);
  EXPECT_EQ(p.layers[3].to_host_bytes, input);
  EXPECT_EQ(p.layers[3].from_host_bytes, input);
  EXPECT_EQ(p.layers[3].recompute_bytes, f.activity[3].activation_bytes + input);
  s.partition_activations = true;
  s.tensor_parallel_size = 2;
  const CheckpointPlan q = f.plan(s);
  EXPECT_EQ(q.layers[3].host_bytes, input / 2);
  EXPECT_EQ(q.layers[3].to_host_bytes, input / 2);
}

TEST(Checkpointing, ContiguousBuffersHoldEveryCheckpointBeforeBackward) {
  const Fixture f;
  CheckpointSettings s;
  s.interval = 1;
  s.partition_activations = true;
  s.contiguous_memory_optimization = true;
  s.tensor_parallel_size = 2;
  s.number_checkpoints = 12;
  // Six checkpointed segments per micro-batch, two micro-batches forward before the first
  // backward: 12 slots are just enough.
  const CheckpointPlan p = f.plan(s, 2);
  EXPECT_EQ(p.layers[3].held_bytes, 0);  // in the buffer instead
  EXPECT_EQ(p.contiguous_buffer_bytes, 12 * (f.activity[2].output_bytes / 2));
  EXPECT_FALSE(p.contiguous_buffer_on_host);
  EXPECT_THROW(f.plan(s, 3), UserError);
  s.cpu_checkpointing = true;
  const CheckpointPlan q = f.plan(s, 2);
  EXPECT_TRUE(q.contiguous_buffer_on_host);
  EXPECT_EQ(q.layers[3].host_bytes, 0);
  EXPECT_EQ(q.layers[3].to_host_bytes, f.activity[2].output_bytes / 2);
}

TEST(Checkpointing, SettingsFromTheDeepSpeedConfig) {
  const Document d = Document::from_json(
      R"({"train_micro_batch_size_per_gpu": 1, "pipeline": {"activation_checkpoint_interval": 2},
          "activation_checkpointing": {"partition_activations": true, "cpu_checkpointing": true}})",
      "ds.json");
  const CheckpointSettings s =
      CheckpointSettings::from(parse_deepspeed_config(Node(d), DeepSpeedContext{}), 4);
  EXPECT_EQ(s.interval, 2);
  EXPECT_TRUE(s.partition_activations);
  EXPECT_TRUE(s.cpu_checkpointing);
  EXPECT_EQ(s.tensor_parallel_size, 4);
  // The combinations DeepSpeed's configure() rejects are refused when the config is read.
  const Document bad = Document::from_json(
      R"({"train_micro_batch_size_per_gpu": 1, "activation_checkpointing": {"contiguous_memory_optimization": true, "number_checkpoints": 4}})",
      "ds.json");
  EXPECT_THROW(parse_deepspeed_config(Node(bad), DeepSpeedContext{}), UserError);
}

}  // namespace
}  // namespace zp::ckpt
