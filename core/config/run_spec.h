// A run spec: the model, the cluster, the training shape, the parallel layout and the DeepSpeed
// configuration of one training run, read from YAML and resolved into a validated whole.
// docs/run-spec.md documents every key.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "core/config/cluster.h"
#include "core/config/document.h"
#include "core/config/ds_config.h"
#include "core/model/model_config.h"
#include "core/model/module_tree.h"
#include "core/zero/settings.h"

namespace zp {

struct ModelSpec {
  enum class Kind { kPreset, kFamily, kFile };
  Kind kind = Kind::kPreset;
  std::string label;                  // preset name, family name, or the file as written
  std::optional<ModelConfig> config;  // preset and family models
  std::filesystem::path file;         // file models, resolved against the run spec's folder
};

struct TrainingShape {
  std::int64_t sequence_length = 0;
  std::int64_t micro_batch = 0;
  DType dtype = DType::kFloat32;
  // Without a pipeline: layers per segment that the training script wraps in
  // deepspeed.checkpointing.checkpoint (Megatron's --checkpoint-num-layers; 1 for Hugging Face's
  // gradient checkpointing); 0: no activation checkpointing. With a pipeline,
  // pipeline.activation_checkpoint_interval says it instead.
  std::int64_t checkpoint_interval = 0;
};

struct ParallelDegrees {
  std::int64_t data = 1;
  std::int64_t pipeline = 1;
  std::int64_t tensor = 1;
  std::int64_t world() const { return data * pipeline * tensor; }
};

struct RunSpec {
  std::filesystem::path file;
  std::string name;
  ModelSpec model;
  ModuleTree tree;  // built (or read and rescaled) for the training shape
  ClusterSpec cluster;
  TrainingShape training;
  ParallelDegrees parallel;
  DeepSpeedConfig deepspeed;
  std::filesystem::path deepspeed_file;  // empty when written inline
  // What the training script sets outside the DeepSpeed config: the classes given to
  // deepspeed.utils.set_z3_leaf_modules, and the DeepSpeed version whose behaviour to reproduce.
  std::vector<std::string> z3_leaf_modules;
  zero::DeepSpeedVersion deepspeed_version = zero::DeepSpeedVersion::kCurrent;
  Provenance provenance;                 // run-spec settings: training, parallel, cluster
  std::vector<Warning> warnings;         // the run spec's and the DeepSpeed config's

  // The ZeRO-3 settings of this run: the DeepSpeed config's, over the data-parallel group.
  zero::ZeroSettings zero_settings() const;
};

RunSpec load_run_spec(const std::filesystem::path& path);
// `base_dir` resolves relative paths (model files, the DeepSpeed config).
RunSpec parse_run_spec(const Document& doc, const std::filesystem::path& base_dir);

// Scales a tree's per-call costs from the batch shape it was measured for to `shape` (linearly in
// tokens, and in activation element size when the dtype differs) and gives floating-point
// parameters the training dtype, as DeepSpeed casts the module. Exact for shapes equal to the
// tree's; otherwise an approximation that ignores terms quadratic in sequence length.
ModuleTree rescale_tree(const ModuleTree& tree, const BatchShape& shape);

}  // namespace zp
