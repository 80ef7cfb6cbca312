#include "core/config/reader.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <limits>

#include "core/util/suggest.h"

namespace zp {
namespace {

std::string_view strip(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front())))
    s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back())))
    s.remove_suffix(1);
  return s;
}

// Python's int(str) grammar as pydantic applies it: surrounding whitespace, a sign, digits with
// single underscores between them; pydantic also takes "100.0" (a zero fractional part).
std::optional<std::int64_t> lax_int_from_string(std::string_view text) {
  std::string_view s = strip(text);
  std::string digits;
  size_t i = 0;
  if (i < s.size() && (s[i] == '+' || s[i] == '-')) digits += s[i++];
  bool last_digit = false, any = false;
  for (; i < s.size() && s[i] != '.'; ++i) {
    if (std::isdigit(static_cast<unsigned char>(s[i]))) {
      digits += s[i];
      last_digit = any = true;
    } else if (s[i] == '_' && last_digit && i + 1 < s.size() &&
               std::isdigit(static_cast<unsigned char>(s[i + 1]))) {
      last_digit = false;
    } else {
      return std::nullopt;
    }
  }
  if (!any) return std::nullopt;
  if (i < s.size()) {  // a fractional part: only zeros
    for (++i; i < s.size(); ++i) {
      if (s[i] != '0') return std::nullopt;
    }
  }
  std::int64_t value = 0;
  const char* begin = digits.data() + (digits[0] == '+' ? 1 : 0);
  auto [end, ec] = std::from_chars(begin, digits.data() + digits.size(), value);
  if (ec != std::errc() || end != digits.data() + digits.size()) return std::nullopt;
  return value;
}

std::optional<bool> lax_bool_from_string(std::string_view s) {
  std::string lower(s);
  for (char& c : lower)
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  for (std::string_view t : {"1", "on", "t", "true", "y", "yes"}) {
    if (lower == t) return true;
  }
  for (std::string_view f : {"0", "off", "f", "false", "n", "no"}) {
    if (lower == f) return false;
  }
  return std::nullopt;
}

[[noreturn]] void type_error(const Node& node, std::string_view expected) {
  node.fail(ErrorKind::kType,
            "expected " + std::string(expected) + ", got " + node.type_name() + " " + node.repr());
}

}  // namespace

std::int64_t read_int(const Node& node, Coercion coercion) {
  const Json& v = node.value();
  if (v.is_number_integer()) {
    if (v.is_number_unsigned() &&
        v.get<std::uint64_t>() >
            static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
      node.fail(ErrorKind::kValue, node.repr() + " is too large (the limit is 2^63-1)");
    }
    return v.get<std::int64_t>();
  }
  if (v.is_number_float()) {
    const double d = v.get<double>();
    if (!std::isfinite(d) || d != std::floor(d)) {
      node.fail(ErrorKind::kType,
                "expected an integer, got " + node.repr() + " (a number with a fractional part)");
    }
    if (std::fabs(d) >= 9.223372036854775807e18) {
      node.fail(ErrorKind::kValue, node.repr() + " is too large (the limit is 2^63-1)");
    }
    return static_cast<std::int64_t>(d);
  }
  if (coercion == Coercion::kLax) {
    if (v.is_boolean()) return v.get<bool>() ? 1 : 0;
    if (v.is_string()) {
      if (auto parsed = lax_int_from_string(v.get<std::string>())) return *parsed;
      node.fail(ErrorKind::kType, "expected an integer, got the string " + node.repr());
    }
  }
  type_error(node, "an integer");
}

double read_double(const Node& node, Coercion coercion) {
  const Json& v = node.value();
  if (v.is_number()) return v.get<double>();
  if (coercion == Coercion::kLax) {
    if (v.is_boolean()) return v.get<bool>() ? 1.0 : 0.0;
    if (v.is_string()) {
      const std::string s(strip(v.get<std::string>()));
      double d = 0;
      auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), d);
      if (!s.empty() && ec == std::errc() && end == s.data() + s.size()) return d;
      node.fail(ErrorKind::kType, "expected a number, got the string " + node.repr());
    }
  }
  type_error(node, "a number");
}

