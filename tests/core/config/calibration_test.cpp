#include "core/config/calibration.h"

#include <gtest/gtest.h>

#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "core/config/document.h"
#include "core/config/run_spec.h"
#include "core/util/error.h"

namespace zp {
namespace {

// Points on seconds = fixed + amount / rate.
std::vector<CalibrationPoint> line(double fixed, double rate, std::vector<double> amounts) {
  std::vector<CalibrationPoint> out;
  for (const double a : amounts)
    out.push_back({a, fixed + a / rate});
  return out;
}

TEST(FitLine, RecoversAnExactLine) {
  const LinearFit fit = fit_line(line(2e-6, 1e9, {1e3, 1e5, 1e6}), "x");
  EXPECT_NEAR(fit.fixed, 2e-6, 1e-12);
  EXPECT_NEAR(fit.rate(), 1e9, 1.0);
}

// A negative intercept would make small calls cost less than nothing: the line goes through 0.
TEST(FitLine, ANegativeInterceptIsRefittedThroughTheOrigin) {
  const LinearFit fit = fit_line({{1e3, 0.5e-6}, {1e6, 1.1e-3}}, "x");
  EXPECT_EQ(fit.fixed, 0);
  EXPECT_GT(fit.per_unit, 0);
  const LinearFit one = fit_line({{1e6, 1e-3}}, "x");
  EXPECT_EQ(one.fixed, 0);
  EXPECT_NEAR(one.rate(), 1e9, 1e-3);
}

TEST(FitLine, NoPointsIsAUserError) {
  EXPECT_THROW(fit_line({}, "matmul"), UserError);
}

// Time that shrinks with size (noise) gives no line; the largest call's rate stands.
TEST(FitLine, WithoutAPositiveSlopeTheLargestPointsRateStands) {
  const LinearFit fit = fit_line({{1e3, 2e-3}, {1e6, 1e-3}, {1e7, 1e-4}}, "matmul");
  EXPECT_EQ(fit.fixed, 0);
  EXPECT_NEAR(fit.rate(), 1e11, 1);
}

// The cluster the run spec's reader makes of calibrate's YAML, named `name` (the reader calls an
// inline description "inline").
ClusterSpec read_back(const std::string& yaml, const std::string& name) {
  Provenance provenance;
  ClusterSpec back = parse_cluster(
      Node(Document::from_yaml(yaml, "calibrated.yaml")).child("cluster"), provenance);
  back.name = name;
  return back;
}

// Each of `values` in place of `key` in `good` is refused with a UserError naming the key.
// calibration_from_json refuses `bad` with a UserError at `key_path`; `what` names the case.
void ExpectRefusedAt(const Json& bad, const std::string& key_path, const std::string& what) {
  try {
    calibration_from_json(bad, "raw.json");
    ADD_FAILURE() << what << " was accepted";
  } catch (const UserError& e) {
    EXPECT_EQ(e.where().key_path, key_path) << what;
  }
}

void ExpectEachRefused(const Json& good, const std::string& key,
                       std::initializer_list<const char*> values) {
  for (const char* value : values) {
    Json bad = good;
    bad[key] = Json::parse(value);
    ExpectRefusedAt(bad, key, key + ": " + value);
  }
}

Calibration measured(std::int64_t ranks) {
  Calibration c;
  c.ranks = ranks;
  c.matmul = line(3e-6, 50e9, {65536, 4e6, 2.7e8});
  c.elementwise = line(1.5e-6, 10e9, {12288, 786432, 1.2e7});
  c.host_copy = line(0, 8e9, {1e6, 1.6e7});
  // A ring of n ranks: (n - 1) x 20 us + (n - 1) / n x S / 2 GB/s.
  const double n = static_cast<double>(ranks);
  c.allgather = line((n - 1) * 20e-6, 2e9 * n / (n - 1), {4096, 65536, 1048576});
  c.reduce_scatter = c.allgather;
  c.send_recv = line(30e-6, 3e9, {4096, 1048576});
  // Chains of K small products: 2.5 us a kernel forward, 6 us backward (the backward's start,
  // 30 us, is no kernel's).
  c.kernels_forward = line(1e-6, 1 / 2.5e-6, {4, 16, 64});
  c.kernels_backward = line(30e-6, 1 / 6e-6, {4, 16, 64});
  return c;
}

// Each cost model, priced with the calibrated cluster, gives back the measured time.
TEST(CalibrateCluster, InvertsTheSimulatorsCostModels) {
  for (const std::int64_t ranks : {2, 4}) {
    SCOPED_TRACE(ranks);
    const CalibratedCluster k = calibrate_cluster(measured(ranks), 16LL << 30);
    const ClusterSpec& c = k.cluster;
    EXPECT_EQ(c.nodes, 1);
    EXPECT_EQ(c.gpus_per_node, ranks);
    EXPECT_EQ(c.gpu_memory, (16LL << 30) / ranks);
    EXPECT_NEAR(c.peak_flops.at("fp32"), 50e9, 1);
    EXPECT_NEAR(c.hbm_bandwidth, 10e9, 1);
    // A kernel's fixed cost is the forward chain's slope, not a line's intercept (1 us, or the
    // elementwise fit's 1.5 us); backward adds the rest of its chain's slope.
    EXPECT_EQ(c.kernel_launch_ns, 2500);
    EXPECT_EQ(c.autograd_node_ns, 3500);
    EXPECT_NEAR(c.pcie_bandwidth, 8e9, 1);
    EXPECT_EQ(c.intra_node.latency_ns, 20000);
    EXPECT_NEAR(c.intra_node.bandwidth, 2e9, 1);
    EXPECT_EQ(c.efficiency, (Efficiency{1, 1, 1}));
    EXPECT_FALSE(c.asynchronous_launch) << "CPU ranks run each operation as it is called";
    // The ring model with these figures: (n - 1) a + (n - 1) / n S / B.
    const double n = static_cast<double>(ranks);
    const double s = 65536;
    const double ring =
        (n - 1) * c.intra_node.latency_ns * 1e-9 + (n - 1) / n * s / c.intra_node.bandwidth;
    EXPECT_NEAR(ring, (n - 1) * 20e-6 + s / (2e9 * n / (n - 1)), 1e-9);
  }
}

// A pipeline's messages get the send/recv's own line (point_to_point), apart from the
// collectives'; without send/recv points none is written and they take intra_node's. The
// description reads back with it.
TEST(CalibrateCluster, SendRecvGivesAPointToPointLinkOfItsOwn) {
  Calibration c = measured(4);
  CalibratedCluster k = calibrate_cluster(c, 1LL << 30);
  ASSERT_TRUE(k.cluster.point_to_point.has_value());
  EXPECT_EQ(k.cluster.point_to_point->latency_ns, 30000);
  EXPECT_NEAR(k.cluster.point_to_point->bandwidth, 3e9, 1);
  EXPECT_EQ(k.cluster.intra_node.latency_ns, 20000) << "the collectives keep their own line";
  const std::string yaml = cluster_yaml(k);
  EXPECT_NE(yaml.find("point_to_point: {bandwidth: 3000000000, latency: 30000ns}"),
            std::string::npos)
      << yaml;
  EXPECT_EQ(read_back(yaml, k.cluster.name), k.cluster) << yaml;

  c.send_recv.clear();
  EXPECT_FALSE(calibrate_cluster(c, 1LL << 30).cluster.point_to_point.has_value());
}

// A message after a piece of compute, the ranks exchanging in pairs as a pipeline's stages do,
// adds the median excess over the idle line to point_to_point's latency, never less than
// nothing; the collectives keep theirs.
TEST(CalibrateCluster, AMessageInAStepAddsItsExcessToThePointToPointLatency) {
  Calibration c = measured(4);
  // 1.4 ms more than the idle 30 us + bytes at 3 GB/s at 4 KiB and 64 KiB; at 1 MiB 9 ms more.
  c.send_recv_after_compute = line(1430e-6, 3e9, {4096, 65536, 1048576});
  c.send_recv_after_compute[2].seconds += 9e-3;
  CalibratedCluster k = calibrate_cluster(c, 1LL << 30);
  EXPECT_TRUE(k.send_recv_in_step);
  EXPECT_NEAR(k.send_recv_step_excess, 1.4e-3, 1e-9) << "the median, not the outlier's";
  ASSERT_TRUE(k.cluster.point_to_point.has_value());
  EXPECT_EQ(k.cluster.point_to_point->latency_ns, 1430000);
  EXPECT_NEAR(k.cluster.point_to_point->bandwidth, 3e9, 1) << "the idle bandwidth";
  EXPECT_EQ(k.cluster.intra_node.latency_ns, 20000);
  const std::string yaml = cluster_yaml(k);
  EXPECT_NE(yaml.find("and 1.4 ms more for a message after a piece of compute"), std::string::npos)
      << yaml;
  EXPECT_EQ(read_back(yaml, k.cluster.name), k.cluster) << yaml;
  // Faster than idle (more ranks than cores: the piece alone waited): the idle latency stands.
  c.send_recv_after_compute = line(1e-6, 1e12, {4096, 65536, 1048576});
  EXPECT_EQ(calibrate_cluster(c, 1LL << 30).cluster.point_to_point->latency_ns, 30000);
}

TEST(CalibrationFromJson, ReadsTheInStepMessagesAndRefusesABadOne) {
  const Json good = Json::parse(R"({"format": "zeroplan-calibration", "version": 1, "ranks": 2,
    "send_recv_after_compute": [{"bytes": 4096, "seconds": 2e-4}]})");
  const Calibration c = calibration_from_json(good, "raw.json");
  ASSERT_EQ(c.send_recv_after_compute.size(), 1u);
  EXPECT_EQ(c.send_recv_after_compute[0].seconds, 2e-4);
  Json bad = good;
  bad["send_recv_after_compute"][0]["seconds"] = -1;
  ExpectRefusedAt(bad, "send_recv_after_compute[0]", "a negative time");
}

// Rounds of one measurement combine point by point: each time the median over the rounds (so
// one round's busy spell moves nothing), the reference runs' compute likewise, the steal share
// their mean. The description says how many rounds.
TEST(MedianOfRounds, EachPointIsTheMedianOverTheRounds) {
  Calibration a = measured(2), b = measured(2), c = measured(2);
  a.reference_compute = {2e-3, 6e-3};
  b.reference_compute = {4e-3, 5e-3};
  c.reference_compute = {3e-3, 9e-3};
  a.reference_calls = {10, 12};
  b.reference_calls = {30, 12};
  c.reference_calls = {20, 11};
  b.matmul[1].seconds *= 3;  // a busy spell
  c.matmul[1].seconds *= 0.9;
  c.send_recv[0].seconds *= 0.5;
  a.steal_share = 0.0;
  b.steal_share = 0.3;
  const Calibration m = median_of_rounds({a, b, c});
  EXPECT_EQ(m.rounds, 3);
  EXPECT_DOUBLE_EQ(m.matmul[1].seconds, a.matmul[1].seconds);
  EXPECT_DOUBLE_EQ(m.matmul[0].seconds, a.matmul[0].seconds);
  EXPECT_DOUBLE_EQ(m.send_recv[0].seconds, a.send_recv[0].seconds);
  EXPECT_EQ(m.reference_compute, (std::vector<double>{3e-3, 6e-3}));
  EXPECT_EQ(m.reference_calls, (std::vector<double>{20, 12}));
  ASSERT_TRUE(m.steal_share.has_value());
  EXPECT_DOUBLE_EQ(*m.steal_share, 0.15) << "the mean of the rounds that count it";
  const CalibratedCluster k = calibrate_cluster(m, 1LL << 30);
  EXPECT_EQ(calibrate_cluster(median_of_rounds({b}), 1LL << 30).rounds, 1);
  EXPECT_NEAR(k.matmul.rate(), calibrate_cluster(a, 1LL << 30).matmul.rate(), 1);
  EXPECT_NE(cluster_yaml(k).find(" in 3 rounds (each point their median)"), std::string::npos);
  EXPECT_EQ(cluster_yaml(calibrate_cluster(a, 1LL << 30)).find("rounds"), std::string::npos);
}

// Rounds from files (calibrate --from) may not be of one measurement: the first that differs is
// named by its origin and the key, as bad input.
TEST(MedianOfRounds, RoundsThatMeasuredOtherThingsAreRefusedByOrigin) {
  const auto refused = [](const std::vector<Calibration>& rounds, const std::string& origin,
                          const std::string& key) {
    try {
      (void)median_of_rounds(rounds, {"first.json", "second.json"});
      ADD_FAILURE() << "accepted rounds differing in " << key;
    } catch (const UserError& e) {
      const std::string what = e.what();
      EXPECT_NE(what.find(origin), std::string::npos) << what;
      EXPECT_NE(what.find(key), std::string::npos) << what;
      EXPECT_NE(what.find("first.json"), std::string::npos) << what;
    }
  };
  Calibration other = measured(2);
  other.matmul.pop_back();
  refused({measured(2), other}, "second.json", "matmul");
  other = measured(2);
  other.allgather[0].amount *= 2;
  refused({measured(2), other}, "second.json", "allgather");
  refused({measured(2), measured(4)}, "second.json", "ranks");
  other = measured(2);
  other.collectives_poll = !measured(2).collectives_poll.value_or(false);
  refused({measured(2), other}, "second.json", "collectives_poll");
  other = measured(2);
  other.reference_compute.push_back(1e-3);
  refused({measured(2), other}, "second.json", "reference_compute");
  // Without origins, rounds are counted.
  EXPECT_THROW((void)median_of_rounds({measured(2), measured(4)}), UserError);
  EXPECT_NO_THROW((void)median_of_rounds({measured(2), measured(2)}, {"a", "b"}));
}

// Gloo has no reduce-scatter (exec runs an all-reduce): its points, twice the all-gather's line,
// are fitted at half their time and the cluster prices a reduce-scatter as an all-reduce. Other
// backends keep the ring.
TEST(CalibrateCluster, OnGlooAReduceScatterIsAnAllReduce) {
  for (const std::int64_t ranks : {2, 4}) {
    SCOPED_TRACE(ranks);
    Calibration c = measured(ranks);
    const double n = static_cast<double>(ranks);
    c.backend = "gloo";
    c.reduce_scatter = line(2 * (n - 1) * 20e-6, 1e9 * n / (n - 1), {4096, 65536, 1048576});
    CalibratedCluster k = calibrate_cluster(c, 1LL << 30);
    EXPECT_TRUE(k.cluster.reduce_scatter_by_all_reduce);
    EXPECT_EQ(k.cluster.intra_node.latency_ns, 20000);
    EXPECT_NEAR(k.cluster.intra_node.bandwidth, 2e9, 1);
    const std::string yaml = cluster_yaml(k);
    EXPECT_NE(yaml.find("reduce_scatter_by_all_reduce: true"), std::string::npos) << yaml;
    EXPECT_EQ(read_back(yaml, k.cluster.name), k.cluster) << yaml;
    c.backend = "nccl";
    k = calibrate_cluster(c, 1LL << 30);
    EXPECT_FALSE(k.cluster.reduce_scatter_by_all_reduce);
    EXPECT_GT(k.cluster.intra_node.latency_ns, 20000) << "the points taken as a ring's";
    EXPECT_EQ(cluster_yaml(k).find("reduce_scatter_by_all_reduce"), std::string::npos);
  }
}

// Element-wise ops get a FLOP rate of their own; files without them leave peak_flops to price them.
TEST(CalibrateCluster, ElementWiseOpsGiveTheirOwnRate) {
  Calibration c = measured(2);
  CalibratedCluster k = calibrate_cluster(c, 1LL << 30);
  EXPECT_EQ(k.cluster.elementwise_flops, 0);
  EXPECT_EQ(cluster_yaml(k).find("elementwise_flops"), std::string::npos);
  c.elementwise_ops = line(2e-6, 3e9, {131072, 65536, 2097152, 1048576});
  k = calibrate_cluster(c, 1LL << 30);
  EXPECT_NEAR(k.cluster.elementwise_flops, 3e9, 1);
  EXPECT_NE(cluster_yaml(k).find("elementwise_flops: 3000000000"), std::string::npos);
}

// Dropout's forward and backward give the class its own rate (module_flops), apart from the other
// element-wise ops'; files without the points leave it to elementwise_flops. The description
// reads back with it.
TEST(CalibrateCluster, DropoutGetsARateOfItsOwn) {
  Calibration c = measured(2);
  c.elementwise_ops = line(2e-6, 3e9, {131072, 1048576});
  CalibratedCluster k = calibrate_cluster(c, 1LL << 30);
  EXPECT_TRUE(k.cluster.module_flops.empty());
  EXPECT_EQ(cluster_yaml(k).find("module_flops"), std::string::npos);
  c.dropout = line(5e-6, 1.5e8, {98304, 1572864});
  k = calibrate_cluster(c, 1LL << 30);
  EXPECT_NEAR(k.cluster.elementwise_flops, 3e9, 1);
  ASSERT_EQ(k.cluster.module_flops.size(), 1u);
  EXPECT_NEAR(k.cluster.module_flops.at("Dropout"), 1.5e8, 1);
  const std::string yaml = cluster_yaml(k);
  EXPECT_NE(yaml.find("module_flops: {Dropout: 150000000}"), std::string::npos) << yaml;
  EXPECT_EQ(read_back(yaml, k.cluster.name), k.cluster) << yaml;
}

// A file from before the kernel chains: each kernel pays the elementwise call's fixed part, and
// backward nothing more.
TEST(CalibrateCluster, WithoutKernelChainsTheElementwiseFixedPartStands) {
  Calibration c = measured(2);
  c.kernels_forward.clear();
  c.kernels_backward.clear();
  const CalibratedCluster k = calibrate_cluster(c, 1LL << 30);
  EXPECT_FALSE(k.has_kernels);
  EXPECT_EQ(k.cluster.kernel_launch_ns, 1500);
  EXPECT_EQ(k.cluster.autograd_node_ns, 0);
}

// Noise can make the backward chain's slope smaller than the forward's: no negative node cost.
TEST(CalibrateCluster, AutogradNodeIsNeverNegative) {
  Calibration c = measured(2);
  c.kernels_backward = line(30e-6, 1 / 2e-6, {4, 16, 64});
  EXPECT_EQ(calibrate_cluster(c, 1LL << 30).cluster.autograd_node_ns, 0);
}

// A step issues its collectives between pieces of compute: the all-gathers measured so give the
// links, and whether one beside compute hides behind it decides comm_overlaps_compute.
TEST(CalibrateCluster, CollectivesAreFittedAsAStepIssuesThem) {
  Calibration c = measured(2);
  CalibratedCluster k = calibrate_cluster(c, 1LL << 30);
  EXPECT_FALSE(k.in_step);
  EXPECT_TRUE(k.cluster.comm_overlaps_compute) << "nothing measured says otherwise";
  EXPECT_EQ(k.cluster.collective_overhead_ns, 0);
  EXPECT_EQ(cluster_yaml(k).find("collective_overhead"), std::string::npos);
  // After 500 us of compute an all-gather takes 300 us more than an idle one (20 us + bytes at
  // 4 GB/s, the ring's (n - 1) / n of 2 GB/s) at 4 KiB, 64 KiB and 1 MiB but for one 4 ms
  // outlier; beside compute, as long (nothing hidden).
  c.compute_piece = 500e-6;
  c.allgather_after_compute = line(320e-6, 4e9, {4096, 65536, 1048576});
  c.allgather_after_compute[2].seconds += 4e-3;
  c.allgather_beside_compute = c.allgather_after_compute;
  k = calibrate_cluster(c, 1LL << 30);
  EXPECT_TRUE(k.in_step);
  EXPECT_NEAR(k.step_excess, 300e-6, 1e-9) << "the median excess, not the outlier's";
  // The excess is paid once a call, whatever the hops: collective_overhead, not the latency.
  EXPECT_EQ(k.cluster.collective_overhead_ns, 300000);
  EXPECT_EQ(k.cluster.intra_node.latency_ns, 20000) << "the idle hop, (n - 1) = 1 of them";
  EXPECT_NEAR(k.cluster.intra_node.bandwidth, 2e9, 1) << "the idle bandwidth";
  EXPECT_NE(cluster_yaml(k).find("collective_overhead: 300000ns"), std::string::npos);
  EXPECT_DOUBLE_EQ(k.overlap, 0);
  EXPECT_FALSE(k.cluster.comm_overlaps_compute);
  EXPECT_NE(cluster_yaml(k).find("comm_overlaps_compute: false"), std::string::npos);
  // Beside compute the gathers cost nothing more than the compute: fully hidden.
  c.allgather_beside_compute = line(1e-9, 1e15, {4096, 65536, 1048576});
  k = calibrate_cluster(c, 1LL << 30);
  EXPECT_NEAR(k.overlap, 1, 1e-5);
  EXPECT_TRUE(k.cluster.comm_overlaps_compute);
  // Half hidden is where the two part.
  for (std::size_t i = 0; i < c.allgather_beside_compute.size(); ++i) {
    const double after = c.allgather_after_compute[i].seconds;
    c.allgather_beside_compute[i].seconds = after - 0.4 * std::min(after, c.compute_piece);
  }
  EXPECT_FALSE(calibrate_cluster(c, 1LL << 30).cluster.comm_overlaps_compute);
}

// A collective's threads need a core: the cores recorded decide, not the noisy share hidden.
TEST(CalibrateCluster, WhereTheRanksThreadsFillTheCoresCollectivesTakeTurnsWithCompute) {
  Calibration c = measured(2);
  c.compute_piece = 500e-6;
  c.allgather_after_compute = line(300e-6, 1e9, {4096, 65536, 1048576});
  c.allgather_beside_compute = line(1e-9, 1e15, {4096, 65536, 1048576});  // all hidden
  c.threads_per_rank = 1;
  c.cores = 2;
  CalibratedCluster k = calibrate_cluster(c, 1LL << 30);
  EXPECT_TRUE(k.cores_filled);
  EXPECT_FALSE(k.cluster.comm_overlaps_compute);
  EXPECT_NE(cluster_yaml(k).find("fill the cores"), std::string::npos);
  c.cores = 4;
  k = calibrate_cluster(c, 1LL << 30);
  EXPECT_FALSE(k.cores_filled);
  EXPECT_TRUE(k.cluster.comm_overlaps_compute);
  c.threads_per_rank = 2;
  EXPECT_FALSE(calibrate_cluster(c, 1LL << 30).cluster.comm_overlaps_compute);
}

// With more ranks than cores the piece of compute alone already waits for cores, and a collective
// after it can look cheaper than an idle one: it never counts for less.
TEST(CalibrateCluster, ACollectiveInAStepCostsAtLeastAnIdleOne) {
  Calibration c = measured(2);
  c.compute_piece = 500e-6;
  c.allgather_after_compute = line(1e-6, 1e12, {4096, 65536, 1048576});
  c.allgather_beside_compute = c.allgather_after_compute;
  const CalibratedCluster k = calibrate_cluster(c, 1LL << 30);
  EXPECT_EQ(k.cluster.intra_node.latency_ns, 20000);
  EXPECT_NEAR(k.cluster.intra_node.bandwidth, 2e9, 1);
}

TEST(CalibrationFromJson, TheInStepPointsNeedTheirPieceAndAPairEach) {
  const Json good = Json::parse(R"({"format": "zeroplan-calibration", "version": 1, "ranks": 2,
    "compute_piece": 5e-4,
    "allgather_after_compute": [{"bytes": 4096, "seconds": 3e-4}],
    "allgather_beside_compute": [{"bytes": 4096, "seconds": 2e-4}]})");
  const Calibration c = calibration_from_json(good, "raw.json");
  EXPECT_EQ(c.compute_piece, 5e-4);
  ASSERT_EQ(c.allgather_beside_compute.size(), 1u);
  Json no_piece = good;
  no_piece.erase("compute_piece");
  Json unpaired = good;
  unpaired["allgather_beside_compute"] = Json::array();
  for (const auto& [bad, key] :
       {std::pair{no_piece, "compute_piece"}, std::pair{unpaired, "allgather_beside_compute"}})
    ExpectRefusedAt(bad, key, key);
}

