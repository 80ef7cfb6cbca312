#include "sim/network/collectives.h"

#include <algorithm>
#include <cmath>
#include <memory>
#include <mutex>
#include <vector>

#include "core/util/error.h"

namespace zp::sim {
namespace {

// Keeps every byte count, doubled, inside int64.
constexpr std::int64_t kMaxBytes = std::int64_t{1} << 60;

const char* name(CollectiveKind kind) {
  switch (kind) {
    case CollectiveKind::kAllGather:
      return "all-gather";
    case CollectiveKind::kReduceScatter:
      return "reduce-scatter";
    case CollectiveKind::kAllReduce:
      return "all-reduce";
    case CollectiveKind::kBroadcast:
      return "broadcast";
    case CollectiveKind::kSendRecv:
      return "send/recv";
  }
  return "collective";
}

void check_bytes(std::int64_t bytes, const char* what) {
  if (bytes < 0 || bytes > kMaxBytes) {
    throw UserError(ErrorKind::kValue, {},
                    detail::concat(what, " of ", bytes, " bytes: must be in [0, 2^60]"));
  }
}

std::int64_t ceil_div(std::int64_t a, std::int64_t b) {
  return (a + b - 1) / b;
}

// floor(log2(n)) for n >= 1: the height of a complete binary tree of n nodes (NCCL's log2i).
std::int64_t floor_log2(std::int64_t n) {
  std::int64_t height = 0;
  while (n >>= 1)
    ++height;
  return height;
}

// Ranks in increasing order, so nodes are non-decreasing: counts the runs of equal nodes.
GroupShape count_runs(std::span<const std::int64_t> sorted, std::int64_t gpus_per_node) {
  GroupShape s;
  s.size = static_cast<std::int64_t>(sorted.size());
  s.min_per_node = s.size;
  std::int64_t run = 0;
  std::int64_t node = -1;
  auto close_run = [&] {
    if (run == 0) return;
    s.nodes += 1;
    s.min_per_node = std::min(s.min_per_node, run);
    s.max_per_node = std::max(s.max_per_node, run);
  };
  for (std::int64_t rank : sorted) {
    const std::int64_t n = rank / gpus_per_node;
    if (n != node) {
      close_run();
      node = n;
      run = 0;
    }
    run += 1;
  }
  close_run();
  return s;
}

}  // namespace

TimeNs round_up_ns(double ns) {
  const double up = std::ceil(ns - 1e-3);
  if (!(up < 9.2e18)) {
    throw UserError(ErrorKind::kValue, {},
                    detail::concat("a transfer of ", ns, " ns does not fit in int64 nanoseconds"));
  }
  return std::max<TimeNs>(0, static_cast<TimeNs>(up));
}

namespace {
// Every node is alike, so two of them hold every route a cost needs: the graph the model keeps
// has at most two nodes however large the cluster, and the model's memory does not grow with it.
ClusterSpec representative(ClusterSpec cluster) {
  ClusterGraph::check(cluster);
  cluster.nodes = std::min<std::int64_t>(cluster.nodes, 2);
  return cluster;
}

// The graph of `cluster`'s representative part. Building it and searching its routes costs as much
// as a fifth of a small simulation, and the planner builds a model per simulation, nearly always
// for the same cluster: the graphs are immutable, so the last few built are shared.
std::shared_ptr<const ClusterGraph> shared_graph(const ClusterSpec& cluster) {
  constexpr std::size_t kKept = 8;
  static std::mutex mutex;
  // Most recently used first.
  static std::vector<std::pair<ClusterSpec, std::shared_ptr<const ClusterGraph>>> recent;
  ClusterSpec key = representative(cluster);
  const std::lock_guard<std::mutex> lock(mutex);
  const auto hit = std::find_if(recent.begin(), recent.end(),
                                [&](const auto& entry) { return entry.first == key; });
  if (hit != recent.end()) {
    std::rotate(recent.begin(), hit, hit + 1);
  } else {
    auto graph = std::make_shared<const ClusterGraph>(key);
    if (recent.size() == kKept) recent.pop_back();
    recent.emplace(recent.begin(), std::move(key), std::move(graph));
  }
  return recent.front().second;
}
}  // namespace

CollectiveModel::CollectiveModel(const ClusterSpec& cluster)
    : graph_(shared_graph(cluster)),
      nodes_(cluster.nodes),
      gpus_(cluster.nodes * cluster.gpus_per_node) {
  if (graph_->gpus_per_node() > 1) intra_ = graph_->gpu_to_gpu(0, 1);
  if (graph_->nodes() > 1) inter_ = graph_->gpu_to_gpu(0, graph_->gpus_per_node());
  send_recv_intra_ = intra_;
  reduce_scatter_by_all_reduce_ = cluster.reduce_scatter_by_all_reduce;
  collective_overhead_ns_ = static_cast<double>(cluster.collective_overhead_ns);
  if (cluster.point_to_point && graph_->gpus_per_node() > 1) {
    const LinkSpec& link = *cluster.point_to_point;
    ZP_CHECK(link.bandwidth > 0 && link.latency_ns >= 0,
             "point_to_point unchecked: ", link.bandwidth, " B/s, ", link.latency_ns, " ns");
    send_recv_intra_ = {link.bandwidth * cluster.efficiency.network, link.latency_ns, 1};
  }
}

std::int64_t CollectiveModel::local_gpu(std::int64_t gpu) const {
  if (gpu < 0 || gpu >= gpus_) {
    throw UserError(ErrorKind::kValue, {},
                    detail::concat("GPU ", gpu, " is not in the cluster's ", gpus_,
                                   " GPUs (cluster.nodes x cluster.gpus_per_node)"));
  }
  return gpu % graph_->gpus_per_node();
}

GroupShape CollectiveModel::shape(std::span<const std::int64_t> group) const {
  if (group.empty()) {
    throw UserError(ErrorKind::kValue, {}, "a communicator needs at least one rank");
  }
  const std::int64_t gpus = gpus_;
  bool increasing = true;
  for (std::size_t i = 0; i < group.size(); ++i) {
    if (group[i] < 0 || group[i] >= gpus) {
      throw UserError(ErrorKind::kValue, {},
                      detail::concat("rank ", group[i], " is not in the cluster's ", gpus,
                                     " GPUs (cluster.nodes x cluster.gpus_per_node)"));
    }
    if (i > 0 && group[i] <= group[i - 1]) increasing = false;
  }
  if (increasing) return count_runs(group, graph_->gpus_per_node());
  std::vector<std::int64_t> sorted(group.begin(), group.end());
  std::sort(sorted.begin(), sorted.end());
  const auto repeated = std::adjacent_find(sorted.begin(), sorted.end());
  if (repeated != sorted.end()) {
    throw UserError(ErrorKind::kValue, {},
                    detail::concat("rank ", *repeated, " appears twice in a communicator"));
  }
  return count_runs(sorted, graph_->gpus_per_node());
}

CollectiveCost CollectiveModel::cost(CollectiveKind kind, std::span<const std::int64_t> group,
                                     std::int64_t bytes, std::optional<Algorithm> algorithm) const {
  return cost(kind, shape(group), bytes, algorithm);
}

CollectiveCost CollectiveModel::cost(CollectiveKind kind, const GroupShape& s, std::int64_t bytes,
                                     std::optional<Algorithm> algorithm) const {
  ZP_CHECK(s.size >= 1 && s.nodes >= 1 && s.nodes <= nodes_ && s.min_per_node >= 1 &&
               s.min_per_node <= s.max_per_node && s.max_per_node <= graph_->gpus_per_node() &&
               s.min_per_node * s.nodes <= s.size && s.size <= s.max_per_node * s.nodes,
           "inconsistent group shape: ", s.size, " ranks on ", s.nodes, " nodes, ", s.min_per_node,
           " to ", s.max_per_node, " per node");
  check_bytes(bytes, name(kind));
  const bool tree_allowed =
      kind == CollectiveKind::kAllReduce || kind == CollectiveKind::kBroadcast;
  if (algorithm == Algorithm::kTree && !tree_allowed) {
    throw UserError(ErrorKind::kUnsupported, {},
                    detail::concat("a tree ", name(kind),
                                   ": trees are modelled for all-reduce and broadcast only"));
  }
  if (kind == CollectiveKind::kSendRecv && s.size > 2) {
    throw UserError(ErrorKind::kValue, {},
                    detail::concat("send/recv between ", s.size,
                                   " ranks: the group must be the sender and the receiver"));
  }
  if (s.size == 1 || bytes == 0) {
    return {0, algorithm.value_or(Algorithm::kRing), 0, s.nodes > 1};
  }
  if (kind == CollectiveKind::kReduceScatter && reduce_scatter_by_all_reduce_)
    return cost(CollectiveKind::kAllReduce, s, bytes, algorithm);
  switch (kind) {
    case CollectiveKind::kSendRecv: {
      const PathCost& path = s.nodes == 1 ? send_recv_intra_ : inter_;
      const double ns =
          static_cast<double>(path.latency_ns) + static_cast<double>(bytes) * 1e9 / path.bandwidth;
      return {round_up_ns(ns), Algorithm::kRing, bytes, s.nodes > 1};
    }
    case CollectiveKind::kAllReduce: {
      if (algorithm) {
        return *algorithm == Algorithm::kTree ? tree(kind, s, bytes) : ring(kind, s, bytes);
      }
      const CollectiveCost by_ring = ring(kind, s, bytes);
      const CollectiveCost by_tree = tree(kind, s, bytes);
      return by_tree.time < by_ring.time ? by_tree : by_ring;
    }
    case CollectiveKind::kBroadcast:
      return algorithm == Algorithm::kTree ? tree(kind, s, bytes) : ring(kind, s, bytes);
    case CollectiveKind::kAllGather:
    case CollectiveKind::kReduceScatter:
      return ring(kind, s, bytes);
  }
  ZP_CHECK(false, "unknown collective kind ", static_cast<int>(kind));
  return {};
}

CollectiveCost CollectiveModel::ring(CollectiveKind kind, const GroupShape& s,
                                     std::int64_t bytes) const {
  const std::int64_t n = s.size;
  const std::int64_t nodes = s.nodes;
  const double a_in = static_cast<double>(intra_.latency_ns);
  const double a_x = static_cast<double>(inter_.latency_ns);

  double bandwidth = intra_.bandwidth;
  if (nodes > 1) {
    // Each channel crosses the network on its own NIC: a node's traffic leaves through at least
    // g_min NICs. A GPU sends (g - 1) / g of its bytes to neighbours on NVLink.
    bandwidth = static_cast<double>(s.min_per_node) * inter_.bandwidth;
    if (s.max_per_node > 1) {
      const double g = static_cast<double>(s.max_per_node);
      bandwidth = std::min(bandwidth, intra_.bandwidth * g / (g - 1));
    }
  }
  // The latency of a chunk crossing h consecutive hops of the ring, whose n hops include N between
  // nodes: the slowest chunk crosses all N unless it crosses fewer hops than that.
  auto hops_latency = [&](std::int64_t h) {
    const std::int64_t across = nodes == 1 ? 0 : std::min(nodes, h);
    return static_cast<double>(across) * a_x + static_cast<double>(h - across) * a_in;
  };

  const std::int64_t chunk = ceil_div(bytes, n);
  std::int64_t sent = 0;
  double latency = 0;
  switch (kind) {
    case CollectiveKind::kAllGather:
    case CollectiveKind::kReduceScatter:
      sent = (n - 1) * chunk;
      latency = hops_latency(n - 1);
      break;
    case CollectiveKind::kAllReduce:
      sent = 2 * (n - 1) * chunk;
      latency = 2 * hops_latency(n - 1);
      break;
    case CollectiveKind::kBroadcast:
      // From the root, the pipeline enters each of the other N - 1 nodes once.
      sent = bytes;
      latency = static_cast<double>(nodes - 1) * a_x + static_cast<double>(n - nodes) * a_in;
      break;
    case CollectiveKind::kSendRecv:
      ZP_CHECK(false, "send/recv is not a ring");
  }
  const double ns = collective_overhead_ns_ + latency + static_cast<double>(sent) * 1e9 / bandwidth;
  return {round_up_ns(ns), Algorithm::kRing, sent, nodes > 1};
}

CollectiveCost CollectiveModel::tree(CollectiveKind kind, const GroupShape& s,
                                     std::int64_t bytes) const {
  const std::int64_t nodes = s.nodes;
  // A chain through each node's ranks, then a double binary tree over the nodes.
  const double depth =
      static_cast<double>(s.max_per_node - 1) * static_cast<double>(intra_.latency_ns) +
      static_cast<double>(floor_log2(nodes)) * static_cast<double>(inter_.latency_ns);
  double bandwidth = intra_.bandwidth;
  if (nodes > 1) {
    bandwidth = static_cast<double>(s.min_per_node) * inter_.bandwidth;
    if (s.max_per_node > 1) bandwidth = std::min(bandwidth, intra_.bandwidth);
  }
  std::int64_t sent = bytes;
  double latency = depth;
  if (kind == CollectiveKind::kAllReduce) {
    // Reduce up the trees and broadcast back down: the buffer goes out twice.
    sent = 2 * bytes;
    latency = 2 * depth;
  } else {
    ZP_CHECK(kind == CollectiveKind::kBroadcast, "a tree ", name(kind));
  }
  const double ns = collective_overhead_ns_ + latency + static_cast<double>(sent) * 1e9 / bandwidth;
  return {round_up_ns(ns), Algorithm::kTree, sent, nodes > 1};
}

TimeNs CollectiveModel::host_copy(std::int64_t gpu, std::int64_t bytes) const {
  const PathCost path = graph_->gpu_to_host(local_gpu(gpu));
  check_bytes(bytes, "a host copy");
  if (bytes == 0) return 0;
  return round_up_ns(static_cast<double>(path.latency_ns) +
                     static_cast<double>(bytes) * 1e9 / path.bandwidth);
}

TimeNs CollectiveModel::nvme_copy(std::int64_t gpu, std::int64_t bytes) const {
  const PathCost path = graph_->gpu_to_nvme(local_gpu(gpu));
  check_bytes(bytes, "an NVMe copy");
  if (bytes == 0) return 0;
  return round_up_ns(static_cast<double>(path.latency_ns) +
                     static_cast<double>(bytes) * 1e9 / path.bandwidth);
}

}  // namespace zp::sim
