#include "exec/launch/launcher.h"

#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <ostream>
#include <thread>

#include "core/util/error.h"
#include "exec/comm/communicator.h"
#include "exec/runtime/backend_info.h"

extern char** environ;

namespace zp::exec::launch {

namespace {

using Clock = std::chrono::steady_clock;

volatile sig_atomic_t g_signal = 0;
extern "C" void on_signal(int sig) {
  g_signal = sig;
}

std::string self_executable() {
  char path[PATH_MAX];
  const ssize_t n = ::readlink("/proc/self/exe", path, sizeof(path) - 1);
  ZP_CHECK(n > 0, "readlink /proc/self/exe: ", std::strerror(errno));
  path[n] = '\0';
  return path;
}

// argv or envp for execve, built before fork: the child may only make async-signal-safe calls.
class CStrings {
 public:
  explicit CStrings(std::vector<std::string> strings) : strings_(std::move(strings)) {
    for (std::string& s : strings_)
      pointers_.push_back(s.data());
    pointers_.push_back(nullptr);
  }
  char* const* get() { return pointers_.data(); }

 private:
  std::vector<std::string> strings_;
  std::vector<char*> pointers_;
};

bool is_rank_variable(const char* entry) {
  static const char* const kNames[] = {"RANK=",
                                       "WORLD_SIZE=",
                                       "LOCAL_RANK=",
                                       "LOCAL_WORLD_SIZE=",
                                       "MASTER_ADDR=",
                                       "MASTER_PORT=",
                                       "TORCHELASTIC_USE_AGENT_STORE=",
                                       "SLURM_PROCID=",
                                       "SLURM_NTASKS=",
                                       "SLURM_LOCALID="};
  for (const char* name : kNames)
    if (std::strncmp(entry, name, std::strlen(name)) == 0) return true;
  return false;
}

// torch's default, one intra-op thread per core in every rank, oversubscribes the cores as soon
// as ranks share them: OpenMP teams then wait on descheduled threads, and a step on 2 ranks of a
// 2-core machine took 10 times as long. torchrun sets OMP_NUM_THREADS=1 for the same reason.
std::string omp_threads(const ExecOptions& options) {
  if (options.threads > 0) return std::to_string(options.threads);
  if (const char* set = std::getenv("OMP_NUM_THREADS"); set != nullptr && *set != '\0') return set;
  return std::to_string(std::max(1, usable_cores() / std::max(1, options.nproc)));
}

bool is_omp_threads(const char* entry) {
  return std::strncmp(entry, "OMP_NUM_THREADS=", 16) == 0;
}

struct Child {
  pid_t pid = -1;
  bool running = false;
  int status = 0;
};

std::string describe_status(int status) {
  if (WIFEXITED(status)) return "exited with status " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) {
    const char* name = ::strsignal(WTERMSIG(status));
    return "was killed by signal " + std::to_string(WTERMSIG(status)) + " (" + (name ? name : "?") +
           ")";
  }
  return "ended with wait status " + std::to_string(status);
}

bool succeeded(int status) {
  return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

}  // namespace

int launch_local(const ExecOptions& options, const std::vector<std::string>& args,
                 std::ostream& log) {
  const auto timeout = std::chrono::milliseconds(static_cast<long long>(options.timeout_s * 1000));
  const auto grace = std::chrono::milliseconds(static_cast<long long>(options.grace_s * 1000));

  // The store lives here, so a rank that dies (rank 0 included) does not take it down.
  comm::Store::Options store_options;
  store_options.host = options.master_addr;
  store_options.port = options.master_port;
  store_options.host_store = true;
  store_options.timeout = timeout;
  store_options.port_key = "--master-port";
  const std::shared_ptr<comm::Store> store = comm::Store::open(store_options);
  const int port = store->port();

  const std::string exe = self_executable();
  std::vector<std::string> argv{exe};
  for (const std::string& a : rank_arguments(args))
    argv.push_back(a);
  CStrings child_argv(argv);

  std::vector<std::string> base_env;
  for (char** e = environ; *e != nullptr; ++e)
    if (!is_rank_variable(*e) && !is_omp_threads(*e)) base_env.emplace_back(*e);
  base_env.push_back("OMP_NUM_THREADS=" + omp_threads(options));
  std::vector<CStrings> child_envs;
  for (int r = 0; r < options.nproc; ++r) {
    std::vector<std::string> env = base_env;
    env.push_back("RANK=" + std::to_string(r));
    env.push_back("LOCAL_RANK=" + std::to_string(r));
    env.push_back("WORLD_SIZE=" + std::to_string(options.nproc));
    env.push_back("LOCAL_WORLD_SIZE=" + std::to_string(options.nproc));
    env.push_back("MASTER_ADDR=" + options.master_addr);
    env.push_back("MASTER_PORT=" + std::to_string(port));
    env.push_back("TORCHELASTIC_USE_AGENT_STORE=True");
    child_envs.emplace_back(std::move(env));
  }

  struct sigaction action {};
  action.sa_handler = on_signal;
  sigemptyset(&action.sa_mask);
  struct sigaction old_int {
  }, old_term{};
  ::sigaction(SIGINT, &action, &old_int);
  ::sigaction(SIGTERM, &action, &old_term);

  const pid_t parent = ::getpid();
  pid_t group = 0;
  std::vector<Child> children(static_cast<std::size_t>(options.nproc));
  for (int r = 0; r < options.nproc; ++r) {
    const pid_t pid = ::fork();
    if (pid < 0) {
      log << "zeroplan-exec: error: fork failed: " << std::strerror(errno) << "\n";
      if (group > 0) ::killpg(group, SIGKILL);
      break;
    }
    if (pid == 0) {
      ::setpgid(0, group);
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (::getppid() != parent) ::_exit(kExitInternal);
      ::signal(SIGINT, SIG_DFL);
      ::signal(SIGTERM, SIG_DFL);
      ::execve(exe.c_str(), child_argv.get(), child_envs[static_cast<std::size_t>(r)].get());
      const char msg[] = "zeroplan-exec: error: could not start a rank (execve failed)\n";
      [[maybe_unused]] const ssize_t n = ::write(2, msg, sizeof(msg) - 1);
      ::_exit(kExitInternal);
    }
    // Both sides set the group, so it is set before either relies on it.
    ::setpgid(pid, group);
    if (group == 0) group = pid;
    children[static_cast<std::size_t>(r)] = Child{pid, true, 0};
  }

  std::optional<int> first_failure;  // rank
  std::optional<Clock::time_point> stop_at, first_success;
  std::optional<Clock::time_point> killed_at;
  int running = 0;
  for (const Child& c : children)
    running += c.running ? 1 : 0;
  int exit_status = running == options.nproc ? kExitOk : kExitInternal;
  if (running != options.nproc) stop_at = Clock::now();

  while (running > 0) {
    for (std::size_t r = 0; r < children.size(); ++r) {
      Child& c = children[r];
      if (!c.running) continue;
      int status = 0;
      const pid_t done = ::waitpid(c.pid, &status, WNOHANG);
      if (done != c.pid) continue;
      c.running = false;
      c.status = status;
      --running;
      if (succeeded(status)) {
        if (!first_success) first_success = Clock::now();
        continue;
      }
      if (killed_at) continue;  // stopped by us
      if (!first_failure) {
        first_failure = static_cast<int>(r);
        log << "zeroplan-exec: rank " << r << " " << describe_status(status)
            << "; stopping the other ranks" << (grace.count() > 0 ? " after the grace period" : "")
            << "\n";
        exit_status = WIFEXITED(status) ? WEXITSTATUS(status) : kExitCommFailed;
        stop_at = Clock::now() + grace;
      }
    }
    if (running == 0) break;
    const auto now = Clock::now();
    if (g_signal != 0 && !stop_at) {
      log << "zeroplan-exec: interrupted (signal " << g_signal << "); stopping the ranks\n";
      exit_status = 128 + g_signal;
      stop_at = now;
    }
    if (!stop_at && first_success && now - *first_success > timeout) {
      log << "zeroplan-exec: error: " << running << " rank(s) still running " << options.timeout_s
          << " s after another finished (hung?); stopping them\n";
      exit_status = kExitCommFailed;
      stop_at = now;
    }
    if (stop_at && now >= *stop_at) {
      if (!killed_at) {
        ::killpg(group, SIGTERM);
        killed_at = now;
      } else if (now - *killed_at > std::chrono::seconds(2)) {
        ::killpg(group, SIGKILL);
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  // Anything the ranks started themselves goes with them.
  if (group > 0) ::killpg(group, SIGKILL);

  ::sigaction(SIGINT, &old_int, nullptr);
  ::sigaction(SIGTERM, &old_term, nullptr);
  if (killed_at) {
    for (std::size_t r = 0; r < children.size(); ++r) {
      const Child& c = children[r];
      if (WIFSIGNALED(c.status) && static_cast<int>(r) != first_failure.value_or(-1))
        log << "zeroplan-exec: rank " << r << " was stopped\n";
    }
  }
  return exit_status;
}

}  // namespace zp::exec::launch
