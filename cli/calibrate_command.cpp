// `zeroplan calibrate`: measures this machine with zeroplan-exec on local ranks (compute,
// host copies, collectives) and writes the cluster description the simulator then uses
// (core/config/calibration.h fits it).
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <iostream>
#include <memory>

#include "cli/commands.h"
#include "cli/scratch_dir.h"
#include "cli/sibling_program.h"
#include "core/config/calibration.h"
#include "core/trace/native_format.h"
#include "core/util/atomic_file.h"
#include "core/util/error.h"
#include "sim/simulate.h"

namespace zp::cli {
namespace {

namespace fs = std::filesystem;

std::int64_t physical_memory() {
  const long pages = ::sysconf(_SC_PHYS_PAGES);
  const long page = ::sysconf(_SC_PAGESIZE);
  return pages > 0 && page > 0 ? static_cast<std::int64_t>(pages) * page : 0;
}

// Each reference run's measured compute beside the simulator's prediction for it with the
// isolated fits, split into its per-kernel part and its rate part: the step's compute is linear in
// both, so one more simulation with the per-kernel costs doubled tells them apart.
std::vector<CalibratedCluster::ReferenceCompute> price_reference_runs(const Calibration& measured,
                                                                      const ClusterSpec& cluster) {
  std::vector<RunSpec> runs = calibration_reference_runs(measured.ranks);
  ZP_CHECK(runs.size() == measured.reference_compute.size(), runs.size(), " reference runs, ",
           measured.reference_compute.size(), " measured");
  ZP_CHECK(measured.reference_calls.empty() ||
               measured.reference_calls.size() == measured.reference_compute.size(),
           measured.reference_calls.size(), " reference runs' calls counted");
  const auto compute = [](RunSpec& run, const ClusterSpec& with) {
    run.cluster = with;
    const sim::SimulationResult r = sim::simulate(run, sim::SimOptions{});
    ZP_CHECK(!r.ranks.empty() && !r.ranks.front().steps.empty(), "no step predicted for ",
             run.name);
    return static_cast<double>(r.ranks.front().steps.back().compute_ns) * 1e-9;
  };
  ZP_CHECK(cluster.step_slowdown == ClusterSpec::StepSlowdown{},
           "the isolated fits carry no step slowdown yet");
  ClusterSpec doubled = cluster;
  doubled.step_slowdown.kernels = 2;
  std::vector<CalibratedCluster::ReferenceCompute> references;
  for (std::size_t i = 0; i < runs.size(); ++i) {
    const double alone = compute(runs[i], cluster);
    const double fixed = compute(runs[i], doubled) - alone;
    const double calls = measured.reference_calls.empty() ? 0 : measured.reference_calls[i];
    references.push_back({measured.reference_compute[i], fixed, alone - fixed, calls});
  }
  return references;
}

struct CalibrateArgs {
  int nproc = 2;
  std::string out;
  std::string raw;
  bool quick = false;
  double timeout = 300;
  int repeat = 1;
  std::vector<std::string> from;
};

// Runs `a.repeat` rounds of zeroplan-exec's measurement, appending each to `rounds` and its JSON to
// `raw`.
void measure_rounds(const CalibrateArgs& a, std::vector<Calibration>& rounds, Json& raw) {
  const fs::path program = exec_program("calibrate");
  const ScratchDir scratch("zeroplan-calibrate");
  const fs::path& dir = scratch.path();
  const fs::path points = dir / "calibration.json";
  std::vector<std::string> args{"--calibrate", "--nproc", std::to_string(a.nproc), "--timeout",
                                std::to_string(static_cast<int>(a.timeout))};
  if (a.quick) args.push_back("--calibrate-quick");
  for (int round = 1; round <= a.repeat; ++round) {
    std::cerr << "calibrate: measuring on " << a.nproc << " rank(s) with zeroplan-exec"
              << (a.quick ? " (quick)" : "")
              << (a.repeat > 1
                      ? ", round " + std::to_string(round) + " of " + std::to_string(a.repeat)
                      : std::string())
              << "\n";
    const int status = run_program(program, args, points);
    if (status == 2) {
      throw UserError(ErrorKind::kValue, SourceLocation{"", 0, 0, "calibrate"},
                      "zeroplan-exec refused the measurement (its reason is above)");
    }
    if (status != 0) {
      throw std::runtime_error("zeroplan-exec failed with status " + std::to_string(status) +
                               " (its reason is above)");
    }
    const Json json = trace::parse_json(read_file(points), "zeroplan-exec --calibrate");
    rounds.push_back(calibration_from_json(json, "zeroplan-exec --calibrate"));
    raw.push_back(json);
  }
}

}  // namespace

void add_calibrate_command(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "calibrate",
      "Measure this machine with zeroplan-exec on local CPU ranks (matmul and elementwise "
      "throughput, host copies, all-gather / reduce-scatter / send-recv bandwidth and latency, "
      "and reference ZeRO-3 runs for the engine's hooks and a step's slowdown) and write the "
      "cluster description the simulator uses (see 'zeroplan validate --cluster').");
  auto a = std::make_shared<CalibrateArgs>();
  cmd->add_option("--nproc", a->nproc,
                  "Ranks measured at once, as the runs to predict will use them: they share the "
                  "machine's cores and memory bandwidth.")
      ->capture_default_str();
  cmd->add_option("--out", a->out, "Write the cluster description (YAML) here, not to stdout.");
  cmd->add_option("--raw", a->raw, "Also write the measured points (JSON) here.");
  cmd->add_flag("--quick", a->quick, "Fewer, shorter measurements (seconds instead of a minute).");
  cmd->add_option("--timeout", a->timeout, "zeroplan-exec's --timeout, in seconds.")
      ->capture_default_str();
  cmd->add_option("--repeat", a->repeat,
                  "Measure this many rounds, one after another, and fit the median of each "
                  "point over them: on a shared machine a busy or quiet spell then moves one "
                  "round, not the description. With --raw, the rounds are written as a list.")
      ->capture_default_str();
  auto* from = cmd->add_option(
      "--from", a->from,
      "Fit the description to points written earlier with --raw (a round or a list of rounds "
      "each) instead of measuring: rounds measured at different times, fitted together as "
      "--repeat fits its rounds. They must measure the same points on the same ranks.");
  for (const char* other : {"--repeat", "--quick", "--timeout", "--raw"})
    from->excludes(other);
  cmd->callback([a, cmd] {
    if (a->nproc < 1 || a->nproc > 1024) {
      throw UserError(ErrorKind::kValue, SourceLocation{"", 0, 0, "--nproc"},
                      std::to_string(a->nproc) + " must be in [1, 1024]");
    }
    if (a->repeat < 1 || a->repeat > 20) {
      throw UserError(ErrorKind::kValue, SourceLocation{"", 0, 0, "--repeat"},
                      std::to_string(a->repeat) + " must be in [1, 20]");
    }
    for (const auto& [flag, file] : {std::pair{"--out", a->out}, {"--raw", a->raw}}) {
      if (file.empty()) continue;
      const fs::path parent = fs::absolute(file).parent_path();
      if (!fs::is_directory(parent)) {
        throw UserError(ErrorKind::kIo, {"", 0, 0, flag},
                        "cannot write " + file + ": no folder " + parent.string());
      }
    }
    std::vector<Calibration> rounds;
    std::vector<std::string> origins;
    Json raw = Json::array();
    if (!a->from.empty()) {
      if (cmd->count("--nproc") > 0) {
        throw UserError(ErrorKind::kConflict, {"", 0, 0, "--nproc"},
                        "the ranks come from the --from files");
      }
      for (const std::string& file : a->from) {
        const Json json = trace::parse_json(read_file(file), file);
        const auto add = [&](const Json& one, const std::string& origin) {
          rounds.push_back(calibration_from_json(one, origin));
          origins.push_back(origin);
        };
        if (json.is_array()) {
          if (json.empty()) throw UserError(ErrorKind::kValue, {file, 0, 0, ""}, "no rounds");
          for (std::size_t i = 0; i < json.size(); ++i)
            add(json[i], file + " round " + std::to_string(i + 1));
        } else {
          add(json, file);
        }
      }
    } else {
      measure_rounds(*a, rounds, raw);
    }
    const Calibration measured = median_of_rounds(rounds, origins);
    CalibratedCluster calibrated = calibrate_cluster(measured, physical_memory());
    if (!measured.reference_compute.empty()) {
      fit_step_slowdown(calibrated, price_reference_runs(measured, calibrated.cluster));
      const ClusterSpec::StepSlowdown& f = calibrated.cluster.step_slowdown;
      char line[160];
      std::snprintf(line, sizeof line,
                    "calibrate: in a training step each kernel's fixed cost is %.2f times its "
                    "cost alone, and the rates 1/%.2f",
                    f.kernels, f.rates);
      std::cerr << line << "\n";
    }
    const std::string yaml = cluster_yaml(calibrated);
    if (!a->raw.empty())
      write_file_atomically(a->raw, (a->repeat == 1 ? raw.front() : raw).dump(2) + "\n");
    if (a->out.empty()) {
      std::cout << yaml;
    } else {
      write_file_atomically(a->out, yaml);
      std::cerr << "calibrate: cluster description written to " << a->out << "\n";
    }
  });
}

}  // namespace zp::cli
