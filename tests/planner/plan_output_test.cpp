#include "planner/plan_output.h"

#include <gtest/gtest.h>

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <regex>

#include "core/config/ds_config.h"
#include "core/model/model_json.h"
#include "core/model/presets.h"

namespace zp::planner {
namespace {

namespace fs = std::filesystem;

const fs::path kSource = ZEROPLAN_SOURCE_DIR;

// A folder of its own for each test (CTest runs them in parallel).
fs::path TestDir() {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  const fs::path dir = fs::temp_directory_path() /
                       ("zeroplan_plan_output." + std::to_string(::getpid()) + "." + info->name());
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

void Write(const fs::path& path, const std::string& text) {
  fs::create_directories(path.parent_path());
  std::ofstream(path) << text;
}

Dimension Dim(std::string_view knob, std::vector<std::int64_t> values,
              std::vector<std::int64_t> caps = {}) {
  Dimension d;
  d.knob = find_knob(knob);
  EXPECT_NE(d.knob, nullptr) << knob;
  d.values = std::move(values);
  d.model_caps = std::move(caps);
  d.considered = static_cast<std::int64_t>(d.values.size());
  d.derivation = "by hand";
  return d;
}

Evaluation Eval(TimeNs step_ns, std::int64_t memory, std::int64_t gathered = 0) {
  Evaluation e;
  e.step_ns = step_ns;
  e.memory = memory;
  e.allocated = memory;
  e.gathered_bytes = gathered;
  return e;
}

constexpr auto kCpu = static_cast<std::int64_t>(OffloadDevice::kCpu);
constexpr auto kNone = static_cast<std::int64_t>(OffloadDevice::kNone);

// The tiny GPT-2 of the CPU example with a DeepSpeed config that uses every spelling DeepSpeed
// accepts besides the canonical one, and keys the tuner does not touch.
const char* kAliasedRun = R"(name: aliased
model: tiny-gpt2
cluster:
  gpu: cpu
  nodes: 1
  gpus_per_node: 2
  gpu_memory: 4GiB
  peak_flops: {fp32: 50G}
  hbm_bandwidth: 20GB/s
  intra_node: {bandwidth: 5GB/s, latency: 20us}
  inter_node: {bandwidth: 1GB/s, latency: 50us}
  host_memory: 16GiB
  pcie_bandwidth: 10GB/s
  nvme_bandwidth: 1GB/s
training:
  sequence_length: 32
  micro_batch: 2
  dtype: bf16
deepspeed:
  steps_per_print: 7
  optimizer: {type: AdamW, params: {lr: 0.0003}}
  zero_optimization:
    stage: 3
    prefetch_bucket_size: 1000
    max_live_parameters: 5000
    param_persistence_threshold: 10
    sub_group_size: 12345
    round_robin_gradients: true
    cpu_offload: true
    offload_param: {device: cpu, pin_memory: true, buffer_count: 7}
)";

// prefetch 2000, live 7000, persistence 64 capped at 4096, parameters not offloaded, the
// optimizer on the host, overlap off, every second layer checkpointed.
SearchSpace AliasedSpace() {
  SearchSpace s;
  s.dims.push_back(Dim("checkpoint_interval", {2}));
  s.dims.push_back(Dim("offload_optimizer", {kCpu}));
  s.dims.push_back(Dim("offload_param", {kNone}));
  s.dims.push_back(Dim("overlap_comm", {0}));
  s.dims.push_back(Dim("param_persistence_threshold", {64}, {4096}));
  s.dims.push_back(Dim("max_live_parameters", {7000}));
  s.dims.push_back(Dim("prefetch_bucket_size", {2000}));
  return s;
}

DeepSpeedConfig Resolve(const Json& ds) {
  const Document doc = Document::from_value(ds, "ds_config.json");
  DeepSpeedContext context;
  context.data_parallel_size = 2;
  return parse_deepspeed_config(Node(doc), context);
}

TEST(TunedDeepSpeedConfig, CanonicalKeysReplaceEverySpellingAndTheRestIsKept) {
  const fs::path dir = TestDir();
  Write(dir / "run.yaml", kAliasedRun);
  const RunSpec run = load_run_spec(dir / "run.yaml");
  const SearchSpace space = AliasedSpace();
  const Json ds = tuned_deepspeed_config(run, space, Candidate(space.dims.size(), 0));
  const Json& z = ds["zero_optimization"];

  EXPECT_EQ(z["stage3_prefetch_bucket_size"], 2000);
  EXPECT_EQ(z["stage3_max_live_parameters"], 7000);
  EXPECT_EQ(z["stage3_param_persistence_threshold"], 64);
  EXPECT_EQ(z["stage3_model_persistence_threshold"], 4096);
  EXPECT_EQ(z["overlap_comm"], false);
  for (const char* alias : {"prefetch_bucket_size", "max_live_parameters",
                            "param_persistence_threshold", "cpu_offload"}) {
    EXPECT_FALSE(z.contains(alias)) << alias;
  }
  // Offload: the device set; the user's other keys in the section kept.
  EXPECT_EQ(z["offload_optimizer"], Json({{"device", "cpu"}}));
  EXPECT_EQ(z["offload_param"],
            Json({{"device", "none"}, {"pin_memory", true}, {"buffer_count", 7}}));
  // Keys the tuner does not search, as written.
  EXPECT_EQ(z["sub_group_size"], 12345);
  EXPECT_EQ(z["round_robin_gradients"], true);
  EXPECT_EQ(z["stage"], 3);
  EXPECT_EQ(ds["steps_per_print"], 7);
  EXPECT_EQ(ds["optimizer"], run.deepspeed.original["optimizer"]);
  // The checkpoint interval of a run without a pipeline is the run spec's, not DeepSpeed's.
  EXPECT_FALSE(ds.contains("pipeline"));
  // What the run spec supplied, written out so that DeepSpeed gets the same run.
  EXPECT_EQ(ds["train_micro_batch_size_per_gpu"], 2);
  EXPECT_EQ(ds["bf16"], Json({{"enabled", true}}));

  // DeepSpeed's rules, as core resolves them: it loads alone, with the tuned values.
  const DeepSpeedConfig c = Resolve(ds);
  EXPECT_EQ(c.zero.prefetch_bucket_size, 2000);
  EXPECT_EQ(c.zero.max_live_parameters, 7000);
  EXPECT_EQ(c.zero.param_persistence_threshold, 64);
  EXPECT_EQ(c.zero.model_persistence_threshold, 4096);
  EXPECT_FALSE(c.zero.overlap_comm);
  ASSERT_TRUE(c.zero.offload_optimizer);
  EXPECT_EQ(c.zero.offload_optimizer->device, OffloadDevice::kCpu);
  ASSERT_TRUE(c.zero.offload_param);
  EXPECT_EQ(c.zero.offload_param->device, OffloadDevice::kNone);
  EXPECT_EQ(c.zero.offload_param->buffer_count, 7);
  EXPECT_TRUE(c.zero.offload_param->pin_memory);
  EXPECT_EQ(c.zero.sub_group_size, 12345);
  EXPECT_EQ(c.batch.micro_batch_per_gpu, 2);
  EXPECT_EQ(c.compute_dtype(), DType::kBFloat16);
  fs::remove_all(dir);
}

TEST(TunedDeepSpeedConfig, NoOffloadWhereTheUserHadNoneAddsNoSection) {
  const RunSpec run = load_run_spec(kSource / "configs/examples/tiny-gpt2-cpu.yaml");
  SearchSpace space;
  space.dims.push_back(Dim("offload_param", {kNone, kCpu}));
  space.dims.push_back(Dim("offload_optimizer", {kNone}));
  const Json none = tuned_deepspeed_config(run, space, {0, 0});
  EXPECT_FALSE(none["zero_optimization"].contains("offload_param"));
  EXPECT_FALSE(none["zero_optimization"].contains("offload_optimizer"));
  const Json cpu = tuned_deepspeed_config(run, space, {1, 0});
  EXPECT_EQ(cpu["zero_optimization"]["offload_param"], Json({{"device", "cpu"}}));
  // The batch and dtype were in the DeepSpeed config or its defaults already: nothing added but
  // the micro batch, which the run spec gave.
  EXPECT_FALSE(cpu.contains("bf16"));
  EXPECT_FALSE(cpu.contains("fp16"));
  EXPECT_EQ(cpu["train_micro_batch_size_per_gpu"], 2);
}

TEST(TunedDeepSpeedConfig, WithAPipelineTheCheckpointIntervalIsDeepSpeeds) {
  const RunSpec run = load_run_spec(kSource / "configs/examples/tiny-gpt2-pipeline-cpu.yaml");
  ASSERT_GT(run.parallel.pipeline, 1);
  SearchSpace space;
  space.dims.push_back(Dim("checkpoint_interval", {3}));
  const Json ds = tuned_deepspeed_config(run, space, {0});
  EXPECT_EQ(ds["pipeline"]["activation_checkpoint_interval"], 3);
}

// A plan for a run spec whose model file and DeepSpeed config are files beside it, written to
// another folder: it loads as a run spec there, with the tuned values.
TEST(PlanYaml, LoadsAsARunSpecWithTheTunedValuesFromAnotherFolder) {
  const fs::path dir = TestDir();
  const ModelConfig* preset = find_preset("tiny-gpt2");
  ASSERT_NE(preset, nullptr);
  fs::create_directories(dir / "in" / "models");
  save_model_file(build_model(*preset, BatchShape{2, 32, DType::kFloat32}),
                  dir / "in" / "models" / "tiny.json");
  std::string run_text = kAliasedRun;
  run_text = std::regex_replace(run_text, std::regex("model: tiny-gpt2"),
                                "model: {file: models/tiny.json}");
  run_text = std::regex_replace(run_text, std::regex("dtype: bf16"), "dtype: fp32");
  // The DeepSpeed config as a file of its own.
  run_text = run_text.substr(0, run_text.find("deepspeed:")) + "deepspeed: ds/ds.json\n";
  Write(dir / "in" / "run.yaml", run_text);
  Write(dir / "in" / "ds" / "ds.json",
        R"({"zero_optimization": {"stage": 3, "prefetch_bucket_size": 1000,
            "stage3_max_live_parameters": 5000}, "steps_per_print": 9})");
  const RunSpec run = load_run_spec(dir / "in" / "run.yaml");

