#include "exec/runtime/host_cpu.h"

#include <gtest/gtest.h>

namespace zp::exec {
namespace {

TEST(HostCpu, ParsesTheAggregateLineIntoBusyIdleAndSteal) {
  // user nice system idle iowait irq softirq steal guest guest_nice
  const auto t = parse_proc_stat("cpu  100 2 30 400 5 6 7 80 50 0\ncpu0 1 2 3 4 5 6 7 8 9 0\n");
  ASSERT_TRUE(t.has_value());
  EXPECT_EQ(t->busy, 100 + 2 + 30 + 6 + 7);  // guest is inside user already
  EXPECT_EQ(t->idle, 400 + 5);
  EXPECT_EQ(t->steal, 80);
}

TEST(HostCpu, AKernelWithoutAStealColumnStealsNothing) {
  const auto t = parse_proc_stat("cpu 10 0 10 80 0 0 0\n");
  ASSERT_TRUE(t.has_value());
  EXPECT_EQ(t->steal, 0);
  EXPECT_EQ(t->total(), 100);
}

TEST(HostCpu, RefusesWhatIsNotTheAggregateLine) {
  EXPECT_FALSE(parse_proc_stat("cpu0 1 2 3 4 5 6 7 8\n").has_value());
  EXPECT_FALSE(parse_proc_stat("cpu 1 2 3\n").has_value());
  EXPECT_FALSE(parse_proc_stat("cpu 1 2 x 4 5 6 7 8\n").has_value());
  EXPECT_FALSE(parse_proc_stat("").has_value());
}

TEST(HostCpu, StealShareIsTheStolenPartOfTheTimeBetweenReadings) {
  const HostCpuTimes before{.busy = 1000, .idle = 500, .steal = 100};
  const HostCpuTimes after{.busy = 1150, .idle = 520, .steal = 130};  // 200 ticks, 30 stolen
  EXPECT_DOUBLE_EQ(*steal_share(before, after), 0.15);
  EXPECT_FALSE(steal_share(before, before).has_value());  // no time passed
  EXPECT_FALSE(steal_share(std::nullopt, after).has_value());
}

TEST(HostCpu, ReadsThisHostWhereItHasProcStat) {
  const auto now = read_host_cpu_times();
#ifdef __linux__
  ASSERT_TRUE(now.has_value());
  EXPECT_GT(now->total(), 0);
#else
  EXPECT_FALSE(now.has_value());
#endif
}

}  // namespace
}  // namespace zp::exec
