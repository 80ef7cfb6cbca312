// The ZeRO-3 settings the coordinator and the gradient reducer act on, taken from a resolved
// DeepSpeed config and the run spec, plus which DeepSpeed version's behaviour to reproduce.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/config/ds_config.h"

namespace zp::zero {

// DeepSpeed changed the coordinator between v0.14 and v0.16 (see docs/zero3.md, "Versions").
enum class DeepSpeedVersion {
  kV0_14,    // v0.14.x: starts in RECORD; the available counter is reset by reset_step; in-flight
             // parameters at a step boundary are an error
  kCurrent,  // v0.16.x: starts INVALID and resets the step at the start of every forward; the
             // counter is reset by release_and_reset_all; in-flight parameters are drained
};

std::string_view to_string(DeepSpeedVersion version);
// "0.14", "0.14.5", "0.16", "0.16.4", "current".
std::optional<DeepSpeedVersion> parse_deepspeed_version(std::string_view text);

struct ZeroSettings {
  std::int64_t data_parallel_size = 1;
  std::int64_t prefetch_bucket_size = 50'000'000;
  std::int64_t max_live_parameters = 1'000'000'000;
  std::int64_t max_reuse_distance = 1'000'000'000;
  std::int64_t param_persistence_threshold = 100'000;
  std::int64_t model_persistence_threshold = INT64_MAX;
  std::int64_t module_granularity_threshold = 0;
  std::int64_t reduce_bucket_size = 500'000'000;
  bool reduce_scatter = true;
  bool contiguous_gradients = true;
  bool overlap_comm = true;
  bool log_trace_cache_warnings = false;
  bool use_all_reduce_for_fetch_params = false;
  DType compute_dtype = DType::kFloat32;
  DType grad_accum_dtype = DType::kFloat32;  // data_types.grad_accum_dtype, or the compute dtype
  OffloadDevice offload_optimizer = OffloadDevice::kNone;
  bool offload_optimizer_pin_memory = false;
  // Classes given to deepspeed.utils.set_z3_leaf_modules (by class name).
  std::vector<std::string> leaf_module_classes;
  DeepSpeedVersion version = DeepSpeedVersion::kCurrent;

  // stage3_module_granularity_threshold > 0 in v0.16 also turns on fast sharding for leaf modules:
  // their gathered buffers are dropped without waiting on the release.
  bool fast_sharding_for_leaf_modules() const {
    return version == DeepSpeedVersion::kCurrent && module_granularity_threshold > 0;
  }

  static ZeroSettings from(const DeepSpeedConfig& config, std::int64_t data_parallel_size);
  bool operator==(const ZeroSettings&) const = default;
};

}  // namespace zp::zero
