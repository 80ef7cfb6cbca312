// What `zeroplan tune` hands back: the tuned ds_config.json, the plan file that `zeroplan exec`
// and `zeroplan simulate` take, the report a person reads, the Pareto plot and the --json object.
//
// Everything here is a pure function of a finished search (knob_effects() and predicted_trace()
// excepted: they run the simulator); none of it writes files.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "core/config/document.h"
#include "core/config/run_spec.h"
#include "core/trace/trace.h"
#include "planner/search.h"
#include "planner/search_space.h"

namespace zp::planner {

// What one knob of the chosen configuration does on its own: the chosen configuration with that
// knob alone put back to the user's value, simulated.
struct KnobEffect {
  std::size_t dim = 0;              // index into SearchSpace::dims
  std::int64_t user_value = 0;      // current_value() of the knob
  std::int64_t user_model_cap = 0;  // persistence only: the user's model persistence threshold
  Evaluation with_user_value;
};

// Everything one tune produced, as the outputs need it.
struct TuneOutcome {
  const RunSpec* run = nullptr;  // the run as the user wrote it
  SearchSpace space;
  SearchOptions options;
  SearchResult result;
  std::optional<Evaluation> baseline;  // the user's own config, simulated the same way
  std::vector<KnobEffect> effects;     // knob_effects() of the chosen configuration
};

// One simulation per knob whose chosen value differs from the user's: the chosen configuration
// with that knob back at the user's value. Knobs the user's value cannot be applied for are left
// out. Simulates one configuration at a time.
std::vector<KnobEffect> knob_effects(const RunSpec& run, const SearchSpace& space,
                                     const Candidate& chosen, bool model_allocator);

// The simulator's trace of one configuration of the space (what `zeroplan simulate --trace` writes
// for it), for the viewer to open beside the front. Runs the simulator.
trace::Trace predicted_trace(const RunSpec& run, const SearchSpace& space,
                             const Candidate& candidate, bool model_allocator);

// The user's DeepSpeed config with the tuned knobs set, under DeepSpeed's canonical keys (the
// stage3_* spellings; an alias or a deprecated key the user wrote for a tuned key is removed),
// every other key kept as written. The offload devices are written as {"device": ...} with the
// user's other offload keys kept. The checkpoint interval of a run without a pipeline is the run
// spec's training.checkpoint_interval, not a DeepSpeed key, and is left out.
Json tuned_deepspeed_config(const RunSpec& run, const SearchSpace& space,
                            const Candidate& candidate);

// The plan for outcome.result.best (which must be set): the user's run spec with the tuned
// DeepSpeed config inline (and the tuned run-spec settings), plus a `plan` section with the chosen
// values and the prediction. It loads as a run spec (load_run_spec ignores `plan`), so
// `zeroplan simulate` and `zeroplan exec` take it as is. Relative paths in the run spec (a model
// file) are rewritten to stay valid from `plan_dir`.
std::string plan_yaml(const TuneOutcome& outcome, const std::filesystem::path& plan_dir);

// The report: the chosen values with the reason for each and what each costs in memory and saves
// in time and traffic against the user's value, the runners-up, the search's figures
// (configurations, simulations, pruned and why, collapsed values), and, when nothing fits, what
// would be needed.
std::string tune_report(const TuneOutcome& outcome);

// One line for when nothing meets the budgets: the least memory found against the budget (or the
// fastest step against the time budget). Empty when a configuration was chosen.
std::string missing_summary(const TuneOutcome& outcome);

// The Pareto front of memory against step time as a self-contained SVG plot, the chosen point and
// the user's configuration marked and the memory budget drawn.
std::string pareto_svg(const TuneOutcome& outcome);

// --json: the chosen values, predicted peak and step time (and the user's), configurations
// evaluated and pruned, search time, whether it was interrupted, the Pareto front.
Json tune_json(const TuneOutcome& outcome);

// A Json tree as YAML (block style) that Document::from_yaml reads back to the same tree: strings
// that would read as another type are quoted. Top-level keys in `order` come first.
std::string to_yaml(const Json& value, const std::vector<std::string>& order = {});

}  // namespace zp::planner
