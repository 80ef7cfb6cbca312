#include "core/util/suggest.h"

#include <gtest/gtest.h>

namespace zp {
namespace {

TEST(Suggest, EditDistanceCountsTranspositionsOnce) {
  EXPECT_EQ(edit_distance("", ""), 0);
  EXPECT_EQ(edit_distance("abc", ""), 3);
  EXPECT_EQ(edit_distance("kitten", "sitting"), 3);
  EXPECT_EQ(edit_distance("memroy", "memory"), 1);
}

TEST(Suggest, ClosestKnownKey) {
  const std::vector<std::string> keys = {"stage", "stage3_max_live_parameters",
                                         "reduce_bucket_size", "overlap_comm"};
  EXPECT_EQ(closest_match("stage3_max_live_parameter", keys), "stage3_max_live_parameters");
  EXPECT_EQ(closest_match("overlap-comm", keys), "overlap_comm");
  EXPECT_EQ(closest_match("Reduce_Bucket_Size", keys), "reduce_bucket_size");
  EXPECT_EQ(closest_match("max_live_parameters", keys), "stage3_max_live_parameters");
  EXPECT_EQ(closest_match("completely_different", keys), std::nullopt);
  EXPECT_EQ(did_you_mean("stag", keys), " (did you mean 'stage'?)");
  EXPECT_EQ(did_you_mean("zzzzzz", keys), "");
}

}  // namespace
}  // namespace zp
