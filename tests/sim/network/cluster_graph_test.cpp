#include "sim/network/cluster_graph.h"

#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <limits>
#include <ostream>
#include <string>

#include "core/util/error.h"

namespace zp::sim {

// Readable failures.
void PrintTo(const PathCost& p, std::ostream* out) {
  *out << "{" << p.bandwidth << " B/s, " << p.latency_ns << " ns, " << p.hops << " hops}";
}

namespace {

// dgx-a100-80g: 8 GPUs per node, NVLink 300 GB/s and 3 us, InfiniBand 25 GB/s per GPU and 5 us,
// PCIe 25 GB/s, NVMe 25 GB/s per node; efficiency.network 0.8.
ClusterSpec a100(std::int64_t nodes) {
  ClusterSpec c = *find_cluster_preset("dgx-a100-80g");
  c.nodes = nodes;
  return c;
}

// The error `build` throws; fails the test when it throws none.
UserError error_of(const std::function<void()>& build) {
  try {
    build();
  } catch (const UserError& e) {
    return e;
  }
  ADD_FAILURE() << "no UserError";
  return UserError(ErrorKind::kValue, {}, "none");
}

TEST(ClusterGraph, HasAVertexPerDeviceAndALinkPerDirection) {
  const ClusterGraph g(a100(2));
  EXPECT_EQ(g.gpus(), 16);
  EXPECT_EQ(g.nodes(), 2);
  // 16 GPUs, 16 NICs, 2 switches, 2 hosts, 2 NVMe, 1 fabric.
  EXPECT_EQ(boost::num_vertices(g.graph()), 39u);
  // Per GPU: switch, NIC, NIC-fabric and host links; per node the NVMe link; both directions.
  EXPECT_EQ(boost::num_edges(g.graph()), 2u * (16 * 4 + 2));
  EXPECT_EQ(g.node_of(7), 0);
  EXPECT_EQ(g.node_of(8), 1);
  EXPECT_EQ(g.graph()[g.nic_vertex(9)].kind, ClusterGraph::VertexKind::kNic);
  EXPECT_EQ(g.graph()[g.nic_vertex(9)].node, 1);
  EXPECT_EQ(g.graph()[g.fabric_vertex()].kind, ClusterGraph::VertexKind::kFabric);
  EXPECT_EQ(g.graph()[g.nvme_vertex(1)].kind, ClusterGraph::VertexKind::kNvme);
}

TEST(ClusterGraph, InsideANodeTheRouteIsTheSwitchAtEfficiency) {
  const ClusterGraph g(a100(2));
  // 300 GB/s x 0.8; GPU -> NVSwitch -> GPU.
  EXPECT_EQ(g.gpu_to_gpu(0, 7), (PathCost{240e9, 3000, 2}));
  EXPECT_EQ(g.gpu_to_gpu(13, 9), (PathCost{240e9, 3000, 2}));
}

TEST(ClusterGraph, AcrossNodesTheRouteIsNicFabricNic) {
  const ClusterGraph g(a100(2));
  // 25 GB/s x 0.8; GPU -> NIC -> fabric -> NIC -> GPU, inter_node.latency once.
  EXPECT_EQ(g.gpu_to_gpu(3, 12), (PathCost{20e9, 5000, 4}));
}

TEST(ClusterGraph, EfficiencyScalesEveryLink) {
  ClusterSpec c = a100(2);
  c.efficiency.network = 0.5;
  const ClusterGraph g(c);
  EXPECT_EQ(g.gpu_to_gpu(0, 1).bandwidth, 150e9);
  EXPECT_EQ(g.gpu_to_gpu(0, 8).bandwidth, 12.5e9);
  EXPECT_EQ(g.gpu_to_host(0).bandwidth, 12.5e9);
  EXPECT_EQ(g.gpu_to_nvme(0).bandwidth, 25e9 * 0.5 / 8);
}

TEST(ClusterGraph, SameGpuCostsNothing) {
  const ClusterGraph g(a100(1));
  EXPECT_EQ(g.gpu_to_gpu(5, 5), (PathCost{std::numeric_limits<double>::infinity(), 0, 0}));
}

TEST(ClusterGraph, WidestBottleneckWinsOverFewerHops) {
  // A switch slower than the network: GPUs of one node talk through their NICs.
  ClusterSpec c = a100(2);
  c.intra_node = {10e9, 3000};
  c.inter_node = {50e9, 5000};
  const ClusterGraph g(c);
  EXPECT_EQ(g.gpu_to_gpu(0, 1), (PathCost{40e9, 5000, 4}));
}

TEST(ClusterGraph, EqualBottlenecksGoToTheLowerLatency) {
  ClusterSpec c = a100(2);
  c.intra_node = {25e9, 8000};
  c.inter_node = {25e9, 5000};
  EXPECT_EQ(ClusterGraph(c).gpu_to_gpu(0, 1), (PathCost{20e9, 5000, 4}));
  c.intra_node.latency_ns = 4000;
  EXPECT_EQ(ClusterGraph(c).gpu_to_gpu(0, 1), (PathCost{20e9, 4000, 2}));
}

TEST(ClusterGraph, EqualLatenciesGoToFewerHops) {
  ClusterSpec c = a100(2);
  c.intra_node = {25e9, 5000};
  c.inter_node = {25e9, 5000};
  EXPECT_EQ(ClusterGraph(c).gpu_to_gpu(0, 1), (PathCost{20e9, 5000, 2}));
}

TEST(ClusterGraph, HostsAreNotRelaysBetweenGpus) {
  // PCIe is wider than the switch, yet GPU traffic stays on the switch.
  ClusterSpec c = a100(1);
  c.intra_node = {10e9, 3000};
  c.inter_node.bandwidth = 0;  // no NIC route either
  c.pcie_bandwidth = 50e9;
  EXPECT_EQ(ClusterGraph(c).gpu_to_gpu(0, 1), (PathCost{8e9, 3000, 2}));
}

TEST(ClusterGraph, GpuToHostIsOnePcieHop) {
  const ClusterGraph g(a100(2));
  EXPECT_EQ(g.gpu_to_host(11), (PathCost{20e9, 0, 1}));
}

TEST(ClusterGraph, NvmeIsSharedByTheNodesGpus) {
  // 25 GB/s x 0.8 over 8 GPUs: narrower than PCIe.
  EXPECT_EQ(ClusterGraph(a100(1)).gpu_to_nvme(3), (PathCost{2.5e9, 0, 2}));
  // 400 GB/s x 0.8 / 8 = 40 GB/s: PCIe (20 GB/s) is the bottleneck.
  ClusterSpec c = a100(1);
  c.nvme_bandwidth = 400e9;
  EXPECT_EQ(ClusterGraph(c).gpu_to_nvme(3), (PathCost{20e9, 0, 2}));
}

TEST(ClusterGraph, CachedRoutesAgreeWithAWholeGraphSearch) {
  ClusterSpec c = a100(4);
  c.gpus_per_node = 4;
  const ClusterGraph g(c);
  for (std::int64_t a = 0; a < g.gpus(); ++a) {
    for (std::int64_t b = 0; b < g.gpus(); ++b) {
      EXPECT_EQ(g.gpu_to_gpu(a, b), g.route(g.gpu_vertex(a), g.gpu_vertex(b))) << a << "->" << b;
    }
    EXPECT_EQ(g.gpu_to_host(a), g.route(g.gpu_vertex(a), g.host_vertex(g.node_of(a))));
    EXPECT_EQ(g.gpu_to_nvme(a), g.route(g.gpu_vertex(a), g.nvme_vertex(g.node_of(a))));
  }
  // Another node's host: through the network and one of that node's GPUs (a 4 x 4 cluster here:
  // GPU 4 is node 1's first).
  EXPECT_EQ(g.route(g.gpu_vertex(0), g.host_vertex(1)), (PathCost{20e9, 5000, 5}));
  // From the NVMe back to a GPU through the host: 25 GB/s x 0.8 shared by 4 GPUs.
  EXPECT_EQ(g.route(g.nvme_vertex(0), g.gpu_vertex(1)), (PathCost{5e9, 0, 2}));
}

TEST(ClusterGraph, OneGpuPerNodeNeedsNoSwitch) {
  ClusterSpec c = a100(4);
  c.gpus_per_node = 1;
  c.intra_node.bandwidth = 0;
  const ClusterGraph g(c);
  EXPECT_EQ(g.gpu_to_gpu(0, 3), (PathCost{20e9, 5000, 4}));
}

TEST(ClusterGraph, OneNodeNeedsNoNetwork) {
  ClusterSpec c = a100(1);
  c.inter_node.bandwidth = 0;
  EXPECT_EQ(ClusterGraph(c).gpu_to_gpu(0, 1), (PathCost{240e9, 3000, 2}));
}

TEST(ClusterGraph, LargeClusterRoutesByClass) {
  const ClusterGraph g(a100(128));
  EXPECT_EQ(g.gpus(), 1024);
  EXPECT_EQ(g.node_of(1023), 127);
  EXPECT_EQ(g.gpu_to_gpu(0, 1023), (PathCost{20e9, 5000, 4}));
  EXPECT_EQ(g.gpu_to_gpu(1016, 1023), (PathCost{240e9, 3000, 2}));
  EXPECT_EQ(g.route(g.gpu_vertex(5), g.gpu_vertex(1000)), g.gpu_to_gpu(5, 1000));
}

TEST(ClusterGraph, BadClustersNameTheKey) {
  struct Case {
    std::function<void(ClusterSpec&)> edit;
    std::string key;
    std::string says;
  };
  const Case cases[] = {
      {[](ClusterSpec& c) { c.gpus_per_node = 0; }, "cluster.gpus_per_node", ">= 1"},
      {[](ClusterSpec& c) { c.nodes = 0; }, "cluster.nodes", ">= 1"},
      {[](ClusterSpec& c) { c.inter_node.bandwidth = 0; }, "cluster.inter_node.bandwidth",
       "missing link"},
      {[](ClusterSpec& c) { c.intra_node.bandwidth = 0; }, "cluster.intra_node.bandwidth",
       "missing link"},
      {[](ClusterSpec& c) { c.pcie_bandwidth = 0; }, "cluster.pcie_bandwidth", "missing link"},
      {[](ClusterSpec& c) { c.nvme_bandwidth = -1; }, "cluster.nvme_bandwidth", ">= 0"},
      {[](ClusterSpec& c) { c.intra_node.bandwidth = std::nan(""); },
       "cluster.intra_node.bandwidth", "finite"},
      {[](ClusterSpec& c) { c.efficiency.network = 0; }, "cluster.efficiency.network", "(0, 1]"},
      {[](ClusterSpec& c) { c.efficiency.network = 1.5; }, "cluster.efficiency.network", "(0, 1]"},
      {[](ClusterSpec& c) { c.inter_node.latency_ns = -1; }, "cluster.inter_node.latency", ">= 0"},
      {[](ClusterSpec& c) { c.intra_node.latency_ns = -1; }, "cluster.intra_node.latency", ">= 0"},
  };
  for (const Case& k : cases) {
    ClusterSpec c = a100(2);
    k.edit(c);
    const UserError e = error_of([&] { ClusterGraph g(c); });
    EXPECT_EQ(e.kind(), ErrorKind::kValue) << k.key;
    EXPECT_EQ(e.where().key_path, k.key);
    EXPECT_NE(e.message().find(k.says), std::string::npos) << e.what();
  }
}

TEST(ClusterGraph, MissingNvmeFailsOnlyWhenUsed) {
  ClusterSpec c = a100(1);
  c.nvme_bandwidth = 0;
  const ClusterGraph g(c);
  EXPECT_EQ(g.gpu_to_host(0).bandwidth, 20e9);
  const UserError e = error_of([&] { g.gpu_to_nvme(0); });
  EXPECT_EQ(e.where().key_path, "cluster.nvme_bandwidth");
  EXPECT_NE(e.message().find("missing link"), std::string::npos) << e.what();
}

TEST(ClusterGraph, GpusOutsideTheClusterAreRefused) {
  const ClusterGraph g(a100(2));
  for (std::int64_t bad : {std::int64_t{-1}, std::int64_t{16}}) {
    const UserError e = error_of([&] { g.gpu_to_gpu(0, bad); });
    EXPECT_EQ(e.kind(), ErrorKind::kValue);
    EXPECT_NE(e.message().find("16 GPUs"), std::string::npos) << e.what();
    EXPECT_THROW(g.gpu_to_host(bad), UserError);
    EXPECT_THROW(g.node_of(bad), UserError);
  }
}

}  // namespace
}  // namespace zp::sim
