// A model as DeepSpeed sees a torch.nn.Module: a tree of modules with their parameters, the cost of
// each module's forward for one batch shape, and the order in which forward calls the modules.
//
// Conventions (they match PyTorch's and DeepSpeed's):
//  - Module 0 is the root. Children are in registration order, so a depth-first walk visits modules
//    in the order of nn.Module.named_modules() and of DeepSpeed's module ids.
//  - A parameter registered on several modules (tied weights, e.g. GPT-2's wte and lm_head) exists
//    once; each module lists it in its own slots. Counts and totals count it once.
//  - Costs are per forward call and exclusive of the module's children: forward_flops and
//    activation_bytes are what the module's own operations do and save for backward. output_bytes
//    is the size of what the call returns; workspace_bytes what its forward holds only while it
//    runs; backward_workspace_bytes and backward_held_bytes what its backward holds besides (the
//    gradients flowing through it).
//  - calls is the forward call sequence in pre-order: a module called twice appears twice; each
//  call
//    names the call it runs inside, and whether any of its floating-point inputs requires grad
//    (which decides whether DeepSpeed's backward hooks fire for it).
//
// Not thread-safe for writing; const access is safe from many threads.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/model/dtype.h"
#include "core/util/error.h"

namespace zp {

using ModuleId = std::int32_t;
using ParamId = std::int32_t;
inline constexpr ModuleId kNoModule = -1;
inline constexpr std::int32_t kNoCall = -1;

struct Parameter {
  std::string name;  // qualified name where first registered: "transformer.wte.weight"
  std::vector<std::int64_t> shape;
  DType dtype = DType::kFloat32;
  bool requires_grad = true;

  std::int64_t numel() const;
  std::int64_t bytes() const { return numel() * dtype_size(dtype); }
  bool operator==(const Parameter&) const = default;
};

struct ModuleCost {
  std::int64_t forward_flops = 0;
  std::int64_t activation_bytes = 0;
  std::int64_t output_bytes = 0;
  // Backward of one call, when the model knows it; 0 means twice the forward (the usual 2:1 of a
  // matrix product's input and weight gradients). Last, so that brace-initialised costs keep their
  // meaning.
  std::int64_t backward_flops = 0;
  // What the call's own forward holds beyond activation_bytes while it runs and frees before it
  // returns (temporaries, and inputs nothing keeps): the most of it live at once.
  std::int64_t workspace_bytes = 0;
  // What the call's own backward holds beyond the kept activations while it runs: the gradient of
  // its output it was handed, the gradients it makes for its inputs, and temporaries (the most of
  // them live at once; parameters' gradients are counted as gradients, not here).
  std::int64_t backward_workspace_bytes = 0;
  // What the call holds from its own backward until the backward of every call inside it is done:
  // the gradient of the hidden states that a model body passes from layer to layer.
  std::int64_t backward_held_bytes = 0;
  std::int64_t backward_or_default() const {
    return backward_flops > 0 ? backward_flops : 2 * forward_flops;
  }
  bool operator==(const ModuleCost&) const = default;
};

// A parameter as registered on one module, under that module's attribute name ("weight").
struct ParamSlot {
  std::string attr;
  ParamId param = -1;
  bool operator==(const ParamSlot&) const = default;
};

struct Module {
  std::string name;  // attribute name in the parent ("h", "0", "attn"); "" for the root
  std::string type;  // class name: "GPT2Block"
  ModuleId parent = kNoModule;
  std::vector<ModuleId> children;
  std::vector<ParamSlot> params;  // registered directly on this module (recurse=False)
  // Parameters of other modules that this module receives as a child's output (a module whose
  // forward returns one of its parameters): DeepSpeed registers them on the caller as external.
  std::vector<ParamId> external_params;
  ModuleCost cost;
  bool operator==(const Module&) const = default;
};

struct ForwardCall {
  ModuleId module = kNoModule;
  std::int32_t parent_call = kNoCall;
  bool inputs_require_grad = false;
  bool operator==(const ForwardCall&) const = default;
};

// The batch shape that a tree's costs are for.
struct BatchShape {
  std::int64_t micro_batch = 1;
  std::int64_t sequence_length = 1;
  DType dtype = DType::kFloat32;  // activation dtype
  std::int64_t tokens() const { return micro_batch * sequence_length; }
  bool operator==(const BatchShape&) const = default;
};

class ModuleTree {
 public:
  ModuleTree() = default;
  explicit ModuleTree(std::string name) : name_(std::move(name)) {}

  // Assembles a tree from parts already checked for consistency (the model file reader does).
  static ModuleTree from_parts(std::string name, BatchShape shape, std::vector<Module> modules,
                               std::vector<Parameter> params, std::vector<ForwardCall> calls);

  // Structure. add_module with parent kNoModule creates the root, which must come first.
  ModuleId add_module(ModuleId parent, std::string name, std::string type);
  ParamId add_parameter(ModuleId owner, std::string attr, std::vector<std::int64_t> shape,
                        DType dtype, bool requires_grad = true);
  // Registers an existing parameter on another module as well (a tied weight).
  void tie_parameter(ModuleId module, std::string attr, ParamId param);
  void set_cost(ModuleId module, ModuleCost cost);
  void add_external_parameter(ModuleId module, ParamId param);
  // Appends a forward call; returns its index, to be passed as parent_call of nested calls.
  std::int32_t add_call(ModuleId module, std::int32_t parent_call, bool inputs_require_grad);

  // Access.
  const std::string& name() const { return name_; }
  void set_name(std::string name) { name_ = std::move(name); }
  const BatchShape& shape() const { return shape_; }
  void set_shape(BatchShape shape) { shape_ = shape; }
  const std::vector<Module>& modules() const { return modules_; }
  const std::vector<Parameter>& parameters() const { return params_; }
  const std::vector<ForwardCall>& calls() const { return calls_; }
  // The checks fail out of line: these run in every simulator's inner loops, and a message built
  // in place keeps them from being inlined.
  const Module& module(ModuleId id) const {
    if (id < 0 || static_cast<size_t>(id) >= modules_.size()) [[unlikely]]
      no_module(id);
    return modules_[static_cast<size_t>(id)];
  }
  Module& mutable_module(ModuleId id);
  const Parameter& parameter(ParamId id) const {
    if (id < 0 || static_cast<size_t>(id) >= params_.size()) [[unlikely]]
      no_parameter(id);
    return params_[static_cast<size_t>(id)];
  }
  Parameter& mutable_parameter(ParamId id);
  bool empty() const { return modules_.empty(); }

  // "transformer.h.0.attn"; "" for the root.
  std::string qualified_name(ModuleId id) const;
  // Module ids in depth-first registration order (the order of named_modules()).
  std::vector<ModuleId> preorder() const;
  // By ParamId: the module each parameter was registered on first, the one that qualifies its
  // name; a parameter no module names so gets the first module that lists it (kNoModule: none).
  std::vector<ModuleId> parameter_owners() const;
  // Unique parameters in the subtree of `id` (each counted once), in numel.
  std::int64_t subtree_parameters(ModuleId id) const;

  std::int64_t total_parameters() const;      // every parameter once
  std::int64_t trainable_parameters() const;  // requires_grad only
  std::int64_t total_parameter_bytes() const;

  bool operator==(const ModuleTree&) const = default;

 private:
  [[noreturn]] void no_module(ModuleId id) const;
  [[noreturn]] void no_parameter(ParamId id) const;

  std::string name_;
  BatchShape shape_;
  std::vector<Module> modules_;
  std::vector<Parameter> params_;
  std::vector<ForwardCall> calls_;
};

}  // namespace zp
