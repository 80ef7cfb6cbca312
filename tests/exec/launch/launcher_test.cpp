// zeroplan-exec end to end: real processes, real sockets. Timeouts are generous; nothing here
// asserts on speed, only that faults end the job.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "core/trace/native_format.h"
#include "tests/exec/launch/process.h"

namespace {

namespace fs = std::filesystem;

using zp::testing::Outcome;
using zp::testing::run;

const std::string kExec = std::string(ZEROPLAN_BINARY_DIR) + "/zeroplan-exec";

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

int lines(const std::string& text) {
  return static_cast<int>(std::count(text.begin(), text.end(), '\n'));
}

// Processes whose command line has `marker` as one of its arguments.
int processes_with_argument(const std::string& marker) {
  int n = 0;
  for (const auto& entry : fs::directory_iterator("/proc")) {
    const std::string name = entry.path().filename();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::ifstream in(entry.path() / "cmdline");
    std::string arg;
    while (std::getline(in, arg, '\0'))
      if (arg == marker) ++n;
  }
  return n;
}

// A listening socket on a port the kernel picked.
class BusyPort {
 public:
  BusyPort() {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
    ::listen(fd_, 1);
    socklen_t len = sizeof(addr);
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
  }
  ~BusyPort() { ::close(fd_); }
  int port() const { return port_; }

