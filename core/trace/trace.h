// The trace of one run, simulated or measured: what each rank's streams did and when, and how its
// memory moved. The simulator writes one, the real executor writes one, the viewer reads both; the
// same categories and stream names make a prediction comparable with a measurement.
//
// Conventions:
//  - Times are integer nanoseconds from the start of the traced run.
//  - A trace rank is a rank class: one entry stands for every global rank listed in it (ranks
//    that are provably identical are simulated once). A measured trace has one rank per entry.
//  - Strings (module names, labels) are interned in `strings`; ops and markers refer to them by
//    index, so a trace of thousands of steps does not repeat names.
//  - Memory is recorded as changes: each sample gives one category's new total on one rank.
//
// Plain data: build it, then hand it to a writer (core/trace/native_format.h, chrome_trace.h).
// Not thread-safe for writing.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "core/config/document.h"

namespace zp::trace {

using TimeNs = std::int64_t;

// The streams of one rank, as on a GPU (plus the host thread that runs an offloaded optimizer).
enum class StreamKind : std::uint8_t {
  kCompute,
  kAllGather,
  kReduceScatter,
  kHostToDevice,
  kDeviceToHost,
  kPipeSend,
  kPipeRecv,
  kHost,
  kCount
};
inline constexpr std::size_t kStreamCount = static_cast<std::size_t>(StreamKind::kCount);

enum class OpKind : std::uint8_t {
  kForward,
  kBackward,
  kRecompute,
  kOptimizerStep,
  kAllGather,
  kReduceScatter,
  kAllReduce,
  kBroadcast,
  kSend,
  kRecv,
  kCopyToHost,
  kCopyToDevice,
  // The coordinator handing a gathered parameter back to its partition: instantaneous, on the
  // compute stream, with the parameter's gathered bytes. Not a collective.
  kRelease,
  kCount
};

// Collectives and copies: the ops that move bytes between ranks or devices (not compute, not a
// release).
constexpr bool is_transfer(OpKind kind) {
  return kind != OpKind::kForward && kind != OpKind::kBackward && kind != OpKind::kRecompute &&
         kind != OpKind::kOptimizerStep && kind != OpKind::kRelease;
}

// Where every byte of a rank sits. The device categories add up to what PyTorch counts as
// allocated; the host ones are the rank's share of host memory and NVMe.
enum class MemoryCategory : std::uint8_t {
  // Device.
  kParamPartitions,   // this rank's partition of each ZeRO-3 parameter (or whole parameters)
  kGatheredParams,    // all-gathered parameters while live, the flat buffer while a gather runs
  kPersistentParams,  // parameters below the persistence thresholds, kept whole
  kGradBuckets,       // the reduce bucket (contiguous_gradients) and gradients awaiting reduction
  kGradPartitions,    // this rank's partition of the gradients
  kMasterWeights,     // fp32 copy of the parameters (mixed precision)
  kOptimizerStates,   // Adam's moments, and the like
  kActivations,       // saved for backward, including checkpointed segments' inputs
  kRecompute,         // activations recomputed in backward, one segment at a time
  kPipeBuffers,       // pipeline send/receive buffers
  kCommBuffers,       // other communication scratch
  // Host and NVMe.
  kHostParams,       // offloaded parameters
  kHostOptimizer,    // offloaded master weights, optimizer states and gradient partitions
  kHostActivations,  // cpu_checkpointing
  kNvme,             // state swapped to NVMe
  kCount
};
inline constexpr std::size_t kMemoryCategoryCount =
    static_cast<std::size_t>(MemoryCategory::kCount);

constexpr bool on_device(MemoryCategory category) {
  return category < MemoryCategory::kHostParams;
}

// Stable lower-case names used in files and in the summary: "compute", "allgather",
// "param_partitions", "forward", ...
std::string_view to_string(StreamKind stream);
std::string_view to_string(OpKind kind);
std::string_view to_string(MemoryCategory category);
// The inverse of to_string; false when the name is unknown.
bool parse(std::string_view name, StreamKind& out);
bool parse(std::string_view name, OpKind& out);
bool parse(std::string_view name, MemoryCategory& out);

inline constexpr std::int32_t kNone = -1;

struct RankInfo {
  std::string label;                // "stage 0", "rank 3"
  std::vector<std::int64_t> ranks;  // the global ranks this entry stands for
  std::int32_t pipeline_stage = 0;
  bool operator==(const RankInfo&) const = default;
};

// A communicator.
struct GroupInfo {
  std::string axis;  // "data", "pipe", "model", "world", or a pair "pipe 0-1"
  std::int64_t size = 0;
  bool operator==(const GroupInfo&) const = default;
};

struct Op {
  std::int32_t rank = 0;  // index into Trace::ranks
  StreamKind stream = StreamKind::kCompute;
  OpKind kind = OpKind::kForward;
  TimeNs start = 0;
  TimeNs end = 0;
  std::int32_t name = kNone;  // index into Trace::strings: a module, "gather 12", "bucket 3"
  std::int64_t bytes = 0;     // collectives and copies: the collective's buffer, as in the docs
  std::int64_t flops = 0;     // compute
  std::int32_t step = 0;      // training step, from 0
  std::int32_t micro_batch = kNone;
  std::int32_t group = kNone;  // index into Trace::groups (collectives)
  // Index into Trace::strings: for a parameter gather (and its copies), the module whose fetch
  // issued it; for a release, the module that owns the parameter. kNone otherwise.
  std::int32_t module = kNone;
  // Index into Trace::strings: the parameters a gather or release moves, ", "-separated.
  std::int32_t params = kNone;
  bool operator==(const Op&) const = default;
};

struct MemorySample {
  std::int32_t rank = 0;
  TimeNs time = 0;
  MemoryCategory category = MemoryCategory::kActivations;
  std::int64_t bytes = 0;  // the category's total on this rank from `time` on
  bool operator==(const MemorySample&) const = default;
};

// One device allocation, live over [start, end): what the memory samples' totals are made of, so a
// viewer can list the largest tensors live at any time.
inline constexpr TimeNs kNever = INT64_MAX;  // the end of an allocation not freed in the trace
struct Allocation {
  std::int32_t rank = 0;  // index into Trace::ranks
  MemoryCategory category = MemoryCategory::kActivations;
  std::int64_t bytes = 0;  // as counted in the category's total (rounded when the allocator is)
  TimeNs start = 0;
  TimeNs end = kNever;  // kNever: still live when the trace ends
  // Index into Trace::strings: what the allocation holds, or else what was running when it was
  // made (a module, a phase); kNone when neither is known.
  std::int32_t name = kNone;
  bool operator==(const Allocation&) const = default;
};

// What the caching allocator holds from the device (allocated plus cached).
struct ReservedSample {
  std::int32_t rank = 0;
  TimeNs time = 0;
  std::int64_t bytes = 0;
  bool operator==(const ReservedSample&) const = default;
};

// A point in time worth a label: step boundaries, phase changes, warnings.
struct Marker {
  std::int32_t rank = kNone;  // kNone: every rank
  TimeNs time = 0;
  std::int32_t name = kNone;  // index into Trace::strings
  bool operator==(const Marker&) const = default;
};

enum class Source : std::uint8_t { kSimulated, kMeasured };
std::string_view to_string(Source source);

struct Trace {
  Source source = Source::kSimulated;
  // Free-form description: run name, model, cluster, settings, the summary. Writers keep it as is.
  Json metadata = Json::object();
  std::vector<std::string> strings;
  std::vector<RankInfo> ranks;
  std::vector<GroupInfo> groups;
  std::vector<Op> ops;
  std::vector<MemorySample> memory;
  std::vector<Allocation> allocations;  // device allocations (see Allocation)
  std::vector<ReservedSample> reserved;
  std::vector<Marker> markers;

  // The index of `text` in `strings`, adding it the first time.
  std::int32_t intern(std::string_view text);
  const std::string& string(std::int32_t index) const;

  bool operator==(const Trace& other) const;

 private:
  std::unordered_map<std::string, std::int32_t> index_;
};

// Appends `from`'s ranks, with their ops, memory samples, allocations and markers, to `into`: the
// traces that the ranks of one measured run write each become one. Strings are interned again and
// groups matched by axis and size; markers for every rank stay so. Metadata is `into`'s.
void append_ranks(Trace& into, const Trace& from);

}  // namespace zp::trace
