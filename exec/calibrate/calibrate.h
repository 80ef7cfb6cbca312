// `zeroplan-exec --calibrate`: what this machine does per rank, measured on every rank at once (so
// that ranks sharing cores, caches and memory bandwidth are measured as a run shares them): dense
// (matmul) and elementwise compute, host copies, and all-gather, reduce-scatter and send/recv over
// the ranks' communicator. Rank 0 prints the raw points as one JSON object; `zeroplan calibrate`
// fits the cluster description to them (core/config/calibration.h).
#pragma once

#include <iosfwd>
#include <vector>

#include "exec/comm/communicator.h"

namespace zp::exec {

struct CalibrationOptions {
  bool quick = false;             // fewer, shorter points: for tests
  bool collectives_poll = false;  // the communicator's waits poll (recorded, not acted on)
};

// How fast this machine runs a dense layer now: a 256-square fp32 linear layer, one of the matmul
// points calibrate fits peak_flops to, timed as calibrate times it (every rank of `world` at once,
// in windows after a barrier; about a quarter of a second). A run records it before and after its
// steps, so that its times can be read against the speed its cluster was calibrated at: a shared
// machine's speed drifts between the two. Collective: every rank must call it.
struct SpeedProbe {
  double flops = 0;    // per call
  double bytes = 0;    // per call: its input, weight and output
  double seconds = 0;  // per call
};
SpeedProbe speed_probe(comm::Communicator& world);

// What a step adds to a collective now: the time, beyond a piece of compute, of an all-gather of
// 64 KiB issued after the piece and waited for, timed as calibrate times its in-step points (in
// `rounds` rounds of a step's share of calls beside the piece alone; calibrate's excess over the
// idle line is collective_overhead). On a shared machine it drifts as the speed does, and
// further: a run records it before and after its steps. Collective: every rank of `world` (more
// than one) must call it.
struct CollectiveProbe {
  double bytes = 0;    // the all-gather's whole buffer
  double seconds = 0;  // per call, beyond the piece of compute
};
CollectiveProbe collective_probe(comm::Communicator& world, int rounds = 8);

// What a step adds to an op, from rounds timed side by side: `piece[r]` the mean time of a block of
// calls of a piece of compute alone in round r, `op[r]` that of the op (the piece and a
// collective) right after. The median over the rounds of op less piece. A block's mean is what a
// step pays (a step sums some two dozen collectives, slow calls included); the median over rounds
// drops the host's slow spells as a run's median step does; pairing each op's block with the
// piece's of its round cancels the host's drift between them. On 2 polling CPU ranks, six
// calibrations minutes apart had put collective_overhead at 0 to 546 us with each point one mean
// over 400 calls after one timing of the piece alone; timed so, the same calls gave 35 to 74 us.
double in_step_excess(const std::vector<double>& piece, const std::vector<double>& op);

// Runs on every rank of `world`; rank 0 writes the JSON to `out` and progress to `progress`.
int run_calibration(comm::Communicator& world, const CalibrationOptions& options, std::ostream& out,
                    std::ostream& progress);

}  // namespace zp::exec
