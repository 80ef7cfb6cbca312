#include "gui/platform/window.h"

#define GLFW_INCLUDE_NONE
#include <GL/gl.h>
#include <GLFW/glfw3.h>
#include <backends/imgui_impl_glfw.h>
#include <backends/imgui_impl_opengl3.h>
#include <imgui.h>

#include "core/util/error.h"

namespace zp::gui {

Window::Window(const std::string& title, int width, int height, bool visible) {
  if (!glfwInit()) {
    throw UserError(ErrorKind::kUnsupported, {},
                    "cannot open a window: no display (set DISPLAY, or run under xvfb-run)");
  }
  glfwWindowHint(GLFW_CONTEXT_VERSION_MAJOR, 3);
  glfwWindowHint(GLFW_CONTEXT_VERSION_MINOR, 3);
  glfwWindowHint(GLFW_OPENGL_PROFILE, GLFW_OPENGL_CORE_PROFILE);
  glfwWindowHint(GLFW_VISIBLE, visible ? GLFW_TRUE : GLFW_FALSE);
  window_ = glfwCreateWindow(width, height, title.c_str(), nullptr, nullptr);
  if (!window_) {
    glfwTerminate();
    throw UserError(ErrorKind::kUnsupported, {}, "cannot create an OpenGL 3.3 window");
  }
  glfwMakeContextCurrent(window_);
  glfwSwapInterval(1);
  IMGUI_CHECKVERSION();
  ImGui::CreateContext();
  ImGui::GetIO().IniFilename = nullptr;  // no imgui.ini beside the user's files
  ImGui::StyleColorsDark();
  ImGui_ImplGlfw_InitForOpenGL(window_, true);
  ImGui_ImplOpenGL3_Init("#version 330");
}

Window::~Window() {
  ImGui_ImplOpenGL3_Shutdown();
  ImGui_ImplGlfw_Shutdown();
  ImGui::DestroyContext();
  glfwDestroyWindow(window_);
  glfwTerminate();
}

void Window::draw_frame(const std::function<void()>& frame) {
  ImGui_ImplOpenGL3_NewFrame();
  ImGui_ImplGlfw_NewFrame();
  ImGui::NewFrame();
  frame();
  ImGui::Render();
  int w = 0, h = 0;
  glfwGetFramebufferSize(window_, &w, &h);
  glViewport(0, 0, w, h);
  glClearColor(0.1f, 0.1f, 0.12f, 1.0f);
  glClear(GL_COLOR_BUFFER_BIT);
  ImGui_ImplOpenGL3_RenderDrawData(ImGui::GetDrawData());
}

void Window::on_drop(std::function<void(std::vector<std::string>)> handler) {
  drop_ = std::move(handler);
  glfwSetWindowUserPointer(window_, this);
  glfwSetDropCallback(window_, [](GLFWwindow* w, int count, const char** paths) {
    auto* self = static_cast<Window*>(glfwGetWindowUserPointer(w));
    if (!self || !self->drop_) return;
    std::vector<std::string> list(paths, paths + count);
    self->drop_(std::move(list));
  });
}

void Window::run(const std::function<bool()>& frame) {
  bool keep = true;
  while (keep && !glfwWindowShouldClose(window_)) {
    glfwPollEvents();
    draw_frame([&] { keep = frame(); });
    glfwSwapBuffers(window_);
  }
}

std::vector<std::uint8_t> Window::render_offscreen(const std::function<void()>& frame, int frames,
                                                   int* width, int* height) {
  ZP_CHECK(frames >= 1, "frames ", frames);
  for (int i = 0; i < frames; ++i) {
    glfwPollEvents();
    draw_frame(frame);
  }
  glfwGetFramebufferSize(window_, width, height);
  std::vector<std::uint8_t> pixels(static_cast<size_t>(*width) * static_cast<size_t>(*height) * 4);
  glPixelStorei(GL_PACK_ALIGNMENT, 1);
  glReadPixels(0, 0, *width, *height, GL_RGBA, GL_UNSIGNED_BYTE, pixels.data());
  // OpenGL's rows run bottom-up.
  const size_t row = static_cast<size_t>(*width) * 4;
  for (int y = 0; y < *height / 2; ++y) {
    std::swap_ranges(pixels.begin() + static_cast<std::ptrdiff_t>(y * row),
                     pixels.begin() + static_cast<std::ptrdiff_t>((y + 1) * row),
                     pixels.begin() + static_cast<std::ptrdiff_t>((*height - 1 - y) * row));
  }
  return pixels;
}

}  // namespace zp::gui
