// What a simulation predicts for each simulated rank class: its memory, its collectives, its time,
// and, per simulated step, the ZeRO-3 coordinator's figures in the terms DeepSpeed counts them.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "core/config/run_spec.h"
#include "core/trace/trace.h"
#include "core/util/error.h"
#include "sim/memory/memory_accountant.h"
#include "sim/step/sim_options.h"

namespace zp::sim {

// Per collective kind (all-gather, reduce-scatter, all-reduce, broadcast, send/recv) and per copy
// direction: how many, how many bytes (the collective's buffer, as the network model counts it),
// and how long they ran.
struct TransferTotals {
  std::int64_t count = 0;
  std::int64_t bytes = 0;
  TimeNs busy_ns = 0;
};

// The coordinator's and the reducer's figures for one step (all micro-batches), as a DeepSpeed run
// of the same model, ranks and config would count them.
struct CoordinatorFigures {
  std::int64_t allgather_calls = 0;  // demand + prefetch (gathers outside the coordinator apart)
  std::int64_t demand_gathers = 0;
  std::int64_t prefetch_gathers = 0;
  std::int64_t outside_gathers = 0;         // persistent parameters after the optimizer step
  std::int64_t params_gathered = 0;         // parameters, over every gather of the coordinator
  std::int64_t elements_gathered = 0;       // their elements (unpartitioned)
  std::int64_t releases = 0;                // parameters released by the coordinator
  std::int64_t peak_available_counted = 0;  // DeepSpeed's available-elements counter, its maximum
  std::int64_t peak_available_live = 0;     // elements actually gathered or in flight, maximum
  std::int64_t reduce_calls = 0;            // gradient buckets reduced
  std::int64_t reduce_elements = 0;         // elements they reduce (padded for reduce-scatter)
  std::int64_t invalidations = 0;           // trace invalidations
};

struct StepReport {
  std::int64_t step = 0;
  TimeNs start_ns = 0;
  TimeNs end_ns = 0;
  std::string trace_mode;  // the coordinator's mode when the step began
  CoordinatorFigures coordinator;
  MemorySnapshot peak;           // this step's device peak
  TimeNs compute_ns = 0;         // forward, backward, recompute and optimizer on the compute stream
  TimeNs exposed_comm_ns = 0;    // compute stream waiting on communication or copies
  TimeNs exposed_gather_ns = 0;  // the part spent waiting for parameters to arrive
  TimeNs bubble_ns = 0;          // pipeline: the compute stream idle, waiting for other stages
  TimeNs time_ns() const { return end_ns - start_ns; }
};

enum class TransferKind : std::uint8_t {
  kAllGather,
  kReduceScatter,
  kAllReduce,
  kBroadcast,
  kSendRecv,
  kHostToDevice,
  kDeviceToHost,
  kNvme,
  kCount
};
std::string_view to_string(TransferKind kind);
inline constexpr std::size_t kTransferKindCount = static_cast<std::size_t>(TransferKind::kCount);

struct RankReport {
  std::int32_t trace_rank = 0;      // index into the trace's ranks
  std::string label;                // "all 8 ranks", "stage 1 (ranks 2, 3)"
  std::vector<std::int64_t> ranks;  // global ranks it stands for
  MemorySnapshot peak;              // over every simulated step
  std::int64_t peak_reserved = 0;
  std::int64_t peak_host = 0;      // this rank's share of host memory, at most
  std::int64_t peak_nvme = 0;      // and of NVMe
  std::int64_t out_of_memory = 0;  // allocations that did not fit the GPU
  std::array<TransferTotals, kTransferKindCount> transfers{};  // over the reported steps
  std::vector<StepReport> steps;                               // the reported steps
  std::string peak_running;                                    // what ran at the peak
  double model_flops_per_step = 0;  // forward and backward, without recompute
  TimeNs bubble_ns = 0;             // pipeline idle time in the reported step
};

// DeepSpeed's estimate_zero3_model_states_mem_needs (or, for stages 1 and 2,
// estimate_zero2_model_states_mem_needs) for the run's model and cluster, printed beside the
// prediction because users know it.
struct DeepSpeedEstimate {
  int stage = 3;  // 3: the ZeRO-3 estimate; 2: the ZeRO-2 one, which has no largest layer
  std::int64_t total_params = 0;
  std::int64_t largest_layer_params = 0;
  std::int64_t gpu_bytes = 0;
  std::int64_t cpu_bytes = 0;  // per node
  bool cpu_offload = false;
  bool cpu_offload_params = false;
};

struct SimulationResult {
  std::string run_name;
  std::int64_t world_size = 0;
  std::int64_t gpu_memory = 0;
  std::vector<RankReport> ranks;
  std::vector<std::int64_t> reported_steps;   // which steps were reported (0-based)
  bool steady_state = true;                   // reported the steady-state step
  TimeNs step_time_ns = 0;                    // the slowest rank's step
  double mfu = 0;                             // model FLOPs utilisation over the step
  std::optional<DeepSpeedEstimate> estimate;  // ZeRO-3 runs, and stages 1-2 without a pipeline
  std::vector<Warning> warnings;
};

// The accountant's peaks, as a rank's report carries them.
inline void take_memory_peaks(const MemoryAccountant& memory, RankReport& report) {
  report.peak = memory.peak();
  report.peak_reserved = memory.peak_reserved();
  report.peak_host = memory.peak_host();
  report.peak_nvme = memory.peak_nvme();
  report.out_of_memory = memory.out_of_memory_count();
}

// A result with what every step simulation reports of the run itself filled in.
inline SimulationResult result_for(const RunSpec& run, const SimOptions& options) {
  SimulationResult r;
  r.run_name = run.name;
  r.world_size = run.parallel.world();
  r.gpu_memory = run.cluster.gpu_memory;
  r.steady_state = options.steps == 0;
  return r;
}

}  // namespace zp::sim