 private:
  int fd_ = -1;
  int port_ = 0;
};

TEST(ExecLauncher, TwoRanksRunTheSelftest) {
  const Outcome r = run(kExec, {"--nproc", "2", "--selftest", "--selftest-numel", "1001",
                                "--selftest-iterations", "1", "--timeout", "120"});
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(contains(r.out, "2 rank(s), gloo, ")) << r.out;
  EXPECT_TRUE(contains(r.out, "1001 elements (fp32) padded to 1002")) << r.out;
  for (const char* op : {"all_gather", "reduce_scatter", "all_reduce", "broadcast", "send", "recv"})
    EXPECT_TRUE(contains(r.out, op)) << op << "\n" << r.out;
  EXPECT_TRUE(contains(r.out, "self-test passed"));
}

// torch's default (every core in every rank) oversubscribes cores that ranks share.
TEST(ExecLauncher, EachRankGetsItsShareOfTheCoresAsIntraOpThreads) {
  const std::vector<std::string> selftest{
      "--nproc", "2",         "--selftest", "--selftest-numel", "1001", "--selftest-iterations",
      "1",       "--timeout", "120"};
  cpu_set_t mask;
  CPU_ZERO(&mask);
  ASSERT_EQ(::sched_getaffinity(0, sizeof(mask), &mask), 0);
  const int share = std::max(1, CPU_COUNT(&mask) / 2);
  const auto threads = [](const std::string& n) { return ", " + n + " thread(s) per rank, "; };
  Outcome r = run(kExec, selftest, {{"OMP_NUM_THREADS", ""}});
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(contains(r.out, threads(std::to_string(share)))) << r.out;
  // The user's own setting wins, and --threads over it.
  r = run(kExec, selftest, {{"OMP_NUM_THREADS", "3"}});
  EXPECT_TRUE(contains(r.out, threads("3"))) << r.out;
  std::vector<std::string> with_flag = selftest;
  with_flag.insert(with_flag.end(), {"--threads", "2"});
  r = run(kExec, with_flag, {{"OMP_NUM_THREADS", "3"}});
  EXPECT_TRUE(contains(r.out, threads("2"))) << r.out;
}

TEST(ExecLauncher, ARankThatExitsEarlyMakesTheOthersFailAndEndsTheJob) {
  const std::string marker = "--selftest-numel=1231";
  const Outcome r = run(kExec, {"--nproc", "2", "--selftest", marker, "--selftest-fault", "exit@1",
                                "--timeout", "120", "--grace", "60"});
  EXPECT_NE(r.status, 0);
  EXPECT_TRUE(contains(r.err, "rank 1: exiting early")) << r.err;
  EXPECT_TRUE(contains(r.err, "zeroplan-exec: rank 1 exited with status 1")) << r.err;
  // Rank 0 notices through Gloo long before the timeout or the grace period end.
  EXPECT_TRUE(contains(r.err, "error: rank 0: reduce_scatter 'bucket 0' failed")) << r.err;
  EXPECT_LT(r.seconds, 60) << r.err;
  EXPECT_EQ(processes_with_argument(marker), 0);
}

TEST(ExecLauncher, AHangingRankMakesTheOthersTimeOutAndIsStopped) {
  // The timeout also bounds the rendezvous, so it leaves room for a slow start on a busy machine.
  const std::string marker = "--selftest-numel=1233";
  const Outcome r = run(kExec, {"--nproc", "2", "--selftest", marker, "--selftest-fault", "hang@1",
                                "--timeout", "8", "--grace", "1"});
  EXPECT_EQ(r.status, 4) << r.err;
  EXPECT_TRUE(contains(r.err, "rank 0: reduce_scatter 'bucket 0' failed")) << r.err;
  EXPECT_TRUE(contains(r.err, "rank 1 was stopped")) << r.err;
  EXPECT_LT(r.seconds, 120);
  EXPECT_EQ(processes_with_argument(marker), 0);
}

TEST(ExecLauncher, APortInUseIsOneLineAndStatusTwo) {
  const BusyPort busy;
  const Outcome r =
      run(kExec, {"--nproc", "2", "--selftest", "--master-port", std::to_string(busy.port())});
  EXPECT_EQ(r.status, 2);
  EXPECT_EQ(r.err, "zeroplan-exec: error: --master-port: " + std::to_string(busy.port()) +
                       " is already in use on this host; choose a free port (or 0 for any)\n");
}

TEST(ExecLauncher, RankZeroOnAPortInUseNamesMasterPort) {
  const BusyPort busy;
  const Outcome r = run(kExec, {"--selftest"},
                        {{"RANK", "0"},
                         {"WORLD_SIZE", "2"},
                         {"MASTER_ADDR", "127.0.0.1"},
                         {"MASTER_PORT", std::to_string(busy.port())}});
  EXPECT_EQ(r.status, 2);
  EXPECT_EQ(lines(r.err), 1) << r.err;
  EXPECT_TRUE(contains(r.err, "MASTER_PORT: " + std::to_string(busy.port()))) << r.err;
}

TEST(ExecLauncher, AMissingPeerEndsInOneLineAfterTheTimeout) {
  int port = 0;
  {
    const BusyPort probe;  // a free port once it closes
    port = probe.port();
  }
  const Outcome r = run(kExec, {"--selftest", "--timeout", "2"},
                        {{"RANK", "0"},
                         {"WORLD_SIZE", "2"},
                         {"MASTER_ADDR", "127.0.0.1"},
                         {"MASTER_PORT", std::to_string(port)}});
  EXPECT_EQ(r.status, 4);
  EXPECT_EQ(lines(r.err), 1) << r.err;
  EXPECT_TRUE(contains(r.err, "the 2 ranks of group 'world' did not all join within 2 s")) << r.err;
}

TEST(ExecLauncher, OneRankFromTheDeepSpeedLaunchersEnvironmentHostsItsOwnStore) {
  int port = 0;
  {
    const BusyPort probe;
    port = probe.port();
  }
  // DeepSpeed's launcher also appends --local_rank.
  const Outcome r = run(kExec, {"--selftest", "--selftest-numel", "17", "--local_rank=0"},
                        {{"RANK", "0"},
                         {"WORLD_SIZE", "1"},
                         {"LOCAL_RANK", "0"},
                         {"MASTER_ADDR", "127.0.0.1"},
                         {"MASTER_PORT", std::to_string(port)}});
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(contains(r.out, "1 rank(s), gloo, ")) << r.out;
  EXPECT_TRUE(contains(r.out, " 17 elements")) << r.out;
}

TEST(ExecLauncher, BadEnvironmentIsOneLineAndStatusTwo) {
  const Outcome r = run(kExec, {"--selftest"}, {{"RANK", "x"}, {"WORLD_SIZE", "2"}});
  EXPECT_EQ(r.status, 2);
  EXPECT_EQ(r.err, "zeroplan-exec: error: environment variable RANK: 'x' is not an integer\n");
}

TEST(ExecLauncher, AGpuWhereNoneIsVisibleIsOneLineAndStatusTwo) {
  const Outcome r = run(kExec, {"--nproc", "2", "--selftest", "--device", "cuda"});
  EXPECT_EQ(r.status, 2);
  EXPECT_EQ(lines(r.err), 1) << r.err;
  EXPECT_TRUE(contains(r.err, "zeroplan-exec: error: --device: cuda: ")) << r.err;
}

TEST(ExecLauncher, ZeroplanExecForwardsItsArguments) {
  const Outcome r = run(std::string(ZEROPLAN_BINARY_DIR) + "/zeroplan", {"exec", "--help"});
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(contains(r.out, "Usage: zeroplan-exec")) << r.out;
  const Outcome bad = run(std::string(ZEROPLAN_BINARY_DIR) + "/zeroplan", {"exec", "--nproc", "x"});
  EXPECT_EQ(bad.status, 2);
  EXPECT_TRUE(contains(bad.err, "zeroplan-exec: error: ")) << bad.err;
}

TEST(ExecTraining, TwoRankProcessesTrainTheBundledExampleAndCountTheirMemory) {
  const fs::path trace = fs::temp_directory_path() / "zeroplan_launcher_test.trace.json";
  const Outcome r =
      run(kExec, {std::string(ZEROPLAN_SOURCE_DIR) + "/configs/examples/tiny-gpt2-cpu.yaml",
                  "--nproc", "2", "--steps", "2", "--trace", trace.string(), "--timeout", "120"});
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(contains(r.out, "ZeRO-3 over 2 rank(s) (gloo, ")) << r.out;
  EXPECT_TRUE(contains(r.out, "step 1  loss")) << r.out;
  // Each process counts its own allocations, by category.
  EXPECT_TRUE(contains(r.out, "rank 0: ")) << r.out;
  EXPECT_TRUE(contains(r.out, "rank 1: ")) << r.out;
  EXPECT_TRUE(contains(r.out, "gathered_params")) << r.out;
  EXPECT_TRUE(contains(r.out, "activations")) << r.out;
  std::ifstream in(trace);
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_TRUE(contains(text, "\"measured\"")) << text.substr(0, 200);
  fs::remove(trace);
}

TEST(ExecTraining, ARunExecCannotTrainIsOneLineAndStatusTwoBeforeAnyRankStarts) {
  const fs::path dir =
      fs::temp_directory_path() / ("zeroplan_launcher_test." + std::to_string(::getpid()));
  fs::create_directories(dir);
  std::ifstream in(std::string(ZEROPLAN_SOURCE_DIR) + "/configs/examples/tiny-gpt2-cpu.yaml");
  std::string yaml((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  yaml.replace(yaml.find("stage: 3"), 8, "stage: 2");
  std::ofstream(dir / "run.yaml") << yaml;
  const Outcome stage = run(kExec, {(dir / "run.yaml").string(), "--nproc", "2"});
  EXPECT_EQ(stage.status, 2);
  EXPECT_EQ(lines(stage.err), 1) << stage.err;
  EXPECT_TRUE(contains(stage.err, "zero_optimization.stage")) << stage.err;
  const Outcome world = run(
      kExec,
      {std::string(ZEROPLAN_SOURCE_DIR) + "/configs/examples/tiny-gpt2-cpu.yaml", "--nproc", "3"});
  EXPECT_EQ(world.status, 2);
  EXPECT_EQ(lines(world.err), 1) << world.err;
  EXPECT_TRUE(contains(world.err, "parallel.data")) << world.err;
  fs::remove_all(dir);
}

// The coordinator's decisions, seen in the traces: rank 0's collectives, step by step, with their
// kinds and bytes, are the simulator's for the same run.
TEST(ExecTraining, TheMeasuredCollectivesAreTheSimulatedOnesStepByStep) {
  const fs::path dir =
      fs::temp_directory_path() / ("zeroplan_collectives_test." + std::to_string(::getpid()));
  fs::create_directories(dir);
  const std::string spec =
      std::string(ZEROPLAN_SOURCE_DIR) + "/configs/examples/tiny-gpt2-cpu.yaml";
  const Outcome sim =
      run(std::string(ZEROPLAN_BINARY_DIR) + "/zeroplan",
          {"simulate", spec, "--steps", "3", "--trace", (dir / "sim.json").string()});
  ASSERT_EQ(sim.status, 0) << sim.err;
  const Outcome exec = run(kExec, {spec, "--nproc", "2", "--steps", "3", "--trace",
                                   (dir / "exec.json").string(), "--timeout", "120"});
  ASSERT_EQ(exec.status, 0) << exec.err;
  using Collective =
      std::tuple<std::int32_t, zp::trace::OpKind, std::int64_t>;  // step, kind, bytes
  const auto collectives = [](const zp::trace::Trace& t) {
    std::vector<Collective> out;
    for (const zp::trace::Op& op : t.ops) {
      if (op.rank == 0 && (op.kind == zp::trace::OpKind::kAllGather ||
                           op.kind == zp::trace::OpKind::kReduceScatter ||
                           op.kind == zp::trace::OpKind::kAllReduce))
        out.emplace_back(op.step, op.kind, op.bytes);
    }
    return out;
  };
  const std::vector<Collective> predicted = collectives(zp::trace::read_native(dir / "sim.json"));
  const std::vector<Collective> measured = collectives(zp::trace::read_native(dir / "exec.json"));
  EXPECT_GT(predicted.size(), 60u);
  EXPECT_EQ(measured, predicted);
  fs::remove_all(dir);
}

}  // namespace
