// Costs of the front end: building model trees and resolving run specs. Baselines for the
// planner, which resolves and builds many configurations.
#include <benchmark/benchmark.h>

#include <filesystem>

#include "bench/null_backend.h"
#include "core/config/run_spec.h"
#include "core/model/presets.h"
#include "core/zero/training_step.h"

namespace {

void BM_BuildModel(benchmark::State& state, const char* preset) {
  const zp::ModelConfig& config = *zp::find_preset(preset);
  for (auto _ : state) {
    zp::ModuleTree tree = zp::build_model(config, zp::BatchShape{1, 1024, zp::DType::kBFloat16});
    benchmark::DoNotOptimize(tree.modules().data());
  }
}
BENCHMARK_CAPTURE(BM_BuildModel, gpt2, "gpt2");
BENCHMARK_CAPTURE(BM_BuildModel, llama_2_70b, "llama-2-70b");
BENCHMARK_CAPTURE(BM_BuildModel, mixtral_8x7b, "mixtral-8x7b");

void BM_LoadRunSpec(benchmark::State& state, const char* example) {
  const auto path = std::filesystem::path(ZEROPLAN_SOURCE_DIR) / "configs" / "examples" / example;
  for (auto _ : state) {
    zp::RunSpec run = zp::load_run_spec(path);
    benchmark::DoNotOptimize(run.tree.modules().data());
  }
}
BENCHMARK_CAPTURE(BM_LoadRunSpec, gpt2_zero3, "gpt2-zero3.yaml");
BENCHMARK_CAPTURE(BM_LoadRunSpec, llama2_70b, "llama2-70b-h100.yaml");

// One ZeRO-3 training step's decisions (in COMPLETE mode, after the recording step), with
// DeepSpeed's default thresholds over 64 data-parallel ranks.
void BM_Zero3Step(benchmark::State& state, const char* preset) {
  const zp::ModuleTree tree =
      zp::build_model(*zp::find_preset(preset), zp::BatchShape{1, 1024, zp::DType::kBFloat16});
  zp::zero::ZeroSettings settings;
  settings.data_parallel_size = 64;
  const zp::zero::ZeroModel model(tree, settings);
  zp::bench::NullBackend backend;
  zp::zero::TrainingLoop loop(model, backend, backend);
  loop.initialize();
  loop.step();
  for (auto _ : state)
    loop.step();
  state.counters["hooks"] =
      static_cast<double>(loop.schedule().forward.size() + loop.schedule().backward.size());
}
BENCHMARK_CAPTURE(BM_Zero3Step, gpt2, "gpt2");
BENCHMARK_CAPTURE(BM_Zero3Step, llama_2_70b, "llama-2-70b");

}  // namespace

BENCHMARK_MAIN();
