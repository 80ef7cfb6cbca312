#include "core/util/median.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

#include "core/util/error.h"

namespace zp {
namespace {

TEST(Median, AnOddCountTakesTheMiddleValueAndIgnoresAnOutlier) {
  EXPECT_EQ(median(std::vector<std::int64_t>{9000, 1000, 1050}), 1050);
}

TEST(Median, AnEvenCountTakesTheMeanOfTheMiddleTwo) {
  EXPECT_EQ(median(std::vector<std::int64_t>{4, 1, 3, 100}), 3);  // (3 + 4) / 2 in integers
  EXPECT_DOUBLE_EQ(median(std::vector<double>{4, 1, 3, 100}), 3.5);
}

TEST(Median, NoValuesIsABrokenInvariant) {
  EXPECT_THROW(median(std::vector<double>{}), InternalError);
}

}  // namespace
}  // namespace zp
