#include "core/zero/hook_schedule.h"

#include <algorithm>

namespace zp::zero {

std::string_view to_string(StepEventKind kind) {
  switch (kind) {
    case StepEventKind::kPreForward:
      return "pre_fwd";
    case StepEventKind::kPostForward:
      return "post_fwd";
    case StepEventKind::kPreBackward:
      return "pre_bwd";
    case StepEventKind::kPostBackward:
      return "post_bwd";
    case StepEventKind::kGradReady:
      return "grad";
  }
  return "?";
}

namespace {

struct CallInfo {
  std::int32_t first_child = 0, end_child = 0;  // in ScheduleBuilder::children_
  bool output_requires_grad = false;
  bool last_of_module = false;
};

class ScheduleBuilder {
 public:
  explicit ScheduleBuilder(const ZeroModel& model) : model_(model), tree_(model.tree()) {
    const auto& calls = tree_.calls();
    info_.resize(calls.size());
    // Children grouped by parent, in call order: count, then place.
    for (size_t i = 0; i < calls.size(); ++i) {
      if (calls[i].parent_call != kNoCall) {
        ++info_[static_cast<size_t>(calls[i].parent_call)].end_child;
      } else {
        roots_.push_back(static_cast<std::int32_t>(i));
      }
    }
    std::int32_t next = 0;
    for (CallInfo& info : info_) {
      info.first_child = next;
      next += info.end_child;
      info.end_child = info.first_child;
    }
    children_.resize(static_cast<size_t>(next));
    for (size_t i = 0; i < calls.size(); ++i) {
      if (calls[i].parent_call != kNoCall) {
        CallInfo& parent = info_[static_cast<size_t>(calls[i].parent_call)];
        children_[static_cast<size_t>(parent.end_child++)] = static_cast<std::int32_t>(i);
      }
    }
    // Output requires grad: the inputs do, or the call (or one inside it) uses a trainable
    // parameter. Children come after their parent, so one backwards sweep suffices.
    for (size_t i = calls.size(); i-- > 0;) {
      CallInfo& info = info_[i];
      info.output_requires_grad = info.output_requires_grad || calls[i].inputs_require_grad;
      for (ParamId p : model_.named_span(calls[i].module, false)) {
        if (model_.param(p).requires_grad) info.output_requires_grad = true;
      }
      if (calls[i].parent_call != kNoCall && info.output_requires_grad) {
        info_[static_cast<size_t>(calls[i].parent_call)].output_requires_grad = true;
      }
    }
    std::vector<bool> seen(tree_.modules().size(), false);
    for (size_t i = calls.size(); i-- > 0;) {
      const auto m = static_cast<size_t>(calls[i].module);
      if (!seen[m]) info_[i].last_of_module = seen[m] = true;
    }
    // The call whose backward makes each parameter's gradient ready: its first forward use.
    first_use_.assign(tree_.parameters().size(), kNoCall);
    for (size_t i = 0; i < calls.size(); ++i) {
      for (ParamId p : model_.named_span(calls[i].module, false)) {
        if (first_use_[static_cast<size_t>(p)] == kNoCall)
          first_use_[static_cast<size_t>(p)] = static_cast<std::int32_t>(i);
      }
    }
    // A leaf's parameters: reduced at the end of the backward of its last forward call.
    leaf_reduce_call_.assign(tree_.modules().size(), kNoCall);
    for (size_t i = 0; i < calls.size(); ++i) {
      const ModuleId m = calls[i].module;
      if (model_.is_leaf(m) && model_.is_hooked(m) && info_[i].last_of_module)
        leaf_reduce_call_[static_cast<size_t>(m)] = static_cast<std::int32_t>(i);
    }
  }

  StepSchedule build() {
    StepSchedule s;
    // At most two hook events per call, and a gradient per parameter. The events are written into
    // lists sized for that and cut to length after: cheaper than a push_back per event.
    s.forward.resize(2 * tree_.calls().size());
    s.backward.resize(2 * tree_.calls().size() + tree_.parameters().size());
    out_ = s.forward.data();
    end_ = out_ + s.forward.size();
    for (std::int32_t root : roots_)
      forward(root);
    s.forward.resize(static_cast<std::size_t>(out_ - s.forward.data()));
    out_ = s.backward.data();
    end_ = out_ + s.backward.size();
    for (auto it = roots_.rbegin(); it != roots_.rend(); ++it)
      backward(*it);
    s.backward.resize(static_cast<std::size_t>(out_ - s.backward.data()));
    return s;
  }

 private:
  void emit(StepEventKind kind, ModuleId m, std::int32_t call, ParamId param = -1) {
    ZP_CHECK(out_ != end_, "more step events than the bound");
    *out_++ = StepEvent{kind, m, call, param};
  }

  bool hooked(std::int32_t call) const {
    return model_.is_hooked(tree_.calls()[static_cast<size_t>(call)].module);
  }