// The engine's hook time over a step, per hook the simulator counts, is hook_overhead; files
// without it leave hooks free. The description reads back with it.
TEST(CalibrateCluster, TheEnginesHooksGiveHookOverhead) {
  Calibration c = measured(2);
  CalibratedCluster k = calibrate_cluster(c, 1LL << 30);
  EXPECT_EQ(k.cluster.hook_overhead_ns, 0);
  EXPECT_EQ(cluster_yaml(k).find("hook_overhead"), std::string::npos);
  c.hook_events = 200;
  c.hook_seconds = 4e-3;
  k = calibrate_cluster(c, 1LL << 30);
  EXPECT_EQ(k.cluster.hook_overhead_ns, 20000);
  const std::string yaml = cluster_yaml(k);
  EXPECT_NE(yaml.find("hook_overhead: 20000ns"), std::string::npos) << yaml;
  EXPECT_EQ(read_back(yaml, k.cluster.name), k.cluster) << yaml;
}

TEST(CalibrationFromJson, ReadsTheHooksAndRefusesABadOne) {
  const Json good = Json::parse(R"({"format": "zeroplan-calibration", "version": 1, "ranks": 2,
    "hooks": {"events": 220, "seconds": 3.2e-3}})");
  const Calibration c = calibration_from_json(good, "raw.json");
  EXPECT_EQ(c.hook_events, 220);
  EXPECT_DOUBLE_EQ(c.hook_seconds, 3.2e-3);
  ExpectEachRefused(good, "hooks",
                    {R"({"events": 0, "seconds": 1e-3})", R"({"events": 5})",
                     R"({"events": 5, "seconds": -1})", "[1, 2]"});
}

