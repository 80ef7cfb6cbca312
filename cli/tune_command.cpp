// `zeroplan tune RUN.yaml`: searches the ZeRO-3 thresholds, checkpointing and offload of a run with
// the simulator as the cost model, and writes the tuned ds_config.json, a plan that `zeroplan
// simulate` and `zeroplan exec` take, a report and the Pareto plot.
#include <unistd.h>

#include <atomic>
#include <cctype>
#include <chrono>
#include <csignal>
#include <filesystem>
#include <iostream>
#include <map>
#include <memory>
#include <stdexcept>

#include "cli/commands.h"
#include "core/config/run_spec.h"
#include "core/trace/native_format.h"
#include "core/util/atomic_file.h"
#include "core/util/units.h"
#include "planner/plan_output.h"
#include "planner/search.h"
#include "planner/search_space.h"

namespace zp::cli {
namespace {

namespace fs = std::filesystem;

UserError flag_error(const std::string& flag, const std::string& message) {
  return UserError(ErrorKind::kValue, SourceLocation{"", 0, 0, flag}, message);
}

// Ctrl-C during the search: the search stops at its next check and the best so far is written.
// A second Ctrl-C ends the process (SA_RESETHAND).
std::atomic<bool> g_stop{false};
static_assert(std::atomic<bool>::is_always_lock_free);
extern "C" void on_interrupt(int) {
  g_stop.store(true);
}

class InterruptGuard {
 public:
  InterruptGuard() {
    struct sigaction action {};
    action.sa_handler = on_interrupt;
    sigemptyset(&action.sa_mask);
    action.sa_flags = SA_RESETHAND;
    installed_ = ::sigaction(SIGINT, &action, &previous_) == 0;
  }
  ~InterruptGuard() {
    if (installed_) ::sigaction(SIGINT, &previous_, nullptr);
  }
  InterruptGuard(const InterruptGuard&) = delete;
  InterruptGuard& operator=(const InterruptGuard&) = delete;

