#include "core/config/run_spec.h"

#include "core/config/reader.h"
#include "core/model/model_json.h"
#include "core/model/presets.h"
#include "core/util/suggest.h"
#include "core/zero/zero_model.h"

namespace zp {
namespace {

std::filesystem::path resolve(const std::filesystem::path& base, const std::string& written) {
  std::filesystem::path p(written);
  return p.is_absolute() ? p : base / p;
}

ModelSpec read_model(const Node& node, const std::filesystem::path& base_dir) {
  ModelSpec spec;
  if (node.value().is_string()) {
    spec.kind = ModelSpec::Kind::kPreset;
    spec.label = read_string(node);
    const ModelConfig* preset = find_preset(spec.label);
    if (!preset) {
      std::string list;
      for (const std::string& n : preset_names())
        list += (list.empty() ? "" : ", ") + n;
      node.fail(ErrorKind::kValue, "unknown model preset \"" + spec.label + "\"" +
                                       did_you_mean(spec.label, preset_names()) +
                                       "; presets: " + list + " (or write {file: model.json})");
    }
    spec.config = *preset;
    return spec;
  }
  if (node.value().is_object() && node.value().contains("file")) {
    ObjectReader r(node, "model");
    const Node file = r.require("file");
    spec.kind = ModelSpec::Kind::kFile;
    spec.label = read_string(file);
    spec.file = resolve(base_dir, spec.label);
    r.reject_unknown();
    return spec;
  }
  spec.config = model_config_from_node(node);
  spec.kind = node.value().contains("preset") ? ModelSpec::Kind::kPreset : ModelSpec::Kind::kFamily;
  spec.label = node.value().contains("preset") ? node.value()["preset"].get<std::string>()
                                               : node.value().value("family", std::string());
  return spec;
}

struct TrainingInput {
  std::optional<std::int64_t> sequence_length;
  std::optional<std::int64_t> micro_batch;
  std::optional<DType> dtype;
  std::optional<Node> sequence_node;
  std::optional<std::int64_t> checkpoint_interval;
  std::optional<Node> checkpoint_node;
};

TrainingInput read_training(const std::optional<Node>& node) {
  TrainingInput t;
  if (!node) return t;
  ObjectReader r(*node, "training");
  if (auto n = r.get("sequence_length")) {
    t.sequence_length = read_int(*n, Coercion::kStrict);
    require_at_least(*n, *t.sequence_length, 1);
    t.sequence_node = n;
  }
  if (auto n = r.get("micro_batch")) {
    t.micro_batch = read_int(*n, Coercion::kStrict);
    require_at_least(*n, *t.micro_batch, 1);
  }
  if (auto n = r.get("dtype")) {
    const std::string name = read_string(*n);
    auto d = parse_dtype(name);
    if (!d || (*d != DType::kFloat32 && *d != DType::kFloat16 && *d != DType::kBFloat16)) {
      n->fail(ErrorKind::kValue, "\"" + name +
                                     "\" is not a training dtype: use fp32, fp16 or bf16" +
                                     did_you_mean(name, {"fp32", "fp16", "bf16"}));
    }
    t.dtype = d;
  }
  if (auto n = r.get("checkpoint_interval")) {
    t.checkpoint_interval = read_int(*n, Coercion::kStrict);
    require_at_least(*n, *t.checkpoint_interval, 0);
    t.checkpoint_node = n;
  }
  r.reject_unknown();
  return t;
}

ParallelDegrees read_parallel(const std::optional<Node>& node, const ClusterSpec& cluster,
                              const Node& root, Provenance& provenance) {
  ParallelDegrees p;
  const std::int64_t world = cluster.total_gpus();
  std::optional<Node> data_node;
  if (node) {
    ObjectReader r(*node, "parallel");
    for (auto [key, field] : {std::pair{"pipeline", &p.pipeline}, std::pair{"tensor", &p.tensor}}) {
      if (auto n = r.get(key)) {
        *field = read_int(*n, Coercion::kStrict);
        require_at_least(*n, *field, 1);
      }
    }
    if (auto n = r.get("data")) {
      p.data = read_int(*n, Coercion::kStrict);
      require_at_least(*n, p.data, 1);
      data_node = n;
    }
    r.reject_unknown();
  }
  const Node& where = node ? *node : root;
  if (data_node) {
    if (p.world() != world) {
      where.fail(ErrorKind::kConflict,
                 "data " + std::to_string(p.data) + " x pipeline " + std::to_string(p.pipeline) +
                     " x tensor " + std::to_string(p.tensor) + " = " + std::to_string(p.world()) +
                     " GPUs, but the cluster has " + std::to_string(world) + " (" +
                     std::to_string(cluster.nodes) + " x " + std::to_string(cluster.gpus_per_node) +
                     ")");
    }
  } else {
    if (world % (p.pipeline * p.tensor) != 0) {
      where.fail(ErrorKind::kConflict, "pipeline " + std::to_string(p.pipeline) + " x tensor " +
                                           std::to_string(p.tensor) +
                                           " does not divide the cluster's " +
                                           std::to_string(world) + " GPUs");
    }
    p.data = world / (p.pipeline * p.tensor);
  }
  const bool has = node.has_value();
  auto origin = [&](const char* key) {
    return has && node->value().contains(key) ? Origin::kUser : Origin::kDefault;
  };
  provenance.push_back({"parallel.data", p.data, data_node ? Origin::kUser : Origin::kInferred,
                        data_node ? "" : "GPUs / (pipeline x tensor)"});
  provenance.push_back({"parallel.pipeline", p.pipeline, origin("pipeline"), ""});
  provenance.push_back({"parallel.tensor", p.tensor, origin("tensor"), ""});
  return p;
}

}  // namespace

ModuleTree rescale_tree(const ModuleTree& tree, const BatchShape& shape) {
  ModuleTree out = tree;
  const BatchShape& from = tree.shape();
  const double token_ratio =
      static_cast<double>(shape.tokens()) / static_cast<double>(from.tokens());
  const double element_ratio =
      static_cast<double>(dtype_size(shape.dtype)) / static_cast<double>(dtype_size(from.dtype));
  auto scale = [](std::int64_t v, double r) {
    return static_cast<std::int64_t>(std::llround(static_cast<double>(v) * r));
  };
  if (!(from == shape)) {
    for (size_t i = 0; i < out.modules().size(); ++i) {
      Module& m = out.mutable_module(static_cast<ModuleId>(i));
      m.cost.forward_flops = scale(m.cost.forward_flops, token_ratio);
      m.cost.backward_flops = scale(m.cost.backward_flops, token_ratio);
      m.cost.activation_bytes = scale(m.cost.activation_bytes, token_ratio * element_ratio);
      m.cost.output_bytes = scale(m.cost.output_bytes, token_ratio * element_ratio);
      m.cost.workspace_bytes = scale(m.cost.workspace_bytes, token_ratio * element_ratio);
      m.cost.backward_workspace_bytes =
          scale(m.cost.backward_workspace_bytes, token_ratio * element_ratio);
      m.cost.backward_held_bytes = scale(m.cost.backward_held_bytes, token_ratio * element_ratio);
    }
  }
  for (size_t i = 0; i < out.parameters().size(); ++i) {
    Parameter& p = out.mutable_parameter(static_cast<ParamId>(i));
    if (is_floating(p.dtype)) p.dtype = shape.dtype;
  }
  out.set_shape(shape);
  return out;
}

RunSpec parse_run_spec(const Document& doc, const std::filesystem::path& base_dir) {
  RunSpec run;
  run.file = doc.path();
  const Node root(doc);
  ObjectReader top(root, "the run spec");
  // Unknown keys first: a misspelt required key is better reported as the typo it is. `plan` is
  // what `zeroplan tune` records in the plans it writes; a run does not depend on it.
  for (const char* key : {"name", "description", "model", "cluster", "training", "parallel",
                          "deepspeed", "z3_leaf_modules", "deepspeed_version", "plan"}) {
    top.accept(key);
  }
  top.reject_unknown();
  if (auto n = top.get("name")) run.name = read_string(*n);
  if (auto n = top.get("description")) read_string(*n);

  run.model = read_model(top.require("model"), base_dir);
  run.cluster = parse_cluster(top.require("cluster"), run.provenance);
  const TrainingInput training = read_training(top.get("training"));
  run.parallel = read_parallel(top.get("parallel"), run.cluster, root, run.provenance);
  const Node ds = top.require("deepspeed");
  std::optional<Node> leaf_node = top.get("z3_leaf_modules");
  if (auto n = top.get("deepspeed_version")) {
    // YAML reads 0.14 as a number; its text is what the user meant.
    const std::string text =
        n->value().is_string() ? n->value().get<std::string>() : n->value().dump();
    auto version = zero::parse_deepspeed_version(text);
    if (!version) {
      n->fail(ErrorKind::kValue,
              "\"" + text +
                  "\" is not a DeepSpeed version zeroplan reproduces: use 0.16 (current) or 0.14");
    }
    run.deepspeed_version = *version;
  }
  run.provenance.push_back(
      {"deepspeed_version", std::string(zero::to_string(run.deepspeed_version)),
       top.has("deepspeed_version") ? Origin::kUser : Origin::kDefault,
       run.deepspeed_version == zero::DeepSpeedVersion::kCurrent ? "current behaviour" : ""});

  if (run.parallel.tensor > run.cluster.gpus_per_node) {
    run.warnings.push_back(
        root.child("parallel")
            .child("tensor")
            .warning("tensor parallelism across nodes (" + std::to_string(run.parallel.tensor) +
                     " > " + std::to_string(run.cluster.gpus_per_node) +
                     " GPUs per node) sends every layer's activations over the network"));
  }

  // The DeepSpeed config: a path or an inline mapping.
  DeepSpeedContext context;
  context.data_parallel_size = run.parallel.data;
  context.pipeline_parallel_size = run.parallel.pipeline;
  context.micro_batch = training.micro_batch;
  context.dtype = training.dtype;
  context.run_spec_file = doc.file();
  if (ds.value().is_string()) {
    run.deepspeed_file = resolve(base_dir, read_string(ds));
    Document ds_doc = Document::load(run.deepspeed_file);
    run.deepspeed = parse_deepspeed_config(Node(ds_doc), context);
  } else {
    run.deepspeed = parse_deepspeed_config(ds, context);
  }
  run.warnings.insert(run.warnings.end(), run.deepspeed.warnings.begin(),
                      run.deepspeed.warnings.end());

  // The training shape: the micro batch and dtype as DeepSpeed resolved them.
  run.training.micro_batch = run.deepspeed.batch.micro_batch_per_gpu;
  run.training.dtype = run.deepspeed.compute_dtype();

  if (run.model.kind == ModelSpec::Kind::kFile) {
    ModuleTree tree = load_model_file(run.model.file);
    run.training.sequence_length = training.sequence_length.value_or(tree.shape().sequence_length);
    const BatchShape shape{run.training.micro_batch, run.training.sequence_length,
                           run.training.dtype};
    if (!(shape.micro_batch == tree.shape().micro_batch &&
          shape.sequence_length == tree.shape().sequence_length &&
          shape.dtype == tree.shape().dtype)) {
      run.warnings.push_back(root.child("model").warning(
          "the model file's costs were measured for micro batch " +
          std::to_string(tree.shape().micro_batch) + ", sequence " +
          std::to_string(tree.shape().sequence_length) + ", " +
          std::string(to_string(tree.shape().dtype)) +
          "; they are scaled linearly to micro batch " + std::to_string(shape.micro_batch) +
          ", sequence " + std::to_string(shape.sequence_length) + ", " +
          std::string(to_string(shape.dtype)) + " (terms quadratic in sequence length are not)"));
    }
    run.tree = rescale_tree(tree, shape);
  } else {
    if (!training.sequence_length) {
      const Node where = top.has("training") ? root.child("training") : root;
      throw UserError(ErrorKind::kMissing, where.location(),
                      "training.sequence_length is required for a built-in model");
    }
    run.training.sequence_length = *training.sequence_length;
    run.tree = build_model(
        *run.model.config,
        BatchShape{run.training.micro_batch, run.training.sequence_length, run.training.dtype});
  }
  if (leaf_node) {
    if (!leaf_node->value().is_array()) {
      leaf_node->fail(ErrorKind::kType, "expected a list of module class names, got " +
                                            leaf_node->type_name() + " " + leaf_node->repr());
    }
    std::vector<std::string> types;
    for (const Module& m : run.tree.modules()) {
      if (std::find(types.begin(), types.end(), m.type) == types.end()) types.push_back(m.type);
    }
    for (size_t i = 0; i < leaf_node->value().size(); ++i) {
      const Node item = leaf_node->element(i);
      const std::string cls = read_string(item);
      if (std::find(types.begin(), types.end(), cls) == types.end()) {
        // DeepSpeed raises only when no class matches; a class that matches nothing is still
        // most likely a typo.
        run.warnings.push_back(item.warning("no module of class '" + cls + "' in the model" +
                                            did_you_mean(cls, types)));
      }
      run.z3_leaf_modules.push_back(cls);
    }
    if (!run.z3_leaf_modules.empty() &&
        zero::modules_of_classes(run.tree, run.z3_leaf_modules).empty()) {
      leaf_node->fail(ErrorKind::kValue,
                      "none of these classes is in the model, and DeepSpeed's set_z3_leaf_modules "
                      "raises then");
    }
  }
  run.provenance.push_back(
      {"z3_leaf_modules", run.z3_leaf_modules, leaf_node ? Origin::kUser : Origin::kDefault, ""});
  run.provenance.push_back({"training.sequence_length", run.training.sequence_length,
                            training.sequence_length ? Origin::kUser : Origin::kDefault,
                            training.sequence_length ? "" : "the model file's"});
  run.provenance.push_back(
      {"training.micro_batch", run.training.micro_batch,
       training.micro_batch ? Origin::kUser : Origin::kInferred,
       training.micro_batch ? "" : "DeepSpeed's train_micro_batch_size_per_gpu"});
  if (training.checkpoint_interval) {
    if (*training.checkpoint_interval > 0 && run.parallel.pipeline > 1) {
      training.checkpoint_node->fail(
          ErrorKind::kConflict,
          "with a pipeline (parallel.pipeline " + std::to_string(run.parallel.pipeline) +
              "), DeepSpeed's pipeline.activation_checkpoint_interval says which layers are "
              "checkpointed; set that instead");
    }
    run.training.checkpoint_interval = *training.checkpoint_interval;
  }
  run.provenance.push_back({"training.checkpoint_interval", run.training.checkpoint_interval,
                            training.checkpoint_interval ? Origin::kUser : Origin::kDefault,
                            run.training.checkpoint_interval > 0 ? "layers per checkpointed segment"
                                                                 : "no activation checkpointing"});
  run.provenance.push_back({"training.dtype", std::string(to_string(run.training.dtype)),
                            training.dtype ? Origin::kUser : Origin::kInferred,
                            training.dtype ? "" : "from the DeepSpeed config's bf16/fp16"});
  return run;
}

zero::ZeroSettings RunSpec::zero_settings() const {
  zero::ZeroSettings s = zero::ZeroSettings::from(deepspeed, parallel.data);
  s.leaf_module_classes = z3_leaf_modules;
  s.version = deepspeed_version;
  return s;
}

RunSpec load_run_spec(const std::filesystem::path& path) {
  Document doc = Document::load(path);
  return parse_run_spec(doc, path.parent_path());
}

}  // namespace zp
