#include "exec/memory/counting_allocator.h"

#include <ATen/ATen.h>
#include <c10/core/CPUAllocator.h>
#include <gtest/gtest.h>

#include <array>
#include <map>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "core/util/error.h"
#include "exec/comm/op_log.h"
#include "exec/memory/memory_scope.h"

#ifdef ZEROPLAN_HAVE_CUDA
#include "exec/cuda/cuda_info.h"
#include "exec/memory/cuda_memory_meter.h"
#endif

namespace zp::exec::memory {
namespace {

using trace::MemoryCategory;

// What libtorch asks its allocator for a tensor: its storage's bytes.
std::int64_t nbytes(const at::Tensor& t) {
  return static_cast<std::int64_t>(t.storage().nbytes());
}

at::Tensor floats(std::int64_t n) {
  return at::empty({n}, at::kFloat);
}

TEST(MemoryScope, NestedScopesRestoreTheOuterCategory) {
  EXPECT_EQ(current_memory_category(), std::nullopt);
  {
    MemoryScope outer(MemoryCategory::kActivations);
    EXPECT_EQ(current_memory_category(), MemoryCategory::kActivations);
    {
      MemoryScope inner(MemoryCategory::kGatheredParams);
      EXPECT_EQ(current_memory_category(), MemoryCategory::kGatheredParams);
    }
    EXPECT_EQ(current_memory_category(), MemoryCategory::kActivations);
  }
  EXPECT_EQ(current_memory_category(), std::nullopt);
  EXPECT_EQ(current_slot(), kUnattributed);
}

TEST(MemoryScope, ANamedScopeNamesWhatItAllocatesAndAnUnnamedOneKeepsTheName) {
  const Label module = intern_label("transformer.h.0.attn");
  const Label gather = intern_label("gather 3");
  EXPECT_EQ(intern_label("gather 3"), gather);  // interned once
  EXPECT_EQ(label_text(gather), "gather 3");
  EXPECT_EQ(label_text(kNoLabel), "");
  EXPECT_EQ(current_label(), kNoLabel);
  {
    MemoryScope outer(MemoryCategory::kActivations);
    set_memory_label(module);  // what a hook does: the module running from now on
    {
      MemoryScope named(MemoryCategory::kGatheredParams, gather);
      EXPECT_EQ(current_label(), gather);
      EXPECT_EQ(current_slot(), static_cast<Slot>(MemoryCategory::kGatheredParams));
    }
    EXPECT_EQ(current_label(), module);
    const Label next = intern_label("transformer.h.0.mlp");
    {
      MemoryScope unnamed(MemoryCategory::kRecompute);
      EXPECT_EQ(current_label(), module);
      set_memory_label(next);  // a hook inside a recomputation
    }
    // The unnamed scope gave its category back, not the name set inside it.
    EXPECT_EQ(current_label(), next);
    EXPECT_EQ(current_memory_category(), MemoryCategory::kActivations);
    set_memory_label(kNoLabel);
  }
  EXPECT_EQ(current_label(), kNoLabel);
  EXPECT_EQ(current_memory_category(), std::nullopt);
}

TEST(CountingAllocator, InstallAndUninstallRestoreThePreviousAllocator) {
  c10::Allocator* const before = c10::GetCPUAllocator();
  for (int round = 0; round < 2; ++round) {
    CountingAllocator counting;
    EXPECT_EQ(c10::GetCPUAllocator(), counting.installed());
    EXPECT_EQ(counting.previous(), before);
    // c10 has one CPU allocator per process: a second counting one would count everything twice.
    EXPECT_THROW(CountingAllocator{}, InternalError);
    EXPECT_EQ(c10::GetCPUAllocator(), counting.installed());
  }
  EXPECT_EQ(c10::GetCPUAllocator(), before);
  // Still usable after the counting allocator is gone.
  EXPECT_EQ(floats(10).fill_(1).sum().item<float>(), 10);
}

TEST(CountingAllocator, CountsAllocationsThroughTheRawInterface) {
  c10::Allocator* const plain = c10::GetCPUAllocator();
  void* const before = plain->raw_allocate(48);  // allocated before installing
  {
    CountingAllocator counting;
    void* raw = nullptr;
    {
      MemoryScope scope(MemoryCategory::kRecompute);
      raw = c10::GetCPUAllocator()->raw_allocate(100);
    }
    EXPECT_EQ(counting.read().live[MemoryCategory::kRecompute], 100);
    c10::GetCPUAllocator()->raw_deallocate(raw);
    EXPECT_EQ(counting.read().live[MemoryCategory::kRecompute], 0);
    // Freed through the counting allocator, by the one it wraps.
    c10::GetCPUAllocator()->raw_deallocate(before);
    EXPECT_EQ(counting.read().frees, 1);
  }
}

TEST(CountingAllocator, OneDnnConvolutionRunsAndIsCounted) {
  const at::Tensor x = at::randn({2, 8, 32, 32}), w = at::randn({16, 8, 5, 5});
  const at::Tensor expected = at::conv2d(x, w);
  CountingAllocator counting;
  at::Tensor y;
  {
    MemoryScope scope(MemoryCategory::kActivations);
    y = at::mkldnn_convolution(x, w, {}, {0, 0}, {1, 1}, {1, 1}, 1);
  }
  EXPECT_TRUE(at::allclose(y, expected, 1e-4, 1e-4));
  EXPECT_GE(counting.read().category_peaks[MemoryCategory::kActivations], nbytes(y));
}

TEST(CountingAllocator, ChargesEachAllocationToTheCurrentCategory) {
  CountingAllocator counting;
  at::Tensor a, b, c, d;
  {
    MemoryScope scope(MemoryCategory::kGatheredParams);
    a = floats(1000);
  }
  {
    MemoryScope scope(MemoryCategory::kActivations);
    b = floats(37);  // not a multiple of the allocator's 64-byte alignment
    c = at::empty({3, 5}, at::kDouble);
  }
  d = floats(7);  // no scope: unattributed
  const MemoryReading r = counting.read();
  EXPECT_TRUE(r.has_categories);
  EXPECT_EQ(r.device, "cpu");
  EXPECT_EQ(r.live[MemoryCategory::kGatheredParams], 4000);
  EXPECT_EQ(r.live[MemoryCategory::kGatheredParams], nbytes(a));
  EXPECT_EQ(r.live[MemoryCategory::kActivations], 37 * 4 + 15 * 8);
  EXPECT_EQ(r.live[MemoryCategory::kActivations], nbytes(b) + nbytes(c));
  EXPECT_EQ(r.live.unattributed, nbytes(d));
  EXPECT_EQ(r.live[MemoryCategory::kGradBuckets], 0);
  EXPECT_EQ(r.allocated, nbytes(a) + nbytes(b) + nbytes(c) + nbytes(d));
  EXPECT_EQ(r.allocations, 4);
  EXPECT_EQ(r.frees, 0);
}

TEST(CountingAllocator, AFreeIsChargedToTheCategoryOfItsAllocation) {
  CountingAllocator counting;
  at::Tensor bucket;
  {
    MemoryScope scope(MemoryCategory::kGradBuckets);
    bucket = floats(256);
  }
  {
    MemoryScope scope(MemoryCategory::kActivations);
    const at::Tensor act = floats(100);
    bucket.reset();  // freed while activations are current
    const MemoryReading r = counting.read();
    EXPECT_EQ(r.live[MemoryCategory::kGradBuckets], 0);
    EXPECT_EQ(r.live[MemoryCategory::kActivations], 400);
    EXPECT_EQ(r.frees, 1);
  }
  EXPECT_EQ(counting.read().allocated, 0);
}

TEST(CountingAllocator, ARechargedBlockChangesCategoryAndSoDoesItsFree) {
  CountingAllocator counting;
  MemoryScope scope(MemoryCategory::kActivations);
  at::Tensor grad = floats(64);  // a gradient autograd made during backward
  const at::Tensor act = floats(32);
  EXPECT_TRUE(recharge(grad.storage().data(), MemoryCategory::kGradBuckets));
  MemoryReading r = counting.read();
  EXPECT_EQ(r.live[MemoryCategory::kActivations], 128);
  EXPECT_EQ(r.live[MemoryCategory::kGradBuckets], 256);
  EXPECT_EQ(r.allocated, 384);  // moving a block leaves the total as it was
  EXPECT_EQ(r.peak_allocated, 384);
  grad.reset();
  r = counting.read();
  EXPECT_EQ(r.live[MemoryCategory::kGradBuckets], 0);
  EXPECT_EQ(r.live[MemoryCategory::kActivations], 128);
  // Memory no counting allocator made is left alone.
  int unknown = 0;
  EXPECT_FALSE(recharge(&unknown, MemoryCategory::kGradBuckets));
}

TEST(CountingAllocator, PeakAndWhatWasLiveAtIt) {
  CountingAllocator counting;
  at::Tensor params, act1, act2, grads;
  {
    MemoryScope scope(MemoryCategory::kGatheredParams);
    params = floats(1000);  // 4000
  }
  {
    MemoryScope scope(MemoryCategory::kActivations);
    act1 = floats(500);  // 2000
    act2 = floats(250);  // 1000: peak 7000 here
  }
  act1.reset();
  act2.reset();
  params.reset();
  {
    MemoryScope scope(MemoryCategory::kGradBuckets);
    grads = floats(1500);  // 6000: below the peak
  }
  const MemoryReading r = counting.read();
  EXPECT_EQ(r.peak_allocated, 7000);
  EXPECT_EQ(r.at_peak.total(), 7000);
  EXPECT_EQ(r.at_peak[MemoryCategory::kGatheredParams], 4000);
  EXPECT_EQ(r.at_peak[MemoryCategory::kActivations], 3000);
  EXPECT_EQ(r.at_peak[MemoryCategory::kGradBuckets], 0);
  EXPECT_EQ(r.category_peaks[MemoryCategory::kGradBuckets], 6000);
  EXPECT_EQ(r.category_peaks[MemoryCategory::kActivations], 3000);
  EXPECT_GT(r.peak_time_ns, 0);

  counting.reset_peak();
  const MemoryReading reset = counting.read();
  EXPECT_EQ(reset.peak_allocated, 6000);
  EXPECT_EQ(reset.at_peak[MemoryCategory::kGradBuckets], 6000);
  EXPECT_EQ(reset.at_peak[MemoryCategory::kGatheredParams], 0);
}

TEST(CountingAllocator, AnotherThreadIsChargedToItsOwnScopeElseThePrimaryThreads) {
  CountingAllocator counting;  // this thread is the primary one
  MemoryScope primary(MemoryCategory::kCommBuffers);
  at::Tensor own, ambient;
  std::thread worker([&] {
    {
      MemoryScope scope(MemoryCategory::kOptimizerStates);
      own = floats(10);
    }
    ambient = floats(20);  // no scope on this thread
  });
  worker.join();
  const MemoryReading r = counting.read();
  EXPECT_EQ(r.live[MemoryCategory::kOptimizerStates], 40);
  EXPECT_EQ(r.live[MemoryCategory::kCommBuffers], 80);
  EXPECT_EQ(r.live.unattributed, 0);
}

TEST(CountingAllocator, AThreadWithNoScopeIsUnattributedWhenThePrimaryHasNone) {
  CountingAllocator counting;
  at::Tensor t;
  std::thread worker([&] { t = floats(16); });
  worker.join();
  EXPECT_EQ(counting.read().live.unattributed, 64);
}

TEST(CountingAllocator, ThreadsAllocatingAtOnceKeepTheBooksBalanced) {
  CountingAllocator counting;
  constexpr int kThreads = 4, kRounds = 20000;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([t] {
      MemoryScope scope(t % 2 == 0 ? MemoryCategory::kActivations : MemoryCategory::kRecompute);
      c10::Allocator* const allocator = c10::GetCPUAllocator();
      for (int i = 0; i < kRounds; ++i) {
        // Through c10's interface directly: many more allocations per second than via tensors,
        // so that the threads overlap in the books.
        void* a = allocator->raw_allocate(8 + i % 7);
        void* b = allocator->raw_allocate(64);
        allocator->raw_deallocate(a);
        allocator->raw_deallocate(b);
      }
      const at::Tensor keep = floats(3);
    });
  }
  for (std::thread& t : threads)
    t.join();
  const MemoryReading r = counting.read();
  EXPECT_EQ(r.allocations, kThreads * (2 * kRounds + 1));
  EXPECT_EQ(r.frees, r.allocations);
  EXPECT_EQ(r.allocated, 0);
  EXPECT_EQ(r.live[MemoryCategory::kActivations], 0);
  EXPECT_EQ(r.live[MemoryCategory::kRecompute], 0);
  EXPECT_EQ(r.at_peak.total(), r.peak_allocated);
  EXPECT_LE(r.peak_allocated, kThreads * (14 + 64));
}

TEST(CountingAllocator, SamplesBecomeTraceMemorySamples) {
  CountingAllocator counting(CountingAllocator::Options{.record_samples = true});
  const std::int64_t origin = comm::wall_clock_ns();
  at::Tensor a;
  {
    MemoryScope scope(MemoryCategory::kActivations);
    a = floats(8);
  }
  const at::Tensor unattributed = floats(4);
  a.reset();
  const std::vector<MemoryLedger::Sample> samples = counting.take_samples();
  ASSERT_EQ(samples.size(), 3u);
  EXPECT_EQ(samples[1].slot, kUnattributed);
  trace::Trace trace;
  append_to_trace(samples, 2, origin, trace);
  ASSERT_EQ(trace.memory.size(), 2u);  // the unattributed one has no trace category
  EXPECT_EQ(trace.memory[0].rank, 2);
  EXPECT_EQ(trace.memory[0].category, MemoryCategory::kActivations);
  EXPECT_EQ(trace.memory[0].bytes, 32);
  EXPECT_EQ(trace.memory[1].category, MemoryCategory::kActivations);
  EXPECT_EQ(trace.memory[1].bytes, 0);
  EXPECT_GE(trace.memory[0].time, 0);
  EXPECT_LE(trace.memory[0].time, trace.memory[1].time);
  EXPECT_TRUE(counting.take_samples().empty());
}

// The rows live at `time` (start <= time < end), per slot.
std::array<std::int64_t, kSlotCount> live_at(const std::vector<MemoryLedger::Allocation>& rows,
                                             std::int64_t time) {
  std::array<std::int64_t, kSlotCount> live{};
  for (const MemoryLedger::Allocation& a : rows)
    if (a.start_ns <= time && time < a.end_ns) live[a.slot] += a.bytes;
  return live;
}

TEST(CountingAllocator, RecordedAllocationsAddUpToTheSamplesAtEverySampledTime) {
  CountingAllocator counting(
      CountingAllocator::Options{.record_samples = true, .record_allocations = true});
  const Label w = intern_label("h.0.attn.c_attn.weight");
  const Label attn = intern_label("h.0.attn");
  at::Tensor param, grad, kept;
  {
    MemoryScope scope(MemoryCategory::kGatheredParams, w);
    param = floats(100);
  }
  {
    MemoryScope scope(MemoryCategory::kActivations);
    set_memory_label(attn);
    kept = floats(10);
    grad = floats(100);  // autograd's gradient: known as such only when handed over
    { const at::Tensor temporary = floats(50); }
    set_memory_label(kNoLabel);
  }
  EXPECT_TRUE(recharge(grad.storage().data(), MemoryCategory::kGradBuckets, w));
  {
    MemoryScope host(MemoryCategory::kHostActivations);
    kept = floats(3);  // frees the first one; host memory is not a device allocation
  }
  const at::Tensor unattributed = floats(7);
  param.reset();
  grad.reset();

  const std::vector<MemoryLedger::Sample> samples = counting.take_samples();
  const std::vector<MemoryLedger::Allocation> rows = counting.take_allocations();
  ASSERT_EQ(samples.size(), 12u);
  // The parameter, the kept activation, the gradient as an activation and as a bucket, the
  // temporary: the host block and the unattributed one are not device allocations.
  ASSERT_EQ(rows.size(), 5u);
  std::array<std::int64_t, kSlotCount> totals{};
  for (std::size_t i = 0; i < samples.size(); ++i) {
    totals[samples[i].slot] = samples[i].bytes;
    if (i + 1 < samples.size() && samples[i + 1].time_ns == samples[i].time_ns) continue;
    const std::array<std::int64_t, kSlotCount> live = live_at(rows, samples[i].time_ns);
    for (Slot s = 0; s < kUnattributed; ++s) {
      if (is_device_slot(s)) {
        EXPECT_EQ(live[s], totals[s]) << "sample " << i << " slot " << int{s};
      }
    }
  }
  std::map<std::string, std::vector<MemoryLedger::Allocation>> by_name;
  for (const MemoryLedger::Allocation& a : rows) {
    by_name[label_text(a.label)].push_back(a);
    EXPECT_LT(a.start_ns, a.end_ns);
  }
  ASSERT_EQ(by_name[label_text(w)].size(), 3u);  // the parameter, and the gradient renamed
  ASSERT_EQ(by_name[label_text(attn)].size(), 2u);
  for (const MemoryLedger::Allocation& a : by_name[label_text(attn)])
    EXPECT_EQ(a.slot, static_cast<Slot>(MemoryCategory::kActivations));
  // The gradient's life splits where it was recharged: one end is the other's start.
  std::vector<MemoryLedger::Allocation> grad_rows;
  for (const MemoryLedger::Allocation& a : by_name[label_text(w)])
    if (a.slot != static_cast<Slot>(MemoryCategory::kGatheredParams)) grad_rows.push_back(a);
  ASSERT_EQ(grad_rows.size(), 2u);
  EXPECT_EQ(grad_rows[0].slot, static_cast<Slot>(MemoryCategory::kActivations));
  EXPECT_EQ(grad_rows[1].slot, static_cast<Slot>(MemoryCategory::kGradBuckets));
  EXPECT_EQ(grad_rows[0].end_ns, grad_rows[1].start_ns);
  EXPECT_EQ(grad_rows[0].bytes, 400);
  EXPECT_TRUE(counting.take_allocations().empty());
}

TEST(CountingAllocator, ABlockStillLiveIsListedAsStillGoing) {
  CountingAllocator counting(CountingAllocator::Options{.record_allocations = true});
  at::Tensor partitions;
  {
    MemoryScope scope(MemoryCategory::kParamPartitions, intern_label("parameter partitions"));
    partitions = floats(16);
  }
  const std::vector<MemoryLedger::Allocation> rows = counting.take_allocations();
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].end_ns, MemoryLedger::kStillLive);
  EXPECT_EQ(rows[0].bytes, 64);
  EXPECT_EQ(label_text(rows[0].label), "parameter partitions");

  trace::Trace trace;
  const std::int64_t origin = rows[0].start_ns - 5;
  append_to_trace(rows, 1, origin, trace);
  ASSERT_EQ(trace.allocations.size(), 1u);
  const trace::Allocation& a = trace.allocations[0];
  EXPECT_EQ(a.rank, 1);
  EXPECT_EQ(a.category, MemoryCategory::kParamPartitions);
  EXPECT_EQ(a.start, 5);
  EXPECT_EQ(a.end, trace::kNever);
  ASSERT_NE(a.name, trace::kNone);
  EXPECT_EQ(trace.string(a.name), "parameter partitions");
}

