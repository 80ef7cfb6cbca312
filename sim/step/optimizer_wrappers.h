// DeepSpeed's optimizer wrappers for ZeRO stages 0 to 2, as the pipeline and the data-parallel
// simulations both need them: which wrapper DeepSpeedEngine builds around the optimizer, the
// aligned flat buffer the partitioning wrappers keep, and how gradients are cut into the
// collectives that reduce them. docs/data-parallel-simulation.md gives the DeepSpeed sources.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "core/config/run_spec.h"

namespace zp::sim {

// engine.py's MEMORY_OPT_ALLREDUCE_SIZE: elements per all-reduce when buffered_allreduce_fallback
// reduces the gradients.
inline constexpr std::int64_t kMemoryOptAllreduceSize = 500'000'000;
// nccl_start_alignment_factor of the flat bit16 buffers (stage_1_and_2.py, bf16_optimizer.py).
inline constexpr std::int64_t kNcclStartAlignmentFactor = 2;

inline std::int64_t ceil_div(std::int64_t a, std::int64_t b) {
  return (a + b - 1) / b;
}

// The flat bit16 buffer of `trainable_numel` elements, padded to a multiple of
// kNcclStartAlignmentFactor x dp (flatten_dense_tensors_aligned); each rank owns 1/dp of it.
inline std::int64_t aligned_flat_numel(std::int64_t trainable_numel, std::int64_t dp) {
  const std::int64_t align = kNcclStartAlignmentFactor * dp;
  return ceil_div(trainable_numel, align) * align;
}

// The optimizer wrapper DeepSpeedEngine builds (_do_optimizer_sanity_check): none (fp32 without
// ZeRO), FP16_Optimizer, BF16_Optimizer, or DeepSpeedZeroOptimizer (stages 1 and 2).
enum class Wrapper : std::uint8_t { kNone, kFp16, kBf16, kZero };

struct Precision {
  Wrapper wrapper = Wrapper::kNone;
  DType model = DType::kFloat32;
  DType accum = DType::kFloat32;
};

// get_data_types and _do_optimizer_sanity_check. `pipeline`: the module is a PipelineModule,
// which alone may accumulate bf16 gradients in bf16 without ZeRO. UserError (naming
// data_types.grad_accum_dtype) for a mix DeepSpeed refuses.
Precision choose_precision(const RunSpec& run, bool pipeline);

// One all-reduce of gradients: its elements, and whether they were flattened into a new buffer
// first (more than one tensor).
struct Chunk {
  std::int64_t numel = 0;
  bool copied = false;
};

// DeepSpeedEngine.allreduce_no_retain: gradients are added to a bucket until it holds more than
// `per_bucket` elements; each bucket is flattened (a copy unless it is one tensor) and
// all-reduced.
std::vector<Chunk> fallback_chunks(const std::vector<std::int64_t>& numels,
                                   std::int64_t per_bucket);

// A gradient in DeepSpeedZeroOptimizer's ipg bucket: where its parameter sits in the flat buffer.
struct FlatRange {
  std::int64_t offset = 0;
  std::int64_t numel = 0;
};

// DeepSpeedZeroOptimizer.average_tensor for one ipg bucket (its gradients in bucket order). With
// reduce_scatter each gradient is cut at the partition boundaries of the flat buffer, consecutive
// slices bound for the same rank are merged, and allreduce_and_scatter all-reduces the slices,
// flushing once more than `bucket_size` elements are collected; without, the bucket is one
// all-reduce in place. An empty bucket reduces nothing.
std::vector<Chunk> ipg_bucket_chunks(std::span<const FlatRange> grads, std::int64_t partition_numel,
                                     std::int64_t bucket_size, bool reduce_scatter);

// DeepSpeedZeroOptimizer.reduce_gradients(pipeline_parallel=True) for stage 1: gradients go into
// the ipg bucket in the flat buffer's order, which is reduced before a gradient that would overflow
// reduce_bucket_size (a larger gradient is reduced alone); each bucket as ipg_bucket_chunks says.
std::vector<Chunk> zero1_chunks(const std::vector<std::int64_t>& numels, std::int64_t bucket,
                                std::int64_t partition, bool reduce_scatter);

// Parameters of `module`'s subtree in registration order (module.parameters()), each once; `seen`
// (one flag per parameter of the tree) carries over between calls.
void parameters_in_order(const ModuleTree& tree, ModuleId module, std::vector<ParamId>& out,
                         std::vector<bool>& seen);

// runtime/utils.py all_gather_dp_groups without all_gather_into_tensor (torch older than 1.13 or a
// backend without it): the updated partition is all-gathered in shards of about
// allgather_bucket_size / dp elements, each a multiple of the alignment; returns each shard's
// elements per rank. With all_gather_into_tensor (every NCCL build DeepSpeed 0.14.5 supports) the
// flat buffer is gathered whole and allgather_bucket_size is not read.
std::vector<std::int64_t> allgather_shards(std::int64_t partition_numel, std::int64_t dp,
                                           std::int64_t allgather_bucket_size);

}  // namespace zp::sim
