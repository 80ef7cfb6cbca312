#include "gui/app/viewer.h"

#include <imgui.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <system_error>

#include "gui/view/compare.h"
#include "gui/view/file_list.h"
#include "gui/view/memory_series.h"
#include "gui/view/pareto.h"
#include "gui/view/tables.h"

namespace zp::gui {

namespace fs = std::filesystem;
using trace::MemoryCategory;
using trace::OpKind;
using trace::StreamKind;

namespace {

constexpr Color kText = rgba(220, 220, 225);
constexpr Color kDimText = rgba(150, 150, 160);
constexpr Color kGrid = rgba(60, 60, 70);
constexpr Color kLaneBg = rgba(32, 32, 38);
constexpr Color kHeaderBg = rgba(45, 45, 55);
constexpr Color kSelect = rgba(255, 255, 255);
constexpr Color kPeak = rgba(255, 80, 80);
constexpr Color kLimit = rgba(255, 170, 0);
constexpr Color kCursor = rgba(255, 255, 255, 140);

const char* kViewNames[] = {"Timeline", "Memory", "Tables", "Compare", "Planner"};

ImVec2 v2(float x, float y) {
  return ImVec2(x, y);
}

std::string percent(double relative) {
  char text[32];
  std::snprintf(text, sizeof(text), "%+.1f%%", relative * 100);
  return text;
}

std::string figure(Unit unit, double value) {
  switch (unit) {
    case Unit::kBytes:
      return format_bytes(value);
    case Unit::kNanoseconds:
      return format_duration(value);
    case Unit::kCount:
      break;
  }
  char text[32];
  std::snprintf(text, sizeof(text), "%.0f", value);
  return text;
}

std::string op_title(const trace::Trace& t, const trace::Op& op) {
  std::string title = op.name >= 0 ? t.string(op.name) : std::string(trace::to_string(op.kind));
  return title;
}

void op_details(const trace::Trace& t, const trace::Op& op) {
  ImGui::TextUnformatted(op_title(t, op).c_str());
  ImGui::Separator();
  ImGui::Text("kind      %s", std::string(trace::to_string(op.kind)).c_str());
  ImGui::Text("stream    %s", std::string(trace::to_string(op.stream)).c_str());
  if (op.rank >= 0 && static_cast<std::size_t>(op.rank) < t.ranks.size())
    ImGui::Text("rank      %s", t.ranks[static_cast<std::size_t>(op.rank)].label.c_str());
  ImGui::Text("start     %s", format_duration(static_cast<double>(op.start)).c_str());
  ImGui::Text("duration  %s", format_duration(static_cast<double>(op.end - op.start)).c_str());
  if (op.bytes > 0)
    ImGui::Text("bytes     %s", format_bytes(static_cast<double>(op.bytes)).c_str());
  if (op.flops > 0) ImGui::Text("flops     %.3g", static_cast<double>(op.flops));
  ImGui::Text("step      %d", op.step);
  if (op.micro_batch >= 0) ImGui::Text("micro-batch %d", op.micro_batch);
  if (op.group >= 0 && static_cast<std::size_t>(op.group) < t.groups.size()) {
    const trace::GroupInfo& g = t.groups[static_cast<std::size_t>(op.group)];
    ImGui::Text("group     %s (%lld ranks)", g.axis.c_str(), static_cast<long long>(g.size));
  }
  if (op.module >= 0 && static_cast<std::size_t>(op.module) < t.strings.size())
    ImGui::Text("module    %s", t.string(op.module).c_str());
  if (op.params >= 0 && static_cast<std::size_t>(op.params) < t.strings.size()) {
    // A prefetch can gather dozens of parameters: the list wraps, and a long one is cut.
    constexpr std::size_t kMaxParamsText = 600;
    std::string text = "params    " + t.string(op.params);
    if (text.size() > kMaxParamsText) text = text.substr(0, kMaxParamsText) + " ...";
    ImGui::PushTextWrapPos(ImGui::GetFontSize() * 36);
    ImGui::TextUnformatted(text.c_str());
    ImGui::PopTextWrapPos();
  }
}

// Time ticks with labels along [x0, x1] at height y.
void draw_axis(ImDrawList* dl, const TimeAxis& axis, float y, float height, float grid_bottom) {
  const int target = std::max(2, static_cast<int>(axis.width / 110));
  for (double t : axis_ticks(axis.view, target)) {
    const float x = axis.x(t);
    dl->AddLine(v2(x, y + height - 6), v2(x, grid_bottom), kGrid);
    const std::string label = format_duration(t);
    dl->AddText(v2(x + 3, y + 2), kDimText, label.c_str());
  }
}

// Wheel, drag and keys on a canvas shared by the timeline and memory views.
void navigate(TimeView& view, const TimeAxis& axis, bool hovered, bool active, float scroll_step,
              float* scroll) {
  ImGuiIO& io = ImGui::GetIO();
  const double mouse_t = axis.time(io.MousePos.x);
  if (hovered && io.MouseWheel != 0) {
    if (io.KeyShift) {
      view = pan_view(view, -io.MouseWheel * axis.view.span() * 0.1);
    } else if (io.KeyAlt && scroll) {
      *scroll = std::max(0.0f, *scroll - io.MouseWheel * scroll_step * 3);
    } else {
      view = zoom_view(view, mouse_t, std::pow(1.25, io.MouseWheel));
    }
  }
  if (hovered && io.MouseWheelH != 0) view = pan_view(view, -io.MouseWheelH * view.span() * 0.1);
  if (active && ImGui::IsMouseDragging(ImGuiMouseButton_Left, 2)) {
    view = pan_view(view, -io.MouseDelta.x * axis.ns_per_px());
    if (scroll) *scroll = std::max(0.0f, *scroll - io.MouseDelta.y);
  }
  if (ImGui::IsWindowFocused() && !io.WantTextInput) {
    const double centre = (view.begin + view.end) / 2;
    if (ImGui::IsKeyPressed('W') || ImGui::IsKeyPressed('=')) view = zoom_view(view, centre, 1.5);
    if (ImGui::IsKeyPressed('S') || ImGui::IsKeyPressed('-'))
      view = zoom_view(view, centre, 1 / 1.5);
    if (ImGui::IsKeyPressed('A') || ImGui::IsKeyPressed(ImGui::GetKeyIndex(ImGuiKey_LeftArrow)))
      view = pan_view(view, -view.span() * 0.1);
    if (ImGui::IsKeyPressed('D') || ImGui::IsKeyPressed(ImGui::GetKeyIndex(ImGuiKey_RightArrow)))
      view = pan_view(view, view.span() * 0.1);
    if (scroll && ImGui::IsKeyPressed(ImGui::GetKeyIndex(ImGuiKey_UpArrow)))
      *scroll = std::max(0.0f, *scroll - scroll_step);
    if (scroll && ImGui::IsKeyPressed(ImGui::GetKeyIndex(ImGuiKey_DownArrow)))
      *scroll += scroll_step;
  }
}

// A click that was not the end of a drag (drags pan).
bool clicked_in_place() {
  const ImGuiIO& io = ImGui::GetIO();
  return ImGui::IsMouseReleased(ImGuiMouseButton_Left) && io.MouseDragMaxDistanceSqr[0] < 4 * 4;
}

bool fit_pressed() {
  const ImGuiIO& io = ImGui::GetIO();
  return ImGui::IsWindowFocused() && !io.WantTextInput &&
         (ImGui::IsKeyPressed('F') || ImGui::IsKeyPressed(ImGui::GetKeyIndex(ImGuiKey_Home)));
}

}  // namespace

bool parse_view(const std::string& name, View& out) {
  static const std::pair<const char*, View> kNames[] = {{"timeline", View::kTimeline},
                                                        {"memory", View::kMemory},
                                                        {"tables", View::kTables},
                                                        {"compare", View::kCompare},
                                                        {"planner", View::kPlanner}};
  for (const auto& [n, v] : kNames) {
    if (name == n) {
      out = v;
      return true;
    }
  }
  return false;
}

struct Viewer::Entry {
  Document doc;
  TraceViewState state;
  int picked = -1;  // planner: the Pareto point picked
  std::vector<CollectiveRow> collectives;
  std::vector<ModuleRow> modules;
  int tables_rank = -2;  // the rank the tables were built for
};

// An ImGui file browser over gui/view/file_list.h: one folder at a time.
struct Viewer::FileDialog {
  bool open = false;
  ListOptions options;
  FolderListing listing;
  std::string message;  // the last choice's, shown above the listing's own error
  char path_text[1024] = {};