TEST(MemoryLedger, ALifeThatEndsNoLaterThanItStartsIsNotRecorded) {
  MemoryLedger ledger(MemoryLedger::Options{.record_allocations = true});
  const auto slot = static_cast<Slot>(MemoryCategory::kActivations);
  const std::int64_t start = ledger.allocated(slot, 64);
  EXPECT_GT(start, 0);
  ledger.freed(slot, 64, start, kNoLabel);
  ASSERT_EQ(ledger.take_allocations().size(), 1u);
  // A block whose free reads the clock at its allocation's nanosecond was never live at a sampled
  // time: the samples of that time net to nothing. (A start ahead of the clock stands in for it
  // here: the clock cannot be made to repeat a reading.)
  ledger.allocated(slot, 64);
  ledger.freed(slot, 64, comm::wall_clock_ns() + 1'000'000'000, kNoLabel);
  EXPECT_TRUE(ledger.take_allocations().empty());
}

TEST(CountingAllocator, WithoutRecordingAllocationsNoneAreListed) {
  CountingAllocator counting(CountingAllocator::Options{.record_samples = true});
  MemoryScope scope(MemoryCategory::kActivations, intern_label("model"));
  const at::Tensor t = floats(8);
  { const at::Tensor gone = floats(8); }
  EXPECT_TRUE(counting.take_allocations().empty());
}

TEST(CountingAllocator, WithoutSamplingRecordsNoSamples) {
  CountingAllocator counting;
  const at::Tensor t = floats(8);
  EXPECT_TRUE(counting.take_samples().empty());
}

#ifdef ZEROPLAN_HAVE_CUDA
TEST(CudaMemoryMeter, SaysWhyItCannotReadOrReadsTheDevice) {
  EXPECT_NE(cuda_memory_unavailable(-1), "");
  const std::string why = cuda_memory_unavailable(0);
  if (cuda_info().visible_gpus == 0) {
    EXPECT_NE(why.find("no GPU visible"), std::string::npos) << why;
  }
  if (!why.empty()) {
    try {
      make_cuda_memory_meter(0);
      ADD_FAILURE() << "no UserError";
    } catch (const UserError& e) {
      EXPECT_NE(std::string(e.what()).find(why), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("cuda:0"), std::string::npos) << e.what();
    }
    return;
  }
  const auto meter = make_cuda_memory_meter(0);
  const MemoryReading r = meter->read();
  EXPECT_EQ(r.device, "cuda:0");
  EXPECT_FALSE(r.has_categories);
  EXPECT_LE(r.allocated, r.reserved);
}
#endif

}  // namespace
}  // namespace zp::exec::memory