bool read_bool(const Node& node, Coercion coercion) {
  const Json& v = node.value();
  if (v.is_boolean()) return v.get<bool>();
  if (coercion == Coercion::kLax) {
    if (v.is_number()) {
      const double d = v.get<double>();
      if (d == 0.0 || d == 1.0) return d == 1.0;
    } else if (v.is_string()) {
      if (auto b = lax_bool_from_string(v.get<std::string>())) return *b;
    }
    node.fail(ErrorKind::kType,
              "expected a boolean (true or false), got " + node.type_name() + " " + node.repr());
  }
  type_error(node, "a boolean (true or false)");
}

std::string read_string(const Node& node) {
  if (!node.value().is_string()) type_error(node, "a string");
  return node.value().get<std::string>();
}

void require_at_least(const Node& node, std::int64_t value, std::int64_t min) {
  if (value < min) {
    node.fail(ErrorKind::kValue,
              std::to_string(value) + " is out of range: must be >= " + std::to_string(min));
  }
}

void require_at_least(const Node& node, double value, double min) {
  if (!(value >= min)) {
    node.fail(ErrorKind::kValue,
              repr_json(value) + " is out of range: must be >= " + repr_json(min));
  }
}

void require_at_most(const Node& node, double value, double max) {
  if (!(value <= max)) {
    node.fail(ErrorKind::kValue,
              repr_json(value) + " is out of range: must be <= " + repr_json(max));
  }
}

// --- ObjectReader -------------------------------------------------------------------------------

ObjectReader::ObjectReader(Node object, std::string what)
    : object_(std::move(object)), what_(std::move(what)) {
  if (!object_.value().is_object()) {
    object_.fail(ErrorKind::kType, "expected a mapping for " + what_ + ", got " +
                                       object_.type_name() + " " + object_.repr());
  }
}

std::optional<Node> ObjectReader::get(std::string_view key,
                                      std::initializer_list<std::string_view> aliases) {
  std::optional<Node> found;
  std::string found_key;
  auto consider = [&](std::string_view k) {
    known_.emplace_back(k);
    if (!has(k)) return;
    if (found) {
      object_.child(std::string(k))
          .fail(ErrorKind::kConflict, "'" + found_key + "' and '" + std::string(k) +
                                          "' are two spellings of the same setting; give only one");
    }
    found = object_.child(std::string(k));
    found_key = k;
  };
  consider(key);
  for (std::string_view alias : aliases)
    consider(alias);
  return found;
}

Node ObjectReader::require(std::string_view key) {
  auto node = get(key);
  if (!node) {
    throw UserError(ErrorKind::kMissing, object_.location(),
                    "missing required key '" + std::string(key) + "' in " + what_);
  }
  return *node;
}

std::vector<std::string> ObjectReader::unknown_keys() const {
  std::vector<std::string> unknown;
  for (const auto& [key, value] : object_.value().items()) {
    if (std::find(known_.begin(), known_.end(), key) == known_.end()) unknown.push_back(key);
  }
  return unknown;
}

void ObjectReader::reject_unknown() const {
  for (const std::string& key : unknown_keys()) {
    throw UserError(ErrorKind::kUnknownKey, object_.child(key).key_location(),
                    "unknown key '" + key + "' in " + what_ + did_you_mean(key, known_));
  }
}

void ObjectReader::warn_unknown(std::vector<Warning>& warnings,
                                std::string_view consequence) const {
  for (const std::string& key : unknown_keys()) {
    warnings.push_back(Warning{object_.child(key).key_location(),
                               "unknown key '" + key + "' in " + what_ + did_you_mean(key, known_) +
                                   "; " + std::string(consequence)});
  }
}

}  // namespace zp
