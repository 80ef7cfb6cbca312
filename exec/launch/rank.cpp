#include "exec/launch/rank.h"

#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <iostream>
#include <thread>

#include "core/config/run_spec.h"
#include "core/util/error.h"
#include "exec/calibrate/calibrate.h"
#include "exec/comm/gloo_communicator.h"
#include "exec/comm/selftest.h"
#ifdef ZEROPLAN_HAVE_CUDA
#include "exec/comm/nccl_communicator.h"
#include "exec/cuda/cuda_info.h"
#include "exec/runtime/backend_info.h"
#endif

namespace zp::exec::launch {

namespace {

bool is_loopback(const std::string& host) {
  return host == "localhost" || host == "::1" || host.rfind("127.", 0) == 0;
}

void inject(const Fault& fault, int rank, std::string_view op) {
  // After the first collective, so every rank has joined and the fault hits a running job.
  if (fault.kind == Fault::Kind::kNone || fault.rank != rank || op == "all_gather") return;
  if (fault.kind == Fault::Kind::kExit) {
    std::cerr << "zeroplan-exec: rank " << rank << ": exiting early (--selftest-fault)"
              << std::endl;
    std::_Exit(kExitInternal);
  }
  std::cerr << "zeroplan-exec: rank " << rank << ": hanging (--selftest-fault)" << std::endl;
  for (;;)
    std::this_thread::sleep_for(std::chrono::hours(1));
}

}  // namespace

void check_device(const ExecOptions& options, int local_rank) {
  if (options.device != "cuda") return;
#ifdef ZEROPLAN_HAVE_CUDA
  const CudaInfo info = cuda_info();
  if (info.visible_gpus == 0) {
    throw UserError(
        ErrorKind::kUnsupported, SourceLocation{"", 0, 0, "--device"},
        "cuda: no GPU is visible to this process" +
            (info.device_error.empty() ? std::string() : " (CUDA: " + info.device_error + ")"));
  }
  if (local_rank >= info.visible_gpus) {
    throw UserError(ErrorKind::kUnsupported, SourceLocation{"", 0, 0, "--device"},
                    "cuda: local rank " + std::to_string(local_rank) + " needs GPU " +
                        std::to_string(local_rank) + " but only " +
                        std::to_string(info.visible_gpus) + " are visible");
  }
#else
  (void)local_rank;
  throw UserError(ErrorKind::kUnsupported, SourceLocation{"", 0, 0, "--device"},
                  "cuda: this zeroplan-exec was built without CUDA and NCCL");
#endif
}

TrainingOptions training_options(const ExecOptions& options) {
  TrainingOptions t;
  t.steps = options.steps;
  t.seed = options.seed;
  t.trace = options.trace;
  t.chrome_trace = options.chrome_trace;
  t.json = options.json;
  return t;
}

int run_rank(const ExecOptions& options, const RankEnvironment& env, std::ostream& out) {
  check_device(options, env.local_rank);
  std::optional<TrainingPlan> plan;
  if (!options.selftest && !options.calibrate) {
    if (options.device == "cuda") {
      throw UserError(ErrorKind::kUnsupported, SourceLocation{"", 0, 0, "--device"},
                      "cuda: training runs on CPU ranks for now (--selftest runs NCCL on CUDA)");
    }
    plan =
        plan_training(load_run_spec(options.run_spec), env.world_size, training_options(options));
  }
  const auto timeout = std::chrono::milliseconds(static_cast<long long>(options.timeout_s * 1000));

  comm::Store::Options store_options;
  store_options.host = env.master_addr;
  store_options.port = env.master_port;
  store_options.host_store = env.rank == 0 && !env.agent_store;
  store_options.timeout = timeout;
  store_options.port_key = "MASTER_PORT";
  const auto store = comm::Store::open(store_options);

  comm::GroupSpec world;
  world.axis = "world";
  world.rank = env.rank;
  world.size = env.world_size;
  world.timeout = timeout;

  std::unique_ptr<comm::Communicator> communicator;
  bool collectives_poll = false;  // the Gloo waits', which a calibration records
  comm::GroupMaker make_group;    // a pipeline's sub-groups (Gloo: pipelines run on CPU ranks)
  std::unique_ptr<comm::BufferMemory> memory;
  if (options.backend == "nccl") {
#ifdef ZEROPLAN_HAVE_CUDA
    comm::NcclOptions nccl;
    nccl.device = env.local_rank;
    communicator = comm::make_nccl_communicator(store, world, nccl);
    memory = comm::cuda_memory(env.local_rank);
#endif
  } else {
    comm::GlooOptions gloo;
    if (is_loopback(env.master_addr)) gloo.hostname = "127.0.0.1";
    collectives_poll =
        polls(options.wait, env.local_world_size, intra_op_threads(), usable_cores());
    if (collectives_poll) gloo.poll_for = kPollFor;
    communicator = comm::make_gloo_communicator(store, world, gloo);
    make_group = [store, gloo](const comm::GroupSpec& group) {
      return comm::make_gloo_communicator(store, group, gloo);
    };
    memory = comm::host_memory();
  }
  ZP_CHECK(communicator != nullptr, "no communicator for backend ", options.backend);

  if (plan) return run_training(*plan, *communicator, make_group, out);
  if (options.calibrate)
    return run_calibration(*communicator,
                           CalibrationOptions{options.calibrate_quick, collectives_poll}, out,
                           std::cerr);
  comm::SelftestOptions selftest;
  selftest.numel = options.selftest_numel;
  selftest.iterations = options.selftest_iterations;
  const Fault fault = parse_fault(options.selftest_fault);
  selftest.before_op = [&](std::string_view op) { inject(fault, env.rank, op); };
  const std::vector<comm::OpRecord> records = comm::run_selftest(*communicator, *memory, selftest);
  if (env.rank == 0) {
    out << "zeroplan-exec self-test: " << env.world_size << " rank(s), " << communicator->backend()
        << ", " << intra_op_threads() << " thread(s) per rank, " << options.selftest_numel
        << " elements (fp32) padded to "
        << (options.selftest_numel + env.world_size - 1) / env.world_size * env.world_size
        << "; every result checked\n";
    comm::print_records(out, records);
    out << "self-test passed\n";
  }
  return kExitOk;
}

}  // namespace zp::exec::launch
