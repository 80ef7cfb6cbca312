// Helpers for the simulator tests: runs built from hand-made module trees on a cluster with round
// numbers, so that times and bytes can be worked out by hand.
#pragma once

#include <unistd.h>

#include <gtest/gtest.h>

#include <filesystem>
#include <functional>
#include <set>
#include <string>
#include <vector>

#include "core/config/document.h"
#include "core/config/run_spec.h"
#include "core/model/model_json.h"
#include "core/model/module_tree.h"
#include "core/trace/trace.h"
#include "core/util/error.h"
#include "sim/step/sim_options.h"
#include "sim/step/step_result.h"

namespace zp::sim::testing {

// The UserError `call` throws. If it throws none the test fails, and the error returned is an
// empty one ("none") so the caller's own checks fail too.
inline UserError ErrorOf(const std::function<void()>& call) {
  try {
    call();
  } catch (const UserError& e) {
    return e;
  }
  ADD_FAILURE() << "no UserError";
  return UserError(ErrorKind::kValue, {}, "none");
}

// One node of `gpus` GPUs: 1 TFLOP/s in fp32 (1000 FLOP/ns), 1 TB/s HBM (1000 B/ns), links of
// 1 GB/s (1 B/ns) with 1 us latency, PCIe 1 GB/s, no launch cost, every efficiency 1.
inline std::string RoundCluster(int gpus, const std::string& extra = "") {
  return "{gpus_per_node: " + std::to_string(gpus) +
         ", gpu_memory: 1GiB, peak_flops: {fp32: 1T, bf16: 1T}, hbm_bandwidth: 1TB/s, "
         "intra_node: {bandwidth: 1GB/s, latency: 1us}, inter_node: {bandwidth: 1GB/s, latency: "
         "1us}, pcie_bandwidth: 1GB/s, nvme_bandwidth: 1GB/s, host_memory: 1TiB, efficiency: "
         "{compute: 1, hbm: 1, network: 1}, kernel_launch: 0us" +
         extra + "}";
}

// A run of `tree` (written to a model file) with `zero` as the zero_optimization mapping's extra
// keys and `top` as extra top-level DeepSpeed keys.
inline RunSpec MakeRun(const ModuleTree& tree, int gpus, const std::string& zero,
                       const std::string& training = "", const std::string& top = "",
                       const std::string& cluster_extra = "") {
  const std::filesystem::path dir =
      std::filesystem::temp_directory_path() / ("zeroplan_sim_test." + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  save_model_file(tree, dir / "model.json");
  const std::string yaml =
      "name: test\nmodel: {file: model.json}\ncluster: " + RoundCluster(gpus, cluster_extra) +
      "\ntraining: {micro_batch: " + std::to_string(tree.shape().micro_batch) + training +
      "}\ndeepspeed: {train_micro_batch_size_per_gpu: " + std::to_string(tree.shape().micro_batch) +
      top + ", zero_optimization: {stage: 3" + zero + "}}\n";
  const RunSpec run = parse_run_spec(Document::from_yaml(yaml, "run.yaml"), dir);
  std::filesystem::remove_all(dir);
  return run;
}

// Net{a: Linear(weight 24), b: Linear(weight 12, bias 2)}, called root -> a -> b. Each module's
// forward is 1000 FLOPs (1 ns on 1000 FLOP/ns). A flat buffer holds a.weight at [0, 24), b.weight
// at [24, 36), b.bias at [36, 38); over 4 ranks it is padded to 40 (a multiple of 2 x 4) and each
// partition is 10 elements.
inline ModuleTree TwoLayers(DType dtype = DType::kFloat32) {
  ModuleTree t("two");
  t.add_module(kNoModule, "", "Net");
  const ModuleId a = t.add_module(0, "a", "Linear");
  t.add_parameter(a, "weight", {4, 6}, dtype);
  const ModuleId b = t.add_module(0, "b", "Linear");
  t.add_parameter(b, "weight", {6, 2}, dtype);
  t.add_parameter(b, "bias", {2}, dtype);
  t.set_cost(a, {1000, 0, 0});
  t.set_cost(b, {1000, 0, 0});
  t.set_shape({1, 1, dtype});
  const auto root = t.add_call(0, kNoCall, false);
  t.add_call(a, root, false);
  t.add_call(b, root, true);
  return t;
}

// A simulation's result with the trace it recorded.
struct Simulated {
  SimulationResult result;
  trace::Trace trace;
};

using SimulateFn = SimulationResult (*)(const RunSpec&, const SimOptions&, trace::Trace*);

// `simulate` on `run` with exact byte counts (no caching-allocator model), keeping the trace.
inline Simulated SimulateWith(SimulateFn simulate, const RunSpec& run, SimOptions options = {}) {
  Simulated s;
  options.model_allocator = false;
  s.result = simulate(run, options, &s.trace);
  return s;
}

// Two simulations of two steps give the same trace and step time, bit for bit.
inline void ExpectDeterministic(SimulateFn simulate, const RunSpec& run) {
  SimOptions steps;
  steps.steps = 2;
  const Simulated a = SimulateWith(simulate, run, steps);
  const Simulated b = SimulateWith(simulate, run, steps);
  EXPECT_TRUE(a.trace == b.trace);
  EXPECT_EQ(a.result.step_time_ns, b.result.step_time_ns);
}

// Every device block in `t` has a name (the viewer lists the largest live tensors by it); returns
// the names.
inline std::set<std::string> ExpectEveryAllocationNamed(const trace::Trace& t) {
  std::set<std::string> names;
  EXPECT_FALSE(t.allocations.empty());
  for (const trace::Allocation& a : t.allocations) {
    if (a.name < 0) {
      ADD_FAILURE() << "an unnamed " << trace::to_string(a.category) << " block of " << a.bytes
                    << " bytes on trace rank " << a.rank << " at " << a.start;
      break;
    }
    EXPECT_FALSE(t.string(a.name).empty());
    names.insert(t.string(a.name));
  }
  return names;
}

inline std::vector<const trace::Op*> OpsOf(const trace::Trace& t, trace::OpKind kind) {
  std::vector<const trace::Op*> out;
  for (const trace::Op& op : t.ops) {
    if (op.kind == kind) out.push_back(&op);
  }
  return out;
}

}  // namespace zp::sim::testing
