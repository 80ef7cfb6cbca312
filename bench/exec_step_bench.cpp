// ZeRO-3's step time against plain data parallelism (issue 6's speed target: at most 1.15x, with
// the engine's own overhead under 5% of the step), on the small GPT: GPT-2 style, 4 blocks,
// hidden 256, 4 heads, vocabulary 4096, sequence 128, micro-batch 4, on 2 ranks over Gloo, one
// intra-op thread per rank (as OMP_NUM_THREADS=1 gives each process of a real launch).
//
// Each repetition starts both ranks (threads of this process), builds both trainers on each, warms
// each up for 2 steps (ZeRO-3's first step records the trace; prefetching starts after it) and
// then alternates a data-parallel step and a ZeRO-3 step 8 times, so that the machine's load moves
// both alike. Counters (rank 0's medians of the 8): dp_ms, zero3_ms, ratio = zero3/dp, and
// overhead_pct = the engine's time in hooks outside communication waits, as a share of the ZeRO-3
// step. Run with --benchmark_repetitions=N and quote the medians.
//
// Arg 0: DeepSpeed's default stage-3 thresholds; arg 1: tight ones that force prefetch, release
// and re-gathering (bench/oracle has the same two configs for real DeepSpeed).
#include <ATen/Parallel.h>
#include <benchmark/benchmark.h>

#include <algorithm>
#include <vector>

#include "core/model/model_config.h"
#include "core/zero/zero_model.h"
#include "exec/comm/local_ranks.h"
#include "exec/model/lm_model.h"
#include "exec/runtime/backend_info.h"
#include "exec/train/data_parallel.h"
#include "exec/zero/zero3_engine.h"

namespace {

using namespace zp;
using namespace zp::exec;

ModelConfig small_gpt() {
  ModelConfig c = family_defaults(ModelFamily::kGpt2);
  c.name = "small-gpt";
  c.vocab_size = 4096;
  c.hidden_size = 256;
  c.num_layers = 4;
  c.num_heads = 4;
  c.max_position_embeddings = 128;
  c.dropout = 0.0;
  c.attention_dropout = 0.0;
  c.tie_word_embeddings = true;
  return c;
}

zero::ZeroSettings settings(bool tight) {
  zero::ZeroSettings s;
  s.data_parallel_size = 2;
  if (tight) {
    s.max_live_parameters = 300'000;
    s.prefetch_bucket_size = 100'000;
    s.max_reuse_distance = 200'000;
    s.param_persistence_threshold = 1000;
    s.reduce_bucket_size = 500'000;
  }
  return s;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

void BM_Zero3AgainstDataParallel(benchmark::State& state) {
  constexpr int kWorld = 2;
  constexpr int kWarmup = 2;
  constexpr int kRounds = 8;
  const ModelConfig config = small_gpt();
  const ModuleTree tree = build_model(config, BatchShape{4, 128, DType::kFloat32});
  const zero::ZeroModel zero_model(tree, settings(state.range(0) == 1));
  const OptimizerSpec sgd{.kind = OptimizerKind::kSgd, .lr = 0.01};
  const SyntheticData data{.seed = 1, .global_batch = 4 * kWorld, .seq = 128, .vocab = 4096};
  const int threads_before = at::get_num_threads();
  at::set_num_threads(1);

  for (auto _ : state) {
    std::vector<double> dp_ms, zero3_ms, overhead;
    comm::run_local_ranks(kWorld, [&](comm::Communicator& group) {
      LmModel dp_model(config, tree, 3);
      LmModel zero3_model(config, tree, 3);
      DataParallelTrainer dp(dp_model, group, sgd);
      Zero3Engine zero3(zero3_model, zero_model, group, Zero3Options{sgd});
      for (int step = 0; step < kWarmup + kRounds; ++step) {
        const std::vector<TokenBatch> micro{
            micro_batch(synthetic_batch(data, step), group.rank(), kWorld)};
        const DataParallelStats d = dp.step(micro);
        const Zero3StepStats z = zero3.step(micro);
        if (group.rank() == 0 && step >= kWarmup) {
          dp_ms.push_back(static_cast<double>(d.step_ns) / 1e6);
          zero3_ms.push_back(static_cast<double>(z.step_ns) / 1e6);
          overhead.push_back(100.0 * static_cast<double>(z.overhead_ns()) /
                             static_cast<double>(z.step_ns));
        }
      }
    });
    state.SetIterationTime(median(zero3_ms) / 1e3);
    state.counters["dp_ms"] = median(dp_ms);
    state.counters["zero3_ms"] = median(zero3_ms);
    state.counters["ratio"] = median(zero3_ms) / median(dp_ms);
    state.counters["overhead_pct"] = median(overhead);
  }
  at::set_num_threads(threads_before);
}
BENCHMARK(BM_Zero3AgainstDataParallel)
    ->Arg(0)
    ->Arg(1)
    ->Iterations(1)
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);

}  // namespace

int main(int argc, char** argv) {
  // The figures mean little on the reference BLAS: say which one ran.
  benchmark::AddCustomContext("backend", zp::exec::describe(zp::exec::backend_info()));
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
