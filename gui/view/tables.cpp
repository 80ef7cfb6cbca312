#include "gui/view/tables.h"

#include <algorithm>
#include <map>
#include <unordered_map>
#include <utility>

namespace zp::gui {

using trace::OpKind;

namespace {
bool is_collective(const trace::Op& op) {
  switch (op.kind) {
    case OpKind::kForward:
    case OpKind::kBackward:
    case OpKind::kRecompute:
    case OpKind::kOptimizerStep:
      return false;
    default:
      return true;
  }
}
bool wanted(const trace::Op& op, std::int32_t rank) {
  return rank == kAllRanks || op.rank == rank;
}
}  // namespace

std::vector<CollectiveRow> collective_rows(const trace::Trace& trace, std::int32_t rank) {
  std::map<std::pair<OpKind, std::int32_t>, CollectiveRow> rows;
  for (const trace::Op& op : trace.ops) {
    if (!wanted(op, rank) || !is_collective(op)) continue;
    CollectiveRow& row = rows[{op.kind, op.group}];
    row.kind = op.kind;
    row.group = op.group;
    ++row.count;
    row.bytes += op.bytes;
    row.time_ns += op.end - op.start;
  }
  std::vector<CollectiveRow> out;
  out.reserve(rows.size());
  for (auto& [key, row] : rows) {
    if (row.group >= 0 && static_cast<std::size_t>(row.group) < trace.groups.size()) {
      const trace::GroupInfo& g = trace.groups[static_cast<std::size_t>(row.group)];
      row.group_label = g.axis + " (" + std::to_string(g.size) + ")";
    } else {
      row.group_label = "-";
    }
    out.push_back(std::move(row));
  }
  return out;
}

std::vector<ModuleRow> module_rows(const trace::Trace& trace, std::int32_t rank) {
  std::vector<ModuleRow> out;
  std::unordered_map<std::int32_t, std::size_t> by_name;
  for (const trace::Op& op : trace.ops) {
    if (!wanted(op, rank)) continue;
    if (op.kind != OpKind::kForward && op.kind != OpKind::kBackward &&
        op.kind != OpKind::kRecompute)
      continue;
    auto [it, added] = by_name.try_emplace(op.name, out.size());
    if (added) {
      ModuleRow row;
      row.name = op.name >= 0 ? trace.string(op.name) : "(unnamed)";
      out.push_back(std::move(row));
    }
    ModuleRow& row = out[it->second];
    if (op.kind == OpKind::kForward) ++row.forward;
    if (op.kind == OpKind::kBackward) ++row.backward;
    if (op.kind == OpKind::kRecompute) ++row.recompute;
    row.time_ns += op.end - op.start;
    row.flops += op.flops;
  }
  return out;
}

namespace {
template <class Row, class Key>
void sort_by(std::vector<Row>& rows, bool ascending, Key key) {
  std::stable_sort(rows.begin(), rows.end(), [&](const Row& a, const Row& b) {
    return ascending ? key(a) < key(b) : key(b) < key(a);
  });
}
}  // namespace

void sort_rows(std::vector<CollectiveRow>& rows, CollectiveColumn column, bool ascending) {
  switch (column) {
    case CollectiveColumn::kKind:
      sort_by(rows, ascending, [](const CollectiveRow& r) { return r.kind; });
      break;
    case CollectiveColumn::kGroup:
      sort_by(rows, ascending, [](const CollectiveRow& r) { return r.group_label; });
      break;
    case CollectiveColumn::kCount:
      sort_by(rows, ascending, [](const CollectiveRow& r) { return r.count; });
      break;
    case CollectiveColumn::kBytes:
      sort_by(rows, ascending, [](const CollectiveRow& r) { return r.bytes; });
      break;
    case CollectiveColumn::kTime:
      sort_by(rows, ascending, [](const CollectiveRow& r) { return r.time_ns; });
      break;
  }
}

void sort_rows(std::vector<ModuleRow>& rows, ModuleColumn column, bool ascending) {
  switch (column) {
    case ModuleColumn::kName:
      sort_by(rows, ascending, [](const ModuleRow& r) { return r.name; });
      break;
    case ModuleColumn::kForward:
      sort_by(rows, ascending, [](const ModuleRow& r) { return r.forward; });
      break;
    case ModuleColumn::kBackward:
      sort_by(rows, ascending, [](const ModuleRow& r) { return r.backward; });
      break;
    case ModuleColumn::kRecompute:
      sort_by(rows, ascending, [](const ModuleRow& r) { return r.recompute; });
      break;
    case ModuleColumn::kTime:
      sort_by(rows, ascending, [](const ModuleRow& r) { return r.time_ns; });
      break;
    case ModuleColumn::kFlops:
      sort_by(rows, ascending, [](const ModuleRow& r) { return r.flops; });
      break;
  }
}

CollectiveRow collective_total(const std::vector<CollectiveRow>& rows) {
  CollectiveRow total;
  total.group_label = "total";
  for (const CollectiveRow& r : rows) {
    total.count += r.count;
    total.bytes += r.bytes;
    total.time_ns += r.time_ns;
  }
  return total;
}

ModuleRow module_total(const std::vector<ModuleRow>& rows) {
  ModuleRow total;
  total.name = "total";
  for (const ModuleRow& r : rows) {
    total.forward += r.forward;
    total.backward += r.backward;
    total.recompute += r.recompute;
    total.time_ns += r.time_ns;
    total.flops += r.flops;
  }
  return total;
}

}  // namespace zp::gui
