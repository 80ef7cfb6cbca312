// The ZeRO-3 parameter coordinator: module by module, which partitioned parameters are gathered
// now (demand), gathered ahead (prefetch) and released, exactly as DeepSpeed's
// PartitionedParameterCoordinator decides. It owns each parameter's ZeRO status and the trace of
// module order; a CoordinatorBackend carries the decisions out (simulated or real) and never
// decides anything itself. No tensors, no time.
//
// Semantics reproduced (docs/zero3.md walks through each with the DeepSpeed source it follows):
//  - trace modes RECORD, COMPLETE and INVALID, the transitions at reset_step, invalidation when a
//    module arrives out of the recorded order;
//  - fetch: the demand gather of the module's NOT_AVAILABLE parameters, unbounded; the wait; in
//    COMPLETE mode, consuming the parameter trace and prefetching while the prefetched elements are
//    below min(max_live_parameters - available, prefetch_bucket_size) (checked before adding, so it
//    overshoots by up to one parameter);
//  - the available-elements counter, which counts gathers and releases through the coordinator
//    only, and so drifts when parameters are released elsewhere;
//  - release: in COMPLETE mode the non-persistent parameters not reused within max_reuse_distance
//    elements of trace and not already prefetched for a later use, cached per (module, step) for
//    the coordinator's lifetime as DeepSpeed's lru_cache does; otherwise every parameter of the
//    module; a parameter used by an enclosing module that is still running stays;
//  - release_and_reset_all at the optimizer step, gathers outside the coordinator (persistent
//    parameters after the step).
// Where DeepSpeed itself would raise, a UserError says so (kind kUnsupported).
//
// Not thread-safe.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <string_view>
#include <utility>
#include <vector>

#include "core/zero/zero_model.h"

namespace zp::zero {

enum class ParamStatus : std::uint8_t { kNotAvailable, kInflight, kAvailable };
enum class TraceMode : std::uint8_t { kRecord, kComplete, kInvalid };
enum class GatherReason : std::uint8_t { kDemand, kPrefetch, kOutside };
enum class ReleaseReason : std::uint8_t { kModule, kReleaseAll, kDrain, kOutside };

std::string_view to_string(TraceMode mode);
std::string_view to_string(GatherReason reason);

using GatherHandle = std::int64_t;

struct GatherRequest {
  GatherHandle handle = 0;
  std::vector<ParamId> params;  // in ds_id order, as DeepSpeed coalesces them
  GatherReason reason = GatherReason::kDemand;
  bool forward = true;
  ModuleId module = kNoModule;  // the module whose fetch asked (kNoModule outside the coordinator)
  std::int64_t numel = 0;
};

// What carries the coordinator's decisions out. Calls arrive in decision order.
class CoordinatorBackend {
 public:
  virtual ~CoordinatorBackend() = default;
  virtual void start_gather(const GatherRequest& request) = 0;
  // The module about to run needs a parameter of this gather: block until it has landed.
  virtual void wait_gather(GatherHandle handle) = 0;
  virtual void release(ParamId param, ReleaseReason reason) = 0;
  // Nothing refers to the gather any more, so its flat buffer is freed. DeepSpeed keeps a gather's
  // handle, and the flat buffer it holds, while any of its parameters is still in the in-flight
  // registry: a prefetch that covers several modules holds its buffer until the last of them is
  // fetched. Comes after wait_gather. Default: nothing to do.
  virtual void drop_gather(GatherHandle /*handle*/) {}
};

class Coordinator {
 public:
  Coordinator(const ZeroModel& model, CoordinatorBackend& backend);

  // Hooks, as DeepSpeedZeRoOffload calls them.
  void start_of_forward();  // the root's first pre-forward hook (resets the step in v0.16)
  // Inline: a simulation runs them for every hook of every step.
  void pre_forward(ModuleId module) {
    trace_prologue(module);
    if (mode_ == TraceMode::kRecord) record_module(module);
    fetch(module, /*forward=*/true);
  }
  void post_forward(ModuleId module) { release_module(module); }
  void pre_backward(ModuleId module) {
    trace_prologue(module);
    if (mode_ == TraceMode::kRecord) record_module(module);
    fetch(module, /*forward=*/false);
  }
  void post_backward(ModuleId module) { release_module(module); }
  // End of backward (stage 3's backward()).
  void reset_step();
  // Start of the optimizer step: every parameter back to its partition.
  void release_and_reset_all();
  // A gather outside the coordinator (param.all_gather): persistent parameters after the step. The
  // counter does not see it.
  void gather_outside(std::span<const ParamId> params);
  // param.partition() outside the coordinator (engine setup). The counter does not see it either.
  void release_outside(ParamId param);

