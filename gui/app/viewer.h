// The trace viewer's user interface: tabs for the timeline, memory, tables, compare and planner
// views over the files it has open. Draws with ImGui only, into whatever context is current, so a
// window (gui/platform/window.h) shows it and a benchmark can drive it without a display.
// Not thread-safe: call from the thread that owns the ImGui context.
#pragma once

#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "gui/view/document.h"
#include "gui/view/screen_layout.h"
#include "gui/view/timeline_layout.h"

namespace zp::gui {

enum class View { kTimeline, kMemory, kTables, kCompare, kPlanner };
// "timeline", "memory", ...; false for an unknown name.
bool parse_view(const std::string& name, View& out);

struct ViewerOptions {
  View view = View::kTimeline;
  // Off for screenshots: no hover highlight or tooltip wherever the pointer happens to be.
  bool interactive = true;
  ScreenLayout layout;
};

// What the user looks at in one trace.
struct TraceViewState {
  std::optional<TimeView> view;  // set to the whole trace on the first frame
  float scroll = 0;              // lanes scrolled up by this many pixels
  std::int64_t selected_op = -1;
  int memory_rank = 0;
  std::optional<double> pinned_time;  // memory view: the time whose breakdown is listed
  int table_rank = -1;                // kAllRanks
};

class Viewer {
 public:
  explicit Viewer(ViewerOptions options = {});
  ~Viewer();

  // Loads a file; a file that cannot be read stays in the list with its message.
  void open(const std::filesystem::path& path);
  void add(Document document);
  // Files dropped on the window, opened at the next frame.
  void drop(std::vector<std::string> paths);

  // Draws one frame into the current ImGui context, filling the display. False once the user
  // asked to quit.
  bool frame();

  std::size_t document_count() const { return docs_.size(); }
  const Document& document(std::size_t i) const;
  TraceViewState& state(std::size_t i);

 private:
  struct Entry;
  struct FileDialog;

  void draw_menu();
  void draw_file_dialog();
  bool document_combo(const char* label, int& index, bool traces, bool reports);
  static void rank_combo(const char* label, const trace::Trace& trace, int& rank);
  // The trace the trace views show, with its picker drawn; null (and why, drawn in its place) when
  // none is open, it failed to load, or it is a tuning report.
  Entry* trace_entry(const char* none_open);
  void draw_timeline(float width, float height);
  void draw_memory(float width, float height);
  void draw_tables();
  void draw_compare(float width, float height);
  void draw_planner(float width, float height);
  void draw_selection();
  Entry* current_trace();

  ViewerOptions options_;
  std::vector<std::unique_ptr<Entry>> docs_;
  std::vector<std::string> dropped_;
  int current_ = 0;
  int compare_a_ = 0, compare_b_ = 1;
  int compare_rank_a_ = 0, compare_rank_b_ = 0;
  struct CompareCache;
  std::unique_ptr<CompareCache> compare_cache_;  // the differences, rebuilt when a choice changes
  int report_ = 0;
  bool select_view_ = true;  // select options_.view's tab on the next frame
  bool quit_ = false;
  std::unique_ptr<FileDialog> dialog_;
  std::vector<Block> blocks_;  // reused per lane
};

}  // namespace zp::gui
