#include "core/config/ds_config.h"

#include <algorithm>
#include <cmath>

#include "core/config/reader.h"
#include "core/util/suggest.h"

namespace zp {

std::string_view to_string(Origin origin) {
  switch (origin) {
    case Origin::kUser:
      return "user";
    case Origin::kDefault:
      return "default";
    case Origin::kDeprecated:
      return "deprecated key";
    case Origin::kInferred:
      return "inferred";
    case Origin::kRunSpec:
      return "run spec";
  }
  return "?";
}

std::string_view to_string(OffloadDevice device) {
  switch (device) {
    case OffloadDevice::kNone:
      return "none";
    case OffloadDevice::kCpu:
      return "cpu";
    case OffloadDevice::kNvme:
      return "nvme";
  }
  return "?";
}

DType DeepSpeedConfig::compute_dtype() const {
  if (bf16.enabled) return DType::kBFloat16;
  if (fp16.enabled) return DType::kFloat16;
  return DType::kFloat32;
}

namespace {

// Stands in for a section the user did not write, so that defaults flow through the same reader.
Node absent_section(const Document& empty, const Node& root, const std::string& key) {
  return Node(empty, root.path().empty() ? key : root.path() + "." + key);
}

bool is_auto(const Node& node) {
  return node.value().is_string() && node.value() == "auto";
}

// One mapping of the config: reads keys with the section's coercion and records where every value
// came from.
class Section {
 public:
  Section(const Node& node, std::string what, std::string prefix, Coercion coercion,
          DeepSpeedConfig& out)
      : reader_(node, std::move(what)),
        prefix_(std::move(prefix)),
        coercion_(coercion),
        out_(out) {}

  // The node written for `key` (or an alias). DeepSpeed's config models drop "auto" values before
  // validating, so under lax coercion "auto" means "not written".
  std::optional<Node> find(std::string_view key,
                           std::initializer_list<std::string_view> aliases = {}) {
    auto node = reader_.get(key, aliases);
    last_note_.clear();
    if (node && node->key() != key) last_note_ = "written as " + node->key();
    if (node && is_auto(*node) && auto_means_default_) {
      last_note_ = "\"auto\": the default applies";
      return std::nullopt;
    }
    return node;
  }

  std::int64_t integer(std::string_view key, std::int64_t fallback,
                       std::optional<std::int64_t> min = std::nullopt,
                       std::initializer_list<std::string_view> aliases = {}) {
    auto node = find(key, aliases);
    if (!node) {
      record(key, fallback, Origin::kDefault);
      return fallback;
    }
    const std::int64_t v = read_int(*node, coercion_);
    if (min) require_at_least(*node, v, *min);
    note_coercion(*node, node->value().is_number());
    record(key, v, Origin::kUser);
    return v;
  }

  bool boolean(std::string_view key, bool fallback,
               std::initializer_list<std::string_view> aliases = {}) {
    auto node = find(key, aliases);
    if (!node) {
      record(key, fallback, Origin::kDefault);
      return fallback;
    }
    const bool v = read_bool(*node, coercion_);
    note_coercion(*node, node->value().is_boolean());
    record(key, v, Origin::kUser);
    return v;
  }

  double number(std::string_view key, double fallback, std::optional<double> min = std::nullopt,
                std::optional<double> max = std::nullopt) {
    auto node = find(key);
    if (!node) {
      record(key, fallback, Origin::kDefault);
      return fallback;
    }
    const double v = read_double(*node, coercion_);
    if (min) require_at_least(*node, v, *min);
    if (max) require_at_most(*node, v, *max);
    note_coercion(*node, node->value().is_number());
    record(key, v, Origin::kUser);
    return v;
  }

  // An optional bool (overlap_comm, use_reentrant): null means "not set".
  std::optional<bool> optional_boolean(std::string_view key) {
    auto node = find(key);
    if (!node || node->value().is_null()) return std::nullopt;
    const bool v = read_bool(*node, coercion_);
    note_coercion(*node, node->value().is_boolean());
    return v;
  }

  std::optional<std::string> optional_string(std::string_view key) {
    auto node = find(key);
    if (!node || node->value().is_null()) {
      record(key, nullptr, node ? Origin::kUser : Origin::kDefault);
      return std::nullopt;
    }
    std::string v = read_string(*node);
    record(key, v, Origin::kUser);
    return v;
  }

  void record(std::string_view key, Json value, Origin origin, std::string note = {}) {
    if (note.empty()) note = last_note_;
    out_.provenance.push_back(
        ResolvedSetting{prefix_ + std::string(key), std::move(value), origin, std::move(note)});
    last_note_.clear();
  }

  // The last find()'s remark ("written as ...") for a caller that records by itself.
  const std::string& note() const { return last_note_; }
  void set_auto_means_default(bool on) { auto_means_default_ = on; }
  ObjectReader& reader() { return reader_; }
  const Node& node() const { return reader_.node(); }
  const std::string& prefix() const { return prefix_; }

 private:
  void note_coercion(const Node& node, bool native) {
    if (native) return;
    const std::string given = "given as " + node.type_name() + " " + node.repr();
    last_note_ = last_note_.empty() ? given : last_note_ + "; " + given;
  }

