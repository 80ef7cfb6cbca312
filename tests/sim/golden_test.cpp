// Golden simulations: each bundled example, simulated as `zeroplan simulate` does by default, must
// give the summary and the trace recorded in traces/sim/. A change that moves a prediction fails
// here until tools/update_sim_goldens.sh records the new figures (and the diff is reviewed).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/config/run_spec.h"
#include "core/trace/native_format.h"
#include "sim/report/result_json.h"
#include "sim/simulate.h"

namespace zp::sim {
namespace {

const std::filesystem::path kSource = ZEROPLAN_SOURCE_DIR;

std::vector<std::string> Examples() {
  std::vector<std::string> out;
  for (const auto& e : std::filesystem::directory_iterator(kSource / "configs" / "examples")) {
    if (e.path().extension() == ".yaml") out.push_back(e.path().stem().string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

Json ReadJson(const std::filesystem::path& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return Json::parse(text.str());
}

class GoldenSimulation : public ::testing::TestWithParam<std::string> {};

TEST_P(GoldenSimulation, MatchesTheRecordedSummaryAndTrace) {
  const std::string name = GetParam();
  const std::filesystem::path golden = kSource / "traces" / "sim" / (name + ".json");
  const std::filesystem::path golden_trace = kSource / "traces" / "sim" / (name + ".trace.json");
  ASSERT_TRUE(std::filesystem::exists(golden))
      << golden << " is missing: run tools/update_sim_goldens.sh " << name;
  // Relative to the source folder, as the update script runs it.
  const std::filesystem::path previous = std::filesystem::current_path();
  std::filesystem::current_path(kSource);
  const RunSpec run = load_run_spec(std::filesystem::path("configs/examples") / (name + ".yaml"));
  std::filesystem::current_path(previous);
  trace::Trace t;
  const SimulationResult r = simulate(run, SimOptions{}, &t);
  const Json expected = ReadJson(golden);
  const Json actual = result_to_json(r);
  EXPECT_EQ(actual, expected) << "what changed (JSON patch from the golden):\n"
                              << Json::diff(expected, actual).dump(1).substr(0, 3000);
  const trace::Trace recorded = trace::read_native(golden_trace);
  EXPECT_EQ(t.ops.size(), recorded.ops.size());
  EXPECT_EQ(t.memory.size(), recorded.memory.size());
  EXPECT_TRUE(t == recorded) << name << ": the trace differs from " << golden_trace;
}

INSTANTIATE_TEST_SUITE_P(Examples, GoldenSimulation, ::testing::ValuesIn(Examples()),
                         [](const ::testing::TestParamInfo<std::string>& param) {
                           std::string n = param.param;
                           std::replace(n.begin(), n.end(), '-', '_');
                           return n;
                         });

}  // namespace
}  // namespace zp::sim
