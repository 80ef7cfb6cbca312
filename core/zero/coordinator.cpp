#include "core/zero/coordinator.h"

#include <algorithm>

namespace zp::zero {

std::string_view to_string(TraceMode mode) {
  switch (mode) {
    case TraceMode::kRecord:
      return "record";
    case TraceMode::kComplete:
      return "complete";
    case TraceMode::kInvalid:
      return "invalid";
  }
  return "?";
}

std::string_view to_string(GatherReason reason) {
  switch (reason) {
    case GatherReason::kDemand:
      return "demand";
    case GatherReason::kPrefetch:
      return "prefetch";
    case GatherReason::kOutside:
      return "other";
  }
  return "?";
}

namespace {
// DeepSpeed's default for a parameter never fetched: int(-1e10).
constexpr std::int64_t kNeverFetched = -10'000'000'000;

void sort_longer_by_ds_id(const ZeroModel& model, std::vector<ParamId>& params) {
  const auto by_ds_id = [&](ParamId a, ParamId b) {
    return model.param(a).ds_id < model.param(b).ds_id;
  };
  if (!std::is_sorted(params.begin(), params.end(), by_ds_id))
    std::sort(params.begin(), params.end(), by_ds_id);
}

// In ds_id order, as DeepSpeed coalesces them. Lists mostly come in that order already.
inline void sort_by_ds_id(const ZeroModel& model, std::vector<ParamId>& params) {
  // Most gathers are of one parameter: no call for them.
  if (params.size() >= 2) sort_longer_by_ds_id(model, params);
}
}  // namespace

Coordinator::Coordinator(const ZeroModel& model, CoordinatorBackend& backend)
    : model_(&model),
      backend_(&backend),
      v014_(model.settings().version == DeepSpeedVersion::kV0_14),
      state_(model.tree().parameters().size()),
      mode_(v014_ ? TraceMode::kRecord : TraceMode::kInvalid),
      most_recent_fetch_(model.tree().parameters().size(), kNeverFetched),
      prefetch_mark_(model.tree().parameters().size(), -1) {
  rebind(model, backend);
}

namespace {
std::array<std::int64_t, 3> complete_mode_thresholds(const ZeroSettings& z) {
  return {z.max_live_parameters, z.max_reuse_distance, z.prefetch_bucket_size};
}
}  // namespace

void Coordinator::rebind(const ZeroModel& model, CoordinatorBackend& backend) {
  ZP_CHECK(model.tree().parameters().size() == state_.size(),
           "a coordinator rebound to a model of another tree");
  ZP_CHECK(v014_ == (model.settings().version == DeepSpeedVersion::kV0_14),
           "a coordinator rebound to another DeepSpeed version");
  const std::array<std::int64_t, 3> thresholds = complete_mode_thresholds(model.settings());
  ZP_CHECK(!thresholds_read_ || thresholds == thresholds_,
           "a coordinator rebound to other thresholds after it read its own");
  model_ = &model;
  backend_ = &backend;
  thresholds_ = thresholds;
  fetch_of_.clear();
  fetch_of_.reserve(model.tree().modules().size());
  for (std::size_t m = 0; m < model.tree().modules().size(); ++m)
    fetch_of_.push_back(model.fetch_span(static_cast<ModuleId>(m)));
}

void Coordinator::deepspeed_fails(const std::string& what) const {
  throw UserError(ErrorKind::kUnsupported, {},
                  "DeepSpeed " + std::string(to_string(model_->settings().version)) +
                      " would stop here: " + what);
}

std::int64_t Coordinator::live_numel() const {
  std::int64_t n = 0;
  for (size_t p = 0; p < state_.size(); ++p) {
    if (state_[p].status != ParamStatus::kNotAvailable)
      n += model_->param(static_cast<ParamId>(p)).numel;
  }
  return n;
}

// --- Hooks ------------------------------------------------------------------------------------

void Coordinator::start_of_forward() {
  // v0.16 registers a forward pre-hook on the root that resets the step before every forward;
  // v0.14 resets only at the end of backward.
  if (!v014_) reset_step();
}

// --- Trace ------------------------------------------------------------------------------------

void Coordinator::trace_mismatch(ModuleId module) {
  const auto ds_id = model_->module_ds_id(module);
  if (static_cast<std::int64_t>(submodule_order_.size()) <= step_id_) {
    invalidate_trace(module, "Invalidate trace cache @ step " + std::to_string(step_id_) +
                                 " and module " + std::to_string(ds_id) + ": cache has only " +
                                 std::to_string(submodule_order_.size()) + " modules");
    return;
  }
  const ModuleId expected = submodule_order_[static_cast<size_t>(step_id_)];
  if (expected != module) {
    invalidate_trace(module, "Invalidate trace cache @ step " + std::to_string(step_id_) +
                                 ": expected module " +
                                 std::to_string(model_->module_ds_id(expected)) +
                                 ", but got module " + std::to_string(ds_id));
  }
}

void Coordinator::invalidate_trace(ModuleId, std::string message) {
  ZP_CHECK(mode_ != TraceMode::kInvalid, "attempted to invalidate an already invalid trace");
  invalidations_.push_back(std::move(message));
  mode_ = TraceMode::kInvalid;
  clear_trace_structures();
  if (!v014_) drain_inflight();
}

void Coordinator::ActiveModules::add_slow(ModuleId m) {
  for (std::uint8_t i = 0; i < size_; ++i) {
    if (inline_[i] == m) return;
  }
  if (std::find(more_.begin(), more_.end(), m) != more_.end()) return;
  if (size_ < kInline) {
    inline_[size_++] = m;
  } else {
    more_.push_back(m);
  }
}

void Coordinator::ActiveModules::remove_slow(ModuleId m) {
  more_.erase(std::remove(more_.begin(), more_.end(), m), more_.end());
  std::uint8_t kept = 0;
  for (std::uint8_t i = 0; i < size_; ++i) {
    if (inline_[i] != m) inline_[kept++] = inline_[i];
  }
  size_ = kept;
  // Keep the inline slots full while any spill over, so empty() needs only size_.
  while (size_ < kInline && !more_.empty()) {
    inline_[size_++] = more_.back();
    more_.pop_back();
  }
}

void Coordinator::clear_trace_structures() {
  submodule_order_.clear();
  recorded_step_ids_.clear();
  for (ReuseIndex& index : reuse_index_)
    index.built = false;
  param_order_.clear();
  std::fill(most_recent_fetch_.begin(), most_recent_fetch_.end(), kNeverFetched);
  queue_head_ = 0;
}

void Coordinator::reset_step() {
  if (v014_) {
    if (inflight_live_ > 0) {
      deepspeed_fails(
          "reset_step found " + std::to_string(inflight_live_) +
          " parameter(s) still in flight (the trace prefetched parameters this step never used)");
    }
  } else {
    drain_inflight();
  }
  if (mode_ != TraceMode::kComplete) {
    if (mode_ == TraceMode::kRecord) {
      // construct_parameter_trace_from_module_trace
      param_order_.clear();
      ZP_CHECK(recorded_step_ids_.size() == submodule_order_.size(),
               "modules recorded without their step ids");
      // A module's k-th entry takes the k-th step id recorded for it: the one recorded with it.
      for (std::size_t i = 0; i < submodule_order_.size(); ++i) {
        const ModuleId m = submodule_order_[i];
        const std::int64_t step = recorded_step_ids_[i];
        const std::span<const ParamId> fetched = fetch_params(m);
        if (fetched.size() < 2) {  // nothing to sort
          for (ParamId p : fetched)
            param_order_.push_back({p, step});
          continue;
        }
        std::vector<ParamId>& params = scratch_sorted_;
        params.assign(fetched.begin(), fetched.end());
        sort_by_ds_id(*model_, params);
        for (ParamId p : params)
          param_order_.push_back({p, step});
      }
      mode_ = TraceMode::kComplete;
    } else {
      mode_ = TraceMode::kRecord;
    }
  }
  queue_head_ = 0;
  std::fill(most_recent_fetch_.begin(), most_recent_fetch_.end(), kNeverFetched);
  recorded_step_ids_.clear();
  step_id_ = 0;
  // Gathers that have landed and left the registry are done with: forget them, so that the
  // handles kept do not grow with the steps.
  const bool all_done = std::all_of(handles_.begin(), handles_.end(), [](const HandleState& h) {
    return !h.pending && h.registry_entries == 0;
  });
  if (all_done) {
    handle_base_ = next_handle_;
    handles_.clear();
  }
  if (v014_) n_available_ = 0;
}

// --- Fetch ------------------------------------------------------------------------------------

void Coordinator::fetch(ModuleId module, bool forward) {
  const std::span<const ParamId> params = fetch_params(module);
  bool any_partitioned = false;
  for (ParamId p : params) {
    if (status(p) == ParamStatus::kNotAvailable && model_->param(p).shape.partition_numel > 0)
      any_partitioned = true;
  }
  if (any_partitioned) all_gather(params, forward, GatherReason::kDemand, module);

  for (ParamId p : params) {
    ParamState& s = state_[static_cast<size_t>(p)];
    s.active.add(module);
    wait(p);
    ZP_CHECK(s.status == ParamStatus::kAvailable, "parameter ", model_->param(p).ds_id,
             " is not available after its wait");
  }

  if (mode_ == TraceMode::kComplete) {
    // Pop this module's parameters off the trace, unless a prefetch already did. (Sets of a
    // module's few parameters: sorted vectors.)
    std::vector<ParamId>& not_yet = scratch_not_yet_;
    not_yet.clear();
    for (ParamId p : params) {
      if (most_recent_fetch_[static_cast<size_t>(p)] < step_id_) not_yet.push_back(p);
    }
    if (not_yet.size() > 1) {  // most modules have one parameter
      std::sort(not_yet.begin(), not_yet.end());
      not_yet.erase(std::unique(not_yet.begin(), not_yet.end()), not_yet.end());
    }
    bool traced = not_yet.empty();
    if (not_yet.size() == 1) {
      // The common case: one parameter, popped alone.
      if (!queue_empty()) {
        const ParamInTrace next = queue_pop();
        most_recent_fetch_[static_cast<size_t>(next.param)] = next.step_id_last_used_at;
        traced = next.param == not_yet.front();
      }
    } else if (!not_yet.empty()) {
      std::vector<ParamId>& discarded = scratch_discarded_;
      discarded.clear();
      while (!queue_empty() && discarded.size() < not_yet.size()) {
        const ParamInTrace next = queue_pop();
        most_recent_fetch_[static_cast<size_t>(next.param)] = next.step_id_last_used_at;
        const auto at = std::lower_bound(discarded.begin(), discarded.end(), next.param);
        if (at == discarded.end() || *at != next.param) discarded.insert(at, next.param);
      }
      traced = discarded == not_yet;
    }
    if (!traced) {
      deepspeed_fails("tracing error at step " + std::to_string(step_id_) +
                      ": the parameter trace does not list module " +
                      std::to_string(model_->module_ds_id(module)) + "'s parameters next");
    }

    const ZeroSettings& z = model_->settings();
    thresholds_read_ = true;
    if (z.prefetch_bucket_size > 0) {
      const std::int64_t budget =
          std::min(z.max_live_parameters - n_available_, z.prefetch_bucket_size);
      std::vector<ParamId>& prefetch = scratch_prefetch_;
      prefetch.clear();
      std::int64_t prefetch_numel = 0;
      const std::int64_t mark = fetches_++;
      // Checked before each parameter is added: the last one may overshoot the budget.
      while (!queue_empty() && prefetch_numel < budget) {
        const ParamInTrace next = queue_pop();
        const auto p = static_cast<size_t>(next.param);
        const bool take =
            state_[p].status == ParamStatus::kNotAvailable && prefetch_mark_[p] != mark;
        most_recent_fetch_[p] = std::max(most_recent_fetch_[p], next.step_id_last_used_at);
        if (take) {
          prefetch_mark_[p] = mark;
          prefetch.push_back(next.param);
          prefetch_numel += model_->param(next.param).numel;
        }
      }
      if (prefetch_numel > 0) all_gather(prefetch, forward, GatherReason::kPrefetch, module);
    }
  }
  ++step_id_;
}

GatherRequest Coordinator::new_request(GatherReason reason, bool forward, ModuleId module) {
  GatherRequest request;
  request.reason = reason;
  request.forward = forward;
  request.module = module;
  if (!spare_params_.empty()) {
    request.params = std::move(spare_params_.back());
    spare_params_.pop_back();
    request.params.clear();
  }
  return request;
}

void Coordinator::all_gather(std::span<const ParamId> params, bool forward, GatherReason reason,
                             ModuleId module) {
  GatherRequest request = new_request(reason, forward, module);
  for (ParamId p : params) {
    if (status(p) == ParamStatus::kNotAvailable) {
      request.params.push_back(p);
      request.numel += model_->param(p).numel;
    }
  }
  if (request.params.empty()) {
    spare_params_.push_back(std::move(request.params));
    return;
  }
  if (reason != GatherReason::kOutside) n_available_ += request.numel;
  sort_by_ds_id(*model_, request.params);
  request.handle = next_handle_++;
  HandleState& h = handles_.emplace_back();
  h.pending = true;
  for (ParamId p : request.params) {
    ParamState& st = state_[static_cast<size_t>(p)];
    st.status = ParamStatus::kInflight;
    if (reason != GatherReason::kOutside) {
      ZP_CHECK(!st.registered, "parameter ", model_->param(p).ds_id, " registered twice");
      st.registered = true;
      st.registry_slot = static_cast<std::int32_t>(inflight_.size());
      inflight_.emplace_back(p, request.handle);
      ++inflight_live_;
      ++h.registry_entries;
    }
  }
  ZP_CHECK(handle_base_ + static_cast<GatherHandle>(handles_.size()) == next_handle_,
           "handles out of step");
  backend_->start_gather(request);
  handles_.back().params = std::move(request.params);
}

// Pops `param` from the in-flight registry and waits on its gather.
void Coordinator::wait(ParamId param) {
  ParamState& st = state_[static_cast<size_t>(param)];
  if (!st.registered) return;
  ZP_CHECK(st.registry_slot >= 0 && static_cast<std::size_t>(st.registry_slot) < inflight_.size() &&
               inflight_[static_cast<std::size_t>(st.registry_slot)].first == param,
           "registered parameter missing from the registry");
  const GatherHandle handle = inflight_[static_cast<std::size_t>(st.registry_slot)].second;
  inflight_[static_cast<std::size_t>(st.registry_slot)].first = kNoParam;
  st.registry_slot = -1;
  if (--inflight_live_ == 0) inflight_.clear();
  st.registered = false;
  HandleState& h = handle_state(handle);
  --h.registry_entries;
  land(handle, h);
  if (h.registry_entries == 0) backend_->drop_gather(handle);
}

// A gather's wait lands every parameter of the gather at once; later waits on it do nothing.
void Coordinator::land(GatherHandle handle, HandleState& h) {
  if (!h.pending) return;
  h.pending = false;
  backend_->wait_gather(handle);
  for (ParamId p : h.params)
    state_[static_cast<size_t>(p)].status = ParamStatus::kAvailable;
  spare_params_.push_back(std::move(h.params));  // leaves h.params empty
}

// --- Release ----------------------------------------------------------------------------------

void Coordinator::release_module(ModuleId module) {
  const std::span<const ParamId> params = fetch_params(module);
  if (params.empty()) return;  // nothing to release (and the cached list would be empty)
  const std::span<const ParamId> releasable =
      mode_ == TraceMode::kComplete ? params_to_release(module, step_id_) : params;
  for (ParamId p : params) {
    state_[static_cast<size_t>(p)].active.remove(module);
    if (!model_->param(p).external &&
        std::find(releasable.begin(), releasable.end(), p) != releasable.end()) {
      release_param(p, ReleaseReason::kModule);
    }
  }
}

std::span<const ParamId> Coordinator::params_to_release(ModuleId module, std::int64_t step_id) {
  ZP_CHECK(step_id >= -1, "step id ", step_id);
  const auto slot = static_cast<std::size_t>(step_id + 1);
  auto view = [&](const CachedRelease& c) {
    return std::span<const ParamId>(release_params_.data() + c.begin,
                                    static_cast<std::size_t>(c.end - c.begin));
  };
  if (slot < release_cache_.size() && release_cache_[slot].module != kNoModule) {
    for (std::int32_t i = -2; i != -1;) {
      const CachedRelease& c =
          i == -2 ? release_cache_[slot] : release_overflow_[static_cast<std::size_t>(i)];
      if (c.module == module) return view(c);
      i = c.next;
    }
  }

  // The list is built at the end of release_params_, where it stays cached: the module's
  // non-persistent parameters, less those a later use keeps.
  thresholds_read_ = true;
  const auto begin = static_cast<std::int32_t>(release_params_.size());
  // Parameters reused within max_reuse_distance elements of trace stay. DeepSpeed walks the trace
  // from the current step, adding up each module's parameters (as deep as the module being
  // released is a leaf) until the walk reaches the distance; a parameter met before that stays.
  // It is met first at its next use, so it stays exactly when the elements between here and its
  // next use are below the distance: the same answer without the walk.
  const auto from = static_cast<std::size_t>(std::max<std::int64_t>(step_id, 0));
  const ReuseIndex* index =
      from < submodule_order_.size() ? &reuse_index(model_->is_leaf(module)) : nullptr;
  auto reused_soon = [&](ParamId p) {
    const auto first = index->uses.begin() + index->first_use[static_cast<size_t>(p)];
    const auto last = index->uses.begin() + index->first_use[static_cast<size_t>(p) + 1];
    const auto next = std::lower_bound(first, last, static_cast<std::int32_t>(from));
    return next != last && index->prefix[static_cast<size_t>(*next)] - index->prefix[from] <
                               model_->settings().max_reuse_distance;
  };
  for (ParamId p : fetch_params(module)) {
    if (model_->param(p).persistent) continue;
    // A later use of the parameter that a prefetch already covered would otherwise be skipped.
    if (most_recent_fetch_[static_cast<size_t>(p)] > step_id) continue;
    if (index && reused_soon(p)) continue;
    release_params_.push_back(p);
  }
  CachedRelease entry{module, -1, begin, static_cast<std::int32_t>(release_params_.size())};
  // Room for a whole trace at once: one slot per step.
  if (slot >= release_cache_.size())
    release_cache_.resize(std::max(slot, submodule_order_.size()) + 1);
  CachedRelease* tail = &release_cache_[slot];
  if (tail->module == kNoModule) {
    *tail = entry;
  } else {
    while (tail->next != -1)
      tail = &release_overflow_[static_cast<std::size_t>(tail->next)];
    tail->next = static_cast<std::int32_t>(release_overflow_.size());
    release_overflow_.push_back(entry);
  }
  return view(entry);
}

void Coordinator::index_trace() {
  reuse_index(false);
  // The index through subtrees serves the release of z3 leaves alone.
  if (!model_->leaves().empty()) reuse_index(true);
}

const Coordinator::ReuseIndex& Coordinator::reuse_index(bool recurse) {
  ReuseIndex& index = reuse_index_[recurse ? 1 : 0];
  if (index.built) return index;
  const std::size_t params = state_.size();
  index.prefix.resize(submodule_order_.size() + 1);
  index.prefix[0] = 0;
  index.first_use.assign(params + 1, 0);
  // One walk of the trace collects the (parameter, position) uses, a position once per parameter,
  // and counts them per parameter; a counting sort then places them, positions increasing.
  std::vector<std::int32_t>& last = scratch_last_use_;
  last.assign(params, -1);
  std::vector<std::pair<ParamId, std::int32_t>>& found = scratch_uses_;
  found.clear();
  for (std::size_t i = 0; i < submodule_order_.size(); ++i) {
    const auto at = static_cast<std::int32_t>(i);
    std::int64_t numel = 0;
    for (ParamId p : model_->params_span(submodule_order_[i], recurse)) {
      const auto q = static_cast<size_t>(p);
      numel += model_->param(p).numel;
      if (last[q] == at) continue;
      last[q] = at;
      ++index.first_use[q + 1];
      found.emplace_back(p, at);
    }
    index.prefix[i + 1] = index.prefix[i] + numel;
  }
  for (std::size_t q = 0; q < params; ++q)
    index.first_use[q + 1] += index.first_use[q];
  index.uses.resize(found.size());
  // `last` becomes each parameter's next free slot.
  std::copy(index.first_use.begin(), index.first_use.end() - 1, last.begin());
  for (const auto& [p, at] : found)
    index.uses[static_cast<std::size_t>(last[static_cast<std::size_t>(p)]++)] = at;
  index.built = true;
  return index;
}

void Coordinator::release_param(ParamId param, ReleaseReason reason) {
  ParamState& s = state_[static_cast<size_t>(param)];
  if (s.status != ParamStatus::kAvailable || !s.active.empty()) return;
  s.status = ParamStatus::kNotAvailable;
  n_available_ -= model_->param(param).numel;
  backend_->release(param, reason);
}

void Coordinator::drain_inflight() {
  // _clean_inflight_param_registry: wait on each and release it if nothing holds it.
  std::vector<std::pair<ParamId, GatherHandle>> registry;
  registry.swap(inflight_);
  inflight_live_ = 0;
  std::erase_if(registry, [](const auto& entry) { return entry.first == kNoParam; });
  for (const auto& [param, handle] : registry) {
    state_[static_cast<size_t>(param)].registered = false;
    state_[static_cast<size_t>(param)].registry_slot = -1;
    handle_state(handle).registry_entries = 0;
    land(handle);
    release_param(param, ReleaseReason::kDrain);
  }
  // The registry is cleared after the loop: only then are the handles dropped.
  std::vector<GatherHandle> dropped;
  for (const auto& entry : registry) {
    if (std::find(dropped.begin(), dropped.end(), entry.second) == dropped.end()) {
      dropped.push_back(entry.second);
      backend_->drop_gather(entry.second);
    }
  }
}

void Coordinator::release_and_reset_all() {
  for (ParamId p : model_->params_by_ds_id()) {
    if (state_[static_cast<size_t>(p)].registered) {
      if (v014_)
        deepspeed_fails("release_and_reset_all found parameter " +
                        std::to_string(model_->param(p).ds_id) + " still in flight");
      wait(p);
    }
    state_[static_cast<size_t>(p)].active.clear();
    release_param(p, ReleaseReason::kReleaseAll);
  }
  if (!v014_) n_available_ = 0;
  for (ParamId p : model_->params_by_ds_id()) {
    ZP_CHECK(status(p) == ParamStatus::kNotAvailable, "parameter ", model_->param(p).ds_id,
             " not released by release_and_reset_all");
  }
}

void Coordinator::gather_outside(std::span<const ParamId> params) {
  if (params.size() == 1 && handles_.empty()) return gather_one_outside(params.front());
  const GatherHandle handle = next_handle_;
  all_gather(params, /*forward=*/false, GatherReason::kOutside, kNoModule);
  if (handle == next_handle_) return;  // nothing needed gathering
  land(handle);  // param.all_gather() waits before returning, then drops the handle
  backend_->drop_gather(handle);
}

// What the general path does for one parameter, in the same order and with the same calls to the
// backend, but without tracking the handle: it is done with before this returns, and nothing else
// is tracked (engine setup gathers every trainable parameter so, one at a time).
void Coordinator::gather_one_outside(ParamId param) {
  ParamState& st = state_[static_cast<size_t>(param)];
  if (st.status != ParamStatus::kNotAvailable) return;  // nothing needs gathering
  GatherRequest request = new_request(GatherReason::kOutside, false, kNoModule);
  request.params.push_back(param);
  request.numel = model_->param(param).numel;
  request.handle = next_handle_++;
  st.status = ParamStatus::kInflight;
  backend_->start_gather(request);
  backend_->wait_gather(request.handle);
  st.status = ParamStatus::kAvailable;
  backend_->drop_gather(request.handle);
  handle_base_ = next_handle_;
  spare_params_.push_back(std::move(request.params));
}

void Coordinator::release_outside(ParamId param) {
  ParamState& s = state_[static_cast<size_t>(param)];
  if (s.status != ParamStatus::kAvailable) return;
  s.status = ParamStatus::kNotAvailable;
  backend_->release(param, ReleaseReason::kOutside);
}

}  // namespace zp::zero