 private:
  struct sigaction previous_ {};
  bool installed_ = false;
};

// "KNOB=VALUE" -> (KNOB, VALUE).
std::pair<std::string, std::string> split_assignment(const std::string& flag,
                                                     const std::string& text,
                                                     const std::string& form) {
  const auto eq = text.find('=');
  if (eq == std::string::npos || eq == 0 || eq + 1 == text.size())
    throw flag_error(flag, "'" + text + "' is not " + form);
  return {text.substr(0, eq), text.substr(eq + 1)};
}

// A folder name from the run's name: letters, digits, '.', '_' and '-'.
std::string folder_name(const RunSpec& run) {
  std::string name = run.name.empty() ? run.file.stem().string() : run.name;
  for (char& c : name) {
    const auto u = static_cast<unsigned char>(c);
    if (!std::isalnum(u) && c != '.' && c != '_' && c != '-') c = '-';
  }
  if (name.empty() || name == "." || name == "..") name = "run";
  return name + "-plan";
}

}  // namespace

void add_tune_command(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "tune",
      "Search the ZeRO-3 thresholds (or the gradient buckets of stages 0-2), activation "
      "checkpointing, offload and, with --layout, the micro-batch and pipeline of a run with the "
      "simulator, and write the tuned ds_config.json, a plan (a run spec that 'simulate' and "
      "'exec' take), a report and the Pareto plot of memory against step time.");
  struct Args {
    std::string path;
    std::string gpu_memory;
    std::string time_budget;
    std::string objective = "fastest";
    std::vector<std::string> pins;
    std::vector<std::string> ranges;
    std::string out;
    bool json = false;
    bool exhaustive = false;
    int workers = 2;
    double grid_ratio = planner::SpaceOptions{}.grid_ratio;
    bool no_allocator = false;
    bool progress = false;
    bool layout = false;
  };
  auto a = std::make_shared<Args>();
  cmd->add_option("RUN", a->path, "The run spec (YAML) to tune.")->required();
  cmd->add_option("--gpu-memory", a->gpu_memory,
                  "Memory budget per GPU, e.g. 80GiB or 40GB (default: the cluster's GPU memory).");
  cmd->add_option("--time-budget", a->time_budget,
                  "Longest step time allowed, e.g. 1.5s or 800ms (the budget of "
                  "--objective least-memory; a constraint for the others).");
  cmd->add_option("--objective", a->objective,
                  "fastest: the fastest step within the memory budget; least-memory: the least "
                  "memory within the budgets; pareto: every configuration no other beats in both "
                  "(the fastest one is written).")
      ->capture_default_str();
  cmd->add_option("--pin", a->pins,
                  "KNOB=VALUE: hold a knob at one value (repeatable), e.g. "
                  "--pin offload_optimizer=none --pin max_live_parameters=1e9.");
  cmd->add_option("--range", a->ranges,
                  "KNOB=LOW:HIGH: search a count knob only within [LOW, HIGH] (repeatable), e.g. "
                  "--range prefetch_bucket_size=1e6:5e8.");
  cmd->add_option("--out", a->out,
                  "Folder for ds_config.json, plan.yaml, report.txt and pareto.svg (default: "
                  "NAME-plan in the current folder, NAME being the run's name).");
  cmd->add_flag("--json", a->json,
                "Print one JSON object (for scripts) instead of the report; the files are written "
                "too.");
  cmd->add_flag("--exhaustive", a->exhaustive,
                "Simulate every configuration of the space instead of pruning (slow; proves the "
                "pruning on small spaces).");
  cmd->add_option("--workers", a->workers, "Simulations run in parallel (threads).")
      ->capture_default_str();
  cmd->add_option("--grid-ratio", a->grid_ratio,
                  "Step of the geometric grids of the size thresholds (1.2 to 64; smaller is "
                  "finer and slower).")
      ->capture_default_str();
  cmd->add_flag(
      "--layout", a->layout,
      "Also search the layout at the run's global batch and GPUs: the micro-batch (gradient "
      "accumulation makes up the rest) and, for ZeRO stages 0 and 1, the pipeline's "
      "depth and partition method. A --pin or --range of a layout knob implies it.");
  cmd->add_flag("--no-allocator", a->no_allocator,
                "Compare allocated memory, without modelling PyTorch's caching allocator (faster; "
                "reserved memory is what runs out on a GPU).");
  cmd->add_flag("--progress", a->progress,
                "Show progress on stderr even when it is not a terminal (it is shown on a "
                "terminal when the search takes more than a second).");
  cmd->callback([a] {
    // The flags first: a bad flag is refused before the run spec is read.
    planner::SearchOptions options;
    if (a->objective == "fastest") {
      options.objective = planner::Objective::kFastest;
    } else if (a->objective == "least-memory") {
      options.objective = planner::Objective::kLeastMemory;
    } else if (a->objective == "pareto") {
      options.objective = planner::Objective::kPareto;
    } else {
      throw flag_error("--objective", "'" + a->objective +
                                          "' is not an objective: use fastest, least-memory or "
                                          "pareto");
    }
    std::optional<std::int64_t> gpu_memory;
    if (!a->gpu_memory.empty()) {
      try {
        gpu_memory = units::parse_bytes(a->gpu_memory);
      } catch (const std::invalid_argument& e) {
        throw flag_error("--gpu-memory", e.what());
      }
      if (*gpu_memory <= 0)
        throw flag_error("--gpu-memory", "'" + a->gpu_memory + "' must be more than 0 bytes");
    }
    if (!a->time_budget.empty()) {
      try {
        options.time_budget = units::parse_duration_ns(a->time_budget);
      } catch (const std::invalid_argument& e) {
        throw flag_error("--time-budget", e.what());
      }
      if (*options.time_budget <= 0)
        throw flag_error("--time-budget", "'" + a->time_budget + "' must be longer than 0");
    }
    if (a->workers < 1 || a->workers > 256)
      throw flag_error("--workers", std::to_string(a->workers) + " must be in [1, 256]");
    planner::SpaceOptions space_options;
    space_options.grid_ratio = a->grid_ratio;
    space_options.search_layout = a->layout;
    for (const std::string& pin : a->pins) {
      auto [knob, value] = split_assignment("--pin", pin, "KNOB=VALUE");
      if (!space_options.pins.emplace(knob, value).second)
        throw flag_error("--pin", knob + " is pinned twice");
    }
    for (const std::string& range : a->ranges) {
      auto [knob, bounds] = split_assignment("--range", range, "KNOB=LOW:HIGH");
      const auto colon = bounds.find(':');
      if (colon == std::string::npos || colon == 0 || colon + 1 == bounds.size())
        throw flag_error("--range", "'" + range + "' is not KNOB=LOW:HIGH");
      if (!space_options.ranges
               .emplace(knob, std::pair{bounds.substr(0, colon), bounds.substr(colon + 1)})
               .second)
        throw flag_error("--range", knob + " is given two ranges");
    }

    const RunSpec run = load_run_spec(a->path);
    for (const Warning& w : run.warnings)
      std::cerr << "zeroplan: warning: " << w.str() << "\n";
    planner::TuneOutcome outcome;
    outcome.run = &run;
    outcome.space = planner::build_search_space(run, space_options);
    // A pin of a knob this run does not search is checked, and said.
    for (const auto& [knob, value] : space_options.pins) {
      const planner::Knob* k = planner::find_knob(knob);
      if (!k || outcome.space.find(knob) ||
          (knob == "model_persistence_threshold" &&
           outcome.space.find("param_persistence_threshold")))
        continue;
      planner::parse_knob_value(*k, value);
      std::cerr << "zeroplan: warning: --pin " << knob
                << ": this run does not search it, so the pin has no effect\n";
    }

    options.memory_budget = gpu_memory ? *gpu_memory : run.cluster.gpu_memory;
    options.workers = a->workers;
    options.exhaustive = a->exhaustive;
    options.model_allocator = !a->no_allocator;

    const fs::path out_dir = a->out.empty() ? fs::path(folder_name(run)) : fs::path(a->out);
    {
      std::error_code ec;
      if (fs::exists(out_dir, ec) && !fs::is_directory(out_dir, ec))
        throw UserError(ErrorKind::kIo, SourceLocation{"", 0, 0, "--out"},
                        out_dir.string() + " exists and is not a folder");
      fs::create_directories(out_dir, ec);
      if (ec)
        throw UserError(ErrorKind::kIo, SourceLocation{"", 0, 0, "--out"},
                        "cannot create " + out_dir.string() + ": " + ec.message());
    }

    // Progress: on a terminal once the search has run for a second, or whenever asked.
    const bool show_progress = a->progress || ::isatty(STDERR_FILENO) == 1;
    const auto start = std::chrono::steady_clock::now();
    bool progress_shown = false;
    if (show_progress) {
      options.progress = [&](std::int64_t simulated, std::int64_t pruned,
                             const std::optional<planner::Point>& best) {
        if (!a->progress && std::chrono::steady_clock::now() - start < std::chrono::seconds(1))
          return;
        std::cerr << "\rzeroplan tune: " << units::format_count(simulated) << " simulated, "
                  << units::format_count(pruned) << " pruned";
        if (best) {
          std::cerr << "; best so far " << units::format_duration_ns(best->eval.step_ns) << ", "
                    << units::format_bytes(static_cast<double>(best->eval.memory));
        }
        std::cerr << "  (Ctrl-C keeps the best so far)   " << std::flush;
        progress_shown = true;
      };
    }
    g_stop.store(false);
    options.stop = &g_stop;
    {
      InterruptGuard guard;
      outcome.result = planner::search(run, outcome.space, options);
    }
    if (progress_shown) std::cerr << "\n";
    if (outcome.result.stats.interrupted)
      std::cerr << "zeroplan tune: interrupted; writing the best configuration found so far\n";
    outcome.options = options;
    outcome.options.progress = nullptr;
    outcome.options.stop = nullptr;
    outcome.baseline = planner::evaluate(run, options.model_allocator);
    if (outcome.result.best) {
      outcome.effects = planner::knob_effects(run, outcome.space, outcome.result.best->candidate,
                                              options.model_allocator);
    }

    const std::string report = planner::tune_report(outcome);
    const fs::path ds_file = out_dir / "ds_config.json", plan_file = out_dir / "plan.yaml",
                   report_file = out_dir / "report.txt", svg_file = out_dir / "pareto.svg";
    Json files = Json::object();
    if (outcome.result.best) {
      write_file_atomically(ds_file, planner::tuned_deepspeed_config(run, outcome.space,
                                                                     outcome.result.best->candidate)
                                             .dump(2) +
                                         "\n");
      write_file_atomically(plan_file, planner::plan_yaml(outcome, out_dir));
      files["ds_config"] = ds_file.string();
      files["plan"] = plan_file.string();
    } else {
      // A plan from an earlier tune into this folder would read as this one's answer.
      std::error_code ignored;
      fs::remove(ds_file, ignored);
      fs::remove(plan_file, ignored);
    }
    write_file_atomically(report_file, report);
    write_file_atomically(svg_file, planner::pareto_svg(outcome));
    files["report"] = report_file.string();
    files["pareto_svg"] = svg_file.string();

    // The front's predicted traces, named in tune.json, which `zeroplan view` opens: picking a
    // point there opens its trace. Those of an earlier tune into this folder go first.
    Json j = planner::tune_json(outcome);
    const fs::path traces_dir = out_dir / "traces";
    {
      std::error_code ec;
      fs::remove_all(traces_dir, ec);
      fs::create_directories(traces_dir, ec);
      if (ec)
        throw UserError(ErrorKind::kIo, SourceLocation{"", 0, 0, "--out"},
                        "cannot create " + traces_dir.string() + ": " + ec.message());
    }
    // At most a dozen, spread evenly over the front from least memory to fastest: a large model's
    // trace runs to megabytes.
    constexpr std::size_t kMaxTraces = 12;
    const std::size_t points = outcome.result.pareto.size();
    std::vector<std::size_t> traced;
    for (std::size_t k = 0; k < std::min(points, kMaxTraces); ++k) {
      const std::size_t i =
          points <= kMaxTraces ? k : (k * (points - 1) + (kMaxTraces - 1) / 2) / (kMaxTraces - 1);
      if (traced.empty() || traced.back() != i) traced.push_back(i);
    }
    for (const std::size_t i : traced) {
      const std::string name = "traces/pareto-" + std::to_string(i + 1) + ".trace.json";
      trace::write_native(
          planner::predicted_trace(run, outcome.space, outcome.result.pareto[i].candidate,
                                   options.model_allocator),
          out_dir / name);
      j["pareto"][i]["trace"] = name;
    }
    const fs::path json_file = out_dir / "tune.json";
    files["tune_json"] = json_file.string();
    files["traces"] = traces_dir.string();
    j["files"] = files;
    write_file_atomically(json_file, j.dump(2) + "\n");

    if (a->json) {
      std::cout << j.dump(2) << "\n";
    } else {
      std::cout << report << "\nWritten to " << out_dir.string()
                << "/: " << (outcome.result.best ? "ds_config.json, plan.yaml, " : "")
                << "report.txt, pareto.svg, tune.json (zeroplan view opens it), traces/\n";
    }
    std::cout.flush();
    if (!outcome.result.best) {
      throw RunFails(planner::missing_summary(outcome) + " (see " + report_file.string() + ")");
    }
  });
}

}  // namespace zp::cli
