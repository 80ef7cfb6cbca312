#include "exec/launch/environment.h"

#include <gtest/gtest.h>

#include <map>

#include "core/util/error.h"

namespace zp::exec::launch {
namespace {

GetEnv env_of(std::map<std::string, std::string> vars) {
  return [vars = std::move(vars)](const std::string& name) -> std::optional<std::string> {
    const auto it = vars.find(name);
    if (it == vars.end()) return std::nullopt;
    return it->second;
  };
}

UserError error_of(std::map<std::string, std::string> vars) {
  try {
    read_rank_environment(env_of(std::move(vars)));
  } catch (const UserError& e) {
    return e;
  }
  ADD_FAILURE() << "no error";
  return UserError(ErrorKind::kValue, {}, "");
}

const std::map<std::string, std::string> kTorchrun{{"RANK", "3"},
                                                   {"WORLD_SIZE", "8"},
                                                   {"LOCAL_RANK", "1"},
                                                   {"MASTER_ADDR", "node0"},
                                                   {"MASTER_PORT", "29500"}};

TEST(RankEnvironment, ReadsTheTorchrunVariables) {
  const auto env = read_rank_environment(env_of(kTorchrun));
  ASSERT_TRUE(env.has_value());
  EXPECT_EQ(env->rank, 3);
  EXPECT_EQ(env->world_size, 8);
  EXPECT_EQ(env->local_rank, 1);
  EXPECT_EQ(env->master_addr, "node0");
  EXPECT_EQ(env->master_port, 29500);
  EXPECT_FALSE(env->agent_store);
}

TEST(RankEnvironment, NoVariablesMeansNotLaunchedAsARank) {
  EXPECT_FALSE(read_rank_environment(env_of({{"MASTER_PORT", "1"}})).has_value());
}

TEST(RankEnvironment, FallsBackToSlurmWhenRankAndWorldSizeAreAbsent) {
  const auto env = read_rank_environment(env_of({{"SLURM_PROCID", "5"},
                                                 {"SLURM_NTASKS", "6"},
                                                 {"SLURM_LOCALID", "2"},
                                                 {"MASTER_ADDR", "n1"},
                                                 {"MASTER_PORT", "1234"}}));
  ASSERT_TRUE(env.has_value());
  EXPECT_EQ(env->rank, 5);
  EXPECT_EQ(env->world_size, 6);
  EXPECT_EQ(env->local_rank, 2);
  EXPECT_EQ(env->source, "Slurm");
}

TEST(RankEnvironment, TorchrunVariablesWinOverSlurms) {
  auto vars = kTorchrun;
  vars["SLURM_PROCID"] = "0";
  vars["SLURM_NTASKS"] = "1";
  EXPECT_EQ(read_rank_environment(env_of(vars))->rank, 3);
}

TEST(RankEnvironment, TheLauncherHostsTheStoreWhenTorchrunSaysSo) {
  auto vars = kTorchrun;
  vars["TORCHELASTIC_USE_AGENT_STORE"] = "True";
  EXPECT_TRUE(read_rank_environment(env_of(vars))->agent_store);
  vars["TORCHELASTIC_USE_AGENT_STORE"] = "False";
  EXPECT_FALSE(read_rank_environment(env_of(vars))->agent_store);
}

TEST(RankEnvironment, LocalRankIsOptional) {
  auto vars = kTorchrun;
  vars.erase("LOCAL_RANK");
  EXPECT_EQ(read_rank_environment(env_of(vars))->local_rank, 0);
}

TEST(RankEnvironment, TheRanksOnThisHostComeFromTheLauncher) {
  auto vars = kTorchrun;
  EXPECT_EQ(read_rank_environment(env_of(vars))->local_world_size, 1) << "unknown: this rank";
  vars["LOCAL_WORLD_SIZE"] = "4";
  EXPECT_EQ(read_rank_environment(env_of(vars))->local_world_size, 4);
  vars["LOCAL_WORLD_SIZE"] = "9";  // WORLD_SIZE is 8
  EXPECT_EQ(error_of(vars).where().key_path, "environment variable LOCAL_WORLD_SIZE");
  const auto slurm = read_rank_environment(env_of({{"SLURM_PROCID", "0"},
                                                   {"SLURM_NTASKS", "6"},
                                                   {"SLURM_NTASKS_PER_NODE", "3"},
                                                   {"MASTER_ADDR", "n1"},
                                                   {"MASTER_PORT", "1234"}}));
  EXPECT_EQ(slurm->local_world_size, 3);
}

TEST(RankEnvironment, ANonIntegerIsATypeErrorNamingTheVariable) {
  auto vars = kTorchrun;
  vars["RANK"] = "3x";
  const UserError e = error_of(vars);
  EXPECT_EQ(e.kind(), ErrorKind::kType);
  EXPECT_EQ(e.where().key_path, "environment variable RANK");
  EXPECT_NE(e.message().find("'3x'"), std::string::npos);
}

TEST(RankEnvironment, ARankOutsideTheWorldIsAValueError) {
  auto vars = kTorchrun;
  vars["RANK"] = "8";  // WORLD_SIZE is 8: ranks 0..7
  const UserError e = error_of(vars);
  EXPECT_EQ(e.kind(), ErrorKind::kValue);
  EXPECT_EQ(e.where().key_path, "environment variable RANK");
  EXPECT_NE(e.message().find("[0, 7]"), std::string::npos) << e.what();
  vars["RANK"] = "7";
  EXPECT_NO_THROW(read_rank_environment(env_of(vars)));
}

TEST(RankEnvironment, WorldSizeMustBePositive) {
  auto vars = kTorchrun;
  vars["WORLD_SIZE"] = "0";
  EXPECT_EQ(error_of(vars).where().key_path, "environment variable WORLD_SIZE");
}

TEST(RankEnvironment, APortOutsideTcpsRangeIsAValueError) {
  auto vars = kTorchrun;
  vars["MASTER_PORT"] = "65536";
  EXPECT_EQ(error_of(vars).where().key_path, "environment variable MASTER_PORT");
  vars["MASTER_PORT"] = "65535";
  EXPECT_NO_THROW(read_rank_environment(env_of(vars)));
}

TEST(RankEnvironment, MissingVariablesAreNamed) {
  for (const char* name : {"WORLD_SIZE", "RANK", "MASTER_ADDR", "MASTER_PORT"}) {
    auto vars = kTorchrun;
    vars.erase(name);
    const UserError e = error_of(vars);
    EXPECT_EQ(e.kind(), ErrorKind::kMissing) << name;
    EXPECT_EQ(e.where().key_path, std::string("environment variable ") + name);
  }
  // Under Slurm the rendezvous address is still the user's to give.
  const UserError e = error_of({{"SLURM_PROCID", "0"}, {"SLURM_NTASKS", "2"}});
  EXPECT_EQ(e.where().key_path, "environment variable MASTER_ADDR");
}

}  // namespace
}  // namespace zp::exec::launch
