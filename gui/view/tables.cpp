#include "gui/view/tables.h"

#include <algorithm>
#include <map>
#include <string_view>
#include <unordered_map>
#include <utility>

namespace zp::gui {

using trace::OpKind;

namespace {
bool is_collective(const trace::Op& op) {
  return trace::is_transfer(op.kind);
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
  // By string index, then by text: a string table may list one name twice.
  std::vector<std::int32_t> row_of_string(trace.strings.size(), -1);
  std::unordered_map<std::string_view, std::int32_t> row_of_text;
  std::int32_t unnamed = -1;
  const auto row_for = [&](std::int32_t name) -> ModuleRow& {
    const bool named = name >= 0 && static_cast<std::size_t>(name) < trace.strings.size();
    std::int32_t& row = named ? row_of_string[static_cast<std::size_t>(name)] : unnamed;
    if (row < 0) {
      const std::string_view text =
          named ? std::string_view(trace.string(name)) : std::string_view("(unnamed)");
      const auto [it, added] = row_of_text.try_emplace(text, static_cast<std::int32_t>(out.size()));
      if (added) {
        ModuleRow r;
        r.name = std::string(text);
        out.push_back(std::move(r));
      }
      row = it->second;
    }
    return out[static_cast<std::size_t>(row)];
  };
  for (const trace::Op& op : trace.ops) {
    if (!wanted(op, rank)) continue;
    switch (op.kind) {
      case OpKind::kForward:
      case OpKind::kBackward:
      case OpKind::kRecompute: {
        ModuleRow& row = row_for(op.name);
        if (op.kind == OpKind::kForward) ++row.forward;
        if (op.kind == OpKind::kBackward) ++row.backward;
        if (op.kind == OpKind::kRecompute) ++row.recompute;
        row.time_ns += op.end - op.start;
        row.flops += op.flops;
        break;
      }
      case OpKind::kAllGather:
      case OpKind::kAllReduce:
        // A gradient all-reduce or a tensor-parallel one names no module.
        if (op.module != trace::kNone) {
          ModuleRow& row = row_for(op.module);
          ++row.fetches;
          row.gathered_bytes += op.bytes;
        }
        break;
      case OpKind::kRelease:
        if (op.module != trace::kNone) ++row_for(op.module).releases;
        break;
      default:
        break;
    }
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
    case ModuleColumn::kFetches:
      sort_by(rows, ascending, [](const ModuleRow& r) { return r.fetches; });
      break;
    case ModuleColumn::kReleases:
      sort_by(rows, ascending, [](const ModuleRow& r) { return r.releases; });
      break;
    case ModuleColumn::kGatheredBytes:
      sort_by(rows, ascending, [](const ModuleRow& r) { return r.gathered_bytes; });
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
    total.fetches += r.fetches;
    total.releases += r.releases;
    total.gathered_bytes += r.gathered_bytes;
    total.time_ns += r.time_ns;
    total.flops += r.flops;
  }
  return total;
}

}  // namespace zp::gui
