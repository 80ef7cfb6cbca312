// The tuner's speed targets: for llama-2-7b on 64 GPUs, at least 3,000 simulated configurations
// per second on two cores, and a full tune over the default search space in under 10 seconds.
// Run with --benchmark_repetitions=N and quote medians; BM_OneSimulation is the baseline that the
// configurations-per-second figure is compared with in the same run.
#include <benchmark/benchmark.h>

#include <string>

#include "core/config/run_spec.h"
#include "planner/search.h"
#include "planner/search_space.h"

namespace {

// llama-2-7b on 8 DGX A100 nodes (64 GPUs), ZeRO-3, every layer checkpointed: the case.
zp::RunSpec Llama7b64() {
  return zp::parse_run_spec(
      zp::Document::from_yaml(
          "model: llama-2-7b\ncluster: {preset: dgx-a100-80g, nodes: 8}\n"
          "training: {sequence_length: 4096, micro_batch: 1, dtype: bf16, checkpoint_interval: 1}\n"
          "deepspeed: {train_micro_batch_size_per_gpu: 1, gradient_accumulation_steps: 1, "
          "bf16: {enabled: true}, zero_optimization: {stage: 3}}\n",
          "bench.yaml"),
      ".");
}

// One simulation as the tuner runs it (allocator modelled, no trace), on one core.
void BM_OneSimulation(benchmark::State& state) {
  const zp::RunSpec run = Llama7b64();
  for (auto _ : state) {
    const zp::planner::Evaluation e = zp::planner::evaluate(run, true);
    benchmark::DoNotOptimize(e.step_ns);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_OneSimulation)->Unit(benchmark::kMicrosecond);

// Simulated configurations per second: an exhaustive search of a slice of the default space
// (thresholds free, the rest pinned), on `workers` threads (first argument); the second argument
// says whether configurations that decide as an earlier one share its timed step
// (sim::DecisionMemo), so that the run measures the figure with and without it.
void BM_ConfigurationsPerSecond(benchmark::State& state) {
  const zp::RunSpec run = Llama7b64();
  zp::planner::SpaceOptions space_options;
  space_options.pins = {{"checkpoint_interval", "1"},
                        {"contiguous_gradients", "true"},
                        {"reduce_bucket_size", "5e8"},
                        {"offload_optimizer", "none"},
                        {"offload_param", "none"},
                        {"cpu_checkpointing", "false"},
                        {"overlap_comm", "true"},
                        {"module_granularity_threshold", "0"},
                        {"param_persistence_threshold", "4096"}};
  const zp::planner::SearchSpace space = zp::planner::build_search_space(run, space_options);
  zp::planner::SearchOptions options;
  options.exhaustive = true;
  options.workers = static_cast<int>(state.range(0));
  options.share_decisions = state.range(1) != 0;
  std::int64_t simulated = 0;
  zp::planner::SearchStats stats;
  for (auto _ : state) {
    const zp::planner::SearchResult r = zp::planner::search(run, space, options);
    simulated += r.stats.simulated;
    stats = r.stats;
    benchmark::DoNotOptimize(r.best);
  }
  state.SetItemsProcessed(simulated);
  state.counters["configurations"] = space.size();
  state.counters["shared_steps"] = static_cast<double>(stats.shared_steps);
}
BENCHMARK(BM_ConfigurationsPerSecond)
    ->ArgNames({"workers", "shared"})
    ->Args({1, 0})
    ->Args({1, 1})
    ->Args({2, 0})
    ->Args({2, 1})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

// A full tune: the default search space, the fastest step within a budget that binds.
void BM_FullTune(benchmark::State& state) {
  const zp::RunSpec run = Llama7b64();
  const zp::planner::SearchSpace space = zp::planner::build_search_space(run, {});
  zp::planner::SearchOptions options;
  options.memory_budget = state.range(0) * (std::int64_t{1} << 30);
  options.workers = 2;
  zp::planner::SearchResult last;
  for (auto _ : state)
    last = zp::planner::search(run, space, options);
  state.counters["space"] = last.stats.space;
  state.counters["simulated"] = static_cast<double>(last.stats.simulated);
  state.counters["pruned"] =
      last.stats.pruned_over_budget + last.stats.pruned_dominated + last.stats.pruned_too_slow;
}
BENCHMARK(BM_FullTune)->Arg(80)->Arg(24)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