  void list(const fs::path& dir) {
    listing = list_folder(dir, options);
    message.clear();
    std::snprintf(path_text, sizeof(path_text), "%s", listing.folder.string().c_str());
  }
};

struct Viewer::CompareCache {
  int a = -1, b = -1, rank_a = -1, rank_b = -1;
  std::vector<DiffRow> rows;
};

Viewer::Viewer(ViewerOptions options)
    : options_(std::move(options)),
      compare_cache_(std::make_unique<CompareCache>()),
      dialog_(std::make_unique<FileDialog>()) {}

void Viewer::rank_combo(const char* label, const trace::Trace& trace, int& rank) {
  const int n = static_cast<int>(trace.ranks.size());
  rank = std::clamp(rank, 0, std::max(0, n - 1));
  if (n == 0) return;
  ImGui::SetNextItemWidth(160);
  if (ImGui::BeginCombo(label, trace.ranks[static_cast<std::size_t>(rank)].label.c_str())) {
    for (int r = 0; r < n; ++r)
      if (ImGui::Selectable(trace.ranks[static_cast<std::size_t>(r)].label.c_str(), r == rank))
        rank = r;
    ImGui::EndCombo();
  }
}

Viewer::~Viewer() = default;

void Viewer::open(const fs::path& path) {
  add(load_document(path));
}

void Viewer::add(Document document) {
  auto entry = std::make_unique<Entry>();
  entry->doc = std::move(document);
  const bool is_report = entry->doc.report != nullptr;
  docs_.push_back(std::move(entry));
  const int index = static_cast<int>(docs_.size()) - 1;
  if (is_report) {
    report_ = index;
  } else {
    // The newest trace is shown; the two newest are compared.
    current_ = index;
    compare_a_ = compare_b_;
    compare_b_ = index;
  }
}

void Viewer::drop(std::vector<std::string> paths) {
  for (std::string& p : paths)
    dropped_.push_back(std::move(p));
}

const Document& Viewer::document(std::size_t i) const {
  return docs_.at(i)->doc;
}
TraceViewState& Viewer::state(std::size_t i) {
  return docs_.at(i)->state;
}

Viewer::Entry* Viewer::current_trace() {
  if (current_ < 0 || static_cast<std::size_t>(current_) >= docs_.size()) return nullptr;
  Entry* e = docs_[static_cast<std::size_t>(current_)].get();
  return e->doc.report ? nullptr : e;
}

bool Viewer::document_combo(const char* label, int& index, bool traces, bool reports) {
  const auto fits = [&](const Entry& e) {
    if (e.doc.report) return reports;
    return traces;  // a file that failed to load is listed with the traces, to show its message
  };
  std::string preview = "(none)";
  if (index >= 0 && static_cast<std::size_t>(index) < docs_.size() &&
      fits(*docs_[static_cast<std::size_t>(index)]))
    preview = docs_[static_cast<std::size_t>(index)]->doc.name;
  bool changed = false;
  ImGui::SetNextItemWidth(260);
  if (ImGui::BeginCombo(label, preview.c_str())) {
    for (std::size_t i = 0; i < docs_.size(); ++i) {
      if (!fits(*docs_[i])) continue;
      ImGui::PushID(static_cast<int>(i));
      const bool selected = static_cast<int>(i) == index;
      if (ImGui::Selectable(docs_[i]->doc.name.c_str(), selected)) {
        index = static_cast<int>(i);
        changed = true;
      }
      if (!docs_[i]->doc.error.empty() && ImGui::IsItemHovered())
        ImGui::SetTooltip("%s", docs_[i]->doc.error.c_str());
      ImGui::PopID();
    }
    ImGui::EndCombo();
  }
  return changed;
}

bool Viewer::frame() {
  for (const std::string& p : dropped_)
    open(p);
  dropped_.clear();

  const ImGuiIO& io = ImGui::GetIO();
  const float width = io.DisplaySize.x, height = io.DisplaySize.y;
  ImGui::SetNextWindowPos(v2(0, 0));
  ImGui::SetNextWindowSize(v2(width, height));
  const ImGuiWindowFlags flags = ImGuiWindowFlags_NoDecoration | ImGuiWindowFlags_NoMove |
                                 ImGuiWindowFlags_NoSavedSettings | ImGuiWindowFlags_MenuBar |
                                 ImGuiWindowFlags_NoBringToFrontOnFocus |
                                 ImGuiWindowFlags_NoScrollWithMouse;
  ImGui::Begin("zeroplan view", nullptr, flags);
  draw_menu();
  if (ImGui::BeginTabBar("views")) {
    for (int v = 0; v < 5; ++v) {
      const ImGuiTabItemFlags tab_flags =
          select_view_ && static_cast<int>(options_.view) == v ? ImGuiTabItemFlags_SetSelected : 0;
      if (ImGui::BeginTabItem(kViewNames[v], nullptr, tab_flags)) {
        switch (static_cast<View>(v)) {
          case View::kTimeline:
            draw_timeline(width, height);
            break;
          case View::kMemory:
            draw_memory(width, height);
            break;
          case View::kTables:
            draw_tables();
            break;
          case View::kCompare:
            draw_compare(width, height);
            break;
          case View::kPlanner:
            draw_planner(width, height);
            break;
        }
        ImGui::EndTabItem();
      }
    }
    ImGui::EndTabBar();
  }
  select_view_ = false;
  ImGui::End();
  draw_selection();
  draw_file_dialog();
  return !quit_;
}

void Viewer::draw_menu() {
  if (!ImGui::BeginMenuBar()) return;
  if (ImGui::BeginMenu("File")) {
    if (ImGui::MenuItem("Open...", "O")) {
      dialog_->open = true;
      std::error_code ec;
      dialog_->list(fs::current_path(ec));
    }
    if (ImGui::MenuItem("Quit", "Q")) quit_ = true;
    ImGui::EndMenu();
  }
  if (ImGui::BeginMenu("Help")) {
    ImGui::TextUnformatted(
        "wheel: zoom at the pointer   shift+wheel, A/D, arrows: pan\n"
        "W/S, +/-: zoom   drag: pan   alt+wheel, up/down: scroll lanes\n"
        "F, Home: fit   click: select (a merged block: zoom to it)   Esc: clear\n"
        "drop files on the window to open them");
    ImGui::EndMenu();
  }
  ImGui::EndMenuBar();
  const ImGuiIO& io = ImGui::GetIO();
  if (!io.WantTextInput && ImGui::IsWindowFocused(ImGuiFocusedFlags_RootAndChildWindows)) {
    if (ImGui::IsKeyPressed('O', false) && !dialog_->open) {
      dialog_->open = true;
      std::error_code ec;
      dialog_->list(fs::current_path(ec));
    }
    if (ImGui::IsKeyPressed('Q', false)) quit_ = true;
  }
}

void Viewer::draw_file_dialog() {
  FileDialog& d = *dialog_;
  if (!d.open) return;
  ImGui::SetNextWindowSize(v2(620, 420), ImGuiCond_Appearing);
  if (!ImGui::Begin("Open a trace or tuning report", &d.open)) {
    ImGui::End();
    return;
  }
  DialogChoice choice;
  const auto list_choice = [](fs::path folder) {
    DialogChoice c;
    c.action = DialogChoice::Action::kList;
    c.path = std::move(folder);
    return c;
  };
  if (ImGui::Button("Up")) choice = list_choice(parent_folder(d.listing.folder));
  ImGui::SameLine();
  if (ImGui::Checkbox("all files", &d.options.all_files)) choice = list_choice(d.listing.folder);
  ImGui::SameLine();
  ImGui::SetNextItemWidth(-1);
  if (ImGui::InputText("##path", d.path_text, sizeof(d.path_text),
                       ImGuiInputTextFlags_EnterReturnsTrue)) {
    const char* home = std::getenv("HOME");
    choice = choose_typed_path(d.listing.folder, d.path_text, home ? fs::path(home) : fs::path());
  }
  const ImVec4 red(1, 0.4f, 0.4f, 1);
  if (!d.message.empty()) ImGui::TextColored(red, "%s", d.message.c_str());
  if (!d.listing.error.empty()) ImGui::TextColored(red, "%s", d.listing.error.c_str());
  ImGui::BeginChild("entries");
  for (const FileEntry& e : d.listing.entries) {
    const bool broken = e.kind == FileEntry::Kind::kBrokenLink;
    if (broken) ImGui::PushStyleColor(ImGuiCol_Text, ImVec4(0.6f, 0.6f, 0.65f, 1));
    if (ImGui::Selectable(e.label.c_str())) choice = choose_entry(e);
    if (broken) ImGui::PopStyleColor();
  }
  ImGui::EndChild();
  ImGui::End();
  // Acted on after the listing is drawn: listing again replaces the entries drawn from.
  switch (choice.action) {
    case DialogChoice::Action::kNone:
      break;
    case DialogChoice::Action::kList:
      d.list(choice.path);
      break;
    case DialogChoice::Action::kOpen:
      // A file that is not a readable trace or report opens as its message, in the window.
      open(choice.path);
      d.open = false;
      break;
    case DialogChoice::Action::kMessage:
      // What was listed may have changed (a file gone): list again, keeping the message.
      d.list(d.listing.folder);
      d.message = choice.message;
      break;
  }
}

Viewer::Entry* Viewer::trace_entry(const char* none_open) {
  if (docs_.empty()) {
    ImGui::TextUnformatted(none_open);
    return nullptr;
  }
  document_combo("trace", current_, true, false);
  Entry* e = docs_[static_cast<std::size_t>(current_)].get();
  if (!e->doc.error.empty()) {
    ImGui::SameLine();
    ImGui::TextColored(ImVec4(1, 0.4f, 0.4f, 1), "%s", e->doc.error.c_str());
    return nullptr;
  }
  return e->doc.trace ? e : nullptr;
}

void Viewer::draw_timeline(float width, float height) {
  Entry* e =
      trace_entry("No trace open: File > Open, drop a file, or name one on the command line.");
  if (!e) return;
  const LoadedTrace& t = *e->doc.trace;
  TraceViewState& st = e->state;
  if (!st.view || fit_pressed()) st.view = fit_view(t.index.begin, t.index.end);
  ImGui::SameLine();
  ImGui::Text("%zu ops, %zu lanes, view %s", t.trace.ops.size(), t.index.lanes.size(),
              format_duration(st.view->span()).c_str());

  const ScreenLayout& L = options_.layout;
  const CanvasRect lanes = timeline_lanes(L, width, height);
  ImDrawList* dl = ImGui::GetWindowDrawList();
  ImGui::SetCursorScreenPos(v2(0, L.header));
  ImGui::InvisibleButton("timeline canvas", v2(width, std::max(1.0f, height - L.header)));
  const bool hovered = options_.interactive && ImGui::IsItemHovered();
  const bool active = options_.interactive && ImGui::IsItemActive();
  TimeAxis axis{*st.view, lanes.x0, lanes.x1 - lanes.x0};
  if (options_.interactive) {
    navigate(*st.view, axis, hovered, active, L.rows.lane, &st.scroll);
    if (ImGui::IsKeyPressed(ImGui::GetKeyIndex(ImGuiKey_Escape))) st.selected_op = -1;
  }
  axis.view = *st.view;

  const Rows rows = layout_rows(t.index, lanes.y0 - st.scroll, L.rows);
  st.scroll = std::clamp(st.scroll, 0.0f, std::max(0.0f, rows.height - (lanes.y1 - lanes.y0)));

  dl->PushClipRect(v2(0, L.header), v2(width, lanes.y1), true);
  draw_axis(dl, axis, L.header, L.axis_height, lanes.y1);
  dl->PushClipRect(v2(0, lanes.y0), v2(width, lanes.y1), true);

  const ImVec2 mouse = ImGui::GetIO().MousePos;
  const Block* hovered_block = nullptr;
  const Lane* hovered_lane = nullptr;
  Block hovered_copy;
  for (const RankHeader& h : rows.headers) {
    if (h.y0 + L.rows.header < lanes.y0 || h.y0 > lanes.y1) continue;
    dl->AddRectFilled(v2(0, h.y0), v2(lanes.x1, h.y0 + L.rows.header), kHeaderBg);
    const std::string& label = t.trace.ranks[static_cast<std::size_t>(h.rank)].label;
    dl->AddText(v2(6, h.y0 + 2), kText, label.c_str());
  }
  for (const LaneRow& row : rows.lanes) {
    if (row.y1 < lanes.y0 || row.y0 > lanes.y1) continue;
    const Lane& lane = t.index.lanes[row.lane];
    dl->AddRectFilled(v2(lanes.x0, row.y0), v2(lanes.x1, row.y1), kLaneBg);
    if (lane.depth == 0) {
      const std::string_view stream = trace::to_string(lane.stream);
      dl->AddText(v2(18, row.y0 + 4), kDimText, stream.data(), stream.data() + stream.size());
    }
    layout_lane(lane, axis, L.merge_px, blocks_);
    const bool mouse_in_row = hovered && mouse.y >= row.y0 && mouse.y < row.y1 &&
                              mouse.x >= lanes.x0 && mouse.x < lanes.x1;
    const ImVec4 clip(lanes.x0, row.y0, lanes.x1, row.y1);
    for (const Block& b : blocks_) {
      const float x0 = std::max(b.x0, lanes.x0 - 1);
      const float x1 = std::min(std::max(b.x1, b.x0 + 1), lanes.x1 + 1);
      dl->AddRectFilled(v2(x0, row.y0 + 1), v2(x1, row.y1 - 1), b.color);
      if (b.count == 1 && x1 - x0 > 50) {
        const trace::Op& op = t.trace.ops[lane.ops[b.first]];
        const std::string title = op_title(t.trace, op);
        dl->AddText(nullptr, 0, v2(x0 + 3, row.y0 + 3), rgba(20, 20, 20), title.c_str(), nullptr, 0,
                    &clip);
      }
      if (mouse_in_row && mouse.x >= b.x0 && mouse.x < std::max(b.x1, b.x0 + 1)) {
        hovered_copy = b;
        hovered_block = &hovered_copy;
        hovered_lane = &lane;
      }
      if (b.count == 1 && static_cast<std::int64_t>(lane.ops[b.first]) == st.selected_op)
        dl->AddRect(v2(x0, row.y0 + 1), v2(x1, row.y1 - 1), kSelect, 0, 0, 2);
    }
  }
  // Markers: step boundaries and the like, across every lane.
  for (const trace::Marker& m : t.trace.markers) {
    const float x = axis.x(static_cast<double>(m.time));
    if (x < lanes.x0 || x > lanes.x1) continue;
    dl->AddLine(v2(x, lanes.y0), v2(x, lanes.y1), rgba(255, 255, 255, 90));
    if (m.name >= 0)
      dl->AddText(v2(x + 3, lanes.y1 - 16), kDimText, t.trace.string(m.name).c_str());
  }
  dl->PopClipRect();
  dl->PopClipRect();

  if (hovered_block) {
    dl->AddRect(v2(hovered_block->x0, mouse.y - 12), v2(hovered_block->x1, mouse.y + 12), kCursor);
    ImGui::BeginTooltip();
    if (hovered_block->count > 1) {
      ImGui::Text("%u ops merged (each under %.0f px): zoom in, or click to zoom to them",
                  hovered_block->count, L.merge_px);
    } else {
      op_details(t.trace, t.trace.ops[hovered_lane->ops[hovered_block->first]]);
    }
    ImGui::EndTooltip();
    if (clicked_in_place()) {
      if (hovered_block->count > 1) {
        st.view = TimeView{axis.time(hovered_block->x0), axis.time(hovered_block->x1)};
      } else {
        st.selected_op = hovered_lane->ops[hovered_block->first];
      }
    }
  } else if (hovered && clicked_in_place()) {
    st.selected_op = -1;
  }
}

void Viewer::draw_selection() {
  Entry* e = current_trace();
  if (!e || !e->doc.trace || e->state.selected_op < 0) return;
  const trace::Trace& t = e->doc.trace->trace;
  if (static_cast<std::size_t>(e->state.selected_op) >= t.ops.size()) return;
  const ImGuiIO& io = ImGui::GetIO();
  ImGui::SetNextWindowPos(v2(io.DisplaySize.x - 20, io.DisplaySize.y - 20), ImGuiCond_Appearing,
                          v2(1, 1));
  bool open = true;
  // Not focused when it appears: the timeline keeps the keys.
  if (ImGui::Begin("Selected op", &open,
                   ImGuiWindowFlags_AlwaysAutoResize | ImGuiWindowFlags_NoFocusOnAppearing))
    op_details(t, t.ops[static_cast<std::size_t>(e->state.selected_op)]);
  ImGui::End();
  if (!open) e->state.selected_op = -1;
}

void Viewer::draw_memory(float width, float height) {
  Entry* e = trace_entry("No trace open.");
  if (!e) return;
  const LoadedTrace& t = *e->doc.trace;
  TraceViewState& st = e->state;
  if (!st.view || fit_pressed()) st.view = fit_view(t.index.begin, t.index.end);
  ImGui::SameLine();
  rank_combo("rank", t.trace, st.memory_rank);
  if (t.memory.empty() || t.memory[static_cast<std::size_t>(st.memory_rank)].times.empty()) {
    ImGui::TextUnformatted("This trace has no memory samples for the rank.");
    return;
  }
  const MemorySeries& s = t.memory[static_cast<std::size_t>(st.memory_rank)];
  const std::optional<Peak> peak = device_peak(s);
  const std::optional<std::int64_t> limit = gpu_memory_limit(t.trace);
  static bool show_limit_scale = false;
  ImGui::SameLine();
  ImGui::Checkbox("scale to GPU memory", &show_limit_scale);

  const ScreenLayout& L = options_.layout;
  const float side = L.memory_panel;
  const CanvasRect plot = memory_plot(L, width, height);
  ImDrawList* dl = ImGui::GetWindowDrawList();
  ImGui::SetCursorScreenPos(v2(0, L.header));
  ImGui::InvisibleButton("memory canvas",
                         v2(std::max(1.0f, plot.x1), std::max(1.0f, height - L.header)));
  const bool hovered = options_.interactive && ImGui::IsItemHovered();
  const bool active = options_.interactive && ImGui::IsItemActive();
  TimeAxis axis{*st.view, plot.x0, plot.x1 - plot.x0};
  if (options_.interactive) navigate(*st.view, axis, hovered, active, 0, nullptr);
  axis.view = *st.view;

  double top = 1;
  for (const CategoryBytes& b : s.totals)
    top = std::max(top, static_cast<double>(device_total(b)));
  for (std::int64_t r : s.reserved)
    top = std::max(top, static_cast<double>(r));
  if (show_limit_scale && limit) top = std::max(top, static_cast<double>(*limit));
  top *= 1.08;
  const auto y_of = [&](double bytes) {
    return plot.y1 - static_cast<float>(bytes / top) * (plot.y1 - plot.y0);
  };

  dl->AddRectFilled(v2(plot.x0, plot.y0), v2(plot.x1, plot.y1), kLaneBg);
  draw_axis(dl, axis, L.header, L.axis_height, plot.y1);
  for (int i = 1; i <= 4; ++i) {
    const double b = top / 1.08 * i / 4;
    const float y = y_of(b);
    dl->AddLine(v2(plot.x0, y), v2(plot.x1, y), kGrid);
    dl->AddText(v2(8, y - 7), kDimText, format_bytes(b).c_str());
  }
  dl->PushClipRect(v2(plot.x0, plot.y0), v2(plot.x1, plot.y1), true);
  for (const MemoryColumn& c : memory_columns(s, axis, 1)) {
    double base = 0;
    for (std::size_t k = 0; k < trace::kMemoryCategoryCount; ++k) {
      const auto cat = static_cast<MemoryCategory>(k);
      if (!trace::on_device(cat) || c.bytes[k] <= 0) continue;
      const double next = base + static_cast<double>(c.bytes[k]);
      dl->AddRectFilled(v2(c.x0, y_of(next)), v2(c.x1, y_of(base)), category_color(cat));
      base = next;
    }
  }
  // Reserved as a line over the stacks.
  for (std::size_t i = 0; i < s.reserved_times.size(); ++i) {
    const float x0 = axis.x(static_cast<double>(s.reserved_times[i]));
    const float x1 = i + 1 < s.reserved_times.size()
                         ? axis.x(static_cast<double>(s.reserved_times[i + 1]))
                         : plot.x1;
    const float y = y_of(static_cast<double>(s.reserved[i]));
    dl->AddLine(v2(x0, y), v2(x1, y), rgba(255, 255, 255, 200), 1.5f);
    if (i + 1 < s.reserved_times.size())
      dl->AddLine(v2(x1, y), v2(x1, y_of(static_cast<double>(s.reserved[i + 1]))),
                  rgba(255, 255, 255, 200), 1.5f);
  }
  if (peak) {
    const float x = axis.x(static_cast<double>(peak->time));
    dl->AddLine(v2(x, plot.y0), v2(x, plot.y1), kPeak, 1.5f);
    const std::string label = "peak " + format_bytes(static_cast<double>(peak->bytes));
    dl->AddText(v2(x + 4, y_of(static_cast<double>(peak->bytes)) - 16), kPeak, label.c_str());
  }
  if (limit && static_cast<double>(*limit) <= top) {
    const float y = y_of(static_cast<double>(*limit));
    dl->AddLine(v2(plot.x0, y), v2(plot.x1, y), kLimit, 2);
    dl->AddText(v2(plot.x0 + 4, y + 2), kLimit, "GPU memory");
  }
  const ImVec2 mouse = ImGui::GetIO().MousePos;
  double at = st.pinned_time.value_or(peak ? static_cast<double>(peak->time) : 0);
  if (hovered && mouse.x >= plot.x0 && mouse.x < plot.x1) {
    at = axis.time(mouse.x);
    dl->AddLine(v2(mouse.x, plot.y0), v2(mouse.x, plot.y1), kCursor);
    if (clicked_in_place()) st.pinned_time = at;
  }
  if (st.pinned_time) {
    const float x = axis.x(*st.pinned_time);
    dl->AddLine(v2(x, plot.y0), v2(x, plot.y1), rgba(120, 200, 255), 1.5f);
  }
  dl->PopClipRect();

  // The legend under the plot: the device categories this rank uses, and the reserved line.
  float lx = plot.x0;
  const auto legend = [&](Color colour, std::string_view name) {
    dl->AddRectFilled(v2(lx, plot.y1 + 6), v2(lx + 10, plot.y1 + 16), colour);
    dl->AddText(v2(lx + 13, plot.y1 + 4), kDimText, name.data(), name.data() + name.size());
    lx += 13 + ImGui::CalcTextSize(name.data(), name.data() + name.size()).x + 12;
  };
  std::array<bool, trace::kMemoryCategoryCount> used{};
  for (const CategoryBytes& bytes : s.totals)
    for (std::size_t k = 0; k < used.size(); ++k)
      used[k] = used[k] || bytes[k] > 0;
  for (std::size_t k = 0; k < trace::kMemoryCategoryCount; ++k) {
    const auto cat = static_cast<MemoryCategory>(k);
    if (trace::on_device(cat) && used[k]) legend(category_color(cat), trace::to_string(cat));
  }
  if (!s.reserved.empty()) legend(rgba(255, 255, 255, 200), "reserved");

  // The breakdown at the pointer (or the pinned time, or the peak).
  ImGui::SetCursorScreenPos(v2(width - side, L.header));
  ImGui::BeginChild("breakdown", v2(side - 8, height - L.header - L.bottom_margin), true);
  ImGui::Text("at %s%s", format_duration(at).c_str(),
              st.pinned_time ? " (pinned: click elsewhere to move)" : "");
  const CategoryBytes b = breakdown_at(s, at);
  ImGui::Text("allocated %s", format_bytes(static_cast<double>(device_total(b))).c_str());
  ImGui::Text("reserved  %s", format_bytes(static_cast<double>(reserved_at(s, at))).c_str());
  if (peak)
    ImGui::Text("peak      %s at %s", format_bytes(static_cast<double>(peak->bytes)).c_str(),
                format_duration(static_cast<double>(peak->time)).c_str());
  if (limit) ImGui::Text("GPU       %s", format_bytes(static_cast<double>(*limit)).c_str());
  ImGui::Separator();
  ImGui::TextUnformatted("largest categories");
  for (const CategoryShare& c : largest_at(s, at)) {
    ImGui::ColorButton(std::string(trace::to_string(c.category)).c_str(),
                       ImGui::ColorConvertU32ToFloat4(category_color(c.category)),
                       ImGuiColorEditFlags_NoTooltip, v2(10, 10));
    ImGui::SameLine();
    ImGui::Text("%-18s %s", std::string(trace::to_string(c.category)).c_str(),
                format_bytes(static_cast<double>(c.bytes)).c_str());
  }
  ImGui::Separator();
  if (!t.trace.allocations.empty()) {
    // A block's name, or else its category (the same colours as the stacked area).
    ImGui::TextUnformatted("largest live tensors");
    const auto time = static_cast<trace::TimeNs>(std::floor(at));
    for (std::uint32_t i : largest_live(t.trace, st.memory_rank, time, 10)) {
      const trace::Allocation& a = t.trace.allocations[i];
      const std::string category(trace::to_string(a.category));
      ImGui::ColorButton(("##live" + std::to_string(i)).c_str(),
                         ImGui::ColorConvertU32ToFloat4(category_color(a.category)),
                         ImGuiColorEditFlags_NoTooltip, v2(10, 10));
      ImGui::SameLine();
      ImGui::Text("%9s %s", format_bytes(static_cast<double>(a.bytes)).c_str(),
                  a.name == trace::kNone ? category.c_str() : t.trace.string(a.name).c_str());
      if (ImGui::IsItemHovered()) {
        ImGui::SetTooltip("%s\nfrom %s to %s", category.c_str(),
                          format_duration(static_cast<double>(a.start)).c_str(),
                          a.end == trace::kNever
                              ? "the end"
                              : format_duration(static_cast<double>(a.end)).c_str());
      }
    }
    // Blocks freed at this very time were live up to it: at a peak, often the buffers whose
    // successors made it.
    const std::vector<std::uint32_t> freed = largest_freed_at(t.trace, st.memory_rank, time, 5);
    if (!freed.empty()) {
      ImGui::TextUnformatted("freed at this time");
      for (std::uint32_t i : freed) {
        const trace::Allocation& a = t.trace.allocations[i];
        ImGui::Text("%9s %s", format_bytes(static_cast<double>(a.bytes)).c_str(),
                    a.name == trace::kNone ? std::string(trace::to_string(a.category)).c_str()
                                           : t.trace.string(a.name).c_str());
      }
    }
  } else {
    // Traces without allocation records (format versions 1 and 2, measured GPU runs).
    ImGui::TextUnformatted("latest gathers (largest first)");
    for (std::uint32_t i : recent_gathers(t.trace, st.memory_rank, at, 8)) {
      const trace::Op& op = t.trace.ops[i];
      ImGui::Text("%-14s %s", op_title(t.trace, op).c_str(),
                  format_bytes(static_cast<double>(op.bytes)).c_str());
    }
  }
  ImGui::EndChild();
}

void Viewer::draw_tables() {
  Entry* e = trace_entry("No trace open.");
  if (!e) return;
  const trace::Trace& t = e->doc.trace->trace;
  ImGui::SameLine();
  ImGui::SetNextItemWidth(200);
  int& rank = e->state.table_rank;
  const char* preview = rank < 0 || static_cast<std::size_t>(rank) >= t.ranks.size()
                            ? "every rank"
                            : t.ranks[static_cast<std::size_t>(rank)].label.c_str();
  if (ImGui::BeginCombo("rank", preview)) {
    if (ImGui::Selectable("every rank", rank < 0)) rank = kAllRanks;
    for (std::size_t r = 0; r < t.ranks.size(); ++r)
      if (ImGui::Selectable(t.ranks[r].label.c_str(), rank == static_cast<int>(r)))
        rank = static_cast<int>(r);
    ImGui::EndCombo();
  }
  bool rebuilt = false;
  if (e->tables_rank != rank) {
    e->collectives = collective_rows(t, rank);
    e->modules = module_rows(t, rank);
    e->tables_rank = rank;
    rebuilt = true;
  }
  const ImGuiTableFlags flags = ImGuiTableFlags_Sortable | ImGuiTableFlags_RowBg |
                                ImGuiTableFlags_Borders | ImGuiTableFlags_ScrollY |
                                ImGuiTableFlags_Resizable;
  const float avail = ImGui::GetContentRegionAvail().y;
  ImGui::TextUnformatted("Collectives and copies");
  if (ImGui::BeginTable("collectives", 5, flags, v2(0, avail * 0.35f))) {
    ImGui::TableSetupScrollFreeze(0, 1);
    ImGui::TableSetupColumn("type");
    ImGui::TableSetupColumn("group");
    ImGui::TableSetupColumn("ops");
    ImGui::TableSetupColumn(
        "bytes", ImGuiTableColumnFlags_DefaultSort | ImGuiTableColumnFlags_PreferSortDescending);
    ImGui::TableSetupColumn("time");
    ImGui::TableHeadersRow();
    if (ImGuiTableSortSpecs* specs = ImGui::TableGetSortSpecs();
        specs && (specs->SpecsDirty || rebuilt) && specs->SpecsCount > 0) {
      sort_rows(e->collectives, static_cast<CollectiveColumn>(specs->Specs[0].ColumnIndex),
                specs->Specs[0].SortDirection == ImGuiSortDirection_Ascending);
      specs->SpecsDirty = false;
    }
    auto row = [](const CollectiveRow& r, bool total) {
      ImGui::TableNextRow();
      ImGui::TableNextColumn();
      ImGui::TextUnformatted(total ? "total" : std::string(trace::to_string(r.kind)).c_str());
      ImGui::TableNextColumn();
      ImGui::TextUnformatted(total ? "" : r.group_label.c_str());
      ImGui::TableNextColumn();
      ImGui::Text("%lld", static_cast<long long>(r.count));
      ImGui::TableNextColumn();
      ImGui::TextUnformatted(format_bytes(static_cast<double>(r.bytes)).c_str());
      ImGui::TableNextColumn();
      ImGui::TextUnformatted(format_duration(static_cast<double>(r.time_ns)).c_str());
    };
    for (const CollectiveRow& r : e->collectives)
      row(r, false);
    row(collective_total(e->collectives), true);
    ImGui::EndTable();
  }
  ImGui::TextUnformatted("Modules (compute passes, parameter fetches and releases)");
  // The columns in ModuleColumn's order: the sort specs give a column's index.
  if (ImGui::BeginTable("modules", 9, flags, v2(0, 0))) {
    ImGui::TableSetupScrollFreeze(0, 1);
    // Qualified names are long: the module column takes three shares of the width.
    ImGui::TableSetupColumn("module", ImGuiTableColumnFlags_WidthStretch, 3.0f);
    ImGui::TableSetupColumn("forward");
    ImGui::TableSetupColumn("backward");
    ImGui::TableSetupColumn("recompute");
    ImGui::TableSetupColumn("fetches");
    ImGui::TableSetupColumn("releases");
    ImGui::TableSetupColumn("bytes gathered");
    ImGui::TableSetupColumn("compute time", ImGuiTableColumnFlags_DefaultSort |
                                                ImGuiTableColumnFlags_PreferSortDescending);
    ImGui::TableSetupColumn("flops");
    ImGui::TableHeadersRow();
    if (ImGuiTableSortSpecs* specs = ImGui::TableGetSortSpecs();
        specs && (specs->SpecsDirty || rebuilt) && specs->SpecsCount > 0) {
      sort_rows(e->modules, static_cast<ModuleColumn>(specs->Specs[0].ColumnIndex),
                specs->Specs[0].SortDirection == ImGuiSortDirection_Ascending);
      specs->SpecsDirty = false;
    }
    auto row = [](const ModuleRow& r) {
      ImGui::TableNextRow();
      ImGui::TableNextColumn();
      ImGui::TextUnformatted(r.name.c_str());
      ImGui::TableNextColumn();
      ImGui::Text("%lld", static_cast<long long>(r.forward));
      ImGui::TableNextColumn();
      ImGui::Text("%lld", static_cast<long long>(r.backward));
      ImGui::TableNextColumn();
      ImGui::Text("%lld", static_cast<long long>(r.recompute));
      ImGui::TableNextColumn();
      ImGui::Text("%lld", static_cast<long long>(r.fetches));
      ImGui::TableNextColumn();
      ImGui::Text("%lld", static_cast<long long>(r.releases));
      ImGui::TableNextColumn();
      ImGui::TextUnformatted(format_bytes(static_cast<double>(r.gathered_bytes)).c_str());
      ImGui::TableNextColumn();
      ImGui::TextUnformatted(format_duration(static_cast<double>(r.time_ns)).c_str());
      ImGui::TableNextColumn();
      ImGui::Text("%.3g", static_cast<double>(r.flops));
    };
    // The total first, frozen under the header would need a second table; it leads the rows.
    row(module_total(e->modules));
    ImGuiListClipper clipper;
    clipper.Begin(static_cast<int>(e->modules.size()));
    while (clipper.Step())
      for (int i = clipper.DisplayStart; i < clipper.DisplayEnd; ++i)
        row(e->modules[static_cast<std::size_t>(i)]);
    ImGui::EndTable();
  }
}

void Viewer::draw_compare(float width, float height) {
  std::size_t traces = 0;
  for (const auto& d : docs_)
    if (d->doc.trace) ++traces;
  if (traces < 2) {
    ImGui::TextUnformatted(
        "Open two traces to compare them (a prediction and a measurement, or before and after "
        "tuning).");
    return;
  }
  document_combo("A", compare_a_, true, false);
  ImGui::SameLine();
  document_combo("B", compare_b_, true, false);
  const auto valid = [&](int i) {
    return i >= 0 && static_cast<std::size_t>(i) < docs_.size() &&
           docs_[static_cast<std::size_t>(i)]->doc.trace;
  };
  if (!valid(compare_a_) || !valid(compare_b_)) {
    ImGui::TextUnformatted("Pick two traces that loaded.");
    return;
  }
  const LoadedTrace& a = *docs_[static_cast<std::size_t>(compare_a_)]->doc.trace;
  const LoadedTrace& b = *docs_[static_cast<std::size_t>(compare_b_)]->doc.trace;
  ImGui::SameLine();
  rank_combo("rank of A", a.trace, compare_rank_a_);
  ImGui::SameLine();
  rank_combo("rank of B", b.trace, compare_rank_b_);
  CompareCache& cache = *compare_cache_;
  if (cache.a != compare_a_ || cache.b != compare_b_ || cache.rank_a != compare_rank_a_ ||
      cache.rank_b != compare_rank_b_) {
    cache = {compare_a_, compare_b_, compare_rank_a_, compare_rank_b_,
             compare_traces(a.trace, compare_rank_a_, b.trace, compare_rank_b_)};
  }
  const ScreenLayout& L = options_.layout;

  // Device totals of both on one time axis, each from its own start.
  const SharedAxis shared = shared_axis(a.index.begin, a.index.end, b.index.begin, b.index.end);
  const CanvasRect plot{L.label_width, L.header + L.axis_height, width - L.right_margin,
                        L.header + L.axis_height + (height - L.header) * 0.4f};
  const TimeAxis axis{fit_view(0, shared.length), plot.x0, plot.x1 - plot.x0};
  ImDrawList* dl = ImGui::GetWindowDrawList();
  dl->AddRectFilled(v2(plot.x0, plot.y0), v2(plot.x1, plot.y1), kLaneBg);
  draw_axis(dl, axis, L.header, L.axis_height, plot.y1);
  double top = 1;
  for (const LoadedTrace* t : {&a, &b})
    for (const MemorySeries& s : t->memory)
      for (const CategoryBytes& c : s.totals)
        top = std::max(top, static_cast<double>(device_total(c)));
  top *= 1.08;
  const auto y_of = [&](double bytes) {
    return plot.y1 - static_cast<float>(bytes / top) * (plot.y1 - plot.y0);
  };
  const Color colors[2] = {rgba(93, 173, 226), rgba(241, 150, 60)};
  const trace::TimeNs shifts[2] = {shared.shift_a, shared.shift_b};
  const LoadedTrace* both[2] = {&a, &b};
  const int ranks[2] = {compare_rank_a_, compare_rank_b_};
  dl->PushClipRect(v2(plot.x0, plot.y0), v2(plot.x1, plot.y1), true);
  for (int k = 0; k < 2; ++k) {
    if (static_cast<std::size_t>(ranks[k]) >= both[k]->memory.size()) continue;
    const MemorySeries& s = both[k]->memory[static_cast<std::size_t>(ranks[k])];
    for (std::size_t i = 0; i < s.times.size(); ++i) {
      const double t0 = static_cast<double>(s.times[i] - shifts[k]);
      const double t1 =
          i + 1 < s.times.size() ? static_cast<double>(s.times[i + 1] - shifts[k]) : axis.view.end;
      const float y = y_of(static_cast<double>(device_total(s.totals[i])));
      dl->AddLine(v2(axis.x(t0), y), v2(axis.x(t1), y), colors[k], 1.5f);
      if (i + 1 < s.times.size())
        dl->AddLine(v2(axis.x(t1), y),
                    v2(axis.x(t1), y_of(static_cast<double>(device_total(s.totals[i + 1])))),
                    colors[k], 1.5f);
    }
  }
  dl->PopClipRect();
  dl->AddText(v2(8, plot.y0), colors[0], "A allocated");
  dl->AddText(v2(8, plot.y0 + 16), colors[1], "B allocated");

  ImGui::SetCursorScreenPos(v2(8, plot.y1 + 8));
  const std::vector<DiffRow>& rows = cache.rows;
  if (ImGui::BeginTable("differences", 5,
                        ImGuiTableFlags_RowBg | ImGuiTableFlags_Borders | ImGuiTableFlags_ScrollY,
                        v2(width - 16, height - plot.y1 - 16))) {
    ImGui::TableSetupScrollFreeze(0, 1);
    ImGui::TableSetupColumn("figure (the ranks picked)");
    ImGui::TableSetupColumn("A");
    ImGui::TableSetupColumn("B");
    ImGui::TableSetupColumn("B - A");
    ImGui::TableSetupColumn("change");
    ImGui::TableHeadersRow();
    for (const DiffRow& r : rows) {
      ImGui::TableNextRow();
      ImGui::TableNextColumn();
      ImGui::TextUnformatted(r.what.c_str());
      ImGui::TableNextColumn();
      ImGui::TextUnformatted(figure(r.unit, r.a).c_str());
      ImGui::TableNextColumn();
      ImGui::TextUnformatted(figure(r.unit, r.b).c_str());
      ImGui::TableNextColumn();
      const ImVec4 colour = r.delta > 0   ? ImVec4(1, 0.55f, 0.45f, 1)
                            : r.delta < 0 ? ImVec4(0.5f, 0.9f, 0.5f, 1)
                                          : ImVec4(0.8f, 0.8f, 0.8f, 1);
      ImGui::TextColored(colour, "%s%s", r.delta > 0 ? "+" : "", figure(r.unit, r.delta).c_str());
      ImGui::TableNextColumn();
      ImGui::TextUnformatted(r.a != 0 ? percent(r.relative).c_str() : "");
    }
    ImGui::EndTable();
  }
}

void Viewer::draw_planner(float width, float height) {
  bool any = false;
  for (const auto& d : docs_)
    any = any || d->doc.report;
  if (!any) {
    ImGui::TextUnformatted(
        "Open a tuning report ('zeroplan tune RUN --json > tune.json') to see its Pareto front.");
    return;
  }
  document_combo("report", report_, false, true);
  if (report_ < 0 || static_cast<std::size_t>(report_) >= docs_.size() ||
      !docs_[static_cast<std::size_t>(report_)]->doc.report)
    return;
  Entry& e = *docs_[static_cast<std::size_t>(report_)];
  const TuneReport& r = *e.doc.report;
  ImGui::SameLine();
  ImGui::Text("%s: %zu points on the front, objective %s", r.run.c_str(), r.pareto.size(),
              r.objective.c_str());
  const ScreenLayout& L = options_.layout;
  const float side = 360;
  const PlotRect rect{L.label_width, L.header + 10, width - side - L.right_margin,
                      height - L.bottom_margin - 30};
  const ParetoPlot plot = pareto_plot(r, rect);
  ImDrawList* dl = ImGui::GetWindowDrawList();
  dl->AddRectFilled(v2(rect.x0, rect.y0), v2(rect.x1, rect.y1), kLaneBg);
  for (int i = 0; i <= 4; ++i) {
    const double m = plot.mem_min + (plot.mem_max - plot.mem_min) * i / 4;
    const double s = plot.t_min + (plot.t_max - plot.t_min) * i / 4;
    dl->AddText(v2(8, plot.y(m) - 7), kDimText, format_bytes(m).c_str());
    dl->AddText(v2(plot.x(s) - 20, rect.y1 + 6), kDimText, format_duration(s).c_str());
  }
  dl->AddText(v2(rect.x1 - 80, rect.y1 + 18), kDimText, "step time");
  if (r.memory_budget) {
    const float y = plot.y(static_cast<double>(*r.memory_budget));
    dl->AddLine(v2(rect.x0, y), v2(rect.x1, y), kLimit, 1.5f);
    dl->AddText(v2(rect.x0 + 4, y + 2), kLimit, "memory budget");
  }
  for (std::size_t i = 0; i + 1 < r.pareto.size(); ++i)
    dl->AddLine(v2(plot.x(static_cast<double>(r.pareto[i].step_ns)),
                   plot.y(static_cast<double>(r.pareto[i].memory))),
                v2(plot.x(static_cast<double>(r.pareto[i + 1].step_ns)),
                   plot.y(static_cast<double>(r.pareto[i + 1].memory))),
                kGrid, 1.5f);
  for (std::size_t i = 0; i < r.pareto.size(); ++i) {
    const ImVec2 p(plot.x(static_cast<double>(r.pareto[i].step_ns)),
                   plot.y(static_cast<double>(r.pareto[i].memory)));
    dl->AddCircleFilled(p, 5, rgba(93, 173, 226));
    if (static_cast<int>(i) == e.picked) dl->AddCircle(p, 9, kSelect, 0, 2);
  }
  if (r.chosen) {
    const ImVec2 p(plot.x(static_cast<double>(r.chosen->step_ns)),
                   plot.y(static_cast<double>(r.chosen->memory)));
    dl->AddCircle(p, 7, rgba(46, 204, 113), 0, 2.5f);
    dl->AddText(v2(p.x + 9, p.y - 8), rgba(46, 204, 113), "chosen");
  }
  if (r.baseline) {
    const ImVec2 p(plot.x(static_cast<double>(r.baseline->step_ns)),
                   plot.y(static_cast<double>(r.baseline->memory)));
    dl->AddRectFilled(v2(p.x - 5, p.y - 5), v2(p.x + 5, p.y + 5), kPeak);
    dl->AddText(v2(p.x + 8, p.y - 8), kPeak, "yours");
  }
  ImGui::SetCursorScreenPos(v2(rect.x0, rect.y0));
  ImGui::InvisibleButton("pareto",
                         v2(std::max(1.0f, rect.x1 - rect.x0), std::max(1.0f, rect.y1 - rect.y0)));
  if (options_.interactive && ImGui::IsItemHovered()) {
    const ImVec2 m = ImGui::GetIO().MousePos;
    const int near = pick_point(r, plot, m.x, m.y, 10);
    if (near >= 0) {
      const TunePoint& p = r.pareto[static_cast<std::size_t>(near)];
      ImGui::SetTooltip("%s, %s", format_bytes(static_cast<double>(p.memory)).c_str(),
                        format_duration(static_cast<double>(p.step_ns)).c_str());
    }
    if (ImGui::IsItemClicked()) e.picked = near;
  }
  ImGui::SetCursorScreenPos(v2(width - side, L.header));
  ImGui::BeginChild("point", v2(side - 8, height - L.header - L.bottom_margin), true);
  const TunePoint* shown = nullptr;
  if (e.picked >= 0 && static_cast<std::size_t>(e.picked) < r.pareto.size()) {
    shown = &r.pareto[static_cast<std::size_t>(e.picked)];
    ImGui::Text("point %d of the front", e.picked + 1);
  } else if (r.chosen) {
    shown = &*r.chosen;
    ImGui::TextUnformatted("the chosen configuration (click a point)");
  }
  if (shown) {
    ImGui::Text("peak memory %s", format_bytes(static_cast<double>(shown->memory)).c_str());
    ImGui::Text("step time   %s", format_duration(static_cast<double>(shown->step_ns)).c_str());
    if (r.baseline) {
      ImGui::Text("yours       %s, %s",
                  format_bytes(static_cast<double>(r.baseline->memory)).c_str(),
                  format_duration(static_cast<double>(r.baseline->step_ns)).c_str());
    }
    if (!shown->trace.empty()) {
      if (ImGui::Button("Open its predicted trace")) {
        open(shown->trace);
        select_view_ = true;
        options_.view = View::kTimeline;
      }
    } else {
      ImGui::TextDisabled("no trace for this point in the report");
    }
    ImGui::Separator();
    if (shown->values.is_object())
      for (const auto& [name, value] : shown->values.items())
        ImGui::Text("%s = %s", name.c_str(), value.dump().c_str());
  }
  ImGui::EndChild();
}

}  // namespace zp::gui
