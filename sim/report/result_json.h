// A simulation result as JSON for machines (`zeroplan simulate --json`, the trace's description,
// the planner): everything the summary shows, with each simulated step's coordinator figures
// under the names DeepSpeed's counters would carry. Bytes in bytes, times in nanoseconds.
#pragma once

#include "core/config/document.h"
#include "sim/step/step_result.h"

namespace zp::sim {

Json result_to_json(const SimulationResult& result);
Json snapshot_to_json(const MemorySnapshot& snapshot);

}  // namespace zp::sim
