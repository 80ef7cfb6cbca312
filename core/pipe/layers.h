// A model as a pipeline sees it: a flat list of layers, each a module of the model tree (or a
// parameterless function between them), applied one after the other, as the layer specs of
// DeepSpeed's PipelineModule. Tied layers (TiedLayerSpec) share a key: the module holding the tied
// weight is built on every stage that uses it, and the stages all-reduce its gradient.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/model/module_tree.h"

namespace zp::pipe {

struct Layer {
  std::string name;  // the module's qualified name ("transformer.h.3"), or a function's label
  std::string type;  // the module's class name, which `type:REGEX` partitioning matches
  ModuleId module = kNoModule;            // kNoModule for a parameterless function
  std::int32_t call = kNoCall;            // the forward call that this layer is
  std::int64_t trainable_parameters = 0;  // what the `parameters` method balances
  std::int64_t parameter_numel = 0;       // all parameters, trainable or not
  std::string tied_key;                   // TiedLayerSpec key; empty for an untied layer
  std::string tied_weight_attr;           // the attribute holding the tied weight ("weight")
};

struct PipelineLayers {
  std::vector<Layer> layers;
  // Tied keys in order of first appearance.
  std::vector<std::string> tied_keys() const;
};

// The layers of a model tree, from its forward call order: the root's call is expanded into the
// calls it makes, and so is every call of a container (Sequential, ModuleList, ModuleDict) or of a
// module that registers a container (a wrapper such as GPT2Model or LlamaModel); every other call
// is a layer. A layer whose parameters include one registered on another layer is tied to it: the
// key is the parameter's qualified name. Pure function; throws UserError when the tree has no
// calls.
PipelineLayers layers_from_tree(const ModuleTree& tree);

}  // namespace zp::pipe
