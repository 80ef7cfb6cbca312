// End-to-end: the zeroplan binary as a user runs it.
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

TEST(ZeroplanCli, InspectsEveryBundledExample) {
  for (const auto& entry : std::filesystem::directory_iterator(kSource / "configs" / "examples")) {
    if (entry.path().extension() != ".yaml") continue;
    const Result r =
        RunZeroplan("inspect 'configs/examples/" + entry.path().filename().string() + "'");
    EXPECT_EQ(r.status, 0) << entry.path() << "\n" << r.err;
    EXPECT_NE(r.out.find("DeepSpeed settings"), std::string::npos);
    EXPECT_NE(r.out.find("zero_optimization.stage "), std::string::npos);
    EXPECT_TRUE(r.err.empty()) << r.err;
  }
}

TEST(ZeroplanCli, InspectJsonHasTheTotalAndEveryResolvedKey) {
  const Result r = RunZeroplan("inspect --json configs/examples/gpt2-zero3.yaml");
  ASSERT_EQ(r.status, 0) << r.err;
  const nlohmann::json j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["total_parameters"], 124'439'808);
  EXPECT_EQ(j["deepspeed"]["zero_optimization"]["stage"], 3);
  EXPECT_EQ(j["deepspeed"]["zero_optimization"]["stage3_max_live_parameters"], 1'000'000'000);
  EXPECT_EQ(j["deepspeed"]["zero_optimization"]["stage3_model_persistence_threshold"], INT64_MAX);
  EXPECT_EQ(j["deepspeed"]["train_micro_batch_size_per_gpu"], 8);
  EXPECT_EQ(j["training"]["gradient_accumulation_steps"], 1);
  bool found_default = false;
  for (const auto& s : j["deepspeed_provenance"]) {
    if (s["key"] == "zero_optimization.stage3_max_reuse_distance") {
      EXPECT_EQ(s["origin"], "user");
    }
    if (s["key"] == "zero_optimization.sub_group_size") found_default = s["origin"] == "default";
  }
  EXPECT_TRUE(found_default);
  EXPECT_EQ(j["zero3"]["data_parallel_size"], 8);
}

TEST(ZeroplanCli, BadInputIsOneLineAndExitTwo) {
  const auto dir = std::filesystem::temp_directory_path() / "zeroplan_cli_bad";
  std::filesystem::create_directories(dir);
  struct Case {
    std::string text;
    std::string expect;
  };
  const std::vector<Case> cases = {
      {"model: gpt2\ncluster: dgx-a100-80g\ntraining: {sequence_length: 8, micro_batch: 1}\n"
       "deepspeed: {zero_optimization: {stage: 3, stage3_prefetch_bucket_size: -1}}\n",
       "run.yaml:4:72: deepspeed.zero_optimization.stage3_prefetch_bucket_size: -1 is out of "
       "range: must be >= 0"},
      {"model: gpt2\ncluster: dgx-a100-80g\n  training: x\n", "run.yaml:3:11: invalid YAML"},
      {"model: gpt2\ncluster: dgx-a100-80g\ntraining: {sequence_length: 8, micro_batch: "
       "1}\ndeepspeed: {zero_optimization: {stage: three}}\n",
       "deepspeed.zero_optimization.stage: expected an integer, got the string \"three\""},
      {"modle: gpt2\n", "unknown key 'modle' in the run spec (did you mean 'model'?)"},
  };
  for (const Case& c : cases) {
    std::ofstream(dir / "run.yaml") << c.text;
    const Result r = RunZeroplan("inspect '" + (dir / "run.yaml").string() + "'");
    EXPECT_EQ(r.status, 2) << c.text;
    EXPECT_EQ(Lines(r.err), 1) << r.err;
    EXPECT_NE(r.err.find(c.expect), std::string::npos) << r.err;
    EXPECT_TRUE(r.out.empty());
  }
  std::filesystem::remove_all(dir);
}

TEST(ZeroplanCli, HelpAndUsageErrors) {
  EXPECT_EQ(RunZeroplan("--help").status, 0);
  EXPECT_EQ(RunZeroplan("inspect --help").status, 0);
  EXPECT_EQ(RunZeroplan("presets --help").status, 0);
  const Result version = RunZeroplan("--version");
  EXPECT_EQ(version.status, 0);
  EXPECT_NE(version.out.find("zeroplan"), std::string::npos);
  const Result typo = RunZeroplan("inspct x");
  EXPECT_EQ(typo.status, 2);
  EXPECT_NE(typo.err.find("did you mean 'inspect'"), std::string::npos);
  EXPECT_EQ(RunZeroplan("").status, 2);
  EXPECT_EQ(RunZeroplan("inspect").status, 2);
  EXPECT_EQ(RunZeroplan("inspect --frobnicate configs/examples/gpt2-zero3.yaml").status, 2);
}