// The host's steal time during the calibration is reported in the description's comments, never
// in its keys: it explains the rates, it does not change them.
TEST(CalibrateCluster, TheStealShareIsReportedBesideTheFits) {
  Calibration c = measured(2);
  CalibratedCluster k = calibrate_cluster(c, 1LL << 30);
  EXPECT_EQ(cluster_yaml(k).find("steal"), std::string::npos);
  const ClusterSpec without = k.cluster;
  c.steal_share = 0.23;
  k = calibrate_cluster(c, 1LL << 30);
  EXPECT_EQ(k.cluster, without);
  const std::string yaml = cluster_yaml(k);
  EXPECT_NE(yaml.find("# The host's hypervisor took 23% of its CPU time"), std::string::npos)
      << yaml;
  EXPECT_EQ(read_back(yaml, k.cluster.name), k.cluster) << yaml;
}

TEST(CalibrationFromJson, ReadsTheStealShareAndRefusesABadOne) {
  const Json good = Json::parse(R"({"format": "zeroplan-calibration", "version": 1, "ranks": 2,
    "host_steal_share": 0.125})");
  EXPECT_DOUBLE_EQ(*calibration_from_json(good, "raw.json").steal_share, 0.125);
  Json older = good;
  older.erase("host_steal_share");
  EXPECT_FALSE(calibration_from_json(older, "raw.json").steal_share.has_value());
  ExpectEachRefused(good, "host_steal_share", {"-0.1", "1.5", "\"high\""});
}

