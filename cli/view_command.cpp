// `zeroplan view`: runs the zeroplan-view program that sits beside zeroplan, with the same
// arguments. A program of its own keeps OpenGL, GLFW and ImGui out of zeroplan's other commands.

#include "cli/commands.h"
#include "cli/sibling_program.h"

namespace zp::cli {

void add_view_command(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "view",
      "Open traces and tuning reports in the viewer (timeline, memory, tables, compare, planner), "
      "or render a screenshot; 'zeroplan view --help' lists its options.");
  // Every argument, --help included, belongs to zeroplan-view.
  cmd->set_help_flag();
  cmd->prefix_command();
  cmd->callback([cmd] {
    hand_over(sibling_program("zeroplan-view", "view", "Dear ImGui, GLFW and OpenGL are found"),
              cmd->remaining());
  });
}

}  // namespace zp::cli
