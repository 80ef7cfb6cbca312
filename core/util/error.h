// Errors and checks.
//
// zeroplan has two error channels, after c10's TORCH_CHECK / TORCH_INTERNAL_ASSERT:
//  - UserError: the input was wrong (a file, a key, a value, a flag). It says where, which value
//  and
//    which rule, in one line, and the CLI exits with status 2. Thrown by code that reads input.
//  - InternalError: an invariant of zeroplan itself does not hold; a bug. Raised by ZP_CHECK, which
//    stays on in release builds and builds its message only when it fails.
// Neither is an assert(): both survive NDEBUG.
#pragma once

#include <exception>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace zp {

// Where in the user's input something is. Fields are empty or 0 when unknown: JSON values have a
// key path but no line; a command-line flag has neither file nor line.
struct SourceLocation {
  std::string file;
  int line = 0;          // 1-based
  int column = 0;        // 1-based
  std::string key_path;  // "zero_optimization.stage3_max_live_parameters", "[3].name"

  // "run.yaml:12:5: key.path" with whatever parts are known; empty when nothing is.
  std::string str() const;
};

enum class ErrorKind {
  kSyntax,       // the file does not parse
  kType,         // a value has the wrong type
  kValue,        // a value breaks a rule (range, enum, format)
  kUnknownKey,   // a key that is not part of the schema
  kMissing,      // a required key or file is absent
  kConflict,     // two values contradict each other
  kIo,           // a file cannot be read or written
  kUnsupported,  // valid input that zeroplan does not model
};

std::string_view to_string(ErrorKind kind);

// Bad input from a user. what() is the whole message in one line.
class UserError : public std::exception {
 public:
  UserError(ErrorKind kind, SourceLocation where, std::string message);

  ErrorKind kind() const { return kind_; }
  const SourceLocation& where() const { return where_; }
  // The message without the location and context.
  const std::string& message() const { return message_; }

  // Adds outer context as the error travels up, outermost last: "while reading model file x.json".
  UserError& add_context(std::string context);

  const char* what() const noexcept override { return full_.c_str(); }

 private:
  void rebuild();

  ErrorKind kind_;
  SourceLocation where_;
  std::string message_;
  std::vector<std::string> context_;
  std::string full_;
};

// A broken invariant inside zeroplan.
class InternalError : public std::logic_error {
 public:
  using std::logic_error::logic_error;
};

// A non-fatal remark about the input (a deprecated key, a key DeepSpeed ignores, a coerced value).
struct Warning {
  SourceLocation where;
  std::string message;

  std::string str() const;
};

namespace detail {
template <class... Args>
std::string concat(const Args&... args) {
  std::ostringstream out;
  (out << ... << args);
  return out.str();
}
[[noreturn]] void internal_check_failed(const char* condition, const char* file, int line,
                                        const std::string& message);
}  // namespace detail

}  // namespace zp

// Checks an invariant; the message arguments are streamed only when the check fails.
#define ZP_CHECK(condition, ...)                                              \
  do {                                                                        \
    if (!(condition)) [[unlikely]] {                                          \
      ::zp::detail::internal_check_failed(#condition, __FILE__, __LINE__,     \
                                          ::zp::detail::concat(__VA_ARGS__)); \
    }                                                                         \
  } while (false)
