#include "sim/network/collectives.h"

#include <gtest/gtest.h>

#include "../sim_test_util.h"

#include <functional>
#include <ostream>
#include <string>
#include <vector>

#include "core/util/error.h"

namespace zp::sim {

// Readable failures.
void PrintTo(const CollectiveCost& c, std::ostream* out) {
  *out << "{" << c.time << " ns, " << (c.algorithm == Algorithm::kRing ? "ring" : "tree") << ", "
       << c.bytes_sent_per_rank << " B sent, " << (c.hierarchical ? "across nodes" : "one node")
       << "}";
}
void PrintTo(const GroupShape& s, std::ostream* out) {
  *out << "{" << s.size << " ranks, " << s.nodes << " nodes, " << s.min_per_node << ".."
       << s.max_per_node << " per node}";
}

namespace {

using testing::ErrorOf;

// Every expected time below is worked by hand from the formulas in collectives.h, on dgx-a100-80g
// with efficiency.network 0.8: inside a node B_in = 240 GB/s and a_in = 3000 ns, between nodes
// B_x = 20 GB/s and a_x = 5000 ns; PCIe 20 GB/s, NVMe 2.5 GB/s per GPU.
constexpr std::int64_t kMiB = 1 << 20;
constexpr std::int64_t kGiB = std::int64_t{1} << 30;

ClusterSpec a100(std::int64_t nodes) {
  ClusterSpec c = *find_cluster_preset("dgx-a100-80g");
  c.nodes = nodes;
  return c;
}

std::vector<std::int64_t> ranks(std::int64_t first, std::int64_t count, std::int64_t stride = 1) {
  std::vector<std::int64_t> out;
  for (std::int64_t i = 0; i < count; ++i)
    out.push_back(first + i * stride);
  return out;
}

using K = CollectiveKind;
using A = Algorithm;

TEST(CollectiveRounding, RoundsUpToWholeNanoseconds) {
  EXPECT_EQ(round_up_ns(0), 0);
  EXPECT_EQ(round_up_ns(5), 5);
  EXPECT_EQ(round_up_ns(5.0004), 5);  // floating-point noise
  EXPECT_EQ(round_up_ns(5.002), 6);
  EXPECT_EQ(round_up_ns(5.4), 6);  // up, not to nearest
  EXPECT_THROW(round_up_ns(1e19), UserError);
}

TEST(CollectiveRing, AllGatherInOneNode) {
  const CollectiveModel m(a100(1));
  // 7 a_in + 7/8 S / B_in = 21000 + 939524096 B / 240 GB/s = 21000 + 3914683.73 -> 3935684.
  EXPECT_EQ(m.cost(K::kAllGather, ranks(0, 8), kGiB),
            (CollectiveCost{3935684, A::kRing, 939524096, false}));
}

TEST(CollectiveRing, ReduceScatterCostsWhatAllGatherCosts) {
  const CollectiveModel m(a100(1));
  EXPECT_EQ(m.cost(K::kReduceScatter, ranks(0, 8), kGiB),
            (CollectiveCost{3935684, A::kRing, 939524096, false}));
}

TEST(CollectiveRing, AllReduceIsReduceScatterThenAllGather) {
  const CollectiveModel m(a100(1));
  // 14 a_in + 2 x 7/8 S / B_in = 42000 + 7829367.47 -> 7871368. Inside a node the tree (a chain)
  // has the same latency and more bytes, so the ring is chosen.
  const CollectiveCost ring{7871368, A::kRing, 1879048192, false};
  EXPECT_EQ(m.cost(K::kAllReduce, ranks(0, 8), kGiB), ring);
  EXPECT_EQ(m.cost(K::kAllReduce, ranks(0, 8), kGiB, A::kRing), ring);
  // Tree: 2 x 7 a_in + 2 S / B_in = 42000 + 8947848.53 -> 8989849.
  EXPECT_EQ(m.cost(K::kAllReduce, ranks(0, 8), kGiB, A::kTree),
            (CollectiveCost{8989849, A::kTree, 2 * kGiB, false}));
}

TEST(CollectiveRing, BroadcastIsPipelined) {
  const CollectiveModel m(a100(1));
  // 7 a_in + S / B_in = 21000 + 4473924.27 -> 4494925.
  EXPECT_EQ(m.cost(K::kBroadcast, ranks(0, 8), kGiB),
            (CollectiveCost{4494925, A::kRing, kGiB, false}));
}

TEST(CollectiveRing, ChunksArePaddedToEqualSize) {
  const CollectiveModel m(a100(1));
  // 10 bytes over 4 ranks: chunks of 3, 3 x 3 bytes sent; 3 a_in + 9 B / B_in = 9000.04 -> 9001.
  EXPECT_EQ(m.cost(K::kAllGather, ranks(0, 4), 10), (CollectiveCost{9001, A::kRing, 9, false}));
}

TEST(CollectiveRing, PartialNanosecondsRoundUp) {
  const CollectiveModel m(a100(1));
  // 7 a_in + 7 B / B_in = 21000.03 -> 21001.
  EXPECT_EQ(m.cost(K::kAllGather, ranks(0, 8), 8).time, 21001);
}

TEST(CollectiveRing, EfficiencyScalesTheBandwidth) {
  ClusterSpec c = a100(1);
  c.efficiency.network = 0.5;
  // 21000 + 939524096 B / 150 GB/s = 21000 + 6263493.97 -> 6284494.
  EXPECT_EQ(CollectiveModel(c).cost(K::kAllGather, ranks(0, 8), kGiB).time, 6284494);
}

TEST(CollectiveHierarchical, AllGatherOverTwoNodesHandWorked) {
  const CollectiveModel m(a100(2));
  // 16 ranks on 2 nodes, 8 each. B_ring = min(8 x 20 GB/s, 240 GB/s x 8/7) = 160 GB/s.
  // Latency: 15 hops, 2 of them between nodes: 2 x 5000 + 13 x 3000 = 49000.
  // Bytes: 15/16 GiB = 1006632960; / 160 GB/s = 6291456 ns. Total 6340456.
  const CollectiveCost across = m.cost(K::kAllGather, ranks(0, 16), kGiB);
  EXPECT_EQ(across, (CollectiveCost{6340456, A::kRing, 1006632960, true}));
  // The same gather on one node's 8 GPUs (3935684, see above) is 2404772 ns faster.
  EXPECT_EQ(across.time - m.cost(K::kAllGather, ranks(0, 8), kGiB).time, 2404772);
}

TEST(CollectiveHierarchical, EachNodesRanksShareTheNetworkThroughTheirNics) {
  const CollectiveModel m(a100(2));
  // 4 + 4 ranks: B_ring = min(4 x 20, 240 x 4/3) = 80 GB/s; 2 x 5000 + 5 x 3000 = 25000;
  // 939524096 B / 80 GB/s = 11744051.2. Total 11769051.2 -> 11769052.
  const std::vector<std::int64_t> four_each = {0, 1, 2, 3, 8, 9, 10, 11};
  EXPECT_EQ(m.cost(K::kAllGather, four_each, kGiB),
            (CollectiveCost{11769052, A::kRing, 939524096, true}));
  // One rank per node: one NIC, one hop: 5000 + 536870912 B / 20 GB/s = 26848545.6 -> 26848546.
  EXPECT_EQ(m.cost(K::kAllGather, std::vector<std::int64_t>{0, 8}, kGiB),
            (CollectiveCost{26848546, A::kRing, 536870912, true}));
}

TEST(CollectiveHierarchical, NvlinkCarriesAllButOneInGOfEachGpusBytes) {
  // A network faster than NVLink's share: 8 x 80 GB/s > 240 GB/s x 8/7, so NVLink bounds.
  ClusterSpec c = a100(2);
  c.inter_node.bandwidth = 100e9;
  // 49000 + 1006632960 B / (1920/7 GB/s) = 49000 + 3670016.
  EXPECT_EQ(CollectiveModel(c).cost(K::kAllGather, ranks(0, 16), kGiB).time, 3719016);
}

TEST(CollectiveHierarchical, UnevenGroupsUseTheSmallestPerNodeCount) {
  const CollectiveModel m(a100(2));
  const std::vector<std::int64_t> group = {0, 1, 2, 8};
  EXPECT_EQ(m.shape(group), (GroupShape{4, 2, 1, 3}));
  // g_min = 1: B_ring = min(1 x 20, 240 x 3/2) = 20 GB/s. 3 hops, 2 across: 13000.
  // Chunks of 1 MiB, 3 sent: 3145728 B / 20 GB/s = 157286.4. Total 170286.4 -> 170287.
  EXPECT_EQ(m.cost(K::kAllGather, group, 4 * kMiB),
            (CollectiveCost{170287, A::kRing, 3 * kMiB, true}));
}

TEST(CollectiveHierarchical, BroadcastEntersEachOtherNodeOnce) {
  const CollectiveModel m(a100(2));
  // 1 x 5000 + 14 x 3000 = 47000; S / 160 GB/s = 6710886.4. Total 6757886.4 -> 6757887.
  EXPECT_EQ(m.cost(K::kBroadcast, ranks(0, 16), kGiB),
            (CollectiveCost{6757887, A::kRing, kGiB, true}));
}

TEST(CollectiveTree, AllReduceTakesTheTreeForSmallMessagesAcrossNodes) {
  const CollectiveModel m(a100(2));
  // 1 MiB, 16 ranks on 2 nodes.
  // Ring: 2 x 49000 + 2 x 15 x 65536 B / 160 GB/s = 98000 + 12288 = 110288.
  EXPECT_EQ(m.cost(K::kAllReduce, ranks(0, 16), kMiB, A::kRing).time, 110288);
  // Tree: D = 7 x 3000 + floor(log2 2) x 5000 = 26000; B_tree = min(8 x 20, 240) = 160 GB/s;
  // 2 D + 2 MiB / 160 GB/s = 52000 + 13107.2 -> 65108.
  const CollectiveCost tree{65108, A::kTree, 2 * kMiB, true};
  EXPECT_EQ(m.cost(K::kAllReduce, ranks(0, 16), kMiB, A::kTree), tree);
  EXPECT_EQ(m.cost(K::kAllReduce, ranks(0, 16), kMiB), tree);
}

TEST(CollectiveTree, AllReduceTakesTheRingForLargeMessages) {
  const CollectiveModel m(a100(2));
  // Ring: 98000 + 2013265920 B / 160 GB/s = 98000 + 12582912 = 12680912.
  // Tree: 52000 + 2 GiB / 160 GB/s = 52000 + 13421772.8 -> 13473773.
  EXPECT_EQ(m.cost(K::kAllReduce, ranks(0, 16), kGiB, A::kTree).time, 13473773);
  EXPECT_EQ(m.cost(K::kAllReduce, ranks(0, 16), kGiB),
            (CollectiveCost{12680912, A::kRing, 2013265920, true}));
}

TEST(CollectiveTree, AllReduceTieGoesToTheRing) {
  const CollectiveModel m(a100(2));
  // S = 58880000: ring 98000 + 30 x 3680000 B / 160 GB/s = 98000 + 690000 = 788000; tree
  // 52000 + 2 S / 160 GB/s = 52000 + 736000 = 788000.
  EXPECT_EQ(m.cost(K::kAllReduce, ranks(0, 16), 58880000, A::kTree).time, 788000);
  EXPECT_EQ(m.cost(K::kAllReduce, ranks(0, 16), 58880000),
            (CollectiveCost{788000, A::kRing, 110400000, true}));
}

TEST(CollectiveTree, NvlinkBoundsTheTreeWhenTheNetworkIsFaster) {
  ClusterSpec c = a100(2);
  c.inter_node.bandwidth = 100e9;
  // B_tree = min(8 x 80 GB/s, 240 GB/s) = 240 GB/s: 52000 + 2 MiB / 240 GB/s = 52000 + 8738.13
  // -> 60739.
  EXPECT_EQ(CollectiveModel(c).cost(K::kAllReduce, ranks(0, 16), kMiB, A::kTree).time, 60739);
}

TEST(CollectiveTree, UnevenGroupsChainThroughTheFullestNode) {
  const CollectiveModel m(a100(2));
  // {0, 1, 2, 8}: D = (3 - 1) x 3000 + 1 x 5000 = 11000; B_tree = min(1 x 20, 240) = 20 GB/s;
  // 2 D + 2 MiB / 20 GB/s = 22000 + 104857.6 -> 126858.
  EXPECT_EQ(m.cost(K::kAllReduce, std::vector<std::int64_t>{0, 1, 2, 8}, kMiB, A::kTree).time,
            126858);
}

TEST(CollectiveTree, DepthAcrossNodesIsFloorLog2) {
  const CollectiveModel m(a100(5));
  const std::vector<std::int64_t> one_per_node = ranks(0, 5, 8);
  // A binary tree of 5 nodes is 2 links high. D = floor(log2 5) x 5000 = 10000;
  // 2 D + 2 MiB / 20 GB/s = 20000 + 104857.6 -> 124858.
  EXPECT_EQ(m.cost(K::kAllReduce, one_per_node, kMiB, A::kTree).time, 124858);
  // Ring: 4 hops, all across: 2 x 20000; chunks ceil(1 MiB / 5) = 209716, 8 sent:
  // 40000 + 1677728 B / 20 GB/s = 40000 + 83886.4 -> 123887. Cheaper, so chosen.
  EXPECT_EQ(m.cost(K::kAllReduce, one_per_node, kMiB),
            (CollectiveCost{123887, A::kRing, 1677728, true}));
}

TEST(CollectiveTree, BroadcastIsARingUnlessATreeIsAsked) {
  const CollectiveModel m(a100(16));
  const std::vector<std::int64_t> one_per_node = ranks(0, 16, 8);
  // Ring: 15 x 5000 + 1 MiB / 20 GB/s = 75000 + 52428.8 -> 127429.
  EXPECT_EQ(m.cost(K::kBroadcast, one_per_node, kMiB),
            (CollectiveCost{127429, A::kRing, kMiB, true}));
  // Tree: log2(16) x 5000 + 52428.8 = 72428.8 -> 72429: cheaper, but NCCL has no tree
  // broadcast, so only an explicit request gets it.
  EXPECT_EQ(m.cost(K::kBroadcast, one_per_node, kMiB, A::kTree),
            (CollectiveCost{72429, A::kTree, kMiB, true}));
}

TEST(CollectiveTree, OnlyAllReduceAndBroadcastHaveTrees) {
  const CollectiveModel m(a100(1));
  for (K kind : {K::kAllGather, K::kReduceScatter, K::kSendRecv}) {
    const UserError e = ErrorOf([&] { m.cost(kind, ranks(0, 2), kMiB, A::kTree); });
    EXPECT_EQ(e.kind(), ErrorKind::kUnsupported) << e.what();
  }
}

TEST(CollectiveSendRecv, LatencyPlusBytesOverTheRoute) {
  const CollectiveModel m(a100(2));
  // 3000 + 1 MiB / 240 GB/s = 3000 + 4369.07 -> 7370.
  EXPECT_EQ(m.cost(K::kSendRecv, std::vector<std::int64_t>{0, 1}, kMiB),
            (CollectiveCost{7370, A::kRing, kMiB, false}));
  // 5000 + 1 MiB / 20 GB/s = 5000 + 52428.8 -> 57429.
  EXPECT_EQ(m.cost(K::kSendRecv, std::vector<std::int64_t>{8, 0}, kMiB),
            (CollectiveCost{57429, A::kRing, kMiB, true}));
  EXPECT_THROW(m.cost(K::kSendRecv, ranks(0, 3), kMiB), UserError);
}

// point_to_point prices a send/recv inside a node, after efficiency.network; the collectives and
// a send/recv between nodes keep their links.
TEST(CollectiveSendRecv, APointToPointLinkPricesItInsideANode) {
  ClusterSpec c = a100(2);
  const CollectiveModel plain(c);
  c.point_to_point = LinkSpec{50e9, 30000};
  const CollectiveModel m(c);
  // 30000 + 1 MiB / (0.8 x 50 GB/s) = 30000 + 26214.4 -> 56215.
  EXPECT_EQ(m.cost(K::kSendRecv, std::vector<std::int64_t>{0, 1}, kMiB),
            (CollectiveCost{56215, A::kRing, kMiB, false}));
  EXPECT_EQ(m.cost(K::kSendRecv, std::vector<std::int64_t>{8, 0}, kMiB),
            plain.cost(K::kSendRecv, std::vector<std::int64_t>{8, 0}, kMiB));
  for (K kind : {K::kAllGather, K::kReduceScatter, K::kAllReduce}) {
    EXPECT_EQ(m.cost(kind, ranks(0, 8), kMiB), plain.cost(kind, ranks(0, 8), kMiB));
  }
}

// A backend without a reduce-scatter (Gloo) runs an all-reduce of the whole buffer: priced so,
// ring or tree, whichever is faster; the other kinds are unchanged.
TEST(CollectiveModel, AReduceScatterByAllReduceCostsAnAllReduce) {
  ClusterSpec c = a100(2);
  const CollectiveModel plain(c);
  c.reduce_scatter_by_all_reduce = true;
  const CollectiveModel m(c);
  for (const auto& group : {ranks(0, 8), ranks(0, 16)}) {
    EXPECT_EQ(m.cost(K::kReduceScatter, group, kMiB), plain.cost(K::kAllReduce, group, kMiB));
    EXPECT_NE(m.cost(K::kReduceScatter, group, kMiB), plain.cost(K::kReduceScatter, group, kMiB));
    EXPECT_EQ(m.cost(K::kAllGather, group, kMiB), plain.cost(K::kAllGather, group, kMiB));
  }
  // Inside a node: 2 x 7 hops of 3000 ns + 2 x 7/8 MiB / 240 GB/s = 42000 + 7645.87 -> 49646.
  EXPECT_EQ(m.cost(K::kReduceScatter, ranks(0, 8), kMiB).time, 49646);
}

// collective_overhead is paid once a call: the same for 2, 8 and 16 ranks, once by an
// all-reduce (whose hops count twice) and a reduce-scatter priced as one; a send/recv pays its
// own link's latency, and one rank or no bytes still nothing.
TEST(CollectiveModel, ACollectiveOverheadIsPaidOnceACall) {
  ClusterSpec c = a100(2);
  const CollectiveModel plain(c);
  c.collective_overhead_ns = 500000;
  const CollectiveModel m(c);
  for (const auto& group : {ranks(0, 2), ranks(0, 8), ranks(0, 16)}) {
    for (K kind : {K::kAllGather, K::kReduceScatter, K::kAllReduce, K::kBroadcast}) {
      EXPECT_EQ(m.cost(kind, group, kMiB).time, plain.cost(kind, group, kMiB).time + 500000)
          << static_cast<int>(kind) << " over " << group.size() << " ranks";
    }
  }
  EXPECT_EQ(m.cost(K::kAllReduce, ranks(0, 16), kMiB, A::kTree).time,
            plain.cost(K::kAllReduce, ranks(0, 16), kMiB, A::kTree).time + 500000);
  const std::vector<std::int64_t> pair = {0, 1};
  EXPECT_EQ(m.cost(K::kSendRecv, pair, kMiB), plain.cost(K::kSendRecv, pair, kMiB));
  EXPECT_EQ(m.cost(K::kAllGather, std::vector<std::int64_t>{5}, kMiB).time, 0);
  EXPECT_EQ(m.cost(K::kAllGather, pair, 0).time, 0);
  c.reduce_scatter_by_all_reduce = true;
  // Inside a node: 500 us + 2 x 7 hops of 3000 ns + 2 x 7/8 MiB / 240 GB/s -> 549646.
  EXPECT_EQ(CollectiveModel(c).cost(K::kReduceScatter, ranks(0, 8), kMiB).time, 549646);
}

TEST(CollectiveModel, OneRankOrNoBytesCostNothing) {
  const CollectiveModel m(a100(2));
  for (K kind : {K::kAllGather, K::kReduceScatter, K::kAllReduce, K::kBroadcast, K::kSendRecv}) {
    EXPECT_EQ(m.cost(kind, std::vector<std::int64_t>{5}, kGiB), (CollectiveCost{}));
    EXPECT_EQ(m.cost(kind, std::vector<std::int64_t>{0, 8}, 0),
              (CollectiveCost{0, A::kRing, 0, true}));
  }
}

TEST(CollectiveModel, ShapeCountsRanksPerNode) {
  const CollectiveModel m(a100(2));
  EXPECT_EQ(m.shape(ranks(0, 8)), (GroupShape{8, 1, 8, 8}));
  EXPECT_EQ(m.shape(ranks(0, 4, 2)), (GroupShape{4, 1, 4, 4}));
  EXPECT_EQ(m.shape(ranks(1, 2, 8)), (GroupShape{2, 2, 1, 1}));
  // Rank order does not matter to the shape.
  const std::vector<std::int64_t> shuffled = {8, 0, 9, 1};
  EXPECT_EQ(m.shape(shuffled), (GroupShape{4, 2, 2, 2}));
  EXPECT_EQ(m.cost(K::kAllGather, shuffled, kGiB),
            m.cost(K::kAllGather, m.shape(std::vector<std::int64_t>{0, 1, 8, 9}), kGiB));
}

TEST(CollectiveModel, BadGroupsAndSizesAreRefused) {
  const CollectiveModel m(a100(2));
  const std::vector<std::vector<std::int64_t>> bad_groups = {
      {}, {0, 16}, {-1, 0}, {1, 1}, {3, 1, 3}};
  for (const auto& group : bad_groups) {
    const UserError e = ErrorOf([&] { m.cost(K::kAllGather, group, kMiB); });
    EXPECT_EQ(e.kind(), ErrorKind::kValue) << e.what();
  }
  EXPECT_NE(ErrorOf([&] {
              m.shape(std::vector<std::int64_t>{0, 16});
            })
                .message()
                .find("16 GPUs"),
            std::string::npos);
  EXPECT_NE(ErrorOf([&] {
              m.shape(std::vector<std::int64_t>{3, 1, 3});
            })
                .message()
                .find("rank 3 appears twice"),
            std::string::npos);
  EXPECT_THROW(m.cost(K::kAllGather, ranks(0, 2), -1), UserError);
  EXPECT_THROW(m.cost(K::kAllGather, ranks(0, 2), (std::int64_t{1} << 60) + 1), UserError);
}

TEST(CollectiveModel, HostAndNvmeCopies) {
  const CollectiveModel m(a100(2));
  // 1 GiB over PCIe at 20 GB/s: 53687091.2 -> 53687092.
  EXPECT_EQ(m.host_copy(9, kGiB), 53687092);
  // 1 GiB at 25 GB/s x 0.8 / 8 GPUs = 2.5 GB/s: 429496729.6 -> 429496730.
  EXPECT_EQ(m.nvme_copy(9, kGiB), 429496730);
  EXPECT_EQ(m.host_copy(0, 0), 0);
  EXPECT_THROW(m.host_copy(16, kGiB), UserError);
  EXPECT_THROW(m.nvme_copy(0, -1), UserError);
}

}  // namespace
}  // namespace zp::sim

