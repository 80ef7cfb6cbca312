#include "core/zero/settings.h"

namespace zp::zero {

std::string_view to_string(DeepSpeedVersion version) {
  switch (version) {
    case DeepSpeedVersion::kV0_14:
      return "0.14";
    case DeepSpeedVersion::kCurrent:
      return "0.16";
  }
  return "?";
}

std::optional<DeepSpeedVersion> parse_deepspeed_version(std::string_view text) {
  if (text == "current" || text == "0.16" || text.starts_with("0.16."))
    return DeepSpeedVersion::kCurrent;
  if (text == "0.14" || text.starts_with("0.14.")) return DeepSpeedVersion::kV0_14;
  return std::nullopt;
}

ZeroSettings ZeroSettings::from(const DeepSpeedConfig& config, std::int64_t data_parallel_size) {
  const ZeroConfig& zero = config.zero;
  ZeroSettings s;
  s.data_parallel_size = data_parallel_size;
  s.prefetch_bucket_size = zero.prefetch_bucket_size;
  s.max_live_parameters = zero.max_live_parameters;
  s.max_reuse_distance = zero.max_reuse_distance;
  s.param_persistence_threshold = zero.param_persistence_threshold;
  s.model_persistence_threshold = zero.model_persistence_threshold;
  s.module_granularity_threshold = zero.module_granularity_threshold;
  s.reduce_bucket_size = zero.reduce_bucket_size;
  s.reduce_scatter = zero.reduce_scatter;
  s.contiguous_gradients = zero.contiguous_gradients;
  s.overlap_comm = zero.overlap_comm;
  s.log_trace_cache_warnings = zero.log_trace_cache_warnings;
  s.use_all_reduce_for_fetch_params = zero.use_all_reduce_for_fetch_params;
  s.compute_dtype = config.compute_dtype();
  // DeepSpeed's engine: with ZeRO, gradients accumulate in the model's dtype unless data_types
  // says.
  s.grad_accum_dtype = config.grad_accum_dtype.value_or(s.compute_dtype);
  if (zero.offload_optimizer) {
    s.offload_optimizer = zero.offload_optimizer->device;
    s.offload_optimizer_pin_memory = zero.offload_optimizer->pin_memory;
  }
  return s;
}

}  // namespace zp::zero
