// `zeroplan view` and the zeroplan-view program it runs: help, bad input in one line with status
// 2, and a clear line when zeroplan-view is not there.
#include <sys/wait.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include <nlohmann/json.hpp>

namespace {

namespace fs = std::filesystem;

struct Result {
  int status = -1;
  std::string out;  // stdout and stderr together
};

Result run(const std::string& command) {
  Result r;
  FILE* pipe = ::popen((command + " 2>&1").c_str(), "r");
  if (!pipe) return r;
  char buffer[4096];
  std::size_t n = 0;
  while ((n = std::fread(buffer, 1, sizeof(buffer), pipe)) > 0)
    r.out.append(buffer, n);
  const int status = ::pclose(pipe);
  r.status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

std::string bin(const char* name) {
  return std::string(ZEROPLAN_BINARY_DIR) + "/" + name;
}

int lines(const std::string& text) {
  int n = 0;
  for (char c : text)
    n += c == '\n';
  return n;
}

TEST(ViewCommand, HelpListsTheViewersOptions) {
  const Result r = run(bin("zeroplan") + " view --help");
  EXPECT_EQ(r.status, 0) << r.out;
  EXPECT_NE(r.out.find("--screenshot"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("--frames"), std::string::npos) << r.out;
}

TEST(ViewCommand, WithoutTheViewerProgramOneLineAndStatus2) {
  // A zeroplan alone in a folder stands for a build without the GUI.
  const fs::path dir = fs::temp_directory_path() / "zeroplan_view_command_test";
  fs::create_directories(dir);
  fs::copy_file(bin("zeroplan"), dir / "zeroplan", fs::copy_options::overwrite_existing);
  const Result r = run((dir / "zeroplan").string() + " view some.trace.json");
  EXPECT_EQ(r.status, 2);
  EXPECT_EQ(lines(r.out), 1) << r.out;
  EXPECT_NE(r.out.find("zeroplan-view is not beside zeroplan"), std::string::npos) << r.out;
}

TEST(ViewProgram, BadFlagsAreOneLineWithStatus2) {
  for (const char* args : {"--view nope", "--size 10x10", "--frames 0", "--nonsense"}) {
    const Result r = run(bin("zeroplan-view") + " " + args + " --screenshot /dev/null");
    EXPECT_EQ(r.status, 2) << args << ": " << r.out;
    // CLI11's own errors add a hint line.
    EXPECT_LE(lines(r.out), 2) << args << ": " << r.out;
    EXPECT_NE(r.out.find("error"), std::string::npos) << args << ": " << r.out;
  }
}

TEST(ViewProgram, NoDisplayIsOneLineWithStatus2) {
  const Result r = run("env -u DISPLAY -u WAYLAND_DISPLAY " + bin("zeroplan-view") +
                       " --screenshot /tmp/zeroplan-no-display.png");
  EXPECT_EQ(r.status, 2) << r.out;
  EXPECT_EQ(lines(r.out), 1) << r.out;
  EXPECT_NE(r.out.find("xvfb-run"), std::string::npos) << r.out;
}

TEST(ViewCommand, ForwardsAScreenshotThroughZeroplan) {
  if (std::system("command -v xvfb-run >/dev/null 2>&1") != 0)
    GTEST_SKIP() << "xvfb-run is not installed";
  const fs::path png = fs::temp_directory_path() / "zeroplan_view_command_test.png";
  fs::remove(png);
  const Result r = run("xvfb-run -a " + bin("zeroplan") + " view --screenshot " + png.string() +
                       " " + ZEROPLAN_SOURCE_DIR + "/traces/sim/tiny-gpt2-cpu.trace.json");
  EXPECT_EQ(r.status, 0) << r.out;
  EXPECT_TRUE(fs::exists(png));
}

// The tuner's folder: tune.json names a predicted trace for each point of its front, and the viewer
// opens the report (its planner view) and the traces.
TEST(ViewCommand, OpensATuningReportAndTheTracesOfItsFront) {
  const fs::path dir = fs::temp_directory_path() / "zeroplan_view_command_test.tune";
  fs::remove_all(dir);
  const Result tune =
      run(bin("zeroplan") + " tune " + ZEROPLAN_SOURCE_DIR +
          "/configs/examples/tiny-gpt2-cpu.yaml --no-allocator --pin offload_param=none "
          "--pin offload_optimizer=none --objective pareto --out " +
          dir.string());
  ASSERT_EQ(tune.status, 0) << tune.out;
  std::ifstream in(dir / "tune.json");
  const nlohmann::json report = nlohmann::json::parse(in);
  // Every point of a front of up to a dozen, else a dozen spread over it, both ends included.
  const auto& front = report["pareto"];
  ASSERT_GE(front.size(), 2u);
  std::size_t traced = 0;
  for (const auto& point : front) {
    if (!point.contains("trace")) continue;
    ++traced;
    EXPECT_TRUE(fs::exists(dir / point["trace"].get<std::string>())) << point["trace"];
  }
  EXPECT_EQ(traced, std::min<std::size_t>(front.size(), 12));
  EXPECT_TRUE(front.front().contains("trace"));
  EXPECT_TRUE(front.back().contains("trace"));
  if (std::system("command -v xvfb-run >/dev/null 2>&1") != 0)
    GTEST_SKIP() << "xvfb-run is not installed";
  const fs::path png = dir / "planner.png";
  const Result view = run("xvfb-run -a " + bin("zeroplan") + " view --view planner --screenshot " +
                          png.string() + " " + (dir / "tune.json").string() + " " +
                          (dir / report["pareto"][0]["trace"].get<std::string>()).string());
  EXPECT_EQ(view.status, 0) << view.out;
  EXPECT_TRUE(fs::exists(png));
  fs::remove_all(dir);
}

}  // namespace
