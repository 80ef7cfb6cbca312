#include "gui/view/pareto.h"

#include <gtest/gtest.h>

#include "core/util/error.h"

namespace zp::gui {
namespace {

Json report_json() {
  return Json::parse(R"({
    "run": "demo", "objective": "fastest", "memory_budget_bytes": 800,
    "chosen": {"prefetch_bucket_size": {"key": "zero_optimization.stage3_prefetch_bucket_size",
                                        "value": 500, "user_value": 100}},
    "predicted": {"peak_memory_bytes": 700, "step_time_ns": 100},
    "baseline": {"peak_memory_bytes": 900, "step_time_ns": 300},
    "pareto": [
      {"values": {"prefetch_bucket_size": 100}, "peak_memory_bytes": 400, "step_time_ns": 200},
      {"values": {"prefetch_bucket_size": 500}, "peak_memory_bytes": 700, "step_time_ns": 100}
    ]})");
}

TEST(TuneReport, ReadsTheFrontSortedByStepTimeAndTheChosenValues) {
  const Json j = report_json();
  ASSERT_TRUE(is_tune_report(j));
  const TuneReport r = read_tune_report(j, "tune.json");
  EXPECT_EQ(r.run, "demo");
  EXPECT_EQ(r.memory_budget, 800);
  ASSERT_EQ(r.pareto.size(), 2u);
  EXPECT_EQ(r.pareto[0].step_ns, 100);
  EXPECT_EQ(r.pareto[1].memory, 400);
  EXPECT_EQ(r.pareto[1].values["prefetch_bucket_size"], 100);
  ASSERT_TRUE(r.chosen);
  EXPECT_EQ(r.chosen->values["prefetch_bucket_size"], 500);
  ASSERT_TRUE(r.baseline);
  EXPECT_EQ(r.baseline->memory, 900);
}

TEST(TuneReport, APointsTraceIsFoundBesideTheReport) {
  Json j = report_json();
  j["pareto"][0]["trace"] = "front/0.trace.json";
  j["pareto"][1]["trace"] = "/abs/1.trace.json";
  const TuneReport r = read_tune_report(j, "out/tune.json");
  // Sorted by step time: the second point in the file is first.
  EXPECT_EQ(r.pareto[1].trace, "out/front/0.trace.json");
  EXPECT_EQ(r.pareto[0].trace, "/abs/1.trace.json");
}

TEST(TuneReport, AMissingFigureIsAUserErrorNamingTheKey) {
  Json j = report_json();
  j["pareto"][1].erase("step_time_ns");
  try {
    read_tune_report(j, "tune.json");
    FAIL() << "no error";
  } catch (const UserError& e) {
    EXPECT_NE(std::string(e.what()).find("pareto[1].step_time_ns"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(is_tune_report(Json::parse(R"({"format": "zeroplan-trace"})")));
}

TEST(ParetoPlot, MapsFasterLeftAndLessMemoryDown) {
  const TuneReport r = read_tune_report(report_json(), "tune.json");
  const ParetoPlot plot = pareto_plot(r, {0, 0, 200, 100});
  // The range covers the front, the baseline and the budget with margins.
  EXPECT_LT(plot.t_min, 100);
  EXPECT_GT(plot.t_max, 300);
  EXPECT_LT(plot.mem_min, 400);
  EXPECT_GT(plot.mem_max, 900);
  EXPECT_LT(plot.x(100), plot.x(200));
  EXPECT_GT(plot.y(400), plot.y(700));  // y grows downwards
}

TEST(ParetoPlot, PicksTheNearestPointWithinTheRadius) {
  const TuneReport r = read_tune_report(report_json(), "tune.json");
  const ParetoPlot plot = pareto_plot(r, {0, 0, 200, 100});
  const float x1 = plot.x(200), y1 = plot.y(400);
  EXPECT_EQ(pick_point(r, plot, x1 + 2, y1 - 1, 6), 1);
  EXPECT_EQ(pick_point(r, plot, plot.x(100), plot.y(700), 6), 0);
  EXPECT_EQ(pick_point(r, plot, x1 + 20, y1, 6), -1);
}

}  // namespace
}  // namespace zp::gui
