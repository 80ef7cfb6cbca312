#include "core/zero/grad_reducer.h"

#include <algorithm>

namespace zp::zero {

GradientReducer::GradientReducer(const ZeroModel& model, GradientReducerBackend& backend)
    : model_(&model), backend_(&backend) {}

void GradientReducer::rebind(const ZeroModel& model, GradientReducerBackend& backend) {
  // Between micro-steps the bucket is empty: nothing refers to the old model's parameters.
  ZP_CHECK(bucket_.empty() && numel_ == 0, "a gradient reducer rebound with a bucket filling");
  model_ = &model;
  backend_ = &backend;
}

GradientBuffers gradient_buffers(const ZeroModel& model) {
  const ZeroSettings& z = model.settings();
  GradientBuffers b;
  b.bucket_numel = z.contiguous_gradients ? z.reduce_bucket_size : 0;
  b.bucket_dtype = z.compute_dtype;
  for (ParamId p : model.params_by_ds_id()) {
    if (model.param(p).requires_grad) b.partition_numel += model.param(p).shape.partition_numel;
  }
  b.partition_dtype = z.grad_accum_dtype;
  b.partitions_on_host = z.offload_optimizer != OffloadDevice::kNone;
  b.partitions_pinned = b.partitions_on_host && z.offload_optimizer_pin_memory;
  return b;
}

void GradientReducer::grad_ready(ParamId param) {
  const ZeroSettings& z = model_->settings();
  const std::int64_t numel = model_->param(param).numel;
  ZP_CHECK(std::find(bucket_.begin(), bucket_.end(), param) == bucket_.end(),
           "gradient of parameter ", model_->param(param).ds_id, " is ready twice in one bucket");
  if (numel_ + numel > z.reduce_bucket_size && numel_ > 0) flush();
  const bool contiguous = z.contiguous_gradients && numel_ + numel <= z.reduce_bucket_size;
  if (contiguous) contiguous_numel_ += numel;
  bucket_.push_back(param);
  numel_ += numel;
  backend_->grad_added(param, contiguous);
}

void GradientReducer::epilogue() {
  flush();
  index_ = 0;
}

void GradientReducer::flush() {
  if (bucket_.empty()) return;
  const ZeroSettings& z = model_->settings();
  GradBucket b;
  b.index = index_++;
  b.numel = numel_;
  b.contiguous_numel = contiguous_numel_;
  b.params = std::move(bucket_);
  if (z.contiguous_gradients && numel_ <= z.reduce_bucket_size && !z.reduce_scatter) {
    b.path = ReducePath::kContiguousAllReduce;
    b.reduced_numel = numel_;
  } else {
    b.path = ReducePath::kReduceScatter;
    std::sort(b.params.begin(), b.params.end(), [&](ParamId x, ParamId y) {
      return model_->param(x).ds_id < model_->param(y).ds_id;
    });
    for (ParamId p : b.params)
      b.reduced_numel += model_->param(p).shape.padded_numel;
  }
  bucket_.clear();
  numel_ = 0;
  contiguous_numel_ = 0;
  backend_->reduce(b);
  // The next bucket reuses this one's list: no allocation per bucket.
  bucket_ = std::move(b.params);
  bucket_.clear();
}

}  // namespace zp::zero
