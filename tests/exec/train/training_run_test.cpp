#include "exec/train/training_run.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <mutex>
#include <sstream>
#include <string>

#include "core/config/document.h"
#include "core/trace/native_format.h"
#include "core/util/error.h"
#include "exec/comm/local_ranks.h"

namespace zp::exec {
namespace {

const std::filesystem::path kSource = ZEROPLAN_SOURCE_DIR;

// The bundled CPU example with `edit` applied to its text.
RunSpec example(const std::string& from = "", const std::string& to = "") {
  std::ifstream in(kSource / "configs/examples/tiny-gpt2-cpu.yaml");
  std::stringstream text;
  text << in.rdbuf();
  std::string yaml = text.str();
  if (!from.empty()) {
    const auto at = yaml.find(from);
    EXPECT_NE(at, std::string::npos) << from;
    if (at != std::string::npos) yaml.replace(at, from.size(), to);
  }
  return parse_run_spec(Document::from_yaml(yaml, "run.yaml"), kSource / "configs/examples");
}

std::string plan_error(const RunSpec& spec, std::int64_t world = 2) {
  try {
    plan_training(spec, world, TrainingOptions{});
  } catch (const UserError& e) {
    return e.what();
  }
  return "";
}

// Runs `plan` on its ranks as threads of this process; what rank 0 reports (the others write
// nothing).
std::string train_on_threads(const TrainingPlan& plan) {
  std::string report;
  std::mutex mutex;
  comm::run_local_ranks_with_groups(static_cast<int>(plan.world),
                                    [&](comm::Communicator& world, const comm::GroupMaker& groups) {
                                      std::ostringstream out;
                                      EXPECT_EQ(run_training(plan, world, groups, out), 0);
                                      std::lock_guard<std::mutex> lock(mutex);
                                      report += out.str();
                                    });
  return report;
}

TEST(PlanTraining, TheBundledExamplePlansWithDefaults) {
  const TrainingPlan plan = plan_training(example(), 2, TrainingOptions{});
  EXPECT_EQ(plan.world, 2);
  EXPECT_EQ(plan.accumulation, 1);
  EXPECT_TRUE(plan.default_optimizer);
  EXPECT_EQ(plan.optimizer.kind, OptimizerKind::kAdamW);
}

TEST(PlanTraining, RefusesWhatExecDoesNotTrainNamingTheKey) {
  EXPECT_NE(plan_error(example("stage: 3", "stage: 2")).find("zero_optimization.stage"),
            std::string::npos);
  EXPECT_NE(plan_error(example(), 4).find("parallel.data"), std::string::npos);
  EXPECT_NE(plan_error(example(), 4).find("4 are running"), std::string::npos);
  EXPECT_NE(plan_error(example("stage: 3", "stage: 3\n    offload_optimizer: {device: cpu}"))
                .find("offload_optimizer"),
            std::string::npos);
}

TEST(PlanTraining, ReadsTheOptimizerFromTheDeepSpeedConfig) {
  const std::string adam =
      "deepspeed:\n  optimizer: {type: Adam, params: {lr: 0.01, betas: [0.8, 0.9], "
      "weight_decay: 0.1}}\n";
  const TrainingPlan plan = plan_training(example("deepspeed:\n", adam), 2, TrainingOptions{});
  EXPECT_FALSE(plan.default_optimizer);
  EXPECT_EQ(plan.optimizer.kind, OptimizerKind::kAdamW);
  EXPECT_DOUBLE_EQ(plan.optimizer.lr, 0.01);
  EXPECT_DOUBLE_EQ(plan.optimizer.beta1, 0.8);
  EXPECT_DOUBLE_EQ(plan.optimizer.beta2, 0.9);
  EXPECT_DOUBLE_EQ(plan.optimizer.weight_decay, 0.1);

  const TrainingPlan sgd =
      plan_training(example("deepspeed:\n",
                            "deepspeed:\n  optimizer: {type: SGD, params: {lr: 0.5, momentum: "
                            "0.9}}\n"),
                    2, TrainingOptions{});
  EXPECT_EQ(sgd.optimizer.kind, OptimizerKind::kSgd);
  EXPECT_DOUBLE_EQ(sgd.optimizer.momentum, 0.9);

  EXPECT_NE(plan_error(example("deepspeed:\n", "deepspeed:\n  optimizer: {type: Lamb}\n"))
                .find("optimizer.type"),
            std::string::npos);
  EXPECT_NE(plan_error(example("deepspeed:\n",
                               "deepspeed:\n  optimizer: {type: SGD, params: {lr: fast}}\n"))
                .find("optimizer.params.lr"),
            std::string::npos);
}

TEST(RunTraining, TrainsOnTwoRanksAndWritesOneTraceOfBoth) {
  const std::filesystem::path trace_path =
      std::filesystem::temp_directory_path() / "zeroplan_training_run_test.trace.json";
  TrainingOptions options;
  options.steps = 2;
  options.trace = trace_path.string();
  options.count_memory = false;  // the ranks are threads of this process
  const TrainingPlan plan = plan_training(example(), 2, options);
  const std::string report = train_on_threads(plan);
  EXPECT_NE(report.find("step 0  loss"), std::string::npos) << report;
  EXPECT_NE(report.find("step 1  loss"), std::string::npos) << report;
  EXPECT_NE(report.find("reduce_scatter"), std::string::npos) << report;

  const trace::Trace t = trace::read_native(trace_path);
  std::filesystem::remove(trace_path);
  EXPECT_FALSE(trace::check_trace(t).has_value());
  EXPECT_EQ(t.source, trace::Source::kMeasured);
  ASSERT_EQ(t.ranks.size(), 2u);
  for (std::int32_t rank = 0; rank < 2; ++rank) {
    int forward = 0, backward = 0, gathers = 0;
    for (const trace::Op& op : t.ops) {
      if (op.rank != rank) continue;
      forward += op.kind == trace::OpKind::kForward;
      backward += op.kind == trace::OpKind::kBackward;
      gathers += op.kind == trace::OpKind::kAllGather;
    }
    EXPECT_GT(forward, 0) << "rank " << rank;
    EXPECT_GT(backward, 0) << "rank " << rank;
    EXPECT_GT(gathers, 0) << "rank " << rank;
  }
}

TEST(RunTraining, TrainsTheBundledPipelineExampleOnTwoStages) {
  const RunSpec spec = load_run_spec(kSource / "configs/examples/tiny-gpt2-pipeline-cpu.yaml");
  TrainingOptions options;
  options.steps = 2;
  options.count_memory = false;  // the ranks are threads of this process
  const TrainingPlan plan = plan_training(spec, 2, options);
  EXPECT_EQ(plan.accumulation, 4);
  const std::string report = train_on_threads(plan);
  EXPECT_NE(report.find("2 pipeline stages x 1 data-parallel over 2 rank(s)"), std::string::npos)
      << report;
  EXPECT_NE(report.find("step 1  loss"), std::string::npos) << report;
  EXPECT_NE(report.find("send"), std::string::npos) << report;
  EXPECT_NE(report.find("recv"), std::string::npos) << report;
}

TEST(PlanTraining, APipelineRunsWithZeroStageZeroOnly) {
  const RunSpec spec = load_run_spec(kSource / "configs/examples/tiny-gpt2-pipeline-cpu.yaml");
  EXPECT_NO_THROW(plan_training(spec, 2, TrainingOptions{}));
  std::ifstream in(kSource / "configs/examples/tiny-gpt2-pipeline-cpu.yaml");
  std::stringstream text;
  text << in.rdbuf();
  std::string yaml = text.str();
  yaml.replace(yaml.find("stage: 0"), 8, "stage: 1");
  const RunSpec stage1 =
      parse_run_spec(Document::from_yaml(yaml, "run.yaml"), kSource / "configs/examples");
  EXPECT_NE(plan_error(stage1).find("exec runs pipelines with ZeRO stage 0"), std::string::npos);
}

}  // namespace
}  // namespace zp::exec