TEST(ZeroplanCli, SimulatesEveryBundledExample) {
  for (const auto& entry : std::filesystem::directory_iterator(kSource / "configs" / "examples")) {
    if (entry.path().extension() != ".yaml") continue;
    const Result r =
        RunZeroplan("simulate 'configs/examples/" + entry.path().filename().string() + "'");
    EXPECT_EQ(r.status, 0) << entry.path() << "\n" << r.err;
    EXPECT_NE(r.out.find("Step time"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("Peak allocated"), std::string::npos) << r.out;
    EXPECT_TRUE(r.err.empty()) << r.err;
  }
}

TEST(ZeroplanCli, SimulateWritesJsonAndBothTraces) {
  const auto dir =
      std::filesystem::temp_directory_path() / ("zeroplan_cli_sim." + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const Result r = RunZeroplan(
      "simulate --json --steps 2 configs/examples/gpt2-zero3.yaml --trace '" +
      (dir / "t.json").string() + "' --chrome-trace '" + (dir / "c.json").string() + "'");
  ASSERT_EQ(r.status, 0) << r.err;
  const nlohmann::json j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["reported_steps"], nlohmann::json::array({0, 1}));
  EXPECT_FALSE(j["steady_state"].get<bool>());
  EXPECT_GT(j["step_time_ns"].get<std::int64_t>(), 0);
  const auto& step = j["ranks"][0]["steps"][1];
  EXPECT_GT(step["coordinator"]["allgather_calls"].get<std::int64_t>(), 0);
  EXPECT_TRUE(step["coordinator"].contains("peak_available_counted"));
  EXPECT_TRUE(j.contains("deepspeed_estimate"));
  const nlohmann::json native = nlohmann::json::parse(Slurp(dir / "t.json"));
  EXPECT_EQ(native["format"], "zeroplan-trace");
  const nlohmann::json chrome = nlohmann::json::parse(Slurp(dir / "c.json"));
  EXPECT_GT(chrome["traceEvents"].size(), 100u);
  std::filesystem::remove_all(dir);
}

TEST(ZeroplanCli, ARunThatDoesNotFitPrintsItsSummaryAndExitsThree) {
  const auto dir =
      std::filesystem::temp_directory_path() / ("zeroplan_cli_oom." + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  // GPT-2 on GPUs of 1 GiB: its activations alone need several.
  std::ofstream(dir / "run.yaml")
      << "model: gpt2\ncluster: {preset: dgx-a100-80g, gpu_memory: 1GiB}\n"
         "training: {sequence_length: 1024, micro_batch: 8, dtype: bf16}\n"
         "deepspeed: {bf16: {enabled: true}, zero_optimization: {stage: 3}}\n";
  const Result r = RunZeroplan("simulate '" + (dir / "run.yaml").string() + "'");
  EXPECT_EQ(r.status, 3) << r.err;
  EXPECT_NE(r.out.find("over GPU memory"), std::string::npos) << r.out;
  EXPECT_EQ(Lines(r.err), 1) << r.err;
  EXPECT_NE(r.err.find("does not fit"), std::string::npos) << r.err;
  std::filesystem::remove_all(dir);
}

TEST(ZeroplanCli, SimulateBadInputIsOneLineAndExitTwo) {
  for (const std::string& args :
       {std::string("simulate configs/examples/no-such-run.yaml"),
        std::string("simulate --steps -1 configs/examples/gpt2-zero3.yaml"),
        std::string("simulate --steps two configs/examples/gpt2-zero3.yaml"),
        std::string("simulate --trace /no/such/folder/t.json configs/examples/gpt2-zero3.yaml")}) {
    const Result r = RunZeroplan(args);
    EXPECT_EQ(r.status, 2) << args << "\n" << r.err;
    EXPECT_GE(Lines(r.err), 1) << args;
    EXPECT_LE(Lines(r.err), 2) << args << "\n" << r.err;  // the error, and where to find usage
    EXPECT_EQ(r.err.rfind("zeroplan: error: ", 0), 0u) << args << "\n" << r.err;
  }
  const Result help = RunZeroplan("simulate --help");
  EXPECT_EQ(help.status, 0);
  for (const char* option : {"--json", "--steps", "--all-ranks", "--trace", "--chrome-trace"})
    EXPECT_NE(help.out.find(option), std::string::npos) << option;
}

TEST(ZeroplanCli, PresetsListsModelsAndClusters) {
  const Result r = RunZeroplan("presets --json");
  ASSERT_EQ(r.status, 0) << r.err;
  const nlohmann::json j = nlohmann::json::parse(r.out);
  bool llama70 = false;
  for (const auto& m : j["models"])
    llama70 |= m["name"] == "llama-2-70b" && m["parameters"] == 68'976'648'192;
  EXPECT_TRUE(llama70);
  EXPECT_FALSE(j["clusters"].empty());
}

}  // namespace