  TuneOutcome o;
  o.run = &run;
  o.space = AliasedSpace();
  o.space.dims[1] = Dim("offload_optimizer", {kNone});  // the chosen plan is run as it is
  o.options.memory_budget = 4 << 20;
  o.result.best = Point{Candidate(o.space.dims.size(), 0), Eval(3'000'000, 3 << 20)};
  o.result.stats.space = 1;
  o.result.stats.simulated = 1;
  const fs::path plan_dir = dir / "out" / "deeper";
  fs::create_directories(plan_dir);
  const std::string text = plan_yaml(o, plan_dir);
  Write(plan_dir / "plan.yaml", text);

  const RunSpec plan = load_run_spec(plan_dir / "plan.yaml");
  EXPECT_EQ(plan.model.kind, ModelSpec::Kind::kFile);
  EXPECT_EQ(fs::canonical(plan.model.file), fs::canonical(dir / "in" / "models" / "tiny.json"));
  EXPECT_TRUE(plan.deepspeed_file.empty()) << "the DeepSpeed config is inline";
  const zero::ZeroSettings z = plan.zero_settings();
  EXPECT_EQ(z.prefetch_bucket_size, 2000);
  EXPECT_EQ(z.max_live_parameters, 7000);
  EXPECT_EQ(z.param_persistence_threshold, 64);
  EXPECT_EQ(z.model_persistence_threshold, 4096);
  EXPECT_EQ(plan.deepspeed.zero.overlap_comm, false);
  EXPECT_EQ(plan.training.checkpoint_interval, 2);
  EXPECT_EQ(plan.deepspeed.original["steps_per_print"], 9);
  EXPECT_EQ(plan.name, "aliased");

