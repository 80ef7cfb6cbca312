#include "exec/pipe/pipeline_engine.h"

#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "tests/exec/comm/rank_threads.h"
#include "tests/exec/model/tiny_models.h"
#include "tests/exec/train/same_training.h"

namespace zp::exec {
namespace {

using testing::kTinyVocab;
using testing::tiny_gpt2;
using testing::tiny_llama;
using testing::tiny_tree;

// --- Stages of LmModel ---------------------------------------------------------------------------

class CallRecorder : public ModuleHooks {
 public:
  void pre_forward(const ModuleCall& call) override { calls.push_back(call.index); }
  std::vector<std::int32_t> calls;
};

TokenBatch some_tokens(std::int64_t batch, std::int64_t seq) {
  TokenBatch t{batch, seq, {}};
  for (std::int64_t i = 0; i < batch * seq; ++i)
    t.ids.push_back((7 * i + 3) % kTinyVocab);
  return t;
}

// Every split into two stages computes the whole model's loss and gradients, and the stages'
// calls are the whole forward's calls of their layers, at the same indices.
void expect_split_matches_whole(const ModelConfig& config) {
  const ModuleTree tree = tiny_tree(config);
  LmModel model(config, tree, /*seed=*/3);
  const at::Tensor ids = token_tensor(some_tokens(2, 8));

  CallRecorder whole_calls;
  const at::Tensor whole = model.loss(ids, &whole_calls);
  whole.backward();
  std::vector<at::Tensor> whole_grads;
  for (const at::Tensor& p : model.parameters()) {
    whole_grads.push_back(p.grad().clone());
    p.mutable_grad().zero_();
  }
  // The wrappers (the root, GPT2Model or LlamaModel) are no layer: a stage does not call them.
  const pipe::PipelineLayers& layers = model.pipeline_layers();
  std::vector<std::int32_t> layer_calls;
  for (const std::int32_t c : whole_calls.calls) {
    for (std::int32_t at = c; at != kNoCall;
         at = tree.calls()[static_cast<size_t>(at)].parent_call) {
      if (std::any_of(layers.layers.begin(), layers.layers.end(),
                      [&](const pipe::Layer& l) { return l.call == at; })) {
        layer_calls.push_back(c);
        break;
      }
    }
  }

  const auto n = static_cast<std::int64_t>(layers.layers.size());
  for (std::int64_t k = 1; k < n; ++k) {
    SCOPED_TRACE("split at layer " + std::to_string(k));
    CallRecorder calls;
    const at::Tensor hidden = model.forward_layers(0, k, ids, at::Tensor(), &calls);
    // The boundary as a pipeline has it: the next stage starts from a leaf.
    const at::Tensor received = hidden.detach().requires_grad_(true);
    const at::Tensor loss = model.forward_layers(k, n, received, ids, &calls);
    EXPECT_NEAR(loss.item<double>(), whole.item<double>(), 1e-6 * whole.item<double>());
    EXPECT_EQ(calls.calls, layer_calls);
    loss.backward();
    hidden.backward(received.grad());
    for (std::size_t p = 0; p < whole_grads.size(); ++p) {
      const at::Tensor& g = model.parameters()[p].mutable_grad();
      EXPECT_TRUE(at::allclose(g, whole_grads[p], 1e-5, 1e-7)) << tree.parameters()[p].name;
      g.zero_();
    }
  }
}

TEST(LmModelStages, Gpt2SplitsComputeTheWholeModel) {
  expect_split_matches_whole(tiny_gpt2());
}

TEST(LmModelStages, LlamaSplitsComputeTheWholeModel) {
  expect_split_matches_whole(tiny_llama());
}

TEST(LmModelStages, LayersAreDeepSpeedsAndTheTiedHeadHoldsTheEmbedding) {
  const ModelConfig config = tiny_gpt2();
  const ModuleTree tree = tiny_tree(config);
  LmModel model(config, tree, 3);
  std::vector<std::string> names;
  for (const pipe::Layer& l : model.pipeline_layers().layers)
    names.push_back(l.name);
  EXPECT_EQ(names, (std::vector<std::string>{"transformer.wte", "transformer.wpe",
                                             "transformer.drop", "transformer.h.0",
                                             "transformer.h.1", "transformer.ln_f", "lm_head"}));
  const std::vector<ParamId> head = model.layer_parameters(6, 7);
  ASSERT_EQ(head.size(), 1u);
  EXPECT_EQ(tree.parameter(head[0]).name, "transformer.wte.weight");
}

// --- The engine against one process --------------------------------------------------------------

struct Case {
  ModelConfig config;
  int stages = 2;
  int data = 1;
  int micro_batches = 4;
  std::int64_t steps = 3;
  OptimizerSpec optimizer;
  std::int64_t checkpoint_interval = 0;
  // For GPT-2's attention biases (c_attn.bias, key slice aside): see the AdamW test.
  double attention_bias_tolerance = 1e-5;
};

SyntheticData data_for(const Case& c) {
  return SyntheticData{
      .seed = 11, .global_batch = 2 * c.data * c.micro_batches, .seq = 12, .vocab = kTinyVocab};
}

struct Outcome {
  std::vector<double> losses;  // per step, rank 0's
  // By ParamId: the copy of the lowest stage holding it, in pipeline 0.
  std::vector<std::vector<float>> parameters;
  // Every rank's copy of every parameter it holds: the replicas must agree.
  std::vector<std::map<ParamId, std::vector<float>>> by_rank;
  std::vector<std::vector<pipe::Instruction>> instructions;  // by rank
  std::vector<std::vector<std::int64_t>> held_numel;         // by rank, every parameter's numel
  std::vector<int> stage_of;                                 // by rank
  // By rank: every communication, "group kind bytes", in the order each communicator issued it
  // (the world's first, then each sub-group's).
  std::vector<std::vector<std::string>> comms;
};

Outcome train_pipeline(const Case& c) {
  const ModuleTree tree = tiny_tree(c.config);
  const SyntheticData data = data_for(c);
  const int world = c.stages * c.data;
  Outcome out;
  out.losses.assign(static_cast<std::size_t>(c.steps), 0.0);
  out.by_rank.resize(static_cast<std::size_t>(world));
  out.instructions.resize(static_cast<std::size_t>(world));
  out.held_numel.resize(static_cast<std::size_t>(world));
  out.stage_of.resize(static_cast<std::size_t>(world));
  out.comms.resize(static_cast<std::size_t>(world));
  std::vector<std::vector<double>> losses(static_cast<std::size_t>(world));
  std::mutex mutex;
  comm::run_local_ranks_with_groups(
      world, [&](comm::Communicator& group, const comm::GroupMaker& make_group) {
        LmModel model(c.config, tree, /*seed=*/5);
        model.set_checkpoint_interval(c.checkpoint_interval);
        PipelineEngine engine(
            model, group,
            PipelineOptions{
                .stages = c.stages, .micro_batches = c.micro_batches, .optimizer = c.optimizer},
            make_group);
        engine.set_instruction_logging(true);
        std::vector<double> mine;
        for (std::int64_t step = 0; step < c.steps; ++step) {
          const TokenBatch global = synthetic_batch(data, step);
          std::vector<TokenBatch> micro;
          for (int mb = 0; mb < c.micro_batches; ++mb)
            micro.push_back(micro_batch(global, engine.data_index(), c.data, mb, c.micro_batches));
          mine.push_back(engine.step(micro).loss);
        }
        std::map<ParamId, std::vector<float>> params;
        for (const ParamId p : engine.parameters())
          params[p] = engine.parameter_values(p);
        std::vector<std::int64_t> numel;
        for (const at::Tensor& p : model.parameters())
          numel.push_back(p.numel());
        std::vector<std::string> comms;
        const auto describe = [&](const std::string& name, const comm::Communicator& from) {
          for (const comm::OpRecord& rec : from.log().records())
            comms.push_back(name + " " + std::string(comm::to_string(rec.kind)) + " " +
                            std::to_string(rec.bytes));
        };
        describe("world", group);
        for (const PipelineEngine::Group& g : engine.groups())
          describe(g.name, *g.comm);
        const auto r = static_cast<std::size_t>(group.rank());
        std::lock_guard<std::mutex> lock(mutex);
        out.comms[r] = std::move(comms);
        losses[r] = std::move(mine);
        out.by_rank[r] = std::move(params);
        out.instructions[r] = engine.instruction_log();
        out.held_numel[r] = std::move(numel);
        out.stage_of[r] = engine.stage();
      });
  out.losses = losses[0];
  for (std::size_t r = 1; r < losses.size(); ++r)
    EXPECT_EQ(losses[r], losses[0]) << "rank " << r << " reports another loss";
  // Ranks of pipeline 0 are stage * data; increasing rank is increasing stage.
  out.parameters.resize(tree.parameters().size());
  for (int s = c.stages - 1; s >= 0; --s) {
    for (const auto& [p, values] : out.by_rank[static_cast<std::size_t>(s * c.data)])
      out.parameters[static_cast<std::size_t>(p)] = values;
  }
  return out;
}

void expect_same_training(const Case& c) {
  const ModuleTree tree = tiny_tree(c.config);
  const ReferenceResult want = train_reference(
      c.config, tree,
      ReferenceRun{
          .steps = c.steps, .init_seed = 5, .data = data_for(c), .optimizer = c.optimizer});
  const Outcome got = train_pipeline(c);
  testing::expect_same_training(tree, c.optimizer, want, got.losses, got.parameters,
                                c.attention_bias_tolerance);

  // Every copy (a tied weight on several stages, every pipeline's replica) is the same, bit for
  // bit: each is stepped on the same reduced gradient.
  for (std::size_t r = 0; r < got.by_rank.size(); ++r) {
    for (const auto& [p, values] : got.by_rank[r])
      EXPECT_EQ(values, got.parameters[static_cast<std::size_t>(p)])
          << "rank " << r << " parameter " << tree.parameter(p).name;
  }
}

OptimizerSpec sgd() {
  return testing::test_sgd();
}
OptimizerSpec adamw() {
  return testing::test_adamw();
}

TEST(PipelineEngine, TwoStagesGpt2SgdTrainLikeOneProcess) {
  expect_same_training(Case{.config = tiny_gpt2(), .optimizer = sgd()});
}

// The query bias of GPT-2's attention gets a small gradient too (scores barely move at
// initialisation), so AdamW amplifies the order of summation there: plain single-process
// accumulation over these 4 micro-batches (the one-stage engine, which communicates nothing)
// already ends 1.5e-5 from one whole-batch step in the first block's c_attn.bias. The pipeline
// adds nothing to that: against the one-stage engine every parameter agrees within 1e-6.
TEST(PipelineEngine, TwoStagesGpt2AdamWTrainLikeOneProcess) {
  expect_same_training(
      Case{.config = tiny_gpt2(), .optimizer = adamw(), .attention_bias_tolerance = 1e-4});

  const Outcome pipeline = train_pipeline(Case{.config = tiny_gpt2(), .optimizer = adamw()});
  const Outcome accumulation =
      train_pipeline(Case{.config = tiny_gpt2(), .stages = 1, .optimizer = adamw()});
  for (std::size_t s = 0; s < pipeline.losses.size(); ++s)
    EXPECT_NEAR(pipeline.losses[s], accumulation.losses[s], 1e-6 * accumulation.losses[s]);
  const ModuleTree tree = tiny_tree(tiny_gpt2());
  for (std::size_t p = 0; p < tree.parameters().size(); ++p) {
    const std::string& name = tree.parameters()[p].name;
    std::vector<float> g = pipeline.parameters[p], w = accumulation.parameters[p];
    if (name.ends_with("attn.c_attn.bias")) {
      const std::size_t h = g.size() / 3;
      std::fill(g.begin() + h, g.begin() + 2 * h, 0.0f);
      std::fill(w.begin() + h, w.begin() + 2 * h, 0.0f);
    }
    EXPECT_LT(testing::relative_error(g, w), 1e-6) << name;
  }
}

TEST(PipelineEngine, TwoStagesLlamaSgdTrainLikeOneProcess) {
  expect_same_training(Case{.config = tiny_llama(), .optimizer = sgd()});
}

TEST(PipelineEngine, TwoStagesLlamaAdamWTrainLikeOneProcess) {
  expect_same_training(Case{.config = tiny_llama(), .optimizer = adamw()});
}

TEST(PipelineEngine, TwoStagesTimesTwoPipelinesTrainLikeOneProcess) {
  expect_same_training(Case{.config = tiny_gpt2(), .data = 2, .optimizer = adamw()});
  expect_same_training(Case{.config = tiny_llama(), .data = 2, .optimizer = sgd()});
}

TEST(PipelineEngine, ThreeStagesWithAMiddleStageTrainLikeOneProcess) {
  expect_same_training(
      Case{.config = tiny_gpt2(), .stages = 3, .micro_batches = 2, .optimizer = sgd()});
}

TEST(PipelineEngine, CheckpointedStagesTrainLikeOneProcess) {
  expect_same_training(
      Case{.config = tiny_gpt2(), .stages = 3, .optimizer = sgd(), .checkpoint_interval = 1});
  expect_same_training(Case{.config = tiny_llama(), .optimizer = sgd(), .checkpoint_interval = 2});
}

TEST(PipelineEngine, OneStageIsPlainTraining) {
  expect_same_training(
      Case{.config = tiny_llama(), .stages = 1, .micro_batches = 2, .optimizer = adamw()});
}

TEST(PipelineEngine, ExecutesTheCoresTrainScheduleAndHoldsOnlyItsStage) {
  const Case c{
      .config = tiny_gpt2(), .data = 2, .micro_batches = 4, .steps = 2, .optimizer = sgd()};
  const Outcome got = train_pipeline(c);
  const ModuleTree tree = tiny_tree(c.config);
  LmModel whole(c.config, tree, 5);
  const pipe::PipelinePartition partition =
      pipe::partition_layers(whole.pipeline_layers(), c.stages, pipe::PartitionMethod{});
  for (std::size_t r = 0; r < got.instructions.size(); ++r) {
    const int stage = got.stage_of[r];
    EXPECT_EQ(stage, static_cast<int>(r) / c.data);
    const pipe::StageSchedule schedule = pipe::stage_schedule(
        pipe::ScheduleSpec{pipe::ScheduleKind::kTrain, c.micro_batches, c.stages, 1}, stage);
    std::vector<pipe::Instruction> want;
    for (std::int64_t s = 0; s < c.steps; ++s)
      for (const pipe::Step& step : schedule.steps)
        want.insert(want.end(), step.begin(), step.end());
    EXPECT_EQ(got.instructions[r], want) << "rank " << r;

    // Parameters outside the stage's layers hold no storage.
    const std::vector<ParamId> held =
        whole.layer_parameters(partition.stage_begin(stage), partition.stage_end(stage));
    for (std::size_t p = 0; p < tree.parameters().size(); ++p) {
      const bool holds = std::binary_search(held.begin(), held.end(), static_cast<ParamId>(p));
      EXPECT_EQ(got.held_numel[r][p], holds ? tree.parameters()[p].numel() : 0)
          << "rank " << r << " " << tree.parameters()[p].name;
    }
  }
  // GPT-2's tied embedding is on both ends: wte on the first stage, lm_head on the last.
  const auto wte = static_cast<std::size_t>(
      std::find_if(tree.parameters().begin(), tree.parameters().end(),
                   [](const Parameter& p) { return p.name == "transformer.wte.weight"; }) -
      tree.parameters().begin());
  EXPECT_GT(got.held_numel.front()[wte], 0);
  EXPECT_GT(got.held_numel.back()[wte], 0);
}

// What DeepSpeed's engine exchanges, and over which groups: the shape message (256 int32) before
// the first activation ever, then per micro-batch the activation and its gradient between the
// neighbours; per step the tied embedding's gradient all-reduced over the two ends of the
// pipeline, the gradients flattened and all-reduced over the stage's data-parallel group, the
// loss all-reduced there by the last stage and broadcast from it as two floats over the pipeline.
TEST(PipelineEngine, ExchangesWhatDeepSpeedExchangesOverItsGroups) {
  const Case c{
      .config = tiny_gpt2(), .data = 2, .micro_batches = 2, .steps = 2, .optimizer = sgd()};
  const Outcome got = train_pipeline(c);
  const ModuleTree tree = tiny_tree(c.config);
  LmModel whole(c.config, tree, 5);
  const pipe::PipelinePartition partition =
      pipe::partition_layers(whole.pipeline_layers(), c.stages, pipe::PartitionMethod{});
  const std::int64_t activation = 2 * 12 * c.config.hidden_size * 4;  // rows x seq x hidden fp32
  const std::int64_t wte = tree.parameter(whole.layer_parameters(0, 1).front()).numel() * 4;
  const std::int64_t mb_total = c.micro_batches * c.steps;
  for (std::size_t r = 0; r < got.comms.size(); ++r) {
    SCOPED_TRACE("rank " + std::to_string(r));
    const int stage = got.stage_of[r];
    std::int64_t stage_bytes = 0;
    for (const ParamId p :
         whole.layer_parameters(partition.stage_begin(stage), partition.stage_end(stage)))
      stage_bytes += tree.parameter(p).numel() * 4;
    std::map<std::string, std::int64_t> want;
    const auto expect = [&](const std::string& what, std::int64_t bytes, std::int64_t count) {
      want[what + " " + std::to_string(bytes)] += count;
    };
    const std::string out = stage == 0 ? "send" : "recv";
    const std::string back = stage == 0 ? "recv" : "send";
    expect("world " + out, 1024, 1);
    expect("world " + out, activation, mb_total);
    expect("world " + back, activation, mb_total);
    expect("tied transformer.wte.weight all_reduce", wte, c.steps);
    expect("data all_reduce", stage_bytes, c.steps);
    if (stage == 1) expect("data all_reduce", 4, c.steps);
    expect("pipe broadcast", 8, c.steps);
    std::map<std::string, std::int64_t> have;
    for (const std::string& what : got.comms[r])
      ++have[what];
    EXPECT_EQ(have, want);
    // The shape message goes first.
    ASSERT_FALSE(got.comms[r].empty());
    EXPECT_EQ(got.comms[r].front(), "world " + out + " 1024");
  }
}

TEST(PipelineEngine, RefusesStagesThatDoNotDivideTheRanks) {
  comm::testing::run_ranks(2, [&](comm::Communicator& group) {
    const ModuleTree tree = tiny_tree(tiny_gpt2());
    LmModel model(tiny_gpt2(), tree, 5);
    EXPECT_THROW(PipelineEngine(model, group, PipelineOptions{.stages = 3}), UserError);
    EXPECT_THROW(PipelineEngine(model, group, PipelineOptions{.stages = 2, .micro_batches = 0}),
                 UserError);
  });
}

}  // namespace
}  // namespace zp::exec
