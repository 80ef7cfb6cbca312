// The space the tuner searches: for each knob, the values worth simulating, derived from the run's
// model so that values DeepSpeed would act on identically are simulated once.
//
// A threshold compared with parameter sizes (persistence, module granularity) has one class per
// distinct size in the model, not one per integer; a threshold compared with running sums of
// sizes (prefetch bucket, live parameters, reuse distance, reduce bucket) is searched on a
// geometric grid from the largest parameter up to the whole model, since every value at or above
// the model's size acts alike. Every dimension lists its values from least memory to most; which
// of memory and time move one way along it is what lets the search prune.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "core/config/run_spec.h"
#include "planner/knobs.h"

namespace zp::planner {

struct Dimension {
  const Knob* knob = nullptr;
  // Counts in elements; booleans 0/1; offload devices as OffloadDevice.
  std::vector<std::int64_t> values;
  // Persistence only: the stage3_model_persistence_threshold paired with each value, since the two
  // thresholds together decide one set of persistent parameters.
  std::vector<std::int64_t> model_caps;
  // Along the values, allocated memory rises (memory_monotone) and the step gets no slower
  // (time_monotone), up to the slack the search allows for.
  bool memory_monotone = true;
  bool time_monotone = true;
  // Choices that are names (the pipeline partition method): values index into names. The run's
  // own comes first, so that its index is the user's value.
  std::vector<std::string> names;
  std::string derivation;       // how the values were chosen, for the report
  std::int64_t considered = 0;  // values looked at before equivalent ones were merged

  std::string label(std::size_t i) const;
  std::size_t size() const { return values.size(); }
};

struct SpaceOptions {
  std::map<std::string, std::string> pins;                            // knob -> value as written
  std::map<std::string, std::pair<std::string, std::string>> ranges;  // knob -> [low, high]
  double grid_ratio = 4.0;                                            // step of the geometric grids
  // Also search the layout: the micro-batch, with gradient accumulation at the fixed global batch.
  // A pin or range of micro_batch or gradient_accumulation searches it too.
  bool search_layout = false;
};

struct SearchSpace {
  // Those monotone in neither first, then those monotone in memory only, then in both: the
  // search bounds a node by its free dimensions.
  std::vector<Dimension> dims;
  double size() const;  // configurations, before pruning
  const Dimension* find(std::string_view knob) const;
};

// Index into each dimension's values.
using Candidate = std::vector<std::int32_t>;

// Throws UserError (naming the knob and the value) for an unknown knob, a value it cannot take, a
// range that leaves nothing, and for a layout DeepSpeed cannot run (a pipeline with ZeRO-2 or 3).
// ZeRO-3 runs search the stage3 thresholds; runs of stages 0 to 2 search what those stages have
// (gradient buckets, overlap, optimizer offload, checkpointing) and, for stages 0 and 1, with the
// layout, the pipeline's depth and partition method.
SearchSpace build_search_space(const RunSpec& run, const SpaceOptions& options);

// Sets the run's DeepSpeed config (and, without a pipeline, the run spec's checkpoint interval)
// to the candidate's values. A micro-batch other than the run's rebuilds the model tree for it
// (see set_micro_batch); the other knobs cost nothing to apply.
void apply(const SearchSpace& space, const Candidate& candidate, RunSpec& run);

// The run with another layout at the same global batch and the same ranks: the pipeline depth (and
// so the data-parallel degree, and where the checkpoint interval is read), DeepSpeed's micro-batch
// and gradient accumulation steps, the training shape, and the model's costs for that shape.
// `micro_batch` must divide the samples each data-parallel rank then takes per step.
void set_layout(RunSpec& run, std::int64_t pipeline, std::int64_t micro_batch);
void set_micro_batch(RunSpec& run, std::int64_t micro_batch);
// The samples each data-parallel rank takes per step of the run's global batch with `pipeline`
// stages: a micro-batch must divide it, and gradient accumulation makes up the rest.
std::int64_t samples_per_rank(const RunSpec& run, std::int64_t pipeline);
// Whether set_layout may take these values for this run.
bool layout_fits(const RunSpec& run, std::int64_t pipeline, std::int64_t micro_batch);

// The run's own value of a knob (what the user's config sets, or DeepSpeed's default).
std::int64_t current_value(const RunSpec& run, const Knob& knob);

// The candidate's value of one knob, as DeepSpeed would read it ("5e8" is written 500000000).
std::string describe(const SearchSpace& space, const Candidate& candidate);

// Parses a knob value as a user writes it: counts ("5e8", "500000000", "1G" is not a count),
// booleans (true/false/on/off), offload devices (none/cpu/nvme). Throws UserError.
std::int64_t parse_knob_value(const Knob& knob, const std::string& text);

}  // namespace zp::planner
