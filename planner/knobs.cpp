#include "planner/knobs.h"

namespace zp::planner {

const std::vector<Knob>& knobs() {
  using enum KnobKind;
  constexpr KnobHome ds = KnobHome::kDeepSpeed, run = KnobHome::kRunSpec;
  static const std::vector<Knob> all = {
      {"max_live_parameters", ds, "zero_optimization.stage3_max_live_parameters", kCount,
       "more gathered parameters kept live: fewer re-gathers, more memory"},
      {"max_reuse_distance", ds, "zero_optimization.stage3_max_reuse_distance", kCount,
       "keeps parameters reused soon: less traffic, more memory"},
      {"prefetch_bucket_size", ds, "zero_optimization.stage3_prefetch_bucket_size", kCount,
       "gathers further ahead: hides latency, holds more memory"},
      {"param_persistence_threshold", ds, "zero_optimization.stage3_param_persistence_threshold",
       kCount, "keeps small parameters whole: fewer small gathers, more memory"},
      {"model_persistence_threshold", ds, "zero_optimization.stage3_model_persistence_threshold",
       kCount, "caps the total kept whole"},
      {"module_granularity_threshold", ds, "zero_optimization.stage3_module_granularity_threshold",
       kCount, "gathers fine-grained modules as one unit: fewer hooks and gathers"},
      {"reduce_bucket_size", ds, "zero_optimization.reduce_bucket_size", kCount,
       "larger gradient reductions: better bandwidth, a larger buffer"},
      {"overlap_comm", ds, "zero_optimization.overlap_comm", kBoolean,
       "overlaps communication with compute: faster, extra buffers"},
      {"contiguous_gradients", ds, "zero_optimization.contiguous_gradients", kBoolean,
       "copies gradients into one buffer: less fragmentation"},
      {"checkpoint_interval", ds, "pipeline.activation_checkpoint_interval", kCount,
       "layers per checkpointed segment: fewer saved activations, more recompute"},
      {"partition_activations", ds, "activation_checkpointing.partition_activations", kBoolean,
       "splits checkpoints over model-parallel ranks: less memory, an all-gather in backward"},
      {"cpu_checkpointing", ds, "activation_checkpointing.cpu_checkpointing", kBoolean,
       "moves checkpoints to the host: less GPU memory, PCIe traffic"},
      {"offload_param", ds, "zero_optimization.offload_param.device", kChoice,
       "parameters on the host or NVMe: less GPU memory, PCIe/NVMe traffic"},
      {"offload_optimizer", ds, "zero_optimization.offload_optimizer.device", kChoice,
       "optimizer states and step on the host: less GPU memory, host compute"},
      {"micro_batch", ds, "train_micro_batch_size_per_gpu", kCount,
       "larger micro-batches: better utilisation, more activation memory"},
      {"gradient_accumulation", ds, "gradient_accumulation_steps", kCount,
       "more micro-batches per step at a fixed global batch"},
      {"pipeline_stages", run, "parallel.pipeline", kCount,
       "splits layers over stages: less memory per GPU, a pipeline bubble"},
      {"partition_method", ds, "pipeline.partition", kChoice, "how layers are assigned to stages"},
  };
  return all;
}

const Knob* find_knob(std::string_view name) {
  for (const Knob& k : knobs()) {
    if (k.name == name) return &k;
  }
  return nullptr;
}

}  // namespace zp::planner
