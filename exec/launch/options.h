// zeroplan-exec's command line, and its exit statuses.
#pragma once

#include <chrono>
#include <cstdint>
#include <iosfwd>
#include <optional>
#include <string>
#include <vector>

namespace zp::exec::launch {

inline constexpr int kExitOk = 0;
inline constexpr int kExitInternal = 1;    // a bug, or a self-test result that is wrong
inline constexpr int kExitUserError = 2;   // bad flags, environment, run spec, or device request
inline constexpr int kExitCommFailed = 4;  // a peer died, hung, or never joined

// How long a Gloo rank's wait for a collective polls before it sleeps, when it polls. On 2 CPU
// ranks of a 2-core virtual machine a ZeRO-3 step of the tiny GPT-2 took 28-35 ms sleeping,
// 17-21 ms polling up to 3 ms, 18-27 ms up to 1 ms; polling without end had the slowest steps.
inline constexpr std::chrono::microseconds kPollFor{3000};

struct ExecOptions {
  std::string run_spec;  // RUN.yaml
  int nproc = 0;         // 0: run one rank from the environment
  std::string master_addr = "127.0.0.1";
  int master_port = 0;  // 0: a free port
  double timeout_s = 300;
  double grace_s = 5;
  // Intra-op threads per rank (OMP_NUM_THREADS). 0: with --nproc, the launcher sets this
  // machine's cores / nproc (at least 1) unless OMP_NUM_THREADS is set already.
  int threads = 0;
  std::string device = "cpu";
  std::string backend;  // empty: gloo on cpu, nccl on cuda
  // How a Gloo rank waits for communication: poll, sleep, or auto (poll where the ranks on this
  // host and their intra-op threads have a core each, sleep otherwise).
  std::string wait = "auto";
  bool selftest = false;
  std::int64_t selftest_numel = 1000003;
  int selftest_iterations = 2;
  std::string selftest_fault;  // "exit@R" or "hang@R"
  int local_rank_flag = -1;    // DeepSpeed's launcher passes --local_rank; LOCAL_RANK rules
  // Measuring this machine (exec/calibrate) instead of training.
  bool calibrate = false;
  bool calibrate_quick = false;
  // Training.
  std::int64_t steps = 3;
  std::uint64_t seed = 0;
  std::string trace;         // the native trace, written by rank 0
  std::string chrome_trace;  // the same as a Chrome trace (Perfetto)
  bool json = false;
};

// Parses the command line into `options` (CLI11, confined to options.cpp: its header alone costs
// seconds per file). nullopt to go on; otherwise the status to exit with, after --help printed
// to `out` or a parse error to `err`.
std::optional<int> parse_command_line(int argc, char** argv, ExecOptions& options,
                                      std::ostream& out, std::ostream& err);

// Checks what CLI11 cannot: UserError naming the flag, the value and the rule.
void validate(ExecOptions& options);

struct Fault {
  enum class Kind { kNone, kExit, kHang } kind = Kind::kNone;
  int rank = -1;
};
Fault parse_fault(const std::string& text);

// The arguments a rank started by --nproc gets: this process's arguments without --nproc.
std::vector<std::string> rank_arguments(const std::vector<std::string>& args);

// Whether a Gloo rank polls in its waits (--wait): auto polls where the ranks on this host and
// their intra-op threads have a core each. With fewer cores a waiting rank's polling takes turns
// with the ranks that compute, and that sharing is what a calibration did not see: on 4 ranks of
// 2 cores, ZeRO-3 steps came out 34-46% slower than a polling calibration predicted.
bool polls(const std::string& wait, int local_ranks, int threads_per_rank, int cores);

// What --help prints after the options: environment, faults and exit statuses.
std::string help_footer();

}  // namespace zp::exec::launch
