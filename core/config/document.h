// A parsed JSON or YAML input file as a JSON value tree that remembers where each value came from.
//
// Every loader in zeroplan reads through this one seam, so every error about a value can name the
// file, the line and column (YAML) or the key path (JSON), and the value itself. YAML is converted
// with the YAML 1.2 core schema: unquoted true/false, null/~, integers and floats become JSON
// booleans, null and numbers; everything else, and anything quoted, is a string. Duplicate keys are
// an error in both formats (DeepSpeed rejects them in JSON too).
#pragma once

#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>

#include <nlohmann/json.hpp>

#include "core/util/error.h"

namespace zp {

using Json = nlohmann::json;

class Document {
 public:
  static Document from_json(std::string_view text, std::string file_name);
  static Document from_yaml(std::string_view text, std::string file_name);
  // Reads a file: ".json" as JSON, anything else as YAML (which also reads JSON).
  static Document load(const std::filesystem::path& path);
  // Wraps a value built in memory (no positions).
  static Document from_value(Json value, std::string origin);

  const Json& root() const { return *root_; }
  const std::string& file() const { return file_; }
  const std::filesystem::path& path() const { return path_; }

  // Position of the value at `pointer` (or of the key that names it); line 0 when unknown.
  std::pair<int, int> value_position(const std::string& pointer) const;
  std::pair<int, int> key_position(const std::string& pointer) const;

 private:
  friend class YamlConverter;
  std::shared_ptr<Json> root_ = std::make_shared<Json>();  // shared: Nodes copy cheaply
  std::string file_;
  std::filesystem::path path_;
  std::shared_ptr<std::unordered_map<std::string, std::pair<int, int>>> value_marks_ =
      std::make_shared<std::unordered_map<std::string, std::pair<int, int>>>();
  std::shared_ptr<std::unordered_map<std::string, std::pair<int, int>>> key_marks_ =
      std::make_shared<std::unordered_map<std::string, std::pair<int, int>>>();
};

// A value inside a Document, with the key path that names it in messages. Cheap to copy; valid as
// long as the Document it came from.
class Node {
 public:
  // The root of `doc`; `display_prefix` is prepended to key paths ("deepspeed" for a DeepSpeed
  // config written inline in a run spec).
  explicit Node(const Document& doc, std::string display_prefix = "");

  const Json& value() const { return *value_; }
  const std::string& path() const { return path_; }
  const Document& document() const { return *doc_; }
  // The last component of the path: the key under which this value sits ("stage").
  std::string key() const;

  SourceLocation location() const;      // where the value is
  SourceLocation key_location() const;  // where the key that names it is (for unknown keys)

  Node child(const std::string& key) const;  // value must be an object holding `key`
  Node element(size_t index) const;          // value must be an array

  // The value as written, shortened for messages: 5, "cpu", true, {...}, [...].
  std::string repr() const;
  // "an integer", "a string", "an object", ...
  std::string type_name() const;

  [[noreturn]] void fail(ErrorKind kind, const std::string& message) const;
  Warning warning(const std::string& message) const;

 private:
  Node(const Document* doc, const Json* value, std::string pointer, std::string path);

  const Document* doc_;
  const Json* value_;
  std::string pointer_;  // RFC 6901 pointer into the document
  std::string path_;     // display path
};

// Sets `root` at a dotted key path ("zero_optimization.offload_param.device"), creating mappings
// on the way and replacing non-mappings.
void set_at_path(Json& root, std::string_view dotted_key, Json value);

// "5", "\"cpu\"", "{...}" for messages.
// "an integer", "a string", "a list", "a mapping", ...: a value's type as messages name it.
std::string json_type_name(const Json& value);
std::string repr_json(const Json& value);

}  // namespace zp
