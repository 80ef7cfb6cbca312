#include "core/util/units.h"

#include <array>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <limits>
#include <stdexcept>
#include <utility>

namespace zp::units {
namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t'))
    s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t'))
    s.remove_suffix(1);
  return s;
}

// Splits "300 GB/s" into 300 and "GB/s".
std::pair<double, std::string_view> split_number(std::string_view text, std::string_view what) {
  std::string_view s = trim(text);
  double value = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
  if (ec != std::errc() || end == s.data()) {
    throw std::invalid_argument("'" + std::string(text) + "' is not a " + std::string(what) +
                                ": expected a number followed by a unit");
  }
  if (!std::isfinite(value) || value < 0) {
    throw std::invalid_argument("'" + std::string(text) + "' is not a " + std::string(what) +
                                ": must be a finite number >= 0");
  }
  return {value, trim(s.substr(static_cast<size_t>(end - s.data())))};
}

struct Unit {
  std::string_view name;
  double scale;
};

constexpr std::array kByteUnits = {
    Unit{"", 1},
    Unit{"B", 1},
    Unit{"kB", 1e3},
    Unit{"KB", 1e3},
    Unit{"MB", 1e6},
    Unit{"GB", 1e9},
    Unit{"TB", 1e12},
    Unit{"PB", 1e15},
    Unit{"KiB", 1024.0},
    Unit{"MiB", 1048576.0},
    Unit{"GiB", 1073741824.0},
    Unit{"TiB", 1099511627776.0},
    Unit{"PiB", 1125899906842624.0},
};

const Unit* find_unit(std::string_view name, const auto& table) {
  for (const Unit& u : table) {
    if (u.name == name) return &u;
  }
  return nullptr;
}

[[noreturn]] void bad_unit(std::string_view text, std::string_view unit, std::string_view what,
                           std::string_view allowed) {
  throw std::invalid_argument("'" + std::string(text) + "': unknown " + std::string(what) +
                              " unit '" + std::string(unit) + "' (use " + std::string(allowed) +
                              ")");
}

constexpr std::string_view kByteUnitList = "B, kB, MB, GB, TB, KiB, MiB, GiB, TiB";

double bytes_of(std::string_view text, std::string_view unit, double value) {
  if (unit == "K" || unit == "M" || unit == "G" || unit == "T" || unit == "P") {
    throw std::invalid_argument(
        "'" + std::string(text) + "': '" + std::string(unit) + "' is ambiguous; write " +
        std::string(unit) + "B (powers of 1000) or " + std::string(unit) + "iB (powers of 1024)");
  }
  const Unit* u = find_unit(unit, kByteUnits);
  if (!u) bad_unit(text, unit, "byte", kByteUnitList);
  return value * u->scale;
}

}  // namespace

std::int64_t parse_bytes(std::string_view text) {
  auto [value, unit] = split_number(text, "byte size");
  const double bytes = bytes_of(text, unit, value);
  if (bytes >= 9.2e18) throw std::invalid_argument("'" + std::string(text) + "' is too large");
  return static_cast<std::int64_t>(std::llround(bytes));
}

double parse_bandwidth(std::string_view text) {
  auto [value, unit] = split_number(text, "bandwidth");
  if (unit.empty()) return value;
  // Bits per second, as network links are sold.
  static constexpr std::array kBitUnits = {
      Unit{"bit/s", 1},     Unit{"kbit/s", 1e3}, Unit{"Mbit/s", 1e6}, Unit{"Gbit/s", 1e9},
      Unit{"Tbit/s", 1e12}, Unit{"b/s", 1},      Unit{"kb/s", 1e3},   Unit{"Mb/s", 1e6},
      Unit{"Gb/s", 1e9},    Unit{"Tb/s", 1e12},  Unit{"bps", 1},      Unit{"kbps", 1e3},
      Unit{"Mbps", 1e6},    Unit{"Gbps", 1e9},   Unit{"Tbps", 1e12},
  };
  if (const Unit* u = find_unit(unit, kBitUnits)) return value * u->scale / 8.0;
  if (unit.size() < 2 || !unit.ends_with("/s")) {
    throw std::invalid_argument(
        "'" + std::string(text) +
        "' is not a bandwidth: write bytes per second (\"300GB/s\") or bits "
        "per second (\"400Gbit/s\")");
  }
  return bytes_of(text, unit.substr(0, unit.size() - 2), value);
}

