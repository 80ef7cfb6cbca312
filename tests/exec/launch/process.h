// Runs a program as a child process and collects its exit status and output: for the tests that
// start zeroplan and zeroplan-exec end to end.
#pragma once

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

extern char** environ;

namespace zp::testing {

namespace fs = std::filesystem;

struct Outcome {
  int status = -1;  // exit status, or 128 + signal
  std::string out;
  std::string err;
  double seconds = 0;
};

inline std::string slurp(const fs::path& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// Runs `program args...` with this process's environment minus the rank variables, plus `env`
// (which replaces a variable of the same name).
inline Outcome run(const std::string& program, const std::vector<std::string>& args,
                   const std::map<std::string, std::string>& env = {}) {
  const fs::path dir =
      fs::temp_directory_path() /
      ("zeroplan-exec-test-" + std::to_string(::getpid()) + "-" +
       std::to_string(std::chrono::steady_clock::now().time_since_epoch().count()));
  fs::create_directories(dir);
  const std::string out_path = (dir / "out").string(), err_path = (dir / "err").string();
  posix_spawn_file_actions_t files;
  posix_spawn_file_actions_init(&files);
  posix_spawn_file_actions_addopen(&files, 1, out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_addopen(&files, 2, err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);

  std::vector<std::string> argv_s{program};
  argv_s.insert(argv_s.end(), args.begin(), args.end());
  std::vector<std::string> env_s;
  for (char** e = environ; *e != nullptr; ++e) {
    const std::string entry(*e);
    const std::string name = entry.substr(0, entry.find('='));
    if (name == "RANK" || name == "WORLD_SIZE" || name == "LOCAL_RANK" || name == "MASTER_ADDR" ||
        name == "MASTER_PORT" || name.rfind("SLURM_", 0) == 0 ||
        name.rfind("TORCHELASTIC", 0) == 0 || env.count(name) > 0)
      continue;
    env_s.push_back(entry);
  }
  for (const auto& [k, v] : env)
    env_s.push_back(k + "=" + v);
  std::vector<char*> argv, envp;
  for (std::string& s : argv_s)
    argv.push_back(s.data());
  argv.push_back(nullptr);
  for (std::string& s : env_s)
    envp.push_back(s.data());
  envp.push_back(nullptr);

  Outcome r;
  const auto start = std::chrono::steady_clock::now();
  pid_t pid = 0;
  if (posix_spawn(&pid, program.c_str(), &files, nullptr, argv.data(), envp.data()) != 0) {
    ADD_FAILURE() << "could not start " << program;
    return r;
  }
  posix_spawn_file_actions_destroy(&files);
  int status = 0;
  ::waitpid(pid, &status, 0);
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  r.status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  r.out = slurp(out_path);
  r.err = slurp(err_path);
  fs::remove_all(dir);
  return r;
}

}  // namespace zp::testing
