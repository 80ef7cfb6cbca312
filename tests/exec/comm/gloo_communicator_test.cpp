#include "exec/comm/gloo_communicator.h"

#include <gtest/gtest.h>

#include <time.h>

#include <atomic>
#include <functional>
#include <numeric>
#include <set>
#include <thread>

#include "core/util/error.h"
#include "exec/comm/selftest.h"
#include "tests/exec/comm/rank_threads.h"

namespace zp::exec::comm {
namespace {

using testing::run_ranks;

class GlooCollectives : public ::testing::TestWithParam<int> {};

TEST_P(GlooCollectives, AllGatherPutsRankRsPartitionAtOffsetRTimesItsSize) {
  const int w = GetParam();
  run_ranks(w, [w](Communicator& comm) {
    const int r = comm.rank();
    std::vector<float> part{10.f * r, 10.f * r + 1, 10.f * r + 2};
    std::vector<float> flat(static_cast<std::size_t>(3 * w), -1.f);
    comm.all_gather(host_buffer(part.data(), 3), host_buffer(flat.data(), 3 * w))->wait();
    std::vector<float> want;
    for (int k = 0; k < w; ++k)
      for (int i = 0; i < 3; ++i)
        want.push_back(10.f * k + i);
    EXPECT_EQ(flat, want) << "rank " << r;
  });
}

TEST_P(GlooCollectives, ReduceScatterLeavesEachRankItsSummedChunkOfAPaddedBuffer) {
  // 7 elements padded to a multiple of the ranks, as ZeRO-3 pads a partitioned gradient.
  const int w = GetParam();
  const int chunk = (7 + w - 1) / w;
  run_ranks(w, [w, chunk](Communicator& comm) {
    const int r = comm.rank();
    std::vector<float> in(static_cast<std::size_t>(chunk * w), 0.f);
    for (int j = 0; j < 7; ++j)
      in[static_cast<std::size_t>(j)] = static_cast<float>((r + 1) * (j + 1));
    const std::vector<float> kept = in;
    std::vector<float> out(static_cast<std::size_t>(chunk), -1.f);
    comm.reduce_scatter(host_buffer(in.data(), chunk * w), host_buffer(out.data(), chunk))->wait();
    // Sum over ranks of (k + 1) (j + 1) is w (w + 1) / 2 (j + 1); padding stays 0.
    for (int i = 0; i < chunk; ++i) {
      const int j = r * chunk + i;
      const float want = j < 7 ? static_cast<float>(w * (w + 1) / 2 * (j + 1)) : 0.f;
      EXPECT_EQ(out[static_cast<std::size_t>(i)], want) << "rank " << r << " element " << i;
    }
    EXPECT_EQ(in, kept) << "the input is not modified";
  });
}

TEST_P(GlooCollectives, ReduceScatterInPlaceLeavesTheSumInThisRanksChunkOfTheInput) {
  // DeepSpeed's reduce_scatter_coalesced: the output is a view of the flat input.
  const int w = GetParam();
  run_ranks(w, [w](Communicator& comm) {
    const int r = comm.rank();
    std::vector<float> flat(static_cast<std::size_t>(3 * w));
    for (std::size_t j = 0; j < flat.size(); ++j)
      flat[j] = static_cast<float>((r + 1) * (static_cast<int>(j) + 1));
    const Buffer in = host_buffer(flat.data(), 3 * w);
    comm.reduce_scatter(in, in.slice(3 * r, 3))->wait();
    for (int i = 0; i < 3; ++i) {
      const int j = 3 * r + i;
      EXPECT_EQ(flat[static_cast<std::size_t>(j)], static_cast<float>(w * (w + 1) / 2 * (j + 1)))
          << "rank " << r << " element " << i;
    }
  });
}

TEST_P(GlooCollectives, ReduceScatterRefusesAnOutputThatOverlapsAnotherChunk) {
  run_ranks(GetParam(), [](Communicator& comm) {
    std::vector<float> flat(static_cast<std::size_t>(2 * comm.size()), 1.f);
    const Buffer in = host_buffer(flat.data(), 2 * comm.size());
    const int other = (comm.rank() + 1) % comm.size();
    EXPECT_THROW(comm.reduce_scatter(in, in.slice(2 * other, 2)), InternalError);
  });
}

TEST_P(GlooCollectives, ReduceScatterMaxTakesTheLargestContribution) {
  const int w = GetParam();
  run_ranks(w, [w](Communicator& comm) {
    const int r = comm.rank();
    // Rank k puts 100 + j in its own chunk (j = 2k, 2k + 1) and -k everywhere else.
    std::vector<float> in(static_cast<std::size_t>(2 * w));
    for (std::size_t j = 0; j < in.size(); ++j)
      in[j] = static_cast<int>(j) / 2 == r ? 100.f + static_cast<float>(j) : static_cast<float>(-r);
    std::vector<float> out(2);
    comm.reduce_scatter(host_buffer(in.data(), 2 * w), host_buffer(out.data(), 2), ReduceOp::kMax)
        ->wait();
    EXPECT_EQ(out, (std::vector<float>{100.f + 2 * r, 101.f + 2 * r})) << "rank " << r;
  });
}

TEST_P(GlooCollectives, AllReduceSumsAndTakesMinInPlace) {
  const int w = GetParam();
  run_ranks(w, [w](Communicator& comm) {
    const int r = comm.rank();
    std::vector<double> sum{1.0 * r, 2.0, 3.0 + r};
    std::vector<std::int64_t> min{r + 5, 7 - r};
    auto a = comm.all_reduce(host_buffer(sum.data(), 3));
    auto b = comm.all_reduce(host_buffer(min.data(), 2), ReduceOp::kMin);
    a->wait();
    b->wait();
    const double ranks = w * (w - 1) / 2.0;
    EXPECT_EQ(sum, (std::vector<double>{ranks, 2.0 * w, 3.0 * w + ranks}));
    EXPECT_EQ(min, (std::vector<std::int64_t>{5, 7 - (w - 1)}));
  });
}

TEST_P(GlooCollectives, BroadcastCopiesTheRootsBufferFromEveryRoot) {
  const int w = GetParam();
  run_ranks(w, [w](Communicator& comm) {
    for (int root = 0; root < w; ++root) {
      std::vector<std::int32_t> data(5, comm.rank() == root ? 100 + root : -1);
      comm.broadcast(host_buffer(data.data(), 5), root)->wait();
      EXPECT_EQ(data, std::vector<std::int32_t>(5, 100 + root)) << "root " << root;
    }
  });
}

TEST_P(GlooCollectives, SendAndRecvPassAMessageAroundTheRing) {
  const int w = GetParam();
  run_ranks(w, [w](Communicator& comm) {
    const int r = comm.rank();
    std::vector<float> mine(4, static_cast<float>(r));
    std::vector<float> got(4, -1.f);
    auto recv = comm.recv(host_buffer(got.data(), 4), (r + w - 1) % w, 3);
    auto send = comm.send(host_buffer(mine.data(), 4), (r + 1) % w, 3);
    send->wait();
    recv->wait();
    EXPECT_EQ(got, std::vector<float>(4, static_cast<float>((r + w - 1) % w)));
  });
}

TEST_P(GlooCollectives, RecordsEachLogicalOperationOnceWithItsWholeBuffer) {
  const int w = GetParam();
  run_ranks(w, [w](Communicator& comm) {
    std::vector<float> part(5), flat(static_cast<std::size_t>(5 * w)), chunk(5);
    std::vector<double> one(3);
    comm.all_gather(host_buffer(part.data(), 5), host_buffer(flat.data(), 5 * w), "gather 1")
        ->wait();
    comm.reduce_scatter(host_buffer(flat.data(), 5 * w), host_buffer(chunk.data(), 5),
                        ReduceOp::kSum, "bucket 0")
        ->wait();
    comm.all_reduce(host_buffer(one.data(), 3), ReduceOp::kSum, "norm")->wait();
    comm.broadcast(host_buffer(one.data(), 3), 0)->wait();
    comm.barrier();
    const std::vector<OpRecord> records = comm.log().records();
    ASSERT_EQ(records.size(), 5u);
    // All-gather: the gathered buffer; reduce-scatter: its whole input, not the all-reduce and
    // the copy it is built from; all-reduce and broadcast: their buffer.
    EXPECT_EQ(records[0].kind, CommKind::kAllGather);
    EXPECT_EQ(records[0].bytes, 4 * 5 * w);
    EXPECT_EQ(records[0].label, "gather 1");
    EXPECT_EQ(records[1].kind, CommKind::kReduceScatter);
    EXPECT_EQ(records[1].bytes, 4 * 5 * w);
    EXPECT_EQ(records[1].label, "bucket 0");
    EXPECT_EQ(records[2].kind, CommKind::kAllReduce);
    EXPECT_EQ(records[2].bytes, 8 * 3);
    EXPECT_EQ(records[3].kind, CommKind::kBroadcast);
    EXPECT_EQ(records[3].peer, 0);
    EXPECT_EQ(records[4].kind, CommKind::kBarrier);
    EXPECT_EQ(records[4].bytes, 0);
    for (std::size_t i = 0; i < records.size(); ++i) {
      EXPECT_EQ(records[i].seq, static_cast<std::int64_t>(i));
      EXPECT_LE(records[i].start_ns, records[i].end_ns);
      if (i > 0) {
        EXPECT_LE(records[i - 1].start_ns, records[i].start_ns);
      }
    }
  });
}

TEST_P(GlooCollectives, SelftestPassesOnAnOddSize) {
  const int w = GetParam();
  run_ranks(w, [](Communicator& comm) {
    SelftestOptions options;
    options.numel = 1001;  // padded to 1002 on 2 ranks, 1004 on 4
    options.iterations = 1;
    const auto memory = host_memory();
    const std::vector<OpRecord> records = run_selftest(comm, *memory, options);
    std::set<CommKind> kinds;
    for (const OpRecord& r : records)
      kinds.insert(r.kind);
    EXPECT_EQ(kinds.size(), 7u) << "every kind of operation ran";
    EXPECT_EQ(records.front().bytes, 4 * ((1001 + comm.size() - 1) / comm.size()) * comm.size());
  });
}

INSTANTIATE_TEST_SUITE_P(Ranks, GlooCollectives, ::testing::Values(2, 4),
                         [](const ::testing::TestParamInfo<int>& param) {
                           return std::to_string(param.param) + "ranks";
                         });

TEST(GlooFaults, APeerThatLeavesMakesTheOtherFailWithinTheTimeout) {
  const auto timeout = std::chrono::seconds(10);
  const auto server = testing::host_store(timeout);
  std::atomic<bool> left{false};
  std::string error;
  const auto rank = [&](int r) {
    const auto store = testing::client_store(server->port(), timeout);
    GroupSpec group;
    group.rank = r;
    group.size = 2;
    group.timeout = timeout;
    auto comm = make_gloo_communicator(store, group, GlooOptions{"127.0.0.1", 1});
    std::vector<float> x(4, 1.f);
    comm->all_reduce(host_buffer(x.data(), 4))->wait();
    if (r == 1) {
      comm.reset();  // closes its connections, as an exiting process does
      left = true;
      return;
    }
    while (!left)
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    try {
      comm->all_reduce(host_buffer(x.data(), 4), ReduceOp::kSum, "after")->wait();
    } catch (const CommError& e) {
      error = e.what();
    }
  };
  std::thread one(rank, 1);
  rank(0);
  one.join();
  EXPECT_NE(error.find("rank 0: all_reduce 'after' failed"), std::string::npos) << error;
}

TEST(GlooFaults, AMissingPeerIsReportedAfterTheTimeout) {
  const auto timeout = std::chrono::milliseconds(1500);
  const auto server = testing::host_store(timeout);
  GroupSpec group;
  group.size = 2;
  group.timeout = timeout;
  try {
    make_gloo_communicator(server, group, GlooOptions{"127.0.0.1", 1});
    FAIL() << "joined a group whose other rank never came";
  } catch (const CommError& e) {
    EXPECT_NE(std::string(e.what()).find("the 2 ranks of group 'world' did not all join"),
              std::string::npos)
        << e.what();
  }
}

// Ranks on threads whose communicators poll for `poll` before they sleep.
void run_polling_ranks(int world, std::chrono::microseconds poll,
                       const std::function<void(Communicator&)>& body,
                       std::chrono::milliseconds timeout = std::chrono::seconds(30)) {
  GlooOptions options;
  options.threads = 1;
  options.poll_for = poll;
  run_ranks(world, body, timeout, options);
}

// CPU time of the calling thread (what a wait that polls spends, and one that sleeps does not).
std::chrono::nanoseconds thread_cpu_time() {
  timespec t{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return std::chrono::seconds(t.tv_sec) + std::chrono::nanoseconds(t.tv_nsec);
}

class GlooPollingWaits : public ::testing::TestWithParam<int> {};

TEST_P(GlooPollingWaits, EveryKindOfOperationCompletesWithItsResult) {
  const int w = GetParam();
  run_polling_ranks(w, std::chrono::milliseconds(3), [w](Communicator& comm) {
    const int r = comm.rank();
    std::vector<float> part{static_cast<float>(r)};
    std::vector<float> flat(static_cast<std::size_t>(w), -1.f);
    comm.all_gather(host_buffer(part.data(), 1), host_buffer(flat.data(), w))->wait();
    std::vector<float> ranks(static_cast<std::size_t>(w));
    std::iota(ranks.begin(), ranks.end(), 0.f);
    EXPECT_EQ(flat, ranks) << "all-gather, rank " << r;

    std::vector<float> grads(static_cast<std::size_t>(w), static_cast<float>(r + 1));
    std::vector<float> mine(1, -1.f);
    comm.reduce_scatter(host_buffer(grads.data(), w), host_buffer(mine.data(), 1))->wait();
    EXPECT_EQ(mine[0], static_cast<float>(w * (w + 1) / 2)) << "reduce-scatter, rank " << r;

    std::vector<float> x{static_cast<float>(r)};
    comm.all_reduce(host_buffer(x.data(), 1), ReduceOp::kMax)->wait();
    EXPECT_EQ(x[0], static_cast<float>(w - 1)) << "all-reduce, rank " << r;

    std::vector<float> b{r == 1 ? 7.f : 0.f};
    comm.broadcast(host_buffer(b.data(), 1), 1)->wait();
    EXPECT_EQ(b[0], 7.f) << "broadcast, rank " << r;

    // Around the ring, each send waited on before the receive.
    std::vector<float> out{100.f + r};
    std::vector<float> in{-1.f};
    auto recv = comm.recv(host_buffer(in.data(), 1), (r + w - 1) % w, 3);
    comm.send(host_buffer(out.data(), 1), (r + 1) % w, 3)->wait();
    recv->wait();
    EXPECT_EQ(in[0], 100.f + static_cast<float>((r + w - 1) % w)) << "recv, rank " << r;
    EXPECT_EQ(comm.log().records().size(), 6u) << "each operation recorded once it was waited on";
  });
}

TEST_P(GlooPollingWaits, ACollectivesWaitPollsForItsSpanThenSleeps) {
  // Rank 1 holds its message and its collective back for 300 ms. Rank 0's collective polls for
  // `poll`, so the CPU time its wait takes is about the poll's span, whatever the wait's length;
  // its receive sleeps either way (c10d waits on one only by blocking).
  const int w = GetParam();
  const auto hold = std::chrono::milliseconds(300);
  for (const auto poll : {std::chrono::microseconds(3000), std::chrono::microseconds(60'000'000)}) {
    std::chrono::nanoseconds recv_cpu{}, collective_cpu{};
    run_polling_ranks(w, poll, [&](Communicator& comm) {
      std::vector<float> x(4, 1.f);
      if (comm.rank() == 1) {
        std::this_thread::sleep_for(hold);
        comm.send(host_buffer(x.data(), 4), 0, 5)->wait();
        std::this_thread::sleep_for(hold);
      } else if (comm.rank() == 0) {
        auto recv = comm.recv(host_buffer(x.data(), 4), 1, 5);
        const auto start = thread_cpu_time();
        recv->wait();
        recv_cpu = thread_cpu_time() - start;
      }
      auto sum = comm.all_reduce(host_buffer(x.data(), 4));
      const auto start = thread_cpu_time();
      sum->wait();
      if (comm.rank() == 0) collective_cpu = thread_cpu_time() - start;
    });
    EXPECT_LT(recv_cpu, hold / 3) << "a receive's wait sleeps";
    if (poll < std::chrono::milliseconds(10)) {
      EXPECT_LT(collective_cpu, hold / 3) << "a collective's wait slept after its poll";
    } else {
      // A thread that yields between polls gets little of a core that busy threads share (a
      // few microseconds a time slice of theirs), so no share of the hold can be required; but
      // over the hold it still runs many times what one wake-up from sleep costs.
      EXPECT_GT(collective_cpu, 4 * recv_cpu) << "a collective's wait polled";
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Ranks, GlooPollingWaits, ::testing::Values(2, 4),
                         [](const ::testing::TestParamInfo<int>& param) {
                           return std::to_string(param.param) + "ranks";
                         });

TEST(GlooPollingWaits, AMessageThatNeverComesFailsTheWaitWithinTheTimeout) {
  std::string error;
  std::atomic<bool> failed{false};
  run_polling_ranks(
      2, std::chrono::milliseconds(3),
      [&](Communicator& comm) {
        if (comm.rank() == 1) {
          while (!failed)  // stays in the group, sending nothing
            std::this_thread::sleep_for(std::chrono::milliseconds(5));
          return;
        }
        std::vector<float> x(4);
        try {
          comm.recv(host_buffer(x.data(), 4), 1, 9, "never")->wait();
        } catch (const CommError& e) {
          error = e.what();
        }
        failed = true;
      },
      std::chrono::milliseconds(1500));
  EXPECT_NE(error.find("rank 0: recv 'never' failed"), std::string::npos) << error;
}

TEST(Store, HostingOnAPortInUseIsAUserErrorNamingThePort) {
  const auto first = testing::host_store(std::chrono::seconds(5));
  Store::Options o;
  o.host_store = true;
  o.port = first->port();
  o.port_key = "--master-port";
  try {
    Store::open(o);
    FAIL() << "hosted a second store on port " << o.port;
  } catch (const UserError& e) {
    EXPECT_EQ(e.where().key_path, "--master-port");
    EXPECT_NE(e.message().find(std::to_string(o.port) + " is already in use"), std::string::npos)
        << e.what();
  }
}

TEST(Store, AStoreNobodyHostsIsACommErrorAfterTheTimeout) {
  // A port that was free a moment ago, with nothing listening on it.
  int port = 0;
  {
    const auto probe = testing::host_store(std::chrono::seconds(5));
    port = probe->port();
  }
  try {
    testing::client_store(port, std::chrono::seconds(1));
    FAIL() << "reached a store on port " << port;

  } catch (const CommError& e) {
    EXPECT_NE(std::string(e.what()).find("could not reach the rendezvous store"), std::string::npos)
        << e.what();
  }
}

TEST(Store, KeysAreSharedBetweenTheHostAndItsClients) {
  const auto server = testing::host_store(std::chrono::seconds(5));
  const auto client = testing::client_store(server->port(), std::chrono::seconds(5));
  server->set("a", "xyz");
  EXPECT_EQ(client->get("a"), "xyz");
  EXPECT_EQ(client->add("n", 2), 2);
  EXPECT_EQ(server->add("n", 3), 5);
}

}  // namespace
}  // namespace zp::exec::comm
