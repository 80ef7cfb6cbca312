// The cluster as a graph, and what a transfer along its routes costs. docs/network-model.md has
// every rule with a worked example.
//
// Vertices: a GPU each, a NIC per GPU, a switch per node (NVSwitch, or the PCIe switch of GPUs
// without NVLink), a host per node (CPU root complex and host memory), an NVMe per node, and one
// fabric switch joining every NIC. Links are directed, one edge per direction (bandwidths are per
// direction). Each edge carries the bandwidth one transfer reaches on it, which is the cluster's
// figure times efficiency.network, divided among the GPUs that use the link at once, and a
// latency:
//   GPU -> switch -> GPU    intra_node.bandwidth              intra_node.latency on GPU -> switch
//   GPU -> NIC -> fabric    inter_node.bandwidth              inter_node.latency on NIC -> fabric
//   fabric -> NIC -> GPU    inter_node.bandwidth              0
//   GPU <-> host            pcie_bandwidth                    0 (the cluster has no PCIe latency)
//   host <-> NVMe           nvme_bandwidth / gpus_per_node    0
// so a message pays intra_node.latency inside a node and inter_node.latency across nodes, once.
// The NVMe link is divided by gpus_per_node because ZeRO-Infinity swaps on every rank of a node at
// the same point of the step, so all of them share the node's drives at once.
//
// Routes: a transfer takes the path with the widest bottleneck; among those, the one with the
// least summed latency; then the fewest hops. NVMe is never a relay, and a host only on the way to
// or from an NVMe: GPU-to-GPU traffic stays on the GPU interconnect (intra_node describes it,
// whatever it is), and a GPU reaches another node's host only through one of that node's GPUs.
// A link whose bandwidth is 0 and not needed (the switch of one-GPU nodes, the network of one node,
// a missing NVMe) is left out.
// A path's cost is its bottleneck bandwidth, its summed latency and its hop count.
//
// Every node is wired alike, so a route's cost depends only on its class: same GPU, same node,
// different nodes, GPU to host, GPU to NVMe. The constructor finds each class's route once with
// Boost's Dijkstra on nodes 0 and 1 (the rest of the graph cannot offer another route: the only
// way between nodes is through the fabric, and every node beyond is a copy); the queries are O(1).
// The graph is a Boost compressed sparse row graph, built in one pass from its sorted edge list:
// construction is O(gpus) time and memory. route() searches the whole graph, for checks.
//
// Immutable after construction; const access is safe from many threads.
#pragma once

#include <boost/graph/compressed_sparse_row_graph.hpp>
#include <cstdint>

#include "core/config/cluster.h"
#include "sim/engine/simulator.h"

namespace zp::sim {

struct PathCost {
  double bandwidth = 0;  // bytes/s, the narrowest link after efficiency; 0: no route
  TimeNs latency_ns = 0;
  int hops = 0;
  bool operator==(const PathCost&) const = default;
};

class ClusterGraph {
 public:
  enum class VertexKind : std::uint8_t { kGpu, kNic, kSwitch, kHost, kNvme, kFabric };
  struct Vertex {
    VertexKind kind = VertexKind::kGpu;
    std::int64_t node = -1;  // -1 for the fabric
  };
  struct Link {
    double bandwidth = 0;  // bytes/s for one transfer, after efficiency and sharing
    TimeNs latency_ns = 0;
  };
  using Graph = boost::compressed_sparse_row_graph<boost::directedS, Vertex, Link>;
  using VertexId = std::size_t;

  // UserError (kValue, naming the cluster key) for nodes or gpus_per_node below 1, an
  // efficiency.network outside (0, 1], a negative or non-finite bandwidth or latency, and a link
  // the cluster needs but lacks ("missing link"): intra_node.bandwidth when gpus_per_node > 1,
  // inter_node.bandwidth when nodes > 1, pcie_bandwidth always. nvme_bandwidth may be 0 (no NVMe
  // link); gpu_to_nvme then fails instead.
  explicit ClusterGraph(const ClusterSpec& cluster);
  // The constructor's checks alone, without building anything.
  static void check(const ClusterSpec& cluster);

  std::int64_t gpus() const { return nodes_ * gpus_per_node_; }
  std::int64_t nodes() const { return nodes_; }
  std::int64_t gpus_per_node() const { return gpus_per_node_; }
  // UserError when `gpu` is not in [0, gpus()).
  std::int64_t node_of(std::int64_t gpu) const;

  // The same GPU costs nothing: infinite bandwidth, no latency, no hop. UserError for a GPU out of
  // range.
  PathCost gpu_to_gpu(std::int64_t a, std::int64_t b) const;
  // Over PCIe to the GPU's own host; one hop.
  PathCost gpu_to_host(std::int64_t gpu) const;
  // PCIe, then the node's NVMe at nvme_bandwidth / gpus_per_node; two hops. UserError naming
  // cluster.nvme_bandwidth when the cluster has none.
  PathCost gpu_to_nvme(std::int64_t gpu) const;

  VertexId gpu_vertex(std::int64_t gpu) const;
  VertexId nic_vertex(std::int64_t gpu) const;
  VertexId switch_vertex(std::int64_t node) const;
  VertexId host_vertex(std::int64_t node) const;
  VertexId nvme_vertex(std::int64_t node) const;
  VertexId fabric_vertex() const;

  // The route between two vertices under the rules above, searched over the whole graph with no
  // use of symmetry: O(V log V). Bandwidth 0 when there is none.
  PathCost route(VertexId from, VertexId to) const;

  const Graph& graph() const { return graph_; }

 private:
  // The route restricted to nodes <= max_node (and the fabric); max_node < 0: no restriction.
  PathCost search(VertexId from, VertexId to, std::int64_t max_node) const;
  void check_gpu(std::int64_t gpu) const;

  std::int64_t nodes_ = 1;
  std::int64_t gpus_per_node_ = 1;
  bool has_nvme_ = false;
  Graph graph_;
  PathCost same_node_;
  PathCost other_node_;
  PathCost host_;
  PathCost nvme_;
};

}  // namespace zp::sim
