#include "core/config/run_spec.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <string>

#include "core/model/model_json.h"
#include "core/model/presets.h"

namespace zp {
namespace {

const std::filesystem::path kSource = ZEROPLAN_SOURCE_DIR;

RunSpec Parse(const std::string& yaml,
              const std::filesystem::path& base = std::filesystem::temp_directory_path()) {
  const Document d = Document::from_yaml(yaml, "run.yaml");
  return parse_run_spec(d, base);
}

UserError ErrorOf(const std::string& yaml,
                  const std::filesystem::path& base = std::filesystem::temp_directory_path()) {
  try {
    Parse(yaml, base);
  } catch (const UserError& e) {
    return e;
  }
  ADD_FAILURE() << "accepted:\n" << yaml;
  return UserError(ErrorKind::kValue, {}, "");
}

const char* kBase = R"(model: tiny-gpt2
cluster: {preset: dgx-a100-80g, nodes: 1}
training: {sequence_length: 16, micro_batch: 2, dtype: bf16}
deepspeed:
  zero_optimization: {stage: 3}
)";

TEST(RunSpec, EveryBundledExampleResolves) {
  int count = 0;
  for (const auto& entry : std::filesystem::directory_iterator(kSource / "configs" / "examples")) {
    if (entry.path().extension() != ".yaml") continue;
    ++count;
    const RunSpec run = load_run_spec(entry.path());
    EXPECT_GT(run.tree.total_parameters(), 0) << entry.path();
    EXPECT_EQ(run.parallel.world(), run.cluster.total_gpus()) << entry.path();
    EXPECT_EQ(run.deepspeed.batch.train_batch_size,
              run.deepspeed.batch.micro_batch_per_gpu *
                  run.deepspeed.batch.gradient_accumulation_steps * run.parallel.data);
    EXPECT_TRUE(run.warnings.empty()) << entry.path() << ": " << run.warnings.front().str();
  }
  EXPECT_GE(count, 5);
}

TEST(RunSpec, DefaultExample) {
  const RunSpec run = load_run_spec(kSource / "configs/examples/gpt2-zero3.yaml");
  EXPECT_EQ(run.tree.total_parameters(), 124'439'808);
  EXPECT_EQ(run.parallel.data, 8);
  EXPECT_EQ(run.training.micro_batch, 8);
  EXPECT_EQ(run.training.dtype, DType::kBFloat16);
  EXPECT_EQ(run.tree.shape().sequence_length, 1024);
  EXPECT_EQ(run.deepspeed.zero.stage, 3);
  EXPECT_EQ(run.deepspeed.zero.reduce_bucket_size, 50'000'000);
  EXPECT_EQ(run.deepspeed_file, kSource / "configs/examples/ds/gpt2-zero3.json");
}

TEST(RunSpec, InlineDeepSpeedErrorsPointIntoTheRunSpec) {
  const UserError e = ErrorOf(R"(model: tiny-gpt2
cluster: dgx-a100-80g
training: {sequence_length: 16, micro_batch: 2}
deepspeed:
  zero_optimization:
    stage: 3
    stage3_max_live_parameters: -5
)");
  EXPECT_EQ(e.kind(), ErrorKind::kValue);
  EXPECT_EQ(e.where().file, "run.yaml");
  EXPECT_EQ(e.where().line, 7);
  EXPECT_EQ(e.where().column, 33);
  EXPECT_EQ(e.where().key_path, "deepspeed.zero_optimization.stage3_max_live_parameters");
  EXPECT_NE(std::string(e.what()).find("-5"), std::string::npos);
  EXPECT_NE(std::string(e.what()).find(">= 0"), std::string::npos);
}

TEST(RunSpec, UnknownKeysAnywhereSuggestTheClosest) {
  struct Case {
    std::string yaml;
    std::string key_path;
    std::string suggestion;
  };
  const std::string base = kBase;
  for (const Case& c : {
           Case{base + "paralel: {data: 8}\n", "paralel", "parallel"},
           Case{"model: tiny-gpt2\ncluster: dgx-a100-80g\ntraining: {sequence_lenght: 16, "
                "micro_batch: 2}\ndeepspeed: {}\n",
                "training.sequence_lenght", "sequence_length"},
           Case{"model: tiny-gpt2\ncluster: {preset: dgx-a100-80g, gpu_memroy: 40GiB}\ntraining: "
                "{sequence_length: 16, micro_batch: 2}\ndeepspeed: {}\n",
                "cluster.gpu_memroy", "gpu_memory"},
           Case{"model: tiny-gpt2\ncluster: dgx-a100-80g\ntraining: {sequence_length: 16, "
                "micro_batch: 2}\ndeepspeed: {zero_optimization: {stage: 3, overlap_com: true}}\n",
                "deepspeed.zero_optimization.overlap_com", "overlap_comm"},
       }) {
    const UserError e = ErrorOf(c.yaml);
    EXPECT_EQ(e.kind(), ErrorKind::kUnknownKey) << c.yaml;
    EXPECT_EQ(e.where().key_path, c.key_path);
    EXPECT_GT(e.where().line, 0);
    EXPECT_NE(std::string(e.what()).find("did you mean '" + c.suggestion + "'"), std::string::npos)
        << e.what();
  }
}

TEST(RunSpec, WrongTypesNameTheValue) {
  const UserError e = ErrorOf(
      "model: tiny-gpt2\ncluster: dgx-a100-80g\ntraining: {sequence_length: long, micro_batch: "
      "2}\ndeepspeed: {}\n");
  EXPECT_EQ(e.kind(), ErrorKind::kType);
  EXPECT_EQ(e.where().line, 3);
  EXPECT_NE(std::string(e.what()).find("\"long\""), std::string::npos);
}

TEST(RunSpec, ParallelDegreesMustFillTheCluster) {
  const RunSpec inferred = Parse(std::string(kBase) + "parallel: {tensor: 2}\n");
  EXPECT_EQ(inferred.parallel.data, 4);
  EXPECT_EQ(ErrorOf(std::string(kBase) + "parallel: {data: 3}\n").kind(), ErrorKind::kConflict);
  EXPECT_EQ(ErrorOf(std::string(kBase) + "parallel: {pipeline: 3}\n").kind(), ErrorKind::kConflict);
  EXPECT_EQ(ErrorOf(std::string(kBase) + "parallel: {tensor: 0}\n").kind(), ErrorKind::kValue);
}

TEST(RunSpec, DataParallelSizeDrivesTheBatchRule) {
  const RunSpec run = Parse(R"(model: tiny-gpt2
cluster: dgx-a100-80g
parallel: {tensor: 2}
training: {sequence_length: 16}
deepspeed: {train_batch_size: 32, gradient_accumulation_steps: 2}
)");
  EXPECT_EQ(run.parallel.data, 4);
  EXPECT_EQ(run.deepspeed.batch.micro_batch_per_gpu, 4);
  EXPECT_EQ(run.training.micro_batch, 4);
  EXPECT_EQ(run.tree.shape().micro_batch, 4);
}

TEST(RunSpec, ClusterPresetsAndInlineClusters) {
  EXPECT_NE(std::string(ErrorOf("model: tiny-gpt2\ncluster: dgx-a100\ntraining: {sequence_length: "
                                "16, micro_batch: 2}\ndeepspeed: {}\n")
                            .what())
                .find("did you mean"),
            std::string::npos);
  const UserError missing = ErrorOf(
      "model: tiny-gpt2\ncluster: {gpus_per_node: 2}\ntraining: {sequence_length: 16, micro_batch: "
      "2}\ndeepspeed: {}\n");
  EXPECT_EQ(missing.kind(), ErrorKind::kMissing);
  const UserError unit = ErrorOf(
      "model: tiny-gpt2\ncluster: {preset: dgx-a100-80g, gpu_memory: 80G}\ntraining: "
      "{sequence_length: 16, micro_batch: 2}\ndeepspeed: {}\n");
  EXPECT_EQ(unit.kind(), ErrorKind::kValue);
  EXPECT_EQ(unit.where().key_path, "cluster.gpu_memory");
  EXPECT_NE(std::string(unit.what()).find("ambiguous"), std::string::npos);
  const RunSpec run = load_run_spec(kSource / "configs/examples/tiny-gpt2-cpu.yaml");
  EXPECT_EQ(run.cluster.gpu_memory, 4LL << 30);
  EXPECT_DOUBLE_EQ(run.cluster.intra_node.bandwidth, 5e9);
  EXPECT_EQ(run.cluster.intra_node.latency_ns, 20'000);
  EXPECT_DOUBLE_EQ(run.cluster.peak_flops.at("fp32"), 50e9);
}

TEST(RunSpec, ClusterCostModelKeys) {
  const auto spec = [](const std::string& extra) {
    return "model: tiny-gpt2\ncluster: {preset: dgx-a100-80g" + extra +
           "}\ntraining: {sequence_length: 16, micro_batch: 2}\ndeepspeed: {}\n";
  };
  const RunSpec defaults = Parse(spec(""));
  EXPECT_DOUBLE_EQ(defaults.cluster.efficiency.compute, 0.5);
  EXPECT_DOUBLE_EQ(defaults.cluster.efficiency.hbm, 0.8);
  EXPECT_DOUBLE_EQ(defaults.cluster.efficiency.network, 0.8);
  EXPECT_EQ(defaults.cluster.kernel_launch_ns, 4000);
  EXPECT_EQ(defaults.cluster.autograd_node_ns, 2000);
  EXPECT_TRUE(defaults.cluster.asynchronous_launch);
  EXPECT_TRUE(defaults.cluster.comm_overlaps_compute);
  EXPECT_DOUBLE_EQ(defaults.cluster.host_optimizer_rate, 1e9);

  const RunSpec set =
      Parse(spec(", efficiency: {compute: 0.7, network: 1}, kernel_launch: 2us, "
                 "autograd_node: 700ns, asynchronous_launch: false, host_optimizer_rate: 5e8, "
                 "comm_overlaps_compute: false, elementwise_flops: 3 GFLOP/s, "
                 "module_flops: {Dropout: 200 MFLOP/s, LlamaRMSNorm: 1e9}, hook_overhead: 30us, "
                 "step_slowdown: {kernels: 3.5, rates: 1.25}, "
                 "point_to_point: {bandwidth: 2GB/s, latency: 30us}, "
                 "reduce_scatter_by_all_reduce: true, collective_overhead: 800us, "
                 "collective_host_time: 90us"));
  EXPECT_DOUBLE_EQ(set.cluster.efficiency.compute, 0.7);
  EXPECT_DOUBLE_EQ(set.cluster.efficiency.hbm, 0.8);
  EXPECT_DOUBLE_EQ(set.cluster.efficiency.network, 1.0);
  EXPECT_EQ(set.cluster.kernel_launch_ns, 2000);
  EXPECT_EQ(set.cluster.autograd_node_ns, 700);
  EXPECT_FALSE(set.cluster.asynchronous_launch);
  EXPECT_FALSE(set.cluster.comm_overlaps_compute);
  EXPECT_DOUBLE_EQ(set.cluster.elementwise_flops, 3e9);
  EXPECT_EQ(defaults.cluster.elementwise_flops, 0) << "peak_flops stands";
  EXPECT_EQ(set.cluster.module_flops,
            (std::map<std::string, double>{{"Dropout", 2e8}, {"LlamaRMSNorm", 1e9}}));
  EXPECT_TRUE(defaults.cluster.module_flops.empty());
  EXPECT_EQ(set.cluster.hook_overhead_ns, 30000);
  EXPECT_EQ(defaults.cluster.hook_overhead_ns, 0) << "hooks cost nothing unless told";
  EXPECT_EQ(set.cluster.step_slowdown, (ClusterSpec::StepSlowdown{3.5, 1.25}));
  EXPECT_EQ(defaults.cluster.step_slowdown, (ClusterSpec::StepSlowdown{1, 1}))
      << "a step runs its calls as fast as they run alone unless told";
  EXPECT_EQ(set.cluster.point_to_point, (LinkSpec{2e9, 30000}));
  EXPECT_FALSE(defaults.cluster.point_to_point) << "a send/recv takes intra_node unless told";
  EXPECT_TRUE(set.cluster.reduce_scatter_by_all_reduce);
  EXPECT_FALSE(defaults.cluster.reduce_scatter_by_all_reduce);
  EXPECT_EQ(set.cluster.collective_overhead_ns, 800000);
  EXPECT_EQ(defaults.cluster.collective_overhead_ns, 0) << "a collective costs its hops alone";
  EXPECT_EQ(set.cluster.collective_host_ns, 90000);
  EXPECT_EQ(defaults.cluster.collective_host_ns, 0);
  EXPECT_DOUBLE_EQ(set.cluster.host_optimizer_rate, 5e8);
  bool user = false;
  for (const auto& s : set.provenance) {
    if (s.key == "cluster.efficiency.compute") user = s.origin == Origin::kUser;
  }
  EXPECT_TRUE(user);

  const UserError over = ErrorOf(spec(", efficiency: {compute: 1.5}"));
  EXPECT_EQ(over.where().key_path, "cluster.efficiency.compute");
  EXPECT_NE(std::string(over.what()).find("(0, 1]"), std::string::npos);
  EXPECT_EQ(ErrorOf(spec(", efficiency: {hbm: 0}")).where().key_path, "cluster.efficiency.hbm");
  EXPECT_EQ(ErrorOf(spec(", efficiency: {disk: 0.5}")).kind(), ErrorKind::kUnknownKey);
  const UserError faster = ErrorOf(spec(", step_slowdown: {rates: 0.5}"));
  EXPECT_EQ(faster.where().key_path, "cluster.step_slowdown.rates");
  EXPECT_NE(std::string(faster.what()).find(">= 1"), std::string::npos) << faster.what();
  EXPECT_EQ(ErrorOf(spec(", step_slowdown: {kernels: .inf}")).where().key_path,
            "cluster.step_slowdown.kernels");
  EXPECT_EQ(ErrorOf(spec(", step_slowdown: {launch: 2}")).kind(), ErrorKind::kUnknownKey);
  const UserError half = ErrorOf(spec(", point_to_point: {latency: 30us}"));
  EXPECT_EQ(half.kind(), ErrorKind::kMissing);
  EXPECT_NE(std::string(half.what()).find("'bandwidth'"), std::string::npos) << half.what();
  // Each value refused at its own key path.
  for (const auto& [keys, key_path] : std::initializer_list<std::pair<const char*, const char*>>{
           {", point_to_point: {bandwidth: 2GB/s, latency: -1us}",
            "cluster.point_to_point.latency"},
           {", point_to_point: {bandwidth: 0, latency: 1us}", "cluster.point_to_point.bandwidth"},
           {", intra_node: {latency: -1us}", "cluster.intra_node.latency"},
           {", collective_overhead: -1us", "cluster.collective_overhead"},
           {", collective_host_time: -1us", "cluster.collective_host_time"},
           {", kernel_launch: 4", "cluster.kernel_launch"},
           {", autograd_node: -1us", "cluster.autograd_node"},
           {", autograd_node: 3", "cluster.autograd_node"},
           {", asynchronous_launch: sometimes", "cluster.asynchronous_launch"},
           {", comm_overlaps_compute: 2", "cluster.comm_overlaps_compute"},
           {", reduce_scatter_by_all_reduce: yes please", "cluster.reduce_scatter_by_all_reduce"},
           {", elementwise_flops: 0", "cluster.elementwise_flops"},
           {", hook_overhead: -1us", "cluster.hook_overhead"},
           {", hook_overhead: 3", "cluster.hook_overhead"},
           {", module_flops: {Dropout: 0}", "cluster.module_flops.Dropout"},
           {", module_flops: {Dropout: fast}", "cluster.module_flops.Dropout"},
           {", host_optimizer_rate: 0", "cluster.host_optimizer_rate"},
       })
    EXPECT_EQ(ErrorOf(spec(keys)).where().key_path, key_path) << keys;
  EXPECT_EQ(ErrorOf(spec(", module_flops: 3")).kind(), ErrorKind::kType);
}

TEST(RunSpec, TrainingShapeRules) {
  EXPECT_EQ(
      ErrorOf(
          "model: tiny-gpt2\ncluster: dgx-a100-80g\ntraining: {micro_batch: 2}\ndeepspeed: {}\n")
          .kind(),
      ErrorKind::kMissing);
  EXPECT_EQ(ErrorOf("model: tiny-gpt2\ncluster: dgx-a100-80g\ntraining: {sequence_length: 16, "
                    "micro_batch: 2, dtype: fp8}\ndeepspeed: {}\n")
                .kind(),
            ErrorKind::kValue);
  // The micro batch can come from DeepSpeed alone; the dtype from its bf16 section.
  const RunSpec run = Parse(
      "model: tiny-gpt2\ncluster: dgx-a100-80g\ntraining: {sequence_length: 16}\n"
      "deepspeed: {train_micro_batch_size_per_gpu: 3, bf16: {enabled: true}}\n");
  EXPECT_EQ(run.training.micro_batch, 3);
  EXPECT_EQ(run.training.dtype, DType::kBFloat16);
  EXPECT_EQ(run.tree.parameter(0).dtype, DType::kBFloat16);
}

TEST(RunSpec, ModelFilesAreRescaledToTheRunShape) {
  const std::filesystem::path dir =
      std::filesystem::temp_directory_path() / "zeroplan_run_spec_test";
  std::filesystem::create_directories(dir);
  ModuleTree tree = build_model(*find_preset("tiny-gpt2"), BatchShape{1, 16, DType::kFloat32});
  save_model_file(tree, dir / "m.json");
  const std::string spec =
      "model: {file: m.json}\ncluster: dgx-a100-80g\ntraining: {micro_batch: 2, dtype: "
      "bf16}\ndeepspeed: {}\n";
  const RunSpec run = Parse(spec, dir);
  EXPECT_EQ(run.training.sequence_length, 16);  // taken from the file
  ASSERT_EQ(run.warnings.size(), 1u);
  EXPECT_NE(run.warnings[0].str().find("scaled linearly"), std::string::npos);
  // Twice the tokens, half the element size: activations stay the same, FLOPs double.
  for (size_t i = 0; i < tree.modules().size(); ++i) {
    const ModuleCost& before = tree.modules()[i].cost;
    const ModuleCost& after = run.tree.modules()[i].cost;
    EXPECT_EQ(after.forward_flops, 2 * before.forward_flops);
    EXPECT_EQ(after.activation_bytes, before.activation_bytes);
  }
  EXPECT_EQ(run.tree.parameter(0).dtype, DType::kBFloat16);
  EXPECT_EQ(ErrorOf("model: {file: nope.json}\ncluster: dgx-a100-80g\ntraining: {micro_batch: "
                    "2}\ndeepspeed: {}\n",
                    dir)
                .kind(),
            ErrorKind::kMissing);
  std::filesystem::remove_all(dir);
}

TEST(RunSpec, MissingDeepSpeedFile) {
  const UserError e = ErrorOf(
      "model: tiny-gpt2\ncluster: dgx-a100-80g\ntraining: {sequence_length: 16, micro_batch: "
      "2}\ndeepspeed: missing.json\n");
  EXPECT_EQ(e.kind(), ErrorKind::kMissing);
  EXPECT_NE(std::string(e.what()).find("missing.json"), std::string::npos);
}

TEST(RunSpec, RequiredSections) {
  for (const char* key : {"model", "cluster", "deepspeed"}) {
    std::string yaml =
        "model: tiny-gpt2\ncluster: dgx-a100-80g\ntraining: {sequence_length: 16, micro_batch: "
        "2}\ndeepspeed: {}\n";
    const size_t at = yaml.find(std::string(key) + ":");
    yaml.erase(at, yaml.find('\n', at) - at + 1);
    const UserError e = ErrorOf(yaml);
    EXPECT_EQ(e.kind(), ErrorKind::kMissing) << key;
    EXPECT_NE(std::string(e.what()).find(key), std::string::npos);
  }
}

TEST(RunSpec, LeafModulesAndDeepSpeedVersion) {
  const RunSpec run = Parse(std::string(kBase) +
                            "z3_leaf_modules: [GPT2Block, GPT2Blok]\ndeepspeed_version: 0.14\n");
  EXPECT_EQ(run.z3_leaf_modules, (std::vector<std::string>{"GPT2Block", "GPT2Blok"}));
  EXPECT_EQ(run.deepspeed_version, zero::DeepSpeedVersion::kV0_14);
  EXPECT_EQ(run.zero_settings().leaf_module_classes.size(), 2u);
  ASSERT_EQ(run.warnings.size(), 1u);  // one class matches nothing: most likely a typo
  EXPECT_NE(run.warnings[0].str().find("did you mean 'GPT2Block'"), std::string::npos)
      << run.warnings[0].str();
  EXPECT_EQ(Parse(kBase).deepspeed_version, zero::DeepSpeedVersion::kCurrent);
  // None matching is DeepSpeed's error.
  const UserError none = ErrorOf(std::string(kBase) + "z3_leaf_modules: [Nothing]\n");
  EXPECT_EQ(none.kind(), ErrorKind::kValue);
  EXPECT_EQ(none.where().key_path, "z3_leaf_modules");
  EXPECT_EQ(ErrorOf(std::string(kBase) + "z3_leaf_modules: GPT2Block\n").kind(), ErrorKind::kType);
  EXPECT_EQ(ErrorOf(std::string(kBase) + "deepspeed_version: 0.12\n").kind(), ErrorKind::kValue);
}

}  // namespace
}  // namespace zp