  // Carries this coordinator's state over to another run: `model` must have the same tree and
  // settings, but for the thresholds only the COMPLETE mode reads (max_live_parameters,
  // max_reuse_distance, prefetch_bucket_size), and those only until this coordinator first read
  // them. The planner warms up one run and starts its variants from there.
  void rebind(const ZeroModel& model, CoordinatorBackend& backend);
  // Whether rebind may still change those thresholds: none was read yet. (A warm-up of several
  // micro-steps reads them: its later micro-steps run with the trace complete.)
  bool thresholds_unread() const { return !thresholds_read_; }

  // Indexes the recorded trace for the reuse-distance rule now rather than at the first release
  // that needs it, so that copies of this coordinator share the work. No effect on decisions.
  void index_trace();

  TraceMode mode() const { return mode_; }
  std::int64_t available_numel() const { return n_available_; }
  ParamStatus status(ParamId p) const { return state_[static_cast<size_t>(p)].status; }
  std::int64_t step_id() const { return step_id_; }
  // Elements AVAILABLE or INFLIGHT now: what the counter would be if it were exact.
  std::int64_t live_numel() const;
  const std::vector<ModuleId>& recorded_modules() const { return submodule_order_; }
  // Invalidation messages, in order (DeepSpeed prints them in v0.14 always, in v0.16 with
  // log_trace_cache_warnings).
  const std::vector<std::string>& invalidations() const { return invalidations_; }

 private:
  struct ParamInTrace {
    ParamId param;
    std::int64_t step_id_last_used_at;
  };
  // Modules fetched and not yet released: rarely more than two, so kept inline.
  class ActiveModules {
   public:
    bool empty() const { return size_ == 0; }
    // Once. Nearly always the set is empty or holds just `m` (a parameter fetched by one module at
    // a time): those cases stay inline.
    void add(ModuleId m) {
      if (size_ == 0) {
        inline_[0] = m;
        size_ = 1;
      } else if (!(size_ == 1 && inline_[0] == m)) {
        add_slow(m);
      }
    }
    void remove(ModuleId m) {
      if (size_ == 1 && more_.empty()) {
        if (inline_[0] == m) size_ = 0;
      } else if (size_ != 0) {
        remove_slow(m);
      }
    }
    void clear() {
      size_ = 0;
      more_.clear();
    }

   private:
    void add_slow(ModuleId m);
    void remove_slow(ModuleId m);

    static constexpr std::size_t kInline = 3;
    std::array<ModuleId, kInline> inline_{};
    std::uint8_t size_ = 0;  // in inline_
    std::vector<ModuleId> more_;
  };
  struct ParamState {
    ParamStatus status = ParamStatus::kNotAvailable;
    bool registered = false;          // has an entry in the in-flight registry
    std::int32_t registry_slot = -1;  // where, in inflight_
    ActiveModules active;
  };
  // A gather until it is dropped: its parameters until it lands, and its registry entries.
  struct HandleState {
    std::vector<ParamId> params;
    bool pending = false;  // not yet waited
    std::int32_t registry_entries = 0;
  };

  // Checks that `module` is the one the complete trace expects next; the message, when it is not,
  // is built out of line.
  void trace_prologue(ModuleId module) {
    if (mode_ != TraceMode::kComplete) return;
    if (step_id_ < static_cast<std::int64_t>(submodule_order_.size()) &&
        submodule_order_[static_cast<std::size_t>(step_id_)] == module)
      return;
    trace_mismatch(module);
  }
  void trace_mismatch(ModuleId module);
  void record_module(ModuleId module) {
    ZP_CHECK(mode_ == TraceMode::kRecord, "recording outside RECORD mode");
    submodule_order_.push_back(module);
    for (ReuseIndex& index : reuse_index_)
      index.built = false;
    recorded_step_ids_.push_back(step_id_);
  }
  void fetch(ModuleId module, bool forward);
  void release_module(ModuleId module);
  void all_gather(std::span<const ParamId> params, bool forward, GatherReason reason,
                  ModuleId module);
  void gather_one_outside(ParamId param);
  // A request whose parameter list reuses the storage of a landed gather's (spare_params_).
  GatherRequest new_request(GatherReason reason, bool forward, ModuleId module);
  void wait(ParamId param);
  void land(GatherHandle handle) { land(handle, handle_state(handle)); }
  void land(GatherHandle handle, HandleState& state);
  void release_param(ParamId param, ReleaseReason reason);
  // Valid until the next call.
  std::span<const ParamId> params_to_release(ModuleId module, std::int64_t step_id);
  // For the reuse-distance rule: where in the recorded trace each parameter is used and the
  // elements fetched before each position, with or without recursing into modules.
  struct ReuseIndex {
    bool built = false;
    std::vector<std::int64_t> prefix;  // elements of trace positions [0, i)
    // Per parameter p, increasing positions: uses[first_use[p] .. first_use[p + 1]).
    std::vector<std::int32_t> first_use;
    std::vector<std::int32_t> uses;
  };
  const ReuseIndex& reuse_index(bool recurse);
  void invalidate_trace(ModuleId module, std::string message);
  void clear_trace_structures();
  void drain_inflight();
  [[noreturn]] void deepspeed_fails(const std::string& what) const;

