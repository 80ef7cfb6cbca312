// A measured trace end to end: `zeroplan-exec --nproc 2` (ranks as processes, so each counts its
// own memory) traces the bundled tiny GPT-2, and the trace's allocations must be what its memory
// samples are made of, named as the simulator names its blocks, so that the viewer can list the
// largest tensors live at any time of a measurement as it does of a prediction.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "core/config/run_spec.h"
#include "core/trace/native_format.h"
#include "core/trace/trace.h"
#include "tests/exec/launch/process.h"
#ifdef ZEROPLAN_HAS_GUI_VIEW
#include "gui/view/memory_series.h"
#endif

namespace zp::exec {
namespace {

namespace fs = std::filesystem;
using trace::MemoryCategory;

// The trace `zeroplan-exec --nproc 2` writes for the bundled example `example`.
std::optional<trace::Trace> measure(const std::string& example) {
  const fs::path dir = fs::temp_directory_path() / ("zeroplan_measured_trace_test." +
                                                    std::to_string(::getpid()) + "." + example);
  fs::create_directories(dir);
  const fs::path file = dir / "measured.trace.json";
  const testing::Outcome exec =
      testing::run(std::string(ZEROPLAN_BINARY_DIR) + "/zeroplan-exec",
                   {std::string(ZEROPLAN_SOURCE_DIR) + "/configs/examples/" + example + ".yaml",
                    "--nproc", "2", "--steps", "2", "--timeout", "120", "--trace", file.string()});
  EXPECT_EQ(exec.status, 0) << exec.err;
  std::optional<trace::Trace> t;
  if (exec.status == 0) t = trace::read_native(file);
  fs::remove_all(dir);
  return t;
}

// At every sampled time of `rank` (after all samples of that time), the allocations live then add
// up to each device category's total.
void expect_allocations_add_up(const trace::Trace& t, std::int32_t rank) {
  SCOPED_TRACE("rank " + std::to_string(rank));
  std::vector<trace::MemorySample> samples;
  for (const trace::MemorySample& m : t.memory)
    if (m.rank == rank) samples.push_back(m);
  std::stable_sort(samples.begin(), samples.end(),
                   [](const auto& a, const auto& b) { return a.time < b.time; });
  // Every start and end as a change of its category at its time, swept with the samples.
  struct Change {
    trace::TimeNs time;
    std::size_t category;
    std::int64_t bytes;
  };
  std::vector<Change> changes;
  for (const trace::Allocation& a : t.allocations) {
    if (a.rank != rank) continue;
    EXPECT_TRUE(trace::on_device(a.category));
    EXPECT_LT(a.start, a.end);
    changes.push_back({a.start, static_cast<std::size_t>(a.category), a.bytes});
    if (a.end != trace::kNever)
      changes.push_back({a.end, static_cast<std::size_t>(a.category), -a.bytes});
  }
  std::sort(changes.begin(), changes.end(),
            [](const Change& a, const Change& b) { return a.time < b.time; });
  std::array<std::int64_t, trace::kMemoryCategoryCount> totals{}, live{};
  std::size_t next = 0;
  std::int64_t checked = 0, mismatches = 0;
  for (std::size_t i = 0; i < samples.size(); ++i) {
    totals[static_cast<std::size_t>(samples[i].category)] = samples[i].bytes;
    if (i + 1 < samples.size() && samples[i + 1].time == samples[i].time) continue;
    for (; next < changes.size() && changes[next].time <= samples[i].time; ++next)
      live[changes[next].category] += changes[next].bytes;
    for (std::size_t c = 0; c < trace::kMemoryCategoryCount; ++c) {
      if (!trace::on_device(static_cast<MemoryCategory>(c))) continue;
      if (live[c] != totals[c] && ++mismatches <= 5) {
        ADD_FAILURE() << "at " << samples[i].time << ": "
                      << trace::to_string(static_cast<MemoryCategory>(c)) << " allocations "
                      << live[c] << ", samples " << totals[c];
      }
    }
    ++checked;
  }
  EXPECT_EQ(mismatches, 0);
  EXPECT_GT(checked, 100);
}

class MeasuredTrace : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    std::optional<trace::Trace> measured = measure("tiny-gpt2-cpu");
    if (measured) trace_ = new trace::Trace(std::move(*measured));
    names_ = {"parameters",     "parameter partitions", "gradient partitions",
              "master weights", "optimizer states",     "model",
              "ipg buffer"};
    const RunSpec spec =
        load_run_spec(std::string(ZEROPLAN_SOURCE_DIR) + "/configs/examples/tiny-gpt2-cpu.yaml");
    for (const Parameter& p : spec.tree.parameters())
      names_.insert(p.name);
    for (ModuleId m = 1; m < static_cast<ModuleId>(spec.tree.modules().size()); ++m)
      names_.insert(spec.tree.qualified_name(m));
  }
  static void TearDownTestSuite() {
    delete trace_;
    trace_ = nullptr;
  }
  void SetUp() override { ASSERT_NE(trace_, nullptr) << "zeroplan-exec did not write its trace"; }

  static const trace::Trace& t() { return *trace_; }

