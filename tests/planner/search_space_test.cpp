#include "planner/search_space.h"

#include <gtest/gtest.h>

#include <set>
#include <string>

#include "core/model/model_config.h"
#include "core/util/error.h"
#include "core/zero/partition.h"
#include "planner/search.h"

namespace zp::planner {
namespace {

RunSpec Example(const std::string& name) {
  return load_run_spec(std::string(ZEROPLAN_SOURCE_DIR) + "/configs/examples/" + name);
}

const RunSpec& Gpt2() {
  static const RunSpec run = Example("gpt2-zero3.yaml");
  return run;
}

std::string ErrorOf(const SpaceOptions& options, const RunSpec& run = Gpt2()) {
  try {
    build_search_space(run, options);
  } catch (const UserError& e) {
    return e.what();
  }
  return "no error";
}

// The run with one knob set directly in its DeepSpeed config, simulated.
Evaluation With(void (*set)(ZeroConfig&, std::int64_t), std::int64_t value) {
  RunSpec run = Gpt2();
  set(run.deepspeed.zero, value);
  return evaluate(run, true);
}
void ExpectSame(const Evaluation& a, const Evaluation& b) {
  EXPECT_EQ(a.step_ns, b.step_ns);
  EXPECT_EQ(a.memory, b.memory);
  EXPECT_EQ(a.gathered_bytes, b.gathered_bytes);
}

TEST(SearchSpace, DimensionsComeInTheOrderTheBoundsNeed) {
  const SearchSpace space = build_search_space(Gpt2(), {});
  int level = 0;  // 0: monotone in neither, 1: in memory only, 2: in both
  for (const Dimension& d : space.dims) {
    const int here = d.memory_monotone ? (d.time_monotone ? 2 : 1) : 0;
    EXPECT_GE(here, level) << d.knob->name;
    level = here;
    EXPECT_FALSE(d.values.empty()) << d.knob->name;
  }
  EXPECT_EQ(space.dims.back().knob->name, "max_live_parameters");
  EXPECT_EQ(space.dims.front().knob->name, "checkpoint_interval");
}

TEST(SearchSpace, EachPersistenceValueSelectsADistinctSet) {
  const SearchSpace space = build_search_space(Gpt2(), {});
  const Dimension* d = space.find("param_persistence_threshold");
  ASSERT_NE(d, nullptr);
  ASSERT_EQ(d->model_caps.size(), d->values.size());
  EXPECT_EQ(d->values.front(), 0);  // nothing persistent
  std::set<std::vector<ParamId>> sets;
  std::int64_t last_total = -1;
  for (std::size_t i = 0; i < d->size(); ++i) {
    const std::vector<ParamId> set =
        zero::persistent_parameters(Gpt2().tree, d->values[i], d->model_caps[i]);
    EXPECT_TRUE(sets.insert(set).second) << d->label(i);
    std::int64_t total = 0;
    for (ParamId p : set)
      total += Gpt2().tree.parameter(p).numel();
    EXPECT_GT(total, last_total) << "least memory first: " << d->label(i);
    last_total = total;
  }
  EXPECT_GT(d->considered, static_cast<std::int64_t>(d->size()));
}

TEST(SearchSpace, AThresholdBetweenTwoParameterSizesActsAsTheSmallerSize) {
  // GPT-2's parameter sizes include 768 (biases, norms) and 2304 (the attention's fused bias):
  // a threshold of 1000 persists exactly what 768 does, which is why only 768 is searched.
  auto set = [](ZeroConfig& z, std::int64_t v) { z.param_persistence_threshold = v; };
  ExpectSame(With(set, 1000), With(set, 768));
  EXPECT_EQ(With(set, 1000).allocated, With(set, 768).allocated);
  EXPECT_NE(With(set, 768).allocated, With(set, 0).allocated);
}

TEST(SearchSpace, SizesAboveTheModelActAsTheModelSize) {
  const std::int64_t total = [] {
    std::int64_t n = 0;
    for (const Parameter& p : Gpt2().tree.parameters())
      n += p.numel();
    return n;
  }();
  const SearchSpace space = build_search_space(Gpt2(), {});
  for (const char* knob : {"max_live_parameters", "prefetch_bucket_size", "max_reuse_distance",
                           "reduce_bucket_size"}) {
    const Dimension* d = space.find(knob);
    ASSERT_NE(d, nullptr) << knob;
    EXPECT_EQ(d->values.back(), total) << knob;
  }
  ExpectSame(With([](ZeroConfig& z, std::int64_t v) { z.max_live_parameters = v; }, total),
             With([](ZeroConfig& z, std::int64_t v) { z.max_live_parameters = v; }, 4 * total));
  ExpectSame(With([](ZeroConfig& z, std::int64_t v) { z.prefetch_bucket_size = v; }, total),
             With([](ZeroConfig& z, std::int64_t v) { z.prefetch_bucket_size = v; }, 4 * total));
  ExpectSame(With([](ZeroConfig& z, std::int64_t v) { z.max_reuse_distance = v; }, total),
             With([](ZeroConfig& z, std::int64_t v) { z.max_reuse_distance = v; }, 4 * total));
  // A reduce bucket above the model's size reduces alike but its buffer grows: only more memory.
  const Evaluation bucket =
      With([](ZeroConfig& z, std::int64_t v) { z.reduce_bucket_size = v; }, total);
  const Evaluation larger =
      With([](ZeroConfig& z, std::int64_t v) { z.reduce_bucket_size = v; }, 4 * total);
  EXPECT_EQ(bucket.step_ns, larger.step_ns);
  EXPECT_LE(bucket.memory, larger.memory);
}

TEST(SearchSpace, GranularityKeepsDistinctLeafSetsThatDeepSpeedAccepts) {
  const SearchSpace space = build_search_space(Gpt2(), {});
  const Dimension* d = space.find("module_granularity_threshold");
  ASSERT_NE(d, nullptr);
  EXPECT_EQ(d->values.front(), 0);
  RunSpec run = Gpt2();
  for (std::int64_t g : d->values) {
    run.deepspeed.zero.module_granularity_threshold = g;
    EXPECT_TRUE(evaluate(run, false).rejected.empty()) << g;
  }
  // GPT-2's whole model and its transformer would be leaves whose output needs a gradient none of
  // their inputs has: DeepSpeed refuses those, and so does the space.
  EXPECT_LT(static_cast<std::int64_t>(d->size()), d->considered);
  EXPECT_NE(d->derivation.find("refused"), std::string::npos);
}

TEST(SearchSpace, ApplySetsEveryKnobWhereDeepSpeedReadsIt) {
  const SearchSpace space = build_search_space(Gpt2(), {});
  Candidate top(space.dims.size());
  for (std::size_t i = 0; i < top.size(); ++i)
    top[i] = static_cast<std::int32_t>(space.dims[i].size()) - 1;
  RunSpec run = Gpt2();
  apply(space, top, run);
  for (const Dimension& d : space.dims) {
    EXPECT_EQ(current_value(run, *d.knob), d.values.back()) << d.knob->name;
  }
  EXPECT_EQ(run.deepspeed.zero.model_persistence_threshold,
            space.find("param_persistence_threshold")->model_caps.back());
  EXPECT_EQ(run.zero_settings().max_live_parameters,
            space.find("max_live_parameters")->values.back());
}

TEST(SearchSpace, PinsHoldOneValueAndRangesBoundTheGrid) {
  SpaceOptions o;
  o.pins = {
      {"offload_optimizer", "none"}, {"overlap_comm", "true"}, {"max_live_parameters", "5e8"}};
  o.ranges = {{"prefetch_bucket_size", {"1e6", "5e7"}}};
  const SearchSpace space = build_search_space(Gpt2(), o);
  EXPECT_EQ(space.find("offload_optimizer")->values,
            std::vector<std::int64_t>{static_cast<std::int64_t>(OffloadDevice::kNone)});
  EXPECT_EQ(space.find("overlap_comm")->values, std::vector<std::int64_t>{1});
  EXPECT_EQ(space.find("max_live_parameters")->values, std::vector<std::int64_t>{500'000'000});
  const std::vector<std::int64_t>& prefetch = space.find("prefetch_bucket_size")->values;
  EXPECT_EQ(prefetch.front(), 1'000'000);
  EXPECT_EQ(prefetch.back(), 50'000'000);
  for (std::int64_t v : prefetch) {
    EXPECT_GE(v, 1'000'000);
    EXPECT_LE(v, 50'000'000);
  }
  EXPECT_LT(space.size(), build_search_space(Gpt2(), {}).size());
}

TEST(SearchSpace, BadPinsAndRangesNameTheKnobAndTheValue) {
  auto pin = [](std::string knob, std::string value) {
    SpaceOptions o;
    o.pins = {{knob, value}};
    return ErrorOf(o);
  };
  auto range = [](std::string knob, std::string low, std::string high) {
    SpaceOptions o;
    o.ranges = {{knob, {low, high}}};
    return ErrorOf(o);
  };
  EXPECT_NE(pin("max_live_parameter", "1").find("did you mean 'max_live_parameters'"),
            std::string::npos);
  EXPECT_NE(pin("overlap_comm", "maybe").find("\"maybe\""), std::string::npos);
  EXPECT_NE(pin("offload_param", "disk").find("none, cpu or nvme"), std::string::npos);
  EXPECT_NE(pin("prefetch_bucket_size", "-5").find("whole number"), std::string::npos);
  EXPECT_NE(pin("prefetch_bucket_size", "1.5").find("whole number"), std::string::npos);
  EXPECT_NE(pin("offload_param", "nvme").find("nvme_path"), std::string::npos);
  EXPECT_NE(pin("micro_batch", "3").find("must divide the 8 samples each data-parallel rank"),
            std::string::npos);
  EXPECT_NE(pin("gradient_accumulation", "3").find("gradient_accumulation=3: it must divide"),
            std::string::npos);
  EXPECT_NE(pin("pipeline_stages", "2").find("stages 0 and 1 only"), std::string::npos);
  EXPECT_NE(range("partition_method", "a", "b").find("stages 0 and 1 only"), std::string::npos);
  EXPECT_NE(range("gradient_accumulation", "9", "16").find("leaves no micro-batch"),
            std::string::npos);
  EXPECT_NE(range("overlap_comm", "0", "1").find("pin overlap_comm instead"), std::string::npos);
  EXPECT_NE(range("prefetch_bucket_size", "5e8", "1e6").find("low end is above"),
            std::string::npos);
  SpaceOptions both;
  both.pins = {{"max_reuse_distance", "0"}};
  both.ranges = {{"max_reuse_distance", {"0", "1e9"}}};
  EXPECT_NE(ErrorOf(both).find("both pinned and given a range"), std::string::npos);
  SpaceOptions ratio;
  ratio.grid_ratio = 1;
  EXPECT_NE(ErrorOf(ratio).find("grid ratio"), std::string::npos);
}

// GPT-2's run takes 8 samples per data-parallel rank per step (micro-batch 8, no accumulation).
TEST(SearchSpace, TheLayoutSearchesEveryMicroBatchThatDividesTheBatchFirst) {
  EXPECT_EQ(build_search_space(Gpt2(), {}).find("micro_batch"), nullptr);
  SpaceOptions layout;
  layout.search_layout = true;
  const SearchSpace space = build_search_space(Gpt2(), layout);
  ASSERT_EQ(space.dims.front().knob->name, "micro_batch");
  EXPECT_EQ(space.dims.front().values, (std::vector<std::int64_t>{1, 2, 4, 8}));
  EXPECT_FALSE(space.dims.front().memory_monotone);

  SpaceOptions range;
  range.ranges = {{"micro_batch", {"2", "6"}}};  // 6 does not divide 8: not searched
  EXPECT_EQ(build_search_space(Gpt2(), range).find("micro_batch")->values,
            (std::vector<std::int64_t>{2, 4}));
  SpaceOptions accumulation;  // 2 to 4 accumulation steps: micro-batches 4 and 2
  accumulation.ranges = {{"gradient_accumulation", {"2", "4"}}};
  EXPECT_EQ(build_search_space(Gpt2(), accumulation).find("micro_batch")->values,
            (std::vector<std::int64_t>{2, 4}));
  SpaceOptions pin;
  pin.pins = {{"gradient_accumulation", "8"}};
  EXPECT_EQ(build_search_space(Gpt2(), pin).find("micro_batch")->values,
            (std::vector<std::int64_t>{1}));
}

TEST(SearchSpace, AnotherMicroBatchKeepsTheGlobalBatchAndScalesTheModel) {
  SpaceOptions o;
  o.pins = {{"micro_batch", "2"}};
  const SearchSpace space = build_search_space(Gpt2(), o);
  RunSpec run = Gpt2();
  apply(space, Candidate(space.dims.size(), 0), run);
  EXPECT_EQ(run.deepspeed.batch.micro_batch_per_gpu, 2);
  EXPECT_EQ(run.deepspeed.batch.gradient_accumulation_steps, 4);
  EXPECT_EQ(run.deepspeed.batch.train_batch_size, Gpt2().deepspeed.batch.train_batch_size);
  EXPECT_EQ(run.training.micro_batch, 2);
  EXPECT_EQ(run.tree.shape().micro_batch, 2);
  // The model as the loader builds it for micro-batch 2: about a quarter of the activations.
  const auto activations = [](const ModuleTree& tree) {
    std::int64_t sum = 0;
    for (const Module& m : tree.modules())
      sum += m.cost.activation_bytes;
    return sum;
  };
  ASSERT_TRUE(Gpt2().model.config);
  const ModuleTree built = build_model(
      *Gpt2().model.config, BatchShape{2, run.training.sequence_length, run.training.dtype});
  EXPECT_EQ(activations(run.tree), activations(built));
  EXPECT_NEAR(static_cast<double>(activations(run.tree)) * 4,
              static_cast<double>(activations(Gpt2().tree)),
              0.01 * static_cast<double>(activations(Gpt2().tree)));
  EXPECT_EQ(current_value(run, *find_knob("micro_batch")), 2);
  EXPECT_EQ(current_value(run, *find_knob("gradient_accumulation")), 4);
}

TEST(SearchSpace, StagesBelow3SearchWhatTheyHaveAndNoPipelineRunsZero3) {
  const SearchSpace zero2 = build_search_space(Example("gpt2-zero2.yaml"), {});
  EXPECT_NE(zero2.find("reduce_bucket_size"), nullptr);
  EXPECT_NE(zero2.find("offload_optimizer"), nullptr);
  for (const char* knob : {"max_live_parameters", "prefetch_bucket_size", "offload_param",
                           "param_persistence_threshold", "module_granularity_threshold"})
    EXPECT_EQ(zero2.find(knob), nullptr) << knob;
  // The optimizer goes to NVMe with ZeRO-3 only.
  for (std::int64_t v : zero2.find("offload_optimizer")->values)
    EXPECT_NE(v, static_cast<std::int64_t>(OffloadDevice::kNvme));
  SpaceOptions pipeline;
  pipeline.pins = {{"pipeline_stages", "2"}};
  EXPECT_NE(ErrorOf(pipeline, Example("gpt2-zero2.yaml")).find("stages 0 and 1 only"),
            std::string::npos);
  RunSpec zero3_pipeline = Example("bert-large-pipeline.yaml");
  zero3_pipeline.deepspeed.zero.stage = 3;
  EXPECT_NE(ErrorOf({}, zero3_pipeline).find("does not run ZeRO-3"), std::string::npos);
}

// BERT-large over 4 GPUs in 2 stages, ZeRO-1, global batch 256 (micro-batch 8).
TEST(SearchSpace, ThePipelineLayoutSearchesDepthsMethodsAndMicroBatchesThatFit) {
  const RunSpec bert = Example("bert-large-pipeline.yaml");
  SpaceOptions layout;
  layout.search_layout = true;
  const SearchSpace space = build_search_space(bert, layout);
  ASSERT_GE(space.dims.size(), 3u);
  EXPECT_EQ(space.dims[0].knob->name, "pipeline_stages");
  EXPECT_EQ(space.dims[0].values, (std::vector<std::int64_t>{1, 2, 4}));
  EXPECT_EQ(space.dims[1].knob->name, "partition_method");
  EXPECT_EQ(space.dims[1].names,
            (std::vector<std::string>{"type:BertLayer", "parameters", "uniform"}));
  EXPECT_EQ(space.dims[1].label(0), "type:BertLayer");
  // 64 samples per rank without a pipeline, 128 and 256 with: micro-batches dividing all three.
  EXPECT_EQ(space.dims[2].knob->name, "micro_batch");
  EXPECT_EQ(space.dims[2].values, (std::vector<std::int64_t>{1, 2, 4, 8, 16, 32, 64}));
  SpaceOptions bad;
  bad.pins = {{"pipeline_stages", "3"}};
  EXPECT_NE(ErrorOf(bad, bert).find("the depths that fit are 1, 2, 4"), std::string::npos);
  SpaceOptions method;
  method.pins = {{"partition_method", "type:Bert.*"}};
  const SearchSpace pinned = build_search_space(bert, method);
  const Dimension* p = pinned.find("partition_method");
  ASSERT_EQ(p->values.size(), 1u);
  EXPECT_EQ(p->label(0), "type:Bert.*");
}

TEST(SearchSpace, AnotherDepthKeepsTheGlobalBatchAndMovesTheCheckpointInterval) {
  const RunSpec bert = Example("bert-large-pipeline.yaml");
  ASSERT_EQ(bert.deepspeed.pipeline.activation_checkpoint_interval, 1);
  RunSpec flat = bert;
  set_layout(flat, 1, 8);
  EXPECT_EQ(flat.parallel.pipeline, 1);
  EXPECT_EQ(flat.parallel.data, 4);
  EXPECT_EQ(flat.deepspeed.batch.gradient_accumulation_steps, 8);  // 256 / (4 x 8)
  EXPECT_EQ(flat.training.checkpoint_interval, 1);
  EXPECT_EQ(flat.deepspeed.pipeline.activation_checkpoint_interval, 0);
  EXPECT_TRUE(layout_fits(bert, 4, 64));
  EXPECT_FALSE(layout_fits(bert, 3, 8));
  EXPECT_FALSE(layout_fits(bert, 1, 128));  // 64 samples per rank without a pipeline
  RunSpec deep = flat;
  set_layout(deep, 4, 8);
  EXPECT_EQ(deep.parallel.data, 1);
  EXPECT_EQ(deep.deepspeed.batch.gradient_accumulation_steps, 32);
  EXPECT_EQ(deep.deepspeed.pipeline.activation_checkpoint_interval, 1);
  EXPECT_EQ(deep.training.checkpoint_interval, 0);
  EXPECT_EQ(deep.parallel.world(), bert.parallel.world());
  // The simulator runs it: four stages, data-parallel 1.
  EXPECT_EQ(evaluate(deep, false).rejected, "");
}

}  // namespace
}  // namespace zp::planner
