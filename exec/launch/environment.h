// Where this process sits in a job, read from the environment that launchers set: torchrun and
// the DeepSpeed launcher (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT), Slurm's srun
// (SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID when RANK and WORLD_SIZE are absent; MASTER_ADDR
// and MASTER_PORT must still be set), and zeroplan-exec --nproc (the torchrun variables, plus
// TORCHELASTIC_USE_AGENT_STORE=True, as torchrun sets it when its agent hosts the store).
#pragma once

#include <functional>
#include <optional>
#include <string>

namespace zp::exec::launch {

struct RankEnvironment {
  int rank = 0;
  int world_size = 1;
  int local_rank = 0;
  int local_world_size = 1;  // the ranks on this host, where the launcher says
  std::string master_addr;
  int master_port = 0;
  // The launcher hosts the rendezvous store; otherwise rank 0 does.
  bool agent_store = false;
  std::string source;  // "torchrun/DeepSpeed" or "Slurm": which variables were read
};

using GetEnv = std::function<std::optional<std::string>(const std::string& name)>;
// The process's environment.
GetEnv process_environment();

// Reads and checks the variables; UserError naming the variable, its value and the rule.
// nullopt when none of RANK, WORLD_SIZE, SLURM_PROCID is set (this process was not launched as a
// rank).
std::optional<RankEnvironment> read_rank_environment(const GetEnv& env);

}  // namespace zp::exec::launch
