// Typed reading of Document values, with the errors and warnings users see.
//
// Two coercion modes:
//  - kStrict: a JSON boolean for a bool, an integer (or a float with no fractional part) for an
//    int, a number for a float. Used for zeroplan's own files and for the DeepSpeed sections that
//    DeepSpeed itself does not validate.
//  - kLax: what DeepSpeed's pydantic config models (zero_optimization, offload_*) accept, i.e.
//    pydantic v2's lax mode: "100", " 100 ", "1_000", "100.0", true/false for an int; "yes", "on",
//    "t", "1", 1, 1.0 and their negatives for a bool; numeric strings and booleans for a float.
//    A user may tune here and paste the value into DeepSpeed, so both must accept the same text.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/config/document.h"

namespace zp {

enum class Coercion { kStrict, kLax };

std::int64_t read_int(const Node& node, Coercion coercion);
double read_double(const Node& node, Coercion coercion);
bool read_bool(const Node& node, Coercion coercion);
std::string read_string(const Node& node);

// Range rules, named in the error ("must be >= 0").
void require_at_least(const Node& node, std::int64_t value, std::int64_t min);
void require_at_least(const Node& node, double value, double min);
void require_at_most(const Node& node, double value, double max);

// Reads the keys of one mapping and reports the keys nobody asked for.
class ObjectReader {
 public:
  // `object` must be a mapping (a kType error otherwise). `what` names it in messages
  // ("zero_optimization").
  ObjectReader(Node object, std::string what);

  // The value of `key`, or of one of its other spellings; nullopt when absent. Two spellings of the
  // same setting in one mapping are a conflict, as they are in DeepSpeed.
  std::optional<Node> get(std::string_view key,
                          std::initializer_list<std::string_view> aliases = {});
  // Like get(), but the key must be present.
  Node require(std::string_view key);
  // Marks a key as known without reading it (kept for others, e.g. DeepSpeed keys zeroplan does not
  // model).
  void accept(std::string_view key) { known_.emplace_back(key); }
  bool has(std::string_view key) const { return object_.value().contains(std::string(key)); }

  // Keys present that no get()/require()/accept() named: an error naming the first one and the
  // closest known key.
  void reject_unknown() const;
  // The same keys as warnings (for sections DeepSpeed reads without validating).
  void warn_unknown(std::vector<Warning>& warnings, std::string_view consequence) const;

  const Node& node() const { return object_; }

 private:
  std::vector<std::string> unknown_keys() const;

  Node object_;
  std::string what_;
  std::vector<std::string> known_;
};

}  // namespace zp