// How the ranks waited for their collectives is reported too: a cluster calibrated with ranks that
// poll prices a collective as a run whose ranks poll pays it.
TEST(CalibrateCluster, HowTheRanksWaitedIsReportedBesideTheFits) {
  Calibration c = measured(2);
  CalibratedCluster k = calibrate_cluster(c, 1LL << 30);
  EXPECT_EQ(cluster_yaml(k).find("in its collectives' waits"), std::string::npos) << "unrecorded";
  const ClusterSpec without = k.cluster;
  c.collectives_poll = true;
  k = calibrate_cluster(c, 1LL << 30);
  EXPECT_EQ(k.cluster, without);
  EXPECT_NE(cluster_yaml(k).find("each rank polled in its collectives' waits"), std::string::npos);
  c.collectives_poll = false;
  k = calibrate_cluster(c, 1LL << 30);
  EXPECT_NE(cluster_yaml(k).find("each rank slept in its collectives' waits"), std::string::npos);
  EXPECT_EQ(read_back(cluster_yaml(k), k.cluster.name), k.cluster);
}

TEST(CalibrationFromJson, ReadsHowTheRanksWaitedAndRefusesABadValue) {
  const Json good = Json::parse(R"({"format": "zeroplan-calibration", "version": 1, "ranks": 2,
    "collectives_poll": true})");
  EXPECT_EQ(calibration_from_json(good, "raw.json").collectives_poll, true);
  Json older = good;
  older.erase("collectives_poll");
  EXPECT_FALSE(calibration_from_json(older, "raw.json").collectives_poll.has_value());
  ExpectEachRefused(good, "collectives_poll", {"1", "\"yes\""});
}

