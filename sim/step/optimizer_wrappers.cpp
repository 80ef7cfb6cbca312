#include "sim/step/optimizer_wrappers.h"

#include <algorithm>
#include <string>

namespace zp::sim {

Precision choose_precision(const RunSpec& run, bool pipeline) {
  const DeepSpeedConfig& c = run.deepspeed;
  Precision p;
  p.model = c.compute_dtype();
  const bool zero = c.zero.stage > 0;
  // DeepSpeedEngine.get_data_types: bf16 without ZeRO accumulates in fp32 by default.
  p.accum =
      c.grad_accum_dtype.value_or(p.model == DType::kBFloat16 && !zero ? DType::kFloat32 : p.model);
  const SourceLocation where{run.deepspeed_file.string(), 0, 0, "data_types.grad_accum_dtype"};
  if (zero) {
    // Only stage 1 on the GPU hands bf16 with fp32 accumulation to BF16_Optimizer.
    const bool offload =
        c.zero.offload_optimizer && c.zero.offload_optimizer->device != OffloadDevice::kNone;
    p.wrapper =
        p.model == DType::kBFloat16 && p.accum == DType::kFloat32 && c.zero.stage == 1 && !offload
            ? Wrapper::kBf16
            : Wrapper::kZero;
    return p;
  }
  if (p.model == p.accum) {
    if (p.model == DType::kBFloat16) {
      if (!pipeline) {
        throw UserError(ErrorKind::kUnsupported, where,
                        "a bf16 model accumulating gradients in bf16 without ZeRO: DeepSpeed "
                        "raises NotImplementedError (the Bfloat16 wrapper must accumulate in "
                        "fp32; enable ZeRO to accumulate in bf16)");
      }
      return {Wrapper::kBf16, p.model, p.accum};
    }
    p.wrapper = p.model == DType::kFloat16 ? Wrapper::kFp16 : Wrapper::kNone;
    return p;
  }
  if (p.model == DType::kBFloat16 && p.accum == DType::kFloat32) {
    p.wrapper = Wrapper::kBf16;
    return p;
  }
  throw UserError(ErrorKind::kUnsupported, where,
                  "a " + std::string(to_string(p.model)) + " model accumulating gradients in " +
                      std::string(to_string(p.accum)) +
                      " without ZeRO: DeepSpeed raises NotImplementedError (unsupported mix of "
                      "model dtype and gradient accumulation type)");
}

std::vector<Chunk> fallback_chunks(const std::vector<std::int64_t>& numels,
                                   std::int64_t per_bucket) {
  std::vector<Chunk> out;
  std::int64_t numel = 0, count = 0;
  for (std::int64_t n : numels) {
    numel += n;
    ++count;
    if (numel > per_bucket) {
      out.push_back({numel, count > 1});
      numel = count = 0;
    }
  }
  if (count > 0) out.push_back({numel, count > 1});
  return out;
}

std::vector<Chunk> ipg_bucket_chunks(std::span<const FlatRange> grads, std::int64_t partition_numel,
                                     std::int64_t bucket_size, bool reduce_scatter) {
  std::vector<Chunk> out;
  if (!reduce_scatter) {
    std::int64_t total = 0;
    for (const FlatRange& g : grads)
      total += g.numel;
    if (total > 0) out.push_back({total, false});
    return out;
  }
  // rank_and_offsets: slices of the bucket, each bound for one rank.
  std::vector<std::int64_t> slices;
  std::int64_t previous = -1;
  for (const FlatRange& g : grads) {
    std::int64_t pos = g.offset;
    const std::int64_t end = g.offset + g.numel;
    while (pos < end) {
      const std::int64_t rank = pos / partition_numel;
      const std::int64_t piece = std::min(end, (rank + 1) * partition_numel) - pos;
      if (rank == previous && !slices.empty()) {
        slices.back() += piece;
      } else {
        slices.push_back(piece);
      }
      previous = rank;
      pos += piece;
    }
  }
  std::int64_t cum = 0, pieces = 0;
  for (std::int64_t s : slices) {
    cum += s;
    ++pieces;
    if (cum > bucket_size) {
      out.push_back({cum, pieces > 1});
      cum = pieces = 0;
    }
  }
  if (pieces > 0) out.push_back({cum, pieces > 1});
  return out;
}

std::vector<Chunk> zero1_chunks(const std::vector<std::int64_t>& numels, std::int64_t bucket,
                                std::int64_t partition, bool reduce_scatter) {
  std::vector<std::vector<FlatRange>> buckets(1);
  std::int64_t offset = 0, elements = 0;
  for (std::int64_t n : numels) {
    if (elements + n > bucket && elements > 0) {
      buckets.emplace_back();
      elements = 0;
    }
    buckets.back().push_back({offset, n});
    elements += n;
    offset += n;
  }
  std::vector<Chunk> out;
  for (const std::vector<FlatRange>& b : buckets) {
    if (!reduce_scatter) {
      // The bucket is all-reduced in place as one tensor.
      std::int64_t total = 0;
      for (const FlatRange& g : b)
        total += g.numel;
      if (total > 0) out.push_back({total, false});
      continue;
    }
    for (const Chunk& c : ipg_bucket_chunks(b, partition, bucket, true))
      out.push_back(c);
  }
  return out;
}

void parameters_in_order(const ModuleTree& tree, ModuleId module, std::vector<ParamId>& out,
                         std::vector<bool>& seen) {
  if (module == kNoModule) return;
  std::vector<ModuleId> stack = {module};
  while (!stack.empty()) {
    const ModuleId id = stack.back();
    stack.pop_back();
    for (const ParamSlot& slot : tree.module(id).params) {
      if (seen[static_cast<std::size_t>(slot.param)]) continue;
      seen[static_cast<std::size_t>(slot.param)] = true;
      out.push_back(slot.param);
    }
    const auto& kids = tree.module(id).children;
    for (auto it = kids.rbegin(); it != kids.rend(); ++it)
      stack.push_back(*it);
  }
}

std::vector<std::int64_t> allgather_shards(std::int64_t partition_numel, std::int64_t dp,
                                           std::int64_t allgather_bucket_size) {
  if (dp <= 1 || partition_numel <= 0) return {};
  const std::int64_t shards = std::max<std::int64_t>(
      1, partition_numel * dp / std::max<std::int64_t>(allgather_bucket_size, 1));
  std::int64_t shard = partition_numel / shards;
  shard -= shard % kNcclStartAlignmentFactor;
  std::vector<std::int64_t> out(static_cast<std::size_t>(shards), shard);
  out.back() = partition_numel - (shards - 1) * shard;
  return out;
}

}  // namespace zp::sim
