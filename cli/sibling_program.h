// The programs beside zeroplan: zeroplan-exec (libtorch) and zeroplan-view (OpenGL, ImGui). Each
// is a program of its own so that zeroplan's other commands link none of that; the commands that
// need one find it here and hand over to it (exec, view) or run it and wait (validate, calibrate).
#pragma once

#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

namespace zp::cli {

// `name` beside this zeroplan. UserError, naming `command`, when it is not there: it is built only
// when `built_when` ("libtorch is found").
std::filesystem::path sibling_program(std::string_view name, std::string_view command,
                                      std::string_view built_when);

// zeroplan-exec, for `command`.
std::filesystem::path exec_program(std::string_view command);

// Replaces this process with `program` and `args` (what it prints and its exit status are the
// command's). Returns only by throwing UserError when it cannot be run.
[[noreturn]] void hand_over(const std::filesystem::path& program,
                            const std::vector<std::string>& args);

// Runs `program` with `args` and returns its exit status. What it prints goes to this process's
// stderr (to the caller it is progress, and stdout stays for the caller's own report), or its
// stdout to `stdout_file` when one is given.
int run_program(const std::filesystem::path& program, const std::vector<std::string>& args,
                const std::filesystem::path& stdout_file = {});

}  // namespace zp::cli