  // The plan section, as written.
  const Document doc = Document::load(plan_dir / "plan.yaml");
  const Json& p = doc.root()["plan"];
  EXPECT_EQ(p["chosen"]["prefetch_bucket_size"], 2000);
  EXPECT_EQ(p["chosen"]["model_persistence_threshold"], 4096);
  EXPECT_EQ(p["chosen"]["offload_param"], "none");
  EXPECT_EQ(p["predicted"]["peak_memory_bytes"], 3 << 20);
  EXPECT_EQ(p["predicted"]["step_time_ns"], 3'000'000);
  EXPECT_EQ(p["memory_budget_bytes"], 4 << 20);
  EXPECT_EQ(p["objective"], "fastest");
  fs::remove_all(dir);
}

// The run spec sets micro-batch 4 with 2 accumulation steps; the plan's micro-batch 2 takes 4, the
// global batch the same, in the DeepSpeed config and the run spec alike (or it would not load).
TEST(PlanYaml, AnotherMicroBatchKeepsTheGlobalBatch) {
  const fs::path dir = TestDir();
  std::string text =
      std::regex_replace(std::string(kAliasedRun), std::regex("micro_batch: 2"), "micro_batch: 4");
  text = std::regex_replace(text, std::regex("steps_per_print: 7"),
                            "steps_per_print: 7\n  gradient_accumulation_steps: 2");
  Write(dir / "run.yaml", text);
  const RunSpec run = load_run_spec(dir / "run.yaml");
  ASSERT_EQ(run.deepspeed.batch.train_batch_size, 16);

  TuneOutcome o;
  o.run = &run;
  o.space = AliasedSpace();
  o.space.dims.insert(o.space.dims.begin(), Dim("micro_batch", {2}));
  o.result.best = Point{Candidate(o.space.dims.size(), 0), Eval(3'000'000, 3 << 20)};
  const Json ds = tuned_deepspeed_config(run, o.space, o.result.best->candidate);
  EXPECT_EQ(ds["train_micro_batch_size_per_gpu"], 2);
  EXPECT_EQ(ds["gradient_accumulation_steps"], 4);
  Write(dir / "plan.yaml", plan_yaml(o, dir));
  const RunSpec plan = load_run_spec(dir / "plan.yaml");
  EXPECT_EQ(plan.training.micro_batch, 2);
  EXPECT_EQ(plan.deepspeed.batch.gradient_accumulation_steps, 4);
  EXPECT_EQ(plan.deepspeed.batch.train_batch_size, 16);
  EXPECT_EQ(plan.tree.shape().micro_batch, 2);
  fs::remove_all(dir);
}