// The reference runs: GPT-2s of 3 blocks, every parameter gathered, one narrow and short (its
// compute mostly per-kernel cost), one wide and long (mostly FLOPs), on the ranks asked for, and
// the narrow one again with the examples' small buckets (more collectives, the same compute).
TEST(CalibrationReferenceRuns, ANarrowAndAWideGpt2WithEveryParameterGathered) {
  const std::vector<RunSpec> runs = calibration_reference_runs(4);
  ASSERT_EQ(runs.size(), 3u);
  for (const RunSpec& r : runs) {
    EXPECT_EQ(r.parallel.world(), 4);
    EXPECT_EQ(r.model.config->num_layers, 3);
    EXPECT_EQ(r.zero_settings().param_persistence_threshold, 0);
    EXPECT_EQ(r.deepspeed.zero.stage, 3);
  }
  EXPECT_EQ(runs[0].model.config->hidden_size, 48);
  EXPECT_EQ(runs[1].model.config->hidden_size, 96);
  EXPECT_LT(runs[0].training.sequence_length, runs[1].training.sequence_length);
  EXPECT_EQ(*runs[2].model.config, *runs[0].model.config);
  EXPECT_EQ(runs[2].training.sequence_length, runs[0].training.sequence_length);
  const zero::ZeroSettings twin = runs[2].zero_settings(), narrow = runs[0].zero_settings();
  EXPECT_EQ(twin.prefetch_bucket_size, 10000);
  EXPECT_EQ(twin.reduce_bucket_size, 20000);
  EXPECT_EQ(twin.max_live_parameters, 30000);
  EXPECT_EQ(twin.max_reuse_distance, 20000);
  EXPECT_GT(narrow.prefetch_bucket_size, twin.prefetch_bucket_size) << "DeepSpeed's defaults";
  EXPECT_GT(narrow.reduce_bucket_size, twin.reduce_bucket_size);
}

