// `zeroplan calibrate` end to end: zeroplan-exec measures two local ranks, the cluster description
// it writes is one the run spec's reader takes, and `validate --cluster` simulates with it.
#include <gtest/gtest.h>

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include <nlohmann/json.hpp>

#include "run_zeroplan.h"

namespace zp::cli::testing {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::json;

fs::path TestDir() {
  const fs::path dir =
      fs::temp_directory_path() / ("zeroplan_calibrate_test." + std::to_string(::getpid()) + "." +
                                   ::testing::UnitTest::GetInstance()->current_test_info()->name());
  fs::create_directories(dir);
  return dir;
}

TEST(ZeroplanCalibrate, WritesAClusterThatValidateSimulatesWith) {
#ifndef ZEROPLAN_HAS_EXEC
  GTEST_SKIP() << "this build has no exec (libtorch was not found)";
#endif
  const fs::path dir = TestDir();
  const fs::path cluster = dir / "cluster.yaml";
  const fs::path raw = dir / "points.json";
  const Result r = RunZeroplan("calibrate --quick --nproc 2 --repeat 2 --out '" + cluster.string() +
                               "' --raw '" + raw.string() + "'");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(r.out.empty()) << r.out;
  // Progress on stderr, phase by phase.
  for (const char* phase :
       {"matmul", "elementwise", "kernel fixed costs", "host copy", "all-gather", "send/recv"})
    EXPECT_NE(r.err.find(phase), std::string::npos) << phase << "\n" << r.err;

  const std::string yaml = Slurp(cluster);
  EXPECT_NE(yaml.find("gpus_per_node: 2\n"), std::string::npos) << yaml;
  EXPECT_NE(yaml.find("peak_flops: {fp32: "), std::string::npos) << yaml;
  // Each kernel's fixed cost, forward and under autograd in backward, from the kernel chains.
  EXPECT_NE(yaml.find("kernel_launch: "), std::string::npos) << yaml;
  EXPECT_NE(yaml.find("autograd_node: "), std::string::npos) << yaml;
  EXPECT_NE(yaml.find("asynchronous_launch: false"), std::string::npos) << yaml;
  EXPECT_NE(yaml.find("comm_overlaps_compute: "), std::string::npos) << yaml;
  // Gloo has no reduce-scatter: exec runs an all-reduce, and the cluster prices it so.
  EXPECT_NE(yaml.find("reduce_scatter_by_all_reduce: true"), std::string::npos) << yaml;
  EXPECT_NE(yaml.find("kernel chains: forward "), std::string::npos) << yaml;
  // Dropout gets its own rate, from its own points (one per --quick length), apart from the other
  // element-wise ops'.
  EXPECT_NE(yaml.find("module_flops: {Dropout: "), std::string::npos) << yaml;
  // The engine's hooks, from training a reference model on both ranks.
  EXPECT_NE(yaml.find("hook_overhead: "), std::string::npos) << yaml;
  EXPECT_NE(yaml.find("elementwise_flops: "), std::string::npos) << yaml;
  // Two rounds, each point fitted at their median; --raw keeps both.
  EXPECT_NE(r.err.find("round 2 of 2"), std::string::npos) << r.err;
  EXPECT_NE(yaml.find(" in 2 rounds (each point their median)"), std::string::npos) << yaml;
  const Json rounds = Json::parse(Slurp(raw));
  ASSERT_TRUE(rounds.is_array());
  ASSERT_EQ(rounds.size(), 2u);
  EXPECT_EQ(rounds[0].at("allgather").size(), rounds[1].at("allgather").size());
  const Json& points = rounds[0];
  EXPECT_EQ(points.at("kernels_forward").size(), 2u);  // --quick: chains of 4 and 32
  EXPECT_EQ(points.at("kernels_backward").size(), 2u);
  EXPECT_EQ(points.at("ranks").get<int>(), 2);
  EXPECT_EQ(points.at("dropout").size(), 1u);
  EXPECT_GT(points.at("hooks").at("events").get<int>(), 0);
  // The reference runs' compute and collective calls, and the step slowdown fitted to them: the
  // narrow run's twin with the examples' buckets issues more calls a step.
  EXPECT_EQ(points.at("reference_compute").size(), 3u);
  ASSERT_EQ(points.at("reference_calls").size(), 3u);
  EXPECT_GT(points.at("reference_calls")[2].get<double>(),
            points.at("reference_calls")[0].get<double>());
  EXPECT_NE(yaml.find("in a training step (3 reference ZeRO-3 runs)"), std::string::npos) << yaml;
  EXPECT_NE(yaml.find("a collective call's host time: "), std::string::npos) << yaml;
  EXPECT_EQ(points.at("elementwise_ops").size(), 3u);  // GELU, SiLU, LayerNorm
  EXPECT_FALSE(points.at("allgather").empty());
  EXPECT_FALSE(points.at("send_recv").empty());
  // A pipeline's messages get a link of their own: the idle send/recv plus a message's excess
  // after a piece of compute (one size with --quick).
  EXPECT_EQ(points.at("send_recv_after_compute").size(), 1u);
  EXPECT_NE(yaml.find("point_to_point: {bandwidth: "), std::string::npos) << yaml;
  EXPECT_NE(yaml.find("more for a message after a piece of compute"), std::string::npos) << yaml;
#ifdef __linux__
  // The host's steal time over the measurements, reported beside the fits.
  EXPECT_TRUE(points.at("host_steal_share").is_number());
  EXPECT_NE(yaml.find("# The host's hypervisor took "), std::string::npos) << yaml;
#endif

  // The description's step time differs from the run spec's guess, and validate judges it.
  const Result v =
      RunZeroplan("validate configs/examples/tiny-gpt2-cpu.yaml --steps 2 --json --cluster '" +
                  cluster.string() + "'");
  ASSERT_TRUE(v.status == 0 || v.status == 3) << v.err;
  const Json j = Json::parse(v.out);
  EXPECT_TRUE(j.at("verdicts").at("time_judged").get<bool>());
  EXPECT_TRUE(j.at("verdicts").at("memory").get<bool>());
  EXPECT_TRUE(j.at("verdicts").at("decisions").get<bool>());
  // The prediction pays the calibrated fixed cost for each of the kernels a module runs: GPT-2's
  // attention launches 12 of its own per forward (one per pass would be a twelfth of it).
  const std::size_t at = yaml.find("kernel_launch: ");
  ASSERT_NE(at, std::string::npos);
  const std::int64_t launch = std::stoll(yaml.substr(at + 15));
  bool found = false;
  for (const Json& m : j.at("ranks")[0].at("modules_ns")) {
    if (m.at("module") != "transformer.h.0.attn" || m.at("kind") != "forward") continue;
    found = true;
    EXPECT_GE(m.at("predicted").get<std::int64_t>(), 12 * launch) << m.dump();
  }
  EXPECT_TRUE(found) << j.at("ranks")[0].at("modules_ns").dump();
  const Result guess = RunZeroplan("validate configs/examples/tiny-gpt2-cpu.yaml --steps 2 --json");
  ASSERT_EQ(guess.status, 0) << guess.err;
  EXPECT_NE(Json::parse(guess.out).at("ranks")[0].at("step_time_ns").at("predicted"),
            j.at("ranks")[0].at("step_time_ns").at("predicted"));

  // The points fitted again (--from) give the description measuring them gave.
  const fs::path again = dir / "again.yaml";
  const Result f =
      RunZeroplan("calibrate --from '" + raw.string() + "' --out '" + again.string() + "'");
  ASSERT_EQ(f.status, 0) << f.err;
  EXPECT_EQ(Slurp(again), yaml);
  // One round of them, and the other as a file of its own: the median of the two again.
  const fs::path first = dir / "first.json", second = dir / "second.json";
  std::ofstream(first) << rounds[0].dump();
  std::ofstream(second) << rounds[1].dump();
  const Result split = RunZeroplan("calibrate --from '" + first.string() + "' '" + second.string() +
                                   "' --out '" + again.string() + "'");
  ASSERT_EQ(split.status, 0) << split.err;
  EXPECT_EQ(Slurp(again), yaml);
  fs::remove_all(dir);
}

TEST(ZeroplanCalibrate, BadInputIsOneLineAndStatusTwo) {
  Result r = RunZeroplan("calibrate --nproc 0");
  EXPECT_EQ(r.status, 2);
  EXPECT_EQ(Lines(r.err), 1) << r.err;
  EXPECT_NE(r.err.find("--nproc"), std::string::npos) << r.err;
  r = RunZeroplan("calibrate --repeat 0");
  EXPECT_EQ(r.status, 2);
  EXPECT_EQ(Lines(r.err), 1) << r.err;
  EXPECT_NE(r.err.find("--repeat"), std::string::npos) << r.err;
  r = RunZeroplan("calibrate --out no-such-folder/cluster.yaml");
  EXPECT_EQ(r.status, 2);
  EXPECT_EQ(Lines(r.err), 1) << r.err;
  EXPECT_NE(r.err.find("no-such-folder"), std::string::npos) << r.err;
}

TEST(ZeroplanCalibrate, PointsToFitAgainMustBeThere) {
  Result r = RunZeroplan("calibrate --from no-such-points.json");
  EXPECT_EQ(r.status, 2);
  EXPECT_EQ(Lines(r.err), 1) << r.err;
  EXPECT_NE(r.err.find("no-such-points.json"), std::string::npos) << r.err;
  // The rank count is the files'; a measurement's options do not apply.
  r = RunZeroplan("calibrate --from no-such-points.json --nproc 4");
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("--nproc"), std::string::npos) << r.err;
  r = RunZeroplan("calibrate --from no-such-points.json --repeat 3");
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("--repeat"), std::string::npos) << r.err;
  const fs::path dir = TestDir();
  const fs::path empty = dir / "empty.json";
  std::ofstream(empty) << "[]";
  r = RunZeroplan("calibrate --from '" + empty.string() + "'");
  EXPECT_EQ(r.status, 2);
  EXPECT_EQ(Lines(r.err), 1) << r.err;
  EXPECT_NE(r.err.find("no rounds"), std::string::npos) << r.err;
  fs::remove_all(dir);
}

}  // namespace
}  // namespace zp::cli::testing
