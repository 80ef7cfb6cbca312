// Writing a screenshot: RGBA rows, top row first, as a PNG file.
#pragma once

#include <cstdint>
#include <filesystem>
#include <vector>

namespace zp::gui {

// A file that cannot be written is a UserError naming it.
void write_png(const std::filesystem::path& path, const std::vector<std::uint8_t>& rgba, int width,
               int height);

// Reads a PNG as RGBA rows, top row first; a file that is not one is a UserError.
std::vector<std::uint8_t> read_png(const std::filesystem::path& path, int* width, int* height);

}  // namespace zp::gui
