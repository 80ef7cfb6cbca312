// Whole-file reads and atomic writes.
#pragma once

#include <filesystem>
#include <string>
#include <string_view>

namespace zp {

// Reads a file; a missing or unreadable file is a UserError naming it.
std::string read_file(const std::filesystem::path& path);

// Writes `contents` to a temporary file beside `path`, then renames it over `path`, so a reader
// never sees half a file and a failure leaves the old file in place. Failures are UserErrors (kIo).
void write_file_atomically(const std::filesystem::path& path, std::string_view contents);

}  // namespace zp
