// Stage 3's gradient reduction: gradients are collected into a bucket as they become ready and
// reduced when the next one would overflow reduce_bucket_size, as DeepSpeed's
// reduce_independent_p_g_buckets_and_remove_grads does:
//  - a bucket is flushed before adding a gradient that would take it past reduce_bucket_size,
//    unless it is empty (a gradient larger than the bucket goes alone);
//  - with contiguous_gradients and reduce_scatter off, a bucket that fits is all-reduced from the
//    contiguous buffer in arrival order; otherwise its parameters are sorted by id and
//    reduce-scattered;
//  - whatever is left is reduced at the end of backward (the epilogue).
// Not thread-safe.
#pragma once

#include <cstdint>
#include <vector>

#include "core/zero/zero_model.h"

namespace zp::zero {

enum class ReducePath : std::uint8_t { kReduceScatter, kContiguousAllReduce };

struct GradBucket {
  std::int64_t index = 0;  // within the step
  std::vector<ParamId> params;
  std::int64_t numel = 0;
  // What the collective moves per rank's input: reduce-scatter pads each gradient to a multiple of
  // the group (each rank receives its partition); the all-reduce reduces the bucket as it is.
  std::int64_t reduced_numel = 0;
  ReducePath path = ReducePath::kReduceScatter;
  // Gradients that were copied into the persistent contiguous buffer (those that fit).
  std::int64_t contiguous_numel = 0;
};

// The two buffers stage 3 allocates once for gradients: the contiguous bucket (reduce_bucket_size
// elements of the model's dtype on the GPU, with contiguous_gradients) and the flat buffer of
// every trainable parameter's gradient partition (in the gradient accumulation dtype, on the GPU,
// or in host memory, pinned if asked, when the optimizer is offloaded).
struct GradientBuffers {
  std::int64_t bucket_numel = 0;
  DType bucket_dtype = DType::kFloat32;
  std::int64_t partition_numel = 0;
  DType partition_dtype = DType::kFloat32;
  bool partitions_on_host = false;
  bool partitions_pinned = false;
  std::int64_t bucket_bytes() const { return bucket_numel * dtype_size(bucket_dtype); }
  std::int64_t partition_bytes() const { return partition_numel * dtype_size(partition_dtype); }
};
GradientBuffers gradient_buffers(const ZeroModel& model);

class GradientReducerBackend {
 public:
  virtual ~GradientReducerBackend() = default;
  virtual void reduce(const GradBucket& bucket) = 0;
  // A gradient joined the bucket; `contiguous` when it was copied into the contiguous buffer
  // (its own tensor is freed then), false when it waits as it is for the bucket's reduction.
  // Comes after any reduce() that adding it caused. Default: nothing to do.
  virtual void grad_added(ParamId /*param*/, bool /*contiguous*/) {}
};

class GradientReducer {
 public:
  GradientReducer(const ZeroModel& model, GradientReducerBackend& backend);

  void grad_ready(ParamId param);
  // The same reducer for another model of the same tree and settings (Coordinator::rebind).
  void rebind(const ZeroModel& model, GradientReducerBackend& backend);
  // independent_gradient_partition_epilogue: reduce what is left; the next step starts at 0.
  void epilogue();

  std::int64_t bucket_numel() const { return numel_; }

 private:
  void flush();

  const ZeroModel* model_;
  GradientReducerBackend* backend_;
  std::vector<ParamId> bucket_;
  std::int64_t numel_ = 0;
  std::int64_t contiguous_numel_ = 0;
  std::int64_t index_ = 0;
};

}  // namespace zp::zero