// Two runs, one mostly per-kernel cost and one mostly FLOPs, give both factors.
TEST(FitStepSlowdown, RecoversBothFactorsFromTwoRuns) {
  CalibratedCluster k = calibrate_cluster(measured(2), 1LL << 30);
  fit_step_slowdown(k, {{3 * 1e-3 + 2 * 1e-3, 1e-3, 1e-3}, {3 * 1e-3 + 2 * 10e-3, 1e-3, 10e-3}});
  EXPECT_EQ(k.cluster.step_slowdown, (ClusterSpec::StepSlowdown{3, 2}));
  ASSERT_EQ(k.references.size(), 2u);
  const std::string yaml = cluster_yaml(k);
  EXPECT_NE(yaml.find("step_slowdown: {kernels: 3, rates: 2}"), std::string::npos) << yaml;
  EXPECT_NE(yaml.find("measured / predicted: 5 ms / 5 ms, 23 ms / 23 ms"), std::string::npos)
      << yaml;
  EXPECT_EQ(read_back(yaml, k.cluster.name), k.cluster) << yaml;
}

// The third run, the first's twin with the examples' buckets, issues more collectives for the
// same compute: its extra compute per extra call is collective_host_time, taken off the first two
// runs' compute (calls x it) before their factors are fitted. A difference below nothing gives 0;
// a noisy one never takes more than half a factor run's compute.
TEST(FitStepSlowdown, TheTwinRunGivesACollectiveCallsHostTime) {
  CalibratedCluster k = calibrate_cluster(measured(2), 1LL << 30);
  // kernels 3, rates 2, 100 us a call: 3 + 2 + 1 ms, 3 + 20 + 1 ms, and 3 + 2 + 3 ms.
  fit_step_slowdown(k, {{6e-3, 1e-3, 1e-3, 10}, {24e-3, 1e-3, 10e-3, 10}, {8e-3, 1e-3, 1e-3, 30}});
  EXPECT_EQ(k.cluster.collective_host_ns, 100000);
  EXPECT_EQ(k.cluster.step_slowdown, (ClusterSpec::StepSlowdown{3, 2}));
  const std::string yaml = cluster_yaml(k);
  EXPECT_NE(yaml.find("collective_host_time: 100000ns"), std::string::npos) << yaml;
  EXPECT_NE(yaml.find("measured / predicted: 6 ms / 6 ms, 24 ms / 24 ms, 8 ms / 8 ms"),
            std::string::npos)
      << yaml;
  EXPECT_NE(yaml.find("a collective call's host time: 100 us"), std::string::npos) << yaml;
  EXPECT_NE(yaml.find("20 more calls and 2 ms more compute a step"), std::string::npos) << yaml;
  EXPECT_EQ(read_back(yaml, k.cluster.name), k.cluster) << yaml;
  // The twin computed less: nothing a call, and the factors fitted to the measured compute.
  fit_step_slowdown(k, {{6e-3, 1e-3, 1e-3, 10}, {24e-3, 1e-3, 10e-3, 10}, {5e-3, 1e-3, 1e-3, 30}});
  EXPECT_EQ(k.cluster.collective_host_ns, 0);
  EXPECT_EQ(cluster_yaml(k).find("collective_host_time:"), std::string::npos);
  // No more calls than the first: nothing to tell apart.
  fit_step_slowdown(k, {{6e-3, 1e-3, 1e-3, 10}, {24e-3, 1e-3, 10e-3, 10}, {8e-3, 1e-3, 1e-3, 10}});
  EXPECT_EQ(k.cluster.collective_host_ns, 0);
  // 1 ms a call would leave the first run nothing: held at half its 6 ms over 10 calls.
  fit_step_slowdown(k, {{6e-3, 1e-3, 1e-3, 10}, {24e-3, 1e-3, 10e-3, 10}, {26e-3, 1e-3, 1e-3, 30}});
  EXPECT_EQ(k.cluster.collective_host_ns, 300000);
}

