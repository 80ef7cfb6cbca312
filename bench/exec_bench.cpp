// The cost of measuring memory in exec: the counting CPU allocator against the plain one it wraps,
// per allocation and free and on a small matmul-and-add loop, and the cost of a category scope.
//
// Each "Ratio" benchmark times the same work with the plain and the counting allocator in
// alternating batches of the same run (which goes first alternates too) and reports
// counting/plain as the counter "ratio": run with --benchmark_repetitions=N and quote the median's
// ratio. One intra-op thread, so that the loaded machine's scheduling moves both sides alike.
// The benchmarks with a second argument run the counting allocator without recording (0), with
// every change sampled (1), and with the samples and every allocation's life, as a trace records
// them (2): compare the rows' ratios of one run for what tracing costs. (Each recorded change
// reads the wall clock, which is most of it.)
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <benchmark/benchmark.h>
#include <c10/core/CPUAllocator.h>

#include <chrono>
#include <cstdint>

#include "exec/memory/counting_allocator.h"
#include "exec/memory/memory_ledger.h"
#include "exec/memory/memory_scope.h"

namespace {

using zp::exec::memory::CountingAllocator;
using zp::exec::memory::MemoryCategory;
using zp::exec::memory::MemoryLedger;
using zp::exec::memory::MemoryScope;

c10::Allocator* as_allocator(const void* p) {
  return const_cast<c10::Allocator*>(static_cast<const c10::Allocator*>(p));
}

// Runs `batch` alternately under the plain and the counting allocator, `batches` times per
// benchmark iteration, and reports ns per call of each and their ratio.
template <typename Work>
void run_ratio(benchmark::State& state, std::int64_t calls_per_batch, Work&& batch,
               std::int64_t recording = 0) {
  at::set_num_threads(1);
  CountingAllocator counting(CountingAllocator::Options{.record_samples = recording >= 1,
                                                        .record_allocations = recording >= 2});
  const bool traced = recording > 0;
  c10::Allocator* const counted = as_allocator(counting.installed());
  c10::Allocator* const plain = as_allocator(counting.previous());
  MemoryScope scope(MemoryCategory::kActivations);
  using Clock = std::chrono::steady_clock;
  double plain_ns = 0, counting_ns = 0;
  bool plain_first = true;
  auto timed = [&](c10::Allocator* allocator) {
    c10::SetCPUAllocator(allocator, CountingAllocator::kPriority);
    const auto start = Clock::now();
    batch();
    return std::chrono::duration<double, std::nano>(Clock::now() - start).count();
  };
  batch();  // warm up the caches of both (malloc's, OpenBLAS's)
  for (auto _ : state) {
    if (plain_first) {
      plain_ns += timed(plain);
      counting_ns += timed(counted);
    } else {
      counting_ns += timed(counted);
      plain_ns += timed(plain);
    }
    plain_first = !plain_first;
    if (traced) {
      // Outside the timed batches: the records would otherwise grow without bound.
      state.PauseTiming();
      benchmark::DoNotOptimize(counting.take_samples());
      benchmark::DoNotOptimize(counting.take_allocations());
      state.ResumeTiming();
    }
  }
  c10::SetCPUAllocator(counted, CountingAllocator::kPriority);  // the destructor restores plain
  const double calls = static_cast<double>(state.iterations() * calls_per_batch);
  state.counters["plain_ns"] = plain_ns / calls;
  state.counters["counting_ns"] = counting_ns / calls;
  state.counters["ratio"] = counting_ns / plain_ns;
}

// One allocation and its free through c10's allocator interface: the allocator alone.
void BM_AllocFreeRatio(benchmark::State& state) {
  const auto bytes = static_cast<std::size_t>(state.range(0));
  constexpr int kCalls = 256;
  run_ratio(
      state, kCalls,
      [&] {
        for (int i = 0; i < kCalls; ++i) {
          c10::DataPtr p = c10::GetCPUAllocator()->allocate(bytes);
          benchmark::DoNotOptimize(p.get());
        }
      },
      state.range(1));
}
BENCHMARK(BM_AllocFreeRatio)->ArgsProduct({{64, 4096, 1 << 20}, {0, 1, 2}});

// A tensor made and dropped: the allocation as libtorch code pays it, with the TensorImpl.
void BM_EmptyTensorRatio(benchmark::State& state) {
  const std::int64_t numel = state.range(0);
  constexpr int kCalls = 256;
  run_ratio(
      state, kCalls,
      [&] {
        for (int i = 0; i < kCalls; ++i) {
          at::Tensor t = at::empty({numel});
          benchmark::DoNotOptimize(t.data_ptr());
        }
      },
      state.range(1));
}
BENCHMARK(BM_EmptyTensorRatio)->ArgsProduct({{16, 1 << 18}, {0, 1, 2}});

// y = x @ w + b over square matrices: two allocations and two frees per step.
void BM_MatmulAddRatio(benchmark::State& state) {
  const std::int64_t n = state.range(0);
  const at::Tensor x = at::randn({n, n}), w = at::randn({n, n}), b = at::randn({n});
  constexpr int kSteps = 32;
  run_ratio(state, kSteps, [&] {
    for (int i = 0; i < kSteps; ++i) {
      at::Tensor y = at::matmul(x, w) + b;
      benchmark::DoNotOptimize(y.data_ptr());
    }
  });
}
BENCHMARK(BM_MatmulAddRatio)->Arg(16)->Arg(64)->Arg(256);

void BM_MemoryScope(benchmark::State& state) {
  for (auto _ : state) {
    MemoryScope scope(MemoryCategory::kGatheredParams);
    benchmark::ClobberMemory();
  }
}
BENCHMARK(BM_MemoryScope);

// The ledger's books alone: one allocation and one free.
void BM_LedgerAllocFree(benchmark::State& state) {
  MemoryLedger ledger;
  for (auto _ : state) {
    ledger.allocated(3, 4096);
    ledger.freed(3, 4096);
  }
}
BENCHMARK(BM_LedgerAllocFree);

}  // namespace

BENCHMARK_MAIN();
