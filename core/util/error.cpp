#include "core/util/error.h"

namespace zp {

std::string SourceLocation::str() const {
  std::string out = file;
  if (!file.empty() && line > 0) {
    out += ":" + std::to_string(line);
    if (column > 0) out += ":" + std::to_string(column);
  }
  if (!key_path.empty()) {
    if (!out.empty()) out += ": ";
    out += key_path;
  }
  return out;
}

std::string_view to_string(ErrorKind kind) {
  switch (kind) {
    case ErrorKind::kSyntax:
      return "syntax error";
    case ErrorKind::kType:
      return "wrong type";
    case ErrorKind::kValue:
      return "invalid value";
    case ErrorKind::kUnknownKey:
      return "unknown key";
    case ErrorKind::kMissing:
      return "missing";
    case ErrorKind::kConflict:
      return "conflict";
    case ErrorKind::kIo:
      return "i/o error";
    case ErrorKind::kUnsupported:
      return "unsupported";
  }
  return "error";
}

UserError::UserError(ErrorKind kind, SourceLocation where, std::string message)
    : kind_(kind), where_(std::move(where)), message_(std::move(message)) {
  rebuild();
}

UserError& UserError::add_context(std::string context) {
  context_.push_back(std::move(context));
  rebuild();
  return *this;
}

void UserError::rebuild() {
  full_ = where_.str();
  if (!full_.empty()) full_ += ": ";
  full_ += message_;
  for (const std::string& c : context_)
    full_ += " (" + c + ")";
}

std::string Warning::str() const {
  std::string loc = where.str();
  return loc.empty() ? message : loc + ": " + message;
}

namespace detail {
void internal_check_failed(const char* condition, const char* file, int line,
                           const std::string& message) {
  std::string what = std::string("internal check failed: ") + condition + " at " + file + ":" +
                     std::to_string(line);
  if (!message.empty()) what += ": " + message;
  throw InternalError(what);
}
}  // namespace detail

}  // namespace zp
