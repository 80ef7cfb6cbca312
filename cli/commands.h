// The zeroplan subcommands. Each add_* registers one on the application; its callback does the
// work and throws UserError for bad input, which main() reports in one line with exit status 2.
#pragma once

#include <CLI/CLI.hpp>

namespace zp::cli {

void add_inspect_command(CLI::App& app);
void add_presets_command(CLI::App& app);
void add_simulate_command(CLI::App& app);

}  // namespace zp::cli