  void forward(std::int32_t call) {
    const ForwardCall& c = tree_.calls()[static_cast<size_t>(call)];
    const ModuleId m = c.module;
    // DeepSpeed's leaf post-forward hook raises for such a call, since its gradient reduction hook
    // (on the inputs) would never run.
    if (model_.is_leaf(m) && model_.is_hooked(m) && !c.inputs_require_grad &&
        info_[static_cast<size_t>(call)].output_requires_grad) {
      throw UserError(ErrorKind::kUnsupported, {},
                      "z3 leaf module '" + tree_.qualified_name(m) + "' (" + tree_.module(m).type +
                          ") is called with no input that requires grad but returns one that does; "
                          "DeepSpeed refuses such a leaf module");
    }
    if (hooked(call)) emit(StepEventKind::kPreForward, m, call);
    const CallInfo& info = info_[static_cast<size_t>(call)];
    for (std::int32_t i = info.first_child; i < info.end_child; ++i)
      forward(children_[static_cast<size_t>(i)]);
    if (hooked(call)) emit(StepEventKind::kPostForward, m, call);
  }

  void backward(std::int32_t call) {
    const ForwardCall& c = tree_.calls()[static_cast<size_t>(call)];
    const CallInfo& info = info_[static_cast<size_t>(call)];
    if (!info.output_requires_grad) return;  // autograd never reaches it
    const ModuleId m = c.module;
    if (hooked(call)) emit(StepEventKind::kPreBackward, m, call);
    // Gradients of this module's own parameters (non-leaf parameters only: leaf parameters wait
    // for the leaf's own hook).
    const std::span<const ParamId> own = model_.named_span(m, false);
    for (auto it = own.rbegin(); it != own.rend(); ++it) {
      const ZeroParam& zp = model_.param(*it);
      if (zp.requires_grad && zp.leaf == kNoModule &&
          first_use_[static_cast<size_t>(*it)] == call) {
        emit(StepEventKind::kGradReady, m, call, *it);
      }
    }
    for (std::int32_t i = info.end_child; i-- > info.first_child;)
      backward(children_[static_cast<size_t>(i)]);
    if (leaf_reduce_call_[static_cast<size_t>(m)] == call) {
      const std::span<const ParamId> subtree = model_.named_span(m, true);
      std::vector<ParamId> params(subtree.begin(), subtree.end());
      std::sort(params.begin(), params.end(), [&](ParamId a, ParamId b) {
        return model_.param(a).ds_id < model_.param(b).ds_id;
      });
      for (ParamId p : params) {
        // A parameter under two leaves (a tied weight) belongs to the one registered last.
        if (model_.param(p).requires_grad && model_.param(p).leaf == m) {
          emit(StepEventKind::kGradReady, m, call, p);
        }
      }
    }
    if (hooked(call) && info.last_of_module && c.inputs_require_grad) {
      emit(StepEventKind::kPostBackward, m, call);
    }
  }

  const ZeroModel& model_;
  const ModuleTree& tree_;
  std::vector<CallInfo> info_;
  std::vector<std::int32_t> children_;
  std::vector<std::int32_t> roots_;
  std::vector<std::int32_t> first_use_;
  std::vector<std::int32_t> leaf_reduce_call_;  // by module
  StepEvent* out_ = nullptr;                    // the next event of the list being built
  StepEvent* end_ = nullptr;                    // and its end
};

}  // namespace

StepSchedule training_step_schedule(const ZeroModel& model,
                                    const std::vector<RecomputeRange>& recompute) {
  StepSchedule s = ScheduleBuilder(model).build();
  if (recompute.empty()) return s;
  std::vector<RecomputeRange> ranges = recompute;
  std::sort(ranges.begin(), ranges.end(), [](const RecomputeRange& a, const RecomputeRange& b) {
    return a.first_call < b.first_call;
  });
  for (std::size_t i = 0; i < ranges.size(); ++i) {
    ZP_CHECK(ranges[i].first_call < ranges[i].end_call, "empty recompute range");
    ZP_CHECK(i == 0 || ranges[i - 1].end_call <= ranges[i].first_call,
             "overlapping recompute ranges");
  }
  // The range holding a call, by binary search over the sorted, disjoint ranges; -1 for none.
  auto range_of = [&](std::int32_t call) -> std::ptrdiff_t {
    auto it =
        std::upper_bound(ranges.begin(), ranges.end(), call,
                         [](std::int32_t c, const RecomputeRange& r) { return c < r.first_call; });
    if (it == ranges.begin()) return -1;
    --it;
    return call < it->end_call ? it - ranges.begin() : -1;
  };
  // Each range's forward events, in order: replayed when backward first enters the range.
  std::vector<std::vector<StepEvent>> replay(ranges.size());
  for (const StepEvent& f : s.forward) {
    if (const std::ptrdiff_t r = range_of(f.call); r >= 0) {
      replay[static_cast<std::size_t>(r)].push_back(f);
      replay[static_cast<std::size_t>(r)].back().recompute = true;
    }
  }
  std::vector<StepEvent> backward;
  backward.reserve(s.backward.size() + s.forward.size());
  std::vector<bool> done(ranges.size(), false);
  for (const StepEvent& e : s.backward) {
    if (const std::ptrdiff_t r = range_of(e.call); r >= 0 && !done[static_cast<std::size_t>(r)]) {
      done[static_cast<std::size_t>(r)] = true;
      const std::vector<StepEvent>& again = replay[static_cast<std::size_t>(r)];
      backward.insert(backward.end(), again.begin(), again.end());
    }
    backward.push_back(e);
  }
  s.backward = std::move(backward);
  return s;
}

}  // namespace zp::zero
