// A DeepSpeed configuration (ds_config.json) resolved exactly as DeepSpeed resolves it.
//
// Sources of truth: DeepSpeed's DeepSpeedZeroConfig and offload configs (pydantic models: every
// field, its default, its alias, its >= 0 check, unknown keys rejected, "auto" meaning the default,
// the deprecated keys mapped to their replacements), DeepSpeedConfig's batch inference and checks,
// the activation checkpointing rules of deepspeed.checkpointing.configure(), the pipeline section,
// bf16/fp16. Sections that DeepSpeed reads without validating (top level, activation_checkpointing,
// pipeline, fp16, bf16) report unknown keys as warnings, since DeepSpeed would silently ignore
// them.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/config/document.h"
#include "core/config/provenance.h"
#include "core/model/dtype.h"

namespace zp {

enum class OffloadDevice { kNone, kCpu, kNvme };
std::string_view to_string(OffloadDevice device);

struct OffloadParamConfig {
  OffloadDevice device = OffloadDevice::kNone;
  std::optional<std::string> nvme_path;
  std::int64_t buffer_count = 5;
  std::int64_t buffer_size = 100'000'000;
  std::int64_t max_in_cpu = 1'000'000'000;
  bool pin_memory = false;
};

struct OffloadOptimizerConfig {
  OffloadDevice device = OffloadDevice::kNone;
  std::optional<std::string> nvme_path;
  std::int64_t buffer_count = 4;
  bool pin_memory = false;
  bool pipeline_read = false;
  bool pipeline_write = false;
  bool fast_init = false;
  double ratio = 1.0;  // fraction of optimizer states offloaded; < 1 needs stage 3
  bool pipeline() const { return pipeline_read || pipeline_write; }
};

// zero_optimization. Field names follow DeepSpeed's model; the keys users write for the aliased
// ones are the stage3_* spellings (both spellings are accepted, not both at once).
struct ZeroConfig {
  int stage = 0;
  bool contiguous_gradients = true;
  bool reduce_scatter = true;
  std::int64_t reduce_bucket_size = 500'000'000;
  bool use_multi_rank_bucket_allreduce = true;
  bool allgather_partitions = true;
  std::int64_t allgather_bucket_size = 500'000'000;
  bool overlap_comm = false;  // DeepSpeed's default: true for stage 3 only
  bool load_from_fp32_weights = true;
  bool elastic_checkpoint = false;
  std::optional<OffloadParamConfig> offload_param;
  std::optional<OffloadOptimizerConfig> offload_optimizer;
  std::int64_t sub_group_size = 1'000'000'000;
  std::optional<bool> cpu_offload_use_pin_memory;  // deprecated, no effect
  std::int64_t prefetch_bucket_size = 50'000'000;
  std::int64_t param_persistence_threshold = 100'000;
  std::int64_t model_persistence_threshold = INT64_MAX;  // sys.maxsize
  std::int64_t max_live_parameters = 1'000'000'000;
  std::int64_t max_reuse_distance = 1'000'000'000;
  bool gather_16bit_weights_on_model_save = false;
  std::int64_t module_granularity_threshold = 0;  // no >= 0 check in DeepSpeed
  bool use_all_reduce_for_fetch_params = false;
  bool ignore_unused_parameters = true;
  bool legacy_stage1 = false;
  bool round_robin_gradients = false;
  std::int64_t zero_hpz_partition_size = 1;
  bool zero_quantized_weights = false;
  bool zero_quantized_nontrainable_weights = false;
  bool zero_quantized_gradients = false;
  std::optional<Json> zeropp_loco_param;
  std::int64_t mics_shard_size = -1;
  bool mics_hierarchical_params_gather = false;
  bool memory_efficient_linear = true;
  bool pipeline_loading_checkpoint = false;
  bool override_module_apply = true;
  bool log_trace_cache_warnings = false;
};

struct ActivationCheckpointingConfig {
  bool partition_activations = false;
  bool contiguous_memory_optimization = false;
  bool cpu_checkpointing = false;
  std::optional<std::int64_t> number_checkpoints;
  bool synchronize_checkpoint_boundary = false;
  bool profile = false;
};

struct PipelineConfig {
  std::optional<std::int64_t> stages;  // nullopt: "auto", i.e. the run's pipeline degree
  std::string partition = "parameters";
  bool seed_layers = false;
  std::int64_t activation_checkpoint_interval = 0;
  bool pipe_partitioned = true;
  bool grad_partitioned = true;
  std::optional<bool> use_reentrant;  // DeepSpeed sets true when checkpointing and unset
};

struct Fp16Config {
  bool enabled = false;
  bool auto_cast = false;
  double loss_scale = 0;  // 0: dynamic
  std::int64_t initial_scale_power = 16;
  std::int64_t loss_scale_window = 1000;
  std::int64_t hysteresis = 2;
  bool consecutive_hysteresis = false;
  double min_loss_scale = 1;
  bool fp16_master_weights_and_grads = false;
};

struct Bf16Config {
  bool enabled = false;
  bool immediate_grad_update = false;
};

struct BatchConfig {
  std::int64_t train_batch_size = 0;
  std::int64_t micro_batch_per_gpu = 0;
  std::int64_t gradient_accumulation_steps = 0;
};

// What the run spec knows that resolving a DeepSpeed config needs.
struct DeepSpeedContext {
  std::int64_t data_parallel_size = 1;  // DeepSpeed's world_size for the batch rule
  std::int64_t pipeline_parallel_size = 1;
  std::optional<std::int64_t> micro_batch;  // training.micro_batch
  std::optional<DType> dtype;               // training.dtype
  std::string run_spec_file;                // for messages about conflicts with the run spec
};

struct DeepSpeedConfig {
  Json original;  // as written, so that output configs keep the user's own keys
  ZeroConfig zero;
  ActivationCheckpointingConfig activation_checkpointing;
  PipelineConfig pipeline;
  Fp16Config fp16;
  Bf16Config bf16;
  bool amp_enabled = false;
  BatchConfig batch;
  std::optional<std::string> optimizer_type;
  std::optional<DType> grad_accum_dtype;  // data_types.grad_accum_dtype
  Provenance provenance;
  std::vector<Warning> warnings;

  // The dtype the model computes in: bf16, fp16 or fp32.
  DType compute_dtype() const;
};

// Resolves `root` (a ds_config mapping). Throws UserError on input DeepSpeed would reject.
DeepSpeedConfig parse_deepspeed_config(const Node& root, const DeepSpeedContext& context);

// The resolved configuration as a ds_config.json DeepSpeed accepts: the user's keys kept, every
// modelled key set to its resolved value in DeepSpeed's canonical spelling, deprecated keys
// replaced by what they mean.
Json deepspeed_config_to_json(const DeepSpeedConfig& config);

}  // namespace zp
