// The zeroplan subcommands. Each add_* registers one on the application; its callback does the
// work and throws UserError for bad input, which main() reports in one line with exit status 2.
#pragma once

#include <stdexcept>
#include <string>

#include <CLI/CLI.hpp>

namespace zp::cli {

// The command did its work, but the run it describes fails (it does not fit its GPUs): main()
// prints the message in one line and exits with kExitRunFails, after the command's output.
inline constexpr int kExitRunFails = 3;
class RunFails : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

void add_calibrate_command(CLI::App& app);
void add_exec_command(CLI::App& app);
void add_inspect_command(CLI::App& app);
void add_presets_command(CLI::App& app);
void add_simulate_command(CLI::App& app);
void add_tune_command(CLI::App& app);
void add_view_command(CLI::App& app);
void add_validate_command(CLI::App& app);

}  // namespace zp::cli
