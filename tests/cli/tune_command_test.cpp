// End-to-end: `zeroplan tune` as a user runs it, and its plan run by `zeroplan exec`.
#include <gtest/gtest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "run_zeroplan.h"

namespace {

using namespace zp::cli::testing;

namespace fs = std::filesystem;
using Json = nlohmann::json;

const fs::path kBinaryDir = ZEROPLAN_BINARY_DIR;
const std::string kTiny = "configs/examples/tiny-gpt2-cpu.yaml";
// Exec does not offload: the plans it runs keep everything on the device.
const std::string kNoOffload = " --pin offload_param=none --pin offload_optimizer=none";

fs::path TestDir() {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  const fs::path dir = fs::temp_directory_path() /
                       ("zeroplan_tune_test." + std::to_string(::getpid()) + "." + info->name());
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

// The value at a dotted key path, or null.
Json At(const Json& root, const std::string& dotted) {
  const Json* node = &root;
  std::size_t start = 0;
  while (true) {
    const std::size_t dot = dotted.find('.', start);
    const std::string part = dotted.substr(start, dot - start);
    if (!node->is_object() || !node->contains(part)) return nullptr;
    node = &(*node)[part];
    if (dot == std::string::npos) return *node;
    start = dot + 1;
  }
}

// The tuned values, as `zeroplan inspect --json` resolves the run spec `path`: every chosen knob
// under its key.
void ExpectResolvedAsChosen(const fs::path& path, const Json& chosen) {
  const Result r = RunZeroplan("inspect --json '" + path.string() + "'");
  ASSERT_EQ(r.status, 0) << r.err;
  const Json j = Json::parse(r.out);
  for (const auto& [knob, c] : chosen.items()) {
    const std::string key = c["key"];
    if (key.starts_with("training.") || key.starts_with("parallel.")) {
      bool found = false;
      for (const Json& s : j["run_provenance"]) {
        if (s["key"] != key) continue;
        EXPECT_EQ(s["value"], c["value"]) << knob;
        found = true;
      }
      EXPECT_TRUE(found) << key;
      continue;
    }
    const Json resolved = At(j["deepspeed"], key);
    if (c["value"] == "none" && key.ends_with(".device")) {
      // No offload: no section, or a section with device none.
      EXPECT_TRUE(resolved.is_null() || resolved == "none") << knob << ": " << resolved;
      continue;
    }
    EXPECT_EQ(resolved, c["value"]) << knob << " at " << key;
  }
}

TEST(ZeroplanTune, WritesAConfigAndAPlanThatLoadWithTheTunedValues) {
  const fs::path dir = TestDir();
  const Result r =
      RunZeroplan("tune " + kTiny + kNoOffload + " --json --out '" + dir.string() + "'");
  ASSERT_EQ(r.status, 0) << r.err;
  const Json j = Json::parse(r.out);
  ASSERT_TRUE(j["fits"].get<bool>());
  for (const char* file : {"ds_config.json", "plan.yaml", "report.txt", "pareto.svg"})
    EXPECT_TRUE(fs::exists(dir / file)) << file;
  EXPECT_EQ(j["files"]["plan"], (dir / "plan.yaml").string());
  EXPECT_EQ(j["memory_budget_bytes"], 4LL << 30) << "the cluster's GPU memory by default";
  EXPECT_GT(j["search"]["simulated"].get<std::int64_t>(), 0);
  EXPECT_EQ(j["chosen"]["prefetch_bucket_size"]["key"],
            "zero_optimization.stage3_prefetch_bucket_size");
  EXPECT_LE(j["predicted"]["peak_memory_bytes"].get<std::int64_t>(), 4LL << 30);

  // The plan, through core's loaders.
  ExpectResolvedAsChosen(dir / "plan.yaml", j["chosen"]);
  // ds_config.json alone, as a training script would pass it: a run spec naming it.
  std::string run = Slurp(kSource / kTiny);
  run = run.substr(0, run.find("deepspeed:")) + "deepspeed: ds_config.json\n";
  std::ofstream(dir / "with_file.yaml") << run;
  ExpectResolvedAsChosen(dir / "with_file.yaml", j["chosen"]);
  // The user's own keys stay, under DeepSpeed's spellings.
  const Json ds = Json::parse(Slurp(dir / "ds_config.json"));
  EXPECT_EQ(ds["zero_optimization"]["stage"], 3);
  EXPECT_FALSE(ds["zero_optimization"].contains("prefetch_bucket_size"));

  const std::string report = Slurp(dir / "report.txt");
  EXPECT_NE(report.find("Chosen values"), std::string::npos);
  EXPECT_NE(report.find("zero_optimization.stage3_max_live_parameters = "), std::string::npos);
  EXPECT_NE(Slurp(dir / "pareto.svg").find("class=\"chosen\""), std::string::npos);
  fs::remove_all(dir);
}

TEST(ZeroplanTune, TheReportGoesToStdoutAndTheDefaultFolderIsNamedAfterTheRun) {
  const fs::path dir = TestDir();
  // From the test's folder, with the run spec's absolute path.
  const std::string command = "cd '" + dir.string() + "' && '" + kBinary.string() + "' tune '" +
                              (kSource / kTiny).string() + "'" + kNoOffload +
                              " --pin checkpoint_interval=0 > out.txt 2> err.txt";
  ASSERT_EQ(std::system(command.c_str()), 0) << Slurp(dir / "err.txt");
  const std::string out = Slurp(dir / "out.txt");
  EXPECT_EQ(out, Slurp(dir / "tiny-gpt2-cpu-plan" / "report.txt") +
                     "\nWritten to tiny-gpt2-cpu-plan/: ds_config.json, plan.yaml, report.txt, "
                     "pareto.svg, tune.json (zeroplan view opens it), traces/\n");
  EXPECT_NE(out.find("training.checkpoint_interval = 0"), std::string::npos);
  EXPECT_NE(out.find("pinned"), std::string::npos);
  EXPECT_TRUE(Slurp(dir / "err.txt").empty()) << "no progress off a terminal";
  fs::remove_all(dir);
}

TEST(ZeroplanTune, AnImpossibleBudgetExitsThreeAndSaysWhatIsMissing) {
  const fs::path dir = TestDir();
  // A plan from an earlier tune into the same folder is not left to be mistaken for this one's.
  std::ofstream(dir / "plan.yaml") << "stale\n";
  const Result r =
      RunZeroplan("tune " + kTiny + kNoOffload + " --gpu-memory 1KiB --out '" + dir.string() + "'");
  EXPECT_EQ(r.status, 3) << r.err;
  EXPECT_EQ(Lines(r.err), 1) << r.err;
  EXPECT_NE(r.err.find("nothing fits in 1.00 KiB per GPU: the least memory found is "),
            std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find(" over)"), std::string::npos) << r.err;
  EXPECT_NE(r.out.find("Nothing fits within 1.00 KiB per GPU"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("What would fit:"), std::string::npos);
  EXPECT_NE(r.out.find("offload_optimizer to the host (--pin offload_optimizer=cpu"),
            std::string::npos)
      << r.out;
  EXPECT_EQ(Slurp(dir / "report.txt") + "\nWritten to " + dir.string() +
                "/: report.txt, pareto.svg, tune.json (zeroplan view opens it), traces/\n",
            r.out);
  EXPECT_FALSE(fs::exists(dir / "plan.yaml"));
  EXPECT_FALSE(fs::exists(dir / "ds_config.json"));

  const Result json = RunZeroplan("tune " + kTiny + kNoOffload +
                                  " --gpu-memory 1KiB --json --out '" + dir.string() + "'");
  EXPECT_EQ(json.status, 3);
  const Json j = Json::parse(json.out);
  EXPECT_FALSE(j["fits"].get<bool>());
  EXPECT_GT(j["least_memory"]["predicted"]["peak_memory_bytes"].get<std::int64_t>(), 1024);
  EXPECT_GT(j["search"]["pruned"]["over_memory_budget"].get<double>(), 0);
  fs::remove_all(dir);
}

TEST(ZeroplanTune, BadFlagsAreOneLineNamingTheFlagOrKnobAndExitTwo) {
  const fs::path dir = TestDir();
  struct Case {
    std::string args;
    std::vector<std::string> expect;
  };
  const std::vector<Case> cases = {
      {"--pin no_such_knob=1", {"no_such_knob", "not a knob"}},
      {"--pin max_live_paramters=1", {"max_live_paramters", "did you mean 'max_live_parameters'"}},
      {"--pin max_live_parameters=lots", {"max_live_parameters", "\"lots\""}},
      {"--pin overlap_comm=maybe", {"overlap_comm", "\"maybe\""}},
      {"--pin offload_param=gpu", {"offload_param", "\"gpu\""}},
      {"--pin max_live_parameters", {"--pin", "KNOB=VALUE"}},
      {"--pin a=1 --pin a=2", {"--pin", "pinned twice"}},
      {"--range prefetch_bucket_size=5e8", {"--range", "KNOB=LOW:HIGH"}},
      {"--range prefetch_bucket_size=5e8:1e6", {"prefetch_bucket_size", "low end"}},
      {"--objective quickest", {"--objective", "quickest"}},
      {"--gpu-memory 80GX", {"--gpu-memory", "80GX"}},
      {"--gpu-memory 0GiB", {"--gpu-memory", "more than 0"}},
      {"--time-budget 5", {"--time-budget"}},
      {"--workers 0", {"--workers"}},
      {"--pin micro_batch=3", {"micro_batch", "must divide the 2 samples"}},
      {"--pin pipeline_stages=2", {"pipeline_stages", "stages 0 and 1 only"}},
  };
  for (const Case& c : cases) {
    const Result r = RunZeroplan("tune " + kTiny + " " + c.args + " --out '" + dir.string() + "'");
    EXPECT_EQ(r.status, 2) << c.args << "\n" << r.err;
    EXPECT_EQ(Lines(r.err), 1) << c.args << "\n" << r.err;
    EXPECT_EQ(r.err.rfind("zeroplan: error: ", 0), 0u) << r.err;
    for (const std::string& e : c.expect)
      EXPECT_NE(r.err.find(e), std::string::npos) << c.args << ": " << r.err;
    EXPECT_TRUE(r.out.empty()) << c.args;
  }
  const Result missing = RunZeroplan("tune configs/examples/no-such-run.yaml");
  EXPECT_EQ(missing.status, 2);
  EXPECT_NE(missing.err.find("no-such-run.yaml"), std::string::npos);
  fs::remove_all(dir);
}

TEST(ZeroplanTune, HelpListsEveryOption) {
  const Result help = RunZeroplan("tune --help");
  EXPECT_EQ(help.status, 0);
  for (const char* option :
       {"--gpu-memory", "--time-budget", "--objective", "--pin", "--range", "--out", "--json",
        "--exhaustive", "--workers", "--grid-ratio", "--no-allocator", "--progress", "--layout"})
    EXPECT_NE(help.out.find(option), std::string::npos) << option;
  EXPECT_NE(RunZeroplan("--help").out.find("tune"), std::string::npos);
}

TEST(ZeroplanTune, ObjectivesAndBudgetsChangeTheChoice) {
  const fs::path dir = TestDir();
  const auto tune = [&](const std::string& args) {
    const Result r = RunZeroplan("tune " + kTiny + kNoOffload + " --no-allocator --json --out '" +
                                 dir.string() + "' " + args);
    EXPECT_EQ(r.status, 0) << args << "\n" << r.err;
    return Json::parse(r.out);
  };
  const Json fastest = tune("");
  const Json least = tune("--objective least-memory");
  EXPECT_LT(least["predicted"]["peak_memory_bytes"], fastest["predicted"]["peak_memory_bytes"]);
  EXPECT_GE(least["predicted"]["step_time_ns"], fastest["predicted"]["step_time_ns"]);
  // A time budget the least-memory configuration misses: a faster one, with more memory.
  const std::int64_t least_ns = least["predicted"]["step_time_ns"];
  const Json timed =
      tune("--objective least-memory --time-budget " + std::to_string(least_ns - 1) + "ns");
  EXPECT_LT(timed["predicted"]["step_time_ns"].get<std::int64_t>(), least_ns);
  const Json pareto = tune("--objective pareto");
  EXPECT_GE(pareto["pareto"].size(), 2u);
  fs::remove_all(dir);
}

// The tiny run takes 2 samples per rank per step in one micro-batch; with the layout searched, the
// least memory takes micro-batches of 1 and accumulates 2, and the plan says so where both
// DeepSpeed and the run spec read it.
TEST(ZeroplanTune, TheLayoutTradesTheMicroBatchForAccumulationSteps) {
  const fs::path dir = TestDir();
  const Result r = RunZeroplan("tune " + kTiny + kNoOffload +
                               " --layout --objective least-memory --no-allocator --json --out '" +
                               dir.string() + "'");
  ASSERT_EQ(r.status, 0) << r.err;
  const Json j = Json::parse(r.out);
  EXPECT_EQ(j["chosen"]["micro_batch"]["value"], 1);
  EXPECT_EQ(j["chosen"]["micro_batch"]["key"], "train_micro_batch_size_per_gpu");
  const Json ds = Json::parse(Slurp(dir / "ds_config.json"));
  EXPECT_EQ(ds["gradient_accumulation_steps"], 2);
  ExpectResolvedAsChosen(dir / "plan.yaml", j["chosen"]);
  const Result inspect = RunZeroplan("inspect --json '" + (dir / "plan.yaml").string() + "'");
  ASSERT_EQ(inspect.status, 0) << inspect.err;
  const Json resolved = Json::parse(inspect.out);
  EXPECT_EQ(At(resolved["deepspeed"], "gradient_accumulation_steps"), 2);
  bool found = false;
  for (const Json& setting : resolved["run_provenance"]) {
    if (setting["key"] != "training.micro_batch") continue;
    EXPECT_EQ(setting["value"], 1);
    found = true;
  }
  EXPECT_TRUE(found);
  EXPECT_EQ(RunZeroplan("simulate '" + (dir / "plan.yaml").string() + "'").status, 0);
  fs::remove_all(dir);
}

// A ZeRO-1 pipeline run: whatever depth is chosen, the plan loads with the data-parallel degree,
// accumulation steps and checkpoint interval where that depth has them.
TEST(ZeroplanTune, APipelineLayoutPlanLoadsAtEveryDepth) {
  const fs::path dir = TestDir();
  for (const std::string depth : {"1", "4"}) {
    const Result r = RunZeroplan(
        "tune configs/examples/bert-large-pipeline.yaml --no-allocator --json --pin micro_batch=8 "
        "--pin checkpoint_interval=1 --pin pipeline_stages=" +
        depth + " --out '" + dir.string() + "'");
    ASSERT_EQ(r.status, 0) << r.err;
    const Json j = Json::parse(r.out);
    EXPECT_EQ(j["chosen"]["pipeline_stages"]["value"], std::stoi(depth));
    EXPECT_EQ(j["chosen"]["pipeline_stages"]["key"], "parallel.pipeline");
    EXPECT_EQ(
        j["chosen"]["checkpoint_interval"]["key"],
        depth == "1" ? "training.checkpoint_interval" : "pipeline.activation_checkpoint_interval");
    ExpectResolvedAsChosen(dir / "plan.yaml", j["chosen"]);
    const Result inspect = RunZeroplan("inspect --json '" + (dir / "plan.yaml").string() + "'");
    ASSERT_EQ(inspect.status, 0) << inspect.err;
    const Json resolved = Json::parse(inspect.out);
    // 256 samples over 4 GPUs: data-parallel 4 / depth, micro-batch 8.
    EXPECT_EQ(At(resolved["deepspeed"], "gradient_accumulation_steps"),
              256 / (4 / std::stoi(depth)) / 8);
    EXPECT_EQ(RunZeroplan("simulate '" + (dir / "plan.yaml").string() + "'").status, 0);
  }
  fs::remove_all(dir);
}

TEST(ZeroplanTune, CtrlCKeepsTheBestFoundSoFar) {
  const fs::path dir = TestDir();
  // An exhaustive search of a fine grid runs for minutes; the interrupt comes after a second.
  const std::string command = "cd '" + kSource.string() + "' && { '" + kBinary.string() +
                              "' tune " + kTiny + " --exhaustive --grid-ratio 1.2 --json --out '" +
                              dir.string() + "' > '" + (dir / "out.json").string() + "' 2> '" +
                              (dir / "err.txt").string() +
                              "' & pid=$!; sleep 1; kill -INT $pid; wait $pid; }";
  const int raw = std::system(command.c_str());
  ASSERT_TRUE(WIFEXITED(raw));
  EXPECT_EQ(WEXITSTATUS(raw), 0) << Slurp(dir / "err.txt");
  const Json j = Json::parse(Slurp(dir / "out.json"));
  EXPECT_TRUE(j["search"]["interrupted"].get<bool>());
  EXPECT_TRUE(j["fits"].get<bool>());
  EXPECT_LT(j["search"]["simulated"].get<double>(), j["search"]["configurations"].get<double>());
  EXPECT_TRUE(fs::exists(dir / "plan.yaml"));
  EXPECT_NE(Slurp(dir / "err.txt").find("interrupted"), std::string::npos);
  EXPECT_NE(Slurp(dir / "report.txt").find("interrupted"), std::string::npos);
  fs::remove_all(dir);
}

// The acceptance test: a budget that changes the choice, and the plan tuned for it run for
// real on two CPU ranks stays under it. Exec measures allocated bytes (a counting allocator, no
// caching), so the tune compares allocated memory too (--no-allocator).
TEST(ZeroplanTune, ATunedPlanExecutedOnTwoRanksStaysUnderItsBudget) {
#ifndef ZEROPLAN_HAS_EXEC
  GTEST_SKIP() << "this build has no exec (libtorch was not found)";
#endif
  ASSERT_TRUE(fs::exists(kBinaryDir / "zeroplan-exec"));
  const fs::path dir = TestDir();
  const auto tune = [&](const std::string& args, const fs::path& out) {
    const Result r = RunZeroplan("tune " + kTiny + kNoOffload + " --no-allocator --json --out '" +
                                 out.string() + "' " + args);
    EXPECT_EQ(r.status, 0) << args << "\n" << r.err;
    return Json::parse(r.out);
  };
  const Json free = tune("", dir / "free");
  const std::int64_t free_peak = free["predicted"]["peak_memory_bytes"];
  // A budget under what the unconstrained choice needs forces another choice.
  const std::int64_t budget = free_peak * 94 / 100;
  const Json tight = tune("--gpu-memory " + std::to_string(budget), dir / "tight");
  ASSERT_TRUE(tight["fits"].get<bool>()) << tight.dump(2);
  EXPECT_LE(tight["predicted"]["peak_memory_bytes"].get<std::int64_t>(), budget);
  EXPECT_NE(tight["chosen"], free["chosen"]);

  const Result exec = RunZeroplan("exec '" + (dir / "tight" / "plan.yaml").string() +
                                  "' --nproc 2 --steps 3 --json");
  ASSERT_EQ(exec.status, 0) << exec.err;
  const Json measured = Json::parse(exec.out);
  ASSERT_EQ(measured["ranks"].size(), 2u);
  for (const Json& rank : measured["ranks"]) {
    EXPECT_LE(rank["peak_allocated_bytes"].get<std::int64_t>(), budget)
        << "measured at the peak: " << rank["at_peak"].dump()
        << "\npredicted: " << tight["predicted"].dump();
  }
  fs::remove_all(dir);
}

}  // namespace
