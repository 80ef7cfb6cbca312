#include "core/config/document.h"

#include <optional>
#include <regex>
#include <unordered_set>
#include <vector>

#include <yaml-cpp/yaml.h>

#include "core/util/atomic_file.h"

namespace zp {
namespace {

std::string escape_pointer_token(const std::string& key) {
  std::string out;
  for (char c : key) {
    if (c == '~')
      out += "~0";
    else if (c == '/')
      out += "~1";
    else
      out += c;
  }
  return out;
}

std::pair<int, int> line_column_of(std::string_view text, size_t byte) {
  int line = 1, column = 1;
  for (size_t i = 0; i < byte && i < text.size(); ++i) {
    if (text[i] == '\n') {
      ++line;
      column = 1;
    } else {
      ++column;
    }
  }
  return {line, column};
}

// The offset of the first byte that is not part of a well-formed UTF-8 sequence.
std::optional<size_t> first_invalid_utf8(std::string_view text) {
  size_t i = 0;
  while (i < text.size()) {
    const auto c = static_cast<unsigned char>(text[i]);
    size_t length = c < 0x80           ? 1
                    : (c >> 5) == 0x6  ? 2
                    : (c >> 4) == 0xE  ? 3
                    : (c >> 3) == 0x1E ? 4
                                       : 0;
    if (length == 0 || i + length > text.size()) return i;
    for (size_t k = 1; k < length; ++k) {
      if ((static_cast<unsigned char>(text[i + k]) >> 6) != 0x2) return i;
    }
    i += length;
  }
  return std::nullopt;
}

// Rejects duplicate keys while nlohmann parses, naming the object that holds them.
class DuplicateKeyGuard {
 public:
  explicit DuplicateKeyGuard(std::string file) : file_(std::move(file)) {}

  bool operator()(int /*depth*/, Json::parse_event_t event, Json& parsed) {
    switch (event) {
      case Json::parse_event_t::object_start:
        stack_.push_back({false, {}, 0, {}});
        break;
      case Json::parse_event_t::array_start:
        stack_.push_back({true, {}, 0, {}});
        break;
      case Json::parse_event_t::key: {
        Frame& top = stack_.back();
        top.key = parsed.get<std::string>();
        if (!top.keys.insert(top.key).second) {
          throw UserError(ErrorKind::kSyntax, SourceLocation{file_, 0, 0, path()},
                          "duplicate key '" + top.key + "'");
        }
        break;
      }
      case Json::parse_event_t::object_end:
      case Json::parse_event_t::array_end:
        stack_.pop_back();
        element_done();
        break;
      case Json::parse_event_t::value:
        element_done();
        break;
    }
    return true;
  }

 private:
  struct Frame {
    bool is_array;
    std::string key;
    size_t index;
    std::unordered_set<std::string> keys;
  };

  void element_done() {
    if (!stack_.empty() && stack_.back().is_array) ++stack_.back().index;
  }

  std::string path() const {
    std::string out;
    for (const Frame& f : stack_) {
      if (f.is_array) {
        out += "[" + std::to_string(f.index) + "]";
      } else {
        if (!out.empty()) out += '.';
        out += f.key;
      }
    }
    return out;
  }

  std::string file_;
  std::vector<Frame> stack_;
};

const std::regex& yaml_int() {
  static const std::regex re(R"([-+]?[0-9]+)");
  return re;
}
const std::regex& yaml_float() {
  static const std::regex re(R"([-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?)");
  return re;
}

}  // namespace

// Turns a yaml-cpp tree into JSON and records the position of every value and key.
class YamlConverter {
 public:
  explicit YamlConverter(Document& doc) : doc_(doc) {}

