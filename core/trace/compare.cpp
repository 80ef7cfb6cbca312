#include "core/trace/compare.h"
#include "core/util/median.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <optional>
#include <tuple>

#include "core/util/error.h"

namespace zp::trace {

namespace {

Figure figure(std::int64_t predicted, std::int64_t measured, std::int64_t reference,
              double tolerance) {
  Figure f{predicted, measured, 0, true};
  if (predicted != measured) {
    f.error = reference != 0
                  ? static_cast<double>(predicted - measured) / static_cast<double>(reference)
                  : (predicted > measured ? 1.0 : -1.0);
  }
  // A tolerance of 0 asks for the exact figure, which a relative error could round away.
  f.ok = tolerance == 0 ? predicted == measured : std::abs(f.error) <= tolerance;
  return f;
}

bool is_compute(OpKind kind) {
  return kind == OpKind::kForward || kind == OpKind::kBackward || kind == OpKind::kRecompute ||
         kind == OpKind::kOptimizerStep;
}

// The coordinator's own ops: parameter gathers and gradient reductions (the all-reduce path runs
// on the reduce stream; a pipeline's tied-weight all-reduce does not).
bool is_decision(const Op& op) {
  return op.kind == OpKind::kAllGather || op.kind == OpKind::kReduceScatter ||
         (op.kind == OpKind::kAllReduce && op.stream == StreamKind::kReduceScatter);
}

// The predicted rank class that stands for `global_rank`, or -1.
std::int32_t class_of(const Trace& trace, std::int64_t global_rank) {
  for (std::size_t r = 0; r < trace.ranks.size(); ++r) {
    const auto& ranks = trace.ranks[r].ranks;
    if (std::find(ranks.begin(), ranks.end(), global_rank) != ranks.end())
      return static_cast<std::int32_t>(r);
  }
  return -1;
}

std::int64_t step_count(const Trace& trace) {
  std::int64_t steps = 0;
  for (const Op& op : trace.ops)
    steps = std::max<std::int64_t>(steps, op.step + 1);
  return steps;
}

// Each step's duration on `rank`: from its "step N" marker to the next step's, the last step to
// the end of its last op. A step without a marker starts at its first op.
std::vector<TimeNs> step_durations(const Trace& trace, std::int32_t rank, std::int64_t steps) {
  std::vector<TimeNs> start(static_cast<std::size_t>(steps), 0);
  std::vector<bool> marked(static_cast<std::size_t>(steps), false);
  std::vector<TimeNs> first(static_cast<std::size_t>(steps), 0);
  std::vector<TimeNs> last(static_cast<std::size_t>(steps), 0);
  std::vector<bool> seen(static_cast<std::size_t>(steps), false);
  for (const Op& op : trace.ops) {
    if (op.rank != rank || op.step >= steps) continue;
    const auto s = static_cast<std::size_t>(op.step);
    first[s] = seen[s] ? std::min(first[s], op.start) : op.start;
    last[s] = seen[s] ? std::max(last[s], op.end) : op.end;
    seen[s] = true;
  }
  for (const Marker& m : trace.markers) {
    if ((m.rank != rank && m.rank != kNone) || m.name == kNone) continue;
    const std::string& text = trace.string(m.name);
    if (text.rfind("step ", 0) != 0) continue;
    char* end = nullptr;
    const long long s = std::strtoll(text.c_str() + 5, &end, 10);
    if (end == text.c_str() + 5 || *end != '\0' || s < 0 || s >= steps) continue;
    start[static_cast<std::size_t>(s)] = m.time;
    marked[static_cast<std::size_t>(s)] = true;
  }
  std::vector<TimeNs> out(static_cast<std::size_t>(steps), 0);
  for (std::size_t s = 0; s < out.size(); ++s) {
    const TimeNs begin = marked[s] ? start[s] : first[s];
    const TimeNs end = s + 1 < out.size() && marked[s + 1] ? start[s + 1] : last[s];
    out[s] = std::max<TimeNs>(0, end - begin);
  }
  return out;
}

std::string describe(const Trace& trace, const Op* op) {
  if (op == nullptr) return "nothing";
  std::string text(to_string(op->kind));
  text += " '" + (op->name == kNone ? std::string() : trace.string(op->name)) + "' ";
  text += std::to_string(op->bytes) + " B";
  return text;
}

// The decision ops of one rank and step on one stream (gathers, or gradient reductions), in the
// order they were issued. The two streams are compared apart: how a reduction interleaves with
// the gathers around it is timing, not a decision.
std::vector<const Op*> decisions(const Trace& trace, std::int32_t rank, std::int32_t step,
                                 bool gathers) {
  std::vector<const Op*> out;
  for (const Op& op : trace.ops) {
    if (op.rank != rank || op.step != step || !is_decision(op)) continue;
    if ((op.kind == OpKind::kAllGather) == gathers) out.push_back(&op);
  }
  std::stable_sort(out.begin(), out.end(),
                   [](const Op* a, const Op* b) { return a->start < b->start; });
  return out;
}

std::string name_of(const Trace& trace, const Op& op,
                    const std::map<std::string, std::string>& aliases) {
  if (op.name == kNone) return std::string(to_string(op.kind));
  const std::string& name = trace.string(op.name);
  const auto it = aliases.find(name);
  return it == aliases.end() ? name : it->second;
}

// The median of the steady-state steps: a step that a shared machine's other work stretched
// moves a mean by its whole excess, a median not.
TimeNs steady_median(std::vector<TimeNs> steps, std::int64_t steady_from) {
  steps.erase(steps.begin(), steps.begin() + steady_from);
  return median(std::move(steps));
}

// ns per steady-state step of each (module, kind) of compute. With `stage`, every op is that
// stage's ("stage S") and recomputation is backward's.
std::map<std::pair<std::string, OpKind>, std::int64_t> module_times(
    const Trace& trace, std::int32_t rank, std::int64_t steady_from, std::int64_t steps,
    const std::map<std::string, std::string>& aliases,
    std::optional<std::int32_t> stage = std::nullopt) {
  std::map<std::pair<std::string, OpKind>, std::int64_t> out;
  for (const Op& op : trace.ops) {
    if (op.rank != rank || op.step < steady_from || op.step >= steps) continue;
    if (op.kind != OpKind::kForward && op.kind != OpKind::kBackward &&
        op.kind != OpKind::kRecompute)
      continue;
    if (stage)
      out[{"stage " + std::to_string(*stage),
           op.kind == OpKind::kRecompute ? OpKind::kBackward : op.kind}] += op.end - op.start;
    else
      out[{name_of(trace, op, aliases), op.kind}] += op.end - op.start;
  }
  for (auto& [key, ns] : out)
    ns /= steps - steady_from;
  return out;
}

std::int64_t compute_time(const Trace& trace, std::int32_t rank, std::int64_t steady_from,
                          std::int64_t steps) {
  std::int64_t ns = 0;
  for (const Op& op : trace.ops)
    if (op.rank == rank && op.step >= steady_from && op.step < steps && is_compute(op.kind))
      ns += op.end - op.start;
  return ns / (steps - steady_from);
}

Json figure_json(const Figure& f, bool with_ok = true) {
  Json j{{"predicted", f.predicted}, {"measured", f.measured}, {"error", f.error}};
  if (with_ok) j["ok"] = f.ok;
  return j;
}

}  // namespace

PeakMemory peak_memory(const Trace& trace, std::int32_t rank) {
  std::vector<const MemorySample*> samples;
  for (const MemorySample& m : trace.memory)
    if (m.rank == rank) samples.push_back(&m);
  std::stable_sort(samples.begin(), samples.end(),
                   [](const MemorySample* a, const MemorySample* b) { return a->time < b->time; });
  PeakMemory peak;
  std::array<std::int64_t, kMemoryCategoryCount> now{};
  std::array<std::int64_t, kMemoryCategoryCount> host_peak{};
  std::int64_t device = 0;
  bool first = true;
  for (const MemorySample* m : samples) {
    const auto c = static_cast<std::size_t>(m->category);
    if (!on_device(m->category)) {
      now[c] = m->bytes;
      host_peak[c] = std::max(host_peak[c], m->bytes);
      continue;
    }
    device += m->bytes - now[c];
    now[c] = m->bytes;
    // Each sample is a change in the order it happened: evaluated one by one, as the allocator
    // that took them saw them.
    if (first || device > peak.allocated) {
      peak.allocated = device;
      peak.time = m->time;
      peak.bytes = now;
      first = false;
    }
  }
  for (std::size_t c = 0; c < kMemoryCategoryCount; ++c)
    if (!on_device(static_cast<MemoryCategory>(c))) peak.bytes[c] = host_peak[c];
  return peak;
}

bool Comparison::memory_ok() const {
  for (const RankComparison& r : ranks) {
    if (!r.peak.ok) return false;
    for (const CategoryFigure& c : r.categories)
      if (!c.figure.ok) return false;
  }
  return true;
}

bool Comparison::collectives_ok() const {
  for (const RankComparison& r : ranks)
    for (const CollectiveFigure& c : r.collectives)
      if (!c.count.ok || !c.bytes.ok) return false;
  return true;
}

bool Comparison::decisions_ok() const {
  for (const RankComparison& r : ranks)
    if (r.decisions && !r.decisions->ok) return false;
  return true;
}

bool Comparison::time_ok() const {
  if (!time_judged) return true;
  for (const RankComparison& r : ranks)
    if (!r.step_time.ok) return false;
  return true;
}

bool Comparison::host_quiet() const {
  return !host_steal || *host_steal <= targets.quiet_host_steal;
}

bool Comparison::within_targets() const {
  return memory_ok() && collectives_ok() && decisions_ok() && time_ok();
}

Comparison compare_traces(const Trace& predicted, const Trace& measured,
                          const CompareOptions& options) {
  Comparison out;
  out.targets = options.targets;
  out.time_judged = options.judge_time;
  out.steps = std::min(step_count(predicted), step_count(measured));
  if (out.steps == 0) {
    throw UserError(ErrorKind::kConflict, SourceLocation{},
                    "the traces have no step in common (predicted " +
                        std::to_string(step_count(predicted)) + ", measured " +
                        std::to_string(step_count(measured)) + ")");
  }
  // The first step warms up (demand fetches in ZeRO-3's trace mode, lazy initialisation in a real
  // run): time counts from the second when there is one.
  out.steady_from = out.steps > 1 ? 1 : 0;
  if (const auto steal = measured.metadata.find("host_steal_share");
      steal != measured.metadata.end() && steal->is_number())
    out.host_steal = steal->get<double>();

  for (std::size_t m = 0; m < measured.ranks.size(); ++m) {
    const auto mrank = static_cast<std::int32_t>(m);
    ZP_CHECK(!measured.ranks[m].ranks.empty(), "measured rank ", m, " stands for no rank");
    RankComparison rc;
    rc.global_rank = measured.ranks[m].ranks.front();
    const std::int32_t prank = class_of(predicted, rc.global_rank);
    if (prank < 0) {
      throw UserError(ErrorKind::kConflict, SourceLocation{},
                      "the prediction has no rank " + std::to_string(rc.global_rank) +
                          " (it predicts " + std::to_string(predicted.ranks.size()) +
                          " rank class(es)); were both traces taken of the same run?");
    }
    rc.predicted_label = predicted.ranks[static_cast<std::size_t>(prank)].label;

    // Memory.
    const PeakMemory p = peak_memory(predicted, prank);
    const PeakMemory q = peak_memory(measured, mrank);
    rc.peak = figure(p.allocated, q.allocated, q.allocated, options.targets.peak);
    for (std::size_t c = 0; c < kMemoryCategoryCount; ++c) {
      if (p.bytes[c] == 0 && q.bytes[c] == 0) continue;
      rc.categories.push_back(
          CategoryFigure{static_cast<MemoryCategory>(c),
                         figure(p.bytes[c], q.bytes[c], q.allocated, options.targets.category)});
    }

    // Collectives, by kind, over the compared steps.
    std::map<OpKind, std::pair<Figure, Figure>> totals;
    for (const auto& [trace, rank, is_predicted] :
         {std::tuple{&predicted, prank, true}, std::tuple{&measured, mrank, false}}) {
      for (const Op& op : trace->ops) {
        if (op.rank != rank || op.step >= out.steps || !is_transfer(op.kind)) continue;
        auto& [count, bytes] = totals[op.kind];
        (is_predicted ? count.predicted : count.measured) += 1;
        (is_predicted ? bytes.predicted : bytes.measured) += op.bytes;
      }
    }
    for (const auto& [kind, t] : totals) {
      rc.collectives.push_back(
          CollectiveFigure{kind, figure(t.first.predicted, t.first.measured, t.first.measured, 0),
                           figure(t.second.predicted, t.second.measured, t.second.measured, 0)});
    }

    // Decisions.
    DecisionFigure d;
    bool any = false;
    for (std::int32_t s = 0; s < out.steps; ++s) {
      for (const bool gathers : {true, false}) {
        const std::vector<const Op*> a = decisions(predicted, prank, s, gathers);
        const std::vector<const Op*> b = decisions(measured, mrank, s, gathers);
        any |= !a.empty() || !b.empty();
        d.compared += static_cast<std::int64_t>(a.size());
        for (std::size_t i = 0; i < std::max(a.size(), b.size()); ++i) {
          const Op* x = i < a.size() ? a[i] : nullptr;
          const Op* y = i < b.size() ? b[i] : nullptr;
          const bool same = x && y && x->kind == y->kind && x->bytes == y->bytes &&
                            name_of(predicted, *x, {}) == name_of(measured, *y, {});
          if (same) continue;
          if (d.mismatches == 0) {
            d.first_mismatch = "step " + std::to_string(s) + ", " +
                               (gathers ? "gather " : "reduction ") + std::to_string(i) +
                               ": predicted " + describe(predicted, x) + ", measured " +
                               describe(measured, y);
          }
          ++d.mismatches;
        }
      }
    }
    d.ok = d.mismatches == 0;
    if (any) rc.decisions = d;

    // Time.
    const std::vector<TimeNs> pt = step_durations(predicted, prank, out.steps);
    const std::vector<TimeNs> mt = step_durations(measured, mrank, out.steps);
    for (std::size_t s = 0; s < pt.size(); ++s)
      rc.step_times.push_back(figure(pt[s], mt[s], mt[s], options.targets.step_time));
    const TimeNs pmid = steady_median(pt, out.steady_from);
    const TimeNs mmid = steady_median(mt, out.steady_from);
    rc.step_time = figure(pmid, mmid, mmid, options.targets.step_time);
    const std::int64_t pc = compute_time(predicted, prank, out.steady_from, out.steps);
    const std::int64_t mc = compute_time(measured, mrank, out.steady_from, out.steps);
    rc.compute_time = figure(pc, mc, mc, options.targets.step_time);
    auto pm = module_times(
        predicted, prank, out.steady_from, out.steps, {},
        options.modules_as_stages
            ? std::optional(predicted.ranks[static_cast<std::size_t>(prank)].pipeline_stage)
            : std::nullopt);
    const auto mm =
        module_times(measured, mrank, out.steady_from, out.steps, options.measured_aliases);
    for (const auto& [key, ns] : mm)
      pm.try_emplace(key, 0);
    for (const auto& [key, ns] : pm) {
      const auto it = mm.find(key);
      const std::int64_t measured_ns = it == mm.end() ? 0 : it->second;
      rc.modules.push_back(
          ModuleTime{key.first, key.second, figure(ns, measured_ns, measured_ns, 0)});
      rc.modules.back().time.ok = true;  // per-module times are reported, not judged
    }
    std::stable_sort(rc.modules.begin(), rc.modules.end(),
                     [](const ModuleTime& a, const ModuleTime& b) {
                       return std::max(a.time.measured, a.time.predicted) >
                              std::max(b.time.measured, b.time.predicted);
                     });
    out.ranks.push_back(std::move(rc));
  }
  std::sort(out.ranks.begin(), out.ranks.end(),
            [](const RankComparison& a, const RankComparison& b) {
              return a.global_rank < b.global_rank;
            });
  return out;
}

Json comparison_to_json(const Comparison& c) {
  Json j;
  j["within_targets"] = c.within_targets();
  j["verdicts"] = {{"memory", c.memory_ok()},
                   {"collectives", c.collectives_ok()},
                   {"decisions", c.decisions_ok()},
                   {"time", c.time_ok()},
                   {"time_judged", c.time_judged}};
  j["targets"] = {
      {"peak", c.targets.peak},           {"category", c.targets.category},
      {"step_time", c.targets.step_time}, {"collectives", "exact"},
      {"decisions", "identical"},         {"quiet_host_steal", c.targets.quiet_host_steal}};
  j["host_steal_share"] = c.host_steal ? Json(*c.host_steal) : Json();
  j["host_quiet"] = c.host_quiet();
  j["steps"] = c.steps;
  j["steady_from"] = c.steady_from;
  j["ranks"] = Json::array();
  for (const RankComparison& r : c.ranks) {
    Json rj;
    rj["rank"] = r.global_rank;
    rj["predicted_by"] = r.predicted_label;
    rj["peak_bytes"] = figure_json(r.peak);
    rj["categories"] = Json::object();
    for (const CategoryFigure& cat : r.categories)
      rj["categories"][std::string(to_string(cat.category))] = figure_json(cat.figure);
    rj["collectives"] = Json::object();
    for (const CollectiveFigure& col : r.collectives) {
      rj["collectives"][std::string(to_string(col.kind))] = {{"count", figure_json(col.count)},
                                                             {"bytes", figure_json(col.bytes)}};
    }
    if (r.decisions) {
      rj["decisions"] = {{"compared", r.decisions->compared},
                         {"mismatches", r.decisions->mismatches},
                         {"ok", r.decisions->ok}};
      if (!r.decisions->first_mismatch.empty())
        rj["decisions"]["first_mismatch"] = r.decisions->first_mismatch;
    } else {
      rj["decisions"] = nullptr;
    }
    rj["step_time_ns"] = figure_json(r.step_time, c.time_judged);
    rj["compute_time_ns"] = figure_json(r.compute_time, false);
    rj["steps_ns"] = Json::array();
    for (const Figure& s : r.step_times)
      rj["steps_ns"].push_back(figure_json(s, false));
    rj["modules_ns"] = Json::array();
    for (const ModuleTime& m : r.modules) {
      Json mj = figure_json(m.time, false);
      mj["module"] = m.module;
      mj["kind"] = std::string(to_string(m.kind));
      rj["modules_ns"].push_back(mj);
    }
    j["ranks"].push_back(rj);
  }
  return j;
}

}  // namespace zp::trace
