#include "sim/network/cluster_graph.h"

#include <algorithm>
#include <boost/graph/dijkstra_shortest_paths.hpp>
#include <boost/graph/filtered_graph.hpp>
#include <boost/range/iterator_range.hpp>
#include <cmath>
#include <functional>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "core/util/error.h"

namespace zp::sim {
namespace {

using Graph = ClusterGraph::Graph;
using VertexId = ClusterGraph::VertexId;
using Kind = ClusterGraph::VertexKind;

// Vertex ids stay well inside int64 and a vector's reach.
constexpr std::int64_t kMaxGpus = std::int64_t{1} << 24;

[[noreturn]] void fail(const std::string& key, const std::string& message) {
  SourceLocation where;
  where.key_path = "cluster." + key;
  throw UserError(ErrorKind::kValue, where, message);
}

void require_count(std::int64_t value, const char* key) {
  if (value < 1) fail(key, detail::concat(value, " is out of range: must be >= 1"));
}

// A bandwidth that may be 0 (absent); `needed` says why 0 is not allowed here.
void check_bandwidth(double value, const char* key, const char* needed) {
  if (!std::isfinite(value) || value < 0) {
    fail(key, detail::concat(value, " is out of range: must be a finite bandwidth >= 0"));
  }
  if (value == 0 && needed != nullptr) {
    fail(key, detail::concat("missing link: the bandwidth is 0, but ", needed));
  }
}

void check_latency(std::int64_t value, const char* key) {
  if (value < 0) fail(key, detail::concat(value, " ns is out of range: must be >= 0"));
}

// Keeps the endpoints and, on nodes up to max_node and the fabric, the relays a route may use:
// the interconnect, and hosts only on the way to or from an NVMe.
struct KeepVertex {
  const Graph* graph = nullptr;
  VertexId from = 0;
  VertexId to = 0;
  std::int64_t max_node = -1;
  bool host_relays = false;
  bool operator()(VertexId v) const {
    if (v == from || v == to) return true;
    const ClusterGraph::Vertex& p = (*graph)[v];
    if (p.kind == Kind::kNvme || (p.kind == Kind::kHost && !host_relays)) return false;
    return max_node < 0 || p.node <= max_node;
  }
};

// Keeps links at least as wide as the route's bottleneck.
struct KeepWide {
  const Graph* graph = nullptr;
  double min_bandwidth = 0;
  template <class Edge>
  bool operator()(const Edge& e) const {
    return (*graph)[e].bandwidth >= min_bandwidth;
  }
};

// Distance of the second search: summed latency, then hops.
struct LatencyHops {
  TimeNs latency = 0;
  int hops = 0;
};

struct LatencyHopsLess {
  bool operator()(const LatencyHops& a, const LatencyHops& b) const {
    return a.latency != b.latency ? a.latency < b.latency : a.hops < b.hops;
  }
};

struct AddLink {
  LatencyHops operator()(const LatencyHops& d, TimeNs latency) const {
    // Saturates, so an unreached distance never wraps.
    const TimeNs sum = d.latency > std::numeric_limits<TimeNs>::max() - latency
                           ? std::numeric_limits<TimeNs>::max()
                           : d.latency + latency;
    return {sum, d.hops == std::numeric_limits<int>::max() ? d.hops : d.hops + 1};
  }
};

struct Narrowest {
  double operator()(double a, double b) const { return std::min(a, b); }
};

// The bad input the graph cannot be built from.
void check_cluster(const ClusterSpec& cluster) {
  require_count(cluster.nodes, "nodes");
  require_count(cluster.gpus_per_node, "gpus_per_node");
  if (cluster.nodes > kMaxGpus / cluster.gpus_per_node) {
    fail("nodes", detail::concat(cluster.nodes, " nodes of ", cluster.gpus_per_node,
                                 " GPUs is more than 2^24 GPUs"));
  }
  const double efficiency = cluster.efficiency.network;
  if (!(efficiency > 0 && efficiency <= 1)) {
    fail("efficiency.network", detail::concat(efficiency, " is out of range: must be in (0, 1]"));
  }
  check_bandwidth(cluster.intra_node.bandwidth, "intra_node.bandwidth",
                  cluster.gpus_per_node > 1 ? "GPUs of the same node talk over it" : nullptr);
  check_bandwidth(cluster.inter_node.bandwidth, "inter_node.bandwidth",
                  cluster.nodes > 1 ? "the nodes talk over it" : nullptr);
  check_bandwidth(cluster.pcie_bandwidth, "pcie_bandwidth", "every GPU reaches its host over it");
  check_bandwidth(cluster.nvme_bandwidth, "nvme_bandwidth", nullptr);
  check_latency(cluster.intra_node.latency_ns, "intra_node.latency");
  check_latency(cluster.inter_node.latency_ns, "inter_node.latency");
}

// Vertex ids: GPUs, then a NIC per GPU, then per node a switch, a host and an NVMe, then the
// fabric; edges listed by source, as the compressed graph wants them.
ClusterGraph::Graph build_graph(const ClusterSpec& cluster) {
  check_cluster(cluster);
  using Link = ClusterGraph::Link;
  const std::int64_t nodes = cluster.nodes;
  const std::int64_t per_node = cluster.gpus_per_node;
  const std::int64_t gpus = nodes * per_node;
  const auto gpu = [](std::int64_t g) { return static_cast<VertexId>(g); };
  const auto nic = [&](std::int64_t g) { return static_cast<VertexId>(gpus + g); };
  const auto switch_of = [&](std::int64_t n) { return static_cast<VertexId>(2 * gpus + n); };
  const auto host = [&](std::int64_t n) { return static_cast<VertexId>(2 * gpus + nodes + n); };
  const auto nvme = [&](std::int64_t n) { return static_cast<VertexId>(2 * gpus + 2 * nodes + n); };
  const VertexId fabric = static_cast<VertexId>(2 * gpus + 3 * nodes);

  const double efficiency = cluster.efficiency.network;
  const double intra = cluster.intra_node.bandwidth * efficiency;
  const double inter = cluster.inter_node.bandwidth * efficiency;
  const double pcie = cluster.pcie_bandwidth * efficiency;
  const double nvme_share = cluster.nvme_bandwidth * efficiency / static_cast<double>(per_node);
  const TimeNs intra_latency = cluster.intra_node.latency_ns;
  const TimeNs inter_latency = cluster.inter_node.latency_ns;

  // What a link carries follows from what it joins.
  const auto link_between = [&](Kind from, Kind to) -> Link {
    if (from == Kind::kGpu && to == Kind::kSwitch) return {intra, intra_latency};
    if (from == Kind::kSwitch) return {intra, 0};
    if (from == Kind::kNic && to == Kind::kFabric) return {inter, inter_latency};
    if (from == Kind::kNic || to == Kind::kNic) return {inter, 0};
    if (from == Kind::kNvme || to == Kind::kNvme) return {nvme_share, 0};
    return {pcie, 0};  // GPU and host
  };

  // 32-bit ids (the GPU count is bounded) keep the list small.
  std::vector<std::pair<std::uint32_t, std::uint32_t>> edges;
  edges.reserve(static_cast<std::size_t>(8 * gpus + 2 * nodes));
  const auto edge = [&](VertexId from, VertexId to) {
    edges.emplace_back(static_cast<std::uint32_t>(from), static_cast<std::uint32_t>(to));
  };
  for (std::int64_t g = 0; g < gpus; ++g) {
    const std::int64_t n = g / per_node;
    if (intra > 0) edge(gpu(g), switch_of(n));
    if (inter > 0) edge(gpu(g), nic(g));
    edge(gpu(g), host(n));
  }
  if (inter > 0) {
    for (std::int64_t g = 0; g < gpus; ++g) {
      edge(nic(g), gpu(g));
      edge(nic(g), fabric);
    }
  }
  if (intra > 0) {
    for (std::int64_t g = 0; g < gpus; ++g)
      edge(switch_of(g / per_node), gpu(g));
  }
  for (std::int64_t n = 0; n < nodes; ++n) {
    for (std::int64_t g = n * per_node; g < (n + 1) * per_node; ++g)
      edge(host(n), gpu(g));
    if (nvme_share > 0) edge(host(n), nvme(n));
  }
  if (nvme_share > 0) {
    for (std::int64_t n = 0; n < nodes; ++n)
      edge(nvme(n), host(n));
  }
  if (inter > 0) {
    for (std::int64_t g = 0; g < gpus; ++g)
      edge(fabric, nic(g));
  }

  ClusterGraph::Graph graph(boost::edges_are_sorted, edges.begin(), edges.end(),
                            static_cast<std::size_t>(fabric + 1));
  for (std::int64_t g = 0; g < gpus; ++g) {
    graph[gpu(g)] = {Kind::kGpu, g / per_node};
    graph[nic(g)] = {Kind::kNic, g / per_node};
  }
  for (std::int64_t n = 0; n < nodes; ++n) {
    graph[switch_of(n)] = {Kind::kSwitch, n};
    graph[host(n)] = {Kind::kHost, n};
    graph[nvme(n)] = {Kind::kNvme, n};
  }
  graph[fabric] = {Kind::kFabric, -1};
  for (const auto e : boost::make_iterator_range(boost::edges(graph))) {
    graph[e] =
        link_between(graph[boost::source(e, graph)].kind, graph[boost::target(e, graph)].kind);
  }
  return graph;
}

}  // namespace

void ClusterGraph::check(const ClusterSpec& cluster) {
  check_cluster(cluster);
}

ClusterGraph::ClusterGraph(const ClusterSpec& cluster)
    : nodes_(cluster.nodes),
      gpus_per_node_(cluster.gpus_per_node),
      has_nvme_(cluster.nvme_bandwidth > 0),
      graph_(build_graph(cluster)) {
  // One route per class, from GPU 0; nodes 0 and 1 hold every route a class can take.
  if (gpus_per_node_ > 1) same_node_ = search(gpu_vertex(0), gpu_vertex(1), 1);
  if (nodes_ > 1) other_node_ = search(gpu_vertex(0), gpu_vertex(gpus_per_node_), 1);
  host_ = search(gpu_vertex(0), host_vertex(0), 1);
  if (has_nvme_) nvme_ = search(gpu_vertex(0), nvme_vertex(0), 1);
  ZP_CHECK(gpus_per_node_ == 1 || same_node_.bandwidth > 0, "no route inside a node");
  ZP_CHECK(nodes_ == 1 || other_node_.bandwidth > 0, "no route between nodes");
  ZP_CHECK(host_.bandwidth > 0, "no route to the host");
  ZP_CHECK(!has_nvme_ || nvme_.bandwidth > 0, "no route to NVMe");
}

std::int64_t ClusterGraph::node_of(std::int64_t gpu) const {
  check_gpu(gpu);
  return gpu / gpus_per_node_;
}

void ClusterGraph::check_gpu(std::int64_t gpu) const {
  if (gpu < 0 || gpu >= gpus()) {
    throw UserError(ErrorKind::kValue, {},
                    detail::concat("GPU ", gpu, " is not in the cluster's ", gpus(),
                                   " GPUs (cluster.nodes x cluster.gpus_per_node)"));
  }
}

PathCost ClusterGraph::gpu_to_gpu(std::int64_t a, std::int64_t b) const {
  check_gpu(a);
  check_gpu(b);
  if (a == b) return {std::numeric_limits<double>::infinity(), 0, 0};
  return a / gpus_per_node_ == b / gpus_per_node_ ? same_node_ : other_node_;
}

PathCost ClusterGraph::gpu_to_host(std::int64_t gpu) const {
  check_gpu(gpu);
  return host_;
}

PathCost ClusterGraph::gpu_to_nvme(std::int64_t gpu) const {
  check_gpu(gpu);
  if (!has_nvme_) {
    fail("nvme_bandwidth", "missing link: the bandwidth is 0, but offloading to NVMe needs it");
  }
  return nvme_;
}

ClusterGraph::VertexId ClusterGraph::gpu_vertex(std::int64_t gpu) const {
  check_gpu(gpu);
  return static_cast<VertexId>(gpu);
}

ClusterGraph::VertexId ClusterGraph::nic_vertex(std::int64_t gpu) const {
  check_gpu(gpu);
  return static_cast<VertexId>(gpus() + gpu);
}

ClusterGraph::VertexId ClusterGraph::switch_vertex(std::int64_t node) const {
  ZP_CHECK(node >= 0 && node < nodes_, "node ", node, " of ", nodes_);
  return static_cast<VertexId>(2 * gpus() + node);
}

ClusterGraph::VertexId ClusterGraph::host_vertex(std::int64_t node) const {
  ZP_CHECK(node >= 0 && node < nodes_, "node ", node, " of ", nodes_);
  return static_cast<VertexId>(2 * gpus() + nodes_ + node);
}

ClusterGraph::VertexId ClusterGraph::nvme_vertex(std::int64_t node) const {
  ZP_CHECK(node >= 0 && node < nodes_, "node ", node, " of ", nodes_);
  return static_cast<VertexId>(2 * gpus() + 2 * nodes_ + node);
}

ClusterGraph::VertexId ClusterGraph::fabric_vertex() const {
  return static_cast<VertexId>(2 * gpus() + 3 * nodes_);
}

PathCost ClusterGraph::route(VertexId from, VertexId to) const {
  ZP_CHECK(from < boost::num_vertices(graph_) && to < boost::num_vertices(graph_), "vertex ", from,
           " or ", to, " of ", boost::num_vertices(graph_));
  return search(from, to, -1);
}

// Two searches, which together are exact where one lexicographic search would not be (a narrower
// prefix with less latency could hide a wider one): the widest bottleneck first, then the least
// latency and hops over links at least that wide.
PathCost ClusterGraph::search(VertexId from, VertexId to, std::int64_t max_node) const {
  if (from == to) return {std::numeric_limits<double>::infinity(), 0, 0};
  const std::size_t n = boost::num_vertices(graph_);
  const auto index = boost::get(boost::vertex_index, graph_);
  const bool to_nvme = graph_[from].kind == Kind::kNvme || graph_[to].kind == Kind::kNvme;
  const KeepVertex keep{&graph_, from, to, max_node, to_nvme};

  // The _no_init searches touch only what they reach; the vectors start at "unreached".
  std::vector<double> width(n, -1.0);
  width[from] = std::numeric_limits<double>::infinity();
  const auto relays = boost::make_filtered_graph(graph_, boost::keep_all(), keep);
  boost::dijkstra_shortest_paths_no_init(
      relays, from, boost::dummy_property_map(),
      boost::make_iterator_property_map(width.begin(), index), boost::get(&Link::bandwidth, graph_),
      index, std::greater<double>(), Narrowest(), std::numeric_limits<double>::infinity(),
      boost::default_dijkstra_visitor());
  const double bandwidth = width[to];
  if (bandwidth <= 0) return {};

  std::vector<LatencyHops> best(
      n, LatencyHops{std::numeric_limits<TimeNs>::max(), std::numeric_limits<int>::max()});
  best[from] = LatencyHops{};
  const auto wide = boost::make_filtered_graph(graph_, KeepWide{&graph_, bandwidth}, keep);
  boost::dijkstra_shortest_paths_no_init(
      wide, from, boost::dummy_property_map(),
      boost::make_iterator_property_map(best.begin(), index), boost::get(&Link::latency_ns, graph_),
      index, LatencyHopsLess(), AddLink(), LatencyHops{}, boost::default_dijkstra_visitor());
  ZP_CHECK(best[to].hops > 0 && best[to].hops < std::numeric_limits<int>::max(),
           "the widest route vanished");
  return {bandwidth, best[to].latency, best[to].hops};
}

}  // namespace zp::sim
