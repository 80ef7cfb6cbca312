// Where each rank sits in a pipeline-, data- and model-parallel job: DeepSpeed's ProcessTopology,
// PipeDataParallelTopology, PipeModelDataParallelTopology and PipelineParallelGrid
// (deepspeed/runtime/pipe/topology.py), and the tied-weight groups of PipelineModule.
//
// Rules, as in DeepSpeed:
//  - Ranks are numbered row-major over the axes in the order given: the last axis varies fastest.
//    PipeDataParallelTopology is axes {pipe, data}; PipeModelDataParallelTopology is
//    {pipe, data, model}, so model-parallel peers are adjacent ranks and pipeline stages are
//    furthest apart.
//  - A communicator along an axis holds the ranks whose coordinates agree on every other axis, in
//    increasing coordinate along the axis; the communicators come in row-major order of the other
//    axes' coordinates.
//  - A missing axis has size 0 in the topology and 1 in the grid.
//
// Plain values; const access is safe from many threads.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/pipe/layers.h"

namespace zp::pipe {

// One coordinate by axis name: {"pipe", 1}.
using AxisValue = std::pair<std::string, std::int64_t>;

class ProcessTopology {
 public:
  // UserError when the lengths differ, there are no axes, a name is empty or repeated, or a size
  // is below 1.
  ProcessTopology(std::vector<std::string> axes, std::vector<std::int64_t> dims);

  const std::vector<std::string>& axes() const { return axes_; }
  const std::vector<std::int64_t>& dims() const { return dims_; }
  bool has_axis(std::string_view axis) const { return axis_index(axis) >= 0; }
  // The size along `axis`; 0 when there is no such axis.
  std::int64_t get_dim(std::string_view axis) const;
  std::int64_t world_size() const { return world_size_; }

  // The rank at a full coordinate (one value per axis, in axis order). UserError when the
  // coordinate has the wrong length or a value is out of range.
  std::int64_t get_rank(const std::vector<std::int64_t>& coord) const;
  // The same, by name; every axis exactly once, in any order.
  std::int64_t get_rank(const std::vector<AxisValue>& coord) const;
  // The coordinate of `rank`, in axis order. UserError when the rank is out of range.
  std::vector<std::int64_t> get_coord(std::int64_t rank) const;
  // One coordinate of `rank`. UserError for an unknown axis.
  std::int64_t get_coord(std::int64_t rank, std::string_view axis) const;

  // Ranks whose coordinates equal every given value, in increasing order. UserError for an
  // unknown axis; a value out of range matches nothing.
  std::vector<std::int64_t> filter_match(const std::vector<AxisValue>& criteria) const;
  // Ranks whose coordinate along `axis` is `index`, in increasing order.
  std::vector<std::int64_t> get_axis_list(std::string_view axis, std::int64_t index) const;
  // The communicators along `axis` (see the rules above); empty for an unknown axis.
  std::vector<std::vector<std::int64_t>> get_axis_comm_lists(std::string_view axis) const;

  bool operator==(const ProcessTopology&) const = default;

 private:
  std::int64_t axis_index(std::string_view axis) const;  // -1 when absent
  std::int64_t required_axis(std::string_view axis) const;

  std::vector<std::string> axes_;
  std::vector<std::int64_t> dims_;
  std::vector<std::int64_t> strides_;  // rank = sum(coord[i] * strides_[i])
  std::int64_t world_size_ = 1;
};

// Axes {pipe, data}, sizes {num_pp, num_dp}.
ProcessTopology pipe_data_parallel_topology(std::int64_t num_pp, std::int64_t num_dp);
// Axes {pipe, data, model}, sizes {num_pp, num_dp, num_mp}; note the argument order is DeepSpeed's.
ProcessTopology pipe_model_data_parallel_topology(std::int64_t num_pp, std::int64_t num_mp,
                                                  std::int64_t num_dp);
// What PipelineModule(num_stages=...) builds without a topology: {pipe, data} with
// world_size / num_stages pipelines. UserError unless num_stages divides world_size.
ProcessTopology pipe_module_topology(std::int64_t num_stages, std::int64_t world_size);

// PipelineParallelGrid without the process groups: the groups each rank belongs to.
class PipelineGrid {
 public:
  // UserError unless the topology has a "pipe" and a "data" axis and no axis other than
  // "model" (DeepSpeed reads .pipe and .data of every coordinate; other axes are not modelled).
  explicit PipelineGrid(ProcessTopology topology);

