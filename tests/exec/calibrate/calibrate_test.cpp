#include "exec/calibrate/calibrate.h"

#include <gtest/gtest.h>

#include <vector>

#include "core/util/error.h"

namespace zp::exec {
namespace {

// The host's speed moves from round to round, both blocks of a round with it; the pairing cancels
// that where each block's median set against the other's would not.
TEST(InStepExcess, PairsEachOpsBlockWithThePiecesOfItsRound) {
  const std::vector<double> piece = {1.0, 3.0, 3.0, 1.0, 2.0};
  const std::vector<double> op = {1.2, 3.2, 3.2, 1.2, 2.9};
  EXPECT_NEAR(in_step_excess(piece, op), 0.2, 1e-12);
  // The op's median less the piece's: 2.9 - 2.0.
}

// A slow spell in one round, in either block, moves the figure no further than a median moves.
TEST(InStepExcess, ASlowSpellInOneRoundIsDropped) {
  EXPECT_NEAR(in_step_excess({1.0, 1.0, 1.0, 1.0, 1.0}, {1.2, 1.2, 9.0, 1.2, 1.2}), 0.2, 1e-12);
  EXPECT_NEAR(in_step_excess({1.0, 1.0, 9.0, 1.0, 1.0}, {1.2, 1.2, 1.2, 1.2, 1.2}), 0.2, 1e-12);
  // A mean over the rounds would say 1.76 and 1.4.
}

TEST(InStepExcess, RoundsThatDoNotPairAreABrokenInvariant) {
  EXPECT_THROW((void)in_step_excess({1.0, 2.0}, {1.0}), InternalError);
  EXPECT_THROW((void)in_step_excess({}, {}), InternalError);
}

}  // namespace
}  // namespace zp::exec