// A step is never faster than its calls alone: a factor the fit puts below 1 stays at 1, and the
// other is fitted alone. Without the references nothing is written.
TEST(FitStepSlowdown, AFactorBelowOneStaysAtOne) {
  CalibratedCluster k = calibrate_cluster(measured(2), 1LL << 30);
  EXPECT_EQ(cluster_yaml(k).find("step_slowdown"), std::string::npos);
  // Measured: 0.5 x fixed + 3 x rate, so the free fit puts kernels at 0.5. Held at 1, rates is
  // fitted alone, between what each run gives by itself ((3.5 - 1) / 1 and (30.5 - 1) / 10):
  // sum(q) - sum(f q) over sum(q^2), f and q each run's fixed and rate parts over its measured
  // time, is 2.756.
  fit_step_slowdown(k, {{0.5e-3 + 3e-3, 1e-3, 1e-3}, {0.5e-3 + 30e-3, 1e-3, 10e-3}});
  EXPECT_EQ(k.cluster.step_slowdown.kernels, 1);
  EXPECT_DOUBLE_EQ(k.cluster.step_slowdown.rates, 2.756);
  // Both faster than alone: both 1, and the key is not written.
  fit_step_slowdown(k, {{0.5e-3, 1e-3, 1e-3}, {5e-3, 1e-3, 10e-3}});
  EXPECT_EQ(k.cluster.step_slowdown, (ClusterSpec::StepSlowdown{1, 1}));
  EXPECT_EQ(cluster_yaml(k).find("step_slowdown:"), std::string::npos);
}

