// The viewer's window: GLFW with an OpenGL 3 context and a Dear ImGui context on top.
// Not thread-safe: GLFW and ImGui are driven from the thread that created the window.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

struct GLFWwindow;

namespace zp::gui {

class Window {
 public:
  // Opens a window (hidden when `visible` is false, e.g. for screenshots). Throws UserError when no
  // display or no OpenGL 3.3 context is available.
  Window(const std::string& title, int width, int height, bool visible = true);
  ~Window();
  Window(const Window&) = delete;
  Window& operator=(const Window&) = delete;

  // Calls `frame` once per frame between ImGui's NewFrame and Render until it returns false or the
  // window is closed.
  void run(const std::function<bool()>& frame);
  // Called with the paths of files dropped on the window, from inside run()'s event polling.
  void on_drop(std::function<void(std::vector<std::string>)> handler);
  // Renders `frames` frames and returns the framebuffer as RGBA rows, top row first.
  std::vector<std::uint8_t> render_offscreen(const std::function<void()>& frame, int frames,
                                             int* width, int* height);

 private:
  void draw_frame(const std::function<void()>& frame);

  GLFWwindow* window_ = nullptr;
  std::function<void(std::vector<std::string>)> drop_;
};

}  // namespace zp::gui
