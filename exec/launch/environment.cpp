#include "exec/launch/environment.h"

#include <charconv>
#include <cstdlib>

#include "core/util/error.h"

namespace zp::exec::launch {

namespace {

UserError env_error(ErrorKind kind, const std::string& name, const std::string& message) {
  return UserError(kind, SourceLocation{"", 0, 0, "environment variable " + name}, message);
}

int parse_int(const std::string& name, const std::string& value, int min, int max,
              const std::string& rule) {
  int out = 0;
  const char* end = value.data() + value.size();
  const auto [ptr, ec] = std::from_chars(value.data(), end, out);
  if (value.empty() || ec != std::errc() || ptr != end) {
    throw env_error(ErrorKind::kType, name, "'" + value + "' is not an integer");
  }
  if (out < min || out > max) throw env_error(ErrorKind::kValue, name, "'" + value + "': " + rule);
  return out;
}

}  // namespace

GetEnv process_environment() {
  return [](const std::string& name) -> std::optional<std::string> {
    const char* value = std::getenv(name.c_str());
    if (value == nullptr) return std::nullopt;
    return std::string(value);
  };
}

std::optional<RankEnvironment> read_rank_environment(const GetEnv& env) {
  const auto rank = env("RANK");
  const auto world = env("WORLD_SIZE");
  const bool torchrun = rank.has_value() || world.has_value();
  const bool slurm = !torchrun && env("SLURM_PROCID").has_value();
  if (!torchrun && !slurm) return std::nullopt;

  const std::string rank_name = torchrun ? "RANK" : "SLURM_PROCID";
  const std::string world_name = torchrun ? "WORLD_SIZE" : "SLURM_NTASKS";
  const std::string local_name = torchrun ? "LOCAL_RANK" : "SLURM_LOCALID";
  const auto require = [&](const std::string& name) {
    auto value = env(name);
    if (!value) {
      throw env_error(ErrorKind::kMissing, name,
                      "not set; a rank needs RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT (or "
                      "Slurm's SLURM_PROCID and SLURM_NTASKS with MASTER_ADDR and MASTER_PORT)");
    }
    return *value;
  };

  RankEnvironment out;
  out.source = torchrun ? "torchrun/DeepSpeed" : "Slurm";
  out.world_size = parse_int(world_name, require(world_name), 1, 1 << 20, "must be at least 1");
  out.rank = parse_int(rank_name, require(rank_name), 0, out.world_size - 1,
                       "must be in [0, " + std::to_string(out.world_size - 1) + "] since " +
                           world_name + " is " + std::to_string(out.world_size));
  if (const auto local = env(local_name)) {
    out.local_rank = parse_int(local_name, *local, 0, out.world_size - 1,
                               "must be in [0, " + std::to_string(out.world_size - 1) + "]");
  }
  // The ranks on this host: torchrun's LOCAL_WORLD_SIZE, Slurm's SLURM_NTASKS_PER_NODE.
  const std::string local_world_name = torchrun ? "LOCAL_WORLD_SIZE" : "SLURM_NTASKS_PER_NODE";
  if (const auto local_world = env(local_world_name)) {
    out.local_world_size =
        parse_int(local_world_name, *local_world, 1, out.world_size,
                  "must be in [1, " + std::to_string(out.world_size) + "] since " + world_name +
                      " is " + std::to_string(out.world_size));
  }
  out.master_addr = require("MASTER_ADDR");
  if (out.master_addr.empty()) {
    throw env_error(ErrorKind::kValue, "MASTER_ADDR", "is empty; set it to rank 0's host");
  }
  out.master_port = parse_int("MASTER_PORT", require("MASTER_PORT"), 1, 65535,
                              "must be a TCP port in [1, 65535]");
  if (const auto agent = env("TORCHELASTIC_USE_AGENT_STORE")) {
    out.agent_store = *agent == "True" || *agent == "true" || *agent == "1";
  }
  return out;
}

}  // namespace zp::exec::launch