TEST(PlanYaml, TheRunSpecLoaderIgnoresThePlanSectionOnly) {
  const fs::path dir = TestDir();
  const std::string base = std::string(kAliasedRun);
  Write(dir / "plan.yaml", base + "plan: {chosen: {anything: [1, 2]}, note: free}\n");
  EXPECT_NO_THROW(load_run_spec(dir / "plan.yaml"));
  Write(dir / "typo.yaml", base + "plans: {}\n");
  EXPECT_THROW(load_run_spec(dir / "typo.yaml"), UserError);
  fs::remove_all(dir);
}

TEST(ToYaml, ReadsBackAsTheSameTree) {
  const Json tree = {
      {"strings",
       {"true",
        "False",
        "null",
        "~",
        "",
        "5e8",
        "0.16",
        "1_000",
        "0x10",
        "-x",
        "#c",
        "a: b",
        "yes",
        "plain",
        "with space",
        "quote\"d",
        "line\nbreak",
        "ünïcode",
        "type:BertLayer",
        "[x]",
        "{y}",
        "*a",
        "&b",
        "!c",
        "%d",
        "@e",
        "`f",
        "|g",
        ">h",
        "'i'",
        ".inf"}},
      {"numbers", {0, -3, 500000000, INT64_MAX, 0.5, 5e8, 1e-5, -2.25}},
      {"flags", {true, false, nullptr}},
      {"nested",
       {{"list of maps", {{{"a", 1}, {"b", {{"c", "d"}}}}, {{"e", Json::array()}}}},
        {"empty map", Json::object()},
        {"lists", {{1, 2}, {"x", {{"y", 3}}}}}}},
      {"0", "numeric key"},
      {"key with: colon", 1},
  };
  const std::string yaml = to_yaml(tree, {"numbers"});
  const Json back = Document::from_yaml(yaml, "back.yaml").root();
  EXPECT_EQ(back, tree) << yaml;
  EXPECT_EQ(yaml.rfind("numbers:", 0), 0u) << "keys in `order` come first";
}