  ObjectReader reader_;
  std::string prefix_;
  Coercion coercion_;
  DeepSpeedConfig& out_;
  std::string last_note_;
  bool auto_means_default_ = true;
};

OffloadDevice read_device(const Node& node) {
  const Json& v = node.value();
  if (v.is_string()) {
    const std::string s = v.get<std::string>();
    if (s == "none") return OffloadDevice::kNone;
    if (s == "cpu") return OffloadDevice::kCpu;
    if (s == "nvme") return OffloadDevice::kNvme;
  }
  node.fail(ErrorKind::kValue,
            node.repr() + " is not an offload device: use \"none\", \"cpu\" or \"nvme\"" +
                (v.is_string() ? did_you_mean(v.get<std::string>(), {"none", "cpu", "nvme"}) : ""));
}

OffloadDevice section_device(Section& s) {
  auto node = s.find("device");
  if (!node) {
    s.record("device", "none", Origin::kDefault);
    return OffloadDevice::kNone;
  }
  OffloadDevice d = read_device(*node);
  s.record("device", std::string(to_string(d)), Origin::kUser);
  return d;
}

OffloadParamConfig read_offload_param(const Node& node, DeepSpeedConfig& out) {
  Section s(node, "offload_param", "zero_optimization.offload_param.", Coercion::kLax, out);
  OffloadParamConfig c;
  c.device = section_device(s);
  c.nvme_path = s.optional_string("nvme_path");
  c.buffer_count = s.integer("buffer_count", c.buffer_count, 0);
  c.buffer_size = s.integer("buffer_size", c.buffer_size, 0);
  c.max_in_cpu = s.integer("max_in_cpu", c.max_in_cpu, 0);
  c.pin_memory = s.boolean("pin_memory", c.pin_memory);
  s.reader().reject_unknown();
  return c;
}

OffloadOptimizerConfig read_offload_optimizer(const Node& node, DeepSpeedConfig& out) {
  Section s(node, "offload_optimizer", "zero_optimization.offload_optimizer.", Coercion::kLax, out);
  OffloadOptimizerConfig c;
  c.device = section_device(s);
  c.nvme_path = s.optional_string("nvme_path");
  c.buffer_count = s.integer("buffer_count", c.buffer_count, 0);
  c.pin_memory = s.boolean("pin_memory", c.pin_memory);
  c.pipeline_read = s.boolean("pipeline_read", c.pipeline_read);
  c.pipeline_write = s.boolean("pipeline_write", c.pipeline_write);
  c.fast_init = s.boolean("fast_init", c.fast_init);
  c.ratio = s.number("ratio", c.ratio, 0.0, 1.0);
  s.reader().reject_unknown();
  return c;
}

// A deprecated bool that DeepSpeed maps onto an offload section: true means {device: cpu}.
// Returns the node when the deprecated key was written.
std::optional<Node> deprecated_key(Section& s, std::string_view key, DeepSpeedConfig& out,
                                   const std::string& replacement) {
  auto node = s.find(key);
  if (!node) return std::nullopt;
  out.warnings.push_back(
      node->warning("'" + std::string(key) + "' is deprecated; use '" + replacement + "' instead"));
  return node;
}

// DeepSpeed refuses a deprecated key next to the key that replaces it.
void refuse_both(const Node& deprecated, const Section& s,
                 std::initializer_list<std::string_view> replacements) {
  for (std::string_view r : replacements) {
    if (s.node().value().contains(std::string(r))) {
      deprecated.fail(ErrorKind::kConflict, "the deprecated '" + deprecated.key() +
                                                "' and its replacement '" + std::string(r) +
                                                "' cannot be given together");
    }
  }
}

void read_zero(const Node& root, DeepSpeedConfig& out) {
  ZeroConfig& z = out.zero;
  const std::string prefix = "zero_optimization.";
  if (!root.value().contains("zero_optimization")) {
    // Absent: every field at its default (stage 0).
    Document empty = Document::from_value(Json::object(), root.document().file());
    Section s(absent_section(empty, root, "zero_optimization"), "zero_optimization", prefix,
              Coercion::kLax, out);
    z.stage = static_cast<int>(s.integer("stage", 0));
    z.overlap_comm = false;
    s.record("overlap_comm", false, Origin::kDefault, "true only for stage 3");
    return;
  }
  const Node node = root.child("zero_optimization");

  if (node.value().is_boolean()) {
    // The legacy form: true means stage 1 with allgather_bucket_size from the top-level
    // "allgather_size".
    out.warnings.push_back(node.warning(
        "a boolean zero_optimization is deprecated; write {\"stage\": N, ...} instead"));
    const bool on = node.value().get<bool>();
    z.stage = on ? 1 : 0;
    out.provenance.push_back({prefix + "stage", z.stage, Origin::kDeprecated,
                              std::string("from zero_optimization: ") + (on ? "true" : "false")});
    if (on && root.value().contains("allgather_size")) {
      const Node size = root.child("allgather_size");
      z.allgather_bucket_size = read_int(size, Coercion::kLax);
      require_at_least(size, z.allgather_bucket_size, 0);
      out.provenance.push_back({prefix + "allgather_bucket_size", z.allgather_bucket_size,
                                Origin::kDeprecated, "from allgather_size"});
    }
    z.overlap_comm = false;
    out.provenance.push_back(
        {prefix + "overlap_comm", false, Origin::kDefault, "true only for stage 3"});
    return;
  }

  Section s(node, "zero_optimization", prefix, Coercion::kLax, out);
  {
    auto n = s.find("stage");
    if (!n) {
      s.record("stage", 0, Origin::kDefault);
    } else {
      const std::int64_t stage = read_int(*n, Coercion::kLax);
      if (stage < 0 || stage > 3) {
        n->fail(ErrorKind::kValue, n->repr() + " is not a ZeRO stage: use 0, 1, 2 or 3");
      }
      z.stage = static_cast<int>(stage);
      s.record("stage", z.stage, Origin::kUser);
    }
  }
  z.contiguous_gradients = s.boolean("contiguous_gradients", z.contiguous_gradients);
  z.reduce_scatter = s.boolean("reduce_scatter", z.reduce_scatter);
  z.reduce_bucket_size = s.integer("reduce_bucket_size", z.reduce_bucket_size, 0);
  z.use_multi_rank_bucket_allreduce =
      s.boolean("use_multi_rank_bucket_allreduce", z.use_multi_rank_bucket_allreduce);
  z.allgather_partitions = s.boolean("allgather_partitions", z.allgather_partitions);
  z.allgather_bucket_size = s.integer("allgather_bucket_size", z.allgather_bucket_size, 0);
  if (auto overlap = s.optional_boolean("overlap_comm")) {
    z.overlap_comm = *overlap;
    s.record("overlap_comm", z.overlap_comm, Origin::kUser);
  } else {
    z.overlap_comm = z.stage == 3;
    s.record("overlap_comm", z.overlap_comm, Origin::kInferred,
             z.stage == 3 ? "true because stage is 3" : "false because stage is not 3");
  }
  z.load_from_fp32_weights = s.boolean("load_from_fp32_weights", z.load_from_fp32_weights);
  z.elastic_checkpoint = s.boolean("elastic_checkpoint", z.elastic_checkpoint);

  // offload_param / offload_optimizer, and the deprecated booleans that stand for them: true means
  // a section with device cpu and every other field at its default, false means no section.
  auto read_offload = [&](std::string_view key, std::string_view old_key, auto reader,
                          auto& target) {
    const std::string section(key);
    if (auto old = deprecated_key(s, old_key, out, section)) {
      refuse_both(*old, s, {key});
      const bool on = !old->value().is_null() && read_bool(*old, Coercion::kLax);
      const std::string note =
          std::string("from ") + std::string(old_key) + (on ? ": true" : ": false");
      if (!on) {
        s.record(key, nullptr, Origin::kDeprecated, note);
        return;
      }
      const Document implied =
          Document::from_value(Json{{"device", "cpu"}}, node.document().file());
      const size_t first = out.provenance.size();
      target = reader(Node(implied, old->path()), out);
      for (size_t i = first; i < out.provenance.size(); ++i) {
        out.provenance[i].origin = Origin::kDeprecated;
        out.provenance[i].note = note;
      }
      return;
    }
    auto n = s.find(key);
    if (!n) {
      s.record(key, nullptr, Origin::kDefault);
    } else if (n->value().is_null()) {
      s.record(key, nullptr, Origin::kUser);
    } else {
      target = reader(*n, out);
    }
  };
  read_offload("offload_param", "cpu_offload_param", read_offload_param, z.offload_param);
  read_offload("offload_optimizer", "cpu_offload", read_offload_optimizer, z.offload_optimizer);
  z.sub_group_size = s.integer("sub_group_size", z.sub_group_size, 0);
  if (auto n = deprecated_key(s, "cpu_offload_use_pin_memory", out,
                              "offload_param or offload_optimizer")) {
    // DeepSpeed keeps the value but does not act on it.
    z.cpu_offload_use_pin_memory =
        n->value().is_null() ? std::nullopt : std::optional(read_bool(*n, Coercion::kLax));
    s.record("cpu_offload_use_pin_memory",
             z.cpu_offload_use_pin_memory ? Json(*z.cpu_offload_use_pin_memory) : Json(nullptr),
             Origin::kUser, "deprecated; has no effect");
  }

  z.prefetch_bucket_size =
      s.integer("stage3_prefetch_bucket_size", z.prefetch_bucket_size, 0, {"prefetch_bucket_size"});
  z.param_persistence_threshold =
      s.integer("stage3_param_persistence_threshold", z.param_persistence_threshold, 0,
                {"param_persistence_threshold"});
  z.model_persistence_threshold =
      s.integer("stage3_model_persistence_threshold", z.model_persistence_threshold, 0,
                {"model_persistence_threshold"});
  z.max_live_parameters =
      s.integer("stage3_max_live_parameters", z.max_live_parameters, 0, {"max_live_parameters"});
  z.max_reuse_distance =
      s.integer("stage3_max_reuse_distance", z.max_reuse_distance, 0, {"max_reuse_distance"});
  if (auto old = deprecated_key(s, "stage3_gather_fp16_weights_on_model_save", out,
                                "stage3_gather_16bit_weights_on_model_save")) {
    refuse_both(
        *old, s,
        {"stage3_gather_16bit_weights_on_model_save", "gather_16bit_weights_on_model_save"});
    s.reader().accept("stage3_gather_16bit_weights_on_model_save");
    s.reader().accept("gather_16bit_weights_on_model_save");
    z.gather_16bit_weights_on_model_save = read_bool(*old, Coercion::kLax);
    s.record("stage3_gather_16bit_weights_on_model_save", z.gather_16bit_weights_on_model_save,
             Origin::kDeprecated, "from stage3_gather_fp16_weights_on_model_save");
  } else {
    z.gather_16bit_weights_on_model_save =
        s.boolean("stage3_gather_16bit_weights_on_model_save", z.gather_16bit_weights_on_model_save,
                  {"gather_16bit_weights_on_model_save"});
  }
  z.module_granularity_threshold =
      s.integer("stage3_module_granularity_threshold", z.module_granularity_threshold, std::nullopt,
                {"module_granularity_threshold"});
  z.use_all_reduce_for_fetch_params =
      s.boolean("stage3_use_all_reduce_for_fetch_params", z.use_all_reduce_for_fetch_params,
                {"use_all_reduce_for_fetch_params"});
  z.ignore_unused_parameters = s.boolean("ignore_unused_parameters", z.ignore_unused_parameters);
  z.legacy_stage1 = s.boolean("legacy_stage1", z.legacy_stage1);
  z.round_robin_gradients = s.boolean("round_robin_gradients", z.round_robin_gradients);
  z.zero_hpz_partition_size = s.integer("zero_hpz_partition_size", z.zero_hpz_partition_size, 0);
  z.zero_quantized_weights = s.boolean("zero_quantized_weights", z.zero_quantized_weights);
  z.zero_quantized_nontrainable_weights =
      s.boolean("zero_quantized_nontrainable_weights", z.zero_quantized_nontrainable_weights);
  z.zero_quantized_gradients = s.boolean("zero_quantized_gradients", z.zero_quantized_gradients);
  if (auto n = s.find("zeropp_loco_param"); n && !n->value().is_null()) {
    if (!n->value().is_object()) {
      n->fail(ErrorKind::kType, "expected a mapping ({\"err_beta\": ..., \"reset_T\": ...}), got " +
                                    n->type_name() + " " + n->repr());
    }
    z.zeropp_loco_param = n->value();
    s.record("zeropp_loco_param", n->value(), Origin::kUser);
  } else {
    s.record("zeropp_loco_param", nullptr, n ? Origin::kUser : Origin::kDefault);
  }
  z.mics_shard_size = s.integer("mics_shard_size", z.mics_shard_size);
  z.mics_hierarchical_params_gather =
      s.boolean("mics_hierarchical_params_gather", z.mics_hierarchical_params_gather);
  z.memory_efficient_linear = s.boolean("memory_efficient_linear", z.memory_efficient_linear);
  z.pipeline_loading_checkpoint =
      s.boolean("pipeline_loading_checkpoint", z.pipeline_loading_checkpoint);
  z.override_module_apply = s.boolean("override_module_apply", z.override_module_apply);
  z.log_trace_cache_warnings = s.boolean("log_trace_cache_warnings", z.log_trace_cache_warnings);
  s.reader().reject_unknown();

  if (z.offload_optimizer && z.offload_optimizer->ratio < 1.0 && z.stage != 3) {
    const Node ratio = node.child("offload_optimizer").child("ratio");
    ratio.fail(ErrorKind::kConflict, "a partial optimizer offload (ratio " + ratio.repr() +
                                         " < 1) needs ZeRO stage 3; stage is " +
                                         std::to_string(z.stage));
  }
}

void read_activation_checkpointing(const Node& root, DeepSpeedConfig& out) {
  ActivationCheckpointingConfig& a = out.activation_checkpointing;
  const std::string key = "activation_checkpointing";
  Document empty = Document::from_value(Json::object(), root.document().file());
  const bool present = root.value().contains(key);
  Section s(present ? root.child(key) : absent_section(empty, root, key), key, key + ".",
            Coercion::kStrict, out);
  s.set_auto_means_default(false);
  a.partition_activations = s.boolean("partition_activations", a.partition_activations);
  a.contiguous_memory_optimization =
      s.boolean("contiguous_memory_optimization", a.contiguous_memory_optimization);
  a.cpu_checkpointing = s.boolean("cpu_checkpointing", a.cpu_checkpointing);
  if (auto n = s.find("number_checkpoints"); n && !n->value().is_null()) {
    a.number_checkpoints = read_int(*n, Coercion::kStrict);
    require_at_least(*n, *a.number_checkpoints, 0);
    s.record("number_checkpoints", *a.number_checkpoints, Origin::kUser);
  } else {
    s.record("number_checkpoints", nullptr, n ? Origin::kUser : Origin::kDefault);
  }
  a.synchronize_checkpoint_boundary =
      s.boolean("synchronize_checkpoint_boundary", a.synchronize_checkpoint_boundary);
  a.profile = s.boolean("profile", a.profile);
  s.reader().warn_unknown(out.warnings, "DeepSpeed ignores it");

  // deepspeed.checkpointing.configure()'s rules.
  if (a.contiguous_memory_optimization && !a.partition_activations) {
    s.node()
        .child("contiguous_memory_optimization")
        .fail(ErrorKind::kConflict,
              "contiguous_memory_optimization needs partition_activations: true");
  }
  if (a.contiguous_memory_optimization && !a.number_checkpoints) {
    s.node()
        .child("contiguous_memory_optimization")
        .fail(ErrorKind::kMissing,
              "contiguous_memory_optimization needs number_checkpoints (the number of "
              "checkpoints per forward, to size the contiguous buffer)");
  }
}

void check_partition_method(const Node& node, const std::string& method) {
  std::string lower = method;
  for (char& c : lower)
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  static const std::vector<std::string> kMethods = {"parameters", "uniform", "profile", "memory",
                                                    "type:"};
  if (lower == "parameters" || lower == "uniform" || lower == "profile" || lower == "memory")
    return;
  if (lower.starts_with("type:")) {
    if (lower.size() == 5) {
      node.fail(ErrorKind::kValue,
                "\"" + method +
                    "\": type: needs a pattern of layer type names, e.g. \"type:transformer\"");
    }
    return;
  }
  node.fail(ErrorKind::kValue, "\"" + method +
                                   "\" is not a partition method: use parameters, uniform, "
                                   "type:REGEX, profile or memory" +
                                   did_you_mean(lower, kMethods));
}

void read_pipeline(const Node& root, const DeepSpeedContext& context, DeepSpeedConfig& out) {
  PipelineConfig& p = out.pipeline;
  const std::string key = "pipeline";
  Document empty = Document::from_value(Json::object(), root.document().file());
  const bool present = root.value().contains(key);
  Section s(present ? root.child(key) : absent_section(empty, root, key), key, key + ".",
            Coercion::kStrict, out);
  s.set_auto_means_default(false);
  if (auto n = s.find("stages"); n && !is_auto(*n)) {
    const std::int64_t stages = read_int(*n, Coercion::kStrict);
    require_at_least(*n, stages, 1);
    if (stages != context.pipeline_parallel_size) {
      n->fail(ErrorKind::kConflict,
              std::to_string(stages) + " stages, but the run's pipeline degree is " +
                  std::to_string(context.pipeline_parallel_size) + " (parallel.pipeline)");
    }
    p.stages = stages;
    s.record("stages", stages, Origin::kUser);
  } else {
    s.record("stages", "auto", n ? Origin::kUser : Origin::kDefault,
             "the run's pipeline degree, " + std::to_string(context.pipeline_parallel_size));
  }
  if (auto n = s.find("partition")) {
    p.partition = read_string(*n);
    if (p.partition == "best") {
      // DeepSpeed's config default; PipelineModule's own default method is "parameters".
      s.record("partition", "parameters", Origin::kUser,
               "\"best\" is DeepSpeed's config default; PipelineModule partitions by parameters");
      p.partition = "parameters";
    } else {
      check_partition_method(*n, p.partition);
      s.record("partition", p.partition, Origin::kUser);
    }
  } else {
    s.record("partition", p.partition, Origin::kDefault, "PipelineModule's default");
  }
  p.seed_layers = s.boolean("seed_layers", p.seed_layers);
  p.activation_checkpoint_interval =
      s.integer("activation_checkpoint_interval", p.activation_checkpoint_interval, 0);
  p.pipe_partitioned = s.boolean("pipe_partitioned", p.pipe_partitioned);
  p.grad_partitioned = s.boolean("grad_partitioned", p.grad_partitioned);
  if (auto v = s.optional_boolean("use_reentrant")) {
    p.use_reentrant = v;
    s.record("use_reentrant", *v, Origin::kUser);
  } else if (p.activation_checkpoint_interval > 0) {
    p.use_reentrant = true;
    s.record("use_reentrant", true, Origin::kInferred, "DeepSpeed's default when checkpointing");
  } else {
    s.record("use_reentrant", nullptr, Origin::kDefault);
  }
  s.reader().warn_unknown(out.warnings, "DeepSpeed ignores it");
}

void read_precision(const Node& root, const DeepSpeedContext& context, DeepSpeedConfig& out) {
  Document empty = Document::from_value(Json::object(), root.document().file());
  // bf16, or its old name bfloat16; DeepSpeed looks at bf16 first.
  std::string bf16_key = "bf16";
  if (!root.value().contains("bf16") && root.value().contains("bfloat16")) bf16_key = "bfloat16";
  if (root.value().contains("bf16") && root.value().contains("bfloat16")) {
    out.warnings.push_back(
        root.child("bfloat16")
            .warning(
                "both bf16 and bfloat16 are given; DeepSpeed reads bf16 and ignores bfloat16"));
  }
  std::optional<Node> bf16_enabled_node, fp16_enabled_node;
  {
    const bool present = root.value().contains(bf16_key);
    Section s(present ? root.child(bf16_key) : absent_section(empty, root, bf16_key), bf16_key,
              "bf16.", Coercion::kStrict, out);
    s.set_auto_means_default(false);
    if (auto n = s.find("enabled"); n && !is_auto(*n)) {
      out.bf16.enabled = read_bool(*n, Coercion::kStrict);
      bf16_enabled_node = n;
      s.record("enabled", out.bf16.enabled, Origin::kUser,
               bf16_key == "bfloat16" ? "written under bfloat16" : "");
    } else if (n) {
      out.bf16.enabled = context.dtype == DType::kBFloat16;
      s.record("enabled", out.bf16.enabled, Origin::kRunSpec, "\"auto\": from training.dtype");
    } else if (context.dtype == DType::kBFloat16) {
      out.bf16.enabled = true;
      s.record("enabled", true, Origin::kRunSpec, "from training.dtype");
    } else {
      s.record("enabled", false, Origin::kDefault);
    }
    out.bf16.immediate_grad_update =
        s.boolean("immediate_grad_update", out.bf16.immediate_grad_update);
    s.reader().warn_unknown(out.warnings, "DeepSpeed ignores it");
  }
  {
    const bool present = root.value().contains("fp16");
    Section s(present ? root.child("fp16") : absent_section(empty, root, "fp16"), "fp16", "fp16.",
              Coercion::kStrict, out);
    s.set_auto_means_default(false);
    Fp16Config& f = out.fp16;
    if (auto n = s.find("enabled"); n && !is_auto(*n)) {
      f.enabled = read_bool(*n, Coercion::kStrict);
      fp16_enabled_node = n;
      s.record("enabled", f.enabled, Origin::kUser);
    } else if (n) {
      f.enabled = context.dtype == DType::kFloat16;
      s.record("enabled", f.enabled, Origin::kRunSpec, "\"auto\": from training.dtype");
    } else if (context.dtype == DType::kFloat16) {
      f.enabled = true;
      s.record("enabled", true, Origin::kRunSpec, "from training.dtype");
    } else {
      s.record("enabled", false, Origin::kDefault);
    }
    // DeepSpeed reads the rest of fp16 only when it is enabled.
    if (f.enabled) {
      f.auto_cast = s.boolean("auto_cast", f.auto_cast);
      f.loss_scale = s.number("loss_scale", f.loss_scale, 0.0);
      f.initial_scale_power = s.integer("initial_scale_power", f.initial_scale_power);
      f.loss_scale_window = s.integer("loss_scale_window", f.loss_scale_window, 1);
      f.hysteresis = s.integer("hysteresis", f.hysteresis, 1);
      f.consecutive_hysteresis = s.boolean("consecutive_hysteresis", f.consecutive_hysteresis);
      f.min_loss_scale = s.number("min_loss_scale", f.min_loss_scale, 0.0);
      f.fp16_master_weights_and_grads =
          s.boolean("fp16_master_weights_and_grads", f.fp16_master_weights_and_grads);
      s.reader().warn_unknown(out.warnings, "DeepSpeed ignores it");
    } else {
      for (std::string_view k :
           {"auto_cast", "loss_scale", "initial_scale_power", "loss_scale_window", "hysteresis",
            "consecutive_hysteresis", "min_loss_scale", "fp16_master_weights_and_grads", "type"}) {
        s.reader().accept(k);
      }
      s.reader().warn_unknown(out.warnings, "DeepSpeed ignores it");
    }
  }
  if (out.bf16.enabled && out.fp16.enabled) {
    const Node& where = bf16_enabled_node ? *bf16_enabled_node : *fp16_enabled_node;
    where.fail(ErrorKind::kConflict, "bf16 and fp16 cannot both be enabled");
  }
  if (context.dtype && *context.dtype != out.compute_dtype()) {
    const std::optional<Node>& n = bf16_enabled_node ? bf16_enabled_node : fp16_enabled_node;
    const std::string msg =
        "the DeepSpeed config computes in " + std::string(to_string(out.compute_dtype())) +
        ", but the run spec's training.dtype is " + std::string(to_string(*context.dtype));
    if (n) n->fail(ErrorKind::kConflict, msg);
    throw UserError(ErrorKind::kConflict, root.location(), msg);
  }
  if (root.value().contains("amp")) {
    const Node amp = root.child("amp");
    if (amp.value().is_object() && amp.value().contains("enabled")) {
      out.amp_enabled = read_bool(amp.child("enabled"), Coercion::kStrict);
    }
  }
}

// DeepSpeed's _set_batch_related_parameters and _batch_assertion, with world_size = the
// data-parallel degree.
void read_batch(const Node& root, const DeepSpeedContext& context, DeepSpeedConfig& out) {
  const std::int64_t world = context.data_parallel_size;
  auto read = [&](const char* key) -> std::pair<std::optional<std::int64_t>, std::optional<Node>> {
    if (!root.value().contains(key)) return {std::nullopt, std::nullopt};
    const Node n = root.child(key);
    if (is_auto(n) || n.value().is_null()) return {std::nullopt, n};
    const std::int64_t v = read_int(n, Coercion::kStrict);
    if (v <= 0) n.fail(ErrorKind::kValue, std::to_string(v) + " is out of range: must be > 0");
    return {v, n};
  };
  auto [train, train_node] = read("train_batch_size");
  auto [micro, micro_node] = read("train_micro_batch_size_per_gpu");
  auto [gas, gas_node] = read("gradient_accumulation_steps");
  const bool micro_from_run = !micro && context.micro_batch;
  if (micro && context.micro_batch && *micro != *context.micro_batch) {
    micro_node->fail(ErrorKind::kConflict, "the micro batch is " + std::to_string(*micro) +
                                               " here but " + std::to_string(*context.micro_batch) +
                                               " in the run spec's training.micro_batch");
  }
  if (micro_from_run) micro = context.micro_batch;
  const bool train_given = train.has_value(), gas_given = gas.has_value();

  auto floor_div = [](std::int64_t a, std::int64_t b) {
    std::int64_t q = a / b;
    return (a % b != 0 && ((a < 0) != (b < 0))) ? q - 1 : q;
  };
  if (train && micro && gas) {
    // all given
  } else if (train && micro) {
    gas = floor_div(floor_div(*train, *micro), world);
  } else if (train && gas) {
    micro = floor_div(floor_div(*train, world), *gas);
  } else if (micro && gas) {
    train = *micro * *gas * world;
  } else if (train) {
    gas = 1;
    micro = floor_div(*train, world);
  } else if (micro) {
    train = *micro * world;
    gas = 1;
  } else {
    throw UserError(
        ErrorKind::kMissing, root.location(),
        "either train_batch_size or train_micro_batch_size_per_gpu must be given (in the "
        "DeepSpeed config, or as training.micro_batch in the run spec)");
  }
  const std::string shape = std::to_string(*train) + " != " + std::to_string(*micro) + " * " +
                            std::to_string(*gas) + " * " + std::to_string(world);
  if (*micro <= 0 || *gas <= 0 || *train != *micro * *gas * world) {
    const Node& where = train_node ? *train_node : (micro_node ? *micro_node : root);
    throw UserError(ErrorKind::kConflict, where.location(),
                    "train_batch_size must equal train_micro_batch_size_per_gpu * "
                    "gradient_accumulation_steps * data-parallel size, but " +
                        shape);
  }
  out.batch = {*train, *micro, *gas};
  out.provenance.push_back(
      {"train_batch_size", *train, train_given ? Origin::kUser : Origin::kInferred,
       train_given
           ? ""
           : "micro batch * accumulation steps * data-parallel size " + std::to_string(world)});
  out.provenance.push_back(
      {"train_micro_batch_size_per_gpu", *micro,
       micro_from_run ? Origin::kRunSpec
                      : (micro_node && !is_auto(*micro_node) ? Origin::kUser : Origin::kInferred),
       micro_from_run ? "from training.micro_batch" : ""});
  out.provenance.push_back({"gradient_accumulation_steps", *gas,
                            gas_given ? Origin::kUser : Origin::kInferred,
                            gas_given ? "" : "inferred from the other two"});
}

// Top-level keys DeepSpeed reads; anything else draws a warning.
const std::vector<std::string>& top_level_keys() {
  static const std::vector<std::string> keys = {"train_batch_size",
                                                "train_micro_batch_size_per_gpu",
                                                "gradient_accumulation_steps",
                                                "steps_per_print",
                                                "dump_state",
                                                "disable_allgather",
                                                "communication_data_type",
                                                "seq_parallel_comm_data_type",
                                                "prescale_gradients",
                                                "gradient_predivide_factor",
                                                "sparse_gradients",
                                                "zero_optimization",
                                                "activation_checkpointing",
                                                "comms_logger",
                                                "tensorboard",
                                                "wandb",
                                                "csv_monitor",
                                                "comet",
                                                "gradient_clipping",
                                                "fp16",
                                                "bf16",
                                                "bfloat16",
                                                "amp",
                                                "compression_training",
                                                "graph_harvesting",
                                                "optimizer",
                                                "zero_allow_untested_optimizer",
                                                "zero_force_ds_cpu_optimizer",
                                                "scheduler",
                                                "flops_profiler",
                                                "wall_clock_breakdown",
                                                "memory_breakdown",
                                                "autotuning",
                                                "eigenvalue",
                                                "use_data_before_expert_parallelism",
                                                "hybrid_engine",
                                                "sparse_attention",
                                                "pipeline",
                                                "progressive_layer_drop",
                                                "curriculum_learning",
                                                "data_efficiency",
                                                "checkpoint",
                                                "data_types",
                                                "aio",
                                                "dataloader_drop_last",
                                                "nebula",
                                                "weight_quantization",
                                                "timers",
                                                "tensor_parallel",
                                                "elasticity",
                                                "vocabulary_size",
                                                "allgather_size",
                                                "quantize_training",
                                                "compile",
                                                "zero_allow_comm_data_type_fp32",
                                                "load_universal_checkpoint",
                                                "gradient_accumulation_dtype",
                                                "fp16_master_weights_and_grads"};
  return keys;
}

}  // namespace

DeepSpeedConfig parse_deepspeed_config(const Node& root, const DeepSpeedContext& context) {
  ZP_CHECK(context.data_parallel_size >= 1, "data-parallel size must be positive");
  DeepSpeedConfig out;
  ObjectReader top(root, "the DeepSpeed config");
  for (const std::string& key : top_level_keys())
    top.accept(key);
  out.original = root.value();

  if (root.value().contains("elasticity")) {
    const Node e = root.child("elasticity");
    if (e.value().is_object() && e.value().value("enabled", false) == true) {
      e.fail(ErrorKind::kUnsupported,
             "elastic training is not modelled: it lets DeepSpeed change the "
             "batch size and GPU count at run time; disable it to plan a fixed run");
    }
  }

  read_zero(root, out);
  read_activation_checkpointing(root, out);
  read_pipeline(root, context, out);
  read_precision(root, context, out);
  read_batch(root, context, out);

  if (root.value().contains("data_types")) {
    ObjectReader types(root.child("data_types"), "data_types");
    if (auto n = types.get("grad_accum_dtype"); n && !n->value().is_null()) {
      const std::string name = read_string(*n);
      auto dtype = parse_dtype(name);
      if (!dtype || !is_floating(*dtype) || *dtype == DType::kFloat64) {
        n->fail(ErrorKind::kValue, "\"" + name + "\" is not a gradient accumulation dtype: use fp32, fp16 or bf16");
      }
      out.grad_accum_dtype = dtype;
    }
    types.warn_unknown(out.warnings, "DeepSpeed ignores it");
  }
  out.provenance.push_back({"data_types.grad_accum_dtype",
                            out.grad_accum_dtype ? Json(std::string(to_string(*out.grad_accum_dtype))) : Json(nullptr),
                            out.grad_accum_dtype ? Origin::kUser : Origin::kDefault,
                            out.grad_accum_dtype ? "" : "the model's dtype (with ZeRO)"});

  if (root.value().contains("optimizer")) {
    const Node opt = root.child("optimizer");
    if (opt.value().is_object() && opt.value().contains("type")) {
      out.optimizer_type = read_string(opt.child("type"));
      out.provenance.push_back({"optimizer.type", *out.optimizer_type, Origin::kUser, ""});
    }
  }
  if (!out.optimizer_type) {
    out.provenance.push_back(
        {"optimizer.type", nullptr, Origin::kDefault, "the client's optimizer"});
  }

  // DeepSpeed's engine-level rules.
  if (out.fp16.fp16_master_weights_and_grads && out.zero.stage != 2) {
    root.child("fp16")
        .child("fp16_master_weights_and_grads")
        .fail(ErrorKind::kConflict,
              "fp16_master_weights_and_grads is supported with ZeRO stage 2 only; stage is " +
                  std::to_string(out.zero.stage));
  }
  if (out.amp_enabled && out.zero.stage > 0) {
    root.child("amp").fail(
        ErrorKind::kConflict,
        "amp and ZeRO are not compatible in DeepSpeed; use fp16 or bf16 instead");
  }
  if (context.pipeline_parallel_size > 1 && out.zero.stage >= 2) {
    const Node where =
        root.value().contains("zero_optimization") ? root.child("zero_optimization") : root;
    where.fail(ErrorKind::kConflict,
               "ZeRO stage " + std::to_string(out.zero.stage) +
                   " cannot be combined with pipeline parallelism (degree " +
                   std::to_string(context.pipeline_parallel_size) +
                   "): DeepSpeed's pipeline engine supports stages 0 and 1 only");
  }

  top.warn_unknown(out.warnings, "DeepSpeed ignores it");
  return out;
}

Json deepspeed_config_to_json(const DeepSpeedConfig& config) {
  Json out = config.original.is_object() ? config.original : Json::object();
  // Spellings that the canonical keys replace; DeepSpeed refuses two spellings of one setting.
  if (out.contains("zero_optimization") && out["zero_optimization"].is_object()) {
    Json& z = out["zero_optimization"];
    for (const char* old :
         {"prefetch_bucket_size", "param_persistence_threshold", "model_persistence_threshold",
          "max_live_parameters", "max_reuse_distance", "gather_16bit_weights_on_model_save",
          "module_granularity_threshold", "use_all_reduce_for_fetch_params", "cpu_offload",
          "cpu_offload_param", "stage3_gather_fp16_weights_on_model_save"}) {
      z.erase(old);
    }
  } else {
    out["zero_optimization"] = Json::object();
  }
  out.erase("allgather_size");
  out.erase("bfloat16");
  for (const ResolvedSetting& r : config.provenance) {
    if (r.key == "optimizer.type" && r.value.is_null()) continue;
    set_at_path(out, r.key, r.value);
  }
  return out;
}

}  // namespace zp
