// `zeroplan validate RUN.yaml`: the simulator's prediction of a run against a real execution of
// it. The simulator runs here, zeroplan-exec trains the run on local ranks and writes its measured
// trace; core/trace/compare.h compares the two traces, and this command prints the comparison and
// exits 3 when a target is missed.

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <memory>
#include <optional>

#include "cli/commands.h"
#include "cli/scratch_dir.h"
#include "cli/sibling_program.h"
#include "cli/table.h"
#include "core/config/document.h"
#include "core/config/run_spec.h"
#include "core/trace/compare.h"
#include "core/trace/native_format.h"
#include "core/util/units.h"
#include "sim/hardware/compute_model.h"
#include "sim/network/collectives.h"
#include "sim/simulate.h"

namespace zp::cli {
namespace {

namespace fs = std::filesystem;
using trace::Comparison;
using trace::Figure;
using trace::RankComparison;

std::string bytes(std::int64_t b) {
  return units::format_bytes(static_cast<double>(b));
}
std::string duration(std::int64_t ns) {
  return units::format_duration_ns(ns);
}
std::string percent(double fraction) {
  char text[32];
  std::snprintf(text, sizeof text, "%+.2f%%", 100.0 * fraction);
  return text;
}
std::string plain_percent(double fraction) {
  char text[32];
  std::snprintf(text, sizeof text, "%g%%", 100.0 * fraction);
  return text;
}
std::string verdict(bool ok) {
  return ok ? "ok" : "MISSED";
}

// A cluster description written by `zeroplan calibrate` (or by hand): the value of a run spec's
// `cluster:` key, alone in its file or under a `cluster` key. The run's layout (nodes, GPUs per
// node) stays the run spec's: the description gives what one rank of this machine can do.
ClusterSpec read_cluster_file(const std::string& path, const ClusterSpec& run_cluster) {
  if (!fs::is_regular_file(path)) {
    throw UserError(ErrorKind::kIo, SourceLocation{"", 0, 0, "--cluster"},
                    "cannot read " + path + ": no such file");
  }
  const Document doc = Document::load(path);
  Node node(doc);
  if (node.value().is_object() && node.value().contains("cluster")) node = node.child("cluster");
  Provenance provenance;
  ClusterSpec cluster = parse_cluster(node, provenance);
  cluster.nodes = run_cluster.nodes;
  cluster.gpus_per_node = run_cluster.gpus_per_node;
  return cluster;
}

void print_rank(std::ostream& out, const Comparison& c, const RankComparison& r,
                std::size_t modules) {
  out << "rank " << r.global_rank << " (predicted by '" << r.predicted_label << "')\n";
  Table memory({"memory at the peak", "predicted", "measured", "error", "target"},
               {Table::Align::kLeft, Table::Align::kRight, Table::Align::kRight,
                Table::Align::kRight, Table::Align::kLeft});
  memory.add({"peak (device)", bytes(r.peak.predicted), bytes(r.peak.measured),
              percent(r.peak.error), verdict(r.peak.ok)});
  for (const trace::CategoryFigure& cat : r.categories) {
    memory.add({"  " + std::string(trace::to_string(cat.category)), bytes(cat.figure.predicted),
                bytes(cat.figure.measured), percent(cat.figure.error), verdict(cat.figure.ok)});
  }
  memory.print(out, "  ");

  Table collectives({"collectives, steps 0-" + std::to_string(c.steps - 1), "count", "measured",
                     "bytes", "measured", "target"},
                    {Table::Align::kLeft, Table::Align::kRight, Table::Align::kRight,
                     Table::Align::kRight, Table::Align::kRight, Table::Align::kLeft});
  for (const trace::CollectiveFigure& col : r.collectives) {
    collectives.add({std::string(trace::to_string(col.kind)), std::to_string(col.count.predicted),
                     std::to_string(col.count.measured), std::to_string(col.bytes.predicted),
                     std::to_string(col.bytes.measured), verdict(col.count.ok && col.bytes.ok)});
  }
  if (!r.collectives.empty()) collectives.print(out, "  ");

  if (r.decisions) {
    out << "  decisions: " << r.decisions->compared << " gathers and reductions predicted, ";
    if (r.decisions->ok) {
      out << "issued identically: ok\n";
    } else {
      out << r.decisions->mismatches << " differ: MISSED; first at " << r.decisions->first_mismatch
          << "\n";
    }
  } else {
    out << "  decisions: no gathers or gradient reductions in either trace\n";
  }

  const std::string steady =
      c.steady_from == c.steps - 1
          ? "step " + std::to_string(c.steady_from)
          : "steps " + std::to_string(c.steady_from) + "-" + std::to_string(c.steps - 1);
  Table time({"time per step, " + steady, "predicted", "measured", "error", "target"},
             {Table::Align::kLeft, Table::Align::kRight, Table::Align::kRight, Table::Align::kRight,
              Table::Align::kLeft});
  time.add({"step", duration(r.step_time.predicted), duration(r.step_time.measured),
            percent(r.step_time.error),
            c.time_judged ? verdict(r.step_time.ok) : std::string("not judged")});
  time.add({"compute", duration(r.compute_time.predicted), duration(r.compute_time.measured),
            percent(r.compute_time.error), ""});
  for (std::size_t i = 0; i < r.modules.size() && i < modules; ++i) {
    const trace::ModuleTime& m = r.modules[i];
    time.add({"  " + m.module + " " + std::string(trace::to_string(m.kind)),
              duration(m.time.predicted), duration(m.time.measured),
              m.time.measured > 0 ? percent(m.time.error) : "-", ""});
  }
  time.print(out, "  ");
  out << "\n";
}

// How fast the machine ran during the execution against the cluster it is judged with: exec times
// a dense layer (a speed probe) before and after the steps, and the simulator prices the same
// call. On a shared machine the speed drifts between calibration and validation, and a step time
// can be no nearer its prediction than the machine is to its calibration.
struct ProbeSpeed {
  bool measured = false;
  double amount = 0;     // the probe's FLOPs or bytes a call
  double predicted = 0;  // seconds
  double before = 0, after = 0;
  double speed_before() const { return predicted / before; }
  double speed_after() const { return predicted / after; }
};

// The probe's seconds before and after the steps from the trace's metadata[key], and its
// `amount_key` figure; nothing measured where any is missing or not positive.
ProbeSpeed read_probe(const trace::Trace& measured, const char* key, const char* amount_key) {
  ProbeSpeed s;
  const Json& m = measured.metadata;
  if (!m.contains(key)) return s;
  const Json& p = m.at(key);
  s.amount = p.value(amount_key, 0.0);
  s.before = p.value("seconds_before", 0.0);
  s.after = p.value("seconds_after", 0.0);
  s.measured = s.amount > 0 && s.before > 0 && s.after > 0;
  return s;
}

ProbeSpeed machine_speed(const trace::Trace& measured, const RunSpec& run) {
  ProbeSpeed s = read_probe(measured, "speed_probe", "flops");
  if (!s.measured) return s;
  const double bytes = measured.metadata.at("speed_probe").value("bytes", 0.0);
  // One kernel, as the simulator prices a dense layer's: a call alone, as calibrate timed it, so
  // without the cluster's step slowdown.
  ClusterSpec alone = run.cluster;
  alone.step_slowdown = {};
  const sim::ComputeModel compute(alone, DType::kFloat32);
  s.predicted = static_cast<double>(compute.kernels(1, static_cast<std::int64_t>(s.amount),
                                                    static_cast<std::int64_t>(bytes))) *
                1e-9;
  s.measured = s.predicted > 0;
  return s;
}

// What a step adds to a collective during the execution against the cluster: exec times an
// all-gather after a piece of compute (calibrate's in-step point) before and after the steps, and
// the simulator prices the same all-gather over the ranks (its hops, bytes and
// collective_overhead). On CPU ranks it drifts further than the speed: within minutes, a step's
// collectives here took 530 to 911 us beyond their idle time.
ProbeSpeed collective_speed(const trace::Trace& measured, const RunSpec& run) {
  ProbeSpeed s = read_probe(measured, "collective_probe", "bytes");
  if (!s.measured) return s;
  const auto ranks = measured.metadata.at("collective_probe").value("ranks", std::int64_t{0});
  if (ranks < 2 || ranks > run.cluster.total_gpus()) return ProbeSpeed{};
  std::vector<std::int64_t> group(static_cast<std::size_t>(ranks));
  for (std::int64_t r = 0; r < ranks; ++r)
    group[static_cast<std::size_t>(r)] = r;
  const sim::CollectiveModel network(run.cluster);
  s.predicted =
      static_cast<double>(
          network.cost(sim::CollectiveKind::kAllGather, group, static_cast<std::int64_t>(s.amount))
              .time) *
      1e-9;
  s.measured = s.predicted > 0;
  return s;
}

Json probe_speed_json(const ProbeSpeed& s, const char* amount_key) {
  if (!s.measured) return Json();
  return Json{{amount_key, s.amount},
              {"predicted_seconds", s.predicted},
              {"measured_seconds_before", s.before},
              {"measured_seconds_after", s.after},
              {"speed_before", s.speed_before()},
              {"speed_after", s.speed_after()}};
}

void print_comparison(std::ostream& out, const RunSpec& run, std::int64_t nproc,
                      const Comparison& c, const std::string& cluster_file, std::size_t modules,
                      const ProbeSpeed& speed, const ProbeSpeed& comm) {
  out << "Run        " << run.file.string() << (run.name.empty() ? "" : " (" + run.name + ")")
      << ": " << nproc << " rank(s), steps 0-" << c.steps - 1 << " simulated and executed\n";
  out << "Cluster    "
      << (cluster_file.empty() ? "the run spec's (" + run.cluster.name + ")"
                               : cluster_file + " (--cluster)")
      << "\n";
  if (speed.measured) {
    const auto ns = [](double seconds) { return static_cast<std::int64_t>(seconds * 1e9); };
    out << "Speed      the machine ran a dense-layer probe at "
        << std::llround(100 * speed.speed_before()) << "% of the cluster's rate before the steps, "
        << std::llround(100 * speed.speed_after()) << "% after (" << duration(ns(speed.before))
        << " and " << duration(ns(speed.after)) << "; " << duration(ns(speed.predicted))
        << " predicted)\n";
  }
  if (comm.measured) {
    const auto ns = [](double seconds) { return static_cast<std::int64_t>(seconds * 1e9); };
    out << "Comm       an all-gather after a piece of compute took " << duration(ns(comm.before))
        << " before the steps and " << duration(ns(comm.after)) << " after, "
        << duration(ns(comm.predicted)) << " predicted (" << std::llround(100 * comm.speed_before())
        << "% and " << std::llround(100 * comm.speed_after()) << "% of the cluster's speed)\n";
  }
  if (c.host_steal) {
    out << "Host       its hypervisor took " << std::llround(100 * *c.host_steal)
        << "% of the host's CPU time during the steps (steal time), time no rank could run";
    if (!c.host_quiet()) {
      out << ":\n           more than " << plain_percent(c.targets.quiet_host_steal)
          << ", too busy a host to judge step time by (the ranks meet at every collective, and "
             "one\n           descheduled rank holds them all); run it again in a quieter "
             "spell";
    }
    out << "\n";
  }
  out << "Targets    peak " << plain_percent(c.targets.peak) << ", each category "
      << plain_percent(c.targets.category)
      << " of the peak, collectives exact, decisions identical, step time "
      << plain_percent(c.targets.step_time)
      << (c.time_judged
              ? ""
              : " (not judged: the cluster does not come from 'zeroplan calibrate'; see --cluster)")
      << "\n\n";
  for (const RankComparison& r : c.ranks)
    print_rank(out, c, r, modules);
  out << "Verdict    memory " << verdict(c.memory_ok()) << ", collectives "
      << verdict(c.collectives_ok()) << ", decisions " << verdict(c.decisions_ok())
      << ", step time " << (c.time_judged ? verdict(c.time_ok()) : std::string("not judged"))
      << (c.time_judged && !c.host_quiet() ? " (on a busy host)" : "") << "\n";
}

}  // namespace

void add_validate_command(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "validate",
      "Simulate a run and execute it for real on local CPU ranks (zeroplan-exec), then compare "
      "them: memory per rank and category, collectives, coordinator decisions and time, each "
      "with its error against its target.");
  struct Args {
    std::string path;
    std::int64_t nproc = 0;
    std::int64_t steps = 6;
    bool json = false;
    std::string cluster;
    std::string time = "auto";
    bool allocator = false;
    std::string keep;
    std::string measured;
    double timeout = 300;
    std::size_t modules = 10;
  };
  auto a = std::make_shared<Args>();
  cmd->add_option("RUN", a->path, "The run spec (YAML).")->required();
  cmd->add_option("--nproc", a->nproc,
                  "Ranks to execute (default: the run's data x pipeline x tensor, which it must "
                  "equal).");
  cmd->add_option(
         "--steps", a->steps,
         "Steps to simulate and execute from a cold start; time is the median of the second "
         "and later.")
      ->capture_default_str();
  cmd->add_flag("--json", a->json, "Print one JSON object (for scripts) instead of the tables.");
  cmd->add_option("--cluster", a->cluster,
                  "A cluster description (from 'zeroplan calibrate') to simulate with instead of "
                  "the run spec's; the run's nodes and GPUs per node are kept.");
  cmd->add_option("--time", a->time,
                  "auto: judge the step time when the cluster comes from a file (--cluster, or the "
                  "run spec's cluster: {file: ...}); judge; report (never judge).")
      ->check(CLI::IsMember({"auto", "judge", "report"}))
      ->capture_default_str();
  cmd->add_flag("--allocator", a->allocator,
                "Model PyTorch's caching allocator (for GPU measurements; CPU ranks count the "
                "bytes asked for).");
  cmd->add_option("--keep", a->keep,
                  "Keep both traces in this folder (predicted.trace.json, measured.trace.json), "
                  "for 'zeroplan view'.");
  auto* timeout = cmd->add_option("--timeout", a->timeout, "zeroplan-exec's --timeout, in seconds.")
                      ->capture_default_str();
  cmd->add_option("--measured", a->measured,
                  "Compare with this measured trace (the measured.trace.json of an earlier "
                  "'validate --keep' of the same run) instead of executing the run: the same "
                  "measurement priced again, with another cluster or another build.")
      ->excludes(timeout);
  cmd->add_option("--modules", a->modules, "Modules listed per rank, by time.")
      ->capture_default_str();
  cmd->callback([a, cmd] {
    if (a->steps < 1 || a->steps > 1000) {
      throw UserError(ErrorKind::kValue, SourceLocation{"", 0, 0, "--steps"},
                      std::to_string(a->steps) + " must be in [1, 1000]");
    }
    if (!a->keep.empty() && !fs::is_directory(a->keep)) {
      throw UserError(ErrorKind::kIo, SourceLocation{"", 0, 0, "--keep"}, "no folder " + a->keep);
    }
    const fs::path program = a->measured.empty() ? exec_program("validate") : fs::path();
    RunSpec run = load_run_spec(a->path);
    const std::int64_t world = run.parallel.world();
    if (a->nproc == 0) a->nproc = world;
    if (a->nproc != world) {
      throw UserError(ErrorKind::kConflict, SourceLocation{"", 0, 0, "--nproc"},
                      std::to_string(a->nproc) + " rank(s), but the run spec lays out " +
                          std::to_string(world) + " (data x pipeline x tensor)");
    }
    if (!a->cluster.empty()) run.cluster = read_cluster_file(a->cluster, run.cluster);
    std::optional<trace::Trace> kept;
    if (!a->measured.empty()) {
      kept = trace::read_native(a->measured);
      const Json& meta = kept->metadata;
      const auto conflict = [&](const std::string& key, const std::string& what) {
        throw UserError(ErrorKind::kConflict, SourceLocation{a->measured, 0, 0, key}, what);
      };
      const std::string name = meta.contains("run") && meta.at("run").is_string()
                                   ? meta.at("run").get<std::string>()
                                   : std::string();
      if (name != run.name)
        conflict("run", "a measurement of run '" + name + "', not of '" + run.name + "'");
      if (!meta.contains("steps") || !meta.at("steps").is_number_integer())
        conflict("steps", "no step count: not a trace zeroplan-exec wrote");
      const auto steps = meta.at("steps").get<std::int64_t>();
      if (cmd->count("--steps") > 0 && steps != a->steps)
        conflict("steps",
                 std::to_string(steps) + " step(s) measured, --steps " + std::to_string(a->steps));
      a->steps = steps;
      if (static_cast<std::int64_t>(kept->ranks.size()) != a->nproc)
        conflict("ranks", std::to_string(kept->ranks.size()) + " rank(s) measured, --nproc " +
                              std::to_string(a->nproc));
    }

    // The prediction first: a run the simulator refuses fails before any rank starts.
    std::cerr << "validate: simulating steps 0-" << a->steps - 1 << "\n";
    sim::SimOptions options;
    options.steps = a->steps;
    options.model_allocator = a->allocator;
    trace::Trace predicted;
    sim::simulate(run, options, &predicted);

    const ScratchDir scratch("zeroplan-validate");
    const fs::path measured_path =
        kept ? fs::path(a->measured) : scratch.path() / "measured.trace.json";
    if (!kept) {
      std::cerr << "validate: executing " << a->steps << " step(s) on " << a->nproc
                << " rank(s) with zeroplan-exec\n";
      char timeout_text[32];
      std::snprintf(timeout_text, sizeof timeout_text, "%g", a->timeout);
      const int status = run_program(program, {a->path, "--nproc", std::to_string(a->nproc),
                                               "--steps", std::to_string(a->steps), "--trace",
                                               measured_path.string(), "--timeout", timeout_text});
      if (status == 2) {
        throw UserError(ErrorKind::kUnsupported, SourceLocation{a->path, 0, 0, ""},
                        "zeroplan-exec cannot execute this run (its reason is above)");
      }
      if (status != 0) {
        throw std::runtime_error("zeroplan-exec failed with status " + std::to_string(status) +
                                 " (its reason is above)");
      }
      kept = trace::read_native(measured_path);
    }
    const trace::Trace& measured = *kept;
    if (!a->keep.empty()) {
      trace::write_native(predicted, fs::path(a->keep) / "predicted.trace.json");
      const fs::path target = fs::path(a->keep) / "measured.trace.json";
      std::error_code same;
      if (!fs::equivalent(measured_path, target, same))
        fs::copy_file(measured_path, target, fs::copy_options::overwrite_existing);
    }

    trace::CompareOptions compare;
    // A description from a file (`--cluster`, or the run spec's `cluster: {file: ...}`) is taken
    // to be calibrated; a preset's datasheet figures and inline guesses are not.
    const bool calibrated =
        !a->cluster.empty() ||
        (run.cluster.name != "inline" && find_cluster_preset(run.cluster.name) == nullptr);
    compare.judge_time = a->time == "judge" || (a->time == "auto" && calibrated);
    // exec names the root module by its class; the simulator calls it "model".
    compare.measured_aliases = {{"GPT2LMHeadModel", "model"}, {"LlamaForCausalLM", "model"}};
    compare.modules_as_stages = run.parallel.pipeline > 1;
    const Comparison comparison = trace::compare_traces(predicted, measured, compare);
    const ProbeSpeed speed = machine_speed(measured, run);
    const ProbeSpeed comm = collective_speed(measured, run);

    if (a->json) {
      Json j = trace::comparison_to_json(comparison);
      j["run"] = run.name;
      j["run_file"] = a->path;
      j["model"] = run.model.label;
      j["nproc"] = a->nproc;
      j["pipeline"] = run.parallel.pipeline;
      j["checkpoint_interval"] = run.parallel.pipeline > 1
                                     ? run.deepspeed.pipeline.activation_checkpoint_interval
                                     : run.training.checkpoint_interval;
      j["cluster"] = a->cluster.empty() ? Json("run spec") : Json(a->cluster);
      j["machine_speed"] = probe_speed_json(speed, "probe_flops");
      j["collective_speed"] = probe_speed_json(comm, "probe_bytes");
      std::cout << j.dump(2) << "\n";
    } else {
      print_comparison(std::cout, run, a->nproc, comparison, a->cluster, a->modules, speed, comm);
    }
    std::cout.flush();
    if (!comparison.within_targets()) {
      std::string missed;
      for (const auto& [name, ok] : {std::pair{"memory", comparison.memory_ok()},
                                     {"collectives", comparison.collectives_ok()},
                                     {"decisions", comparison.decisions_ok()},
                                     {"step time", comparison.time_ok()}}) {
        if (!ok) missed += (missed.empty() ? "" : ", ") + std::string(name);
      }
      throw RunFails("the prediction misses its targets: " + missed);
    }
  });
}

}  // namespace zp::cli
