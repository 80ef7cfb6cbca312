// The simulator is the planner's inner loop. Targets (issue 5), one core: llama-2-7b on 64 GPUs
// (8 nodes), one steady-state data-parallel step, under 0.5 ms; llama-2-70b on 1024 GPUs with 8
// pipeline stages and 64 micro-batches, under 100 ms; memory linear in the simulated ranks'
// events, not in the number of GPUs.
//
// Baseline in the same run: BM_Decisions, the core's ZeRO-3 decisions for the same steps with a
// backend that does nothing. Each benchmark reports the heap it peaked at (peak_heap_bytes),
// counted by the operator new below in one untimed run before the timed ones (counting costs
// atomics on every allocation, which would be timed too), so that 64 and 1024 GPUs can be
// compared.
#include <benchmark/benchmark.h>

#include <atomic>
#include <cstdlib>
#include <new>
#include <string>

#include "bench/null_backend.h"
#include "core/config/document.h"
#include "core/config/run_spec.h"
#include "core/zero/training_step.h"
#include "sim/simulate.h"

namespace {

// Heap accounting while g_counting: current and peak bytes, with the size of each counted block
// stored in front of it (0 for a block allocated while not counting).
std::atomic<bool> g_counting{false};
std::atomic<std::int64_t> g_heap{0};
std::atomic<std::int64_t> g_heap_peak{0};

void* counted_alloc(std::size_t size) {
  auto* p = static_cast<std::int64_t*>(std::malloc(size + 16));
  if (!p) throw std::bad_alloc();
  if (!g_counting.load(std::memory_order_relaxed)) {
    *p = 0;
    return reinterpret_cast<char*>(p) + 16;
  }
  *p = static_cast<std::int64_t>(size);
  const std::int64_t now = g_heap += static_cast<std::int64_t>(size);
  std::int64_t peak = g_heap_peak.load();
  while (now > peak && !g_heap_peak.compare_exchange_weak(peak, now)) {
  }
  return reinterpret_cast<char*>(p) + 16;
}

void counted_free(void* q) {
  if (!q) return;
  auto* p = reinterpret_cast<std::int64_t*>(static_cast<char*>(q) - 16);
  if (*p != 0) g_heap -= *p;
  std::free(p);
}

}  // namespace

void* operator new(std::size_t size) {
  return counted_alloc(size);
}
void* operator new[](std::size_t size) {
  return counted_alloc(size);
}
void operator delete(void* p) noexcept {
  counted_free(p);
}
void operator delete[](void* p) noexcept {
  counted_free(p);
}
void operator delete(void* p, std::size_t) noexcept {
  counted_free(p);
}
void operator delete[](void* p, std::size_t) noexcept {
  counted_free(p);
}

namespace {

zp::RunSpec Run(const std::string& yaml) {
  return zp::parse_run_spec(zp::Document::from_yaml(yaml, "bench.yaml"), ".");
}

// llama-2-7b, data parallel over `nodes` DGX A100 nodes, ZeRO-3 with DeepSpeed's defaults but a
// persistence threshold that keeps the small norms whole, one micro-batch of 4096 tokens.
zp::RunSpec Llama7bDataParallel(int nodes) {
  return Run("model: llama-2-7b\ncluster: {preset: dgx-a100-80g, nodes: " + std::to_string(nodes) +
             "}\ntraining: {sequence_length: 4096, micro_batch: 1, dtype: bf16}\n"
             "deepspeed: {train_micro_batch_size_per_gpu: 1, gradient_accumulation_steps: 1, "
             "bf16: {enabled: true}, zero_optimization: {stage: 3}}\n");
}

void Measure(benchmark::State& state, const zp::RunSpec& run, const zp::sim::SimOptions& options,
             bool trace) {
  std::int64_t peak_heap = 0;
  std::int64_t ops = 0;
  {
    g_heap = 0;
    g_heap_peak = 0;
    g_counting = true;
    zp::trace::Trace t;
    const zp::sim::SimulationResult r = zp::sim::simulate(run, options, trace ? &t : nullptr);
    benchmark::DoNotOptimize(r.step_time_ns);
    g_counting = false;
    peak_heap = g_heap_peak.load();
    ops = static_cast<std::int64_t>(t.ops.size());
  }
  for (auto _ : state) {
    zp::trace::Trace t;
    const zp::sim::SimulationResult r = zp::sim::simulate(run, options, trace ? &t : nullptr);
    benchmark::DoNotOptimize(r.step_time_ns);
  }
  state.counters["peak_heap_bytes"] = static_cast<double>(peak_heap);
  if (trace) state.counters["trace_ops"] = static_cast<double>(ops);
}

// The planner's setting: no trace, no allocator model.
void BM_SimulateLlama7b(benchmark::State& state) {
  const zp::RunSpec run = Llama7bDataParallel(static_cast<int>(state.range(0)));
  zp::sim::SimOptions options;
  options.model_allocator = false;
  Measure(state, run, options, false);
}
BENCHMARK(BM_SimulateLlama7b)->Arg(8)->Arg(128)->Unit(benchmark::kMicrosecond);

// `zeroplan simulate`'s setting: the caching allocator modelled and the trace recorded.
void BM_SimulateLlama7bWithTraceAndAllocator(benchmark::State& state) {
  const zp::RunSpec run = Llama7bDataParallel(8);
  Measure(state, run, zp::sim::SimOptions{}, true);
}
BENCHMARK(BM_SimulateLlama7bWithTraceAndAllocator)->Unit(benchmark::kMicrosecond);

// llama-2-70b on 128 DGX H100 nodes (1024 GPUs): 8 pipeline stages x 128 data-parallel, ZeRO-1,
// 64 micro-batches of 4096 tokens per step, every layer checkpointed.
zp::RunSpec Llama70bPipeline() {
  return Run(
      "model: llama-2-70b\ncluster: {preset: dgx-h100, nodes: 128}\n"
      "training: {sequence_length: 4096, micro_batch: 1, dtype: bf16}\n"
      "parallel: {pipeline: 8}\n"
      "deepspeed: {train_micro_batch_size_per_gpu: 1, gradient_accumulation_steps: 64, "
      "bf16: {enabled: true}, zero_optimization: {stage: 1}, "
      "pipeline: {stages: 8, activation_checkpoint_interval: 1}}\n");
}

void BM_SimulateLlama70bPipeline(benchmark::State& state) {
  const zp::RunSpec run = Llama70bPipeline();
  zp::sim::SimOptions options;
  options.model_allocator = false;
  Measure(state, run, options, false);
}
BENCHMARK(BM_SimulateLlama70bPipeline)->Unit(benchmark::kMillisecond);

// Baseline: the decisions alone for what the simulation runs (setup, warm-up steps until the
// trace is complete, one step).
void BM_Decisions(benchmark::State& state) {
  const zp::RunSpec run = Llama7bDataParallel(8);
  for (auto _ : state) {
    const zp::zero::ZeroModel model(run.tree, run.zero_settings());
    zp::bench::NullBackend backend;
    zp::zero::TrainingLoop loop(model, backend, backend);
    loop.initialize();
    while (loop.coordinator().mode() != zp::zero::TraceMode::kComplete)
      loop.step();
    loop.step();
    benchmark::DoNotOptimize(loop.steps_done());
  }
}
BENCHMARK(BM_Decisions)->Unit(benchmark::kMicrosecond);

}  // namespace

BENCHMARK_MAIN();
