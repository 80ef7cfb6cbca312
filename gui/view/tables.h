// The tables view's data: collectives and modules aggregated over a trace, sortable, with totals.
// No ImGui or OpenGL.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/trace/trace.h"

namespace zp::gui {

// All ranks: kAllRanks; else one rank class.
inline constexpr std::int32_t kAllRanks = -1;

// One row per (kind, group) of the collectives and copies (ops with bytes or a group).
struct CollectiveRow {
  trace::OpKind kind = trace::OpKind::kAllGather;
  std::int32_t group = trace::kNone;  // index into Trace::groups, or kNone
  std::string group_label;            // "data (8)", or "-" without a group
  std::int64_t count = 0;
  std::int64_t bytes = 0;
  std::int64_t time_ns = 0;  // summed durations
};
// Sorted by kind, then group.
std::vector<CollectiveRow> collective_rows(const trace::Trace& trace, std::int32_t rank);

// One row per module: the names of the compute ops (forward, backward, recompute) and the
// modules that parameter gathers and releases name (Op::module). Names are compared as text.
struct ModuleRow {
  std::string name;
  std::int64_t forward = 0;  // ops of each kind
  std::int64_t backward = 0;
  std::int64_t recompute = 0;
  std::int64_t fetches = 0;         // parameter gathers the module's fetch issued (all-gathers, or
                                    // all-reduces with use_all_reduce_for_fetch_params)
  std::int64_t releases = 0;        // releases of the module's own parameters
  std::int64_t gathered_bytes = 0;  // the bytes of those gathers
  std::int64_t time_ns = 0;         // compute time
  std::int64_t flops = 0;
};
// In order of first appearance in the trace.
std::vector<ModuleRow> module_rows(const trace::Trace& trace, std::int32_t rank);

// The columns in the order the viewer shows them (its sort specs give the column's index).
enum class CollectiveColumn { kKind, kGroup, kCount, kBytes, kTime };
enum class ModuleColumn {
  kName,
  kForward,
  kBackward,
  kRecompute,
  kFetches,
  kReleases,
  kGatheredBytes,
  kTime,
  kFlops
};

// Stable sorts, so rows equal in the column keep their previous order.
void sort_rows(std::vector<CollectiveRow>& rows, CollectiveColumn column, bool ascending);
void sort_rows(std::vector<ModuleRow>& rows, ModuleColumn column, bool ascending);

CollectiveRow collective_total(const std::vector<CollectiveRow>& rows);
ModuleRow module_total(const std::vector<ModuleRow>& rows);

}  // namespace zp::gui
