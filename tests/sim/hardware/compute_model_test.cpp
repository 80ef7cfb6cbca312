#include "sim/hardware/compute_model.h"

#include <gtest/gtest.h>

#include "../sim_test_util.h"

#include <functional>
#include <string>

#include "core/util/error.h"

namespace zp::sim {
namespace {

using testing::ErrorOf;

// A cluster whose rates divide evenly: bf16 peak 2e12 FLOP/s at efficiency 0.5 is 1000 FLOP/ns;
// HBM 1e12 B/s at efficiency 0.5 is 500 B/ns; each piece of work pays 4000 ns to launch.
ClusterSpec Cluster() {
  ClusterSpec c;
  c.peak_flops = {{"bf16", 2e12}, {"fp16", 4e12}, {"fp32", 1e12}, {"tf32", 8e12}, {"fp64", 5e11}};
  c.hbm_bandwidth = 1e12;
  c.efficiency.compute = 0.5;
  c.efficiency.hbm = 0.5;
  c.kernel_launch_ns = 4000;
  return c;
}

TEST(ComputeModel, ComputeBoundWorkTakesTheComputeTerm) {
  const ComputeModel m(Cluster(), DType::kBFloat16);
  // max(1e6 FLOP / 1000 FLOP/ns, 1e5 B / 500 B/ns) = max(1000, 200) = 1000; + 4000 launch.
  // A sum of the terms would give 5200, their minimum 4200.
  EXPECT_EQ(m.time(1'000'000, 100'000), 5000);
}

TEST(ComputeModel, MemoryBoundWorkTakesTheMemoryTerm) {
  const ComputeModel m(Cluster(), DType::kBFloat16);
  // max(1e5 FLOP / 1000, 1e6 B / 500) = max(100, 2000) = 2000; + 4000 launch.
  EXPECT_EQ(m.time(100'000, 1'000'000), 6000);
}

TEST(ComputeModel, EfficiencyDeratesBothPeaks) {
  ClusterSpec c = Cluster();
  c.efficiency.compute = 0.25;  // 2e12 * 0.25 = 500 FLOP/ns
  c.efficiency.hbm = 0.25;      // 1e12 * 0.25 = 250 B/ns
  const ComputeModel m(c, DType::kBFloat16);
  EXPECT_DOUBLE_EQ(m.peak_flops(), 2e12);        // before efficiency
  EXPECT_DOUBLE_EQ(m.flops_per_second(), 5e11);  // after
  // 1e6 FLOP / 500 = 2000 ns (not derated: 500 ns).
  EXPECT_EQ(m.time(1'000'000, 0), 4000 + 2000);
  // 1e6 B / 250 = 4000 ns (not derated: 1000 ns).
  EXPECT_EQ(m.time(0, 1'000'000), 4000 + 4000);
}

TEST(ComputeModel, KernelLaunchIsAddedOnce) {
  ClusterSpec c = Cluster();
  c.kernel_launch_ns = 0;
  const ComputeModel no_launch(c, DType::kBFloat16);
  const ComputeModel launch(Cluster(), DType::kBFloat16);
  // The same work, 1000 ns of compute and 2000 ns of memory, differs by exactly one launch.
  EXPECT_EQ(no_launch.time(1'000'000, 1'000'000), 2000);
  EXPECT_EQ(launch.time(1'000'000, 1'000'000), 2000 + 4000);
}

TEST(ComputeModel, RoundsUpToWholeNanoseconds) {
  ClusterSpec c = Cluster();
  c.kernel_launch_ns = 0;
  const ComputeModel m(c, DType::kBFloat16);
  EXPECT_EQ(m.time(1001, 0), 2);  // 1.001 ns -> 2, not 1 (nearest or truncated)
  EXPECT_EQ(m.time(1, 0), 1);     // 0.001 ns -> 1
  EXPECT_EQ(m.time(0, 1), 1);     // 0.002 ns -> 1
  EXPECT_EQ(m.time(3000, 0), 3);  // exactly 3 ns stays 3
  EXPECT_EQ(m.time(0, 1501), 4);  // 3.002 ns -> 4
}

TEST(ComputeModel, NoWorkTakesNoTime) {
  const ComputeModel m(Cluster(), DType::kBFloat16);
  EXPECT_EQ(m.time(0, 0), 0);  // not even the launch
  EXPECT_EQ(m.copy(0), 0);
  EXPECT_EQ(m.time(0, 1), 4001);  // any work pays the launch
}

TEST(ComputeModel, CopyReadsAndWritesEveryByte) {
  const ComputeModel m(Cluster(), DType::kBFloat16);
  // 2 * 500000 B / 500 B/ns = 2000 ns; + 4000 launch. Counting the bytes once would give 5000.
  EXPECT_EQ(m.copy(500'000), 6000);
  EXPECT_EQ(m.copy(500'000), m.time(0, 1'000'000));
}

TEST(ComputeModel, PeakFlopsKeyPerDtype) {
  EXPECT_STREQ(peak_flops_key(DType::kFloat32), "fp32");  // not tf32: PyTorch's default
  EXPECT_STREQ(peak_flops_key(DType::kFloat16), "fp16");
  EXPECT_STREQ(peak_flops_key(DType::kBFloat16), "bf16");
  EXPECT_STREQ(peak_flops_key(DType::kFloat64), "fp64");
}

TEST(ComputeModel, EachDtypeUsesItsOwnPeak) {
  EXPECT_DOUBLE_EQ(ComputeModel(Cluster(), DType::kFloat32).peak_flops(), 1e12);  // not 8e12
  EXPECT_DOUBLE_EQ(ComputeModel(Cluster(), DType::kFloat16).peak_flops(), 4e12);
  EXPECT_DOUBLE_EQ(ComputeModel(Cluster(), DType::kBFloat16).peak_flops(), 2e12);
  EXPECT_DOUBLE_EQ(ComputeModel(Cluster(), DType::kFloat64).peak_flops(), 5e11);
  // fp32 at 1e12 * 0.5 = 500 FLOP/ns: 1e6 FLOP take 2000 ns (at tf32's rate they would take 250).
  EXPECT_EQ(ComputeModel(Cluster(), DType::kFloat32).time(1'000'000, 0), 4000 + 2000);
}

TEST(ComputeModel, MissingPeakNamesTheKey) {
  ClusterSpec c = Cluster();
  c.peak_flops.erase("bf16");
  const UserError e = ErrorOf([&] { ComputeModel(c, DType::kBFloat16); });
  EXPECT_EQ(e.kind(), ErrorKind::kMissing);
  EXPECT_EQ(e.where().key_path, "cluster.peak_flops.bf16");

  c.peak_flops["bf16"] = 0;  // present but not positive
  EXPECT_EQ(ErrorOf([&] { ComputeModel(c, DType::kBFloat16); }).where().key_path,
            "cluster.peak_flops.bf16");

  // An fp32 run needs fp32 itself; tf32 does not stand in for it.
  ClusterSpec tf32_only = Cluster();
  tf32_only.peak_flops.erase("fp32");
  EXPECT_EQ(ErrorOf([&] { ComputeModel(tf32_only, DType::kFloat32); }).where().key_path,
            "cluster.peak_flops.fp32");
}

TEST(ComputeModel, MissingHbmBandwidthNamesTheKey) {
  ClusterSpec c = Cluster();
  c.hbm_bandwidth = 0;
  const UserError e = ErrorOf([&] { ComputeModel(c, DType::kBFloat16); });
  EXPECT_EQ(e.kind(), ErrorKind::kMissing);
  EXPECT_EQ(e.where().key_path, "cluster.hbm_bandwidth");
  c.hbm_bandwidth = -1;
  EXPECT_EQ(ErrorOf([&] { ComputeModel(c, DType::kBFloat16); }).where().key_path,
            "cluster.hbm_bandwidth");
}

}  // namespace
}  // namespace zp::sim
