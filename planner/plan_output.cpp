#include "planner/plan_output.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <map>
#include <set>
#include <sstream>

#include "core/util/error.h"
#include "core/util/units.h"
#include "sim/simulate.h"

namespace zp::planner {
namespace {

constexpr std::int64_t kUnbounded = INT64_MAX;

std::string bytes(double b) {
  return units::format_bytes(b);
}
std::string duration(std::int64_t ns) {
  return units::format_duration_ns(ns);
}

// "1,234" for a count of configurations, which may be past what an int64 holds.
std::string configurations(double n) {
  if (n < 9e15) return units::format_count(static_cast<std::int64_t>(std::llround(n)));
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3g", n);
  return buf;
}

std::string percent(double part, double whole) {
  if (whole <= 0) return "-";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f%%", 100.0 * part / whole);
  return buf;
}

std::string_view objective_name(Objective o) {
  switch (o) {
    case Objective::kFastest:
      return "fastest";
    case Objective::kLeastMemory:
      return "least-memory";
    case Objective::kPareto:
      return "pareto";
  }
  return "?";
}

std::int64_t value_at(const SearchSpace& space, const Candidate& c, std::size_t i) {
  return space.dims[i].values[static_cast<std::size_t>(c[i])];
}

// A knob's value as DeepSpeed's JSON writes it.
Json knob_json(const Knob& knob, std::int64_t v) {
  switch (knob.kind) {
    case KnobKind::kBoolean:
      return v != 0;
    case KnobKind::kChoice:
      return std::string(to_string(static_cast<OffloadDevice>(v)));
    case KnobKind::kCount:
      break;
  }
  return v;
}

// A knob's value as a person reads it (and pastes it): 500000000, true, cpu.
std::string knob_text(const Knob& knob, std::int64_t v) {
  const Json j = knob_json(knob, v);
  return j.is_string() ? j.get<std::string>() : j.dump();
}

const Knob& model_cap_knob() {
  const Knob* k = find_knob("model_persistence_threshold");
  ZP_CHECK(k != nullptr, "no model_persistence_threshold knob");
  return *k;
}

// The pipeline depth of a candidate: its own where the layout is searched, else the run's.
std::int64_t pipeline_of(const RunSpec& run, const SearchSpace& space, const Candidate& c) {
  if (const Dimension* d = space.find("pipeline_stages"))
    return d->values[static_cast<std::size_t>(c[static_cast<std::size_t>(d - space.dims.data())])];
  return run.parallel.pipeline;
}

// Where a knob's value lives with `pipeline` stages: the DeepSpeed key, or the run spec's key for
// the checkpoint interval without a pipeline (the training script's, not a PipelineModule's).
std::string home_key(const Knob& knob, std::int64_t pipeline) {
  if (knob.name == "checkpoint_interval" && pipeline <= 1) return "training.checkpoint_interval";
  return std::string(knob.key);
}
bool in_deepspeed_config(const Knob& knob, std::int64_t pipeline) {
  return knob.home == KnobHome::kDeepSpeed &&
         !(knob.name == "checkpoint_interval" && pipeline <= 1);
}

// A dimension's value as written in a config: a name for a choice by name.
Json dim_json(const Dimension& d, std::int64_t v) {
  if (!d.names.empty()) return d.names[static_cast<std::size_t>(v)];
  return knob_json(*d.knob, v);
}

void erase_at_path(Json& root, std::string_view dotted) {
  Json* node = &root;
  std::size_t start = 0;
  for (std::size_t dot = dotted.find('.'); dot != std::string_view::npos;
       dot = dotted.find('.', start)) {
    const std::string part(dotted.substr(start, dot - start));
    if (!node->is_object() || !node->contains(part)) return;
    node = &(*node)[part];
    start = dot + 1;
  }
  if (node->is_object()) node->erase(std::string(dotted.substr(start)));
}

// The other spellings DeepSpeed accepts for a knob's key (core/config/ds_config.cpp): the
// stage3_* thresholds without their prefix, and the deprecated booleans that stand for the offload
// sections. DeepSpeed refuses two spellings of one setting, so they go when the key is written.
std::vector<std::string> other_spellings(const Knob& knob) {
  constexpr std::string_view kStage3 = "zero_optimization.stage3_";
  const std::string_view key = knob.key;
  if (key.starts_with(kStage3))
    return {"zero_optimization." + std::string(key.substr(kStage3.size()))};
  if (knob.name == "offload_param") return {"zero_optimization.cpu_offload_param"};
  if (knob.name == "offload_optimizer") return {"zero_optimization.cpu_offload"};
  return {};
}

void set_knob(Json& ds, const Knob& knob, std::int64_t v) {
  for (const std::string& alias : other_spellings(knob))
    erase_at_path(ds, alias);
  const std::string key(knob.key);
  if (knob.kind == KnobKind::kChoice && key.ends_with(".device")) {
    // An offload section: the device set, the user's other keys (nvme_path, pin_memory, ...) kept.
    const auto device = static_cast<OffloadDevice>(v);
    const std::string section_key = key.substr(0, key.size() - std::string_view(".device").size());
    Json& zero = ds["zero_optimization"];
    if (!zero.is_object()) zero = Json::object();
    const std::string section = section_key.substr(section_key.rfind('.') + 1);
    // No section (or null) already means no offload.
    if (device == OffloadDevice::kNone && (!zero.contains(section) || zero[section].is_null()))
      return;
    Json& s = zero[section];
    if (!s.is_object()) s = Json::object();
    s["device"] = std::string(to_string(device));
    return;
  }
  set_at_path(ds, key, knob_json(knob, v));
}

bool written(const Json& ds, const char* key) {
  return ds.is_object() && ds.contains(key) && !ds[key].is_null();
}

// The user's value of the dimension's knob, and whether the chosen value is the same.
bool same_as_user(const RunSpec& run, const Dimension& d, std::size_t index) {
  if (d.values[index] != current_value(run, *d.knob)) return false;
  return d.model_caps.empty() ||
         d.model_caps[index] == run.deepspeed.zero.model_persistence_threshold;
}

// The value, and for persistence the model cap when there is one (DeepSpeed's default is
// sys.maxsize: no cap).
std::string value_text(const Dimension& d, std::int64_t value, std::int64_t cap) {
  std::string s =
      d.names.empty() ? knob_text(*d.knob, value) : d.names[static_cast<std::size_t>(value)];
  if (!d.model_caps.empty() && cap != kUnbounded)
    s += ", stage3_model_persistence_threshold " + knob_text(model_cap_knob(), cap);
  return s;
}
std::string dim_text(const Dimension& d, std::size_t index) {
  return value_text(d, d.values[index], d.model_caps.empty() ? kUnbounded : d.model_caps[index]);
}
std::string user_text(const RunSpec& run, const Dimension& d) {
  return value_text(d, current_value(run, *d.knob), run.deepspeed.zero.model_persistence_threshold);
}

// A count of configurations as JSON: an integer while one holds it exactly.
Json count_json(double n) {
  if (n >= 0 && n < 9e15) return static_cast<std::int64_t>(std::llround(n));
  return n;
}

// "1.20 GiB more memory", "300 us faster", ...: the chosen configuration against another.
std::string memory_change(std::int64_t delta) {
  if (delta == 0) return "the same memory";
  return bytes(static_cast<double>(std::llabs(delta))) +
         (delta > 0 ? " more memory" : " less memory");
}
std::string time_change(std::int64_t delta) {
  if (delta == 0) return "the same step time";
  return duration(std::llabs(delta)) + (delta < 0 ? " faster" : " slower");
}
std::string traffic_change(std::int64_t delta) {
  if (delta == 0) return "the same all-gather traffic";
  return bytes(static_cast<double>(std::llabs(delta))) +
         (delta < 0 ? " less all-gather traffic" : " more all-gather traffic");
}

std::string prediction(const Evaluation& e) {
  return "step " + duration(e.step_ns) + ", peak " + bytes(static_cast<double>(e.memory)) +
         ", all-gathers " + bytes(static_cast<double>(e.gathered_bytes)) + " per step";
}

Json evaluation_json(const Evaluation& e) {
  Json j = {{"peak_memory_bytes", e.memory},
            {"peak_allocated_bytes", e.allocated},
            {"step_time_ns", e.step_ns},
            {"gathered_bytes", e.gathered_bytes},
            {"host_fits", e.host_fits}};
  if (!e.rejected.empty()) j["rejected"] = e.rejected;
  return j;
}

// The candidate's values by knob name (the model persistence cap under its own name).
Json values_json(const SearchSpace& space, const Candidate& c) {
  Json j = Json::object();
  for (std::size_t i = 0; i < space.dims.size(); ++i) {
    const Dimension& d = space.dims[i];
    const auto index = static_cast<std::size_t>(c[i]);
    j[std::string(d.knob->name)] = dim_json(d, d.values[index]);
    if (!d.model_caps.empty())
      j[std::string(model_cap_knob().name)] = knob_json(model_cap_knob(), d.model_caps[index]);
  }
  return j;
}

// The values of `c` that differ from `chosen`, as "knob=value".
std::string differences(const SearchSpace& space, const Candidate& c, const Candidate& chosen) {
  std::string out;
  for (std::size_t i = 0; i < space.dims.size(); ++i) {
    if (c[i] == chosen[i]) continue;
    if (!out.empty()) out += ", ";
    out += std::string(space.dims[i].knob->name) + "=" +
           dim_text(space.dims[i], static_cast<std::size_t>(c[i]));
  }
  return out.empty() ? "the same values" : out;
}

// Plain text columns; `align` has an 'l' or 'r' per column.
std::string columns(const std::vector<std::vector<std::string>>& rows, const std::string& indent,
                    std::string_view align) {
  std::vector<std::size_t> width;
  for (const auto& row : rows) {
    if (width.size() < row.size()) width.resize(row.size(), 0);
    for (std::size_t i = 0; i < row.size(); ++i)
      width[i] = std::max(width[i], row[i].size());
  }
  std::string out;
  for (const auto& row : rows) {
    std::string line = indent;
    for (std::size_t i = 0; i < row.size(); ++i) {
      const std::string pad(width[i] - row[i].size(), ' ');
      const bool last = i + 1 == row.size();
      const bool left = i < align.size() && align[i] == 'l';
      line += left ? row[i] + (last ? "" : pad) : pad + row[i];
      if (!last) line += "  ";
    }
    while (!line.empty() && line.back() == ' ')
      line.pop_back();
    out += line + "\n";
  }
  return out;
}

// The fastest configuration simulated (for a time budget nothing met).
std::optional<Point> fastest_simulated(const SearchResult& r) {
  std::optional<Point> best;
  for (const Point& p : r.pareto)
    if (!best || p.eval.step_ns < best->eval.step_ns) best = p;
  return best;
}

void append_missing(std::ostringstream& out, const TuneOutcome& o) {
  const RunSpec& run = *o.run;
  const SearchResult& r = o.result;
  const std::optional<std::int64_t>& budget = o.options.memory_budget;
  out << "Nothing fits";
  if (budget) out << " within " << bytes(static_cast<double>(*budget)) << " per GPU";
  if (o.options.time_budget)
    out << (budget ? " and " : " within ") << duration(*o.options.time_budget) << " per step";
  out << (r.stats.interrupted ? " among the configurations simulated before the interruption.\n"
                              : ".\n");
  if (!r.least_memory) {
    out << "  The simulator refused every configuration simulated, or their offloaded state is "
           "over the nodes' host memory ("
        << bytes(static_cast<double>(run.cluster.host_memory)) << " per node).\n";
    return;
  }
  const Point& least = *r.least_memory;
  out << "  The least memory found: " << bytes(static_cast<double>(least.eval.memory)) << " ("
      << prediction(least.eval) << ")";
  if (budget && least.eval.memory > *budget) {
    out << ", " << bytes(static_cast<double>(least.eval.memory - *budget)) << " over the budget";
  }
  out << ", with " << describe(o.space, least.candidate) << ".\n";
  if (o.options.time_budget) {
    if (auto fast = fastest_simulated(r); fast && fast->eval.step_ns > *o.options.time_budget) {
      out << "  The fastest step found: " << duration(fast->eval.step_ns) << ", "
          << duration(fast->eval.step_ns - *o.options.time_budget) << " over the time budget.\n";
    }
  }
  if (!budget || least.eval.memory <= *budget) return;

  out << "  What would fit:\n";
  out << "    - GPUs with at least " << bytes(static_cast<double>(least.eval.memory))
      << " each (this search's least memory)\n";
  switch (run.deepspeed.zero.stage) {
    case 0:
      out << "    - ZeRO stage 1 or more: without ZeRO every rank holds the whole optimizer "
             "state\n";
      break;
    case 1:
    case 2:
      out << "    - more GPUs: ZeRO-" << run.deepspeed.zero.stage << " splits the optimizer states"
          << (run.deepspeed.zero.stage == 2 ? " and gradients" : "") << " over the "
          << run.parallel.data << " data-parallel ranks (parameters stay whole; ZeRO-3 splits "
          << "them too)\n";
      break;
    default:
      out << "    - more GPUs: ZeRO-3 splits parameters, gradients and optimizer states over the "
          << run.parallel.data
          << " data-parallel ranks, so more ranks hold less each (activations stay the same)\n";
  }
  const auto tried = [&](std::string_view knob, std::int64_t value) {
    const Dimension* d = o.space.find(knob);
    return d && std::find(d->values.begin(), d->values.end(), value) != d->values.end();
  };
  const auto cpu = static_cast<std::int64_t>(OffloadDevice::kCpu);
  // Parameters go to the host with ZeRO-3 only, the optimizer with ZeRO 1 or more.
  const std::int64_t stage = run.deepspeed.zero.stage;
  for (const char* knob : {"offload_optimizer", "offload_param"}) {
    if (tried(knob, cpu) || stage == 0 || (stage < 3 && std::string_view(knob) == "offload_param"))
      continue;
    out << "    - " << knob << " to the host (--pin " << knob
        << "=cpu, or drop its pin): this search kept it off the host\n";
  }
  if (tried("offload_optimizer", cpu) && (stage < 3 || tried("offload_param", cpu))) {
    out << "    - offloading " << (stage == 3 ? "parameters and optimizer states" : "the optimizer")
        << " to the host was tried and is not enough on its own\n";
  }
  if (!tried("checkpoint_interval", 1)) {
    out << "    - activation checkpointing of every layer (--pin checkpoint_interval=1): this "
           "search did not try it\n";
  } else {
    out << "    - activation checkpointing of every layer was tried";
    if (!tried("cpu_checkpointing", 1))
      out << "; checkpoints on the host (cpu_checkpointing) were not";
    out << "\n";
  }
  if (tried("micro_batch", 1)) {
    out << "    - a micro batch of 1 was tried\n";
  } else if (run.training.micro_batch > 1) {
    out << "    - a smaller micro batch (now " << run.training.micro_batch
        << "; --layout searches it, with gradient accumulation keeping the global batch): "
           "activations shrink with it\n";
  }
}

// --- YAML ---------------------------------------------------------------------------------------

bool plain_string(const std::string& s) {
  if (s.empty()) return false;
  const auto c0 = static_cast<unsigned char>(s[0]);
  if (!(std::isalpha(c0) || s[0] == '_' || s[0] == '/')) return false;
  for (char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    if (!(std::isalnum(c) || ch == '_' || ch == '-' || ch == '.' || ch == '/')) return false;
  }
  std::string lower = s;
  for (char& ch : lower)
    ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  // Words some YAML readers take for booleans or null.
  static const std::set<std::string> kWords = {"true", "false", "null", "yes", "no", "on",
                                               "off",  "y",     "n",    "inf", "nan"};
  return !kWords.contains(lower);
}

std::string yaml_scalar(const Json& v) {
  switch (v.type()) {
    case Json::value_t::null:
      return "null";
    case Json::value_t::boolean:
      return v.get<bool>() ? "true" : "false";
    case Json::value_t::number_float: {
      const double d = v.get<double>();
      if (std::isnan(d)) return ".nan";
      if (std::isinf(d)) return d > 0 ? ".inf" : "-.inf";
      return v.dump();
    }
    case Json::value_t::string: {
      const std::string& s = v.get_ref<const std::string&>();
      // JSON's double-quoted strings are YAML's.
      return plain_string(s) ? s : v.dump(-1, ' ', false, Json::error_handler_t::replace);
    }
    default:
      return v.dump();
  }
}

bool is_scalar(const Json& v) {
  return !v.is_object() && !v.is_array();
}

// An empty container, or a list of scalars: written on one line.
bool inline_value(const Json& v) {
  if (is_scalar(v) || v.empty()) return true;
  return v.is_array() &&
         std::all_of(v.begin(), v.end(), [](const Json& e) { return is_scalar(e); });
}

std::string inline_yaml(const Json& v) {
  if (is_scalar(v)) return yaml_scalar(v);
  if (v.is_object()) return "{}";
  std::string out = "[";
  for (std::size_t i = 0; i < v.size(); ++i)
    out += (i ? ", " : "") + yaml_scalar(v[i]);
  return out + "]";
}

void emit_block(std::string& out, const Json& v, int indent, const std::vector<std::string>& order);

void emit_entry(std::string& out, const std::string& key, const Json& value, int indent) {
  out += std::string(static_cast<std::size_t>(indent), ' ') + yaml_scalar(Json(key)) + ":";
  if (inline_value(value)) {
    out += " " + inline_yaml(value) + "\n";
  } else {
    out += "\n";
    emit_block(out, value, indent + 2, {});
  }
}

void emit_block(std::string& out, const Json& v, int indent,
                const std::vector<std::string>& order) {
  if (v.is_object()) {
    for (const std::string& key : order)
      if (v.contains(key)) emit_entry(out, key, v[key], indent);
    for (const auto& [key, value] : v.items()) {
      if (std::find(order.begin(), order.end(), key) == order.end())
        emit_entry(out, key, value, indent);
    }
    return;
  }
  const std::string pad(static_cast<std::size_t>(indent), ' ');
  for (const Json& item : v) {
    if (inline_value(item)) {
      out += pad + "- " + inline_yaml(item) + "\n";
      continue;
    }
    // The item's block, two further in, with its first line's indent ending in "- ".
    std::string block;
    emit_block(block, item, indent + 2, {});
    block.replace(static_cast<std::size_t>(indent), 2, "- ");
    out += block;
  }
}

// --- SVG ----------------------------------------------------------------------------------------

std::string xml_escape(std::string_view s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

std::string num(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f", v);
  return buf;
}

// 1, 2 or 5 times a power of ten, near range / target.
double nice_step(double range, int target) {
  const double raw = range / target;
  const double power = std::pow(10.0, std::floor(std::log10(raw)));
  for (double m : {1.0, 2.0, 5.0, 10.0})
    if (raw <= m * power) return m * power;
  return 10 * power;
}

std::string tick_label(double v, double step) {
  char buf[32];
  const int decimals = step >= 1 ? 0 : static_cast<int>(std::ceil(-std::log10(step)));
  std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
  return buf;
}

struct Unit {
  double scale;
  const char* name;
};
Unit byte_unit(double max) {
  if (max >= 1024.0 * 1024 * 1024) return {1024.0 * 1024 * 1024, "GiB"};
  if (max >= 1024.0 * 1024) return {1024.0 * 1024, "MiB"};
  if (max >= 1024.0) return {1024.0, "KiB"};
  return {1, "B"};
}
Unit time_unit(double max) {
  if (max >= 1e9) return {1e9, "s"};
  if (max >= 1e6) return {1e6, "ms"};
  if (max >= 1e3) return {1e3, "us"};
  return {1, "ns"};
}

}  // namespace

std::vector<KnobEffect> knob_effects(const RunSpec& run, const SearchSpace& space,
                                     const Candidate& chosen, bool model_allocator) {
  ZP_CHECK(chosen.size() == space.dims.size(), "candidate of ", chosen.size(), " values for ",
           space.dims.size(), " dimensions");
  std::vector<KnobEffect> out;
  RunSpec work = run;
  for (std::size_t i = 0; i < space.dims.size(); ++i) {
    const Dimension& d = space.dims[i];
    const auto index = static_cast<std::size_t>(chosen[i]);
    if (same_as_user(run, d, index)) continue;
    KnobEffect effect;
    effect.dim = i;
    effect.user_value = current_value(run, *d.knob);
    effect.user_model_cap = run.deepspeed.zero.model_persistence_threshold;
    SearchSpace one = space;
    one.dims[i].values = {effect.user_value};
    if (!d.model_caps.empty()) one.dims[i].model_caps = {effect.user_model_cap};
    Candidate c = chosen;
    c[i] = 0;
    // The user's micro-batch may not divide the samples per rank at the chosen depth.
    std::int64_t pipeline = run.parallel.pipeline;
    std::int64_t micro_batch = run.deepspeed.batch.micro_batch_per_gpu;
    for (std::size_t k = 0; k < one.dims.size(); ++k) {
      const std::int64_t v = one.dims[k].values[static_cast<std::size_t>(c[k])];
      if (one.dims[k].knob->name == "pipeline_stages") pipeline = v;
      if (one.dims[k].knob->name == "micro_batch") micro_batch = v;
    }
    if (!layout_fits(run, pipeline, micro_batch)) continue;
    // apply() sets every dimension's knob, so one copy of the run serves every knob.
    apply(one, c, work);
    effect.with_user_value = evaluate(work, model_allocator);
    out.push_back(effect);
  }
  return out;
}

trace::Trace predicted_trace(const RunSpec& run, const SearchSpace& space,
                             const Candidate& candidate, bool model_allocator) {
  RunSpec work = run;
  apply(space, candidate, work);
  sim::SimOptions options;
  options.model_allocator = model_allocator;
  trace::Trace out;
  sim::simulate(work, options, &out);
  return out;
}

Json tuned_deepspeed_config(const RunSpec& run, const SearchSpace& space,
                            const Candidate& candidate) {
  ZP_CHECK(candidate.size() == space.dims.size(), "candidate of ", candidate.size(), " values for ",
           space.dims.size(), " dimensions");
  Json ds = run.deepspeed.original.is_object() ? run.deepspeed.original : Json::object();
  const std::int64_t pipeline = pipeline_of(run, space, candidate);
  for (std::size_t i = 0; i < space.dims.size(); ++i) {
    const Dimension& d = space.dims[i];
    if (!in_deepspeed_config(*d.knob, pipeline)) continue;
    const auto index = static_cast<std::size_t>(candidate[i]);
    if (!d.names.empty()) {
      set_at_path(ds, std::string(d.knob->key), dim_json(d, d.values[index]));
      continue;
    }
    set_knob(ds, *d.knob, d.values[index]);
    if (!d.model_caps.empty()) set_knob(ds, model_cap_knob(), d.model_caps[index]);
  }
  // A pipeline depth the config states must be the chosen one (DeepSpeed's own is the
  // PipelineModule's num_stages); without a pipeline, a PipelineModule's interval does not apply.
  if (space.find("pipeline_stages")) {
    if (ds.contains("pipeline") && ds["pipeline"].is_object() &&
        ds["pipeline"].contains("stages") && ds["pipeline"]["stages"].is_number_integer())
      ds["pipeline"]["stages"] = pipeline;
    if (pipeline <= 1) erase_at_path(ds, "pipeline.activation_checkpoint_interval");
  }
  // A micro-batch searched at the fixed global batch: the accumulation steps follow it.
  if (const Dimension* d = space.find("micro_batch")) {
    const auto i =
        static_cast<std::size_t>(candidate[static_cast<std::size_t>(d - space.dims.data())]);
    ds["gradient_accumulation_steps"] = samples_per_rank(run, pipeline) / d->values[i];
  }
  // What the run spec supplies and DeepSpeed needs from its config when it runs without zeroplan:
  // the micro batch (DeepSpeed refuses a config with neither train_batch_size nor
  // train_micro_batch_size_per_gpu) and the training dtype.
  if (!written(ds, "train_batch_size") && !written(ds, "train_micro_batch_size_per_gpu"))
    ds["train_micro_batch_size_per_gpu"] = run.deepspeed.batch.micro_batch_per_gpu;
  const auto says_enabled = [&](const char* section) {
    return written(ds, section) && ds[section].is_object() && ds[section].contains("enabled");
  };
  if (run.training.dtype == DType::kBFloat16 && !says_enabled("bf16") && !says_enabled("bfloat16"))
    set_at_path(ds, "bf16.enabled", true);
  if (run.training.dtype == DType::kFloat16 && !says_enabled("fp16"))
    set_at_path(ds, "fp16.enabled", true);
  return ds;
}

std::string to_yaml(const Json& value, const std::vector<std::string>& order) {
  if (!value.is_object() && !value.is_array()) return yaml_scalar(value) + "\n";
  if (value.empty()) return inline_yaml(value) + "\n";
  std::string out;
  emit_block(out, value, 0, order);
  return out;
}

std::string plan_yaml(const TuneOutcome& o, const std::filesystem::path& plan_dir) {
  ZP_CHECK(o.run != nullptr && o.result.best, "a plan needs a chosen configuration");
  const RunSpec& run = *o.run;
  ZP_CHECK(!run.file.empty(), "a plan needs the run spec's file");
  const Document doc = Document::load(run.file);
  Json root = doc.root();
  ZP_CHECK(root.is_object(), "the run spec is not a mapping");
  const Point& best = *o.result.best;
  const Candidate& c = best.candidate;

  root["deepspeed"] = tuned_deepspeed_config(run, o.space, c);
  // The run spec's own micro batch must agree with the tuned config's, or the plan would not load.
  if (const Dimension* d = o.space.find("micro_batch"); d && root.contains("training") &&
                                                        root["training"].is_object() &&
                                                        root["training"].contains("micro_batch"))
    root["training"]["micro_batch"] =
        d->values[static_cast<std::size_t>(c[static_cast<std::size_t>(d - o.space.dims.data())])];
  const std::int64_t pipeline = pipeline_of(run, o.space, c);
  for (std::size_t i = 0; i < o.space.dims.size(); ++i) {
    const Knob& k = *o.space.dims[i].knob;
    if (k.home == KnobHome::kRunSpec || !in_deepspeed_config(k, pipeline))
      set_at_path(root, home_key(k, pipeline), dim_json(o.space.dims[i], value_at(o.space, c, i)));
  }
  if (o.space.find("pipeline_stages")) {
    // The data-parallel degree follows the depth; the training script's interval is refused with
    // a pipeline.
    if (root.contains("parallel") && root["parallel"].is_object() &&
        root["parallel"].contains("data"))
      root["parallel"]["data"] = run.parallel.data * run.parallel.pipeline / pipeline;
    if (pipeline > 1) erase_at_path(root, "training.checkpoint_interval");
  }

  // A model file written relative to the run spec's folder, made relative to the plan's.
  if (root.contains("model") && root["model"].is_object() && root["model"].contains("file") &&
      root["model"]["file"].is_string()) {
    const std::filesystem::path written_path = root["model"]["file"].get<std::string>();
    if (written_path.is_relative()) {
      const std::filesystem::path target =
          std::filesystem::absolute(run.file.parent_path() / written_path);
      std::error_code ec;
      std::filesystem::path rel =
          std::filesystem::relative(target, std::filesystem::absolute(plan_dir), ec);
      root["model"]["file"] = (ec || rel.empty() ? target : rel).generic_string();
    }
  }

  Json plan = Json::object();
  plan["generated_by"] = "zeroplan tune";
  plan["source"] = run.file.generic_string();
  plan["objective"] = std::string(objective_name(o.options.objective));
  if (o.options.memory_budget) {
    plan["memory_budget_bytes"] = *o.options.memory_budget;
    plan["memory_budget"] = bytes(static_cast<double>(*o.options.memory_budget));
  }
  if (o.options.time_budget) {
    plan["time_budget_ns"] = *o.options.time_budget;
    plan["time_budget"] = duration(*o.options.time_budget);
  }
  plan["memory_measure"] = o.options.model_allocator ? "reserved" : "allocated";
  plan["chosen"] = values_json(o.space, c);
  Json predicted = evaluation_json(best.eval);
  predicted["peak_memory"] = bytes(static_cast<double>(best.eval.memory));
  predicted["step_time"] = duration(best.eval.step_ns);
  plan["predicted"] = predicted;
  if (o.baseline) {
    Json yours = evaluation_json(*o.baseline);
    yours["peak_memory"] = bytes(static_cast<double>(o.baseline->memory));
    yours["step_time"] = duration(o.baseline->step_ns);
    plan["baseline"] = yours;
  }
  const SearchStats& s = o.result.stats;
  plan["search"] = {
      {"configurations", count_json(s.space)},
      {"simulated", s.simulated},
      {"pruned", count_json(s.pruned_over_budget + s.pruned_too_slow + s.pruned_dominated)},
      {"collapsed_values", s.collapsed},
      {"seconds", s.seconds},
      {"exhaustive", o.options.exhaustive},
      {"interrupted", s.interrupted}};
  root.erase("plan");

  std::string out = "# Written by zeroplan tune from " + run.file.generic_string() +
                    ": the run spec with the tuned DeepSpeed\n"
                    "# config inline. It loads as a run spec (zeroplan simulate, zeroplan exec); "
                    "the plan section\n# records the choice and the prediction, and is ignored "
                    "there.\n";
  out += to_yaml(root, {"name", "description", "model", "cluster", "training", "parallel",
                        "z3_leaf_modules", "deepspeed_version", "deepspeed"});
  out += "plan:\n";
  emit_block(
      out, plan, 2,
      {"generated_by", "source", "objective", "memory_budget", "memory_budget_bytes", "time_budget",
       "time_budget_ns", "memory_measure", "chosen", "predicted", "baseline", "search"});
  return out;
}

std::string missing_summary(const TuneOutcome& o) {
  if (o.result.best) return {};
  std::string out = "nothing fits";
  const auto& budget = o.options.memory_budget;
  if (budget) out += " in " + bytes(static_cast<double>(*budget)) + " per GPU";
  if (o.result.least_memory) {
    const std::int64_t least = o.result.least_memory->eval.memory;
    out += ": the least memory found is " + bytes(static_cast<double>(least));
    if (budget && least > *budget)
      out += " (" + bytes(static_cast<double>(least - *budget)) + " over)";
  } else {
    out += ": the simulator refused every configuration";
  }
  if (o.options.time_budget) {
    if (auto fast = fastest_simulated(o.result);
        fast && fast->eval.step_ns > *o.options.time_budget)
      out += "; the fastest step found is " + duration(fast->eval.step_ns) + " (" +
             duration(fast->eval.step_ns - *o.options.time_budget) + " over the time budget)";
  }
  return out;
}

std::string tune_report(const TuneOutcome& o) {
  ZP_CHECK(o.run != nullptr, "a report needs the run");
  const RunSpec& run = *o.run;
  const SearchResult& r = o.result;
  const SearchStats& s = r.stats;
  std::ostringstream out;

  out << "zeroplan tune: " << (run.name.empty() ? run.file.filename().string() : run.name) << " ("
      << run.file.generic_string() << ")\n";
  out << "Model      " << run.model.label << ": "
      << units::format_count(run.tree.total_parameters()) << " parameters, "
      << zp::to_string(run.training.dtype) << ", micro batch " << run.training.micro_batch << " x "
      << run.training.sequence_length << " tokens; " << run.cluster.total_gpus() << " GPUs ("
      << run.cluster.nodes << " x " << run.cluster.gpus_per_node << " " << run.cluster.gpu
      << "), data-parallel " << run.parallel.data << "\n";
  out << "Objective  ";
  switch (o.options.objective) {
    case Objective::kFastest:
      out << "the fastest step";
      break;
    case Objective::kLeastMemory:
      out << "the least memory";
      break;
    case Objective::kPareto:
      out << "the Pareto front of memory against step time (its fastest point is chosen)";
      break;
  }
  if (o.options.memory_budget)
    out << " within " << bytes(static_cast<double>(*o.options.memory_budget)) << " per GPU";
  if (o.options.time_budget)
    out << (o.options.memory_budget ? " and " : " within ") << duration(*o.options.time_budget)
        << " per step";
  out << "; memory is the peak "
      << (o.options.model_allocator ? "reserved by PyTorch's caching allocator"
                                    : "allocated (allocator not modelled)")
      << " on the busiest rank\n";
  if (s.interrupted) out << "Stopped    interrupted: the best configuration found so far\n";
  out << "\n";

  if (r.best) {
    const Point& best = *r.best;
    out << "Chosen     " << prediction(best.eval);
    if (o.options.memory_budget) {
      out << "; " << bytes(static_cast<double>(*o.options.memory_budget - best.eval.memory))
          << " under the budget";
    }
    out << "\n";
    if (o.baseline) {
      const Evaluation& b = *o.baseline;
      out << "Yours      ";
      if (!b.rejected.empty()) {
        out << "not simulated: " << b.rejected << "\n";
      } else {
        out << prediction(b);
        if (o.options.memory_budget && b.memory > *o.options.memory_budget)
          out << " (" << bytes(static_cast<double>(b.memory - *o.options.memory_budget))
              << " over the budget)";
        out << "\n           the tuned configuration: "
            << time_change(best.eval.step_ns - b.step_ns);
        if (b.step_ns > 0 && best.eval.step_ns != b.step_ns)
          out << " ("
              << percent(static_cast<double>(std::llabs(best.eval.step_ns - b.step_ns)),
                         static_cast<double>(b.step_ns))
              << ")";
        out << ", " << memory_change(best.eval.memory - b.memory) << ", "
            << traffic_change(best.eval.gathered_bytes - b.gathered_bytes) << "\n";
      }
    }
    out << "\nChosen values (where they differ from yours: your value alone put back, every other "
           "knob as chosen):\n";
    for (std::size_t i = 0; i < o.space.dims.size(); ++i) {
      const Dimension& d = o.space.dims[i];
      const auto index = static_cast<std::size_t>(best.candidate[i]);
      out << "  " << home_key(*d.knob, pipeline_of(run, o.space, best.candidate)) << " = "
          << dim_text(d, index);
      const bool same = same_as_user(run, d, index);
      out << (same ? "  (as yours)" : "  (yours: " + user_text(run, d) + ")");
      if (d.size() == 1) out << ", pinned";
      out << "\n      " << d.knob->trade << "\n";
      for (const KnobEffect& e : o.effects) {
        if (e.dim != i) continue;
        if (!e.with_user_value.rejected.empty()) {
          out << "      yours here is refused by the simulator: " << e.with_user_value.rejected
              << "\n";
        } else {
          const Evaluation& u = e.with_user_value;
          out << "      against yours: " << memory_change(best.eval.memory - u.memory) << ", "
              << time_change(best.eval.step_ns - u.step_ns) << ", "
              << traffic_change(best.eval.gathered_bytes - u.gathered_bytes) << "\n";
        }
      }
    }
    if (!r.runners_up.empty()) {
      out << "\nRunners-up (what differs from the chosen configuration):\n";
      std::size_t n = 1;
      for (const Point& p : r.runners_up) {
        out << "  " << ++n << ". " << prediction(p.eval) << "\n       "
            << differences(o.space, p.candidate, best.candidate) << "\n";
      }
    }
  } else {
    append_missing(out, o);
  }

  if (!r.pareto.empty()) {
    out << "\nPareto front of memory against step time (" << r.pareto.size() << " point"
        << (r.pareto.size() == 1 ? "" : "s") << "; pareto.svg plots it):\n";
    std::vector<std::vector<std::string>> rows = {{"peak memory", "step time", ""}};
    for (const Point& p : r.pareto) {
      std::string mark;
      if (r.best && p.candidate == r.best->candidate) mark = "chosen";
      if (o.options.memory_budget && p.eval.memory > *o.options.memory_budget)
        mark = "over the budget";
      rows.push_back({bytes(static_cast<double>(p.eval.memory)), duration(p.eval.step_ns), mark});
    }
    out << columns(rows, "  ", "rrl");
  }

  const double pruned = s.pruned_over_budget + s.pruned_too_slow + s.pruned_dominated;
  out << "\nSearch";
  if (o.options.exhaustive) out << " (exhaustive)";
  out << ":\n";
  std::vector<std::vector<std::string>> figures = {
      {"configurations in the space", configurations(s.space)},
      {"simulated", units::format_count(s.simulated)},
      {"  deciding as an earlier one (its timed step reused)", units::format_count(s.shared_steps)},
      {"examined one by one", units::format_count(s.reached)},
      {"pruned", configurations(pruned)},
      {"  over the memory budget", configurations(s.pruned_over_budget)},
      {"  over the time budget", configurations(s.pruned_too_slow)},
      {"  cannot beat the best found", configurations(s.pruned_dominated)},
      {"values merged (DeepSpeed acts on them alike)", units::format_count(s.collapsed)},
  };
  char seconds[32];
  std::snprintf(seconds, sizeof seconds, "%.2f s", s.seconds);
  figures.push_back({"time", std::string(seconds) + " on " + std::to_string(o.options.workers) +
                                 " worker" + (o.options.workers == 1 ? "" : "s")});
  out << columns(figures, "  ", "lr");

  out << "\nKnobs searched (values from least memory to most):\n";
  std::vector<std::vector<std::string>> knobs_rows = {{"knob", "values", "how they were chosen"}};
  for (const Dimension& d : o.space.dims) {
    std::string count = std::to_string(d.size());
    if (d.considered > static_cast<std::int64_t>(d.size()))
      count += " of " + std::to_string(d.considered);
    knobs_rows.push_back({std::string(d.knob->name), count, d.derivation});
  }
  out << columns(knobs_rows, "  ", "lrl");
  return out.str();
}

std::string pareto_svg(const TuneOutcome& o) {
  ZP_CHECK(o.run != nullptr, "a plot needs the run");
  const SearchResult& r = o.result;
  constexpr double kWidth = 760, kHeight = 480;
  constexpr double kLeft = 90, kRight = 30, kTop = 50, kBottom = 60;
  const double plot_w = kWidth - kLeft - kRight, plot_h = kHeight - kTop - kBottom;

  struct Marked {
    double time, memory;
  };
  std::vector<Marked> all;
  for (const Point& p : r.pareto)
    all.push_back({static_cast<double>(p.eval.step_ns), static_cast<double>(p.eval.memory)});
  for (const Point& p : r.runners_up)
    all.push_back({static_cast<double>(p.eval.step_ns), static_cast<double>(p.eval.memory)});
  if (r.best)
    all.push_back(
        {static_cast<double>(r.best->eval.step_ns), static_cast<double>(r.best->eval.memory)});
  const bool show_baseline = o.baseline && o.baseline->rejected.empty();
  if (show_baseline)
    all.push_back(
        {static_cast<double>(o.baseline->step_ns), static_cast<double>(o.baseline->memory)});

  double t_min = 0, t_max = 1, m_max = 1;
  if (!all.empty()) {
    t_min = t_max = all.front().time;
    for (const Marked& m : all) {
      t_min = std::min(t_min, m.time);
      t_max = std::max(t_max, m.time);
      m_max = std::max(m_max, m.memory);
    }
  }
  const std::optional<std::int64_t>& budget = o.options.memory_budget;
  // The budget is drawn when it is on the plot's scale; a budget far above every point would
  // flatten them.
  const bool budget_on_plot = budget && static_cast<double>(*budget) <= 2.0 * m_max;
  if (budget_on_plot) m_max = std::max(m_max, static_cast<double>(*budget));
  if (t_max <= t_min) {
    const double pad = std::max(1.0, t_min * 0.05);
    t_min -= pad;
    t_max += pad;
  } else {
    const double pad = (t_max - t_min) * 0.08;
    t_min = std::max(0.0, t_min - pad);
    t_max += pad;
  }
  m_max *= 1.1;

  const Unit tu = time_unit(t_max), mu = byte_unit(m_max);
  const auto x = [&](double t) { return kLeft + (t - t_min) / (t_max - t_min) * plot_w; };
  const auto y = [&](double m) { return kTop + plot_h - m / m_max * plot_h; };

  std::ostringstream svg;
  svg << R"(<svg xmlns="http://www.w3.org/2000/svg" width=")" << kWidth << R"(" height=")"
      << kHeight << R"(" viewBox="0 0 )" << kWidth << " " << kHeight
      << R"(" font-family="sans-serif" font-size="12">)"
      << "\n";
  svg << R"(<rect width="100%" height="100%" fill="white"/>)"
      << "\n";
  const std::string name = o.run->name.empty() ? o.run->file.filename().string() : o.run->name;
  svg << R"(<text x=")" << num(kWidth / 2) << R"(" y="24" text-anchor="middle" font-size="15">)"
      << xml_escape(name + ": peak memory against step time") << "</text>\n";

  // Axes, grid and ticks.
  svg << R"(<g stroke="#999" stroke-width="1">)"
      << "\n";
  svg << R"(<line x1=")" << num(kLeft) << R"(" y1=")" << num(kTop + plot_h) << R"(" x2=")"
      << num(kLeft + plot_w) << R"(" y2=")" << num(kTop + plot_h) << R"("/>)"
      << "\n";
  svg << R"(<line x1=")" << num(kLeft) << R"(" y1=")" << num(kTop) << R"(" x2=")" << num(kLeft)
      << R"(" y2=")" << num(kTop + plot_h) << R"("/>)"
      << "\n";
  svg << "</g>\n";
  const double t_step = nice_step((t_max - t_min) / tu.scale, 6) * tu.scale;
  svg << R"(<g text-anchor="middle" fill="#333">)"
      << "\n";
  for (double t = std::ceil(t_min / t_step) * t_step; t <= t_max + t_step * 1e-9; t += t_step) {
    const double px = x(t);
    svg << R"(<line x1=")" << num(px) << R"(" y1=")" << num(kTop + plot_h) << R"(" x2=")" << num(px)
        << R"(" y2=")" << num(kTop + plot_h + 5) << R"(" stroke="#999"/>)"
        << R"(<line x1=")" << num(px) << R"(" y1=")" << num(kTop) << R"(" x2=")" << num(px)
        << R"(" y2=")" << num(kTop + plot_h) << R"(" stroke="#eee"/>)";
    svg << R"(<text x=")" << num(px) << R"(" y=")" << num(kTop + plot_h + 19) << R"(">)"
        << tick_label(t / tu.scale, t_step / tu.scale) << "</text>\n";
  }
  svg << "</g>\n";
  const double m_step = nice_step(m_max / mu.scale, 6) * mu.scale;
  svg << R"(<g text-anchor="end" fill="#333">)"
      << "\n";
  for (double m = 0; m <= m_max + m_step * 1e-9; m += m_step) {
    const double py = y(m);
    svg << R"(<line x1=")" << num(kLeft - 5) << R"(" y1=")" << num(py) << R"(" x2=")" << num(kLeft)
        << R"(" y2=")" << num(py) << R"(" stroke="#999"/>)"
        << R"(<line x1=")" << num(kLeft) << R"(" y1=")" << num(py) << R"(" x2=")"
        << num(kLeft + plot_w) << R"(" y2=")" << num(py) << R"(" stroke="#eee"/>)";
    svg << R"(<text x=")" << num(kLeft - 8) << R"(" y=")" << num(py + 4) << R"(">)"
        << tick_label(m / mu.scale, m_step / mu.scale) << "</text>\n";
  }
  svg << "</g>\n";
  svg << R"(<text x=")" << num(kLeft + plot_w / 2) << R"(" y=")" << num(kHeight - 14)
      << R"svg(" text-anchor="middle">step time ()svg" << tu.name << ")</text>\n";
  svg << R"svg(<text transform="translate(22 )svg" << num(kTop + plot_h / 2)
      << R"svg() rotate(-90)" text-anchor="middle">peak memory per GPU ()svg" << mu.name << ", "
      << (o.options.model_allocator ? "reserved" : "allocated") << ")</text>\n";

  // The budget.
  if (budget_on_plot) {
    const double py = y(static_cast<double>(*budget));
    svg << R"(<line class="budget" x1=")" << num(kLeft) << R"(" y1=")" << num(py) << R"(" x2=")"
        << num(kLeft + plot_w) << R"(" y2=")" << num(py)
        << R"(" stroke="#c0392b" stroke-dasharray="6 4"/>)"
        << "\n";
    svg << R"(<text x=")" << num(kLeft + plot_w - 4) << R"(" y=")" << num(py - 5)
        << R"(" text-anchor="end" fill="#c0392b">)"
        << xml_escape("memory budget " + bytes(static_cast<double>(*budget))) << "</text>\n";
  } else if (budget) {
    svg << R"(<text x=")" << num(kLeft + plot_w - 4) << R"(" y=")" << num(kTop - 10)
        << R"(" text-anchor="end" fill="#c0392b">)"
        << xml_escape("memory budget " + bytes(static_cast<double>(*budget)) +
                      " (above the plotted range)")
        << "</text>\n";
  }

  // The front, as the staircase it is, and its points.
  if (!r.pareto.empty()) {
    svg << R"(<polyline class="front" fill="none" stroke="#2c7fb8" stroke-width="1.5" points=")";
    for (std::size_t i = 0; i < r.pareto.size(); ++i) {
      const Evaluation& e = r.pareto[i].eval;
      if (i > 0) {
        svg << num(x(static_cast<double>(r.pareto[i - 1].eval.step_ns))) << ","
            << num(y(static_cast<double>(e.memory))) << " ";
      }
      svg << num(x(static_cast<double>(e.step_ns))) << "," << num(y(static_cast<double>(e.memory)))
          << " ";
    }
    svg << R"("/>)"
        << "\n";
  }
  const auto point = [&](const Point& p, const char* cls, const char* fill, double radius) {
    svg << R"(<circle class=")" << cls << R"(" cx=")" << num(x(static_cast<double>(p.eval.step_ns)))
        << R"(" cy=")" << num(y(static_cast<double>(p.eval.memory))) << R"(" r=")" << num(radius)
        << R"(" fill=")" << fill << R"("><title>)"
        << xml_escape(bytes(static_cast<double>(p.eval.memory)) + ", " + duration(p.eval.step_ns) +
                      ": " + describe(o.space, p.candidate))
        << "</title></circle>\n";
  };
  for (const Point& p : r.runners_up)
    point(p, "runner-up", "#fdae61", 4);
  for (const Point& p : r.pareto)
    point(p, "front", "#2c7fb8", 4);
  if (show_baseline) {
    const double px = x(static_cast<double>(o.baseline->step_ns));
    const double py = y(static_cast<double>(o.baseline->memory));
    svg << R"(<rect class="baseline" x=")" << num(px - 5) << R"(" y=")" << num(py - 5)
        << R"(" width="10" height="10" fill="none" stroke="#555" stroke-width="2"><title>)"
        << xml_escape("yours: " + bytes(static_cast<double>(o.baseline->memory)) + ", " +
                      duration(o.baseline->step_ns))
        << "</title></rect>\n";
    svg << R"(<text x=")" << num(px + 8) << R"(" y=")" << num(py + 14)
        << R"(" fill="#555">yours</text>)"
        << "\n";
  }
  if (r.best) {
    const double px = x(static_cast<double>(r.best->eval.step_ns));
    const double py = y(static_cast<double>(r.best->eval.memory));
    svg << R"(<circle class="chosen" cx=")" << num(px) << R"(" cy=")" << num(py)
        << R"(" r="8" fill="none" stroke="#c0392b" stroke-width="2.5"/>)"
        << "\n";
    svg << R"(<text x=")" << num(px + 10) << R"(" y=")" << num(py - 8)
        << R"(" fill="#c0392b" font-weight="bold">)"
        << xml_escape("chosen: " + bytes(static_cast<double>(r.best->eval.memory)) + ", " +
                      duration(r.best->eval.step_ns))
        << "</text>\n";
  }

  // Legend, above the plot so that it hides no point.
  const double lx = kLeft + 6, ly = kTop - 14;
  svg << R"(<g class="legend">)"
      << R"(<circle cx=")" << num(lx) << R"(" cy=")" << num(ly) << R"(" r="4" fill="#2c7fb8"/>)"
      << R"(<text x=")" << num(lx + 10) << R"(" y=")" << num(ly + 4) << R"(">Pareto front</text>)";
  if (!r.runners_up.empty()) {
    svg << R"(<circle cx=")" << num(lx + 110) << R"(" cy=")" << num(ly)
        << R"(" r="4" fill="#fdae61"/>)"
        << R"(<text x=")" << num(lx + 120) << R"(" y=")" << num(ly + 4) << R"(">runners-up</text>)";
  }
  svg << "</g>\n";
  svg << "</svg>\n";
  return svg.str();
}

