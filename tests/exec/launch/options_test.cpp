#include "exec/launch/options.h"

#include <gtest/gtest.h>

#include "core/util/error.h"

namespace zp::exec::launch {
namespace {

std::string key_of(ExecOptions o) {
  try {
    validate(o);
  } catch (const UserError& e) {
    return e.where().key_path;
  }
  return "";
}

ExecOptions selftest() {
  ExecOptions o;
  o.selftest = true;
  return o;
}

TEST(ExecOptions, RanksGetTheLaunchersArgumentsWithoutNproc) {
  EXPECT_EQ(rank_arguments({"--nproc", "4", "run.yaml", "--timeout", "9"}),
            (std::vector<std::string>{"run.yaml", "--timeout", "9"}));
  EXPECT_EQ(rank_arguments({"--selftest", "--nproc=2"}), (std::vector<std::string>{"--selftest"}));
}

TEST(ExecOptions, FaultsNameAKindAndARank) {
  EXPECT_EQ(parse_fault("").kind, Fault::Kind::kNone);
  const Fault f = parse_fault("hang@3");
  EXPECT_EQ(f.kind, Fault::Kind::kHang);
  EXPECT_EQ(f.rank, 3);
  EXPECT_EQ(parse_fault("exit@0").kind, Fault::Kind::kExit);
  for (const char* bad : {"exit", "crash@1", "exit@", "exit@-1", "exit@1x"})
    EXPECT_THROW(parse_fault(bad), UserError) << bad;
}

TEST(ExecOptions, TheBackendFollowsTheDevice) {
  ExecOptions o = selftest();
  validate(o);
  EXPECT_EQ(o.backend, "gloo");
  o = selftest();
  o.device = "cuda";
  validate(o);
  EXPECT_EQ(o.backend, "nccl");
}

TEST(ExecOptions, RanksPollWhereEachHasItsCores) {
  // auto: this host's ranks times their intra-op threads against its cores.
  EXPECT_TRUE(polls("auto", 2, 1, 2));
  EXPECT_FALSE(polls("auto", 4, 1, 2));
  EXPECT_FALSE(polls("auto", 2, 2, 2));
  EXPECT_TRUE(polls("auto", 2, 4, 8));
  EXPECT_TRUE(polls("poll", 4, 1, 2)) << "asked for";
  EXPECT_FALSE(polls("sleep", 1, 1, 8)) << "asked for";
}

TEST(ExecOptions, BadValuesNameTheirFlag) {
  ExecOptions o = selftest();
  o.nproc = -1;
  EXPECT_EQ(key_of(o), "--nproc");
  o = selftest();
  o.master_port = 70000;
  EXPECT_EQ(key_of(o), "--master-port");
  o = selftest();
  o.timeout_s = 0.5;
  EXPECT_EQ(key_of(o), "--timeout");
  o.timeout_s = 1;
  EXPECT_EQ(key_of(o), "");
  o = selftest();
  o.device = "tpu";
  EXPECT_EQ(key_of(o), "--device");
  o = selftest();
  o.backend = "nccl";  // on the CPU
  EXPECT_EQ(key_of(o), "--backend");
  o = selftest();
  o.nproc = 2;
  o.selftest_fault = "exit@2";
  EXPECT_EQ(key_of(o), "--selftest-fault");
  o.selftest_fault = "exit@1";
  EXPECT_EQ(key_of(o), "");
  o = selftest();
  o.threads = -1;
  EXPECT_EQ(key_of(o), "--threads");
  o.threads = 0;  // the default: the launcher's share of the cores
  EXPECT_EQ(key_of(o), "");
  o = selftest();
  o.wait = "spin";
  EXPECT_EQ(key_of(o), "--wait");
  o.wait = "sleep";
  EXPECT_EQ(key_of(o), "");
  EXPECT_EQ(ExecOptions{}.wait, "auto");
  EXPECT_EQ(key_of(ExecOptions{}), "RUN.yaml") << "nothing to run";
}

}  // namespace
}  // namespace zp::exec::launch
