// Runs the zeroplan binary as a user does, from the source tree, and captures what it prints.
#pragma once

#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

namespace zp::cli::testing {

inline const std::filesystem::path kSource = ZEROPLAN_SOURCE_DIR;
inline const std::filesystem::path kBinary =
    std::filesystem::path(ZEROPLAN_BINARY_DIR) / "zeroplan";

struct Result {
  int status = -1;
  std::string out;
  std::string err;
};

inline std::string Slurp(const std::filesystem::path& p) {
  std::ifstream in(p);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// `args` as a shell would split them. CTest runs each test as its own process, in parallel: the
// capture files are per process.
inline Result RunZeroplan(const std::string& args) {
  const auto dir = std::filesystem::temp_directory_path();
  const std::string stem = "zeroplan_cli_test." + std::to_string(::getpid());
  const auto out = dir / (stem + ".out");
  const auto err = dir / (stem + ".err");
  const std::string command = "cd '" + kSource.string() + "' && '" + kBinary.string() + "' " +
                              args + " >'" + out.string() + "' 2>'" + err.string() + "'";
  const int raw = std::system(command.c_str());
  Result r;
  r.status = WIFEXITED(raw) ? WEXITSTATUS(raw) : -1;
  r.out = Slurp(out);
  r.err = Slurp(err);
  std::filesystem::remove(out);
  std::filesystem::remove(err);
  return r;
}

inline int Lines(const std::string& s) {
  return static_cast<int>(std::count(s.begin(), s.end(), '\n'));
}

}  // namespace zp::cli::testing
