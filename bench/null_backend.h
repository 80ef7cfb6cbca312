// A ZeRO-3 backend that carries nothing out: what the core's decisions cost on their own, the
// baseline the benchmarks compare against.
#pragma once

#include "core/zero/training_step.h"

namespace zp::bench {

class NullBackend : public zero::CoordinatorBackend, public zero::GradientReducerBackend {
 public:
  void start_gather(const zero::GatherRequest&) override {}
  void wait_gather(zero::GatherHandle) override {}
  void release(ParamId, zero::ReleaseReason) override {}
  void reduce(const zero::GradBucket&) override {}
};

}  // namespace zp::bench
