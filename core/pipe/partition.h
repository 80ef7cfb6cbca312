// Which layers each pipeline stage owns: DeepSpeed's PipelineModule._partition_layers.
//
// A partition of n layers over m stages is a list of m + 1 boundaries; stage s owns layers
// [b[s], b[s + 1]). Boundaries are what DeepSpeed v0.16.4 computes, to the entry:
//  - partition_uniform: when n <= m, stage s < n gets layer s and the rest get none; otherwise
//    every stage gets n / m layers and the first n % m stages one more.
//  - partition_balanced: when n <= m, partition_uniform. Otherwise DeepSpeed's dynamic program over
//    (layers so far, stages so far) that keeps, for each state, one predecessor chosen to minimise
//    (largest part - smallest part) of the parts so far; among equal costs the last (largest) split
//    wins. It is a heuristic: it neither minimises the largest part nor the spread exactly.
// Methods, parsed as DeepSpeed does after lower-casing the whole string:
//  - "uniform": partition_uniform over the layer count;
//  - "parameters" (DeepSpeed's default): partition_balanced over each layer's trainable parameters;
//  - "type:REGEX": partition_balanced over 1 for each layer whose type the regex finds (search,
//    case-insensitive) and 0 otherwise; REGEX is the text up to the next ':' and is lower-cased
//    with the rest, so "type:\S" means "type:\s" as in DeepSpeed. No matching layer is an error;
//  - "profile": DeepSpeed raises NotImplementedError; here partition_balanced over per-layer time;
//  - "memory" (zeroplan's): the partition whose largest stage peak is smallest, where a stage's
//    peak is what its layers hold for good (parameters, gradients, optimizer states) plus their
//    activations times the micro-batches the stage holds at once (1F1B: p - s for stage s), so
//    early stages, which hold more micro-batches, get fewer layers. Always exact.
// With PartitionCosts::exact, "parameters" and "profile" use partition_min_max instead.
//
// Pure functions over values; safe from many threads.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/pipe/layers.h"
#include "core/util/error.h"

namespace zp::pipe {

// DeepSpeed's ds_utils.partition_uniform. UserError when num_items < 0 or num_parts < 1.
std::vector<std::int64_t> partition_uniform(std::int64_t num_items, std::int64_t num_parts);

// DeepSpeed's ds_utils.partition_balanced. O(n^2 m) time, O(n m) memory. DeepSpeed sums in float64;
// this sums exactly in int64, which agrees while totals stay below 2^53. UserError when num_parts <
// 1, a weight is negative or the total overflows int64.
std::vector<std::int64_t> partition_balanced(const std::vector<std::int64_t>& weights,
                                             std::int64_t num_parts);

// A contiguous partition whose heaviest part is as light as possible. When n <= m it is
// partition_uniform (one layer per stage is optimal). Otherwise every part is non-empty and, among
// optimal partitions, each stage in turn takes as many layers as it can. O(n log(total)) time.
// Same errors as partition_balanced.
std::vector<std::int64_t> partition_min_max(const std::vector<std::int64_t>& weights,
                                            std::int64_t num_parts);

// The weight of the heaviest part.
std::int64_t max_part_weight(const std::vector<std::int64_t>& weights,
                             const std::vector<std::int64_t>& boundaries);

// DeepSpeed's PipelineModule.stage_owner: the first stage s with b[s] <= layer < b[s + 1].
// UserError when the layer is outside [0, b.back()).
std::int64_t stage_owner(const std::vector<std::int64_t>& boundaries, std::int64_t layer);

enum class PartitionKind : std::uint8_t { kUniform, kParameters, kType, kProfile, kMemory };

struct PartitionMethod {
  PartitionKind kind = PartitionKind::kParameters;
  std::string type_regex;  // kType only: lower-cased, as DeepSpeed matches it

  // "uniform", "parameters", "type:<regex>", "profile", "memory".
  std::string str() const;
  bool operator==(const PartitionMethod&) const = default;
};

// Parses DeepSpeed's partition_method string. UserError (naming the method) for an unknown method
// or a regex that std::regex (ECMAScript) rejects.
PartitionMethod parse_partition_method(std::string_view text);

// What "memory" balances.
struct StageMemoryCosts {
  std::vector<std::int64_t> static_bytes;      // per layer: held for the whole step
  std::vector<std::int64_t> activation_bytes;  // per layer and micro-batch: held until backward
  std::vector<std::int64_t> in_flight;         // per stage: micro-batches held at the stage's peak
};

// A stage's peak under `costs`: static bytes plus in-flight micro-batches times activations.
std::int64_t stage_memory_peak(const StageMemoryCosts& costs,
                               const std::vector<std::int64_t>& boundaries, std::int64_t stage);
// The contiguous partition minimising the largest stage_memory_peak; every stage gets a layer when
// there are enough. O(stages x layers^2) time.
std::vector<std::int64_t> partition_memory(const StageMemoryCosts& costs, std::int64_t num_stages);

// What the cost-driven methods balance, one entry per layer, and how.
struct PartitionCosts {
  std::optional<std::vector<std::int64_t>> time_ns;  // "profile": forward + backward time
  std::optional<StageMemoryCosts> memory;            // "memory"
  // Replace DeepSpeed's heuristic by partition_min_max for "parameters" and "profile". "uniform"
  // and "type:" always follow DeepSpeed; "memory" is always exact.
  bool exact = false;
};

struct PipelinePartition {
  std::vector<std::int64_t> boundaries;  // num_stages + 1 entries
  std::vector<std::int64_t> weights;     // what was balanced, per layer; empty for "uniform"
  std::vector<Warning> warnings;         // one per stage left without layers

  std::int64_t num_stages() const { return static_cast<std::int64_t>(boundaries.size()) - 1; }
  std::int64_t stage_begin(std::int64_t stage) const;  // first layer of `stage`
  std::int64_t stage_end(std::int64_t stage) const;    // one past its last layer
};

// Partitions `layers` over `num_stages` stages. UserError when num_stages < 1, a "type:" regex
// finds no layer (DeepSpeed's "Partitioning '<regex>' found no valid layers to partition."), or
// the costs the method needs are missing, of the wrong length or negative.
PipelinePartition partition_layers(const PipelineLayers& layers, std::int64_t num_stages,
                                   const PartitionMethod& method, const PartitionCosts& costs = {});

}  // namespace zp::pipe
