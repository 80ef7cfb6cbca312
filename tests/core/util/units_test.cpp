#include "core/util/units.h"

#include <gtest/gtest.h>

#include <stdexcept>

namespace zp::units {
namespace {

TEST(Units, BytesSiAndIec) {
  EXPECT_EQ(parse_bytes("80GiB"), 80LL << 30);
  EXPECT_EQ(parse_bytes("80 GiB"), 80LL << 30);
  EXPECT_EQ(parse_bytes("80GB"), 80'000'000'000LL);
  EXPECT_EQ(parse_bytes("1.5KiB"), 1536);
  EXPECT_EQ(parse_bytes("512"), 512);
  EXPECT_EQ(parse_bytes("2TB"), 2'000'000'000'000LL);
  EXPECT_EQ(parse_bytes("3MiB"), 3LL << 20);
}

TEST(Units, BareMagnitudeLettersAreAmbiguous) {
  try {
    parse_bytes("80G");
    FAIL();
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("GiB"), std::string::npos);
  }
  EXPECT_THROW(parse_bytes("80Gb"), std::invalid_argument);
  EXPECT_THROW(parse_bytes("-1GB"), std::invalid_argument);
  EXPECT_THROW(parse_bytes("GB"), std::invalid_argument);
  EXPECT_THROW(parse_bytes("1e30PB"), std::invalid_argument);
}

TEST(Units, Bandwidth) {
  EXPECT_DOUBLE_EQ(parse_bandwidth("300GB/s"), 300e9);
  EXPECT_DOUBLE_EQ(parse_bandwidth("400Gbit/s"), 50e9);
  EXPECT_DOUBLE_EQ(parse_bandwidth("400 Gbps"), 50e9);
  EXPECT_DOUBLE_EQ(parse_bandwidth("1GiB/s"), 1073741824.0);
  EXPECT_DOUBLE_EQ(parse_bandwidth("12"), 12.0);
  EXPECT_THROW(parse_bandwidth("300GB"), std::invalid_argument);
  EXPECT_THROW(parse_bandwidth("300 furlongs"), std::invalid_argument);
}

TEST(Units, DurationsNeedAUnit) {
  EXPECT_EQ(parse_duration_ns("2us"), 2000);
  EXPECT_EQ(parse_duration_ns("1.5ms"), 1'500'000);
  EXPECT_EQ(parse_duration_ns("7ns"), 7);
  EXPECT_EQ(parse_duration_ns("1s"), 1'000'000'000);
  EXPECT_EQ(parse_duration_ns("3 \xC2\xB5s"), 3000);
  EXPECT_THROW(parse_duration_ns("5"), std::invalid_argument);
  EXPECT_THROW(parse_duration_ns("5 minutes"), std::invalid_argument);
}

TEST(Units, Flops) {
  EXPECT_DOUBLE_EQ(parse_flops("312T"), 312e12);
  EXPECT_DOUBLE_EQ(parse_flops("312 TFLOP/s"), 312e12);
  EXPECT_DOUBLE_EQ(parse_flops("312TFLOPS"), 312e12);
  EXPECT_DOUBLE_EQ(parse_flops("1.2e15"), 1.2e15);
  EXPECT_DOUBLE_EQ(parse_flops("50G"), 50e9);
  EXPECT_THROW(parse_flops("312X"), std::invalid_argument);
}

TEST(Units, Formatting) {
  EXPECT_EQ(format_count(0), "0");
  EXPECT_EQ(format_count(999), "999");
  EXPECT_EQ(format_count(1000), "1,000");
  EXPECT_EQ(format_count(13015864320), "13,015,864,320");
  EXPECT_EQ(format_count(-1234567), "-1,234,567");
  EXPECT_EQ(format_bytes(512), "512 B");
  EXPECT_EQ(format_bytes(80.0 * (1LL << 30)), "80.0 GiB");
  EXPECT_EQ(format_bytes(1536), "1.50 KiB");
  EXPECT_EQ(format_si(312e12, "FLOP/s"), "312 TFLOP/s");
  EXPECT_EQ(format_duration_ns(2000), "2 us");
  EXPECT_EQ(format_duration_ns(17), "17 ns");
}

}  // namespace
}  // namespace zp::units