  const ProcessTopology& topology() const { return topo_; }
  std::int64_t world_size() const { return topo_.world_size(); }
  std::int64_t pipe_parallel_size() const { return pipe_size_; }
  std::int64_t data_parallel_size() const { return data_size_; }
  // Megatron-style tensor slicing ("model" axis); 1 without one.
  std::int64_t slice_parallel_size() const { return model_size_; }

  std::int64_t stage_id(std::int64_t rank) const;
  std::int64_t data_parallel_id(std::int64_t rank) const;
  std::int64_t slice_parallel_rank(std::int64_t rank) const;  // 0 without a model axis
  bool is_first_stage(std::int64_t rank) const { return stage_id(rank) == 0; }
  bool is_last_stage(std::int64_t rank) const { return stage_id(rank) == pipe_size_ - 1; }

  // Same stage and slice, every pipeline: where gradients are all-reduced (dp_group).
  std::vector<std::int64_t> data_parallel_group(std::int64_t rank) const;
  // Same pipeline and slice, every stage (pp_group).
  std::vector<std::int64_t> pipe_parallel_group(std::int64_t rank) const;
  // Same pipeline, every stage and slice (ds_model_proc_group: where DeepSpeed checks overflow
  // and sums gradient norms), and the rank's index in it (get_model_parallel_rank).
  std::vector<std::int64_t> model_parallel_group(std::int64_t rank) const;
  std::int64_t model_parallel_rank(std::int64_t rank) const;
  // Same stage and pipeline, every slice; just {rank} without tensor slicing (slice_group).
  std::vector<std::int64_t> slice_parallel_group(std::int64_t rank) const;
  // {rank, the rank of the next stage in its pipeline}, wrapping from the last stage to the first;
  // one entry per rank, in rank order (p2p_groups).
  std::vector<std::array<std::int64_t, 2>> p2p_groups() const;

  // The rank of `stage` in pipeline `data` and slice `model` (stage_to_global with data and model
  // given). UserError when a value is out of range, or `model` is not 0 without a model axis.
  std::int64_t stage_to_global(std::int64_t stage, std::int64_t data, std::int64_t model = 0) const;
  // The rank of `stage` in the pipeline and slice of `rank` (stage_to_global as the rank calls it).
  std::int64_t stage_to_global_from(std::int64_t rank, std::int64_t stage) const;

 private:
  ProcessTopology topo_;
  std::int64_t pipe_size_ = 1;
  std::int64_t data_size_ = 1;
  std::int64_t model_size_ = 1;
};

// A tied module (TiedLayerSpec key) and the groups that all-reduce its weight's gradient.
struct TiedGroup {
  std::string key;
  std::string weight_attr;           // of the key's first layer, as DeepSpeed records it
  std::vector<std::int64_t> layers;  // layers sharing the key
  std::vector<std::int64_t> stages;  // stages holding a copy, increasing
  struct Comm {
    std::int64_t data = 0;
    std::int64_t model = 0;
    // stage_to_global(s, data, model) for each s in stages. The first rank's copy is the one the
    // FP16 optimizer counts; the others are marked ds_pipe_replicated.
    std::vector<std::int64_t> ranks;
  };
  std::vector<Comm> comms;  // data outer, model inner
};

// DeepSpeed's _index_tied_modules: for each tied key (in order of first appearance), the stages
// that own one of its layers and one communicator per (data, model) coordinate. Empty when the
// pipeline has one stage. A key held by a single stage still gets its one-rank communicators, as in
// DeepSpeed. UserError when the boundaries do not match the layers or the grid's stage count.
std::vector<TiedGroup> tied_groups(const PipelineLayers& layers,
                                   const std::vector<std::int64_t>& boundaries,
                                   const PipelineGrid& grid);

}  // namespace zp::pipe
