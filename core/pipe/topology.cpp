#include "core/pipe/topology.h"

#include <algorithm>
#include <limits>

#include "core/pipe/partition.h"
#include "core/util/error.h"

namespace zp::pipe {
namespace {

std::string axes_str(const std::vector<std::string>& axes) {
  std::string out = "[";
  for (size_t i = 0; i < axes.size(); ++i)
    out += (i ? ", " : "") + axes[i];
  return out + "]";
}

}  // namespace

ProcessTopology::ProcessTopology(std::vector<std::string> axes, std::vector<std::int64_t> dims)
    : axes_(std::move(axes)), dims_(std::move(dims)) {
  if (axes_.empty() || axes_.size() != dims_.size()) {
    throw UserError(ErrorKind::kValue, {},
                    detail::concat("a process topology needs one size per axis, got ", axes_.size(),
                                   " axes and ", dims_.size(), " sizes"));
  }
  for (size_t i = 0; i < axes_.size(); ++i) {
    if (axes_[i].empty() || std::count(axes_.begin(), axes_.end(), axes_[i]) > 1) {
      throw UserError(ErrorKind::kValue, {},
                      detail::concat("process topology axes ", axes_str(axes_),
                                     " must be distinct, non-empty names"));
    }
    if (dims_[i] < 1) {
      throw UserError(ErrorKind::kValue, {},
                      detail::concat("process topology axis '", axes_[i], "' has size ", dims_[i],
                                     "; sizes must be at least 1"));
    }
  }
  strides_.assign(dims_.size(), 1);
  for (size_t i = dims_.size(); i-- > 0;) {
    strides_[i] = world_size_;
    if (world_size_ > std::numeric_limits<std::int32_t>::max() / dims_[i]) {
      throw UserError(ErrorKind::kValue, {}, "the process topology has more than 2^31 ranks");
    }
    world_size_ *= dims_[i];
  }
}

std::int64_t ProcessTopology::axis_index(std::string_view axis) const {
  const auto it = std::find(axes_.begin(), axes_.end(), axis);
  return it == axes_.end() ? -1 : static_cast<std::int64_t>(it - axes_.begin());
}

std::int64_t ProcessTopology::required_axis(std::string_view axis) const {
  const std::int64_t i = axis_index(axis);
  if (i < 0) {
    throw UserError(ErrorKind::kValue, {},
                    detail::concat("the process topology has no axis '", axis, "' (axes ",
                                   axes_str(axes_), ")"));
  }
  return i;
}

std::int64_t ProcessTopology::get_dim(std::string_view axis) const {
  const std::int64_t i = axis_index(axis);
  return i < 0 ? 0 : dims_[static_cast<size_t>(i)];
}

std::int64_t ProcessTopology::get_rank(const std::vector<std::int64_t>& coord) const {
  if (coord.size() != axes_.size()) {
    throw UserError(ErrorKind::kValue, {},
                    detail::concat("a coordinate of the process topology ", axes_str(axes_),
                                   " needs ", axes_.size(), " values, got ", coord.size()));
  }
  std::int64_t rank = 0;
  for (size_t i = 0; i < coord.size(); ++i) {
    if (coord[i] < 0 || coord[i] >= dims_[i]) {
      throw UserError(ErrorKind::kValue, {},
                      detail::concat("coordinate ", axes_[i], "=", coord[i],
                                     " is outside the process topology (size ", dims_[i], ")"));
    }
    rank += coord[i] * strides_[i];
  }
  return rank;
}

std::int64_t ProcessTopology::get_rank(const std::vector<AxisValue>& coord) const {
  std::vector<std::int64_t> values(axes_.size(), 0);
  std::vector<bool> given(axes_.size(), false);
  for (const auto& [axis, value] : coord) {
    const auto i = static_cast<size_t>(required_axis(axis));
    if (given[i]) {
      throw UserError(ErrorKind::kValue, {},
                      detail::concat("axis '", axis, "' is given twice in a coordinate"));
    }
    given[i] = true;
    values[i] = value;
  }
  if (coord.size() != axes_.size()) {
    // DeepSpeed: get_rank() does not support slices; filter_match does.
    throw UserError(ErrorKind::kValue, {},
                    detail::concat("a rank needs a value for every axis of ", axes_str(axes_),
                                   "; use filter_match for a slice"));
  }
  return get_rank(values);
}

std::vector<std::int64_t> ProcessTopology::get_coord(std::int64_t rank) const {
  if (rank < 0 || rank >= world_size_) {
    throw UserError(ErrorKind::kValue, {},
                    detail::concat("rank ", rank, " is not in the process topology (world size ",
                                   world_size_, ")"));
  }
  std::vector<std::int64_t> coord(axes_.size());
  for (size_t i = 0; i < axes_.size(); ++i)
    coord[i] = rank / strides_[i] % dims_[i];
  return coord;
}

std::int64_t ProcessTopology::get_coord(std::int64_t rank, std::string_view axis) const {
  return get_coord(rank)[static_cast<size_t>(required_axis(axis))];
}

std::vector<std::int64_t> ProcessTopology::filter_match(
    const std::vector<AxisValue>& criteria) const {
  std::vector<std::pair<size_t, std::int64_t>> wanted;
  for (const auto& [axis, value] : criteria) {
    wanted.emplace_back(static_cast<size_t>(required_axis(axis)), value);
  }
  std::vector<std::int64_t> ranks;
  for (std::int64_t r = 0; r < world_size_; ++r) {
    const std::vector<std::int64_t> c = get_coord(r);
    if (std::all_of(wanted.begin(), wanted.end(),
                    [&](const auto& w) { return c[w.first] == w.second; })) {
      ranks.push_back(r);
    }
  }
  return ranks;
}

std::vector<std::int64_t> ProcessTopology::get_axis_list(std::string_view axis,
                                                         std::int64_t index) const {
  return filter_match({{std::string(axis), index}});
}

std::vector<std::vector<std::int64_t>> ProcessTopology::get_axis_comm_lists(
    std::string_view axis) const {
  const std::int64_t a = axis_index(axis);
  if (a < 0) return {};
  const auto ai = static_cast<size_t>(a);
  // Ranks with coordinate 0 on `axis` come in row-major order of the other axes, which is the order
  // DeepSpeed enumerates them in; each communicator then steps along `axis`.
  std::vector<std::vector<std::int64_t>> lists;
  for (std::int64_t r = 0; r < world_size_; ++r) {
    if (get_coord(r)[ai] != 0) continue;
    std::vector<std::int64_t> list;
    for (std::int64_t k = 0; k < dims_[ai]; ++k)
      list.push_back(r + k * strides_[ai]);
    lists.push_back(std::move(list));
  }
  return lists;
}

ProcessTopology pipe_data_parallel_topology(std::int64_t num_pp, std::int64_t num_dp) {
  return ProcessTopology({"pipe", "data"}, {num_pp, num_dp});
}

ProcessTopology pipe_model_data_parallel_topology(std::int64_t num_pp, std::int64_t num_mp,
                                                  std::int64_t num_dp) {
  return ProcessTopology({"pipe", "data", "model"}, {num_pp, num_dp, num_mp});
}

ProcessTopology pipe_module_topology(std::int64_t num_stages, std::int64_t world_size) {
  if (num_stages < 1 || world_size < 1 || world_size % num_stages != 0) {
    throw UserError(ErrorKind::kConflict, {},
                    detail::concat("num_stages (", num_stages,
                                   ") must divide distributed world size (", world_size, ")"));
  }
  return pipe_data_parallel_topology(num_stages, world_size / num_stages);
}

PipelineGrid::PipelineGrid(ProcessTopology topology) : topo_(std::move(topology)) {
  for (const std::string& axis : topo_.axes()) {
    if (axis != "pipe" && axis != "data" && axis != "model") {
      throw UserError(ErrorKind::kUnsupported, {},
                      detail::concat("pipeline grid axis '", axis,
                                     "' is not modelled; use pipe, data and model"));
    }
  }
  if (!topo_.has_axis("pipe") || !topo_.has_axis("data")) {
    throw UserError(ErrorKind::kValue, {},
                    "a pipeline grid needs a 'pipe' and a 'data' axis in its process topology");
  }
  pipe_size_ = std::max<std::int64_t>(topo_.get_dim("pipe"), 1);
  data_size_ = std::max<std::int64_t>(topo_.get_dim("data"), 1);
  model_size_ = std::max<std::int64_t>(topo_.get_dim("model"), 1);
}

std::int64_t PipelineGrid::stage_id(std::int64_t rank) const {
  return topo_.get_coord(rank, "pipe");
}

std::int64_t PipelineGrid::data_parallel_id(std::int64_t rank) const {
  return topo_.get_coord(rank, "data");
}

std::int64_t PipelineGrid::slice_parallel_rank(std::int64_t rank) const {
  return topo_.has_axis("model") ? topo_.get_coord(rank, "model") : 0;
}

namespace {
// The list among `lists` that holds `rank`.
std::vector<std::int64_t> list_holding(const std::vector<std::vector<std::int64_t>>& lists,
                                       std::int64_t rank) {
  for (const auto& l : lists) {
    if (std::find(l.begin(), l.end(), rank) != l.end()) return l;
  }
  ZP_CHECK(false, "rank ", rank, " is in no communicator");
  return {};
}
}  // namespace

std::vector<std::int64_t> PipelineGrid::data_parallel_group(std::int64_t rank) const {
  topo_.get_coord(rank);  // range check
  return list_holding(topo_.get_axis_comm_lists("data"), rank);
}

std::vector<std::int64_t> PipelineGrid::pipe_parallel_group(std::int64_t rank) const {
  topo_.get_coord(rank);
  return list_holding(topo_.get_axis_comm_lists("pipe"), rank);
}

std::vector<std::int64_t> PipelineGrid::model_parallel_group(std::int64_t rank) const {
  // Already increasing; DeepSpeed sorts it anyway.
  return topo_.get_axis_list("data", data_parallel_id(rank));
}

std::int64_t PipelineGrid::model_parallel_rank(std::int64_t rank) const {
  const std::vector<std::int64_t> group = model_parallel_group(rank);
  return static_cast<std::int64_t>(std::find(group.begin(), group.end(), rank) - group.begin());
}

std::vector<std::int64_t> PipelineGrid::slice_parallel_group(std::int64_t rank) const {
  topo_.get_coord(rank);
  // DeepSpeed short-cuts a model size of 1 (even with a "model" axis) to one-rank groups.
  if (model_size_ == 1) return {rank};
  return list_holding(topo_.get_axis_comm_lists("model"), rank);
}

std::vector<std::array<std::int64_t, 2>> PipelineGrid::p2p_groups() const {
  std::vector<std::array<std::int64_t, 2>> out;
  for (std::int64_t r = 0; r < world_size(); ++r) {
    out.push_back({r, stage_to_global_from(r, (stage_id(r) + 1) % pipe_size_)});
  }
  return out;
}

std::int64_t PipelineGrid::stage_to_global(std::int64_t stage, std::int64_t data,
                                           std::int64_t model) const {
  std::vector<AxisValue> coord = {{"pipe", stage}, {"data", data}};
  if (topo_.has_axis("model")) {
    coord.emplace_back("model", model);
  } else if (model != 0) {
    throw UserError(ErrorKind::kValue, {},
                    detail::concat("model-parallel index ", model,
                                   " given for a topology without a 'model' axis"));
  }
  return topo_.get_rank(coord);
}

std::int64_t PipelineGrid::stage_to_global_from(std::int64_t rank, std::int64_t stage) const {
  return stage_to_global(stage, data_parallel_id(rank), slice_parallel_rank(rank));
}

std::vector<TiedGroup> tied_groups(const PipelineLayers& layers,
                                   const std::vector<std::int64_t>& boundaries,
                                   const PipelineGrid& grid) {
  const auto num_layers = static_cast<std::int64_t>(layers.layers.size());
  if (static_cast<std::int64_t>(boundaries.size()) != grid.pipe_parallel_size() + 1 ||
      boundaries.front() != 0 || boundaries.back() != num_layers) {
    throw UserError(
        ErrorKind::kConflict, {},
        detail::concat(boundaries.size(), " partition boundaries ending at ",
                       boundaries.empty() ? 0 : boundaries.back(), " do not fit ",
                       grid.pipe_parallel_size(), " stages of ", num_layers, " layers"));
  }
  std::vector<TiedGroup> out;
  if (grid.topology().get_dim("pipe") == 1) return out;
  for (const std::string& key : layers.tied_keys()) {
    TiedGroup g;
    g.key = key;
    for (std::int64_t i = 0; i < num_layers; ++i) {
      const Layer& l = layers.layers[static_cast<size_t>(i)];
      if (l.tied_key != key) continue;
      if (g.layers.empty()) g.weight_attr = l.tied_weight_attr;
      g.layers.push_back(i);
      g.stages.push_back(stage_owner(boundaries, i));
    }
    std::sort(g.stages.begin(), g.stages.end());
    g.stages.erase(std::unique(g.stages.begin(), g.stages.end()), g.stages.end());
    for (std::int64_t dp = 0; dp < grid.data_parallel_size(); ++dp) {
      for (std::int64_t mp = 0; mp < grid.slice_parallel_size(); ++mp) {
        TiedGroup::Comm comm{dp, mp, {}};
        for (std::int64_t s : g.stages)
          comm.ranks.push_back(grid.stage_to_global(s, dp, mp));
        g.comms.push_back(std::move(comm));
      }
    }
    out.push_back(std::move(g));
  }
  return out;
}

}  // namespace zp::pipe
