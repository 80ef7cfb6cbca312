#include "sim/hardware/compute_model.h"

#include <gtest/gtest.h>

#include "../sim_test_util.h"

#include <functional>
#include <string>

#include "core/model/model_config.h"
#include "core/model/presets.h"
#include "core/util/error.h"
#include "sim/hardware/kernel_counts.h"

namespace zp::sim {
namespace {

using testing::ErrorOf;

// A cluster whose rates divide evenly: bf16 peak 2e12 FLOP/s at efficiency 0.5 is 1000 FLOP/ns;
// HBM 1e12 B/s at efficiency 0.5 is 500 B/ns; each piece of work pays 4000 ns to launch, before
// its work (synchronous launches, as on CPU ranks; the overlapped rule has its own test).
ClusterSpec Cluster() {
  ClusterSpec c;
  c.peak_flops = {{"bf16", 2e12}, {"fp16", 4e12}, {"fp32", 1e12}, {"tf32", 8e12}, {"fp64", 5e11}};
  c.hbm_bandwidth = 1e12;
  c.efficiency.compute = 0.5;
  c.efficiency.hbm = 0.5;
  c.kernel_launch_ns = 4000;
  c.asynchronous_launch = false;
  return c;
}

TEST(ComputeModel, ComputeBoundWorkTakesTheComputeTerm) {
  const ComputeModel m(Cluster(), DType::kBFloat16);
  // max(1e6 FLOP / 1000 FLOP/ns, 1e5 B / 500 B/ns) = max(1000, 200) = 1000; + 4000 launch.
  // A sum of the terms would give 5200, their minimum 4200.
  EXPECT_EQ(m.time(1'000'000, 100'000), 5000);
}

TEST(ComputeModel, MemoryBoundWorkTakesTheMemoryTerm) {
  const ComputeModel m(Cluster(), DType::kBFloat16);
  // max(1e5 FLOP / 1000, 1e6 B / 500) = max(100, 2000) = 2000; + 4000 launch.
  EXPECT_EQ(m.time(100'000, 1'000'000), 6000);
}

TEST(ComputeModel, EfficiencyDeratesBothPeaks) {
  ClusterSpec c = Cluster();
  c.efficiency.compute = 0.25;  // 2e12 * 0.25 = 500 FLOP/ns
  c.efficiency.hbm = 0.25;      // 1e12 * 0.25 = 250 B/ns
  const ComputeModel m(c, DType::kBFloat16);
  EXPECT_DOUBLE_EQ(m.peak_flops(), 2e12);        // before efficiency
  EXPECT_DOUBLE_EQ(m.flops_per_second(), 5e11);  // after
  // 1e6 FLOP / 500 = 2000 ns (not derated: 500 ns).
  EXPECT_EQ(m.time(1'000'000, 0), 4000 + 2000);
  // 1e6 B / 250 = 4000 ns (not derated: 1000 ns).
  EXPECT_EQ(m.time(0, 1'000'000), 4000 + 4000);
}

TEST(ComputeModel, KernelLaunchIsAddedOnce) {
  ClusterSpec c = Cluster();
  c.kernel_launch_ns = 0;
  const ComputeModel no_launch(c, DType::kBFloat16);
  const ComputeModel launch(Cluster(), DType::kBFloat16);
  // The same work, 1000 ns of compute and 2000 ns of memory, differs by exactly one launch.
  EXPECT_EQ(no_launch.time(1'000'000, 1'000'000), 2000);
  EXPECT_EQ(launch.time(1'000'000, 1'000'000), 2000 + 4000);
}

TEST(ComputeModel, RoundsUpToWholeNanoseconds) {
  ClusterSpec c = Cluster();
  c.kernel_launch_ns = 0;
  const ComputeModel m(c, DType::kBFloat16);
  EXPECT_EQ(m.time(1001, 0), 2);  // 1.001 ns -> 2, not 1 (nearest or truncated)
  EXPECT_EQ(m.time(1, 0), 1);     // 0.001 ns -> 1
  EXPECT_EQ(m.time(0, 1), 1);     // 0.002 ns -> 1
  EXPECT_EQ(m.time(3000, 0), 3);  // exactly 3 ns stays 3
  EXPECT_EQ(m.time(0, 1501), 4);  // 3.002 ns -> 4
}

TEST(ComputeModel, NoWorkTakesNoTime) {
  const ComputeModel m(Cluster(), DType::kBFloat16);
  EXPECT_EQ(m.time(0, 0), 0);  // not even the launch
  EXPECT_EQ(m.copy(0), 0);
  EXPECT_EQ(m.time(0, 1), 4001);  // any work pays the launch
}

TEST(ComputeModel, CopyReadsAndWritesEveryByte) {
  const ComputeModel m(Cluster(), DType::kBFloat16);
  // 2 * 500000 B / 500 B/ns = 2000 ns; + 4000 launch. Counting the bytes once would give 5000.
  EXPECT_EQ(m.copy(500'000), 6000);
  EXPECT_EQ(m.copy(500'000), m.time(0, 1'000'000));
}

TEST(ComputeModel, PeakFlopsKeyPerDtype) {
  EXPECT_STREQ(peak_flops_key(DType::kFloat32), "fp32");  // not tf32: PyTorch's default
  EXPECT_STREQ(peak_flops_key(DType::kFloat16), "fp16");
  EXPECT_STREQ(peak_flops_key(DType::kBFloat16), "bf16");
  EXPECT_STREQ(peak_flops_key(DType::kFloat64), "fp64");
}

TEST(ComputeModel, EachDtypeUsesItsOwnPeak) {
  EXPECT_DOUBLE_EQ(ComputeModel(Cluster(), DType::kFloat32).peak_flops(), 1e12);  // not 8e12
  EXPECT_DOUBLE_EQ(ComputeModel(Cluster(), DType::kFloat16).peak_flops(), 4e12);
  EXPECT_DOUBLE_EQ(ComputeModel(Cluster(), DType::kBFloat16).peak_flops(), 2e12);
  EXPECT_DOUBLE_EQ(ComputeModel(Cluster(), DType::kFloat64).peak_flops(), 5e11);
  // fp32 at 1e12 * 0.5 = 500 FLOP/ns: 1e6 FLOP take 2000 ns (at tf32's rate they would take 250).
  EXPECT_EQ(ComputeModel(Cluster(), DType::kFloat32).time(1'000'000, 0), 4000 + 2000);
}

TEST(ComputeModel, MissingPeakNamesTheKey) {
  ClusterSpec c = Cluster();
  c.peak_flops.erase("bf16");
  const UserError e = ErrorOf([&] { ComputeModel(c, DType::kBFloat16); });
  EXPECT_EQ(e.kind(), ErrorKind::kMissing);
  EXPECT_EQ(e.where().key_path, "cluster.peak_flops.bf16");

  c.peak_flops["bf16"] = 0;  // present but not positive
  EXPECT_EQ(ErrorOf([&] { ComputeModel(c, DType::kBFloat16); }).where().key_path,
            "cluster.peak_flops.bf16");

  // An fp32 run needs fp32 itself; tf32 does not stand in for it.
  ClusterSpec tf32_only = Cluster();
  tf32_only.peak_flops.erase("fp32");
  EXPECT_EQ(ErrorOf([&] { ComputeModel(tf32_only, DType::kFloat32); }).where().key_path,
            "cluster.peak_flops.fp32");
}

TEST(ComputeModel, MissingHbmBandwidthNamesTheKey) {
  ClusterSpec c = Cluster();
  c.hbm_bandwidth = 0;
  const UserError e = ErrorOf([&] { ComputeModel(c, DType::kBFloat16); });
  EXPECT_EQ(e.kind(), ErrorKind::kMissing);
  EXPECT_EQ(e.where().key_path, "cluster.hbm_bandwidth");
  c.hbm_bandwidth = -1;
  EXPECT_EQ(ErrorOf([&] { ComputeModel(c, DType::kBFloat16); }).where().key_path,
            "cluster.hbm_bandwidth");
}

// --- Kernels: the fixed cost per kernel, and how many kernels each module's pass runs.

TEST(ComputeModel, EachKernelPaysItsLaunchAndBackwardItsAutogradNodeToo) {
  ClusterSpec c = Cluster();
  c.kernel_launch_ns = 3000;
  c.autograd_node_ns = 500;
  const ComputeModel m(c, DType::kBFloat16);
  // 12 kernels around 1e6 FLOP (1000 ns) and 1e5 B (200 ns): 12 launches and the roofline's
  // larger term. One launch per pass would give 4000.
  EXPECT_EQ(m.kernels(12, 1'000'000, 100'000), 12 * 3000 + 1000);
  // In backward each kernel also pays the autograd node: 12 x 3500, not 12 x 3000.
  EXPECT_EQ(m.backward_kernels(12, 1'000'000, 100'000), 12 * 3500 + 1000);
  // A module whose work is all its children's launches nothing; its bytes are still priced.
  EXPECT_EQ(m.kernels(0, 0, 1'000'000), 2000);
  EXPECT_EQ(m.kernels(0, 0, 0), 0);
  // time() is one kernel.
  EXPECT_EQ(m.time(1'000'000, 100'000), m.kernels(1, 1'000'000, 100'000));
}

// On a GPU the host enqueues kernels while earlier ones run: a pass takes the longer of its
// launches and its roofline, not their sum.
TEST(ComputeModel, AsynchronousLaunchesOverlapTheWork) {
  ClusterSpec c = Cluster();
  c.kernel_launch_ns = 3000;
  c.autograd_node_ns = 500;
  c.asynchronous_launch = true;
  const ComputeModel m(c, DType::kBFloat16);
  // Compute-bound: 2 launches (6000 ns) hide behind 1e7 FLOP (10000 ns).
  EXPECT_EQ(m.kernels(2, 10'000'000, 0), 10'000);
  // Launch-bound: 12 launches (36000 ns) around 1000 ns of compute.
  EXPECT_EQ(m.kernels(12, 1'000'000, 100'000), 36'000);
  EXPECT_EQ(m.backward_kernels(12, 1'000'000, 100'000), 12 * 3500);
  EXPECT_EQ(m.time(0, 1'000'000), 3000) << "one kernel: at least its launch";
  EXPECT_EQ(m.kernels(0, 0, 1'000'000), 2000);
  // Synchronous, as on CPU ranks: the sum.
  c.asynchronous_launch = false;
  EXPECT_EQ(ComputeModel(c, DType::kBFloat16).kernels(2, 10'000'000, 0), 16'000);
}

ModuleTree Preset(const char* name, DType dtype = DType::kFloat32) {
  const ModelConfig* config = find_preset(name);
  EXPECT_NE(config, nullptr) << name;
  return build_model(*config, BatchShape{2, 32, dtype});
}

ModuleId Find(const ModuleTree& tree, const std::string& qualified) {
  for (ModuleId id = 0; id < static_cast<ModuleId>(tree.modules().size()); ++id)
    if (tree.qualified_name(id) == qualified) return id;
  ADD_FAILURE() << "no module " << qualified;
  return 0;
}

// The table of docs/simulator.md, for the modules of GPT-2 and Llama as exec and transformers run
// them: each count is the kernels of the module's own work, not its children's.
TEST(KernelCounts, FollowTheModulesClass) {
  const ModuleTree gpt2 = Preset("tiny-gpt2");
  const auto k = [&](const ModuleTree& t, const char* name) {
    return module_kernels(t, Find(t, name));
  };
  EXPECT_EQ(k(gpt2, ""), (KernelCounts{4, 5, true}));             // the shifted cross-entropy
  EXPECT_EQ(k(gpt2, "transformer"), (KernelCounts{2, 1, true}));  // position ids, token + position
  EXPECT_EQ(k(gpt2, "transformer.wte"),
            (KernelCounts{1, 2, true}));  // index_select; zeros, index_add
  EXPECT_EQ(k(gpt2, "transformer.h.0"), (KernelCounts{2, 2, true}));  // the residual sums
  EXPECT_EQ(k(gpt2, "transformer.h.0.ln_1"), (KernelCounts{1, 1, true}));
  EXPECT_EQ(k(gpt2, "transformer.h.0.attn"), (KernelCounts{12, 12}));
  EXPECT_EQ(k(gpt2, "transformer.h.0.attn.c_attn"), (KernelCounts{1, 3}));  // addmm; mm, mm, sum
  EXPECT_EQ(k(gpt2, "transformer.h.0.mlp"),
            (KernelCounts{0, 0, true}));  // its children do the work
  EXPECT_EQ(k(gpt2, "transformer.h.0.mlp.act"), (KernelCounts{1, 1, true}));
  EXPECT_EQ(k(gpt2, "lm_head"), (KernelCounts{1, 2}));  // ZeRO-3's matmul, no bias

  const ModuleTree llama = Preset("tiny-llama");
  EXPECT_EQ(k(llama, "model.layers.0.input_layernorm"), (KernelCounts{6, 12, true}));
  EXPECT_EQ(k(llama, "model.layers.0.self_attn"), (KernelCounts{22, 40}));
  EXPECT_EQ(k(llama, "model.layers.0.self_attn.q_proj"), (KernelCounts{1, 2}));
  EXPECT_EQ(k(llama, "model.layers.0.mlp"), (KernelCounts{1, 2, true}));  // act(gate) * up
  EXPECT_EQ(k(llama, "model.rotary_emb"), (KernelCounts{9, 0, true}));    // made without a graph
  // In 16 bits RMSNorm casts to fp32 and back.
  const ModuleTree bf16 = Preset("tiny-llama", DType::kBFloat16);
  EXPECT_EQ(k(bf16, "model.layers.0.input_layernorm"), (KernelCounts{8, 12, true}));
}

// Element-wise work runs at elementwise_flops; the dense layers and attention cores at peak_flops.
TEST(ComputeModel, ElementWiseWorkRunsAtItsOwnRate) {
  ClusterSpec c = Cluster();
  c.elementwise_flops = 2e11;  // x 0.5 efficiency: 100 FLOP/ns, a tenth of bf16's 1000
  const ComputeModel m(c, DType::kBFloat16);
  const ComputeModel same(Cluster(), DType::kBFloat16);
  const ModuleCost cost{1'000'000, 0, 0};
  const KernelCounts norm{1, 1, true};
  const KernelCounts dense{1, 2, false};
  // 1e6 FLOP at 100 FLOP/ns (10000 ns) + one launch; backward twice the FLOPs.
  EXPECT_EQ(m.module_call(cost, 0, norm, "LayerNorm").forward, 4000 + 10000);
  EXPECT_EQ(m.module_call(cost, 0, norm, "LayerNorm").backward,
            4000 + 2000 + 20000);  // + autograd_node
  EXPECT_EQ(m.module_call(cost, 0, dense, "Linear").forward, 4000 + 1000);
  // Without the key element-wise work runs at peak_flops, as before it existed.
  EXPECT_EQ(same.module_call(cost, 0, norm, "LayerNorm").forward, 4000 + 1000);
  // The memory term still bounds it from below.
  EXPECT_EQ(m.module_call(ModuleCost{1000, 0, 1'000'000}, 0, norm, "LayerNorm").forward,
            4000 + 2000);
}

// A class in module_flops runs at its own rate, forward and backward, whatever its kind's; the
// other classes keep theirs.
TEST(ComputeModel, AClassInModuleFlopsRunsAtItsOwnRate) {
  ClusterSpec c = Cluster();
  c.elementwise_flops = 2e11;                              // 100 FLOP/ns after efficiency
  c.module_flops = {{"Dropout", 2e10}, {"Conv1D", 2e12}};  // 10 and 1000 FLOP/ns
  const ComputeModel m(c, DType::kBFloat16);
  const ModuleCost cost{1'000'000, 0, 0};
  const KernelCounts elementwise{1, 1, true};
  EXPECT_EQ(m.module_call(cost, 0, elementwise, "Dropout").forward, 4000 + 100000);
  EXPECT_EQ(m.module_call(cost, 0, elementwise, "Dropout").backward, 4000 + 2000 + 200000);
  EXPECT_EQ(m.module_call(cost, 0, elementwise, "LayerNorm").forward, 4000 + 10000);
  // A dense class too: its rate replaces peak_flops.
  EXPECT_EQ(m.module_call(cost, 0, KernelCounts{1, 2, false}, "Conv1D").forward, 4000 + 1000);
  // The tree's overload finds the class by the module's type.
  ModuleTree t("t");
  const ModuleId root = t.add_module(kNoModule, "", "Net");
  const ModuleId drop = t.add_module(root, "drop", "Dropout");
  t.set_cost(drop, cost);
  EXPECT_EQ(m.module_call(t, drop).forward, 3 * 4000 + 100000);  // dropout's three kernels
}

// A step's slowdown multiplies each kernel's fixed cost (launch, and the autograd node in
// backward) and divides every rate: the matmul's, the element-wise one, a class's own and HBM's.
TEST(ComputeModel, TheStepSlowdownScalesKernelsAndRatesApart) {
  ClusterSpec c = Cluster();
  c.autograd_node_ns = 2000;
  c.elementwise_flops = 2e11;            // 100 FLOP/ns after efficiency
  c.module_flops = {{"Dropout", 2e10}};  // 10 FLOP/ns
  c.step_slowdown = {3, 2};
  const ComputeModel m(c, DType::kBFloat16);
  const ModuleCost cost{1'000'000, 0, 0};
  // Dense: 1e6 FLOP at 1000 / 2 FLOP/ns, one launch at 3 x 4000.
  EXPECT_EQ(m.module_call(cost, 0, KernelCounts{1, 1, false}, "Linear").forward, 12000 + 2000);
  EXPECT_EQ(m.module_call(cost, 0, KernelCounts{1, 1, false}, "Linear").backward,
            3 * (4000 + 2000) + 4000);
  EXPECT_EQ(m.module_call(cost, 0, KernelCounts{1, 1, true}, "GELU").forward, 12000 + 20000);
  EXPECT_EQ(m.module_call(cost, 0, KernelCounts{1, 1, true}, "Dropout").forward, 12000 + 200000);
  // Memory-bound: 1e6 B at 500 / 2 B/ns.
  EXPECT_EQ(m.time(0, 1'000'000), 12000 + 4000);
}

TEST(KernelCounts, DropoutWithoutProbabilityLaunchesNothing) {
  ModuleTree t("t");
  const ModuleId root = t.add_module(kNoModule, "", "Net");
  const ModuleId active = t.add_module(root, "a", "Dropout");
  const ModuleId idle = t.add_module(root, "b", "Dropout");
  t.set_cost(active, ModuleCost{1000, 1000, 4000});
  t.set_cost(idle, ModuleCost{0, 0, 4000});
  EXPECT_EQ(module_kernels(t, active), (KernelCounts{3, 2, true}));
  EXPECT_EQ(module_kernels(t, idle), (KernelCounts{0, 0, true}));
  // A class the table does not know: one operation for a leaf, nothing for a container.
  EXPECT_EQ(module_kernels(t, t.add_module(active, "x", "MyOp")), (KernelCounts{1, 2}));
  EXPECT_EQ(module_kernels(t, root), (KernelCounts{0, 0, true}));
}

// A module's call is its kernels' fixed costs plus the roofline of its FLOPs and the bytes it
// moves (its parameters, what it keeps, its output; twice in backward).
TEST(ComputeModel, AModuleCallPaysEachOfItsKernels) {
  ClusterSpec c = Cluster();
  c.kernel_launch_ns = 3000;
  c.autograd_node_ns = 500;
  const ComputeModel m(c, DType::kFloat32);  // 500 FLOP/ns, 500 B/ns
  ModuleTree t("t");
  const ModuleId root = t.add_module(kNoModule, "", "Net");
  const ModuleId linear = t.add_module(root, "fc", "Linear");
  t.add_parameter(linear, "weight", {100, 100}, DType::kFloat32);  // 40000 B
  t.add_parameter(linear, "bias", {100}, DType::kFloat32);         // 400 B
  t.set_cost(linear, ModuleCost{1'000'000, 4000, 4000});           // 48400 B moved
  const ModuleTimes times = m.module_call(t, linear);
  // Forward: matmul and bias, 2 x 3000, + max(2000 ns of FLOPs, 96.8 ns of bytes).
  EXPECT_EQ(times.forward, 2 * 3000 + 2000);
  // Backward: twice the FLOPs (4000 ns), 3 kernels (two products, the bias's sum) at 3500.
  EXPECT_EQ(times.backward, 3 * 3500 + 4000);
}

}  // namespace
}  // namespace zp::sim