TuneOutcome HandMadeOutcome(const RunSpec& run) {
  TuneOutcome o;
  o.run = &run;
  o.space.dims.push_back(Dim("checkpoint_interval", {0}));
  o.space.dims.push_back(Dim("offload_optimizer", {kNone}));
  o.space.dims.push_back(Dim("prefetch_bucket_size", {10000, 40000}));
  o.space.dims.push_back(Dim("max_live_parameters", {30000, 60000}));
  o.options.memory_budget = 6 << 20;
  o.options.workers = 2;
  const Evaluation fast = Eval(3'000'000, 5 << 20, 1 << 20);
  o.result.best = Point{{0, 0, 1, 0}, fast};
  o.result.runners_up = {Point{{0, 0, 1, 1}, Eval(3'100'000, 4 << 20)}};
  o.result.pareto = {Point{{0, 0, 0, 0}, Eval(4'000'000, 2 << 20)}, *o.result.best,
                     Point{{0, 0, 1, 1}, Eval(2'000'000, 8 << 20)}};
  o.result.least_memory = o.result.pareto.front();
  SearchStats& stats = o.result.stats;
  stats.space = 8;
  stats.simulated = 6;
  stats.reached = 4;
  stats.pruned_over_budget = 1;
  stats.pruned_dominated = 1;
  stats.collapsed = 3;
  stats.seconds = 0.25;
  o.baseline = Eval(3'500'000, 4 << 20, 3 << 20);
  // prefetch_bucket_size alone back at the user's 10000: 1 MiB less, 0.4 ms slower.
  KnobEffect prefetch;
  prefetch.dim = 2;
  prefetch.user_value = 10000;
  prefetch.with_user_value = Eval(3'400'000, 4 << 20, 2 << 20);
  o.effects = {prefetch};
  return o;
}

TEST(TuneReport, SaysEachChoiceItsReasonAndItsEffectAgainstYours) {
  const RunSpec run = load_run_spec(kSource / "configs/examples/tiny-gpt2-cpu.yaml");
  const TuneOutcome o = HandMadeOutcome(run);
  const std::string report = tune_report(o);
  // The chosen value under DeepSpeed's key, the user's, the reason, and the knob's own effect.
  EXPECT_NE(report.find("zero_optimization.stage3_prefetch_bucket_size = 40000  (yours: 10000)"),
            std::string::npos)
      << report;
  EXPECT_NE(report.find(std::string(find_knob("prefetch_bucket_size")->trade)), std::string::npos);
  EXPECT_NE(report.find("against yours: 1.00 MiB more memory, 400 us faster, 1.00 MiB less "
                        "all-gather traffic"),
            std::string::npos)
      << report;
  EXPECT_NE(report.find("zero_optimization.stage3_max_live_parameters = 30000  (as yours)"),
            std::string::npos);
  EXPECT_NE(report.find("training.checkpoint_interval = 0  (as yours), pinned"), std::string::npos);
  // The whole configuration against the user's.
  EXPECT_NE(report.find("500 us faster (14.3%), 1.00 MiB more memory, 2.00 MiB less all-gather"),
            std::string::npos)
      << report;
  // The runner-up by what differs from the chosen configuration.
  EXPECT_NE(report.find("max_live_parameters=60000"), std::string::npos);
  // The search's figures, pruned by reason.
  EXPECT_NE(report.find("over the memory budget  "), std::string::npos);
  EXPECT_NE(report.find("values merged (DeepSpeed acts on them alike)"), std::string::npos);
  EXPECT_NE(report.find("0.25 s on 2 workers"), std::string::npos);
  EXPECT_NE(report.find("2 ms  over the budget\n"), std::string::npos) << report;
  EXPECT_EQ(report.find("Nothing fits"), std::string::npos);
  EXPECT_TRUE(missing_summary(o).empty());
}