Json tune_json(const TuneOutcome& o) {
  ZP_CHECK(o.run != nullptr, "the JSON needs the run");
  const RunSpec& run = *o.run;
  const SearchResult& r = o.result;
  const SearchStats& s = r.stats;
  Json j;
  j["run"] = run.name;
  j["run_file"] = run.file.generic_string();
  j["objective"] = std::string(objective_name(o.options.objective));
  j["memory_budget_bytes"] = o.options.memory_budget ? Json(*o.options.memory_budget) : Json();
  j["time_budget_ns"] = o.options.time_budget ? Json(*o.options.time_budget) : Json();
  j["memory_measure"] = o.options.model_allocator ? "reserved" : "allocated";
  j["fits"] = r.best.has_value();
  if (r.best) {
    Json chosen = Json::object();
    for (std::size_t i = 0; i < o.space.dims.size(); ++i) {
      const Dimension& d = o.space.dims[i];
      const auto index = static_cast<std::size_t>(r.best->candidate[i]);
      chosen[std::string(d.knob->name)] = {
          {"key", home_key(*d.knob, pipeline_of(run, o.space, r.best->candidate))},
          {"value", dim_json(d, d.values[index])},
          {"user_value", dim_json(d, current_value(run, *d.knob))}};
      if (!d.model_caps.empty()) {
        const Knob& cap = model_cap_knob();
        chosen[std::string(cap.name)] = {
            {"key", std::string(cap.key)},
            {"value", knob_json(cap, d.model_caps[index])},
            {"user_value", knob_json(cap, run.deepspeed.zero.model_persistence_threshold)}};
      }
    }
    j["chosen"] = chosen;
    j["predicted"] = evaluation_json(r.best->eval);
  } else {
    j["chosen"] = nullptr;
    j["predicted"] = nullptr;
    j["missing"] = missing_summary(o);
  }
  j["baseline"] = o.baseline ? evaluation_json(*o.baseline) : Json();
  if (r.least_memory) {
    j["least_memory"] = {{"values", values_json(o.space, r.least_memory->candidate)},
                         {"predicted", evaluation_json(r.least_memory->eval)}};
  } else {
    j["least_memory"] = nullptr;
  }
  j["runners_up"] = Json::array();
  for (const Point& p : r.runners_up)
    j["runners_up"].push_back(
        {{"values", values_json(o.space, p.candidate)}, {"predicted", evaluation_json(p.eval)}});
  j["pareto"] = Json::array();
  for (const Point& p : r.pareto)
    j["pareto"].push_back({{"values", values_json(o.space, p.candidate)},
                           {"peak_memory_bytes", p.eval.memory},
                           {"step_time_ns", p.eval.step_ns}});
  j["search"] = {
      {"configurations", count_json(s.space)},
      {"simulated", s.simulated},
      {"examined", s.reached},
      {"pruned",
       {{"total", count_json(s.pruned_over_budget + s.pruned_too_slow + s.pruned_dominated)},
        {"over_memory_budget", count_json(s.pruned_over_budget)},
        {"over_time_budget", count_json(s.pruned_too_slow)},
        {"dominated", count_json(s.pruned_dominated)}}},
      {"collapsed_values", s.collapsed},
      {"shared_steps", s.shared_steps},
      {"seconds", s.seconds},
      {"workers", o.options.workers},
      {"exhaustive", o.options.exhaustive},
      {"interrupted", s.interrupted}};
  j["knobs"] = Json::array();
  for (const Dimension& d : o.space.dims) {
    Json values = Json::array();
    for (std::int64_t v : d.values)
      values.push_back(dim_json(d, v));
    j["knobs"].push_back({{"name", std::string(d.knob->name)},
                          {"key", home_key(*d.knob, run.parallel.pipeline)},
                          {"values", values},
                          {"considered", d.considered},
                          {"derivation", d.derivation}});
  }
  return j;
}

}  // namespace zp::planner