  // model_.fetch_span(m), looked up once per module: hooks ask for it several times each.
  std::span<const ParamId> fetch_params(ModuleId m) const {
    return fetch_of_[static_cast<std::size_t>(m)];
  }

  // Pointers, so that a coordinator's state can be carried over to another run (rebind).
  const ZeroModel* model_;
  CoordinatorBackend* backend_;
  std::vector<std::span<const ParamId>> fetch_of_;
  bool v014_;

  std::vector<ParamState> state_;
  // In-flight registry: parameter -> handle, in insertion order (DeepSpeed drains it in order).
  // A waited entry leaves a hole (kNoParam) rather than shifting the rest; the vector is emptied
  // when the last live entry goes.
  static constexpr ParamId kNoParam = -1;
  std::vector<std::pair<ParamId, GatherHandle>> inflight_;
  std::int64_t inflight_live_ = 0;
  std::vector<HandleState> handles_;  // by handle - handle_base_
  GatherHandle handle_base_ = 0;
  HandleState& handle_state(GatherHandle h) {
    ZP_CHECK(h >= handle_base_ && h - handle_base_ < static_cast<GatherHandle>(handles_.size()),
             "gather ", h, " is not tracked");
    return handles_[static_cast<std::size_t>(h - handle_base_)];
  }
  GatherHandle next_handle_ = 0;

  TraceMode mode_;
  std::int64_t step_id_ = 0;
  std::int64_t n_available_ = 0;
  std::vector<ModuleId> submodule_order_;
  std::vector<ParamInTrace> param_order_;
  // The parameter trace still to consume this step: param_order_[queue_head_..]. (DeepSpeed copies
  // the trace into a deque and pops it; the trace does not change while it is consumed.)
  std::size_t queue_head_ = 0;
  bool queue_empty() const { return queue_head_ >= param_order_.size(); }
  ParamInTrace queue_pop() { return param_order_[queue_head_++]; }
  std::vector<std::int64_t> most_recent_fetch_;  // step at which each was last fetched for
  // The step id at which each entry of submodule_order_ was recorded.
  std::vector<std::int64_t> recorded_step_ids_;
  std::vector<ParamId> scratch_sorted_;  // reset_step's
  // DeepSpeed caches __params_to_release per (module, step) with functools.lru_cache, never
  // invalidated: a result computed in one step is reused in every later step.
  // Indexed by step id; each holds the (rarely more than one) modules released at that step.
  // One entry per slot (step id + 1); a second module released at the same step chains into
  // release_overflow_. The lists live in release_params_.
  struct CachedRelease {
    ModuleId module = kNoModule;
    std::int32_t next = -1;  // in release_overflow_
    std::int32_t begin = 0, end = 0;
  };
  std::vector<CachedRelease> release_cache_;
  std::vector<CachedRelease> release_overflow_;
  std::vector<ParamId> release_params_;
  std::vector<std::string> invalidations_;
  ReuseIndex reuse_index_[2];                // without and with recursion
  std::vector<std::int64_t> prefetch_mark_;  // per parameter: the fetch that last chose it
  std::vector<ParamId> scratch_not_yet_, scratch_discarded_;  // fetch's, kept to reuse capacity
  std::vector<ParamId> scratch_prefetch_;
  // Parameter lists of landed gathers, kept to reuse their capacity for the next gathers.
  std::vector<std::vector<ParamId>> spare_params_;
  std::vector<std::int32_t> scratch_last_use_;                  // reuse_index's
  std::vector<std::pair<ParamId, std::int32_t>> scratch_uses_;  // reuse_index's (param, position)
  std::int64_t fetches_ = 0;
  // The thresholds of COMPLETE mode, and whether they were read yet: what rebind may change.
  std::array<std::int64_t, 3> thresholds_{};
  bool thresholds_read_ = false;
};

}  // namespace zp::zero