TEST(TuneReport, WhenNothingFitsSaysByHowMuchAndWhatWasNotTried) {
  const RunSpec run = load_run_spec(kSource / "configs/examples/tiny-gpt2-cpu.yaml");
  TuneOutcome o = HandMadeOutcome(run);
  o.result.best.reset();
  o.result.runners_up.clear();
  o.options.memory_budget = 1 << 20;  // the least found is 2 MiB
  std::string report = tune_report(o);
  EXPECT_NE(report.find("Nothing fits within 1.00 MiB per GPU"), std::string::npos) << report;
  EXPECT_NE(report.find("The least memory found: 2.00 MiB"), std::string::npos);
  EXPECT_NE(report.find("1.00 MiB over the budget"), std::string::npos);
  EXPECT_NE(report.find("GPUs with at least 2.00 MiB"), std::string::npos);
  EXPECT_NE(report.find("more GPUs"), std::string::npos);
  // Not searched here: optimizer offload (pinned to none), parameter offload, checkpointing.
  EXPECT_NE(report.find("offload_optimizer to the host (--pin offload_optimizer=cpu"),
            std::string::npos)
      << report;
  EXPECT_NE(report.find("activation checkpointing of every layer (--pin checkpoint_interval=1)"),
            std::string::npos);
  EXPECT_NE(report.find("a smaller micro batch (now 2"), std::string::npos);
  EXPECT_EQ(missing_summary(o),
            "nothing fits in 1.00 MiB per GPU: the least memory found is 2.00 MiB (1.00 MiB over)");

  // What the search tried is not suggested again.
  o.space.dims[0] = Dim("checkpoint_interval", {1, 0});
  o.space.dims[1] = Dim("offload_optimizer", {kCpu, kNone});
  report = tune_report(o);
  EXPECT_EQ(report.find("offload_optimizer to the host"), std::string::npos) << report;
  EXPECT_EQ(report.find("(--pin checkpoint_interval=1)"), std::string::npos);
  EXPECT_NE(report.find("activation checkpointing of every layer was tried"), std::string::npos);
}

double Attribute(const std::string& svg, const std::string& element_class,
                 const std::string& attribute) {
  const std::regex re("class=\"" + element_class + "\"[^>]*? " + attribute + "=\"([-0-9.]+)\"");
  std::smatch m;
  EXPECT_TRUE(std::regex_search(svg, m, re)) << element_class << " " << attribute;
  return m.empty() ? -1 : std::stod(m[1]);
}

TEST(ParetoSvg, PlotsTheFrontTheChoiceAndTheBudget) {
  RunSpec run = load_run_spec(kSource / "configs/examples/tiny-gpt2-cpu.yaml");
  run.name = "a<b&c";
  const TuneOutcome o = HandMadeOutcome(run);
  const std::string svg = pareto_svg(o);
  EXPECT_EQ(svg.rfind("<svg xmlns=\"http://www.w3.org/2000/svg\"", 0), 0u);
  EXPECT_NE(svg.find("</svg>"), std::string::npos);
  EXPECT_NE(svg.find("a&lt;b&amp;c"), std::string::npos);
  EXPECT_EQ(svg.find("a<b"), std::string::npos);
  std::size_t front = 0;
  for (std::size_t at = svg.find("<circle class=\"front\""); at != std::string::npos;
       at = svg.find("<circle class=\"front\"", at + 1))
    ++front;
  EXPECT_EQ(front, o.result.pareto.size());
  EXPECT_NE(svg.find("step time (ms)"), std::string::npos);
  EXPECT_NE(svg.find("peak memory per GPU (MiB, reserved)"), std::string::npos);
  // Up is more memory: the chosen 5 MiB sits below the 6 MiB budget, the 8 MiB point above it;
  // right is slower: the chosen 3 ms is left of the user's 3.5 ms.
  const double budget_y = Attribute(svg, "budget", "y1");
  EXPECT_GT(Attribute(svg, "chosen", "cy"), budget_y);
  EXPECT_LT(Attribute(svg, "chosen", "cx"), Attribute(svg, "baseline", "x") + 5);
  const std::regex points("<circle class=\"front\" cx=\"([-0-9.]+)\" cy=\"([-0-9.]+)\"");
  std::vector<std::pair<double, double>> xy;
  for (auto it = std::sregex_iterator(svg.begin(), svg.end(), points); it != std::sregex_iterator();
       ++it)
    xy.emplace_back(std::stod((*it)[1]), std::stod((*it)[2]));
  ASSERT_EQ(xy.size(), 3u);
  EXPECT_GT(xy[0].second, budget_y);    // 2 MiB
  EXPECT_LT(xy[2].second, budget_y);    // 8 MiB
  EXPECT_GT(xy[0].first, xy[1].first);  // 4 ms right of 3 ms
  EXPECT_GT(xy[1].first, xy[2].first);  // 3 ms right of 2 ms
}

