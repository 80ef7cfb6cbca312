// zeroplan's command-line front end.
#include <algorithm>
#include <iostream>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "cli/commands.h"
#include "core/util/error.h"
#include "core/util/suggest.h"

namespace {
constexpr int kExitUserError = 2;
constexpr int kExitInternalError = 1;
}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "zeroplan: plan the memory and communication of DeepSpeed ZeRO-3 training before booking "
      "the cluster.",
      "zeroplan"};
  app.set_version_flag("--version", std::string("zeroplan ") + ZEROPLAN_VERSION);
  app.require_subcommand(1);
  app.footer("Run 'zeroplan COMMAND --help' for a command's options.");
  zp::cli::add_calibrate_command(app);
  zp::cli::add_exec_command(app);
  zp::cli::add_inspect_command(app);
  zp::cli::add_presets_command(app);
  zp::cli::add_simulate_command(app);
  zp::cli::add_tune_command(app);
  zp::cli::add_view_command(app);
  zp::cli::add_validate_command(app);

  // A mistyped command would otherwise read as "a subcommand is required".
  if (argc > 1 && argv[1][0] != '-') {
    std::vector<std::string> names;
    for (const CLI::App* sub : app.get_subcommands({}))
      names.push_back(sub->get_name());
    if (std::find(names.begin(), names.end(), argv[1]) == names.end()) {
      std::cerr << "zeroplan: error: unknown command '" << argv[1] << "'"
                << zp::did_you_mean(argv[1], names)
                << "\nRun 'zeroplan --help' for the list of commands.\n";
      return kExitUserError;
    }
  }

  try {
    app.parse(argc, argv);
  } catch (const CLI::Success& e) {
    return app.exit(e);  // --help, --version
  } catch (const CLI::ParseError& e) {
    std::cerr << "zeroplan: error: " << e.what() << "\n"
              << "Run 'zeroplan --help' for usage.\n";
    return kExitUserError;
  } catch (const zp::UserError& e) {
    std::cerr << "zeroplan: error: " << e.what() << "\n";
    return kExitUserError;
  } catch (const zp::cli::RunFails& e) {
    std::cerr << "zeroplan: " << e.what() << "\n";
    return zp::cli::kExitRunFails;
  } catch (const zp::InternalError& e) {
    std::cerr << "zeroplan: " << e.what() << "\nThis is a bug in zeroplan; please report it.\n";
    return kExitInternalError;
  } catch (const std::exception& e) {
    std::cerr << "zeroplan: unexpected error: " << e.what() << "\n";
    return kExitInternalError;
  }
  return 0;
}
