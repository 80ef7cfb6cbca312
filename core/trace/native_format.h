// The native trace file: a Trace as JSON, column-wise, read and written losslessly.
// traces/FORMAT.md describes it field by field. The simulator and the executor write it; the
// viewer reads it.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

#include "core/config/document.h"
#include "core/trace/trace.h"

namespace zp::trace {

inline constexpr const char* kNativeFormat = "zeroplan-trace";
inline constexpr int kNativeFormatVersion = 3;
// The oldest version the reader still reads: version 1 has no ops.module and ops.params columns
// (its ops get kNone) and no release ops; versions 1 and 2 have no allocations table (the trace
// gets none).
inline constexpr int kOldestNativeFormatVersion = 1;

// A trace that breaks a rule of the format (see check_trace) is a bug in whoever built it: the
// writers raise an InternalError for it and write nothing.
Json to_native_json(const Trace& trace);
// Checks every rule a file can break (types, column lengths, enum names, indices, ranges); a
// violation is a UserError naming `origin`, the field and the row.
Trace from_native_json(const Json& json, const std::string& origin);

// Written atomically: a failed write leaves no partial file.
void write_native(const Trace& trace, const std::filesystem::path& path);
Trace read_native(const std::filesystem::path& path);

// The first rule `trace` breaks, if any: an index out of range, end < start, negative bytes or
// flops, a global rank listed twice. The writers call it before writing; the reader after reading.
struct TraceViolation {
  std::string key_path;  // "ops.end[12]"
  std::string message;   // "end 5 is before start 10"
};
std::optional<TraceViolation> check_trace(const Trace& trace);

// JSON text to a value, as every zeroplan reader parses it (Document::from_json: a UserError naming
// `origin`, line and column for bad text).
Json parse_json(std::string_view text, const std::string& origin);

}  // namespace zp::trace
