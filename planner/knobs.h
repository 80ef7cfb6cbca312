// The settings the planner searches, each tied to the key that carries it: in the DeepSpeed config
// (canonical spelling, the one written to the tuned ds_config.json) or in the run spec (layout).
#pragma once

#include <string_view>
#include <vector>

namespace zp::planner {

enum class KnobKind { kCount, kBoolean, kChoice };
enum class KnobHome { kDeepSpeed, kRunSpec };

struct Knob {
  std::string_view name;  // the planner's name, used by --pin and --range
  KnobHome home;
  std::string_view key;  // dotted key path in the DeepSpeed config or the run spec
  KnobKind kind;
  std::string_view trade;  // what raising it buys and costs
};

// Every knob, grouped: ZeRO-3 thresholds, gradients, checkpointing, offload, layout.
const std::vector<Knob>& knobs();
const Knob* find_knob(std::string_view name);

}  // namespace zp::planner
