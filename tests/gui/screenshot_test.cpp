// `zeroplan-view --screenshot` under Xvfb (Mesa's software OpenGL) on golden traces: the image has
// the window's size, is not blank, and shows each lane's blocks in their colours where the layout
// functions put them.
#include <gtest/gtest.h>

#include <sys/wait.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>

#include "core/trace/native_format.h"
#include "gui/platform/png.h"
#include "gui/view/document.h"
#include "gui/view/screen_layout.h"
#include "gui/view/timeline_layout.h"

namespace zp::gui {
namespace {

namespace fs = std::filesystem;

constexpr int kWidth = 1400;
constexpr int kHeight = 820;

bool have_xvfb() {
  return std::system("command -v xvfb-run >/dev/null 2>&1") == 0;
}

// One folder a test: ctest runs the tests of this file side by side, each in its own process.
fs::path out_dir() {
  const testing::TestInfo* test = testing::UnitTest::GetInstance()->current_test_info();
  std::string name = std::string(test->test_suite_name()) + "." + test->name();
  std::replace(name.begin(), name.end(), '/', '_');
  const fs::path dir = fs::temp_directory_path() / "zeroplan_gui_screenshot_test" / name;
  fs::create_directories(dir);
  return dir;
}

// Runs the viewer and returns its exit status.
int screenshot(const std::string& args, const fs::path& png) {
  fs::remove(png);
  const std::string command = std::string("xvfb-run -a ") + ZEROPLAN_BINARY_DIR +
                              "/zeroplan-view --screenshot '" + png.string() + "' --size " +
                              std::to_string(kWidth) + "x" + std::to_string(kHeight) + " " + args +
                              " 2>" + (out_dir() / "stderr.txt").string();
  const int status = std::system(command.c_str());
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

struct Image {
  std::vector<std::uint8_t> pixels;
  int width = 0, height = 0;
  const std::uint8_t* at(int x, int y) const {
    return &pixels[(static_cast<std::size_t>(y) * static_cast<std::size_t>(width) +
                    static_cast<std::size_t>(x)) *
                   4];
  }
};

bool near(const std::uint8_t* px, Color c) {
  return std::abs(px[0] - red(c)) <= 3 && std::abs(px[1] - green(c)) <= 3 &&
         std::abs(px[2] - blue(c)) <= 3;
}

class LaneColours : public testing::TestWithParam<const char*> {};

std::string param_name(const testing::TestParamInfo<const char*>& param) {
  std::string name = param.param;
  name = name.substr(0, name.find('.'));
  for (char& c : name)
    if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
  return name;
}

// Screenshots `trace_file` in the timeline and checks the image against the layout functions.
void check_lane_colours(const fs::path& trace_file) {
  const fs::path png = out_dir() / (trace_file.filename().string() + ".png");
  ASSERT_EQ(screenshot("'" + trace_file.string() + "'", png), 0);

  Image image;
  image.pixels = read_png(png, &image.width, &image.height);
  ASSERT_EQ(image.width, kWidth);
  ASSERT_EQ(image.height, kHeight);
  std::set<std::uint32_t> colours;
  for (std::size_t i = 0; i + 3 < image.pixels.size(); i += 4 * 7)
    colours.insert(static_cast<std::uint32_t>(image.pixels[i]) << 16 |
                   static_cast<std::uint32_t>(image.pixels[i + 1]) << 8 | image.pixels[i + 2]);
  EXPECT_GT(colours.size(), 10u) << "the image is blank";

  // Where the viewer draws, from the same functions and offsets it uses.
  const Document doc = load_document(trace_file);
  ASSERT_TRUE(doc.trace) << doc.error;
  const ScreenLayout layout;
  const CanvasRect lanes = timeline_lanes(layout, kWidth, kHeight);
  const TimeAxis axis{fit_view(doc.trace->index.begin, doc.trace->index.end), lanes.x0,
                      lanes.x1 - lanes.x0};
  const Rows rows = layout_rows(doc.trace->index, lanes.y0, layout.rows);
  std::set<int> marker_xs;
  for (const trace::Marker& m : doc.trace->trace.markers)
    marker_xs.insert(static_cast<int>(axis.x(static_cast<double>(m.time))));

  int checked = 0, empty_checked = 0;
  std::vector<Block> blocks;
  for (const LaneRow& row : rows.lanes) {
    if (row.y1 > lanes.y1) break;
    layout_lane(doc.trace->index.lanes[row.lane], axis, layout.merge_px, blocks);
    const int y = static_cast<int>(row.y1) - 3;  // below the blocks' labels
    auto top_block = [&](float x) -> const Block* {
      const Block* top = nullptr;  // later blocks are drawn over earlier ones
      for (const Block& b : blocks)
        if (x >= b.x0 && x < std::max(b.x1, b.x0 + 1)) top = &b;
      return top;
    };
    bool lane_checked = false;
    for (const Block& b : blocks) {
      if (b.x1 - b.x0 < 4 || b.x0 < lanes.x0 || b.x1 > lanes.x1) continue;
      // The block's middle, else its first pixel that no marker is near and no narrow block
      // covers: in a measured trace narrow ops can sit on any part of a wide one.
      std::vector<int> candidates{static_cast<int>((b.x0 + b.x1) / 2)};
      for (int x = static_cast<int>(b.x0) + 1; x < static_cast<int>(b.x1) - 1; ++x)
        candidates.push_back(x);
      int x = -1;
      const Block* top = nullptr;
      for (int c : candidates) {
        bool by_marker = false;
        for (int mx : marker_xs)
          by_marker = by_marker || std::abs(mx - c) <= 2;
        const Block* over = top_block(static_cast<float>(c) + 0.5f);
        if (by_marker || !over || over->x1 - over->x0 < 4) continue;
        x = c;
        top = over;
        break;
      }
      if (x < 0) continue;
      const std::uint8_t* px = image.at(x, y);
      EXPECT_TRUE(near(px, top->color))
          << trace_file.filename() << ": lane " << row.lane << " at (" << x << ", " << y
          << ") has rgb(" << int(px[0]) << "," << int(px[1]) << "," << int(px[2])
          << "), expected rgb(" << int(red(top->color)) << "," << int(green(top->color)) << ","
          << int(blue(top->color)) << ")";
      ++checked;
      lane_checked = true;
    }
    EXPECT_TRUE(
        lane_checked || blocks.empty() ||
        std::all_of(blocks.begin(), blocks.end(), [](const Block& b) { return b.x1 - b.x0 < 4; }))
        << "lane " << row.lane << " has wide blocks but none was checked";
    // Where the lane has no op, no op colour.
    for (int x = static_cast<int>(lanes.x0) + 2; x < static_cast<int>(lanes.x1) - 2; x += 37) {
      if (top_block(static_cast<float>(x)) || top_block(static_cast<float>(x) + 1) ||
          top_block(static_cast<float>(x) - 1))
        continue;
      const std::uint8_t* px = image.at(x, y);
      for (int k = 0; k < static_cast<int>(trace::OpKind::kCount); ++k)
        EXPECT_FALSE(near(px, op_color(static_cast<trace::OpKind>(k))))
            << "an op colour at (" << x << ", " << y << ") where the trace has no op";
      ++empty_checked;
    }
  }
  EXPECT_GE(checked, 3);
  EXPECT_GE(empty_checked, 3);
}

TEST_P(LaneColours, LanesShowTheTracesOpsInTheirColours) {
  if (!have_xvfb()) GTEST_SKIP() << "xvfb-run is not installed";
  check_lane_colours(fs::path(ZEROPLAN_SOURCE_DIR) / "traces/sim" / GetParam());
}

INSTANTIATE_TEST_SUITE_P(Golden, LaneColours,
                         testing::Values("gpt2-zero3.trace.json", "bert-large-pipeline.trace.json"),
                         param_name);

#ifdef ZEROPLAN_HAS_EXEC
// A measured trace: two CPU ranks of the tiny example, traced by zeroplan-exec.
TEST(Screenshot, AMeasuredTraceShowsItsOpsInTheirColours) {
  if (!have_xvfb()) GTEST_SKIP() << "xvfb-run is not installed";
  const fs::path trace_file = out_dir() / "measured.trace.json";
  fs::remove(trace_file);
  const std::string command = std::string(ZEROPLAN_BINARY_DIR) + "/zeroplan-exec " +
                              ZEROPLAN_SOURCE_DIR +
                              "/configs/examples/tiny-gpt2-cpu.yaml --nproc 2 --steps 1 --trace '" +
                              trace_file.string() + "' >/dev/null 2>&1";
  ASSERT_EQ(std::system(command.c_str()), 0) << command;
  trace::Trace measured = trace::read_native(trace_file);
  EXPECT_EQ(measured.source, trace::Source::kMeasured);
  ASSERT_FALSE(measured.ops.empty());
  // The view fits the setup's memory samples too; on a loaded machine the setup can take many
  // times the step and leave every op too narrow to check. The step alone is what is checked.
  trace::TimeNs first_op = measured.ops.front().start;
  for (const trace::Op& op : measured.ops)
    first_op = std::min(first_op, op.start);
  for (trace::MemorySample& s : measured.memory)
    s.time = std::max(s.time, first_op);
  for (trace::ReservedSample& s : measured.reserved)
    s.time = std::max(s.time, first_op);
  const fs::path step_file = out_dir() / "step.trace.json";
  trace::write_native(measured, step_file);
  check_lane_colours(step_file);
}
#endif

TEST(Screenshot, ABrokenTraceIsShownAsAMessageAndTheStatusSaysSo) {
  if (!have_xvfb()) GTEST_SKIP() << "xvfb-run is not installed";
  const fs::path broken = out_dir() / "broken.trace.json";
  std::ofstream(broken) << R"({"format": "zeroplan-trace", "version": 1, "ops": )";
  const fs::path png = out_dir() / "broken.png";
  EXPECT_EQ(screenshot("'" + broken.string() + "'", png), 2);
  EXPECT_TRUE(fs::exists(png)) << "the window still renders";
  std::ifstream err(out_dir() / "stderr.txt");
  const std::string text((std::istreambuf_iterator<char>(err)), std::istreambuf_iterator<char>());
  EXPECT_NE(text.find("broken.trace.json"), std::string::npos) << text;
}

TEST(Screenshot, EveryViewRendersTheBundledTraces) {
  if (!have_xvfb()) GTEST_SKIP() << "xvfb-run is not installed";
  const fs::path dir = fs::path(ZEROPLAN_SOURCE_DIR) / "traces/sim";
  const std::string files = "'" + (dir / "gpt2-zero3.trace.json").string() + "' '" +
                            (dir / "gpt2-zero2.trace.json").string() + "'";
  for (const char* view : {"memory", "tables", "compare", "planner"}) {
    const fs::path png = out_dir() / (std::string(view) + ".png");
    EXPECT_EQ(screenshot(std::string("--view ") + view + " " + files, png), 0) << view;
    EXPECT_TRUE(fs::exists(png)) << view;
  }
}

}  // namespace
}  // namespace zp::gui
