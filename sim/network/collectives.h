// What a collective, a point-to-point message or a host/NVMe copy costs: an alpha-beta model on
// the routes of ClusterGraph. docs/network-model.md has every formula with worked examples.
//
// Notation: n ranks over N nodes, holding between g_min and g_max ranks each; S the collective's
// whole buffer in bytes; c = ceil(S / n) one rank's chunk (a partition padded to equal size, as
// DeepSpeed pads them); a_in, B_in the latency and bandwidth of the route between two GPUs of a
// node, a_x, B_x between two nodes (ClusterGraph, bandwidths after efficiency.network).
//
// Ring (NCCL's ring, one channel per NIC, the ranks of a node consecutive on the ring):
//   bandwidth  B_ring = B_in                                            when N = 1
//              B_ring = min(g_min B_x, B_in g_max / (g_max - 1))        when N > 1 (B_in term only
//              when g_max > 1): the g channels each cross the network on their own NIC, so a
//              node's traffic leaves through g_min NICs at least, while a GPU sends (g - 1) / g of
//              its bytes over NVLink;
//   latency    a chunk crosses h ring hops, H = min(N, h) of them between nodes when N > 1:
//              L(h) = H a_x + (h - H) a_in;
//   all-gather, reduce-scatter: L(n - 1) + (n - 1) c / B_ring, sent (n - 1) c;
//   all-reduce (reduce-scatter then all-gather): 2 L(n - 1) + 2 (n - 1) c / B_ring, sent 2(n-1)c;
//   broadcast (pipelined from the root; the chunk crosses N - 1 node boundaries):
//              (N - 1) a_x + (n - N) a_in + S / B_ring, sent S.
// Tree (NCCL's: a chain inside each node, a double binary tree across nodes):
//   depth      D = (g_max - 1) a_in + floor(log2 N) a_x (the trees' height)
//   bandwidth  B_tree = B_in when N = 1, min(g_min B_x, B_in) when N > 1 (B_x alone when
//              g_max = 1)
//   all-reduce: 2 D + 2 S / B_tree, sent 2 S (each rank sends the buffer up and down once);
//   broadcast:  D + S / B_tree, sent S.
// Send/recv: the route's latency + S / its bandwidth, sent S.
// Algorithm: all-gather, reduce-scatter and send/recv are ring only (asking for a tree is a
// UserError); all-reduce takes the cheaper of ring and tree (tie: ring), as NCCL's tuner does;
// broadcast takes ring, as NCCL implements broadcast with rings only, and a tree when asked.
// Times are rounded up to whole nanoseconds once, at the end (round_up_ns). A group of one rank,
// or zero bytes, costs nothing (NCCL returns at once for a zero count).
//
// Complexity: shape() is O(n) and allocates only for a group whose ranks are not increasing;
// cost(kind, shape, ...) is O(1). cost(kind, group, ...) is shape() then that. Nothing is cached
// and nothing grows per call; const access is safe from many threads. The constructor shares the
// graph with the models of recent alike clusters (a small process-wide cache, behind a mutex).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>

#include "core/config/cluster.h"
#include "sim/engine/simulator.h"
#include "sim/network/cluster_graph.h"

namespace zp::sim {

enum class CollectiveKind : std::uint8_t {
  kAllGather,
  kReduceScatter,
  kAllReduce,
  kBroadcast,
  kSendRecv
};
enum class Algorithm : std::uint8_t { kRing, kTree };

struct CollectiveCost {
  TimeNs time = 0;
  Algorithm algorithm = Algorithm::kRing;
  std::int64_t bytes_sent_per_rank = 0;  // the most any one rank puts on the wire
  bool hierarchical = false;             // the group spans several nodes
  bool operator==(const CollectiveCost&) const = default;
};

// Where a communicator's ranks sit: all its cost depends on, since every node is wired alike.
struct GroupShape {
  std::int64_t size = 0;          // n
  std::int64_t nodes = 0;         // N, nodes holding at least one rank
  std::int64_t min_per_node = 0;  // g_min over those nodes
  std::int64_t max_per_node = 0;  // g_max
  bool operator==(const GroupShape&) const = default;
};

// ceil(ns), after taking 0.001 ns off so that floating-point error in an exact result does not
// add a nanosecond. UserError for a time that does not fit in int64 nanoseconds.
TimeNs round_up_ns(double ns);

class CollectiveModel {
 public:
  // Builds the ClusterGraph; its errors.
  explicit CollectiveModel(const ClusterSpec& cluster);

  // UserError (kValue) for an empty group, a rank outside [0, total GPUs) or a repeated rank.
  GroupShape shape(std::span<const std::int64_t> group) const;

  // `group`: the communicator's global ranks in rank order. `bytes`: the whole buffer: all-gather
  // output, reduce-scatter input, all-reduce and broadcast buffer, send/recv message. UserError
  // for a bad group (shape()), bytes outside [0, 2^60], a send/recv group of more than 2 ranks
  // (sender then receiver), and a tree for anything but all-reduce and broadcast (kUnsupported).
  CollectiveCost cost(CollectiveKind kind, std::span<const std::int64_t> group, std::int64_t bytes,
                      std::optional<Algorithm> algorithm = std::nullopt) const;
  // The same for a shape from shape(), O(1): a simulator may keep one per communicator.
  CollectiveCost cost(CollectiveKind kind, const GroupShape& shape, std::int64_t bytes,
                      std::optional<Algorithm> algorithm = std::nullopt) const;

  // One direction over PCIe, between the GPU and its host: bytes / gpu_to_host bandwidth.
  TimeNs host_copy(std::int64_t gpu, std::int64_t bytes) const;
  // One direction between the GPU and its node's NVMe: bytes / gpu_to_nvme bandwidth (PCIe or the
  // GPU's share of the node's NVMe, whichever is narrower).
  TimeNs nvme_copy(std::int64_t gpu, std::int64_t bytes) const;

  // The graph of a representative part of the cluster: its first two nodes (all nodes are
  // alike). Costs for any GPUs of the whole cluster come from it.
  const ClusterGraph& graph() const { return *graph_; }

 private:
  CollectiveCost ring(CollectiveKind kind, const GroupShape& shape, std::int64_t bytes) const;
  CollectiveCost tree(CollectiveKind kind, const GroupShape& shape, std::int64_t bytes) const;

  std::int64_t local_gpu(std::int64_t gpu) const;  // its place in the representative graph

  std::shared_ptr<const ClusterGraph> graph_;  // shared by the models of alike clusters
  std::int64_t nodes_ = 1;
  std::int64_t gpus_ = 1;
  PathCost intra_;            // between two GPUs of a node (bandwidth 0 with one GPU per node)
  PathCost inter_;            // between two nodes (bandwidth 0 with one node)
  PathCost send_recv_intra_;  // a send/recv inside a node: cluster.point_to_point, else intra_
  bool reduce_scatter_by_all_reduce_ = false;  // cluster.reduce_scatter_by_all_reduce
  double collective_overhead_ns_ = 0;          // cluster.collective_overhead_ns
};

}  // namespace zp::sim
