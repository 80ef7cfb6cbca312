// Export to the Trace Event Format (JSON) that Perfetto and chrome://tracing open.
//
// Each rank class is a process (pid = its index in Trace::ranks), each stream a thread (tid = the
// stream's index), each op a complete event, memory and reserved bytes counter tracks, markers
// instant events. traces/FORMAT.md gives the mapping in full. Export only: the native format
// (native_format.h) is the one zeroplan reads back.
#pragma once

#include <filesystem>

#include "core/config/document.h"
#include "core/trace/trace.h"

namespace zp::trace {

// The export as a value tree; for a large trace, write_chrome_trace is many times faster. A trace
// that breaks a rule of the native format (check_trace) is an InternalError.
Json to_chrome_trace(const Trace& trace);
// Written atomically: a failed write leaves no partial file.
void write_chrome_trace(const Trace& trace, const std::filesystem::path& path);

}  // namespace zp::trace
