// `zeroplan simulate`'s engine: one training step of a run, predicted. Chooses the simulation the
// run needs (data-parallel ZeRO-3, data-parallel ZeRO stages 0-2, or a pipeline), fills the trace's
// description, and adds the warnings a person should read first (over GPU or host memory, prefetch
// starved, trace invalidated).
#pragma once

#include "core/config/run_spec.h"
#include "core/trace/trace.h"
#include "sim/step/sim_options.h"
#include "sim/step/step_result.h"

namespace zp::sim {

// `trace` may be null. Throws UserError for runs that cannot be simulated (zero GPUs, a layout
// that does not match the cluster, a feature not modelled).
SimulationResult simulate(const RunSpec& run, const SimOptions& options,
                          trace::Trace* trace = nullptr);

// The warnings for a finished result (simulate() adds them; exposed for tests).
std::vector<Warning> result_warnings(const RunSpec& run, const SimulationResult& result);

}  // namespace zp::sim
