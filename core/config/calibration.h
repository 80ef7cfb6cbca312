// From measurements of a machine to the cluster description the simulator reads: `zeroplan
// calibrate` has zeroplan-exec time matmuls, elementwise kernels, host copies and collectives on
// every rank at once, then fits the simulator's own cost models to the points here, so that each
// model predicts the measured time of what it prices:
//  - a module's pass costs kernels x kernel_launch (+ autograd_node per kernel in backward) +
//    max(flops / peak_flops, bytes / hbm_bandwidth) (efficiencies set to 1: the measured rates are
//    the reached ones);
//  - an all-gather or reduce-scatter of S bytes over a ring of n ranks on one node costs
//    (n - 1) latency + (n - 1) / n x S / bandwidth (docs/network-model.md);
//  - a host copy costs S / pcie_bandwidth.
// Those are calls repeated alone. A training step runs the same calls slower: calibrate also
// trains reference runs (calibration_reference_runs) and fits the cluster's step_slowdown to
// their compute (fit_step_slowdown).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/config/cluster.h"
#include "core/config/document.h"
#include "core/config/run_spec.h"

namespace zp {

// One measured point: an amount (FLOPs or bytes) and the seconds one call took.
struct CalibrationPoint {
  double amount = 0;
  double seconds = 0;
};

// seconds = fixed + per_unit x amount, by least squares on relative errors; a negative fixed part
// is refitted as 0 (a line through the origin); when noise gives no positive rate, the largest
// point's rate stands. UserError when there are no points.
struct LinearFit {
  double fixed = 0;     // seconds
  double per_unit = 0;  // seconds per FLOP or byte
  double rate() const { return 1.0 / per_unit; }
};
LinearFit fit_line(const std::vector<CalibrationPoint>& points, const std::string& what);

// What `zeroplan-exec --calibrate` prints (format "zeroplan-calibration", version 1).
struct Calibration {
  std::int64_t ranks = 1;
  std::string backend;
  std::int64_t threads_per_rank = 1;
  std::int64_t cores = 0;  // the cores the ranks may run on; 0: not recorded (older files)
  // Whether the ranks polled in their collectives' waits (zeroplan-exec --wait); absent from
  // older files.
  std::optional<bool> collectives_poll;
  // The share of the host's CPU time its hypervisor took while these were measured (a virtual
  // machine's steal time); absent where the host does not count it, and from older files.
  std::optional<double> steal_share;
  std::vector<CalibrationPoint> matmul;       // FLOPs
  std::vector<CalibrationPoint> elementwise;  // bytes read and written
  std::vector<CalibrationPoint>
      elementwise_ops;  // FLOPs of GELU, SiLU, LayerNorm (older files: dropout too)
  std::vector<CalibrationPoint>
      dropout;  // FLOPs of dropout's forward and backward (absent from older files)
  std::vector<CalibrationPoint> host_copy;       // bytes
  std::vector<CalibrationPoint> allgather;       // the whole gathered buffer
  std::vector<CalibrationPoint> reduce_scatter;  // the whole reduced buffer
  std::vector<CalibrationPoint> send_recv;       // the message
  // Chains of small products under autograd: kernels, and the forward's or the backward's time.
  std::vector<CalibrationPoint> kernels_forward;
  std::vector<CalibrationPoint> kernels_backward;
  // All-gathers as a step issues them, beyond a piece of compute of `compute_piece` seconds on
  // the same rank: issued after the piece (and waited for), and issued before it and waited for
  // after it. Absent from older files.
  double compute_piece = 0;
  // The ZeRO-3 engine's own time in its hooks over a step of a reference model, and the hooks the
  // simulator counts in that step. Absent from older files (hook_events 0).
  std::int64_t hook_events = 0;
  double hook_seconds = 0;
  // Each reference run's compute per step (forward, backward, recomputation and the optimizer;
  // hooks and waiting excluded), the median step's, in calibration_reference_runs' order. Empty
  // in older files.
  std::vector<double> reference_compute;
  // Each reference run's collective calls a step (every rank issues the same), in the same order.
  // Empty in older files.
  std::vector<double> reference_calls;
  std::vector<CalibrationPoint> allgather_after_compute;
  std::vector<CalibrationPoint> allgather_beside_compute;
  // A message as a pipeline's step sends it: each rank computes a piece, then the ranks exchange
  // it in pairs; one message's time beyond the piece. Absent from older files and odd rank counts.
  std::vector<CalibrationPoint> send_recv_after_compute;
  std::int64_t rounds = 1;  // measurements whose medians these are (median_of_rounds)
};
// UserError naming `origin` and the key when the JSON is not such an object.
Calibration calibration_from_json(const Json& json, const std::string& origin);

// Several rounds of the same measurement as one: each point's time and each reference run's
// compute the median over the rounds, the steal share their mean. A busy spell on a shared
// machine moves one round's figures, not the median. The rounds must measure the same points (the
// same ranks, waits, sizes and reference runs): a UserError naming the round's origin (its file,
// or "round N" without `origins`) and the key where one does not.
Calibration median_of_rounds(const std::vector<Calibration>& rounds,
                             const std::vector<std::string>& origins = {});

struct CalibratedCluster {
  ClusterSpec cluster;
  LinearFit matmul, elementwise, host_copy, collectives, send_recv;
  LinearFit elementwise_ops;                    // when measured (not in older files)
  LinearFit dropout;                            // likewise
  LinearFit kernels_forward, kernels_backward;  // per_unit: seconds per kernel
  bool has_collectives = false;                 // more than one rank was measured
  // `collectives` is the idle fit; `step_excess`, the median excess of an all-gather after a piece
  // of compute (what a step adds to each call), becomes collective_overhead.
  bool in_step = false;
  double step_excess = 0;  // seconds
  // Likewise a send/recv: point_to_point is the idle fit (`send_recv`) plus
  // `send_recv_step_excess`, the median excess of a message after a piece of compute.
  bool send_recv_in_step = false;
  double send_recv_step_excess = 0;  // seconds
  // Of the smaller of a collective and the compute beside it, the share hidden by running both at
  // once, averaged over the sizes: 1 when they overlap fully, 0 when they take turns.
  double overlap = 1;
  // The ranks' compute threads (ranks x threads_per_rank) fill the cores they were measured on.
  bool cores_filled = false;
  // The kernel chains were measured; without them (an older file) kernel_launch is the
  // elementwise fit's fixed part and autograd_node 0.
  bool has_kernels = false;
  std::optional<double> steal_share;     // the calibration's, reported with the fits
  std::optional<bool> collectives_poll;  // likewise
  std::int64_t rounds = 1;               // the calibration's
  struct ReferenceCompute {
    double measured = 0;  // seconds of compute a step, as exec ran it
    double fixed = 0;     // of the isolated fits' prediction, the part per kernel
    double rate = 0;      // and the part the FLOP and memory rates give
    double calls = 0;     // collective calls a step
  };
  std::vector<ReferenceCompute> references;  // what step_slowdown was fitted to
};
// The cluster of `calibration.ranks` ranks on one node of this machine; `host_memory` is the
// node's memory, shared by its ranks.
CalibratedCluster calibrate_cluster(const Calibration& calibration, std::int64_t host_memory);

// The ZeRO-3 runs calibrate trains on every rank with zeroplan-exec's engine, to measure a step's
// hooks and compute as they run: GPT-2s of 3 blocks, none of the bundled examples' models, every
// parameter gathered (no persistence threshold) and DeepSpeed's other defaults. The first (width
// 48, 2 x 16 tokens a rank) is mostly per-kernel cost, the second (width 96, 2 x 32 tokens) mostly
// FLOPs, so that the two tell the step's slowdown of each apart. The third is the first with the
// bundled examples' small buckets (prefetch, reduction, live and reuse limits), so that it issues
// more collectives for the same compute: the two tell collective_host_time apart. The first's
// hooks give hook_overhead. Their cluster only lets the run spec parse: the caller sets the
// measured one.
std::vector<RunSpec> calibration_reference_runs(std::int64_t ranks);

// Fits the cluster's step_slowdown to the reference runs: kernels x fixed + rates x rate =
// measured, by least squares on relative errors, each factor at least 1 (a step is never faster
// than its calls alone). With a third reference (the first's twin with more collective calls,
// calibration_reference_runs), collective_host_time first: the twins' compute difference per call
// of difference, at least 0, each run's calls times it taken off its measured compute before the
// factors are fitted. Keeps the references for the description's comments.
void fit_step_slowdown(CalibratedCluster& calibrated,
                       std::vector<CalibratedCluster::ReferenceCompute> references);

// The description as YAML that `cluster:` (or `zeroplan validate --cluster`) reads back to the
// same ClusterSpec, with the fits as comments.
std::string cluster_yaml(const CalibratedCluster& calibrated);

}  // namespace zp
