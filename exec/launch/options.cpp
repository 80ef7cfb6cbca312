#include "exec/launch/options.h"

#include <CLI/CLI.hpp>

#include <charconv>
#include <ostream>

#include "core/util/error.h"
#include "exec/runtime/backend_info.h"

namespace zp::exec::launch {

namespace {
UserError flag_error(const std::string& flag, const std::string& message) {
  return UserError(ErrorKind::kValue, SourceLocation{"", 0, 0, flag}, message);
}

void add_options(CLI::App& app, ExecOptions& o) {
  app.add_option("RUN.yaml", o.run_spec,
                 "Run spec: its model is trained with ZeRO-3 on synthetic data");
  app.add_option("--steps", o.steps, "Training steps")->capture_default_str();
  app.add_option("--seed", o.seed, "Seed of the initial weights and the synthetic data")
      ->capture_default_str();
  app.add_option("--trace", o.trace,
                 "Write every rank's measured trace here (sim's format, for 'zeroplan view')");
  app.add_option("--chrome-trace", o.chrome_trace,
                 "Write the same trace as a Chrome trace (Perfetto, chrome://tracing) here");
  app.add_flag("--json", o.json, "Print one JSON object (for scripts) instead of the report");
  app.add_option("--nproc", o.nproc,
                 "Start this many local ranks (one process each); without it, run one rank from "
                 "the environment");
  app.add_option("--master-addr", o.master_addr,
                 "With --nproc: the address the rendezvous store listens on")
      ->capture_default_str();
  app.add_option("--master-port", o.master_port,
                 "With --nproc: the rendezvous store's port; 0 picks a free one")
      ->capture_default_str();
  app.add_option("--timeout", o.timeout_s,
                 "Seconds a rank waits for a peer (rendezvous, each collective) before it fails; "
                 "with --nproc also how long ranks may run on after another finished")
      ->capture_default_str();
  app.add_option("--grace", o.grace_s,
                 "With --nproc: seconds the other ranks get to report their own error after one "
                 "fails, before they are stopped")
      ->capture_default_str();
  app.add_option("--threads", o.threads,
                 "Intra-op threads per rank (OMP_NUM_THREADS); default with --nproc: this "
                 "machine's cores divided among the ranks, at least 1, unless OMP_NUM_THREADS is "
                 "set");
  app.add_option("--device", o.device, "cpu or cuda")->capture_default_str();
  app.add_option("--backend", o.backend, "gloo or nccl (default: gloo on cpu, nccl on cuda)");
  app.add_option("--wait", o.wait,
                 "How a Gloo rank waits for a collective: poll (for up to 3 ms, "
                 "yielding its core to any thread that wants it, then sleep), sleep, or auto: "
                 "poll where this host's ranks (LOCAL_WORLD_SIZE) times their threads have a core "
                 "each, else sleep. A sleeping rank idles its core, and waking an idle core of a "
                 "virtual machine can cost more than a small collective")
      ->capture_default_str();
  app.add_flag("--selftest", o.selftest,
               "Run every collective, check the results, print bytes and times per operation");
  app.add_option("--selftest-numel", o.selftest_numel,
                 "Elements of the self-test's flat buffer (padded to the ranks)")
      ->capture_default_str();
  app.add_option("--selftest-iterations", o.selftest_iterations, "Self-test repetitions")
      ->capture_default_str();
  app.add_option("--selftest-fault", o.selftest_fault,
                 "Fault injection for testing: exit@R (rank R exits after the first collective) "
                 "or hang@R (rank R stops answering there)");
  app.add_flag("--calibrate", o.calibrate,
               "Measure this machine on every rank (compute, host copies, collectives) and print "
               "the points as JSON; 'zeroplan calibrate' fits a cluster description to them");
  app.add_flag("--calibrate-quick", o.calibrate_quick,
               "With --calibrate: fewer, shorter measurements (for tests)");
  // The DeepSpeed launcher appends --local_rank=N to its program's arguments; the same number is
  // in LOCAL_RANK, which is what counts. Accepted, not listed.
  app.add_option("--local_rank,--local-rank", o.local_rank_flag)->group("");
}

}  // namespace

std::optional<int> parse_command_line(int argc, char** argv, ExecOptions& options,
                                      std::ostream& out, std::ostream& err) {
  CLI::App app{
      "zeroplan-exec: run a zeroplan job on real hardware (libtorch; Gloo on CPU, NCCL "
      "on CUDA), one process per rank.",
      "zeroplan-exec"};
  app.footer(help_footer());
  add_options(app, options);
  try {
    app.parse(argc, argv);
  } catch (const CLI::Success& e) {
    const int status = app.exit(e, out, err);
    out << exec::describe(exec::backend_info()) << "\n";
    return status;
  } catch (const CLI::ParseError& e) {
    err << "zeroplan-exec: error: " << e.what() << "\n"
        << "Run 'zeroplan-exec --help' for usage.\n";
    return kExitUserError;
  }
  return std::nullopt;
}

Fault parse_fault(const std::string& text) {
  Fault f;
  if (text.empty()) return f;
  const auto at = text.find('@');
  const std::string kind = text.substr(0, at);
  const auto bad = [&] {
    return flag_error("--selftest-fault", "'" + text + "' is not exit@RANK or hang@RANK");
  };
  if (at == std::string::npos) throw bad();
  if (kind == "exit")
    f.kind = Fault::Kind::kExit;
  else if (kind == "hang")
    f.kind = Fault::Kind::kHang;
  else
    throw bad();
  const std::string rank = text.substr(at + 1);
  const auto [ptr, ec] = std::from_chars(rank.data(), rank.data() + rank.size(), f.rank);
  if (rank.empty() || ec != std::errc() || ptr != rank.data() + rank.size() || f.rank < 0)
    throw bad();
  return f;
}

void validate(ExecOptions& o) {
  if (o.nproc < 0 || o.nproc > 1024)
    throw flag_error("--nproc", std::to_string(o.nproc) + " must be in [1, 1024]");
  if (o.master_port < 0 || o.master_port > 65535)
    throw flag_error("--master-port", std::to_string(o.master_port) + " must be in [0, 65535]");
  // c10d counts its connect timeout in whole seconds.
  if (!(o.timeout_s >= 1) || o.timeout_s > 86400)
    throw flag_error("--timeout", std::to_string(o.timeout_s) + " must be in [1, 86400] seconds");
  if (!(o.grace_s >= 0) || o.grace_s > 3600)
    throw flag_error("--grace", std::to_string(o.grace_s) + " must be in [0, 3600] seconds");
  if (o.threads < 0 || o.threads > 1024)
    throw flag_error("--threads",
                     std::to_string(o.threads) + " must be in [1, 1024] (0: the default)");
  if (o.device != "cpu" && o.device != "cuda")
    throw flag_error("--device", "'" + o.device + "' must be cpu or cuda");
  if (o.backend.empty()) o.backend = o.device == "cuda" ? "nccl" : "gloo";
  if (o.backend != "gloo" && o.backend != "nccl")
    throw flag_error("--backend", "'" + o.backend + "' must be gloo or nccl");
  if (o.backend == "nccl" && o.device != "cuda")
    throw UserError(ErrorKind::kConflict, SourceLocation{"", 0, 0, "--backend"},
                    "nccl needs --device cuda");
  if (o.backend == "gloo" && o.device == "cuda")
    throw UserError(ErrorKind::kConflict, SourceLocation{"", 0, 0, "--backend"},
                    "gloo runs on host memory here; use --backend nccl with --device cuda");
  if (o.wait != "auto" && o.wait != "poll" && o.wait != "sleep")
    throw flag_error("--wait", "'" + o.wait + "' must be auto, poll or sleep");
  if (o.selftest_numel < 1 || o.selftest_numel > (std::int64_t{1} << 31))
    throw flag_error("--selftest-numel",
                     std::to_string(o.selftest_numel) + " must be in [1, 2^31]");
  if (o.selftest_iterations < 1)
    throw flag_error("--selftest-iterations",
                     std::to_string(o.selftest_iterations) + " must be at least 1");
  const Fault fault = parse_fault(o.selftest_fault);
  if (fault.kind != Fault::Kind::kNone && o.nproc > 0 && fault.rank >= o.nproc)
    throw flag_error("--selftest-fault", "rank " + std::to_string(fault.rank) +
                                             " does not exist with --nproc " +
                                             std::to_string(o.nproc));
  if (o.steps < 1) throw flag_error("--steps", std::to_string(o.steps) + " must be at least 1");
  if (!o.selftest && !o.calibrate && o.run_spec.empty())
    throw UserError(ErrorKind::kMissing, SourceLocation{"", 0, 0, "RUN.yaml"},
                    "nothing to run: give a run spec, --selftest for the communication test, or "
                    "--calibrate to measure this machine");
}

std::vector<std::string> rank_arguments(const std::vector<std::string>& args) {
  std::vector<std::string> out;
  for (std::size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "--nproc") {
      ++i;  // and its value
      continue;
    }
    if (args[i].rfind("--nproc=", 0) == 0) continue;
    out.push_back(args[i]);
  }
  return out;
}

