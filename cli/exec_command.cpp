// `zeroplan exec`: runs the zeroplan-exec program that sits beside zeroplan, with the same
// arguments. A program of its own keeps libtorch, CUDA and NCCL out of zeroplan's other commands.
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "core/util/error.h"

namespace zp::cli {

namespace {

std::filesystem::path exec_program() {
  char self[PATH_MAX];
  const ssize_t n = ::readlink("/proc/self/exe", self, sizeof(self) - 1);
  ZP_CHECK(n > 0, "readlink /proc/self/exe: ", std::strerror(errno));
  self[n] = '\0';
  return std::filesystem::path(self).parent_path() / "zeroplan-exec";
}

}  // namespace

void add_exec_command(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "exec",
      "Run on real hardware with libtorch (Gloo on CPU, NCCL on CUDA); 'zeroplan exec --help' "
      "lists its options.");
  // Every argument, --help included, belongs to zeroplan-exec.
  cmd->set_help_flag();
  cmd->prefix_command();
  cmd->callback([cmd] {
    const std::filesystem::path program = exec_program();
    if (::access(program.c_str(), X_OK) != 0) {
      throw UserError(ErrorKind::kUnsupported, SourceLocation{"", 0, 0, "exec"},
                      "zeroplan-exec is not beside zeroplan (" + program.parent_path().string() +
                          "); it is built only when libtorch is found");
    }
    std::vector<std::string> args{program.string()};
    for (const std::string& a : cmd->remaining())
      args.push_back(a);
    std::vector<char*> argv;
    for (std::string& a : args)
      argv.push_back(a.data());
    argv.push_back(nullptr);
    ::execv(program.c_str(), argv.data());
    throw UserError(ErrorKind::kIo, SourceLocation{program.string(), 0, 0, ""},
                    std::string("could not run it: ") + std::strerror(errno));
  });
}

}  // namespace zp::cli
