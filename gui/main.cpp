// zeroplan-view: the trace viewer's program. `zeroplan view` runs it, so that zeroplan itself does
// not link OpenGL. Opens native traces and tuning reports in a window, or renders a screenshot.
#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "core/util/error.h"
#include "gui/app/viewer.h"
#include "gui/platform/png.h"
#include "gui/platform/window.h"

namespace {
constexpr int kExitUserError = 2;
constexpr int kExitInternalError = 1;

zp::UserError flag_error(const std::string& flag, const std::string& message) {
  return zp::UserError(zp::ErrorKind::kValue, zp::SourceLocation{"", 0, 0, flag}, message);
}

int run(const std::vector<std::string>& files, const std::string& screenshot, int frames,
        const std::string& size, const std::string& view_name) {
  zp::gui::ViewerOptions options;
  if (!view_name.empty() && !zp::gui::parse_view(view_name, options.view))
    throw flag_error("--view", "'" + view_name +
                                   "' is not a view: use timeline, memory, tables, compare or "
                                   "planner");
  int width = 0, height = 0;
  char tail = 0;
  if (std::sscanf(size.c_str(), "%dx%d%c", &width, &height, &tail) != 2 || width < 200 ||
      height < 150 || width > 8192 || height > 8192)
    throw flag_error("--size", "'" + size + "' is not WIDTHxHEIGHT between 200x150 and 8192x8192");
  if (frames < 1) throw flag_error("--frames", "must be at least 1, not " + std::to_string(frames));

  options.interactive = screenshot.empty();
  zp::gui::Viewer viewer(options);
  for (const std::string& f : files)
    viewer.open(f);

  zp::gui::Window window("zeroplan view", width, height, /*visible=*/screenshot.empty());
  if (screenshot.empty()) {
    window.on_drop([&viewer](std::vector<std::string> paths) { viewer.drop(std::move(paths)); });
    window.run([&viewer] { return viewer.frame(); });
    return 0;
  }
  int w = 0, h = 0;
  const std::vector<std::uint8_t> pixels =
      window.render_offscreen([&viewer] { viewer.frame(); }, frames, &w, &h);
  zp::gui::write_png(screenshot, pixels, w, h);
  // The image shows a file's error in the window; the exit status tells a script.
  int status = 0;
  for (std::size_t i = 0; i < viewer.document_count(); ++i) {
    if (viewer.document(i).error.empty()) continue;
    std::cerr << "zeroplan view: error: " << viewer.document(i).error << "\n";
    status = kExitUserError;
  }
  return status;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "zeroplan view: look at traces from 'zeroplan simulate' and 'zeroplan exec' (timeline, "
      "memory, tables, compare) and at tuning reports from 'zeroplan tune --json' (planner).",
      "zeroplan view"};
  std::vector<std::string> files;
  std::string screenshot, size = "1400x820", view;
  int frames = 3;
  app.add_option("FILE", files,
                 "Native traces (.trace.json) or tuning reports (JSON) to open; more can be "
                 "opened from File > Open or dropped on the window.");
  app.add_option("--screenshot", screenshot,
                 "Render without showing a window and write the image to this PNG file (needs a "
                 "display: run under xvfb-run on a headless machine).");
  app.add_option("--frames", frames, "Frames rendered before the screenshot is taken.")
      ->capture_default_str();
  app.add_option("--size", size, "Window size, WIDTHxHEIGHT.")->capture_default_str();
  app.add_option("--view", view,
                 "The view shown first: timeline, memory, tables, compare or planner.");
  app.footer(
      "Keys: wheel zooms at the pointer, shift+wheel or A/D pans, W/S zoom, F fits, drag pans, "
      "click selects; see docs/view.md.");
  try {
    app.parse(argc, argv);
    return run(files, screenshot, frames, size, view);
  } catch (const CLI::Success& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::cerr << "zeroplan view: error: " << e.what() << "\n"
              << "Run 'zeroplan view --help' for usage.\n";
    return kExitUserError;
  } catch (const zp::UserError& e) {
    std::cerr << "zeroplan view: error: " << e.what() << "\n";
    return kExitUserError;
  } catch (const zp::InternalError& e) {
    std::cerr << "zeroplan view: " << e.what()
              << "\nThis is a bug in zeroplan; please report it.\n";
    return kExitInternalError;
  } catch (const std::exception& e) {
    std::cerr << "zeroplan view: unexpected error: " << e.what() << "\n";
    return kExitInternalError;
  }
}
