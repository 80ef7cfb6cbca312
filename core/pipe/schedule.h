// Pipeline schedules: for each stage, the stream of steps (each a list of instructions) that a
// pipeline engine executes for one batch, and what a stream implies for memory and idle time.
//
// Four schedules:
//  - kTrain and kInference: DeepSpeed v0.16.4's TrainSchedule (synchronous 1F1B) and
//    InferenceSchedule (deepspeed/runtime/pipe/schedule.py), step for step, buffer ids included.
//  - kGPipe: fill-drain (GPipe, Huang et al. 2019): every forward, then every backward, in
//    DeepSpeed's lock-step form.
//  - kInterleaved: Megatron-LM's interleaved 1F1B (Narayanan et al. 2021, section 2.2.2) with
//    `chunks` model chunks per device.
//
// The streams are plain data; every function here is pure and thread-compatible. Bad input
// (zero stages, no micro-batches, an interleaved batch that Megatron-LM would reject) throws
// UserError; a stream that breaks its own invariants raises InternalError.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace zp::pipe {

// The instruction classes of DeepSpeed's schedule.py, in its order.
enum class InstructionKind : std::uint8_t {
  kLoadMicroBatch,
  kForwardPass,
  kBackwardPass,
  kSendActivation,
  kRecvActivation,
  kSendGrad,
  kRecvGrad,
  kReduceTiedGrads,
  kReduceGrads,
  kOptimizerStep,
};

// DeepSpeed's class name ("ForwardPass").
std::string_view to_string(InstructionKind kind);

// True for the kinds that act on a pipeline buffer (DeepSpeed's BufferOpInstruction); false for
// the three batch-level ones (ReduceTiedGrads, ReduceGrads, OptimizerStep).
bool acts_on_buffer(InstructionKind kind);

struct Instruction {
  InstructionKind kind = InstructionKind::kForwardPass;
  // The pipeline buffer, as DeepSpeed numbers it; -1 for a batch-level instruction.
  int buffer_id = -1;
  // Which micro-batch of the batch the instruction moves or computes (0-based); -1 for a
  // batch-level instruction. DeepSpeed does not carry it; its generators know it, and a replay
  // needs it, since buffers are reused.
  int micro_batch = -1;
  // Model chunk on this device, Megatron-LM's numbering: chunk c of device d is virtual stage
  // c * stages + d. Always 0 outside kInterleaved.
  int chunk = 0;

  friend bool operator==(const Instruction&, const Instruction&) = default;
};

// DeepSpeed's repr: "ForwardPass(buffer_id=0)", "OptimizerStep()"; ", chunk=c" is added for a
// chunk other than 0.
std::string to_string(const Instruction& instruction);

using Step = std::vector<Instruction>;

enum class ScheduleKind : std::uint8_t { kTrain, kInference, kGPipe, kInterleaved };

std::string_view to_string(ScheduleKind kind);

struct ScheduleSpec {
  ScheduleKind kind = ScheduleKind::kTrain;
  int micro_batches = 1;  // m, DeepSpeed's gradient_accumulation_steps
  int stages = 1;         // p, the pipeline-parallel degree
  int chunks = 1;         // v, model chunks per device: 1, or at least 2 for kInterleaved
};

// Throws UserError unless stages >= 1, micro_batches >= 1, chunks == 1 for the non-interleaved
// kinds, and, for kInterleaved, chunks >= 2 and micro_batches a multiple of stages (Megatron-LM
// asserts both).
void validate(const ScheduleSpec& spec);

// One stage's schedule for one batch.
struct StageSchedule {
  int stage = 0;
  int num_pipe_buffers = 0;  // buffers the engine allocates; every buffer_id is below it
  std::vector<Step> steps;
};

// How many buffers the stage needs: DeepSpeed's num_pipe_buffers for kTrain
// (max(2, min(p - s, m))) and kInference (2); m for kGPipe (one per micro-batch); for
// kInterleaved the peak number of (chunk, micro-batch) activations held, since a buffer is reused
// as soon as its backward is done.
int num_pipe_buffers(const ScheduleSpec& spec, int stage);

