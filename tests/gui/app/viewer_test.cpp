// The viewer's interaction, driven through ImGui's input state in a headless context (a font
// atlas, no window, no GPU): wheel zoom, drag, keys, hover and click.
#include "gui/app/viewer.h"

#include <gtest/gtest.h>

#include <imgui.h>

#include <filesystem>
#include <fstream>

namespace zp::gui {
namespace {

namespace fs = std::filesystem;

constexpr float kWidth = 1400, kHeight = 820;

class ViewerInput : public testing::Test {
 protected:
  void SetUp() override {
    ImGui::CreateContext();
    ImGuiIO& io = ImGui::GetIO();
    io.IniFilename = nullptr;
    io.DisplaySize = ImVec2(kWidth, kHeight);
    io.DeltaTime = 1.0f / 60;
    unsigned char* pixels = nullptr;
    int w = 0, h = 0;
    io.Fonts->GetTexDataAsRGBA32(&pixels, &w, &h);
  }
  void TearDown() override { ImGui::DestroyContext(); }

  // One frame with the pointer at (x, y); `change` sets buttons, wheel or keys for this frame.
  template <class Change>
  void frame(Viewer& viewer, float x, float y, Change change) {
    ImGuiIO& io = ImGui::GetIO();
    io.MousePos = ImVec2(x, y);
    io.MouseWheel = 0;
    for (bool& k : io.KeysDown)
      k = false;
    io.KeyShift = false;
    change(io);
    ImGui::NewFrame();
    viewer.frame();
    ImGui::Render();
  }
  void frame(Viewer& viewer, float x, float y) {
    frame(viewer, x, y, [](ImGuiIO&) {});
  }
  void click(Viewer& viewer, float x, float y) {
    frame(viewer, x, y, [](ImGuiIO& io) { io.MouseDown[0] = true; });
    frame(viewer, x, y, [](ImGuiIO& io) { io.MouseDown[0] = false; });
  }