  // Whether `name` is one the engine gives: a parameter's or a module's of the example's model,
  // a numbered gather or bucket, or one of the model states'.
  static bool engine_name(const std::string& name) {
    if (names_.count(name) > 0) return true;
    const auto number_after = [&](const std::string& what) {
      return name.rfind(what, 0) == 0 && name.size() > what.size() &&
             name.find_first_not_of("0123456789", what.size()) == std::string::npos;
    };
    return number_after("gather ") || number_after("bucket ");
  }

 private:
  static inline trace::Trace* trace_ = nullptr;
  static inline std::set<std::string> names_;
};

TEST_F(MeasuredTrace, PassesTheFormatsChecksAndRecordsAllocationsOnEveryRank) {
  EXPECT_EQ(t().source, trace::Source::kMeasured);
  EXPECT_FALSE(trace::check_trace(t()).has_value());
  ASSERT_EQ(t().ranks.size(), 2u);
  for (std::int32_t rank = 0; rank < 2; ++rank) {
    const auto count = std::count_if(t().allocations.begin(), t().allocations.end(),
                                     [&](const trace::Allocation& a) { return a.rank == rank; });
    EXPECT_GT(count, 100) << "rank " << rank;
  }
}

TEST_F(MeasuredTrace, AllocationsLiveAtEverySampleAddUpToTheTotals) {
  for (std::int32_t rank = 0; rank < 2; ++rank)
    expect_allocations_add_up(t(), rank);
}

// Gathered parameters are named after the parameter, coalesced gathers' buffers "gather N", the
// reduce-scatter's flat input "bucket N", activations after the module that made them.
TEST_F(MeasuredTrace, AllocationsAreNamedAsTheSimulatorNamesThem) {
  bool parameter = false, gather = false, bucket = false, module = false, gradient = false;
  for (const trace::Allocation& a : t().allocations) {
    ASSERT_NE(a.name, trace::kNone) << "an allocation of " << trace::to_string(a.category);
    const std::string& name = t().string(a.name);
    EXPECT_TRUE(engine_name(name)) << name;
    const bool weight = name.find(".weight") != std::string::npos;
    parameter |= a.category == MemoryCategory::kGatheredParams && weight;
    gather |= a.category == MemoryCategory::kGatheredParams && name.rfind("gather ", 0) == 0;
    bucket |= a.category == MemoryCategory::kCommBuffers && name.rfind("bucket ", 0) == 0;
    module |= a.category == MemoryCategory::kActivations && name.rfind("transformer.h.", 0) == 0 &&
              !weight && name.find(".bias") == std::string::npos;
    gradient |= a.category == MemoryCategory::kGradBuckets && weight;
  }
  EXPECT_TRUE(parameter);
  EXPECT_TRUE(gather);
  EXPECT_TRUE(bucket);
  EXPECT_TRUE(module);
  EXPECT_TRUE(gradient);
}

#ifdef ZEROPLAN_HAS_GUI_VIEW
// What the viewer's memory view lists at the measured peak: named tensors, adding up to no more
// than the peak.
TEST_F(MeasuredTrace, TheLargestLiveTensorsAtThePeakAreNamed) {
  const std::vector<gui::MemorySeries> series = gui::build_memory_series(t());
  ASSERT_EQ(series.size(), 2u);
  for (const gui::MemorySeries& s : series) {
    SCOPED_TRACE("rank " + std::to_string(s.rank));
    const std::optional<gui::Peak> peak = gui::device_peak(s);
    ASSERT_TRUE(peak.has_value());
    const std::vector<std::uint32_t> largest = gui::largest_live(t(), s.rank, peak->time, 10);
    ASSERT_EQ(largest.size(), 10u);
    std::int64_t bytes = 0;
    for (std::uint32_t i : largest) {
      const trace::Allocation& a = t().allocations[i];
      ASSERT_NE(a.name, trace::kNone);
      EXPECT_TRUE(engine_name(t().string(a.name))) << t().string(a.name);
      bytes += a.bytes;
    }
    EXPECT_LE(bytes, peak->bytes);
    // All allocations live at the peak are the peak.
    std::int64_t live = 0;
    for (const trace::Allocation& a : t().allocations)
      if (a.rank == s.rank && a.start <= peak->time && peak->time < a.end) live += a.bytes;
    EXPECT_EQ(live, peak->bytes);
  }
}
#endif

// A pipeline's stages: their allocations add up too, and each is named, after what the stage
// holds it for and its micro-batch, the module running in forward, or the parameter.
TEST(MeasuredPipelineTrace, AllocationsAddUpAndAreNamed) {
  const std::optional<trace::Trace> t = measure("tiny-gpt2-pipeline-cpu");
  ASSERT_TRUE(t.has_value());
  EXPECT_FALSE(trace::check_trace(*t).has_value());
  ASSERT_EQ(t->ranks.size(), 2u);
  std::set<std::string> names;
  for (const trace::Allocation& a : t->allocations) {
    ASSERT_NE(a.name, trace::kNone) << "an allocation of " << trace::to_string(a.category);
    names.insert(t->string(a.name));
  }
  for (const char* name : {"receive buffer", "output (micro-batch 0)", "logits (micro-batch 0)",
                           "loss (micro-batch 0)", "transformer.h.0.attn", "transformer.wte.weight",
                           "optimizer states"}) {
    EXPECT_EQ(names.count(name), 1u) << name;
  }
  for (std::int32_t rank = 0; rank < 2; ++rank)
    expect_allocations_add_up(*t, rank);
}

}  // namespace
}  // namespace zp::exec
