#include "gui/view/document.h"

#include <fstream>
#include <new>

#include "core/trace/native_format.h"
#include "core/util/atomic_file.h"
#include "core/util/error.h"

namespace zp::gui {

namespace {

// The writer puts "format" first, so a trace is recognised without parsing it twice; any other
// layout still reads, through the slower path.
bool starts_like_trace(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  char head[256] = {};
  in.read(head, sizeof(head) - 1);
  return std::string_view(head, static_cast<std::size_t>(in.gcount())).find(trace::kNativeFormat) !=
         std::string_view::npos;
}

void index(Document& doc) {
  LoadedTrace& t = *doc.trace;
  t.index = build_index(t.trace);
  t.memory = build_memory_series(t.trace);
}

}  // namespace

Document load_document(const std::filesystem::path& path) {
  Document doc;
  doc.path = path;
  doc.name = path.filename().string();
  try {
    if (starts_like_trace(path)) {
      doc.trace = std::make_unique<LoadedTrace>();
      doc.trace->trace = trace::read_native(path);
    } else {
      const Json json = trace::parse_json(read_file(path), path.string());
      if (is_tune_report(json)) {
        doc.report = std::make_unique<TuneReport>(read_tune_report(json, path.string()));
      } else {
        doc.trace = std::make_unique<LoadedTrace>();
        doc.trace->trace = trace::from_native_json(json, path.string());
      }
    }
    if (doc.trace) index(doc);
  } catch (const UserError& e) {
    doc.error = e.what();
  } catch (const std::bad_alloc&) {
    doc.error = path.string() + ": too large to load in memory";
  } catch (const std::exception& e) {
    // A reader bug must not take the window down with the other files open in it.
    doc.error = path.string() + ": cannot be read: " + e.what();
  }
  if (!doc.error.empty()) {
    doc.trace.reset();
    doc.report.reset();
  }
  return doc;
}

Document make_document(trace::Trace trace, std::string name) {
  Document doc;
  doc.name = std::move(name);
  doc.trace = std::make_unique<LoadedTrace>();
  doc.trace->trace = std::move(trace);
  index(doc);
  return doc;
}

}  // namespace zp::gui
