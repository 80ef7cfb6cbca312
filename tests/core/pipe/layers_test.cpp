#include "core/pipe/layers.h"

#include <gtest/gtest.h>

#include "core/model/presets.h"

namespace zp::pipe {
namespace {

std::vector<std::string> Names(const PipelineLayers& l) {
  std::vector<std::string> out;
  for (const Layer& x : l.layers)
    out.push_back(x.name);
  return out;
}

ModuleTree Preset(const char* name) {
  return build_model(*find_preset(name), BatchShape{1, 8, DType::kBFloat16});
}

TEST(PipelineLayers, WrappersAndContainersAreExpandedIntoTheirCalls) {
  const ModuleTree gpt2 = Preset("tiny-gpt2");
  const PipelineLayers l = layers_from_tree(gpt2);
  EXPECT_EQ(Names(l), (std::vector<std::string>{"transformer.wte", "transformer.wpe",
                                                "transformer.drop", "transformer.h.0",
                                                "transformer.h.1", "transformer.ln_f", "lm_head"}));
  EXPECT_EQ(l.layers[3].type, "GPT2Block");
  EXPECT_EQ(l.layers[2].parameter_numel, 0);
  EXPECT_EQ(
      Names(layers_from_tree(Preset("tiny-bert"))),
      (std::vector<std::string>{"embeddings", "encoder.layer.0", "encoder.layer.1", "pooler"}));
}

TEST(PipelineLayers, ParameterCountsCoverTheLayersSubtree) {
  const ModuleTree llama = Preset("tiny-llama");
  const PipelineLayers l = layers_from_tree(llama);
  std::int64_t total = 0;
  for (const Layer& x : l.layers)
    total += x.parameter_numel;
  EXPECT_EQ(total, llama.total_parameters());  // untied: every parameter in exactly one layer
  EXPECT_TRUE(l.tied_keys().empty());
}

TEST(PipelineLayers, TiedWeightsMakeTiedLayers) {
  const PipelineLayers l = layers_from_tree(Preset("tiny-gpt2"));
  EXPECT_EQ(l.tied_keys(), (std::vector<std::string>{"transformer.wte.weight"}));
  EXPECT_EQ(l.layers.front().tied_key, "transformer.wte.weight");
  EXPECT_EQ(l.layers.back().tied_key, "transformer.wte.weight");
  EXPECT_EQ(l.layers.back().tied_weight_attr, "weight");
  EXPECT_TRUE(l.layers[1].tied_key.empty());
  // As DeepSpeed counts a TiedLayerSpec, each tied layer counts the weight.
  EXPECT_EQ(l.layers.front().trainable_parameters, l.layers.back().trainable_parameters);
}

TEST(PipelineLayers, ATreeWithoutCallsIsAnError) {
  ModuleTree t("empty");
  t.add_module(kNoModule, "", "Net");
  EXPECT_THROW(layers_from_tree(t), UserError);
}

}  // namespace
}  // namespace zp::pipe
