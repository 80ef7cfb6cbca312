// The order in which DeepSpeed's ZeRO-3 hooks fire during one training step, and where each
// parameter's gradient becomes ready, derived from a model's forward call order.
//
// Forward: every call of a hooked module (one with a ZeRO module id) gets its pre-forward hook when
// it starts and its post-forward hook when it returns.
// Backward (autograd runs the graph in reverse):
//  - pre-backward hooks fire in the reverse order of the post-forward hooks, for every call whose
//    output requires grad (its inputs do, or it uses a trainable parameter);
//  - post-backward fires once the backward of a call and of everything it called is done, but only
//    for the last forward call of each module and only if that call's inputs require grad:
//    DeepSpeed resets the module's counter at each forward, so earlier calls never reach zero, and
//    a call whose inputs need no grad has no input to hang the hook on;
//  - a parameter's gradient is ready during the backward of the first forward call that uses it
//    (the last one backward reaches), right after that call's pre-backward hook, parameters of one
//    module in reverse registration order; a z3 leaf's parameters all become ready together, in id
//    order, at the end of the backward of the leaf's last forward call, as DeepSpeed's leaf hooks
//    reduce them.
//
// Pure function of the tree and the ZeRO model; see docs/zero3.md for the evidence from real runs.
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

#include "core/zero/zero_model.h"

namespace zp::zero {

enum class StepEventKind : std::uint8_t {
  kPreForward,
  kPostForward,
  kPreBackward,
  kPostBackward,
  kGradReady,
};

std::string_view to_string(StepEventKind kind);

struct StepEvent {
  StepEventKind kind;
  ModuleId module = kNoModule;  // hooks: the module; kGradReady: the module whose backward it is in
  std::int32_t call = kNoCall;  // index into the tree's calls
  ParamId param = -1;           // kGradReady only
  // A forward hook of activation checkpointing's recomputation, during backward.
  bool recompute = false;
  bool operator==(const StepEvent&) const = default;
};

// Calls that activation checkpointing runs again in backward: the calls [first_call, end_call)
// of one checkpointed segment (its layers' calls and every call nested in them).
struct RecomputeRange {
  std::int32_t first_call = 0;
  std::int32_t end_call = 0;
  bool operator==(const RecomputeRange&) const = default;
};

struct StepSchedule {
  std::vector<StepEvent> forward;
  std::vector<StepEvent> backward;
};

// Throws UserError where DeepSpeed itself would refuse the model (a z3 leaf whose inputs need no
// grad but whose output does).
//
// With activation checkpointing, a segment's forward runs without keeping its graph, and when
// backward reaches the segment (just before its first backward event) CheckpointFunction runs the
// segment's forward again, with grad: the segment's forward hooks fire a second time, marked
// `recompute`, and then its backward hooks as they would without checkpointing. A segment that
// backward never reaches is not recomputed. Ranges must not overlap (InternalError otherwise).
StepSchedule training_step_schedule(const ZeroModel& model,
                                    const std::vector<RecomputeRange>& recompute = {});

}  // namespace zp::zero