std::int64_t parse_duration_ns(std::string_view text) {
  auto [value, unit] = split_number(text, "duration");
  static constexpr std::array kTimeUnits = {
      Unit{"ns", 1}, Unit{"us", 1e3}, Unit{"\xC2\xB5s", 1e3}, Unit{"ms", 1e6}, Unit{"s", 1e9},
  };
  if (unit.empty()) {
    throw std::invalid_argument("'" + std::string(text) +
                                "' has no unit: write a duration such as \"2us\" (ns, us, ms, s)");
  }
  const Unit* u = find_unit(unit, kTimeUnits);
  if (!u) bad_unit(text, unit, "time", "ns, us, ms, s");
  const double ns = value * u->scale;
  if (ns >= 9.2e18) throw std::invalid_argument("'" + std::string(text) + "' is too large");
  return static_cast<std::int64_t>(std::llround(ns));
}

double parse_flops(std::string_view text) {
  auto [value, unit] = split_number(text, "FLOP rate");
  if (unit.empty()) return value;
  static constexpr std::array kPrefixes = {
      Unit{"", 1},    Unit{"k", 1e3},  Unit{"K", 1e3},  Unit{"M", 1e6},
      Unit{"G", 1e9}, Unit{"T", 1e12}, Unit{"P", 1e15}, Unit{"E", 1e18},
  };
  std::string_view prefix = unit;
  for (std::string_view suffix : {"FLOP/s", "FLOPS", "FLOPs", "flop/s", "flops"}) {
    if (unit.ends_with(suffix)) {
      prefix = unit.substr(0, unit.size() - suffix.size());
      break;
    }
  }
  const Unit* u = find_unit(trim(prefix), kPrefixes);
  if (!u) bad_unit(text, unit, "FLOP/s", "k, M, G, T, P, E, optionally followed by FLOP/s");
  return value * u->scale;
}

std::string format_bytes(double bytes) {
  static constexpr std::array<std::string_view, 6> kNames = {"B",   "KiB", "MiB",
                                                             "GiB", "TiB", "PiB"};
  size_t i = 0;
  double v = bytes;
  while (std::fabs(v) >= 1024.0 && i + 1 < kNames.size()) {
    v /= 1024.0;
    ++i;
  }
  char buf[64];
  if (i == 0) {
    std::snprintf(buf, sizeof buf, "%.0f B", v);
  } else {
    std::snprintf(buf, sizeof buf,
                  std::fabs(v) >= 100  ? "%.0f %s"
                  : std::fabs(v) >= 10 ? "%.1f %s"
                                       : "%.2f %s",
                  v, kNames[i].data());
  }
  return buf;
}

std::string format_count(std::int64_t n) {
  std::string digits = std::to_string(n < 0 ? -static_cast<unsigned long long>(n)
                                            : static_cast<unsigned long long>(n));
  std::string out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i != 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return n < 0 ? "-" + out : out;
}

std::string format_si(double value, std::string_view unit) {
  static constexpr std::array<std::pair<double, std::string_view>, 7> kPrefixes = {{
      {1e18, "E"},
      {1e15, "P"},
      {1e12, "T"},
      {1e9, "G"},
      {1e6, "M"},
      {1e3, "k"},
      {1, ""},
  }};
  for (auto [scale, name] : kPrefixes) {
    if (std::fabs(value) >= scale || scale == 1) {
      char buf[64];
      std::snprintf(buf, sizeof buf, "%.3g %s%s", value / scale, name.data(),
                    std::string(unit).c_str());
      return buf;
    }
  }
  return std::to_string(value);
}

std::string format_duration_ns(std::int64_t ns) {
  char buf[64];
  const double v = static_cast<double>(ns);
  if (ns < 1000)
    std::snprintf(buf, sizeof buf, "%lld ns", static_cast<long long>(ns));
  else if (ns < 1000000)
    std::snprintf(buf, sizeof buf, "%.3g us", v / 1e3);
  else if (ns < 1000000000)
    std::snprintf(buf, sizeof buf, "%.3g ms", v / 1e6);
  else
    std::snprintf(buf, sizeof buf, "%.3g s", v / 1e9);
  return buf;
}

}  // namespace zp::units
