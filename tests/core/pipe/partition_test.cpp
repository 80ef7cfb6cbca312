#include "core/pipe/partition.h"

#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

#include "core/model/model_config.h"
#include "core/model/presets.h"

namespace zp::pipe {
namespace {

using Bounds = std::vector<std::int64_t>;

// Every expected boundary list in this file's tables was produced by running DeepSpeed v0.16.4's
// own deepspeed/runtime/utils.py partition_uniform and partition_balanced (identical in v0.14.5)
// under Python 3 with numpy, and, for the method tables, PipelineModule._partition_layers's
// dispatch and _find_layer_type (re.IGNORECASE search) over the layer types and trainable parameter
// counts that layers_from_tree gives for the presets.

struct UniformCase {
  std::int64_t items;
  std::int64_t parts;
  Bounds expected;
};

TEST(PartitionUniform, MatchesDeepSpeed) {
  const std::vector<UniformCase> cases = {
      {10, 4, {0, 3, 6, 8, 10}},  // the first 10 % 4 stages take one more
      {7, 3, {0, 3, 5, 7}},
      {3, 5, {0, 1, 2, 3, 3, 3}},  // more stages than items: trailing stages are empty
      {0, 3, {0, 0, 0, 0}},
      {5, 1, {0, 5}},
      {8, 8, {0, 1, 2, 3, 4, 5, 6, 7, 8}},
      {9, 2, {0, 5, 9}},
      {13, 5, {0, 3, 6, 9, 11, 13}},
  };
  for (const UniformCase& c : cases) {
    EXPECT_EQ(partition_uniform(c.items, c.parts), c.expected)
        << c.items << " items, " << c.parts << " parts";
  }
}

struct BalancedCase {
  std::vector<std::int64_t> weights;
  std::int64_t parts;
  Bounds expected;
};

TEST(PartitionBalanced, MatchesDeepSpeed) {
  const std::vector<BalancedCase> cases = {
      // Uneven: DeepSpeed's tie-break (the last split of equal cost wins) gives {0,6,8,10}; taking
      // the first would give {0,5,8,10}.
      {{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, 3, {0, 6, 8, 10}},
      {{5, 1, 1, 1, 1, 5}, 2, {0, 3, 6}},
      {{5, 1, 1, 1, 1, 5}, 3, {0, 1, 5, 6}},
      {{5, 1, 1, 1, 1, 5}, 4, {0, 1, 3, 5, 6}},
      // Zero weights: they drift to the earlier stage on ties.
      {{0, 5, 0, 5, 0, 5}, 3, {0, 3, 5, 6}},
      {{3, 0, 0, 3, 0, 0, 3}, 3, {0, 3, 6, 7}},
      {{0, 0, 7}, 2, {0, 2, 3}},
      // All zero: every split ties, so the first stage takes all but one item per later stage.
      {{0, 0, 0, 0, 0, 0}, 3, {0, 4, 5, 6}},
      {{0, 0, 0, 0, 0}, 2, {0, 4, 5}},
      // More stages than items: partition_uniform, trailing stages empty.
      {{4, 2, 7}, 5, {0, 1, 2, 3, 3, 3}},
      {{4, 2, 7}, 3, {0, 1, 2, 3}},
      // One stage.
      {{3, 1, 4, 1, 5}, 1, {0, 5}},
      // One huge layer.
      {{1, 1, 1000, 1, 1, 1}, 3, {0, 2, 3, 6}},
      {{1, 1, 1, 1, 1, 100}, 4, {0, 2, 4, 5, 6}},
      {{10, 1, 1, 1, 1, 1, 1, 1, 1, 1}, 2, {0, 1, 10}},
      // Equal weights.
      {{1, 1, 1, 1, 1, 1, 1}, 3, {0, 3, 5, 7}},
      {{2, 2, 1, 1, 1, 1}, 3, {0, 1, 3, 6}},
      {{1, 3, 2, 5, 4, 1, 1, 6}, 4, {0, 3, 4, 7, 8}},
      // The heuristic is not min-max optimal: largest parts 10 and 19 where 9 and 17 are possible.
      {{1, 9, 2, 5}, 3, {0, 2, 3, 4}},
      {{2, 8, 9, 8, 4, 9, 3}, 3, {0, 3, 5, 7}},
  };
  for (const BalancedCase& c : cases) {
    EXPECT_EQ(partition_balanced(c.weights, c.parts), c.expected)
        << ::testing::PrintToString(c.weights) << " into " << c.parts;
  }
}

TEST(PartitionBalanced, RejectsBadInput) {
  EXPECT_THROW(partition_balanced({1, 2}, 0), UserError);
  EXPECT_THROW(partition_balanced({1, -2, 3}, 2), UserError);
  EXPECT_THROW(partition_balanced({INT64_MAX, 1}, 1), UserError);
  EXPECT_THROW(partition_uniform(-1, 2), UserError);
  EXPECT_THROW(partition_uniform(4, 0), UserError);
}

// --- Methods on the layers of built-in models -------------------------------------------------

PipelineLayers preset_layers(const char* name) {
  return layers_from_tree(build_model(*find_preset(name), BatchShape{1, 8, DType::kBFloat16}));
}

struct MethodCase {
  const char* preset;
  const char* method;
  std::int64_t stages;
  Bounds expected;
};

TEST(PartitionLayers, MatchesDeepSpeedOnPresets) {
  // tiny-gpt2: Embedding, Embedding, Dropout, GPT2Block x2, LayerNorm, Linear (tied to wte).
  // gpt2: the same with 12 blocks.
  const std::vector<MethodCase> cases = {
      {"tiny-gpt2", "uniform", 3, {0, 3, 5, 7}},
      {"tiny-gpt2", "uniform", 4, {0, 2, 4, 6, 7}},
      {"tiny-gpt2", "parameters", 1, {0, 7}},
      {"tiny-gpt2", "parameters", 2, {0, 4, 7}},
      {"tiny-gpt2", "parameters", 3, {0, 3, 5, 7}},
      {"tiny-gpt2", "parameters", 4, {0, 1, 4, 6, 7}},
      {"tiny-gpt2", "parameters", 8, {0, 1, 2, 3, 4, 5, 6, 7, 7}},
      {"tiny-gpt2", "type:GPT2Block", 2, {0, 4, 7}},
      {"tiny-gpt2", "type:GPT2Block", 3, {0, 4, 6, 7}},
      {"tiny-gpt2", "type:GPT2Block", 4, {0, 4, 5, 6, 7}},
      {"tiny-gpt2", "TYPE:gpt2block", 3, {0, 4, 6, 7}},
      {"tiny-gpt2", "type:embedding|linear", 2, {0, 6, 7}},
      {"tiny-gpt2", "type:embedding|linear", 3, {0, 1, 6, 7}},
      {"tiny-gpt2", "type:^l", 3, {0, 5, 6, 7}},                // LayerNorm, Linear
      {"tiny-gpt2", "type:Block:ignored", 4, {0, 4, 5, 6, 7}},  // up to the next ':'
      {"tiny-gpt2", "type:", 4, {0, 2, 4, 6, 7}},               // the empty regex finds all
      {"gpt2", "uniform", 8, {0, 3, 5, 7, 9, 11, 13, 15, 17}},
      {"gpt2", "parameters", 3, {0, 5, 13, 17}},
      {"gpt2", "parameters", 4, {0, 3, 9, 15, 17}},
      {"gpt2", "parameters", 8, {0, 1, 5, 7, 9, 11, 13, 16, 17}},
      {"gpt2", "type:GPT2Block", 3, {0, 7, 11, 17}},
      {"gpt2", "type:GPT2Block", 4, {0, 6, 9, 12, 17}},
      {"gpt2", "type:GPT2Block", 8, {0, 5, 7, 9, 11, 12, 13, 14, 17}},
      {"gpt2", "type:embedding|linear", 8, {0, 1, 11, 12, 13, 14, 15, 16, 17}},
      {"gpt2", "type:^l", 4, {0, 14, 15, 16, 17}},
  };
  for (const MethodCase& c : cases) {
    const PipelineLayers layers = preset_layers(c.preset);
    const PipelinePartition p =
        partition_layers(layers, c.stages, parse_partition_method(c.method));
    EXPECT_EQ(p.boundaries, c.expected) << c.preset << " " << c.method << " over " << c.stages;
  }
}

TEST(PartitionLayers, TypeBalancesOneWeightPerMatchingLayer) {
  const PipelineLayers layers = preset_layers("tiny-gpt2");
  const PipelinePartition p = partition_layers(layers, 2, parse_partition_method("type:GPT2Block"));
  EXPECT_EQ(p.weights, (std::vector<std::int64_t>{0, 0, 0, 1, 1, 0, 0}));
  // One block per stage.
  EXPECT_EQ(p.boundaries, (Bounds{0, 4, 7}));
  EXPECT_TRUE(p.warnings.empty());
}

TEST(PartitionLayers, TypeIsCaseInsensitive) {
  const PipelineLayers layers = preset_layers("tiny-gpt2");
  const PipelinePartition upper =
      partition_layers(layers, 3, parse_partition_method("TYPE:gpt2block"));
  const PipelinePartition exact =
      partition_layers(layers, 3, parse_partition_method("type:GPT2Block"));
  EXPECT_EQ(upper.weights, exact.weights);
  EXPECT_EQ(upper.boundaries, (Bounds{0, 4, 6, 7}));
}

TEST(PartitionLayers, TypeMatchingNothingIsDeepSpeedsError) {
  const PipelineLayers layers = preset_layers("tiny-gpt2");
  try {
    partition_layers(layers, 2, parse_partition_method("type:LlamaDecoderLayer"));
    FAIL() << "expected a UserError";
  } catch (const UserError& e) {
    EXPECT_EQ(e.message(), "Partitioning 'llamadecoderlayer' found no valid layers to partition.");
  }
}

TEST(PartitionLayers, TypeRegexIsLowerCasedWithTheMethod) {
  // DeepSpeed lower-cases the whole method, so \S (non-space) becomes \s (space): nothing matches.
  const PipelineLayers layers = preset_layers("tiny-gpt2");
  const PartitionMethod m = parse_partition_method("type:\\S+");
  EXPECT_EQ(m.type_regex, "\\s+");
  EXPECT_THROW(partition_layers(layers, 2, m), UserError);
}

TEST(PartitionLayers, ParametersBalanceTrainableParameters) {
  const PipelineLayers layers = preset_layers("tiny-gpt2");
  const PipelinePartition p = partition_layers(layers, 4, parse_partition_method("parameters"));
  EXPECT_EQ(p.weights, (std::vector<std::int64_t>{64000, 16384, 0, 49984, 49984, 128, 64000}));
  EXPECT_EQ(p.boundaries, (Bounds{0, 1, 4, 6, 7}));
  // DeepSpeed's default method is "parameters".
  EXPECT_EQ(PartitionMethod{}.kind, PartitionKind::kParameters);
}

TEST(PartitionLayers, WarnsForEachEmptyStage) {
  const PipelineLayers layers = preset_layers("tiny-gpt2");  // 7 layers
  const PipelinePartition p = partition_layers(layers, 9, parse_partition_method("parameters"));
  EXPECT_EQ(p.boundaries, (Bounds{0, 1, 2, 3, 4, 5, 6, 7, 7, 7}));
  ASSERT_EQ(p.warnings.size(), 2u);
  EXPECT_NE(p.warnings[0].message.find("stage 7 of 9 has no layers"), std::string::npos)
      << p.warnings[0].message;
  EXPECT_NE(p.warnings[1].message.find("stage 8 of 9"), std::string::npos);
  EXPECT_TRUE(partition_layers(layers, 7, parse_partition_method("uniform")).warnings.empty());
}

TEST(PartitionLayers, ProfileAndMemoryBalanceTheGivenCosts) {
  const PipelineLayers layers = preset_layers("tiny-gpt2");
  PartitionCosts costs;
  costs.time_ns = std::vector<std::int64_t>{1, 1, 1000, 1, 1, 1, 1};
  EXPECT_EQ(partition_layers(layers, 3, parse_partition_method("profile"), costs).boundaries,
            partition_balanced(*costs.time_ns, 3));
  EXPECT_EQ(partition_layers(layers, 3, parse_partition_method("profile"), costs).boundaries,
            (Bounds{0, 2, 3, 7}));
  // One heavy layer at the end, one micro-batch per stage: it gets a stage of its own.
  costs.memory = StageMemoryCosts{{1, 1, 1, 1, 1, 1, 100}, {0, 0, 0, 0, 0, 0, 0}, {1, 1, 1}};
  const Bounds memory =
      partition_layers(layers, 3, parse_partition_method("memory"), costs).boundaries;
  EXPECT_EQ(memory[2], 6);
  EXPECT_EQ(stage_memory_peak(*costs.memory, memory, 2), 100);
}

TEST(PartitionLayers, CostMethodsNeedMatchingCosts) {
  const PipelineLayers layers = preset_layers("tiny-gpt2");
  PartitionCosts costs;
  EXPECT_THROW(partition_layers(layers, 2, parse_partition_method("profile"), costs), UserError);
  EXPECT_THROW(partition_layers(layers, 2, parse_partition_method("memory"), costs), UserError);
  costs.memory = StageMemoryCosts{{1, 2, 3}, {1, 2, 3}, {1, 1}};
  EXPECT_THROW(partition_layers(layers, 2, parse_partition_method("memory"), costs), UserError);
  costs.memory = StageMemoryCosts{{1, 2, 3, 4, 5, 6, -7}, {0, 0, 0, 0, 0, 0, 0}, {1, 1}};
  EXPECT_THROW(partition_layers(layers, 2, parse_partition_method("memory"), costs), UserError);
  costs.memory = StageMemoryCosts{
      {1, 2, 3, 4, 5, 6, 7}, {0, 0, 0, 0, 0, 0, 0}, {1, 1, 1}};  // 3 stages' counts for 2
  EXPECT_THROW(partition_layers(layers, 2, parse_partition_method("memory"), costs), UserError);
  EXPECT_THROW(partition_layers(layers, 0, parse_partition_method("uniform")), UserError);
}

TEST(PartitionLayers, ExactAppliesToCostMethodsOnly) {
  const PipelineLayers layers = preset_layers("tiny-gpt2");
  PartitionCosts costs;
  costs.exact = true;
  // DeepSpeed's heuristic gives {1, 9} | {2} | {5, 0, 0, 0}, largest 10; the optimum is 9.
  costs.time_ns = std::vector<std::int64_t>{1, 9, 2, 5, 0, 0, 0};
  const PipelinePartition exact =
      partition_layers(layers, 3, parse_partition_method("profile"), costs);
  EXPECT_EQ(exact.boundaries, partition_min_max(*costs.time_ns, 3));
  EXPECT_EQ(max_part_weight(*costs.time_ns, exact.boundaries), 9);
  costs.exact = false;
  const PipelinePartition heuristic =
      partition_layers(layers, 3, parse_partition_method("profile"), costs);
  EXPECT_EQ(heuristic.boundaries, (Bounds{0, 2, 3, 7}));
  EXPECT_EQ(max_part_weight(*costs.time_ns, heuristic.boundaries), 10);
  // type: and uniform stay DeepSpeed's.
  costs.exact = true;
  EXPECT_EQ(partition_layers(layers, 3, parse_partition_method("type:GPT2Block"), costs).boundaries,
            (Bounds{0, 4, 6, 7}));
  EXPECT_EQ(partition_layers(layers, 4, parse_partition_method("uniform"), costs).boundaries,
            (Bounds{0, 2, 4, 6, 7}));
}

// --- Method strings ----------------------------------------------------------------------------

TEST(PartitionMethodParse, AcceptsDeepSpeedsStringsInAnyCase) {
  EXPECT_EQ(parse_partition_method("Uniform").kind, PartitionKind::kUniform);
  EXPECT_EQ(parse_partition_method("PARAMETERS").kind, PartitionKind::kParameters);
  EXPECT_EQ(parse_partition_method("profile").kind, PartitionKind::kProfile);
  EXPECT_EQ(parse_partition_method("Memory").kind, PartitionKind::kMemory);
  const PartitionMethod t = parse_partition_method("Type:Transformer(Layer|Block)");
  EXPECT_EQ(t.kind, PartitionKind::kType);
  EXPECT_EQ(t.type_regex, "transformer(layer|block)");
  EXPECT_EQ(t.str(), "type:transformer(layer|block)");
  // split(':')[1]: the text between the first and the second colon.
  EXPECT_EQ(parse_partition_method("type:a:b:c").type_regex, "a");
  EXPECT_EQ(parse_partition_method("type:").type_regex, "");
}

TEST(PartitionMethodParse, UnknownMethodOrBadRegexNamesTheMethod) {
  for (const char* bad : {"balanced", "type", "types:x", " uniform", "type:[unclosed"}) {
    try {
      parse_partition_method(bad);
      ADD_FAILURE() << bad << " was accepted";
    } catch (const UserError& e) {
      EXPECT_NE(std::string(e.what()).find(std::string("'") + bad + "'"), std::string::npos)
          << e.what();
    }
  }
}

// --- stage_owner --------------------------------------------------------------------------------

TEST(StageOwner, FirstStageWhoseRangeHoldsTheLayer) {
  EXPECT_EQ(stage_owner({0, 3, 5, 7}, 0), 0);
  EXPECT_EQ(stage_owner({0, 3, 5, 7}, 3), 1);
  EXPECT_EQ(stage_owner({0, 3, 5, 7}, 6), 2);
  // Empty stages own nothing.
  EXPECT_EQ(stage_owner({0, 2, 2, 5}, 2), 2);
  EXPECT_EQ(stage_owner({0, 1, 2, 3, 3, 3}, 2), 2);
  EXPECT_THROW(stage_owner({0, 3, 5, 7}, 7), UserError);
  EXPECT_THROW(stage_owner({0, 3, 5, 7}, -1), UserError);
}

// --- Exact min-max partition ---------------------------------------------------------------------

// The optimum over every placement of num_parts - 1 cuts (parts may be empty).
std::int64_t brute_force_min_max(const std::vector<std::int64_t>& w, std::int64_t parts) {
  const auto n = static_cast<std::int64_t>(w.size());
  std::int64_t best = INT64_MAX;
  Bounds b(static_cast<size_t>(parts) + 1, 0);
  b.back() = n;
  auto place = [&](auto&& self, std::int64_t cut, std::int64_t from) -> void {
    if (cut == parts) {
      best = std::min(best, max_part_weight(w, b));
      return;
    }
    for (std::int64_t x = from; x <= n; ++x) {
      b[static_cast<size_t>(cut)] = x;
      self(self, cut + 1, x);
    }
  };
  place(place, 1, 0);
  return best;
}

void expect_well_formed(const Bounds& b, std::int64_t n, std::int64_t parts) {
  ASSERT_EQ(b.size(), static_cast<size_t>(parts) + 1);
  EXPECT_EQ(b.front(), 0);
  EXPECT_EQ(b.back(), n);
  for (size_t s = 0; s + 1 < b.size(); ++s) {
    EXPECT_LE(b[s], b[s + 1]);
    if (n >= parts) {
      EXPECT_LT(b[s], b[s + 1]) << "stage " << s << " is empty";
    }
  }
}

TEST(PartitionMinMax, MatchesBruteForceAndNeverLosesToTheHeuristic) {
  std::mt19937_64 rng(20240611);
  int strictly_better = 0;
  for (int trial = 0; trial < 3000; ++trial) {
    const auto n = static_cast<std::int64_t>(rng() % 9);  // 0..8 layers
    const auto parts = static_cast<std::int64_t>(1 + rng() % 5);
    const std::int64_t top = trial % 3 == 0 ? 3 : 50;  // small weights make many ties and zeros
    std::vector<std::int64_t> w(static_cast<size_t>(n));
    for (auto& x : w)
      x = static_cast<std::int64_t>(rng() % static_cast<std::uint64_t>(top + 1));
    const Bounds exact = partition_min_max(w, parts);
    expect_well_formed(exact, n, parts);
    const std::int64_t best = brute_force_min_max(w, parts);
    ASSERT_EQ(max_part_weight(w, exact), best) << ::testing::PrintToString(w) << " into " << parts;
    const std::int64_t heuristic = max_part_weight(w, partition_balanced(w, parts));
    EXPECT_LE(best, heuristic);
    if (best < heuristic) ++strictly_better;
  }
  EXPECT_GT(strictly_better, 0);  // otherwise the heuristic would be exact and the test toothless
}

TEST(PartitionMinMax, KnownCases) {
  EXPECT_EQ(partition_min_max({1, 9, 2, 5}, 3), (Bounds{0, 1, 2, 4}));
  EXPECT_EQ(max_part_weight({2, 8, 9, 8, 4, 9, 3}, partition_min_max({2, 8, 9, 8, 4, 9, 3}, 3)),
            17);
  // Fewer layers than stages: partition_uniform, as DeepSpeed.
  EXPECT_EQ(partition_min_max({4, 2, 7}, 5), (Bounds{0, 1, 2, 3, 3, 3}));
  // Earlier stages take as much as fits, but every stage keeps a layer.
  EXPECT_EQ(partition_min_max({0, 0, 0, 0, 0, 0}, 3), (Bounds{0, 4, 5, 6}));
  EXPECT_EQ(partition_min_max({1, 1, 1, 1, 1, 1, 1}, 3), (Bounds{0, 3, 6, 7}));
}

// Memory: stages hold p - s micro-batches in 1F1B, so the early ones get fewer layers.
TEST(PartitionMemory, StagesThatHoldMoreMicroBatchesGetFewerLayers) {
  // Six equal layers of 10 activation bytes over 3 stages holding 3, 2 and 1 micro-batches:
  // {1, 2, 3} peaks at 30, 40, 30; an even split would peak at 60.
  const StageMemoryCosts costs{{0, 0, 0, 0, 0, 0}, {10, 10, 10, 10, 10, 10}, {3, 2, 1}};
  const Bounds b = partition_memory(costs, 3);
  EXPECT_EQ(b[1], 1);  // two layers on stage 0 would already be 60
  std::int64_t worst = 0;
  for (std::int64_t s = 0; s < 3; ++s)
    worst = std::max(worst, stage_memory_peak(costs, b, s));
  EXPECT_EQ(worst, 40);
  EXPECT_EQ(stage_memory_peak(costs, {0, 2, 4, 6}, 0), 60);
}

TEST(PartitionMemory, MatchesBruteForce) {
  std::mt19937 rng(5);
  for (int iter = 0; iter < 500; ++iter) {
    const size_t n = 2 + rng() % 7;
    const std::int64_t m = 1 + static_cast<std::int64_t>(rng() % 4);
    StageMemoryCosts c;
    for (size_t i = 0; i < n; ++i) {
      c.static_bytes.push_back(rng() % 50);
      c.activation_bytes.push_back(rng() % 30);
    }
    for (std::int64_t s = 0; s < m; ++s)
      c.in_flight.push_back(1 + rng() % 4);
    const Bounds b = partition_memory(c, m);
    std::int64_t got = 0;
    for (std::int64_t s = 0; s < m; ++s)
      got = std::max(got, stage_memory_peak(c, b, s));
    // Brute force over every contiguous partition whose stages all have layers.
    std::int64_t best = INT64_MAX;
    std::vector<std::int64_t> cuts(static_cast<size_t>(m) + 1, 0);
    cuts.back() = static_cast<std::int64_t>(n);
    auto search = [&](auto&& self, std::int64_t s) -> void {
      if (s == m) {
        std::int64_t worst = 0;
        for (std::int64_t k = 0; k < m; ++k)
          worst = std::max(worst, stage_memory_peak(c, cuts, k));
        best = std::min(best, worst);
        return;
      }
      for (std::int64_t x = cuts[static_cast<size_t>(s) - 1] + 1;
           x <= static_cast<std::int64_t>(n) - (m - s); ++x) {
        cuts[static_cast<size_t>(s)] = x;
        self(self, s + 1);
      }
    };
    if (static_cast<std::int64_t>(n) > m) {
      search(search, 1);
      EXPECT_EQ(got, best) << "case " << iter;
    }
  }
}

}  // namespace
}  // namespace zp::pipe
