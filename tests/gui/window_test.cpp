// Runs under Xvfb with Mesa's software OpenGL (ctest starts it through xvfb-run).
#include "gui/platform/window.h"

#include <gtest/gtest.h>

#include <imgui.h>

namespace zp::gui {
namespace {

TEST(Window, RendersImGuiOffscreen) {
  Window window("zeroplan test", 320, 200, /*visible=*/false);
  int width = 0, height = 0;
  const std::vector<std::uint8_t> pixels = window.render_offscreen(
      [] {
        ImGui::SetNextWindowPos(ImVec2(0, 0));
        ImGui::SetNextWindowSize(ImVec2(320, 200));
        ImGui::Begin("panel");
        ImGui::GetWindowDrawList()->AddRectFilled(ImVec2(10, 40), ImVec2(110, 140),
                                                  IM_COL32(255, 0, 0, 255));
        ImGui::End();
      },
      3, &width, &height);
  ASSERT_EQ(width, 320);
  ASSERT_EQ(height, 200);
  // The red rectangle is where it was drawn (rows top-down), and the clear colour elsewhere.
  auto at = [&](int x, int y) {
    return &pixels[(static_cast<size_t>(y) * 320 + static_cast<size_t>(x)) * 4];
  };
  EXPECT_EQ(at(60, 90)[0], 255);
  EXPECT_EQ(at(60, 90)[1], 0);
  EXPECT_NE(at(200, 90)[0], 255);
}

}  // namespace
}  // namespace zp::gui