  Json convert(const YAML::Node& node, const std::string& pointer, const std::string& path) {
    mark(*doc_.value_marks_, pointer, node.Mark());
    switch (node.Type()) {
      case YAML::NodeType::Undefined:
      case YAML::NodeType::Null:
        return nullptr;
      case YAML::NodeType::Scalar:
        return scalar(node);
      case YAML::NodeType::Sequence: {
        Json out = Json::array();
        size_t i = 0;
        for (const YAML::Node& item : node) {
          const std::string index = std::to_string(i++);
          out.push_back(convert(item, pointer + "/" + index, path + "[" + index + "]"));
        }
        return out;
      }
      case YAML::NodeType::Map: {
        Json out = Json::object();
        for (const auto& entry : node) {
          // Copies: yaml-cpp's iterator yields temporaries.
          const YAML::Node key_node = entry.first;
          const YAML::Node value_node = entry.second;
          if (!key_node.IsScalar()) {
            fail(key_node.Mark(), path, "a mapping key must be a plain value");
          }
          const std::string key = key_node.Scalar();
          const std::string child_path = path.empty() ? key : path + "." + key;
          if (out.contains(key)) fail(key_node.Mark(), child_path, "duplicate key '" + key + "'");
          const std::string child_pointer = pointer + "/" + escape_pointer_token(key);
          mark(*doc_.key_marks_, child_pointer, key_node.Mark());
          out[key] = convert(value_node, child_pointer, child_path);
        }
        return out;
      }
    }
    return nullptr;
  }

 private:
  static Json scalar(const YAML::Node& node) {
    const std::string& s = node.Scalar();
    // Quoted or explicitly tagged as a string: keep the text.
    if (node.Tag() == "!" || node.Tag() == "tag:yaml.org,2002:str") return s;
    if (s.empty() || s == "~" || s == "null" || s == "Null" || s == "NULL") return nullptr;
    if (s == "true" || s == "True" || s == "TRUE") return true;
    if (s == "false" || s == "False" || s == "FALSE") return false;
    if (std::regex_match(s, yaml_int())) {
      try {
        size_t used = 0;
        long long v = std::stoll(s, &used);
        if (used == s.size()) return v;
      } catch (const std::out_of_range&) {
        // Too large for int64: keep it as a float, as JSON parsers do.
      }
      return std::stod(s);
    }
    if (std::regex_match(s, yaml_float())) return std::stod(s);
    if (s == ".inf" || s == "+.inf" || s == ".Inf") return std::numeric_limits<double>::infinity();
    if (s == "-.inf" || s == "-.Inf") return -std::numeric_limits<double>::infinity();
    return s;
  }

  static void mark(std::unordered_map<std::string, std::pair<int, int>>& marks,
                   const std::string& pointer, const YAML::Mark& m) {
    if (m.line >= 0) marks.emplace(pointer, std::pair<int, int>{m.line + 1, m.column + 1});
  }

  [[noreturn]] void fail(const YAML::Mark& m, const std::string& path, const std::string& message) {
    throw UserError(ErrorKind::kSyntax, SourceLocation{doc_.file_, m.line + 1, m.column + 1, path},
                    message);
  }