TEST(CalibrationFromJson, ReadsTheReferenceComputeAndRefusesABadOne) {
  const Json good = Json::parse(R"({"format": "zeroplan-calibration", "version": 1, "ranks": 2,
    "reference_compute": [6e-3, 2e-2]})");
  EXPECT_EQ(calibration_from_json(good, "raw.json").reference_compute,
            (std::vector<double>{6e-3, 2e-2}));
  EXPECT_TRUE(calibration_from_json(good, "raw.json").reference_calls.empty());
  ExpectEachRefused(good, "reference_compute", {"[0]", "[1e-3, -1]", "3", "[\"fast\"]"});
  Json calls = good;
  calls["reference_calls"] = Json::array({12.5, 0});
  EXPECT_EQ(calibration_from_json(calls, "raw.json").reference_calls,
            (std::vector<double>{12.5, 0}));
  // One count a run, each at least 0.
  ExpectEachRefused(calls, "reference_calls", {"[12]", "[1, -1]", "[1, 2, 3]", "4", "[1, \"x\"]"});
}

TEST(CalibrationFromJson, ReadsTheKernelChains) {
  const Json j = Json::parse(R"({"format": "zeroplan-calibration", "version": 1, "ranks": 2,
    "kernels_forward": [{"kernels": 4, "seconds": 1e-5}],
    "kernels_backward": [{"kernels": 4, "seconds": 3e-5}, {"kernels": 16, "seconds": 1e-4}]})");
  const Calibration c = calibration_from_json(j, "raw.json");
  ASSERT_EQ(c.kernels_forward.size(), 1u);
  EXPECT_EQ(c.kernels_forward[0].amount, 4);
  ASSERT_EQ(c.kernels_backward.size(), 2u);
  EXPECT_EQ(c.kernels_backward[1].seconds, 1e-4);
  const Json bad = Json::parse(R"({"format": "zeroplan-calibration", "version": 1, "ranks": 2,
    "kernels_forward": [{"flops": 4, "seconds": 1e-5}]})");
  ExpectRefusedAt(bad, "kernels_forward[0]", "a point without its kernels");
}

TEST(CalibrateCluster, OneRankHasNoCollectivesToMeasure) {
  Calibration c = measured(1);
  c.allgather.clear();
  c.reduce_scatter.clear();
  c.send_recv.clear();
  const CalibratedCluster k = calibrate_cluster(c, 1LL << 30);
  EXPECT_FALSE(k.has_collectives);
  EXPECT_EQ(k.cluster.intra_node.bandwidth, k.cluster.pcie_bandwidth);
}

// What calibrate writes, the run spec's reader reads back to the same cluster.
TEST(ClusterYaml, ReadsBackToTheSameCluster) {
  const CalibratedCluster k = calibrate_cluster(measured(4), 16LL << 30);
  const std::string yaml = cluster_yaml(k);
  EXPECT_EQ(read_back(yaml, k.cluster.name), k.cluster) << yaml;
}

// A run spec names the file (relative to its own folder), and may change keys of it.
TEST(ClusterYaml, ARunSpecReadsItAsItsClusterFile) {
  const std::filesystem::path dir = std::filesystem::temp_directory_path() /
                                    ("zeroplan_calibration_test." + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const CalibratedCluster k = calibrate_cluster(measured(4), 16LL << 30);
  std::ofstream(dir / "cluster-4.yaml") << cluster_yaml(k);
  const auto run_spec = [&](const std::string& cluster) {
    std::ofstream(dir / "run.yaml") << "model: tiny-gpt2\ncluster: " << cluster
                                    << "\ntraining: {sequence_length: 16, micro_batch: 1}\n"
                                    << "deepspeed: {zero_optimization: {stage: 3}}\n";
    return load_run_spec(dir / "run.yaml");
  };
  const RunSpec run = run_spec("{file: cluster-4.yaml}");
  ClusterSpec expected = k.cluster;
  expected.name = "cluster-4.yaml";
  EXPECT_EQ(run.cluster, expected);
  EXPECT_EQ(run.parallel.data, 4);
  const RunSpec two = run_spec("{file: cluster-4.yaml, gpus_per_node: 2}");
  EXPECT_EQ(two.cluster.gpus_per_node, 2);
  EXPECT_EQ(two.cluster.peak_flops, k.cluster.peak_flops);
  try {
    run_spec("{file: no-such.yaml}");
    ADD_FAILURE() << "a missing file was accepted";
  } catch (const UserError& e) {
    EXPECT_EQ(e.where().key_path, "cluster.file");
  }
  EXPECT_THROW(run_spec("{preset: dgx-h100, file: cluster-4.yaml}"), UserError);
  std::filesystem::remove_all(dir);
}

TEST(CalibrationJson, ReadsThePointsAndRejectsOtherJson) {
  const Json j = Json::parse(R"({"format": "zeroplan-calibration", "version": 1, "ranks": 2,
      "backend": "gloo", "matmul": [{"flops": 1e6, "seconds": 1e-4}],
      "allgather": [{"bytes": 4096, "seconds": 5e-5}]})");
  const Calibration c = calibration_from_json(j, "x");
  EXPECT_EQ(c.ranks, 2);
  ASSERT_EQ(c.matmul.size(), 1u);
  EXPECT_EQ(c.matmul[0].amount, 1e6);
  EXPECT_EQ(c.allgather[0].seconds, 5e-5);
  EXPECT_TRUE(c.send_recv.empty());
  EXPECT_THROW(calibration_from_json(Json::parse(R"({"format": "zeroplan-trace"})"), "x"),
               UserError);
  Json negative = j;
  negative["matmul"][0]["seconds"] = -1;
  EXPECT_THROW(calibration_from_json(negative, "x"), UserError);
}

}  // namespace
}  // namespace zp