bool polls(const std::string& wait, int local_ranks, int threads_per_rank, int cores) {
  if (wait != "auto") return wait == "poll";
  return static_cast<long long>(local_ranks) * threads_per_rank <= cores;
}

std::string help_footer() {
  return R"(Launch:
  --nproc N starts N ranks on this machine, each this program with RANK, WORLD_SIZE,
  LOCAL_RANK, MASTER_ADDR and MASTER_PORT set; the launcher hosts the rendezvous store.
  Without --nproc the program is one rank of a job started by torchrun, the DeepSpeed
  launcher or Slurm (RANK/WORLD_SIZE/LOCAL_RANK, or SLURM_PROCID/SLURM_NTASKS/SLURM_LOCALID;
  MASTER_ADDR and MASTER_PORT always); rank 0 hosts the store unless
  TORCHELASTIC_USE_AGENT_STORE=True. With none of these set it runs alone.
  GLOO_SOCKET_IFNAME picks the network interface Gloo uses.
  Each rank started by --nproc gets OMP_NUM_THREADS: --threads, else the variable's own value
  when it is set, else the cores this process may run on divided among the ranks (at least 1),
  so ranks do not oversubscribe the cores as torch's default (every core, per rank) would.
Faults:
  A rank that dies or stops answering makes the others fail within --timeout; the launcher
  then stops every rank still running (after --grace) and exits with the first failure's status.
Exit status:
  0 success, 1 internal error or wrong self-test result, 2 bad input (flags, environment, run
  spec, port in use, GPU requested where none is visible), 4 communication failure (a peer died,
  hung, or never joined).)";
}

}  // namespace zp::exec::launch
