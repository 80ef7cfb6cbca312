#include "core/config/calibration.h"
#include "core/util/median.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <sstream>

#include "core/util/error.h"
#include "core/util/units.h"

namespace zp {

namespace {

UserError bad(const std::string& origin, const std::string& key, const std::string& message) {
  return UserError(ErrorKind::kValue, SourceLocation{origin, 0, 0, key}, message);
}

std::vector<CalibrationPoint> read_points(const Json& json, const std::string& origin,
                                          const std::string& key, const char* unit) {
  std::vector<CalibrationPoint> out;
  if (!json.contains(key)) return out;
  const Json& list = json.at(key);
  if (!list.is_array()) throw bad(origin, key, "must be a list of points");
  for (std::size_t i = 0; i < list.size(); ++i) {
    const Json& p = list[i];
    const std::string where = key + "[" + std::to_string(i) + "]";
    if (!p.is_object() || !p.contains(unit) || !p.contains("seconds") || !p.at(unit).is_number() ||
        !p.at("seconds").is_number()) {
      throw bad(origin, where, std::string("must be {") + unit + ": number, seconds: number}");
    }
    const CalibrationPoint point{p.at(unit).get<double>(), p.at("seconds").get<double>()};
    if (!(point.amount > 0) || !(point.seconds > 0) || !std::isfinite(point.amount) ||
        !std::isfinite(point.seconds)) {
      throw bad(origin, where, "amount and seconds must be positive and finite");
    }
    out.push_back(point);
  }
  return out;
}

// The median over the sizes of the points' excess over the idle line, never below nothing (with
// more ranks than cores the piece alone already waits for cores).
double median_excess(const std::vector<CalibrationPoint>& points, const LinearFit& idle) {
  std::vector<double> excess;
  for (const CalibrationPoint& p : points)
    excess.push_back(std::max(0.0, p.seconds - (idle.fixed + idle.per_unit * p.amount)));
  return median(std::move(excess));
}

std::int64_t round_positive(double value) {
  return std::max<std::int64_t>(1, std::llround(value));
}

// The shortest text that reads back to the same double.
std::string shortest(double value) {
  char buffer[32];
  const auto result = std::to_chars(buffer, buffer + sizeof buffer, value);
  return std::string(buffer, result.ptr);
}

std::string seconds_text(double s) {
  return units::format_duration_ns(static_cast<std::int64_t>(std::llround(s * 1e9)));
}

}  // namespace

LinearFit fit_line(const std::vector<CalibrationPoint>& points, const std::string& what) {
  if (points.empty()) {
    throw UserError(ErrorKind::kMissing, SourceLocation{"", 0, 0, what}, "no measurements to fit");
  }
  // Weighted by 1 / seconds^2: the fit minimises relative errors, so that the small calls a
  // small model makes count as much as the large ones.
  double shortest = points.front().seconds;
  for (const CalibrationPoint& p : points)
    shortest = std::min(shortest, p.seconds);
  double n = 0, sx = 0, sy = 0, sxx = 0, sxy = 0;
  for (const CalibrationPoint& p : points) {
    const double w = (shortest / p.seconds) * (shortest / p.seconds);
    n += w;
    sx += w * p.amount;
    sy += w * p.seconds;
    sxx += w * p.amount * p.amount;
    sxy += w * p.amount * p.seconds;
  }
  LinearFit fit;
  const double det = n * sxx - sx * sx;
  if (points.size() > 1 && det > 0) {
    fit.per_unit = (n * sxy - sx * sy) / det;
    fit.fixed = (sy - fit.per_unit * sx) / n;
  }
  // A line through the origin when the intercept would be negative (or there is one point): a
  // call never takes less than nothing.
  if (points.size() == 1 || !(det > 0) || fit.fixed < 0) {
    fit.fixed = 0;
    fit.per_unit = sxy / sxx;
  }
  // Noise (a busy machine) can make time shrink with size; the largest call's rate alone is then
  // the best that the points say.
  if (!(fit.per_unit > 0) || !std::isfinite(fit.per_unit)) {
    const CalibrationPoint& largest = *std::max_element(
        points.begin(), points.end(),
        [](const CalibrationPoint& a, const CalibrationPoint& b) { return a.amount < b.amount; });
    fit.fixed = 0;
    fit.per_unit = largest.seconds / largest.amount;
  }
  return fit;
}

Calibration calibration_from_json(const Json& json, const std::string& origin) {
  if (!json.is_object() || json.value("format", std::string()) != "zeroplan-calibration")
    throw bad(origin, "format", "is not a zeroplan calibration (format \"zeroplan-calibration\")");
  if (json.value("version", 0) != 1) throw bad(origin, "version", "must be 1");
  Calibration c;
  if (!json.contains("ranks") || !json.at("ranks").is_number_integer() ||
      json.at("ranks").get<std::int64_t>() < 1)
    throw bad(origin, "ranks", "must be a positive integer");
  c.ranks = json.at("ranks").get<std::int64_t>();
  c.backend = json.value("backend", std::string());
  c.threads_per_rank = json.value("threads_per_rank", std::int64_t{1});
  c.cores = json.value("cores", std::int64_t{0});
  if (json.contains("collectives_poll")) {
    if (!json.at("collectives_poll").is_boolean())
      throw bad(origin, "collectives_poll", "must be true or false");
    c.collectives_poll = json.at("collectives_poll").get<bool>();
  }
  if (json.contains("host_steal_share")) {
    const Json& steal = json.at("host_steal_share");
    if (!steal.is_number() || steal.get<double>() < 0 || steal.get<double>() > 1)
      throw bad(origin, "host_steal_share", "must be a share between 0 and 1");
    c.steal_share = steal.get<double>();
  }
  c.matmul = read_points(json, origin, "matmul", "flops");
  c.elementwise = read_points(json, origin, "elementwise", "bytes");
  c.elementwise_ops = read_points(json, origin, "elementwise_ops", "flops");
  c.dropout = read_points(json, origin, "dropout", "flops");
  c.host_copy = read_points(json, origin, "host_copy", "bytes");
  c.allgather = read_points(json, origin, "allgather", "bytes");
  c.reduce_scatter = read_points(json, origin, "reduce_scatter", "bytes");
  c.send_recv = read_points(json, origin, "send_recv", "bytes");
  c.kernels_forward = read_points(json, origin, "kernels_forward", "kernels");
  c.kernels_backward = read_points(json, origin, "kernels_backward", "kernels");
  c.allgather_after_compute = read_points(json, origin, "allgather_after_compute", "bytes");
  c.allgather_beside_compute = read_points(json, origin, "allgather_beside_compute", "bytes");
  c.send_recv_after_compute = read_points(json, origin, "send_recv_after_compute", "bytes");
  if (json.contains("hooks")) {
    const Json& h = json.at("hooks");
    if (!h.is_object() || !h.contains("events") || !h.at("events").is_number_integer() ||
        h.at("events").get<std::int64_t>() < 1 || !h.contains("seconds") ||
        !h.at("seconds").is_number() || h.at("seconds").get<double>() < 0)
      throw bad(origin, "hooks", "must be {events: a positive integer, seconds: >= 0}");
    c.hook_events = h.at("events").get<std::int64_t>();
    c.hook_seconds = h.at("seconds").get<double>();
  }
  if (json.contains("reference_compute")) {
    const Json& r = json.at("reference_compute");
    if (!r.is_array()) throw bad(origin, "reference_compute", "must be a list of seconds");
    for (const Json& v : r) {
      if (!v.is_number() || !(v.get<double>() > 0))
        throw bad(origin, "reference_compute", "must hold positive seconds, one per reference run");
      c.reference_compute.push_back(v.get<double>());
    }
  }
  if (json.contains("reference_calls")) {
    const Json& r = json.at("reference_calls");
    if (!r.is_array() || r.size() != c.reference_compute.size())
      throw bad(origin, "reference_calls",
                "must be a list of calls a step, one per reference_compute entry");
    for (const Json& v : r) {
      if (!v.is_number() || !(v.get<double>() >= 0))
        throw bad(origin, "reference_calls", "must hold calls a step, at least 0");
      c.reference_calls.push_back(v.get<double>());
    }
  }
  if (!c.allgather_after_compute.empty()) {
    if (!json.contains("compute_piece") || !json.at("compute_piece").is_number() ||
        !(json.at("compute_piece").get<double>() > 0))
      throw bad(origin, "compute_piece", "must be a positive number of seconds");
    c.compute_piece = json.at("compute_piece").get<double>();
    if (c.allgather_beside_compute.size() != c.allgather_after_compute.size())
      throw bad(origin, "allgather_beside_compute",
                "must have a point for each of allgather_after_compute's");
  }
  return c;
}

Calibration median_of_rounds(const std::vector<Calibration>& rounds,
                             const std::vector<std::string>& origins) {
  ZP_CHECK(!rounds.empty(), "no calibration rounds");
  ZP_CHECK(origins.empty() || origins.size() == rounds.size(), origins.size(), " origins of ",
           rounds.size(), " rounds");
  // Rounds of one calibrate agree by construction; rounds from files may not.
  const std::string first = origins.empty() ? "round 1" : origins.front();
  const auto differ = [&](std::size_t r, const std::string& key, const std::string& what) {
    throw UserError(
        ErrorKind::kConflict,
        SourceLocation{origins.empty() ? "round " + std::to_string(r + 1) : origins[r], 0, 0, key},
        what + ": rounds fitted together must measure the same");
  };
  Calibration out = rounds.front();
  const auto points = [&](std::vector<CalibrationPoint> Calibration::*member, const char* what) {
    std::vector<CalibrationPoint>& combined = out.*member;
    for (std::size_t r = 1; r < rounds.size(); ++r) {
      const std::vector<CalibrationPoint>& mine = rounds[r].*member;
      bool same = mine.size() == combined.size();
      for (std::size_t i = 0; same && i < combined.size(); ++i)
        same = mine[i].amount == combined[i].amount;
      if (!same) differ(r, what, std::string("other points than ") + first);
    }
    for (std::size_t i = 0; i < combined.size(); ++i) {
      std::vector<double> seconds;
      for (const Calibration& r : rounds)
        seconds.push_back((r.*member)[i].seconds);
      combined[i].seconds = median(std::move(seconds));
    }
  };
  for (std::size_t r = 1; r < rounds.size(); ++r) {
    const Calibration& c = rounds[r];
    if (c.ranks != out.ranks)
      differ(r, "ranks",
             "measured on " + std::to_string(c.ranks) + " rank(s), " + first + " on " +
                 std::to_string(out.ranks));
    if (c.collectives_poll != out.collectives_poll)
      differ(r, "collectives_poll", "its ranks waited otherwise than " + first + "'s");
    if (c.hook_events != out.hook_events ||
        c.reference_compute.size() != out.reference_compute.size() ||
        c.reference_calls.size() != out.reference_calls.size())
      differ(r, "reference_compute", "other reference runs than " + first);
  }
  using C = Calibration;
  for (const auto& [member, what] : {std::pair{&C::matmul, "matmul"},
                                     {&C::elementwise, "elementwise"},
                                     {&C::elementwise_ops, "elementwise_ops"},
                                     {&C::dropout, "dropout"},
                                     {&C::host_copy, "host_copy"},
                                     {&C::allgather, "allgather"},
                                     {&C::reduce_scatter, "reduce_scatter"},
                                     {&C::send_recv, "send_recv"},
                                     {&C::kernels_forward, "kernels_forward"},
                                     {&C::kernels_backward, "kernels_backward"},
                                     {&C::allgather_after_compute, "allgather_after_compute"},
                                     {&C::allgather_beside_compute, "allgather_beside_compute"},
                                     {&C::send_recv_after_compute, "send_recv_after_compute"}})
    points(member, what);
  const auto median_of = [&](double C::*member) {
    std::vector<double> values;
    for (const Calibration& r : rounds)
      values.push_back(r.*member);
    return median(std::move(values));
  };
  out.compute_piece = median_of(&C::compute_piece);
  out.hook_seconds = median_of(&C::hook_seconds);
  // The reference runs' figures, run by run.
  const auto median_each = [&](std::vector<double> C::*member) {
    for (std::size_t i = 0; i < (out.*member).size(); ++i) {
      std::vector<double> values;
      for (const Calibration& r : rounds)
        values.push_back((r.*member)[i]);
      (out.*member)[i] = median(std::move(values));
    }
  };
  median_each(&C::reference_compute);
  median_each(&C::reference_calls);
  double steal = 0;
  int counted = 0;
  for (const Calibration& r : rounds) {
    if (r.steal_share) {
      steal += *r.steal_share;
      ++counted;
    }
  }
  out.steal_share.reset();
  if (counted > 0) out.steal_share = steal / counted;
  out.rounds = static_cast<std::int64_t>(rounds.size());
  return out;
}

CalibratedCluster calibrate_cluster(const Calibration& m, std::int64_t host_memory) {
  CalibratedCluster out;
  out.steal_share = m.steal_share;
  out.collectives_poll = m.collectives_poll;
  out.rounds = m.rounds;
  out.matmul = fit_line(m.matmul, "matmul");
  out.elementwise = fit_line(m.elementwise, "elementwise");
  out.host_copy = fit_line(m.host_copy, "host_copy");

  ClusterSpec& c = out.cluster;
  c.name = "calibrated";
  c.gpu = "cpu";
  c.nodes = 1;
  c.gpus_per_node = m.ranks;
  c.host_memory = host_memory;
  c.gpu_memory = std::max<std::int64_t>(1, host_memory / m.ranks);
  // The measured rates are the ones reached: efficiencies of 1.
  c.efficiency = Efficiency{1.0, 1.0, 1.0};
  // CPU ranks run each operation as it is called: launches and work add up.
  c.asynchronous_launch = false;
  c.peak_flops["fp32"] = static_cast<double>(round_positive(out.matmul.rate()));
  c.hbm_bandwidth = static_cast<double>(round_positive(out.elementwise.rate()));
  // Element-wise ops run at a rate of their own; their fixed part is each kernel's, priced
  // below from the chains.
  if (!m.elementwise_ops.empty()) {
    out.elementwise_ops = fit_line(m.elementwise_ops, "elementwise_ops");
    c.elementwise_flops = static_cast<double>(round_positive(out.elementwise_ops.rate()));
  }
  if (m.hook_events > 0) {
    c.hook_overhead_ns = std::llround(m.hook_seconds * 1e9 / static_cast<double>(m.hook_events));
  }
  if (!m.dropout.empty()) {
    out.dropout = fit_line(m.dropout, "dropout");
    c.module_flops["Dropout"] = static_cast<double>(round_positive(out.dropout.rate()));
  }
  // Each kernel of a module's pass pays the forward chain's time per product; each in backward
  // what the backward chain's takes beyond that.
  out.has_kernels = !m.kernels_forward.empty() && !m.kernels_backward.empty();
  if (out.has_kernels) {
    out.kernels_forward = fit_line(m.kernels_forward, "kernels_forward");
    out.kernels_backward = fit_line(m.kernels_backward, "kernels_backward");
    c.kernel_launch_ns = std::llround(out.kernels_forward.per_unit * 1e9);
    c.autograd_node_ns = std::max<std::int64_t>(
        0, std::llround((out.kernels_backward.per_unit - out.kernels_forward.per_unit) * 1e9));
  } else {
    c.kernel_launch_ns = std::llround(out.elementwise.fixed * 1e9);
    c.autograd_node_ns = 0;
  }
  c.pcie_bandwidth = static_cast<double>(round_positive(out.host_copy.rate()));
  c.nvme_bandwidth = 0;

  std::vector<CalibrationPoint> ring = m.allgather;
  // Gloo has no reduce-scatter: exec runs an all-reduce, whose ring sends everything twice, so
  // its points at half their time lie on the all-gather's line.
  c.reduce_scatter_by_all_reduce = m.backend == "gloo";
  for (CalibrationPoint p : m.reduce_scatter) {
    if (c.reduce_scatter_by_all_reduce) p.seconds /= 2;
    ring.push_back(p);
  }
  out.has_collectives = m.ranks > 1 && !ring.empty();
  if (out.has_collectives) {
    // (n - 1) latency + (n - 1) / n x S / bandwidth = fixed + per_unit x S.
    out.collectives = fit_line(ring, "allgather");
    // A step issues its collectives between pieces of compute, and that is what it pays.
    out.in_step = !m.allgather_after_compute.empty();
    if (out.in_step) {
      // What a step adds to an idle collective is a fixed cost (the peers issue it apart, and its
      // threads wake on cores the ranks compute on), not a rate: the measured excess. A line
      // fitted to the in-step points themselves, a few noisy points with most of their time
      // fixed, gave slopes of either sign. It is paid once a call, not once a hop: in a kept
      // 4-rank trace a step's all-gathers took what the idle hops and one excess predict, its
      // all-reduces (Gloo's reduce-scatter) 25% less than twice the hops with the excess in each.
      out.step_excess = median_excess(m.allgather_after_compute, out.collectives);
      c.collective_overhead_ns = std::llround(out.step_excess * 1e9);
      double hidden = 0;
      for (std::size_t i = 0; i < m.allgather_after_compute.size(); ++i) {
        const double after = m.allgather_after_compute[i].seconds;
        const double beside = m.allgather_beside_compute[i].seconds;
        hidden += std::clamp((after - beside) / std::min(after, m.compute_piece), 0.0, 1.0);
      }
      out.overlap = hidden / static_cast<double>(m.allgather_after_compute.size());
      c.comm_overlaps_compute = out.overlap >= 0.5;
    }
    const double n = static_cast<double>(m.ranks);
    c.intra_node.latency_ns = std::llround(out.collectives.fixed * 1e9 / (n - 1));
    c.intra_node.bandwidth =
        static_cast<double>(round_positive((n - 1) / (n * out.collectives.per_unit)));
    // A collective's threads need a core: where the ranks' compute threads fill them all, it
    // progresses only when compute yields (the measured share hidden, a noisy figure around
    // one half on 2 ranks of a 2-core machine, is then reported, not used).
    out.cores_filled =
        m.cores > 0 && m.ranks * std::max<std::int64_t>(m.threads_per_rank, 1) >= m.cores;
    if (m.cores > 0) c.comm_overlaps_compute = !out.cores_filled;
    if (!m.send_recv.empty()) {
      out.send_recv = fit_line(m.send_recv, "send_recv");
      // A pipeline's messages pay the send/recv's own cost, not the collectives': its idle fit
      // and, as for the collectives, what a step adds to it.
      out.send_recv_in_step = !m.send_recv_after_compute.empty();
      if (out.send_recv_in_step)
        out.send_recv_step_excess = median_excess(m.send_recv_after_compute, out.send_recv);
      c.point_to_point =
          LinkSpec{static_cast<double>(round_positive(out.send_recv.rate())),
                   std::llround((out.send_recv.fixed + out.send_recv_step_excess) * 1e9)};
    }
  } else {
    // One rank: nothing to measure between ranks; memory copies stand in.
    c.intra_node = LinkSpec{c.pcie_bandwidth, 0};
  }
  c.inter_node = c.intra_node;
  return out;
}

std::vector<RunSpec> calibration_reference_runs(std::int64_t ranks) {
  ZP_CHECK(ranks >= 1, "reference runs on ", ranks, " ranks");
  const std::string cluster =
      "cluster: {gpu: cpu, nodes: 1, gpus_per_node: " + std::to_string(ranks) +
      ", gpu_memory: 1GiB, peak_flops: {fp32: 10G},\n"
      "          hbm_bandwidth: 10GB/s, intra_node: {bandwidth: 1GB/s, latency: 10us},\n"
      "          inter_node: {bandwidth: 1GB/s, latency: 10us}, host_memory: 4GiB,\n"
      "          pcie_bandwidth: 1GB/s, asynchronous_launch: false}\n";
  const std::string defaults =
      "deepspeed: {zero_optimization: {stage: 3, stage3_param_persistence_threshold: 0}}\n";
  const auto run = [&](const std::string& name, int width, int vocab, int seq,
                       const std::string& deepspeed) {
    const std::string text =
        "name: " + name + "\nmodel: {family: gpt2, vocab_size: " + std::to_string(vocab) +
        ", hidden_size: " + std::to_string(width) + ", num_layers: 3, num_heads: 4,\n" +
        "        max_position_embeddings: " + std::to_string(seq) +
        ", tie_word_embeddings: true}\ntraining: {sequence_length: " + std::to_string(seq) +
        ", micro_batch: 2, dtype: fp32}\n" + cluster + deepspeed;
    return parse_run_spec(Document::from_yaml(text, "calibrate's " + name), ".");
  };
  const std::string small_buckets =
      "deepspeed: {zero_optimization: {stage: 3, stage3_param_persistence_threshold: 0,\n"
      "  stage3_prefetch_bucket_size: 10000, reduce_bucket_size: 20000,\n"
      "  stage3_max_live_parameters: 30000, stage3_max_reuse_distance: 20000}}\n";
  RunSpec twin = run("reference-narrow-small-buckets", 48, 256, 16, small_buckets);
  return {run("reference-narrow", 48, 256, 16, defaults),
          run("reference-wide", 96, 512, 32, defaults), std::move(twin)};
}

void fit_step_slowdown(CalibratedCluster& k,
                       std::vector<CalibratedCluster::ReferenceCompute> references) {
  for (const auto& r : references)
    ZP_CHECK(r.measured > 0 && r.fixed >= 0 && r.rate >= 0 && r.fixed + r.rate > 0,
             "a reference run's compute: ", r.measured, " s measured, ", r.fixed, " + ", r.rate,
             " s predicted");
  // The twins: the same compute, more calls. A call's host time never takes more than half of
  // either factor run's measured compute (a noisy difference would otherwise leave nothing).
  double host = 0;
  const std::size_t factor_runs = std::min<std::size_t>(references.size(), 2);
  if (references.size() >= 3 && references[2].calls - references[0].calls >= 1) {
    host = std::max(0.0, (references[2].measured - references[0].measured) /
                             (references[2].calls - references[0].calls));
    for (std::size_t i = 0; i < factor_runs; ++i)
      if (references[i].calls > 0)
        host = std::min(host, 0.5 * references[i].measured / references[i].calls);
  }
  k.cluster.collective_host_ns = std::llround(host * 1e9);
  host = static_cast<double>(k.cluster.collective_host_ns) * 1e-9;
  // Minimises the sum of ((kernels x fixed + rates x rate) / measured - 1)^2, the calls' host
  // time taken off.
  double ff = 0, fr = 0, rr = 0, fm = 0, rm = 0;
  for (std::size_t i = 0; i < factor_runs; ++i) {
    const auto& r = references[i];
    const double measured = r.measured - host * r.calls;
    const double f = r.fixed / measured, q = r.rate / measured;
    ff += f * f;
    fr += f * q;
    rr += q * q;
    fm += f;
    rm += q;
  }
  double kernels = 1, rates = 1;
  const double det = ff * rr - fr * fr;
  if (factor_runs >= 2 && det > 1e-12 * ff * rr) {
    kernels = (fm * rr - rm * fr) / det;
    rates = (ff * rm - fr * fm) / det;
  }
  // A factor below 1 stays at 1 and the other is fitted alone.
  if (!(kernels >= 1) && rr > 0) {
    kernels = 1;
    rates = (rm - fr) / rr;
  }
  if (!(rates >= 1) && ff > 0) {
    rates = 1;
    kernels = (fm - fr) / ff;
  }
  const auto three_decimals = [](double x) { return std::round(std::max(1.0, x) * 1000) / 1000; };
  k.cluster.step_slowdown = {three_decimals(kernels), three_decimals(rates)};
  k.references = std::move(references);
}

std::string cluster_yaml(const CalibratedCluster& k) {
  const ClusterSpec& c = k.cluster;
  const auto rate = [](double r, const char* unit) { return units::format_si(r, unit); };
  std::ostringstream y;
  y << "# This machine, measured by 'zeroplan calibrate' with " << c.gpus_per_node
    << " rank(s) at once";
  if (k.rounds > 1) y << " in " << k.rounds << " rounds (each point their median)";
  y << "; the simulator's cost models fitted to the points:\n";
  y << "#   matmul (fp32): " << seconds_text(k.matmul.fixed) << " + FLOPs at "
    << rate(k.matmul.rate(), "FLOP/s") << "\n";
  y << "#   elementwise:   " << seconds_text(k.elementwise.fixed) << " + bytes at "
    << rate(k.elementwise.rate(), "B/s") << "\n";
  if (k.elementwise_ops.per_unit > 0) {
    y << "#   element-wise ops (GELU, SiLU, LayerNorm): " << seconds_text(k.elementwise_ops.fixed)
      << " + FLOPs at " << rate(k.elementwise_ops.rate(), "FLOP/s") << "\n";
  }
  if (k.dropout.per_unit > 0) {
    y << "#   dropout, forward and backward: " << seconds_text(k.dropout.fixed) << " + FLOPs at "
      << rate(k.dropout.rate(), "FLOP/s") << "\n";
  }
  if (k.has_kernels) {
    y << "#   kernel chains: forward " << seconds_text(k.kernels_forward.per_unit)
      << " per kernel, backward " << seconds_text(k.kernels_backward.per_unit) << " per kernel (+ "
      << seconds_text(k.kernels_backward.fixed) << " per backward)\n";
  }
  if (!k.references.empty()) {
    y << "#   in a training step (" << k.references.size()
      << " reference ZeRO-3 runs): each kernel's fixed cost " << shortest(c.step_slowdown.kernels)
      << " times the\n#     chains', the rates 1/" << shortest(c.step_slowdown.rates)
      << " of the calls' alone (step_slowdown); their compute a step,\n#     measured / "
         "predicted:";
    const char* sep = " ";
    const double host = static_cast<double>(c.collective_host_ns) * 1e-9;
    for (const auto& r : k.references) {
      const double predicted =
          r.fixed * c.step_slowdown.kernels + r.rate * c.step_slowdown.rates + host * r.calls;
      y << sep << seconds_text(r.measured) << " / " << seconds_text(predicted);
      sep = ", ";
    }
    y << "\n";
    if (k.references.size() >= 3) {
      const auto& narrow = k.references[0];
      const auto& twin = k.references[2];
      y << "#   a collective call's host time: " << seconds_text(host)
        << " (collective_host_time; the narrow run with the examples' buckets: "
        << shortest(std::round((twin.calls - narrow.calls) * 10) / 10) << " more calls and "
        << seconds_text(twin.measured - narrow.measured) << " more compute a step)\n";
    }
  }
  if (c.hook_overhead_ns > 0) {
    y << "#   the ZeRO-3 engine's hooks: "
      << seconds_text(static_cast<double>(c.hook_overhead_ns) * 1e-9)
      << " each (a 3-block GPT-2 trained with every parameter gathered)\n";
  }
  y << "#   host copy:     " << seconds_text(k.host_copy.fixed) << " + bytes at "
    << rate(k.host_copy.rate(), "B/s") << "\n";
  if (k.has_collectives) {
    y << "#   all-gather and reduce-scatter over " << c.gpus_per_node
      << " ranks: " << seconds_text(k.collectives.fixed) << " + bytes at "
      << rate(k.collectives.rate(), "B/s") << "\n";
    if (c.reduce_scatter_by_all_reduce) {
      y << "#     (Gloo has no reduce-scatter: an all-reduce, twice the time, "
           "reduce_scatter_by_all_reduce)\n";
    }
    if (k.in_step) {
      y << "#     and " << seconds_text(k.step_excess)
        << " more a call for an all-gather after a piece of compute, as a step issues them "
           "(collective_overhead, once a call)\n";
      y << "#   an all-gather beside compute: " << std::llround(100 * k.overlap)
        << "% of the smaller of the two hidden by running both at once\n";
    }
    if (k.cores_filled) {
      y << "#   the ranks' compute threads fill the cores: collectives take turns with compute\n";
    }
    if (k.collectives_poll) {
      y << (*k.collectives_poll
                ? "#   each rank polled in its collectives' waits (zeroplan-exec --wait): "
                  "a run whose ranks sleep there pays more a call\n"
                : "#   each rank slept in its collectives' waits (zeroplan-exec --wait): "
                  "a run whose ranks poll there pays less a call\n");
    }
    if (c.point_to_point) {
      y << "#   send/recv:     " << seconds_text(k.send_recv.fixed) << " + bytes at "
        << rate(k.send_recv.rate(), "B/s");
      if (k.send_recv_in_step) {
        y << " idle, and " << seconds_text(k.send_recv_step_excess)
          << " more for a message after a piece of compute";
      }
      y << " (point_to_point: a pipeline's messages)\n";
    }
  }
  if (k.steal_share) {
    y << "# The host's hypervisor took " << std::llround(100 * *k.steal_share)
      << "% of its CPU time while these were measured (steal time):\n"
         "# the rates above are what was left. 'zeroplan validate' reports the share during its\n"
         "# steps.\n";
  }
  y << "# Use it as a run spec's 'cluster:' value, or with 'zeroplan validate --cluster'.\n";
  y << "cluster:\n";
  y << "  gpu: " << c.gpu << "\n";
  y << "  nodes: " << c.nodes << "\n";
  y << "  gpus_per_node: " << c.gpus_per_node << "\n";
  y << "  gpu_memory: " << c.gpu_memory << "\n";
  y << "  host_memory: " << c.host_memory << "\n";
  y << "  peak_flops: {fp32: " << static_cast<std::int64_t>(c.peak_flops.at("fp32")) << "}\n";
  y << "  hbm_bandwidth: " << static_cast<std::int64_t>(c.hbm_bandwidth) << "\n";
  if (c.elementwise_flops > 0)
    y << "  elementwise_flops: " << static_cast<std::int64_t>(c.elementwise_flops) << "\n";
  if (!c.module_flops.empty()) {
    y << "  module_flops: {";
    const char* sep = "";
    for (const auto& [type, flops] : c.module_flops) {
      y << sep << type << ": " << static_cast<std::int64_t>(flops);
      sep = ", ";
    }
    y << "}\n";
  }
  if (c.step_slowdown != ClusterSpec::StepSlowdown{}) {
    y << "  step_slowdown: {kernels: " << shortest(c.step_slowdown.kernels)
      << ", rates: " << shortest(c.step_slowdown.rates) << "}\n";
  }
  y << "  kernel_launch: " << c.kernel_launch_ns << "ns\n";
  if (c.hook_overhead_ns > 0) y << "  hook_overhead: " << c.hook_overhead_ns << "ns\n";
  y << "  autograd_node: " << c.autograd_node_ns << "ns\n";
  y << "  asynchronous_launch: " << (c.asynchronous_launch ? "true" : "false") << "\n";
  y << "  comm_overlaps_compute: " << (c.comm_overlaps_compute ? "true" : "false") << "\n";
  if (c.reduce_scatter_by_all_reduce) y << "  reduce_scatter_by_all_reduce: true\n";
  if (c.collective_host_ns > 0) y << "  collective_host_time: " << c.collective_host_ns << "ns\n";
  if (c.collective_overhead_ns > 0)
    y << "  collective_overhead: " << c.collective_overhead_ns << "ns\n";
  const auto link = [&](const char* key, const LinkSpec& l) {
    y << "  " << key << ": {bandwidth: " << static_cast<std::int64_t>(l.bandwidth)
      << ", latency: " << l.latency_ns << "ns}\n";
  };
  link("intra_node", c.intra_node);
  link("inter_node", c.inter_node);
  if (c.point_to_point) link("point_to_point", *c.point_to_point);
  y << "  pcie_bandwidth: " << static_cast<std::int64_t>(c.pcie_bandwidth) << "\n";
  y << "  nvme_bandwidth: 0\n";
  y << "  efficiency: {compute: 1, hbm: 1, network: 1}\n";
  return y.str();
}

}  // namespace zp