  Document& doc_;
};

Document Document::from_json(std::string_view text, std::string file_name) {
  Document doc;
  doc.file_ = std::move(file_name);
  try {
    *doc.root_ = Json::parse(text.begin(), text.end(), DuplicateKeyGuard(doc.file_),
                             /*allow_exceptions=*/true, /*ignore_comments=*/false);
  } catch (const Json::out_of_range& e) {
    // A number too large for a double: nlohmann reports it without a position.
    std::string what = e.what();
    if (auto pos = what.find("] "); pos != std::string::npos) what = what.substr(pos + 2);
    throw UserError(ErrorKind::kSyntax, SourceLocation{doc.file_, 0, 0, ""},
                    "invalid JSON: " + what);
  } catch (const Json::parse_error& e) {
    auto [line, column] = line_column_of(text, e.byte == 0 ? 0 : e.byte - 1);
    std::string what = e.what();
    // Drop nlohmann's "[json.exception...] parse error at line L, column C: " prefix.
    if (auto pos = what.find(": "); pos != std::string::npos && what.starts_with("[json.")) {
      what = what.substr(pos + 2);
    }
    throw UserError(ErrorKind::kSyntax, SourceLocation{doc.file_, line, column, ""},
                    "invalid JSON: " + what);
  }
  return doc;
}

Document Document::from_yaml(std::string_view text, std::string file_name) {
  Document doc;
  doc.file_ = std::move(file_name);
  if (auto bad = first_invalid_utf8(text)) {
    auto [line, column] = line_column_of(text, *bad);
    throw UserError(ErrorKind::kSyntax, SourceLocation{doc.file_, line, column, ""},
                    "the file is not valid UTF-8");
  }
  YAML::Node root;
  try {
    root = YAML::Load(std::string(text));
  } catch (const YAML::Exception& e) {
    throw UserError(ErrorKind::kSyntax,
                    SourceLocation{doc.file_, e.mark.line + 1, e.mark.column + 1, ""},
                    "invalid YAML: " + e.msg);
  }
  YamlConverter converter(doc);
  *doc.root_ = converter.convert(root, "", "");
  return doc;
}

Document Document::load(const std::filesystem::path& path) {
  const std::string text = read_file(path);
  Document doc =
      path.extension() == ".json" ? from_json(text, path.string()) : from_yaml(text, path.string());
  doc.path_ = path;
  return doc;
}

Document Document::from_value(Json value, std::string origin) {
  Document doc;
  *doc.root_ = std::move(value);
  doc.file_ = std::move(origin);
  return doc;
}

std::pair<int, int> Document::value_position(const std::string& pointer) const {
  auto it = value_marks_->find(pointer);
  return it == value_marks_->end() ? std::pair<int, int>{0, 0} : it->second;
}

std::pair<int, int> Document::key_position(const std::string& pointer) const {
  auto it = key_marks_->find(pointer);
  return it == key_marks_->end() ? value_position(pointer) : it->second;
}

// --- Node ---------------------------------------------------------------------------------------

Node::Node(const Document& doc, std::string display_prefix)
    : Node(&doc, &doc.root(), "", std::move(display_prefix)) {}

Node::Node(const Document* doc, const Json* value, std::string pointer, std::string path)
    : doc_(doc), value_(value), pointer_(std::move(pointer)), path_(std::move(path)) {}

std::string Node::key() const {
  const size_t dot = path_.find_last_of(".]");
  if (dot == std::string::npos) return path_;
  return path_[dot] == ']' ? path_.substr(path_.find_last_of('[')) : path_.substr(dot + 1);
}

SourceLocation Node::location() const {
  auto [line, column] = doc_->value_position(pointer_);
  return SourceLocation{doc_->file(), line, column, path_};
}

SourceLocation Node::key_location() const {
  auto [line, column] = doc_->key_position(pointer_);
  return SourceLocation{doc_->file(), line, column, path_};
}

Node Node::child(const std::string& key) const {
  ZP_CHECK(value_->is_object() && value_->contains(key), "no key ", key, " at ", path_);
  return Node(doc_, &(*value_)[key], pointer_ + "/" + escape_pointer_token(key),
              path_.empty() ? key : path_ + "." + key);
}

Node Node::element(size_t index) const {
  ZP_CHECK(value_->is_array() && index < value_->size(), "no element ", index, " at ", path_);
  return Node(doc_, &(*value_)[index], pointer_ + "/" + std::to_string(index),
              path_ + "[" + std::to_string(index) + "]");
}

std::string Node::repr() const {
  return repr_json(*value_);
}

std::string json_type_name(const Json& value) {
  switch (value.type()) {
    case Json::value_t::null:
      return "null";
    case Json::value_t::boolean:
      return "a boolean";
    case Json::value_t::number_integer:
    case Json::value_t::number_unsigned:
      return "an integer";
    case Json::value_t::number_float:
      return "a number";
    case Json::value_t::string:
      return "a string";
    case Json::value_t::array:
      return "a list";
    case Json::value_t::object:
      return "a mapping";
    default:
      return "a value";
  }
}

std::string Node::type_name() const {
  return json_type_name(*value_);
}

void Node::fail(ErrorKind kind, const std::string& message) const {
  throw UserError(kind, location(), message);
}

Warning Node::warning(const std::string& message) const {
  return Warning{location(), message};
}

void set_at_path(Json& root, std::string_view dotted_key, Json value) {
  Json* node = &root;
  size_t start = 0;
  for (size_t dot = dotted_key.find('.'); dot != std::string_view::npos;
       dot = dotted_key.find('.', start)) {
    Json& next = (*node)[std::string(dotted_key.substr(start, dot - start))];
    if (!next.is_object()) next = Json::object();
    node = &next;
    start = dot + 1;
  }
  (*node)[std::string(dotted_key.substr(start))] = std::move(value);
}

std::string repr_json(const Json& value) {
  if (value.is_object()) return value.empty() ? "{}" : "{...}";
  if (value.is_array()) return value.empty() ? "[]" : "[...]";
  std::string s = value.dump(-1, ' ', false, Json::error_handler_t::replace);
  if (s.size() > 60) s = s.substr(0, 57) + "...";
  return s;
}

}  // namespace zp