// The stream of `stage`. Throws UserError for an invalid spec or a stage outside [0, stages).
// kTrain, kInference and kGPipe are lock-step: a send and the receive it pairs with sit in the
// same step index on the two stages, so a barrier between steps cannot deadlock (DeepSpeed's
// contract); kTrain and kGPipe have 2(m + p - 1) steps, kInference m + p - 1. kInterleaved has one
// compute instruction per step, in Megatron-LM's order, with the transfers it needs around it;
// its steps are not aligned across devices. Cost O(steps).
StageSchedule stage_schedule(const ScheduleSpec& spec, int stage);

// Every stage's stream, by stage.
std::vector<StageSchedule> pipeline_schedule(const ScheduleSpec& spec);

// ---- Activations in flight ---------------------------------------------------------------------

struct HeldActivation {
  int chunk = 0;
  int micro_batch = 0;
  friend bool operator==(const HeldActivation&, const HeldActivation&) = default;
};

// The most (chunk, micro-batch) activations a stage keeps for backward at one time.
struct ActivationPeak {
  int count = 0;
  int step = -1;                     // the step that first reached it; -1 when count is 0
  std::vector<HeldActivation> held;  // what is held then, in forward order
};

// Replays a stream: a forward's activations are held from its ForwardPass until the BackwardPass
// of the same (chunk, micro-batch). A forward that has no backward in the stream (inference)
// keeps nothing for backward. For kInterleaved each entry is one chunk's share, 1/v of what one
// micro-batch costs a non-interleaved stage.
ActivationPeak replay_activation_peak(const StageSchedule& schedule);

// Megatron-LM's warmup forward count for the interleaved schedule on device `stage`:
// all v * m when m == p, else min(2 (p - s - 1) + (v - 1) p, v * m).
int interleaved_warmup(int micro_batches, int stages, int chunks, int stage);

// The closed forms for the replay's count: 0 for kInference (nothing kept for backward);
// min(p - s, m) for kTrain; m for kGPipe; for kInterleaved the warmup forwards plus the one
// forward that steady 1F1B runs before its first backward (v * m when all are warmup).
int peak_in_flight(const ScheduleSpec& spec, int stage);

// ---- Bubble ------------------------------------------------------------------------------------

// An exact fraction in lowest terms (denominator > 0), so replay and closed form compare exactly.
struct Ratio {
  std::int64_t numerator = 0;
  std::int64_t denominator = 1;

  static Ratio of(std::int64_t numerator, std::int64_t denominator);
  double value() const { return static_cast<double>(numerator) / static_cast<double>(denominator); }
  friend bool operator==(const Ratio&, const Ratio&) = default;
};

// Time units one pass of one micro-batch through one model chunk takes (a whole stage when v = 1).
struct PassCosts {
  std::int64_t forward = 1;
  std::int64_t backward = 2;
};

// The timing of a replay: each device runs its ForwardPass and BackwardPass instructions in
// stream order, each as soon as the device is free and its input exists (the forward of the
// previous virtual stage, the backward of the next one, or its own forward on the last virtual
// stage). Communication, loads and the batch-level instructions take no time.
struct BubbleReport {
  std::int64_t makespan = 0;       // from time 0 to the end of the last pass
  std::vector<std::int64_t> busy;  // per stage, time spent in passes

  // Idle time summed over the stages: sum of (makespan - busy).
  std::int64_t idle() const;
  // Idle over total device time, idle / (p * makespan): the fraction of the step a device waits.
  Ratio over_total() const;
  // Idle over ideal time, idle / sum(busy): Megatron-LM's "bubble time fraction".
  Ratio over_ideal() const;
};

// Builds every stage's stream and replays it under `costs` (both must be >= 1; UserError
// otherwise). Cost O(p * passes) in the worst case.
BubbleReport replay_bubble(const ScheduleSpec& spec, const PassCosts& costs = {});

// The closed forms, with the same two normalisations. With p stages, m micro-batches, v chunks
// (v = 1 but for kInterleaved): bubble time (p - 1) (t_f + t_b) / v against ideal time
// m (t_f + t_b) (Megatron-LM, eq. for t_pb^int), so
//   over_ideal = (p - 1) / (v m)          and      over_total = (p - 1) / (v m + p - 1).
// For v = 1, over_total is GPipe's (p - 1) / (m + p - 1), which 1F1B shares. The replay matches
// both exactly whenever every pass of a kind costs the same on every stage, whatever the
// forward:backward ratio (t_b = 0 for kInference).
struct BubbleFractions {
  Ratio over_total;
  Ratio over_ideal;
};
BubbleFractions closed_form_bubble(const ScheduleSpec& spec);

}  // namespace zp::pipe
