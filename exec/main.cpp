// zeroplan-exec: the real-execution worker. It is a program of its own so that zeroplan's other
// commands do not pay for loading libtorch, CUDA and NCCL (most of a second) on every start.
#include <cstring>
#include <iostream>
#include <string>
#include <vector>

#include "core/config/run_spec.h"
#include "core/util/error.h"
#include "exec/comm/communicator.h"
#include "exec/comm/selftest.h"
#include "exec/launch/environment.h"
#include "exec/launch/launcher.h"
#include "exec/launch/options.h"
#include "exec/launch/rank.h"
#include "exec/runtime/backend_info.h"
#include "exec/train/training_run.h"

namespace {

using namespace zp::exec::launch;

int run(int argc, char** argv, ExecOptions& options) {
  validate(options);
  if (!options.run_spec.empty()) {
    zp::RunSpec spec = zp::load_run_spec(options.run_spec);
    // Checked before any rank starts, so that a run exec cannot train fails once, here.
    if (!options.selftest && !options.calibrate && options.nproc > 0)
      zp::exec::plan_training(std::move(spec), options.nproc, training_options(options));
  }
  if (options.nproc > 0) {
    check_device(options, options.nproc - 1);
    return launch_local(options, std::vector<std::string>(argv + 1, argv + argc), std::cerr);
  }
  std::optional<RankEnvironment> env = read_rank_environment(process_environment());
  if (!env) {
    // Not launched as a rank: a job of one, with its own store on a free port.
    env = RankEnvironment{};
    env->master_addr = "127.0.0.1";
    env->source = "none";
  }
  if (options.threads > 0) zp::exec::set_intra_op_threads(options.threads);
  return run_rank(options, *env, std::cout);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 2 && std::strcmp(argv[1], "--version") == 0) {
    std::cout << "zeroplan-exec " << ZEROPLAN_VERSION << "\n"
              << zp::exec::describe(zp::exec::backend_info()) << "\n";
    return 0;
  }
  ExecOptions options;
  if (const auto status = parse_command_line(argc, argv, options, std::cout, std::cerr))
    return *status;
  try {
    return run(argc, argv, options);
  } catch (const zp::UserError& e) {
    std::cerr << "zeroplan-exec: error: " << e.what() << "\n";
    return kExitUserError;
  } catch (const zp::exec::comm::CommError& e) {
    std::cerr << "zeroplan-exec: error: " << e.what() << "\n";
    return kExitCommFailed;
  } catch (const zp::exec::comm::SelftestFailure& e) {
    std::cerr << "zeroplan-exec: self-test failed: " << e.what() << "\n";
    return kExitInternal;
  } catch (const zp::InternalError& e) {
    std::cerr << "zeroplan-exec: " << e.what()
              << "\nThis is a bug in zeroplan; please report it.\n";
    return kExitInternal;
  } catch (const std::exception& e) {
    std::cerr << "zeroplan-exec: unexpected error: " << e.what() << "\n";
    return kExitInternal;
  }
}
