#include "sim/engine/simulator.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "core/util/error.h"

namespace zp::sim {
namespace {

TEST(Simulator, RunsInTimeOrderAndTiesInSchedulingOrder) {
  Simulator s;
  std::vector<std::string> log;
  s.schedule(20, [&] { log.push_back("b@" + std::to_string(s.now())); });
  s.schedule(10, [&] { log.push_back("a@" + std::to_string(s.now())); });
  s.schedule(20, [&] { log.push_back("c@" + std::to_string(s.now())); });
  s.schedule(0, [&] {
    log.push_back("z@" + std::to_string(s.now()));
    s.schedule(10,
               [&] { log.push_back("d@" + std::to_string(s.now())); });  // after a: scheduled later
  });
  EXPECT_EQ(s.run(), 5u);
  EXPECT_EQ(log, (std::vector<std::string>{"z@0", "a@10", "d@10", "b@20", "c@20"}));
  EXPECT_EQ(s.now(), 20);
}

TEST(Simulator, CancelledEventsAreSkipped) {
  Simulator s;
  int ran = 0;
  const auto id = s.schedule(5, [&] { ran += 1; });
  s.schedule(6, [&] { ran += 10; });
  s.cancel(id);
  s.cancel(id);
  EXPECT_EQ(s.pending(), 1u);
  EXPECT_EQ(s.run(), 1u);
  EXPECT_EQ(ran, 10);
}

TEST(Simulator, RunUntilAndStop) {
  Simulator s;
  int ran = 0;
  s.schedule(5, [&] { ++ran; });
  s.schedule(15, [&] { ++ran; });
  EXPECT_EQ(s.run_until(10), 1u);
  EXPECT_EQ(s.now(), 10);
  s.schedule(1, [&] { s.stop(); });
  EXPECT_EQ(s.run(), 1u);
  EXPECT_EQ(ran, 1);
  EXPECT_EQ(s.pending(), 1u);
}

TEST(Simulator, TheClockNeverGoesBack) {
  Simulator s;
  s.schedule(10, [] {});
  s.run();
  EXPECT_THROW(s.schedule(-1, [] {}), InternalError);
  EXPECT_THROW(s.schedule_at(5, [] {}), InternalError);
}

}  // namespace
}  // namespace zp::sim
