#include "cli/sibling_program.h"

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <csignal>
#include <cstring>

#include "core/util/error.h"

namespace zp::cli {

std::filesystem::path sibling_program(std::string_view name, std::string_view command,
                                      std::string_view built_when) {
  char self[PATH_MAX];
  const ssize_t n = ::readlink("/proc/self/exe", self, sizeof(self) - 1);
  ZP_CHECK(n > 0, "readlink /proc/self/exe: ", std::strerror(errno));
  self[n] = '\0';
  const std::filesystem::path program = std::filesystem::path(self).parent_path() / name;
  if (::access(program.c_str(), X_OK) != 0) {
    throw UserError(ErrorKind::kUnsupported, SourceLocation{"", 0, 0, std::string(command)},
                    std::string(name) + " is not beside zeroplan (" +
                        program.parent_path().string() + "); it is built only when " +
                        std::string(built_when));
  }
  return program;
}

std::filesystem::path exec_program(std::string_view command) {
  return sibling_program("zeroplan-exec", command, "libtorch is found");
}

namespace {

std::vector<char*> argv_of(std::vector<std::string>& text) {
  std::vector<char*> argv;
  for (std::string& a : text)
    argv.push_back(a.data());
  argv.push_back(nullptr);
  return argv;
}

}  // namespace

void hand_over(const std::filesystem::path& program, const std::vector<std::string>& args) {
  std::vector<std::string> text{program.string()};
  text.insert(text.end(), args.begin(), args.end());
  std::vector<char*> argv = argv_of(text);
  ::execv(program.c_str(), argv.data());
  throw UserError(ErrorKind::kIo, SourceLocation{program.string(), 0, 0, ""},
                  std::string("could not run it: ") + std::strerror(errno));
}

int run_program(const std::filesystem::path& program, const std::vector<std::string>& args,
                const std::filesystem::path& stdout_file) {
  std::vector<std::string> text{program.string()};
  text.insert(text.end(), args.begin(), args.end());
  std::vector<char*> argv = argv_of(text);
  const pid_t pid = ::fork();
  if (pid < 0) {
    throw UserError(ErrorKind::kIo, SourceLocation{program.string(), 0, 0, ""},
                    std::string("could not start it: ") + std::strerror(errno));
  }
  if (pid == 0) {
    const int fd = stdout_file.empty()
                       ? STDERR_FILENO
                       : ::open(stdout_file.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) std::_Exit(127);
    ::dup2(fd, STDOUT_FILENO);
    ::execv(program.c_str(), argv.data());
    std::_Exit(127);
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
    ZP_CHECK(errno == EINTR, "waitpid: ", std::strerror(errno));
  }
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  return 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
}

}  // namespace zp::cli
