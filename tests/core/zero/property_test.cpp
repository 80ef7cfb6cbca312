// Properties over random models, call orders and thresholds: whatever the settings, a module's
// parameters are available when it runs; after the optimizer step only persistent parameters are
// live; and where DeepSpeed's counter is exact (v0.16, a step that starts with nothing live), it
// equals the elements gathered and not released; every gather is waited before it is dropped and
// dropped exactly once, and none is left undropped at the optimizer step (its flat buffer would
// leak). Deterministically seeded.
#include <gtest/gtest.h>

#include <map>

#include "zero_test_util.h"

namespace zp::zero {
namespace {

using testing::RandomModel;
using testing::RandomSettings;

class InvariantChecker : public CoordinatorBackend,
                         public GradientReducerBackend,
                         public StepObserver {
 public:
  InvariantChecker(const ZeroModel& model, std::string context)
      : model_(model), context_(std::move(context)) {}
  TrainingLoop* loop = nullptr;
  int hooks = 0;

  void start_gather(const GatherRequest& r) override {
    EXPECT_TRUE(gathers_.emplace(r.handle, false).second) << context_;
  }
  void wait_gather(GatherHandle h) override {
    ASSERT_TRUE(gathers_.contains(h)) << context_ << ": wait on gather " << h;
    gathers_[h] = true;
  }
  void drop_gather(GatherHandle h) override {
    ASSERT_TRUE(gathers_.contains(h)) << context_ << ": dropped gather " << h << " twice";
    EXPECT_TRUE(gathers_[h]) << context_ << ": gather " << h << " dropped before it was waited";
    gathers_.erase(h);
  }
  void release(ParamId, ReleaseReason) override {}
  void reduce(const GradBucket& b) override {
    for (ParamId p : b.params)
      reduced_.push_back(p);
  }
  void on_phase(StepPhase phase, std::int64_t step) override {
    if (phase != StepPhase::kBackward) {
      // The micro-batch before this point reduced each gradient at most once.
      std::sort(reduced_.begin(), reduced_.end());
      EXPECT_EQ(std::adjacent_find(reduced_.begin(), reduced_.end()), reduced_.end()) << context_;
      reduced_.clear();
    }
    step_ = step;
    if (phase == StepPhase::kForward)
      step_start_live_ = loop->coordinator().live_numel() - model_.persistent_numel();
  }
  void on_event(const StepEvent& e) override {
    const Coordinator& c = loop->coordinator();
    // Forward: a module keeps its parameters until its own post-forward hook, whatever the modules
    // it calls release.
    if (e.kind == StepEventKind::kPreForward) running_.push_back(e.module);
    if (e.kind == StepEventKind::kPostForward) running_.pop_back();
    for (ModuleId m : running_) {
      for (ParamId p : model_.fetch_params(m)) {
        ASSERT_EQ(c.status(p), ParamStatus::kAvailable)
            << context_ << ": step " << step_ << " after " << to_string(e.kind) << " "
            << model_.tree().qualified_name(e.module) << ", " << model_.tree().qualified_name(m)
            << " is still running without " << model_.tree().parameter(p).name;
      }
    }
    if (e.kind == StepEventKind::kPreForward || e.kind == StepEventKind::kPreBackward) {
      ++hooks;
      for (ParamId p : model_.fetch_params(e.module)) {
        ASSERT_EQ(c.status(p), ParamStatus::kAvailable)
            << context_ << ": step " << step_ << " " << to_string(e.kind) << " "
            << model_.tree().qualified_name(e.module) << " runs without "
            << model_.tree().parameter(p).name;
      }
    }
    if (model_.settings().version == DeepSpeedVersion::kCurrent && step_ >= 1 &&
        step_start_live_ == 0 && e.kind != StepEventKind::kGradReady) {
      std::int64_t live_nonpersistent = 0;
      for (ParamId p : model_.params_by_ds_id()) {
        if (!model_.param(p).persistent && c.status(p) != ParamStatus::kNotAvailable)
          live_nonpersistent += model_.param(p).numel;
      }
      ASSERT_EQ(c.available_numel(), live_nonpersistent)
          << context_ << ": step " << step_ << " after " << to_string(e.kind) << " "
          << model_.tree().qualified_name(e.module);
    }
  }
  void check_after_step() {
    // release_and_reset_all emptied the registry, so every handle is gone.
    EXPECT_TRUE(gathers_.empty()) << context_ << ": " << gathers_.size() << " gathers held";
    const Coordinator& c = loop->coordinator();
    for (ParamId p : model_.params_by_ds_id()) {
      const bool live = c.status(p) != ParamStatus::kNotAvailable;
      EXPECT_EQ(live, model_.param(p).persistent)
          << context_ << ": after step " << step_ << " " << model_.tree().parameter(p).name;
    }
  }

 private:
  const ZeroModel& model_;
  std::string context_;
  std::int64_t step_ = 0;
  std::int64_t step_start_live_ = 0;
  std::vector<ParamId> reduced_;
  std::vector<ModuleId> running_;
  std::map<GatherHandle, bool> gathers_;  // started and not dropped -> waited
};

TEST(CoordinatorProperties, HoldOverRandomModelsAndSettings) {
  std::mt19937 rng(20261122);
  int checked = 0, refused = 0, hooks = 0;
  for (int iter = 0; iter < 3000; ++iter) {
    const ModuleTree tree = RandomModel(rng);
    const DeepSpeedVersion version =
        iter % 2 ? DeepSpeedVersion::kCurrent : DeepSpeedVersion::kV0_14;
    const ZeroSettings settings = RandomSettings(rng, version);
    const std::string context = "case " + std::to_string(iter);
    try {
      const ZeroModel model(tree, settings);
      InvariantChecker checker(model, context);
      TrainingLoop loop(model, checker, checker, &checker);
      checker.loop = &loop;
      loop.initialize();
      for (int s = 0; s < 4; ++s) {
        loop.step(1 + static_cast<std::int64_t>(rng() % 2));
        checker.check_after_step();
        if (::testing::Test::HasFatalFailure()) return;
      }
      hooks += checker.hooks;
      ++checked;
    } catch (const UserError&) {
      // Leaf classes matching nothing, or a leaf DeepSpeed refuses: the model was not runnable.
      ++refused;
    }
  }
  EXPECT_GT(checked, 2000);
  EXPECT_GT(hooks, 100000);
  EXPECT_LT(refused, 1000);
}

}  // namespace
}  // namespace zp::zero