TEST(TuneJson, HasTheChoiceItsKeysThePredictionAndTheSearch) {
  const RunSpec run = load_run_spec(kSource / "configs/examples/tiny-gpt2-cpu.yaml");
  TuneOutcome o = HandMadeOutcome(run);
  o.result.stats.interrupted = true;
  const Json j = tune_json(o);
  EXPECT_TRUE(j["fits"].get<bool>());
  EXPECT_EQ(j["chosen"]["prefetch_bucket_size"]["key"],
            "zero_optimization.stage3_prefetch_bucket_size");
  EXPECT_EQ(j["chosen"]["prefetch_bucket_size"]["value"], 40000);
  EXPECT_EQ(j["chosen"]["prefetch_bucket_size"]["user_value"], 10000);
  EXPECT_EQ(j["chosen"]["checkpoint_interval"]["key"], "training.checkpoint_interval");
  EXPECT_EQ(j["chosen"]["offload_optimizer"]["value"], "none");
  EXPECT_EQ(j["predicted"]["step_time_ns"], 3'000'000);
  EXPECT_EQ(j["predicted"]["peak_memory_bytes"], 5 << 20);
  EXPECT_EQ(j["baseline"]["step_time_ns"], 3'500'000);
  EXPECT_EQ(j["search"]["simulated"], 6);
  EXPECT_EQ(j["search"]["pruned"]["total"], 2);
  EXPECT_EQ(j["search"]["pruned"]["over_memory_budget"], 1);
  EXPECT_EQ(j["search"]["seconds"], 0.25);
  EXPECT_TRUE(j["search"]["interrupted"].get<bool>());
  EXPECT_EQ(j["pareto"].size(), 3u);
  EXPECT_EQ(j["memory_budget_bytes"], 6 << 20);

  o.result.best.reset();
  o.options.memory_budget = 1 << 20;
  const Json none = tune_json(o);
  EXPECT_FALSE(none["fits"].get<bool>());
  EXPECT_TRUE(none["chosen"].is_null());
  EXPECT_EQ(none["least_memory"]["predicted"]["peak_memory_bytes"], 2 << 20);
  EXPECT_NE(none["missing"].get<std::string>().find("1.00 MiB over"), std::string::npos);
}

// A knob's effect is the chosen configuration with that knob alone back at the user's value.
TEST(KnobEffects, PutsBackOneKnobAtATime) {
  const RunSpec run = load_run_spec(kSource / "configs/examples/tiny-gpt2-cpu.yaml");
  ASSERT_EQ(run.deepspeed.zero.prefetch_bucket_size, 10000);
  ASSERT_EQ(run.deepspeed.zero.max_live_parameters, 30000);
  SearchSpace space;
  space.dims.push_back(Dim("prefetch_bucket_size", {0, 10000}));
  space.dims.push_back(Dim("max_live_parameters", {30000, 0}));
  // Only prefetch differs from the user's: one effect, and it is the user's run as written.
  const std::vector<KnobEffect> one = knob_effects(run, space, {0, 0}, false);
  ASSERT_EQ(one.size(), 1u);
  EXPECT_EQ(one[0].dim, 0u);
  EXPECT_EQ(one[0].user_value, 10000);
  const Evaluation yours = evaluate(run, false);
  EXPECT_EQ(one[0].with_user_value.step_ns, yours.step_ns);
  EXPECT_EQ(one[0].with_user_value.memory, yours.memory);
  // Both differ: prefetch back alone keeps max_live_parameters at its chosen 0.
  const std::vector<KnobEffect> two = knob_effects(run, space, {0, 1}, false);
  ASSERT_EQ(two.size(), 2u);
  RunSpec expected = run;
  expected.deepspeed.zero.max_live_parameters = 0;
  EXPECT_EQ(two[0].with_user_value.step_ns, evaluate(expected, false).step_ns);
  EXPECT_TRUE(knob_effects(run, space, {1, 0}, false).empty());
}

}  // namespace
}  // namespace zp::planner