namespace zp::sim {
namespace {

TEST(CollectiveModel, KeepsTwoNodesOfAnyClusterAndCostsEveryGpu) {
  const CollectiveModel big(a100(128));  // 1024 GPUs
  EXPECT_EQ(big.graph().nodes(), 2);
  EXPECT_EQ(big.graph().gpus(), 16);
  // The last GPU's links are its node's, the same as GPU 7's.
  EXPECT_EQ(big.host_copy(1023, kGiB), big.host_copy(7, kGiB));
  EXPECT_EQ(big.nvme_copy(1023, kMiB), big.nvme_copy(0, kMiB));
  EXPECT_THROW(big.host_copy(1024, 1), UserError);
  // A group over every node costs what its shape says, whatever nodes it uses.
  const GroupShape all = big.shape(ranks(0, 1024));
  EXPECT_EQ(all.nodes, 128);
  EXPECT_EQ(big.cost(CollectiveKind::kAllGather, ranks(0, 1024), kGiB),
            big.cost(CollectiveKind::kAllGather, all, kGiB));
  // Two nodes far apart cost what nodes 0 and 1 cost.
  EXPECT_EQ(big.cost(CollectiveKind::kSendRecv, std::vector<std::int64_t>{0, 1016}, kMiB),
            big.cost(CollectiveKind::kSendRecv, std::vector<std::int64_t>{0, 8}, kMiB));
  // The whole cluster's checks still apply.
  ClusterSpec huge = a100(1);
  huge.nodes = std::int64_t{1} << 30;
  EXPECT_THROW(CollectiveModel{huge}, UserError);
}

}  // namespace
}  // namespace zp::sim
