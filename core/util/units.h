// Quantities with units, as users write them in run specs and on the command line.
//
// Parsers accept a number followed by an optional unit ("80GiB", "300 GB/s", "2us", "312T"). They
// throw std::invalid_argument with the rule that was broken; callers that know where the text came
// from turn that into a UserError with a location.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace zp::units {

// Bytes: B, kB/MB/GB/TB/PB (powers of 1000), KiB/MiB/GiB/TiB/PiB (powers of 1024); no unit = bytes.
// A bare K/M/G/T is rejected as ambiguous.
std::int64_t parse_bytes(std::string_view text);

// Bytes per second: a byte size followed by "/s" ("300GB/s"), or bits per second ("400Gbit/s",
// "400Gb/s", "400Gbps"); no unit = bytes per second.
double parse_bandwidth(std::string_view text);

// A duration in integer nanoseconds: ns, us (or µs), ms, s. A unit is required.
std::int64_t parse_duration_ns(std::string_view text);

// Floating-point operations per second: "312T", "312 TFLOP/s", "312TFLOPS", "1.2e15"; prefixes
// k/M/G/T/P/E are powers of 1000. No unit = FLOP/s.
double parse_flops(std::string_view text);

// "80.0 GiB", "512 B": IEC units, three significant digits.
std::string format_bytes(double bytes);
// "1,557,611,200"
std::string format_count(std::int64_t n);
// "312 TFLOP/s", "300 GB/s", "2 us": SI prefixes.
std::string format_si(double value, std::string_view unit);
// "2 us", "1.5 ms"
std::string format_duration_ns(std::int64_t ns);

}  // namespace zp::units
