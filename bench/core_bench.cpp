// Costs of the front end: building model trees and resolving run specs. Baselines for the
// planner, which resolves and builds many configurations.
#include <benchmark/benchmark.h>

#include <filesystem>

#include "core/config/run_spec.h"
#include "core/model/presets.h"

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

}  // namespace

BENCHMARK_MAIN();
