#include "gui/platform/png.h"

// Debian's libstb carries the implementations; only the declarations are needed here.
#include <stb_image.h>
#include <stb_image_write.h>

#include "core/util/error.h"

namespace zp::gui {

void write_png(const std::filesystem::path& path, const std::vector<std::uint8_t>& rgba, int width,
               int height) {
  ZP_CHECK(width > 0 && height > 0, "image ", width, "x", height);
  ZP_CHECK(rgba.size() == static_cast<std::size_t>(width) * static_cast<std::size_t>(height) * 4,
           "pixels ", rgba.size(), " for ", width, "x", height);
  if (!stbi_write_png(path.c_str(), width, height, 4, rgba.data(), width * 4))
    throw UserError(ErrorKind::kIo, SourceLocation{path.string(), 0, 0, ""},
                    "cannot write the PNG file");
}

std::vector<std::uint8_t> read_png(const std::filesystem::path& path, int* width, int* height) {
  int channels = 0;
  stbi_uc* data = stbi_load(path.c_str(), width, height, &channels, 4);
  if (!data)
    throw UserError(ErrorKind::kIo, SourceLocation{path.string(), 0, 0, ""},
                    std::string("cannot read the image: ") + stbi_failure_reason());
  std::vector<std::uint8_t> pixels(
      data, data + static_cast<std::size_t>(*width) * static_cast<std::size_t>(*height) * 4);
  stbi_image_free(data);
  return pixels;
}

}  // namespace zp::gui