  static fs::path golden() {
    return fs::path(ZEROPLAN_SOURCE_DIR) / "traces/sim/bert-large-pipeline.trace.json";
  }
};

TEST_F(ViewerInput, WheelZoomsAtThePointer) {
  Viewer viewer;
  viewer.open(golden());
  const CanvasRect lanes = timeline_lanes(ScreenLayout{}, kWidth, kHeight);
  const float x = lanes.x0 + 300, y = lanes.y0 + 30;
  frame(viewer, x, y);
  const TimeView before = *viewer.state(0).view;
  const TimeAxis axis{before, lanes.x0, lanes.x1 - lanes.x0};
  const double under = axis.time(x);
  frame(viewer, x, y, [](ImGuiIO& io) { io.MouseWheel = 2; });
  const TimeView after = *viewer.state(0).view;
  EXPECT_NEAR(after.span(), before.span() / 1.5625, before.span() * 1e-9);
  const TimeAxis zoomed{after, lanes.x0, lanes.x1 - lanes.x0};
  EXPECT_NEAR(zoomed.time(x), under, before.span() * 1e-6);
  // Shift+wheel pans instead.
  frame(viewer, x, y, [](ImGuiIO& io) {
    io.MouseWheel = 1;
    io.KeyShift = true;
  });
  EXPECT_NEAR(viewer.state(0).view->span(), after.span(), after.span() * 1e-9);
  EXPECT_LT(viewer.state(0).view->begin, after.begin);
}

TEST_F(ViewerInput, ClickSelectsTheOpUnderThePointerAndKeysZoomAndFit) {
  Viewer viewer;
  viewer.open(golden());
  frame(viewer, 0, 0);
  const LoadedTrace& t = *viewer.document(0).trace;
  const ScreenLayout layout;
  const CanvasRect lanes = timeline_lanes(layout, kWidth, kHeight);
  const TimeAxis axis{*viewer.state(0).view, lanes.x0, lanes.x1 - lanes.x0};
  const Rows rows = layout_rows(t.index, lanes.y0, layout.rows);
  // The widest single-op block of the first lane.
  std::vector<Block> blocks;
  layout_lane(t.index.lanes[rows.lanes[0].lane], axis, layout.merge_px, blocks);
  const Block* widest = nullptr;
  for (const Block& b : blocks)
    if (b.count == 1 && (!widest || b.x1 - b.x0 > widest->x1 - widest->x0)) widest = &b;
  ASSERT_TRUE(widest);
  const float x = (widest->x0 + widest->x1) / 2, y = (rows.lanes[0].y0 + rows.lanes[0].y1) / 2;
  click(viewer, x, y);
  EXPECT_EQ(viewer.state(0).selected_op,
            static_cast<std::int64_t>(t.index.lanes[rows.lanes[0].lane].ops[widest->first]));

  const TimeView fitted = *viewer.state(0).view;
  frame(viewer, x, y, [](ImGuiIO& io) { io.KeysDown['W'] = true; });
  EXPECT_LT(viewer.state(0).view->span(), fitted.span());
  frame(viewer, x, y);
  frame(viewer, x, y, [](ImGuiIO& io) { io.KeysDown['F'] = true; });
  EXPECT_EQ(*viewer.state(0).view, fitted);
}

TEST_F(ViewerInput, DragPans) {
  Viewer viewer;
  viewer.open(golden());
  const CanvasRect lanes = timeline_lanes(ScreenLayout{}, kWidth, kHeight);
  const float y = lanes.y0 + 200;  // below the lanes: nothing to select
  frame(viewer, 600, y);
  const TimeView before = *viewer.state(0).view;
  frame(viewer, 600, y, [](ImGuiIO& io) { io.MouseDown[0] = true; });
  for (float x = 590; x >= 500; x -= 10)
    frame(viewer, x, y, [](ImGuiIO& io) { io.MouseDown[0] = true; });
  frame(viewer, 500, y, [](ImGuiIO& io) { io.MouseDown[0] = false; });
  const TimeAxis axis{before, lanes.x0, lanes.x1 - lanes.x0};
  // Dragged 100 px to the left: the view moved 100 px of time to the right.
  EXPECT_NEAR(viewer.state(0).view->begin - before.begin, 100 * axis.ns_per_px(),
              2 * axis.ns_per_px());
  EXPECT_EQ(viewer.state(0).selected_op, -1);
}

TEST_F(ViewerInput, AClickInTheMemoryViewPinsItsTime) {
  ViewerOptions options;
  options.view = View::kMemory;
  Viewer viewer(options);
  viewer.open(golden());
  frame(viewer, 0, 0);
  EXPECT_FALSE(viewer.state(0).pinned_time);
  const CanvasRect plot = memory_plot(ScreenLayout{}, kWidth, kHeight);
  const TimeAxis axis{*viewer.state(0).view, plot.x0, plot.x1 - plot.x0};
  const float x = plot.x0 + 200;
  click(viewer, x, (plot.y0 + plot.y1) / 2);
  ASSERT_TRUE(viewer.state(0).pinned_time);
  EXPECT_NEAR(*viewer.state(0).pinned_time, axis.time(x), axis.ns_per_px());
  // The timeline's selection is untouched: the views share the time axis, not the selection.
  EXPECT_EQ(viewer.state(0).selected_op, -1);
}

TEST_F(ViewerInput, BrokenFilesAreMessagesInEveryView) {
  const fs::path dir = fs::temp_directory_path() / "zeroplan_viewer_test";
  fs::create_directories(dir);
  std::ofstream(dir / "cut.trace.json") << R"({"format": "zeroplan-trace", "version": 1, "op)";
  for (View v : {View::kTimeline, View::kMemory, View::kTables, View::kCompare, View::kPlanner}) {
    ViewerOptions options;
    options.view = v;
    Viewer viewer(options);
    viewer.open(dir / "cut.trace.json");
    viewer.open(dir / "missing.trace.json");
    viewer.open(golden());
    for (int i = 0; i < 3; ++i)
      frame(viewer, 500, 300);
    EXPECT_FALSE(viewer.document(0).error.empty());
    EXPECT_FALSE(viewer.document(1).error.empty());
    EXPECT_TRUE(viewer.document(2).error.empty());
  }
}

TEST_F(ViewerInput, DroppedFilesOpenAtTheNextFrame) {
  Viewer viewer;
  viewer.drop({golden().string()});
  EXPECT_EQ(viewer.document_count(), 0u);
  frame(viewer, 0, 0);
  ASSERT_EQ(viewer.document_count(), 1u);
  EXPECT_TRUE(viewer.document(0).trace);
}

}  // namespace
}  // namespace zp::gui
