#include "core/model/model_json.h"

#include <algorithm>

#include "core/config/reader.h"
#include "core/util/atomic_file.h"

namespace zp {

Json model_to_json(const ModuleTree& tree) {
  Json params = Json::array();
  for (const Parameter& p : tree.parameters()) {
    params.push_back({{"name", p.name},
                      {"shape", p.shape},
                      {"dtype", to_string(p.dtype)},
                      {"requires_grad", p.requires_grad}});
  }
  Json modules = Json::array();
  for (const Module& m : tree.modules()) {
    Json slots = Json::array();
    for (const ParamSlot& s : m.params)
      slots.push_back({{"attr", s.attr}, {"param", s.param}});
    Json module = {{"name", m.name},
                   {"type", m.type},
                   {"children", m.children},
                   {"params", slots},
                   {"forward_flops", m.cost.forward_flops},
                   {"activation_bytes", m.cost.activation_bytes},
                   {"output_bytes", m.cost.output_bytes}};
    if (!m.external_params.empty()) module["external_params"] = m.external_params;
    if (m.cost.backward_flops > 0) module["backward_flops"] = m.cost.backward_flops;
    if (m.cost.workspace_bytes > 0) module["workspace_bytes"] = m.cost.workspace_bytes;
    if (m.cost.backward_workspace_bytes > 0)
      module["backward_workspace_bytes"] = m.cost.backward_workspace_bytes;
    if (m.cost.backward_held_bytes > 0) module["backward_held_bytes"] = m.cost.backward_held_bytes;
    modules.push_back(std::move(module));
  }
  Json calls = Json::array();
  for (const ForwardCall& c : tree.calls()) {
    calls.push_back({{"module", c.module},
                     {"parent", c.parent_call},
                     {"inputs_require_grad", c.inputs_require_grad}});
  }
  const BatchShape& shape = tree.shape();
  return Json{{"format", kModelFormat},
              {"version", kModelFormatVersion},
              {"name", tree.name()},
              {"batch",
               {{"micro_batch", shape.micro_batch},
                {"sequence_length", shape.sequence_length},
                {"dtype", to_string(shape.dtype)}}},
              {"parameters", params},
              {"modules", modules},
              {"calls", calls}};
}

namespace {

DType read_dtype(const Node& node) {
  const std::string name = read_string(node);
  auto dtype = parse_dtype(name);
  if (!dtype) {
    node.fail(ErrorKind::kValue,
              "unknown dtype \"" + name +
                  "\" (use fp32, fp16, bf16, fp64, int64, int32, int8, uint8, bool)");
  }
  return *dtype;
}

std::int64_t read_index(const Node& node, std::int64_t lo, std::int64_t count, const char* what) {
  const std::int64_t i = read_int(node, Coercion::kStrict);
  if (i < lo || i >= count) {
    node.fail(ErrorKind::kValue, std::to_string(i) + " is not a valid " + what +
                                     " index (there are " + std::to_string(count) + ")");
  }
  return i;
}

Node require_array(ObjectReader& r, std::string_view key) {
  Node n = r.require(key);
  if (!n.value().is_array()) {
    n.fail(ErrorKind::kType, "expected a list, got " + n.type_name() + " " + n.repr());
  }
  return n;
}

}  // namespace

ModuleTree model_from_json(const Node& node) {
  ObjectReader top(node, "the model file");
  const std::string format = read_string(top.require("format"));
  if (format != kModelFormat) {
    top.node().child("format").fail(
        ErrorKind::kValue,
        "\"" + format + "\" is not a zeroplan model file (expected \"" + kModelFormat + "\")");
  }
  const Node version = top.require("version");
  if (read_int(version, Coercion::kStrict) != kModelFormatVersion) {
    version.fail(ErrorKind::kUnsupported, "version " + version.repr() +
                                              " is not supported (this build reads version " +
                                              std::to_string(kModelFormatVersion) + ")");
  }
  ModuleTree tree(top.get("name") ? read_string(*top.get("name")) : std::string());

  BatchShape shape;
  {
    ObjectReader b(top.require("batch"), "batch");
    const Node mb = b.require("micro_batch");
    shape.micro_batch = read_int(mb, Coercion::kStrict);
    require_at_least(mb, shape.micro_batch, 1);
    const Node seq = b.require("sequence_length");
    shape.sequence_length = read_int(seq, Coercion::kStrict);
    require_at_least(seq, shape.sequence_length, 1);
    shape.dtype = read_dtype(b.require("dtype"));
    b.reject_unknown();
  }
  tree.set_shape(shape);

  const Node params = require_array(top, "parameters");
  const Node modules = require_array(top, "modules");
  const Node calls = require_array(top, "calls");
  top.reject_unknown();

  const auto module_count = static_cast<std::int64_t>(modules.value().size());
  const auto param_count = static_cast<std::int64_t>(params.value().size());
  if (module_count == 0) modules.fail(ErrorKind::kValue, "a model needs at least its root module");

  // Parents from the children lists; every module but the root has exactly one.
  std::vector<ModuleId> parent(static_cast<size_t>(module_count), kNoModule);
  std::vector<std::vector<ModuleId>> children(static_cast<size_t>(module_count));
  for (std::int64_t i = 0; i < module_count; ++i) {
    ObjectReader m(modules.element(static_cast<size_t>(i)), "a module");
    const Node list = require_array(m, "children");
    for (size_t k = 0; k < list.value().size(); ++k) {
      const Node c = list.element(k);
      const auto child = static_cast<ModuleId>(read_index(c, 0, module_count, "module"));
      if (child == 0) c.fail(ErrorKind::kValue, "module 0 is the root and cannot be a child");
      if (parent[static_cast<size_t>(child)] != kNoModule) {
        c.fail(ErrorKind::kValue, "module " + std::to_string(child) +
                                      " is already a child of module " +
                                      std::to_string(parent[static_cast<size_t>(child)]));
      }
      parent[static_cast<size_t>(child)] = static_cast<ModuleId>(i);
      children[static_cast<size_t>(i)].push_back(child);
    }
  }
  // Every module reachable from the root (no detached cycles).
  {
    std::vector<bool> reached(static_cast<size_t>(module_count), false);
    std::vector<ModuleId> stack = {0};
    while (!stack.empty()) {
      ModuleId id = stack.back();
      stack.pop_back();
      reached[static_cast<size_t>(id)] = true;
      for (ModuleId c : children[static_cast<size_t>(id)])
        stack.push_back(c);
    }
    for (std::int64_t i = 0; i < module_count; ++i) {
      if (!reached[static_cast<size_t>(i)]) {
        modules.element(static_cast<size_t>(i))
            .fail(ErrorKind::kValue,
                  "module " + std::to_string(i) + " is not reachable from the root (module 0)");
      }
    }
  }

  std::vector<Parameter> parameter_list;
  for (std::int64_t i = 0; i < param_count; ++i) {
    const Node pn = params.element(static_cast<size_t>(i));
    ObjectReader p(pn, "a parameter");
    Parameter param;
    param.name = read_string(p.require("name"));
    const Node shape_node = require_array(p, "shape");
    for (size_t k = 0; k < shape_node.value().size(); ++k) {
      const Node d = shape_node.element(k);
      const std::int64_t dim = read_int(d, Coercion::kStrict);
      require_at_least(d, dim, 0);
      param.shape.push_back(dim);
    }
    param.dtype = read_dtype(p.require("dtype"));
    param.requires_grad =
        p.get("requires_grad") ? read_bool(*p.get("requires_grad"), Coercion::kStrict) : true;
    p.reject_unknown();
    parameter_list.push_back(std::move(param));
  }

  std::vector<Module> module_list(static_cast<size_t>(module_count));
  std::vector<bool> param_used(static_cast<size_t>(param_count), false);
  for (std::int64_t i = 0; i < module_count; ++i) {
    const Node mn = modules.element(static_cast<size_t>(i));
    ObjectReader m(mn, "a module");
    Module& mod = module_list[static_cast<size_t>(i)];
    mod.name = read_string(m.require("name"));
    mod.type = read_string(m.require("type"));
    mod.parent = parent[static_cast<size_t>(i)];
    mod.children = children[static_cast<size_t>(i)];
    m.get("children");
    const Node slots = require_array(m, "params");
    for (size_t k = 0; k < slots.value().size(); ++k) {
      ObjectReader s(slots.element(k), "a parameter slot");
      ParamSlot slot;
      slot.attr = read_string(s.require("attr"));
      slot.param =
          static_cast<ParamId>(read_index(s.require("param"), 0, param_count, "parameter"));
      s.reject_unknown();
      param_used[static_cast<size_t>(slot.param)] = true;
      mod.params.push_back(std::move(slot));
    }
    if (auto ext = m.get("external_params")) {
      if (!ext->value().is_array())
        ext->fail(ErrorKind::kType, "expected a list, got " + ext->type_name() + " " + ext->repr());
      for (size_t k = 0; k < ext->value().size(); ++k) {
        const auto p =
            static_cast<ParamId>(read_index(ext->element(k), 0, param_count, "parameter"));
        if (std::find(mod.external_params.begin(), mod.external_params.end(), p) ==
            mod.external_params.end()) {
          mod.external_params.push_back(p);
        }
      }
    }
    for (const char* key : {"forward_flops", "activation_bytes", "output_bytes"}) {
      const Node v = m.require(key);
      const std::int64_t x = read_int(v, Coercion::kStrict);
      require_at_least(v, x, 0);
      if (std::string_view(key) == "forward_flops")
        mod.cost.forward_flops = x;
      else if (std::string_view(key) == "activation_bytes")
        mod.cost.activation_bytes = x;
      else
        mod.cost.output_bytes = x;
    }
    if (auto b = m.get("backward_flops")) {
      mod.cost.backward_flops = read_int(*b, Coercion::kStrict);
      require_at_least(*b, mod.cost.backward_flops, 0);
    }
    const auto read_optional = [&m](const char* key, std::int64_t& out) {
      if (auto v = m.get(key)) {
        out = read_int(*v, Coercion::kStrict);
        require_at_least(*v, out, 0);
      }
    };
    read_optional("workspace_bytes", mod.cost.workspace_bytes);
    read_optional("backward_workspace_bytes", mod.cost.backward_workspace_bytes);
    read_optional("backward_held_bytes", mod.cost.backward_held_bytes);
    m.reject_unknown();
  }
  for (std::int64_t i = 0; i < param_count; ++i) {
    if (!param_used[static_cast<size_t>(i)]) {
      params.element(static_cast<size_t>(i))
          .fail(ErrorKind::kValue,
                "parameter " + std::to_string(i) + " is not registered on any module");
    }
  }

  std::vector<ForwardCall> call_list;
  for (size_t i = 0; i < calls.value().size(); ++i) {
    ObjectReader c(calls.element(i), "a call");
    ForwardCall call;
    call.module = static_cast<ModuleId>(read_index(c.require("module"), 0, module_count, "module"));
    call.parent_call = static_cast<std::int32_t>(
        read_index(c.require("parent"), kNoCall, static_cast<std::int64_t>(i), "earlier call"));
    call.inputs_require_grad = read_bool(c.require("inputs_require_grad"), Coercion::kStrict);
    c.reject_unknown();
    call_list.push_back(call);
  }

  return ModuleTree::from_parts(tree.name(), shape, std::move(module_list),
                                std::move(parameter_list), std::move(call_list));
}

ModuleTree load_model_file(const std::filesystem::path& path) {
  Document doc = Document::load(path);
  return model_from_json(Node(doc));
}

void save_model_file(const ModuleTree& tree, const std::filesystem::path& path) {
  write_file_atomically(path, model_to_json(tree).dump(1) + "\n");
}

}  // namespace zp
