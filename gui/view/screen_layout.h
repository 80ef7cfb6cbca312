// Where the viewer puts its canvases in the window: fixed offsets, so a screenshot can be checked
// against the layout functions without reading ImGui's state.
#pragma once

#include "gui/view/timeline_layout.h"

namespace zp::gui {

struct CanvasRect {
  float x0 = 0, y0 = 0, x1 = 0, y1 = 0;
};

struct ScreenLayout {
  float header = 84;        // menu bar, tabs and the view's toolbar above every canvas
  float label_width = 150;  // rank and stream names left of the timeline
  float axis_height = 22;   // time ticks above the lanes
  float right_margin = 12;
  float bottom_margin = 8;
  float merge_px = 3;        // ops narrower than this merge (timeline_layout.h)
  float memory_panel = 330;  // the memory view's breakdown, right of its plot
  float memory_legend = 24;  // under the memory plot
  RowMetrics rows;
};

// The lanes' area of the timeline in a window of `width` x `height` pixels (the time axis sits
// above it, the labels to its left). Lanes start at y0, before any vertical scrolling.
inline CanvasRect timeline_lanes(const ScreenLayout& s, float width, float height) {
  return {s.label_width, s.header + s.axis_height, width - s.right_margin,
          height - s.bottom_margin};
}

// The memory view's plot: the stacked area over the time axis, left of the breakdown panel.
inline CanvasRect memory_plot(const ScreenLayout& s, float width, float height) {
  return {s.label_width, s.header + s.axis_height, width - s.memory_panel - s.right_margin,
          height - s.bottom_margin - s.memory_legend};
}

}  // namespace zp::gui
