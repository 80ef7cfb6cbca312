// `zeroplan exec`: runs the zeroplan-exec program that sits beside zeroplan, with the same
// arguments. A program of its own keeps libtorch, CUDA and NCCL out of zeroplan's other commands.

#include "cli/commands.h"
#include "cli/sibling_program.h"

namespace zp::cli {

void add_exec_command(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "exec",
      "Run on real hardware with libtorch (Gloo on CPU, NCCL on CUDA); 'zeroplan exec --help' "
      "lists its options.");
  // Every argument, --help included, belongs to zeroplan-exec.
  cmd->set_help_flag();
  cmd->prefix_command();
  cmd->callback([cmd] { hand_over(exec_program("exec"), cmd->remaining()); });
}

}  // namespace zp::cli
