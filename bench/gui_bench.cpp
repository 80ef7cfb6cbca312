// The viewer's frame on a generated trace of a million ops: the layout alone, and a whole frame
// of the timeline (layout plus ImGui's draw lists, without the GPU) in a headless ImGui context.
// 30 frames per second leaves 33 ms a frame.
#include <benchmark/benchmark.h>

#include <imgui.h>

#include "gui/app/viewer.h"
#include "gui/view/document.h"
#include "gui/view/screen_layout.h"
#include "gui/view/timeline_layout.h"

namespace {

using zp::trace::OpKind;
using zp::trace::StreamKind;

// `ranks` rank classes, ops split over compute, all-gather and reduce-scatter lanes the way a
// ZeRO-3 step spreads them: mostly short compute ops, a gather before and a reduction after
// every few.
zp::trace::Trace generated_trace(int total_ops, int ranks) {
  zp::trace::Trace t;
  for (int r = 0; r < ranks; ++r)
    t.ranks.push_back({"rank " + std::to_string(r), {r}, 0});
  t.groups.push_back({"data", ranks});
  std::vector<std::int32_t> names;
  for (int m = 0; m < 64; ++m)
    names.push_back(t.intern("layers." + std::to_string(m)));
  t.ops.reserve(static_cast<std::size_t>(total_ops));
  const int per_rank = total_ops / ranks;
  for (int r = 0; r < ranks; ++r) {
    std::int64_t now = 0;
    for (int i = 0; i < per_rank; ++i) {
      zp::trace::Op op;
      op.rank = r;
      op.name = names[static_cast<std::size_t>(i) % names.size()];
      const int slot = i % 10;
      if (slot == 8) {
        op.stream = StreamKind::kAllGather;
        op.kind = OpKind::kAllGather;
        op.start = now;
        op.end = now + 3000;
        op.bytes = 1 << 20;
        op.group = 0;
      } else if (slot == 9) {
        op.stream = StreamKind::kReduceScatter;
        op.kind = OpKind::kReduceScatter;
        op.start = now;
        op.end = now + 4000;
        op.bytes = 1 << 20;
        op.group = 0;
      } else {
        op.kind = i % 20 < 10 ? OpKind::kForward : OpKind::kBackward;
        op.start = now;
        op.end = now + 900 + (i % 7) * 100;
        op.flops = 1000000;
        now = op.end + 50;
      }
      t.ops.push_back(op);
    }
  }
  return t;
}

const zp::gui::Document& million() {
  static const zp::gui::Document doc =
      zp::gui::make_document(generated_trace(1'000'000, 4), "generated");
  return doc;
}

// Every lane of the whole trace laid out for a 1400-pixel window.
void BM_LayoutAllLanes(benchmark::State& state) {
  const zp::gui::Document& doc = million();
  const zp::gui::ScreenLayout layout;
  const zp::gui::CanvasRect lanes = zp::gui::timeline_lanes(layout, 1400, 820);
  zp::gui::TimeView view = zp::gui::fit_view(doc.trace->index.begin, doc.trace->index.end);
  if (state.range(0) > 1) {  // zoomed in on the middle
    const double centre = (view.begin + view.end) / 2;
    view = zp::gui::zoom_view(view, centre, static_cast<double>(state.range(0)));
  }
  const zp::gui::TimeAxis axis{view, lanes.x0, lanes.x1 - lanes.x0};
  std::vector<zp::gui::Block> blocks;
  std::size_t drawn = 0;
  for (auto _ : state) {
    drawn = 0;
    for (const zp::gui::Lane& lane : doc.trace->index.lanes) {
      zp::gui::layout_lane(lane, axis, layout.merge_px, blocks);
      drawn += blocks.size();
    }
    benchmark::DoNotOptimize(drawn);
  }
  state.counters["ops"] = static_cast<double>(doc.trace->trace.ops.size());
  state.counters["blocks"] = static_cast<double>(drawn);
}
BENCHMARK(BM_LayoutAllLanes)->Arg(1)->Arg(100)->Unit(benchmark::kMillisecond);

// One whole timeline frame: the viewer's ImGui calls, then ImGui::Render() building the draw
// lists a GPU would be handed. Headless: a font atlas, no window.
void BM_TimelineFrame(benchmark::State& state) {
  ImGui::CreateContext();
  ImGuiIO& io = ImGui::GetIO();
  io.IniFilename = nullptr;
  io.DisplaySize = ImVec2(1400, 820);
  io.DeltaTime = 1.0f / 60;
  unsigned char* pixels = nullptr;
  int w = 0, h = 0;
  io.Fonts->GetTexDataAsRGBA32(&pixels, &w, &h);
  {
    zp::gui::ViewerOptions options;
    options.interactive = false;
    zp::gui::Viewer viewer(options);
    viewer.add(zp::gui::make_document(generated_trace(1'000'000, 4), "generated"));
    if (state.range(0) > 1) {
      const auto& index = viewer.document(0).trace->index;
      const zp::gui::TimeView full = zp::gui::fit_view(index.begin, index.end);
      viewer.state(0).view = zp::gui::zoom_view(full, (full.begin + full.end) / 2,
                                                static_cast<double>(state.range(0)));
    }
    int vertices = 0;
    for (auto _ : state) {
      ImGui::NewFrame();
      viewer.frame();
      ImGui::Render();
      vertices = ImGui::GetDrawData()->TotalVtxCount;
      benchmark::DoNotOptimize(vertices);
    }
    state.counters["vertices"] = vertices;
  }
  ImGui::DestroyContext();
}
BENCHMARK(BM_TimelineFrame)->Arg(1)->Arg(100)->Unit(benchmark::kMillisecond);

// Building what the views need when a million-op trace is opened (once per file).
void BM_IndexMillion(benchmark::State& state) {
  const zp::trace::Trace t = generated_trace(1'000'000, 4);
  for (auto _ : state) {
    zp::gui::TimelineIndex index = zp::gui::build_index(t);
    benchmark::DoNotOptimize(index.lanes.data());
  }
}
BENCHMARK(BM_IndexMillion)->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
