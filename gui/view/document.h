// A file opened in the viewer: a native trace with what its views need, a tuning report, or the
// one-line reason it could not be read. Loading never throws: a broken file becomes a message
// shown in the window.
#pragma once

#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/trace/trace.h"
#include "gui/view/memory_series.h"
#include "gui/view/pareto.h"
#include "gui/view/timeline_layout.h"

namespace zp::gui {

struct LoadedTrace {
  trace::Trace trace;
  TimelineIndex index;
  std::vector<MemorySeries> memory;
};

struct Document {
  std::filesystem::path path;
  std::string name;   // the file name, for tabs and lists
  std::string error;  // why it could not be read; empty when it was
  std::unique_ptr<LoadedTrace> trace;
  std::unique_ptr<TuneReport> report;
};

// Reads `path` as a native trace or, when it has a "pareto" list, as a tuning report.
Document load_document(const std::filesystem::path& path);
// The same from a trace already in memory (generated traces, tests).
Document make_document(trace::Trace trace, std::string name);

}  // namespace zp::gui
