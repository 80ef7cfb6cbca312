#include "planner/search_space.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <map>
#include <numeric>
#include <set>

#include "core/model/model_config.h"
#include "core/pipe/layers.h"
#include "core/util/error.h"
#include "core/util/suggest.h"
#include "core/util/units.h"
#include "core/zero/partition.h"
#include "core/zero/zero_model.h"
#include "sim/simulate.h"

namespace zp::planner {
namespace {

constexpr std::int64_t kUnbounded = INT64_MAX;

[[noreturn]] void fail(ErrorKind kind, const std::string& knob, const std::string& message) {
  throw UserError(kind, SourceLocation{{}, 0, 0, knob}, message);
}

const Knob& require_knob(const std::string& name, const char* option) {
  if (const Knob* k = find_knob(name)) return *k;
  std::vector<std::string> names;
  for (const Knob& k : knobs())
    names.emplace_back(k.name);
  fail(ErrorKind::kUnknownKey, name,
       std::string(option) + ": \"" + name + "\" is not a knob the tuner searches" +
           did_you_mean(name, names));
}

bool is_count(const Knob& k) {
  return k.kind == KnobKind::kCount;
}

// The sizes the thresholds are compared with.
struct ModelSizes {
  std::int64_t largest = 1;            // the largest parameter
  std::int64_t total = 1;              // every parameter once
  std::vector<std::int64_t> distinct;  // distinct parameter sizes, ascending
};

ModelSizes model_sizes(const ModuleTree& tree) {
  ModelSizes s;
  std::set<std::int64_t> sizes;
  s.total = 0;
  for (const Parameter& p : tree.parameters()) {
    sizes.insert(p.numel());
    s.largest = std::max(s.largest, p.numel());
    s.total += p.numel();
  }
  s.total = std::max<std::int64_t>(s.total, 1);
  s.distinct.assign(sizes.begin(), sizes.end());
  return s;
}

// L * ratio^k from `start` while below `limit`, then `limit` itself: every value at or above the
// model's size acts alike.
std::vector<std::int64_t> geometric(double start, std::int64_t limit, double ratio) {
  std::vector<std::int64_t> out;
  for (double v = start; v < static_cast<double>(limit); v *= ratio) {
    const auto value = static_cast<std::int64_t>(std::llround(v));
    if (value > 0 && (out.empty() || value > out.back())) out.push_back(value);
  }
  out.push_back(limit);
  return out;
}

Dimension grid_dimension(const Knob& knob, const ModelSizes& sizes, double ratio, bool with_zero,
                         double below_largest) {
  Dimension d;
  d.knob = &knob;
  if (with_zero) d.values.push_back(0);
  for (std::int64_t v :
       geometric(static_cast<double>(sizes.largest) / below_largest, sizes.total, ratio))
    d.values.push_back(v);
  d.considered = static_cast<std::int64_t>(d.values.size());
  std::string step = units::format_si(ratio, "");
  while (!step.empty() && step.back() == ' ')
    step.pop_back();
  d.derivation = "geometric grid (x" + step + ") from " +
                 units::format_count(d.values[with_zero ? 1 : 0]) +
                 " elements to the model's size, " + units::format_count(sizes.total) +
                 ": every larger value acts alike";
  return d;
}

// Persistence: one value per distinct set of persistent parameters. The parameter threshold has a
// class per distinct parameter size; the model threshold caps the set's total, on a geometric
// grid of that total; sets already seen are dropped.
Dimension persistence_dimension(const RunSpec& run, const ModelSizes& sizes, double ratio) {
  Dimension d;
  d.knob = find_knob("param_persistence_threshold");
  const ModuleTree& tree = run.tree;
  std::vector<std::int64_t> thresholds{0};
  thresholds.insert(thresholds.end(), sizes.distinct.begin(), sizes.distinct.end());

  struct Option {
    std::int64_t total;
    std::int64_t param, cap;
  };
  std::vector<Option> options;
  std::set<std::vector<ParamId>> seen;
  std::int64_t considered = 0;
  for (std::int64_t t : thresholds) {
    const std::vector<ParamId> all = zero::persistent_parameters(tree, t, kUnbounded);
    std::int64_t total = 0;
    for (ParamId p : all)
      total += tree.parameter(p).numel();
    std::vector<std::int64_t> caps{kUnbounded};
    if (total > 0) {
      for (std::int64_t c : geometric(static_cast<double>(sizes.largest), total, ratio))
        if (c < total) caps.push_back(c);
    }
    for (std::int64_t cap : caps) {
      ++considered;
      std::vector<ParamId> set = zero::persistent_parameters(tree, t, cap);
      if (!seen.insert(set).second) continue;
      std::int64_t n = 0;
      for (ParamId p : set)
        n += tree.parameter(p).numel();
      options.push_back({n, t, cap});
    }
  }
  std::stable_sort(options.begin(), options.end(),
                   [](const Option& a, const Option& b) { return a.total < b.total; });
  // Thin to a geometric grid of the persistent total: neighbours within the ratio cost about the
  // same and save about the same.
  std::vector<Option> kept;
  for (const Option& o : options) {
    if (!kept.empty() && kept.back().total > 0 &&
        static_cast<double>(o.total) < static_cast<double>(kept.back().total) * ratio &&
        &o != &options.back())
      continue;
    kept.push_back(o);
  }
  for (const Option& o : kept) {
    d.values.push_back(o.param);
    d.model_caps.push_back(o.cap);
  }
  d.considered = considered;
  d.derivation = "one value per distinct set of persistent parameters (" +
                 std::to_string(options.size()) + " sets from the model's " +
                 std::to_string(sizes.distinct.size()) +
                 " parameter sizes), thinned to a geometric grid of their total";
  return d;
}

// Module granularity: one value per distinct set of leaf modules it selects, without the sets
// DeepSpeed refuses (a leaf whose output needs a gradient that none of its inputs has).
Dimension granularity_dimension(const RunSpec& run) {
  Dimension d;
  d.knob = find_knob("module_granularity_threshold");
  zero::ZeroSettings s = run.zero_settings();
  s.module_granularity_threshold = 1;  // computes every module's granularity
  std::set<std::int64_t> distinct;
  const zero::ZeroModel all(run.tree, s);
  for (std::int64_t g : all.granularity())
    if (g > 0 && g < INT64_MAX) distinct.insert(g);
  d.values.push_back(0);
  std::set<std::vector<ModuleId>> seen;
  std::int64_t refused = 0;
  RunSpec probe = run;
  for (std::int64_t g : distinct) {
    s.module_granularity_threshold = g;
    if (!seen.insert(zero::ZeroModel(run.tree, s).leaves()).second) continue;
    probe.deepspeed.zero.module_granularity_threshold = g;
    sim::SimOptions quick;
    quick.model_allocator = false;
    try {
      sim::simulate(probe, quick);
    } catch (const UserError&) {
      ++refused;
      continue;
    }
    d.values.push_back(g);
  }
  d.considered = static_cast<std::int64_t>(distinct.size()) + 1;
  d.derivation = "0 (off) and one value per distinct set of leaf modules (" +
                 std::to_string(seen.size()) + " from " + std::to_string(distinct.size()) +
                 " module granularities; " + std::to_string(refused) + " refused by DeepSpeed)";
  return d;
}

Dimension boolean_dimension(const Knob& knob, bool less_memory_value, std::string why) {
  Dimension d;
  d.knob = &knob;
  d.values = {less_memory_value ? 1 : 0, less_memory_value ? 0 : 1};
  d.considered = 2;
  d.derivation = std::move(why);
  return d;
}

Dimension offload_dimension(const Knob& knob, bool nvme) {
  Dimension d;
  d.knob = &knob;
  if (nvme) d.values.push_back(static_cast<std::int64_t>(OffloadDevice::kNvme));
  d.values.push_back(static_cast<std::int64_t>(OffloadDevice::kCpu));
  d.values.push_back(static_cast<std::int64_t>(OffloadDevice::kNone));
  d.considered = 3;
  d.derivation =
      nvme ? "nvme, cpu, none" : "cpu, none (nvme needs an nvme_path in the DeepSpeed config)";
  return d;
}

// The ranks that are not tensor-parallel: data x pipeline, whatever the pipeline's depth.
std::int64_t replica_ranks(const RunSpec& run) {
  return run.parallel.data * run.parallel.pipeline;
}

// The global batch, held fixed by the layout search: micro-batch x accumulation x data-parallel.
std::int64_t global_batch(const RunSpec& run) {
  return std::max<std::int64_t>(run.deepspeed.batch.micro_batch_per_gpu, 1) *
         std::max<std::int64_t>(run.deepspeed.batch.gradient_accumulation_steps, 1) *
         run.parallel.data;
}

// At the run's own depth.
std::int64_t samples_per_rank_now(const RunSpec& run) {
  return planner::samples_per_rank(run, run.parallel.pipeline);
}

std::string batch_rule(const RunSpec& run, std::int64_t per) {
  const std::int64_t data = global_batch(run) / per;
  return "the " + std::to_string(per) +
         " samples each data-parallel rank takes per step (a global batch of " +
         std::to_string(global_batch(run)) + " over " + std::to_string(data) +
         " data-parallel ranks)";
}
std::string batch_rule(const RunSpec& run) {
  return batch_rule(run, samples_per_rank_now(run));
}

// Layout: pipeline depths that split the ranks that are not tensor-parallel evenly, leave a
// whole number of samples per data-parallel rank, and give every stage a layer.
Dimension pipeline_dimension(const RunSpec& run) {
  Dimension d;
  d.knob = find_knob("pipeline_stages");
  const std::int64_t ranks = replica_ranks(run);
  const auto layers = static_cast<std::int64_t>(pipe::layers_from_tree(run.tree).layers.size());
  for (std::int64_t p = 1; p <= ranks; ++p)
    if (ranks % p == 0 && global_batch(run) % (ranks / p) == 0 && p <= layers)
      d.values.push_back(p);
  d.considered = static_cast<std::int64_t>(d.values.size());
  d.memory_monotone = d.time_monotone = false;
  d.derivation = "every depth that divides the " + std::to_string(ranks) +
                 " ranks outside tensor parallelism and gives each stage a layer (of " +
                 std::to_string(layers) + ")";
  return d;
}

// Layout: DeepSpeed's partition methods, the run's own first (so that it is the user's value),
// then by parameters, uniform, and by the class of the model's repeated block.
Dimension partition_dimension(const RunSpec& run) {
  Dimension d;
  d.knob = find_knob("partition_method");
  const pipe::PipelineLayers pl = pipe::layers_from_tree(run.tree);
  std::map<std::string, std::int64_t> count;
  for (const pipe::Layer& l : pl.layers)
    if (l.parameter_numel > 0) ++count[l.type];
  std::string block;
  std::int64_t most = 1;
  for (const auto& [type, n] : count) {
    if (n <= most) continue;
    most = n;
    block = type;
  }
  std::vector<std::string> methods{run.deepspeed.pipeline.partition, "parameters", "uniform"};
  if (!block.empty()) methods.push_back("type:" + block);
  for (const std::string& m : methods)
    if (std::find(d.names.begin(), d.names.end(), m) == d.names.end()) d.names.push_back(m);
  for (std::size_t i = 0; i < d.names.size(); ++i)
    d.values.push_back(static_cast<std::int64_t>(i));
  d.considered = static_cast<std::int64_t>(d.values.size());
  d.memory_monotone = d.time_monotone = false;
  d.derivation = "the run's method, DeepSpeed's parameters and uniform" +
                 std::string(block.empty() ? "" : ", and type:" + block + " (the repeated block)");
  return d;
}

// Layout: every micro-batch that divides the samples per rank at every pipeline depth searched,
// smallest (least activation memory) first. Not monotone in time: a larger micro-batch computes
// more efficiently, but gathers no less often per sample once the accumulation steps are few.
Dimension micro_batch_dimension(const RunSpec& run, const std::vector<std::int64_t>& pipelines) {
  Dimension d;
  d.knob = find_knob("micro_batch");
  std::int64_t per = 0;
  for (std::int64_t p : pipelines)
    per = std::gcd(per, planner::samples_per_rank(run, p));
  for (std::int64_t m = 1; m <= per; ++m)
    if (per % m == 0) d.values.push_back(m);
  d.considered = static_cast<std::int64_t>(d.values.size());
  d.memory_monotone = d.time_monotone = false;
  d.derivation = "every micro-batch that divides " + batch_rule(run, per) +
                 "; gradient accumulation makes up the rest, so the global batch stays the same";
  return d;
}

}  // namespace

std::int64_t samples_per_rank(const RunSpec& run, std::int64_t pipeline) {
  return global_batch(run) / (replica_ranks(run) / pipeline);
}

std::int64_t current_value(const RunSpec& run, const Knob& knob) {
  const ZeroConfig& z = run.deepspeed.zero;
  const std::string_view n = knob.name;
  if (n == "max_live_parameters") return z.max_live_parameters;
  if (n == "max_reuse_distance") return z.max_reuse_distance;
  if (n == "prefetch_bucket_size") return z.prefetch_bucket_size;
  if (n == "param_persistence_threshold") return z.param_persistence_threshold;
  if (n == "model_persistence_threshold") return z.model_persistence_threshold;
  if (n == "module_granularity_threshold") return z.module_granularity_threshold;
  if (n == "reduce_bucket_size") return z.reduce_bucket_size;
  if (n == "overlap_comm") return z.overlap_comm;
  if (n == "contiguous_gradients") return z.contiguous_gradients;
  if (n == "checkpoint_interval")
    return run.parallel.pipeline > 1 ? run.deepspeed.pipeline.activation_checkpoint_interval
                                     : run.training.checkpoint_interval;
  if (n == "partition_activations")
    return run.deepspeed.activation_checkpointing.partition_activations;
  if (n == "cpu_checkpointing") return run.deepspeed.activation_checkpointing.cpu_checkpointing;
  if (n == "offload_param")
    return static_cast<std::int64_t>(z.offload_param ? z.offload_param->device
                                                     : OffloadDevice::kNone);
  if (n == "offload_optimizer")
    return static_cast<std::int64_t>(z.offload_optimizer ? z.offload_optimizer->device
                                                         : OffloadDevice::kNone);
  if (n == "micro_batch") return run.deepspeed.batch.micro_batch_per_gpu;
  if (n == "gradient_accumulation") return run.deepspeed.batch.gradient_accumulation_steps;
  if (n == "pipeline_stages") return run.parallel.pipeline;
  return 0;
}

namespace {

// The layout knobs only a run without ZeRO-3 (DeepSpeed's pipeline engine) can search.
bool is_pipeline_layout(const Knob& k) {
  return k.name == "pipeline_stages" || k.name == "partition_method";
}
// Layout values are searched only where they are valid, never added off the list.
bool is_layout(const Knob& k) {
  return is_pipeline_layout(k) || k.name == "micro_batch";
}

// --pin/--range of gradient_accumulation, as the micro-batch it implies at the fixed global batch.
std::int64_t micro_batch_for_accumulation(const RunSpec& run, const std::string& text,
                                          const char* option) {
  const std::int64_t g = parse_knob_value(*find_knob("gradient_accumulation"), text);
  const std::int64_t per = samples_per_rank_now(run);
  if (g < 1 || per % g != 0)
    fail(ErrorKind::kValue, "gradient_accumulation",
         std::string(option) + " gradient_accumulation=" + text + ": it must divide " +
             batch_rule(run));
  return per / g;
}

}  // namespace

std::int64_t parse_knob_value(const Knob& knob, const std::string& text) {
  const std::string name(knob.name);
  switch (knob.kind) {
    case KnobKind::kBoolean:
      if (text == "true" || text == "on" || text == "1") return 1;
      if (text == "false" || text == "off" || text == "0") return 0;
      fail(ErrorKind::kValue, name, name + " is true or false, not \"" + text + "\"");
    case KnobKind::kChoice:
      if (text == "none") return static_cast<std::int64_t>(OffloadDevice::kNone);
      if (text == "cpu") return static_cast<std::int64_t>(OffloadDevice::kCpu);
      if (text == "nvme") return static_cast<std::int64_t>(OffloadDevice::kNvme);
      fail(ErrorKind::kValue, name, name + " is none, cpu or nvme, not \"" + text + "\"");
    case KnobKind::kCount: {
      // Counts as DeepSpeed reads them: integers, or floats such as 5e8 that are whole.
      errno = 0;
      char* end = nullptr;
      const double v = std::strtod(text.c_str(), &end);
      if (text.empty() || end != text.c_str() + text.size() || errno != 0 || !std::isfinite(v) ||
          v < 0 || v != std::floor(v) || v > 9.2e18) {
        fail(ErrorKind::kValue, name,
             name + " is a whole number of elements (e.g. 5e8), not \"" + text + "\"");
      }
      return static_cast<std::int64_t>(v);
    }
  }
  fail(ErrorKind::kValue, name, "unknown knob kind");
}

std::string Dimension::label(std::size_t i) const {
  const std::int64_t v = values[i];
  if (!names.empty()) return names[static_cast<std::size_t>(v)];
  switch (knob->kind) {
    case KnobKind::kBoolean:
      return v ? "true" : "false";
    case KnobKind::kChoice:
      return std::string(to_string(static_cast<OffloadDevice>(v)));
    case KnobKind::kCount:
      break;
  }
  std::string s = v == kUnbounded ? "unbounded" : std::to_string(v);
  if (!model_caps.empty() && model_caps[i] != kUnbounded)
    s += " (model cap " + std::to_string(model_caps[i]) + ")";
  return s;
}

double SearchSpace::size() const {
  double n = 1;
  for (const Dimension& d : dims)
    n *= static_cast<double>(d.size());
  return n;
}

const Dimension* SearchSpace::find(std::string_view knob) const {
  for (const Dimension& d : dims)
    if (d.knob->name == knob) return &d;
  return nullptr;
}

SearchSpace build_search_space(const RunSpec& run, const SpaceOptions& given) {
  const std::int64_t stage = run.deepspeed.zero.stage;
  if (stage == 3 && run.parallel.pipeline > 1) {
    throw UserError(ErrorKind::kUnsupported,
                    SourceLocation{run.file.string(), 0, 0, "parallel.pipeline"},
                    "DeepSpeed's pipeline engine does not run ZeRO-3: set parallel.pipeline to 1, "
                    "or use ZeRO stage 0 or 1 with a pipeline");
  }
  if (!(given.grid_ratio >= 1.2 && given.grid_ratio <= 64)) {
    fail(ErrorKind::kValue, "grid_ratio",
         "the grid ratio must be between 1.2 and 64, not " + std::to_string(given.grid_ratio));
  }
  // Gradient accumulation is the micro-batch seen from the other side: pins and ranges of it
  // become the micro-batch's.
  SpaceOptions options = given;
  const bool micro_given = given.pins.count("micro_batch") || given.ranges.count("micro_batch");
  if (auto p = given.pins.find("gradient_accumulation"); p != given.pins.end()) {
    if (micro_given)
      fail(ErrorKind::kConflict, "gradient_accumulation",
           "micro_batch and gradient_accumulation are both given; at a fixed global batch one "
           "decides the other");
    options.pins.erase("gradient_accumulation");
    options.pins["micro_batch"] =
        std::to_string(micro_batch_for_accumulation(run, p->second, "--pin"));
  }
  if (auto g = given.ranges.find("gradient_accumulation"); g != given.ranges.end()) {
    if (micro_given || given.pins.count("gradient_accumulation"))
      fail(ErrorKind::kConflict, "gradient_accumulation",
           "micro_batch and gradient_accumulation are both given; at a fixed global batch one "
           "decides the other");
    options.ranges.erase("gradient_accumulation");
    // More accumulation steps, smaller micro-batches: per / m within [lo, hi].
    const Knob& ga = *find_knob("gradient_accumulation");
    const std::int64_t lo = std::max<std::int64_t>(parse_knob_value(ga, g->second.first), 1);
    const std::int64_t hi = std::max<std::int64_t>(parse_knob_value(ga, g->second.second), 1);
    const std::int64_t per = samples_per_rank_now(run);
    if (lo > hi || (per + hi - 1) / hi > per / lo)
      fail(ErrorKind::kValue, "gradient_accumulation",
           "--range gradient_accumulation=" + g->second.first + ":" + g->second.second +
               " leaves no micro-batch that divides " + batch_rule(run));
    options.ranges["micro_batch"] = {std::to_string((per + hi - 1) / hi), std::to_string(per / lo)};
  }
  const auto given_any = [&](std::string_view knob) {
    const std::string k(knob);
    return options.pins.count(k) > 0 || options.ranges.count(k) > 0;
  };
  for (const auto& [name, value] : options.pins) {
    const Knob& k = require_knob(name, "--pin");
    if (is_pipeline_layout(k) && stage >= 2)
      fail(ErrorKind::kUnsupported, name,
           "--pin " + name +
               ": DeepSpeed's pipeline engine runs ZeRO stages 0 and 1 only, and "
               "this run uses stage " +
               std::to_string(stage));
  }
  for (const auto& [name, range] : options.ranges) {
    const Knob& k = require_knob(name, "--range");
    if (is_pipeline_layout(k) && stage >= 2)
      fail(ErrorKind::kUnsupported, name,
           "--range " + name +
               ": DeepSpeed's pipeline engine runs ZeRO stages 0 and 1 only, and "
               "this run uses stage " +
               std::to_string(stage));
    if (!is_count(k))
      fail(ErrorKind::kValue, name,
           "--range " + name + ": only counts take a range; pin " + name + " instead");
    if (options.pins.count(name))
      fail(ErrorKind::kConflict, name, name + " is both pinned and given a range");
  }

  const ModelSizes sizes = model_sizes(run.tree);
  const double r = options.grid_ratio;
  const bool nvme_param =
      run.deepspeed.zero.offload_param && run.deepspeed.zero.offload_param->nvme_path.has_value();
  const bool nvme_optimizer = stage == 3 && run.deepspeed.zero.offload_optimizer &&
                              run.deepspeed.zero.offload_optimizer->nvme_path.has_value();
  const auto knob = [](std::string_view n) -> const Knob& { return *find_knob(n); };

  SearchSpace space;
  // Monotone in neither: enumerated. The layout first: each of its values is a run of its own
  // (its pipeline, its model costs scaled to the micro-batch), simulated with a cache of its own.
  // Then the checkpoint interval, because whether the checkpointing knobs act depends on it.
  const bool pipelines = stage <= 1 && (options.search_layout || given_any("pipeline_stages") ||
                                        given_any("partition_method"));
  std::vector<std::int64_t> depths{run.parallel.pipeline};
  if (pipelines) {
    Dimension d = pipeline_dimension(run);
    if (auto p = options.pins.find("pipeline_stages"); p != options.pins.end()) {
      const std::int64_t v = parse_knob_value(*d.knob, p->second);
      if (std::find(d.values.begin(), d.values.end(), v) == d.values.end())
        fail(
            ErrorKind::kValue, "pipeline_stages",
            "--pin pipeline_stages=" + p->second + ": the depths that fit are " +
                [&] {
                  std::string list;
                  for (std::int64_t x : d.values)
                    list += (list.empty() ? "" : ", ") + std::to_string(x);
                  return list;
                }() +
                " (" + d.derivation + ")");
    }
    depths = d.values;
    space.dims.push_back(std::move(d));
    space.dims.push_back(partition_dimension(run));
  }
  if (options.search_layout || pipelines || given_any("micro_batch")) {
    Dimension d = micro_batch_dimension(run, depths);
    if (auto p = options.pins.find("micro_batch"); p != options.pins.end()) {
      const std::int64_t m = parse_knob_value(*d.knob, p->second);
      if (std::find(d.values.begin(), d.values.end(), m) == d.values.end())
        fail(ErrorKind::kValue, "micro_batch",
             "--pin micro_batch=" + p->second + ": it must divide " +
                 batch_rule(run, d.values.back()));
    }
    space.dims.push_back(std::move(d));
  }
  const auto neither = [](Dimension d) {
    d.memory_monotone = d.time_monotone = false;
    return d;
  };
  {
    Dimension d;
    d.knob = &knob("checkpoint_interval");
    d.values = {1, 2, 0};
    d.considered = 3;
    d.derivation = "every layer, every second layer, or none checkpointed";
    space.dims.push_back(neither(d));
  }
  if (stage >= 1) {
    space.dims.push_back(neither(boolean_dimension(knob("contiguous_gradients"), false,
                                                   "both: it trades a copy for fragmentation")));
    space.dims.push_back(
        neither(grid_dimension(knob("reduce_bucket_size"), sizes, r * r, false, r * r)));
    space.dims.back().derivation += " (a larger bucket reduces alike, in a larger buffer)";
  }
  if (stage == 3) {
    // Leaf modules gather whole blocks at once but change the order of everything else.
    space.dims.push_back(neither(granularity_dimension(run)));

    // Monotone in memory only. Persisting a large parameter re-gathers it, exposed, after every
    // optimizer step; a larger prefetch bucket makes the gather a module waits on larger.
    const auto memory_only = [](Dimension d) {
      d.time_monotone = false;
      return d;
    };
    space.dims.push_back(memory_only(persistence_dimension(run, sizes, r)));
    space.dims.push_back(
        memory_only(grid_dimension(knob("prefetch_bucket_size"), sizes, r, true, 4)));
  }

  // Monotone in both, the ones that move memory most first: they prune the most.
  if (stage >= 1) {
    space.dims.push_back(offload_dimension(knob("offload_optimizer"), nvme_optimizer));
    if (stage < 3) space.dims.back().derivation = "cpu, none (NVMe offload is ZeRO-3's only)";
  }
  if (stage == 3) space.dims.push_back(offload_dimension(knob("offload_param"), nvme_param));
  space.dims.push_back(
      boolean_dimension(knob("cpu_checkpointing"), true, "checkpoints on the host or on the GPU"));
  if (run.parallel.tensor > 1) {
    space.dims.push_back(boolean_dimension(knob("partition_activations"), true,
                                           "checkpoints split over the tensor-parallel ranks"));
  }
  if (stage >= 1) {
    space.dims.push_back(boolean_dimension(knob("overlap_comm"), false,
                                           "communication on its own streams or in line"));
  }
  if (stage == 3) {
    space.dims.push_back(grid_dimension(knob("max_reuse_distance"), sizes, r, true, 1));
    // Last: parameters kept live by reuse distance count against this limit and can starve
    // prefetch, so time falls along the others only while this one is free (at its top).
    space.dims.push_back(grid_dimension(knob("max_live_parameters"), sizes, r, false, 1));
  }

  // Pins and ranges.
  const auto pinned_model_cap = options.pins.find("model_persistence_threshold");
  for (Dimension& d : space.dims) {
    const std::string name(d.knob->name);
    if (auto p = options.pins.find(name); p != options.pins.end() && !d.names.empty()) {
      // A method by name: one of those offered, or the user's own.
      auto at = std::find(d.names.begin(), d.names.end(), p->second);
      if (at == d.names.end()) at = d.names.insert(d.names.end(), p->second);
      d.values = {static_cast<std::int64_t>(at - d.names.begin())};
      d.considered = 1;
      d.derivation = "pinned";
      continue;
    }
    if (auto p = options.pins.find(name); p != options.pins.end()) {
      const std::int64_t v = parse_knob_value(*d.knob, p->second);
      if (d.knob->kind == KnobKind::kChoice &&
          v == static_cast<std::int64_t>(OffloadDevice::kNvme) &&
          std::find(d.values.begin(), d.values.end(), v) == d.values.end()) {
        fail(ErrorKind::kValue, name,
             "--pin " + name + "=nvme needs an nvme_path in the DeepSpeed config's " +
                 std::string(d.knob->key.substr(0, d.knob->key.rfind('.'))));
      }
      const std::int64_t cap = !d.model_caps.empty()
                                   ? (pinned_model_cap != options.pins.end()
                                          ? parse_knob_value(knob("model_persistence_threshold"),
                                                             pinned_model_cap->second)
                                          : run.deepspeed.zero.model_persistence_threshold)
                                   : 0;
      d.values = {v};
      if (!d.model_caps.empty()) d.model_caps = {cap};
      d.considered = 1;
      d.derivation = "pinned";
      continue;
    }
    if (auto g = options.ranges.find(name); g != options.ranges.end()) {
      const std::int64_t lo = parse_knob_value(*d.knob, g->second.first);
      const std::int64_t hi = parse_knob_value(*d.knob, g->second.second);
      if (lo > hi)
        fail(ErrorKind::kValue, name,
             "--range " + name + "=" + g->second.first + ":" + g->second.second +
                 ": the low end is above the high end");
      std::vector<std::int64_t> values, caps;
      for (std::size_t i = 0; i < d.values.size(); ++i) {
        if (d.values[i] < lo || d.values[i] > hi) continue;
        values.push_back(d.values[i]);
        if (!d.model_caps.empty()) caps.push_back(d.model_caps[i]);
      }
      // The range's ends are values the user asked about: searched even off the grid.
      for (std::int64_t end : {lo, hi}) {
        if (std::find(values.begin(), values.end(), end) == values.end() && d.model_caps.empty() &&
            !is_layout(*d.knob)) {
          values.insert(std::upper_bound(values.begin(), values.end(), end), end);
        }
      }
      if (values.empty())
        fail(ErrorKind::kValue, name,
             "--range " + name + "=" + g->second.first + ":" + g->second.second +
                 " leaves no value to search");
      d.values = values;
      if (!d.model_caps.empty()) d.model_caps = caps;
      d.derivation += ", within the range given";
    }
  }
  // The model cap alone: pinned on every persistence value, or searched on its own grid.
  if (pinned_model_cap != options.pins.end() &&
      !options.pins.count("param_persistence_threshold")) {
    const std::int64_t cap =
        parse_knob_value(knob("model_persistence_threshold"), pinned_model_cap->second);
    for (Dimension& d : space.dims) {
      if (d.model_caps.empty()) continue;
      std::set<std::int64_t> params(d.values.begin(), d.values.end());
      d.values.assign(params.begin(), params.end());
      d.model_caps.assign(d.values.size(), cap);
    }
  }
  if (auto g = options.ranges.find("model_persistence_threshold"); g != options.ranges.end()) {
    const std::int64_t lo = parse_knob_value(knob("model_persistence_threshold"), g->second.first);
    const std::int64_t hi = parse_knob_value(knob("model_persistence_threshold"), g->second.second);
    for (Dimension& d : space.dims) {
      if (d.model_caps.empty()) continue;
      std::vector<std::int64_t> values, caps;
      for (std::size_t i = 0; i < d.values.size(); ++i) {
        const std::int64_t cap = std::clamp(d.model_caps[i], lo, hi);
        bool dup = false;
        for (std::size_t j = 0; j < values.size(); ++j)
          dup |= values[j] == d.values[i] && caps[j] == cap;
        if (dup) continue;
        values.push_back(d.values[i]);
        caps.push_back(cap);
      }
      d.values = values;
      d.model_caps = caps;
    }
  }
  for (const Dimension& d : space.dims)
    ZP_CHECK(!d.values.empty(), "dimension ", d.knob->name, " has no value");
  return space;
}

void set_layout(RunSpec& run, std::int64_t pipeline, std::int64_t micro_batch) {
  const std::int64_t before = run.parallel.pipeline;
  if (before == pipeline && run.deepspeed.batch.micro_batch_per_gpu == micro_batch &&
      run.tree.shape().micro_batch == micro_batch)
    return;
  const std::int64_t ranks = replica_ranks(run);
  ZP_CHECK(pipeline >= 1 && ranks % pipeline == 0, "pipeline ", pipeline, " over ", ranks,
           " ranks");
  const std::int64_t per = samples_per_rank(run, pipeline);
  ZP_CHECK(micro_batch >= 1 && per % micro_batch == 0, "micro-batch ", micro_batch,
           " does not divide ", per, " samples per rank");
  run.parallel.data = ranks / pipeline;
  run.parallel.pipeline = pipeline;
  if (run.deepspeed.pipeline.stages) run.deepspeed.pipeline.stages = pipeline;
  // With a pipeline the PipelineModule checkpoints; without one, the training script does.
  if (before <= 1 && pipeline > 1) {
    run.deepspeed.pipeline.activation_checkpoint_interval = run.training.checkpoint_interval;
    run.training.checkpoint_interval = 0;
  } else if (before > 1 && pipeline <= 1) {
    run.training.checkpoint_interval = run.deepspeed.pipeline.activation_checkpoint_interval;
    run.deepspeed.pipeline.activation_checkpoint_interval = 0;
  }
  run.deepspeed.batch.micro_batch_per_gpu = micro_batch;
  run.deepspeed.batch.gradient_accumulation_steps = per / micro_batch;
  run.training.micro_batch = micro_batch;
  if (run.tree.shape().micro_batch != micro_batch) {
    const BatchShape shape{micro_batch, run.training.sequence_length, run.training.dtype};
    // A built-in model is rebuilt for the shape, exactly as the run spec's loader builds it; a
    // model file's costs are scaled, as the loader scales them.
    run.tree =
        run.model.config ? build_model(*run.model.config, shape) : rescale_tree(run.tree, shape);
  }
}

bool layout_fits(const RunSpec& run, std::int64_t pipeline, std::int64_t micro_batch) {
  const std::int64_t ranks = replica_ranks(run);
  return pipeline >= 1 && ranks % pipeline == 0 && global_batch(run) % (ranks / pipeline) == 0 &&
         micro_batch >= 1 && samples_per_rank(run, pipeline) % micro_batch == 0;
}

void set_micro_batch(RunSpec& run, std::int64_t micro_batch) {
  set_layout(run, run.parallel.pipeline, micro_batch);
}

void apply(const SearchSpace& space, const Candidate& candidate, RunSpec& run) {
  ZP_CHECK(candidate.size() == space.dims.size(), "candidate of ", candidate.size(), " values for ",
           space.dims.size(), " dimensions");
  // The layout first: the other knobs are set on the run it makes.
  std::int64_t pipeline = run.parallel.pipeline;
  std::int64_t micro_batch = run.deepspeed.batch.micro_batch_per_gpu;
  bool layout = false;
  for (std::size_t i = 0; i < space.dims.size(); ++i) {
    const Dimension& d = space.dims[i];
    const auto index = static_cast<std::size_t>(candidate[i]);
    ZP_CHECK(index < d.values.size(), "value ", index, " of ", d.knob->name);
    if (d.knob->name == "pipeline_stages") pipeline = d.values[index];
    if (d.knob->name == "micro_batch") micro_batch = d.values[index];
    layout |= d.knob->name == "pipeline_stages" || d.knob->name == "micro_batch";
  }
  if (layout) set_layout(run, pipeline, micro_batch);
  ZeroConfig& z = run.deepspeed.zero;
  ActivationCheckpointingConfig& ac = run.deepspeed.activation_checkpointing;
  for (std::size_t i = 0; i < space.dims.size(); ++i) {
    const Dimension& d = space.dims[i];
    const auto index = static_cast<std::size_t>(candidate[i]);
    const std::int64_t v = d.values[index];
    const std::string_view n = d.knob->name;
    if (n == "pipeline_stages" || n == "micro_batch") continue;
    if (n == "partition_method") {
      run.deepspeed.pipeline.partition = d.names[static_cast<std::size_t>(v)];
    } else if (n == "max_live_parameters") {
      z.max_live_parameters = v;
    } else if (n == "max_reuse_distance") {
      z.max_reuse_distance = v;
    } else if (n == "prefetch_bucket_size") {
      z.prefetch_bucket_size = v;
    } else if (n == "param_persistence_threshold") {
      z.param_persistence_threshold = v;
      z.model_persistence_threshold = d.model_caps[index];
    } else if (n == "module_granularity_threshold") {
      z.module_granularity_threshold = v;
    } else if (n == "reduce_bucket_size") {
      z.reduce_bucket_size = v;
    } else if (n == "overlap_comm") {
      z.overlap_comm = v != 0;
    } else if (n == "contiguous_gradients") {
      z.contiguous_gradients = v != 0;
    } else if (n == "checkpoint_interval") {
      if (run.parallel.pipeline > 1) {
        run.deepspeed.pipeline.activation_checkpoint_interval = v;
      } else {
        run.training.checkpoint_interval = v;
      }
    } else if (n == "partition_activations") {
      ac.partition_activations = v != 0;
    } else if (n == "cpu_checkpointing") {
      ac.cpu_checkpointing = v != 0;
    } else if (n == "offload_param" || n == "offload_optimizer") {
      const auto device = static_cast<OffloadDevice>(v);
      if (n == "offload_param") {
        if (!z.offload_param) z.offload_param.emplace();
        z.offload_param->device = device;
      } else {
        if (!z.offload_optimizer) z.offload_optimizer.emplace();
        z.offload_optimizer->device = device;
      }
    } else {
      ZP_CHECK(false, "no way to apply knob ", n);
    }
  }
}

std::string describe(const SearchSpace& space, const Candidate& candidate) {
  std::string out;
  for (std::size_t i = 0; i < space.dims.size(); ++i) {
    if (!out.empty()) out += ", ";
    out += std::string(space.dims[i].knob->name) + "=" +
           space.dims[i].label(static_cast<std::size_t>(candidate[i]));
  }
  return out;
}

}  // namespace zp::planner
