#include "core/pipe/schedule.h"

#include <gtest/gtest.h>

#include <cstddef>
#include <map>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "core/util/error.h"

namespace zp::pipe {
namespace {

// A stream in one line: steps joined by " | ", "-" for an empty step, each instruction as
// CODE<buffer_id>@<micro-batch>, with "/c<chunk>" for a chunk other than 0, or the bare CODE of a
// batch-level instruction.
std::string code(InstructionKind kind) {
  switch (kind) {
    case InstructionKind::kLoadMicroBatch:
      return "LD";
    case InstructionKind::kForwardPass:
      return "FW";
    case InstructionKind::kBackwardPass:
      return "BW";
    case InstructionKind::kSendActivation:
      return "SA";
    case InstructionKind::kRecvActivation:
      return "RA";
    case InstructionKind::kSendGrad:
      return "SG";
    case InstructionKind::kRecvGrad:
      return "RG";
    case InstructionKind::kReduceTiedGrads:
      return "RTG";
    case InstructionKind::kReduceGrads:
      return "RDG";
    case InstructionKind::kOptimizerStep:
      return "OPT";
  }
  return "?";
}

std::string compact(const StageSchedule& schedule) {
  std::string out;
  for (std::size_t t = 0; t < schedule.steps.size(); ++t) {
    if (t > 0) out += " | ";
    if (schedule.steps[t].empty()) out += "-";
    for (std::size_t k = 0; k < schedule.steps[t].size(); ++k) {
      const Instruction& i = schedule.steps[t][k];
      if (k > 0) out += " ";
      out += code(i.kind);
      if (!acts_on_buffer(i.kind)) continue;
      out += std::to_string(i.buffer_id) + "@" + std::to_string(i.micro_batch);
      if (i.chunk != 0) out += "/c" + std::to_string(i.chunk);
    }
  }
  return out;
}

struct Expected {
  int micro_batches;
  int stages;
  int stage;
  int buffers;
  const char* stream;
};

// Printed by running DeepSpeed v0.16.4's deepspeed/runtime/pipe/schedule.py (TrainSchedule, with
// only its call_to_str import stubbed) under python3; buffers is its num_pipe_buffers(), and the
// micro-batch of each instruction is the one its generator computed for that step
// (_step_to_micro_batch; a send carries the previous step's micro-batch).
const Expected kDeepSpeedTrain[] = {
    {1, 1, 0, 2, "LD0@0 FW0@0 | BW0@0 RTG RDG OPT"},
    {4, 2, 0, 2,
     "LD0@0 FW0@0 | SA0@0 | LD1@1 FW1@1 | RG0@0 SA1@1 BW0@0 | LD0@2 FW0@2 | RG1@1 SA0@2 BW1@1 | "
     "LD1@3 FW1@3 | RG0@2 SA1@3 BW0@2 | - | RG1@3 BW1@3 RTG RDG OPT"},
    {4, 2, 1, 2,
     "- | RA0@0 LD0@0 FW0@0 | BW0@0 | SG0@0 RA1@1 LD1@1 FW1@1 | BW1@1 | SG1@1 RA0@2 LD0@2 FW0@2 | "
     "BW0@2 | SG0@2 RA1@3 LD1@3 FW1@3 | BW1@3 | SG1@3 RTG RDG OPT"},
    {3, 4, 0, 3,
     "LD0@0 FW0@0 | SA0@0 | LD1@1 FW1@1 | SA1@1 | LD2@2 FW2@2 | SA2@2 | - | RG0@0 BW0@0 | - | "
     "RG1@1 BW1@1 | - | RG2@2 BW2@2 RTG RDG OPT"},
    {3, 4, 1, 3,
     "- | RA0@0 FW0@0 | SA0@0 | RA1@1 FW1@1 | SA1@1 | RA2@2 FW2@2 | RG0@0 SA2@2 BW0@0 | SG0@0 | "
     "RG1@1 BW1@1 | SG1@1 | RG2@2 BW2@2 | SG2@2 RTG RDG OPT"},
    {3, 4, 2, 2,
     "- | - | RA0@0 FW0@0 | SA0@0 | RA1@1 FW1@1 | RG0@0 SA1@1 BW0@0 | SG0@0 RA0@2 FW0@2 | RG1@1 "
     "SA0@2 BW1@1 | SG1@1 | RG0@2 BW0@2 | SG0@2 | RTG RDG OPT"},
    {3, 4, 3, 2,
     "- | - | - | RA0@0 LD0@0 FW0@0 | BW0@0 | SG0@0 RA1@1 LD1@1 FW1@1 | BW1@1 | SG1@1 RA0@2 LD0@2 "
     "FW0@2 | BW0@2 | SG0@2 | - | RTG RDG OPT"},
    {8, 4, 0, 4,
     "LD0@0 FW0@0 | SA0@0 | LD1@1 FW1@1 | SA1@1 | LD2@2 FW2@2 | SA2@2 | LD3@3 FW3@3 | RG0@0 SA3@3 "
     "BW0@0 | LD0@4 FW0@4 | RG1@1 SA0@4 BW1@1 | LD1@5 FW1@5 | RG2@2 SA1@5 BW2@2 | LD2@6 FW2@6 | "
     "RG3@3 SA2@6 BW3@3 | LD3@7 FW3@7 | RG0@4 SA3@7 BW0@4 | - | RG1@5 BW1@5 | - | RG2@6 BW2@6 | - "
     "| RG3@7 BW3@7 RTG RDG OPT"},
    {8, 4, 1, 3,
     "- | RA0@0 FW0@0 | SA0@0 | RA1@1 FW1@1 | SA1@1 | RA2@2 FW2@2 | RG0@0 SA2@2 BW0@0 | SG0@0 "
     "RA0@3 FW0@3 | RG1@1 SA0@3 BW1@1 | SG1@1 RA1@4 FW1@4 | RG2@2 SA1@4 BW2@2 | SG2@2 RA2@5 FW2@5 "
     "| RG0@3 SA2@5 BW0@3 | SG0@3 RA0@6 FW0@6 | RG1@4 SA0@6 BW1@4 | SG1@4 RA1@7 FW1@7 | RG2@5 "
     "SA1@7 BW2@5 | SG2@5 | RG0@6 BW0@6 | SG0@6 | RG1@7 BW1@7 | SG1@7 RTG RDG OPT"},
    {8, 4, 2, 2,
     "- | - | RA0@0 FW0@0 | SA0@0 | RA1@1 FW1@1 | RG0@0 SA1@1 BW0@0 | SG0@0 RA0@2 FW0@2 | RG1@1 "
     "SA0@2 BW1@1 | SG1@1 RA1@3 FW1@3 | RG0@2 SA1@3 BW0@2 | SG0@2 RA0@4 FW0@4 | RG1@3 SA0@4 BW1@3 "
     "| SG1@3 RA1@5 FW1@5 | RG0@4 SA1@5 BW0@4 | SG0@4 RA0@6 FW0@6 | RG1@5 SA0@6 BW1@5 | SG1@5 "
     "RA1@7 FW1@7 | RG0@6 SA1@7 BW0@6 | SG0@6 | RG1@7 BW1@7 | SG1@7 | RTG RDG OPT"},
    {8, 4, 3, 2,
     "- | - | - | RA0@0 LD0@0 FW0@0 | BW0@0 | SG0@0 RA1@1 LD1@1 FW1@1 | BW1@1 | SG1@1 RA0@2 LD0@2 "
     "FW0@2 | BW0@2 | SG0@2 RA1@3 LD1@3 FW1@3 | BW1@3 | SG1@3 RA0@4 LD0@4 FW0@4 | BW0@4 | SG0@4 "
     "RA1@5 LD1@5 FW1@5 | BW1@5 | SG1@5 RA0@6 LD0@6 FW0@6 | BW0@6 | SG0@6 RA1@7 LD1@7 FW1@7 | "
     "BW1@7 | SG1@7 | - | RTG RDG OPT"},
    {2, 3, 0, 2,
     "LD0@0 FW0@0 | SA0@0 | LD1@1 FW1@1 | SA1@1 | - | RG0@0 BW0@0 | - | RG1@1 BW1@1 RTG RDG OPT"},
    {2, 3, 1, 2,
     "- | RA0@0 FW0@0 | SA0@0 | RA1@1 FW1@1 | RG0@0 SA1@1 BW0@0 | SG0@0 | RG1@1 BW1@1 | SG1@1 RTG "
     "RDG OPT"},
    {2, 3, 2, 2,
     "- | - | RA0@0 LD0@0 FW0@0 | BW0@0 | SG0@0 RA1@1 LD1@1 FW1@1 | BW1@1 | SG1@1 | RTG RDG OPT"},
};

// The same, from DeepSpeed v0.16.4's InferenceSchedule (micro-batch step - stage; a send carries
// the previous one).
const Expected kDeepSpeedInference[] = {
    {1, 1, 0, 2, "LD0@0 FW0@0"},
    {4, 2, 0, 2, "LD0@0 FW0@0 | LD1@1 SA0@0 FW1@1 | LD0@2 SA1@1 FW0@2 | LD1@3 SA0@2 FW1@3 | SA1@3"},
    {4, 2, 1, 2,
     "- | LD0@0 RA0@0 FW0@0 | LD1@1 RA1@1 FW1@1 | LD0@2 RA0@2 FW0@2 | LD1@3 RA1@3 FW1@3"},
    {3, 4, 0, 2, "LD0@0 FW0@0 | LD1@1 SA0@0 FW1@1 | LD0@2 SA1@1 FW0@2 | SA0@2 | - | -"},
    {3, 4, 1, 2, "- | RA0@0 FW0@0 | RA1@1 SA0@0 FW1@1 | RA0@2 SA1@1 FW0@2 | SA0@2 | -"},
    {3, 4, 2, 2, "- | - | RA0@0 FW0@0 | SA0@0 RA1@1 FW1@1 | SA1@1 RA0@2 FW0@2 | SA0@2"},
    {3, 4, 3, 2, "- | - | - | LD0@0 RA0@0 FW0@0 | LD1@1 RA1@1 FW1@1 | LD0@2 RA0@2 FW0@2"},
    {8, 4, 0, 2,
     "LD0@0 FW0@0 | LD1@1 SA0@0 FW1@1 | LD0@2 SA1@1 FW0@2 | LD1@3 SA0@2 FW1@3 | LD0@4 SA1@3 FW0@4 "
     "| LD1@5 SA0@4 FW1@5 | LD0@6 SA1@5 FW0@6 | LD1@7 SA0@6 FW1@7 | SA1@7 | - | -"},
    {8, 4, 1, 2,
     "- | RA0@0 FW0@0 | RA1@1 SA0@0 FW1@1 | RA0@2 SA1@1 FW0@2 | RA1@3 SA0@2 FW1@3 | RA0@4 SA1@3 "
     "FW0@4 | RA1@5 SA0@4 FW1@5 | RA0@6 SA1@5 FW0@6 | RA1@7 SA0@6 FW1@7 | SA1@7 | -"},
    {8, 4, 2, 2,
     "- | - | RA0@0 FW0@0 | SA0@0 RA1@1 FW1@1 | SA1@1 RA0@2 FW0@2 | SA0@2 RA1@3 FW1@3 | SA1@3 "
     "RA0@4 FW0@4 | SA0@4 RA1@5 FW1@5 | SA1@5 RA0@6 FW0@6 | SA0@6 RA1@7 FW1@7 | SA1@7"},
    {8, 4, 3, 2,
     "- | - | - | LD0@0 RA0@0 FW0@0 | LD1@1 RA1@1 FW1@1 | LD0@2 RA0@2 FW0@2 | LD1@3 RA1@3 FW1@3 | "
     "LD0@4 RA0@4 FW0@4 | LD1@5 RA1@5 FW1@5 | LD0@6 RA0@6 FW0@6 | LD1@7 RA1@7 FW1@7"},
    {2, 3, 0, 2, "LD0@0 FW0@0 | LD1@1 SA0@0 FW1@1 | SA1@1 | -"},
    {2, 3, 1, 2, "- | RA0@0 FW0@0 | RA1@1 SA0@0 FW1@1 | SA1@1"},
    {2, 3, 2, 2, "- | - | LD0@0 RA0@0 FW0@0 | LD1@1 RA1@1 FW1@1"},
};

void expect_streams(ScheduleKind kind, const Expected& e) {
  const ScheduleSpec spec{kind, e.micro_batches, e.stages, 1};
  const StageSchedule got = stage_schedule(spec, e.stage);
  SCOPED_TRACE(::testing::Message() << to_string(kind) << " m=" << e.micro_batches
                                    << " p=" << e.stages << " stage=" << e.stage);
  EXPECT_EQ(got.stage, e.stage);
  EXPECT_EQ(got.num_pipe_buffers, e.buffers);
  EXPECT_EQ(num_pipe_buffers(spec, e.stage), e.buffers);
  EXPECT_EQ(compact(got), e.stream);
}

TEST(DeepSpeedTrainSchedule, MatchesDeepSpeedGenerators) {
  for (const Expected& e : kDeepSpeedTrain)
    expect_streams(ScheduleKind::kTrain, e);
}

TEST(DeepSpeedInferenceSchedule, MatchesDeepSpeedGenerators) {
  for (const Expected& e : kDeepSpeedInference)
    expect_streams(ScheduleKind::kInference, e);
}

TEST(DeepSpeedTrainSchedule, ReprIsDeepSpeeds) {
  // repr() of each step of DeepSpeed's TrainSchedule(micro_batches=2, stages=2, stage_id=0).
  const std::vector<std::string> expected = {
      "[LoadMicroBatch(buffer_id=0), ForwardPass(buffer_id=0)]",
      "[SendActivation(buffer_id=0)]",
      "[LoadMicroBatch(buffer_id=1), ForwardPass(buffer_id=1)]",
      "[RecvGrad(buffer_id=0), SendActivation(buffer_id=1), BackwardPass(buffer_id=0)]",
      "[]",
      "[RecvGrad(buffer_id=1), BackwardPass(buffer_id=1), ReduceTiedGrads(), ReduceGrads(), "
      "OptimizerStep()]",
  };
  const StageSchedule s = stage_schedule({ScheduleKind::kTrain, 2, 2, 1}, 0);
  ASSERT_EQ(s.steps.size(), expected.size());
  for (std::size_t t = 0; t < expected.size(); ++t) {
    std::string line = "[";
    for (std::size_t k = 0; k < s.steps[t].size(); ++k) {
      if (k > 0) line += ", ";
      line += to_string(s.steps[t][k]);
    }
    line += "]";
    EXPECT_EQ(line, expected[t]) << "step " << t;
  }
  EXPECT_EQ(to_string(Instruction{InstructionKind::kSendGrad, 3, 5, 1}),
            "SendGrad(buffer_id=3, chunk=1)");
}

// GPipe, derived by hand from the rule: stage s forwards micro-batch t - s at step t, then
// backwards micro-batch t' - (p - 1 - s) at step t' of the second phase; each transfer sends the
// previous step's result; even stages send before they receive.
TEST(GPipeSchedule, AllForwardsThenAllBackwards) {
  const ScheduleSpec spec{ScheduleKind::kGPipe, 2, 2, 1};
  EXPECT_EQ(compact(stage_schedule(spec, 0)),
            "LD0@0 FW0@0 | SA0@0 LD1@1 FW1@1 | SA1@1 | - | RG0@0 BW0@0 | "
            "RG1@1 BW1@1 RTG RDG OPT");
  EXPECT_EQ(compact(stage_schedule(spec, 1)),
            "- | RA0@0 LD0@0 FW0@0 | RA1@1 LD1@1 FW1@1 | BW0@0 | SG0@0 BW1@1 | "
            "SG1@1 RTG RDG OPT");
  EXPECT_EQ(num_pipe_buffers(spec, 0), 2);
  EXPECT_EQ(num_pipe_buffers({ScheduleKind::kGPipe, 5, 3, 1}, 2), 5);
}

// Megatron-LM's interleaved order, derived by hand from forward_backward_pipelining_with_
// interleaving: with m == p every forward runs first; chunk c of device d is virtual stage
// c * p + d, so chunk 1 of device 1 is the last one and loads the labels.
TEST(InterleavedSchedule, AllWarmupWhenMicroBatchesEqualStages) {
  const ScheduleSpec spec{ScheduleKind::kInterleaved, 2, 2, 2};
  EXPECT_EQ(compact(stage_schedule(spec, 0)),
            "LD0@0 FW0@0 SA0@0 | LD1@1 FW1@1 SA1@1 | RA2@0/c1 FW2@0/c1 SA2@0/c1 | "
            "RA3@1/c1 FW3@1/c1 SA3@1/c1 | RG2@0/c1 BW2@0/c1 SG2@0/c1 | "
            "RG3@1/c1 BW3@1/c1 SG3@1/c1 | RG0@0 BW0@0 | RG1@1 BW1@1 RTG RDG OPT");
  EXPECT_EQ(compact(stage_schedule(spec, 1)),
            "RA0@0 FW0@0 SA0@0 | RA1@1 FW1@1 SA1@1 | RA2@0/c1 LD2@0/c1 FW2@0/c1 | "
            "RA3@1/c1 LD3@1/c1 FW3@1/c1 | BW2@0/c1 SG2@0/c1 | BW3@1/c1 SG3@1/c1 | "
            "RG0@0 BW0@0 SG0@0 | RG1@1 BW1@1 SG1@1 RTG RDG OPT");
}

TEST(InterleavedSchedule, WarmupThenOneForwardOneBackward) {
  // p = 2, m = 4, v = 2, device 1: warmup 2 (p - s - 1) + (v - 1) p = 2 forwards; virtual
  // micro-batches go in groups of p v = 4 (chunk 0 of micro-batches 0, 1, then chunk 1 of the
  // same), backwards walk the chunks from the last. Buffers are reused lowest first.
  const ScheduleSpec spec{ScheduleKind::kInterleaved, 4, 2, 2};
  EXPECT_EQ(interleaved_warmup(4, 2, 2, 1), 2);
  EXPECT_EQ(interleaved_warmup(4, 2, 2, 0), 4);
  const StageSchedule s = stage_schedule(spec, 1);
  EXPECT_EQ(compact(s),
            "RA0@0 FW0@0 SA0@0 | RA1@1 FW1@1 SA1@1 | RA2@0/c1 LD2@0/c1 FW2@0/c1 | "
            "BW2@0/c1 SG2@0/c1 | RA2@1/c1 LD2@1/c1 FW2@1/c1 | BW2@1/c1 SG2@1/c1 | "
            "RA2@2 FW2@2 SA2@2 | RG0@0 BW0@0 SG0@0 | RA0@3 FW0@3 SA0@3 | RG1@1 BW1@1 SG1@1 | "
            "RA1@2/c1 LD1@2/c1 FW1@2/c1 | BW1@2/c1 SG1@2/c1 | RA1@3/c1 LD1@3/c1 FW1@3/c1 | "
            "BW1@3/c1 SG1@3/c1 | RG2@2 BW2@2 SG2@2 | RG0@3 BW0@3 SG0@3 RTG RDG OPT");
  EXPECT_EQ(s.num_pipe_buffers, 3);
}

std::vector<ScheduleSpec> grid() {
  std::vector<ScheduleSpec> out;
  for (int p = 1; p <= 6; ++p) {
    for (int m = 1; m <= 13; ++m) {
      out.push_back({ScheduleKind::kTrain, m, p, 1});
      out.push_back({ScheduleKind::kInference, m, p, 1});
      out.push_back({ScheduleKind::kGPipe, m, p, 1});
      if (m % p == 0) {
        for (int v = 2; v <= 4; ++v)
          out.push_back({ScheduleKind::kInterleaved, m, p, v});
      }
    }
  }
  return out;
}

std::string describe(const ScheduleSpec& spec) {
  return std::string(to_string(spec.kind)) + " m=" + std::to_string(spec.micro_batches) +
         " p=" + std::to_string(spec.stages) + " v=" + std::to_string(spec.chunks);
}

// Every stage runs each pass once; every send meets a receive of the same micro-batch and chunk
// on the neighbouring virtual stage (in the same step for the lock-step kinds); the batch ends
// once, on the last step; a buffer is never refilled while it holds an activation that a backward
// still needs.
TEST(ScheduleInvariants, PassesTransfersBuffersAndBatchEnd) {
  for (const ScheduleSpec& spec : grid()) {
    SCOPED_TRACE(describe(spec));
    const std::vector<StageSchedule> all = pipeline_schedule(spec);
    ASSERT_EQ(static_cast<int>(all.size()), spec.stages);
    const int p = spec.stages;
    const int last_virtual = p * spec.chunks - 1;
    const bool lock_step = spec.kind != ScheduleKind::kInterleaved;
    const bool training = spec.kind != ScheduleKind::kInference;
    // (direction, from virtual stage, chunk-free micro-batch) -> steps of sends and receives.
    std::map<std::tuple<int, int, int>, std::vector<int>> sends;
    std::map<std::tuple<int, int, int>, std::vector<int>> receives;
    for (const StageSchedule& s : all) {
      if (lock_step) {
        const std::size_t steps = static_cast<std::size_t>(
            training ? 2 * (spec.micro_batches + p - 1) : spec.micro_batches + p - 1);
        ASSERT_EQ(s.steps.size(), steps);
      }
      std::map<std::pair<int, int>, int> forwards;
      std::map<std::pair<int, int>, int> backwards;
      std::map<int, std::pair<int, int>> buffer_holder;  // buffer -> held (chunk, micro-batch)
      int batch_ends = 0;
      for (std::size_t t = 0; t < s.steps.size(); ++t) {
        for (const Instruction& i : s.steps[t]) {
          const int vs = i.chunk * p + s.stage;
          const int step = lock_step ? static_cast<int>(t) : 0;
          const std::pair<int, int> key{i.chunk, i.micro_batch};
          if (!acts_on_buffer(i.kind)) {
            EXPECT_EQ(t + 1, s.steps.size());
            ++batch_ends;
            continue;
          }
          ASSERT_GE(i.buffer_id, 0);
          ASSERT_LT(i.buffer_id, s.num_pipe_buffers);
          ASSERT_GE(i.micro_batch, 0);
          ASSERT_LT(i.micro_batch, spec.micro_batches);
          switch (i.kind) {
            case InstructionKind::kForwardPass:
              ++forwards[key];
              break;
            case InstructionKind::kBackwardPass:
              ++backwards[key];
              buffer_holder.erase(i.buffer_id);
              break;
            case InstructionKind::kSendActivation:
              ASSERT_LT(vs, last_virtual);
              sends[{0, vs, i.micro_batch}].push_back(step);
              break;
            case InstructionKind::kRecvActivation:
              ASSERT_GT(vs, 0);
              receives[{0, vs - 1, i.micro_batch}].push_back(step);
              break;
            case InstructionKind::kSendGrad:
              ASSERT_GT(vs, 0);
              sends[{1, vs, i.micro_batch}].push_back(step);
              break;
            case InstructionKind::kRecvGrad:
              ASSERT_LT(vs, last_virtual);
              receives[{1, vs + 1, i.micro_batch}].push_back(step);
              break;
            default:
              break;
          }
          if (training && (i.kind == InstructionKind::kRecvActivation ||
                           i.kind == InstructionKind::kLoadMicroBatch ||
                           i.kind == InstructionKind::kForwardPass)) {
            const auto [it, fresh] = buffer_holder.emplace(i.buffer_id, key);
            EXPECT_EQ(it->second, key)
                << "stage " << s.stage << " step " << t << " buffer " << i.buffer_id
                << " still holds micro-batch " << it->second.second;
            (void)fresh;
          }
          if (i.kind == InstructionKind::kLoadMicroBatch) {
            EXPECT_TRUE(vs == 0 || vs == last_virtual);
          }
        }
      }
      EXPECT_EQ(batch_ends, training ? 3 : 0);
      for (int c = 0; c < spec.chunks; ++c) {
        for (int mb = 0; mb < spec.micro_batches; ++mb) {
          EXPECT_EQ((forwards[{c, mb}]), 1) << "stage " << s.stage << " chunk " << c;
          EXPECT_EQ((backwards[{c, mb}]), training ? 1 : 0) << "stage " << s.stage;
        }
      }
    }
    EXPECT_EQ(sends, receives);
  }
}

TEST(SchedulePeak, ReplayMatchesClosedForms) {
  for (const ScheduleSpec& spec : grid()) {
    SCOPED_TRACE(describe(spec));
    for (const StageSchedule& s : pipeline_schedule(spec)) {
      const ActivationPeak peak = replay_activation_peak(s);
      EXPECT_EQ(peak.count, peak_in_flight(spec, s.stage)) << "stage " << s.stage;
      EXPECT_EQ(static_cast<int>(peak.held.size()), peak.count);
      if (spec.kind == ScheduleKind::kInterleaved) {
        EXPECT_EQ(s.num_pipe_buffers, peak.count);
      }
    }
  }
}

TEST(SchedulePeak, DeepSpeedHoldsOnePerDownstreamStage) {
  // DeepSpeed 1F1B: min(p - s, m); the first stage of (m=8, p=4) holds micro-batches 0..3 after
  // its fourth forward (step 6), the last stage one at a time.
  const ScheduleSpec spec{ScheduleKind::kTrain, 8, 4, 1};
  const std::vector<int> expected = {4, 3, 2, 1};
  for (int s = 0; s < 4; ++s) {
    EXPECT_EQ(replay_activation_peak(stage_schedule(spec, s)).count, expected[s]);
  }
  const ActivationPeak first = replay_activation_peak(stage_schedule(spec, 0));
  EXPECT_EQ(first.step, 6);
  EXPECT_EQ(first.held, (std::vector<HeldActivation>{{0, 0}, {0, 1}, {0, 2}, {0, 3}}));
  // Fewer micro-batches than stages: m bounds it.
  EXPECT_EQ(replay_activation_peak(stage_schedule({ScheduleKind::kTrain, 2, 4, 1}, 0)).count, 2);
  EXPECT_EQ(replay_activation_peak(stage_schedule({ScheduleKind::kTrain, 2, 4, 1}, 3)).count, 1);
  // Inference keeps nothing for a backward.
  EXPECT_EQ(replay_activation_peak(stage_schedule({ScheduleKind::kInference, 8, 4, 1}, 0)).count,
            0);
}

TEST(SchedulePeak, GPipeHoldsTheWholeBatch) {
  for (int s = 0; s < 4; ++s) {
    const ActivationPeak peak =
        replay_activation_peak(stage_schedule({ScheduleKind::kGPipe, 8, 4, 1}, s));
    EXPECT_EQ(peak.count, 8);
    EXPECT_EQ(peak.step, 7 + s);  // the last forward
  }
}

TEST(SchedulePeak, InterleavedIsMegatronWarmupPlusOne) {
  // p = 4, m = 8, v = 2: warmup 2 (3 - s) + 4 = {10, 8, 6, 4}, one more forward before the first
  // backward; with m == p every forward of every chunk is held.
  const std::vector<int> expected = {11, 9, 7, 5};
  for (int s = 0; s < 4; ++s) {
    const ScheduleSpec spec{ScheduleKind::kInterleaved, 8, 4, 2};
    EXPECT_EQ(replay_activation_peak(stage_schedule(spec, s)).count, expected[s]);
    EXPECT_EQ(peak_in_flight(spec, s), expected[s]);
    EXPECT_EQ(peak_in_flight({ScheduleKind::kInterleaved, 4, 4, 2}, s), 8);
    EXPECT_EQ(
        replay_activation_peak(stage_schedule({ScheduleKind::kInterleaved, 4, 4, 2}, s)).count, 8);
  }
}

// With every forward costing f and every backward b on every stage (or chunk), and transfers free,
// the replay's bubble is exactly the closed form, whatever f:b. For 1F1B and GPipe: the last stage
// starts its first forward at (p - 1) f and then never waits, and the last backward takes (p - 1) b
// to reach stage 0, so the makespan is (m + p - 1)(f + b) against m (f + b) busy. Megatron-LM's
// interleaved bound (p - 1)(f + b) / v per device holds the same way with passes of one chunk.
TEST(ScheduleBubble, ReplayEqualsClosedFormExactly) {
  const std::vector<ScheduleSpec> specs = {
      {ScheduleKind::kTrain, 64, 8, 1},         {ScheduleKind::kTrain, 128, 16, 1},
      {ScheduleKind::kGPipe, 64, 8, 1},         {ScheduleKind::kGPipe, 128, 16, 1},
      {ScheduleKind::kInference, 64, 8, 1},     {ScheduleKind::kInference, 128, 16, 1},
      {ScheduleKind::kInterleaved, 64, 8, 2},   {ScheduleKind::kInterleaved, 128, 16, 2},
      {ScheduleKind::kInterleaved, 128, 16, 4}, {ScheduleKind::kInterleaved, 16, 16, 3},
      {ScheduleKind::kTrain, 3, 8, 1},          {ScheduleKind::kGPipe, 1, 5, 1},
  };
  for (const PassCosts costs : {PassCosts{1, 2}, PassCosts{1, 1}, PassCosts{3, 5}}) {
    for (const ScheduleSpec& spec : specs) {
      SCOPED_TRACE(describe(spec) + " f=" + std::to_string(costs.forward) +
                   " b=" + std::to_string(costs.backward));
      const BubbleReport r = replay_bubble(spec, costs);
      const BubbleFractions closed = closed_form_bubble(spec);
      EXPECT_EQ(r.over_total(), closed.over_total);
      EXPECT_EQ(r.over_ideal(), closed.over_ideal);
    }
  }
}

TEST(ScheduleBubble, NumbersAndNormalisations) {
  // 1F1B, p = 8, m = 64, f:b = 1:2: makespan (64 + 7) * 3 = 213, busy 192 per stage.
  const BubbleReport train = replay_bubble({ScheduleKind::kTrain, 64, 8, 1}, {1, 2});
  EXPECT_EQ(train.makespan, 213);
  EXPECT_EQ(train.busy, std::vector<std::int64_t>(8, 192));
  EXPECT_EQ(train.idle(), 8 * 21);
  EXPECT_EQ(train.over_total(), (Ratio{7, 71}));
  EXPECT_EQ(train.over_ideal(), (Ratio{7, 64}));
  EXPECT_DOUBLE_EQ(train.over_total().value(), 7.0 / 71.0);
  // Interleaving divides the bubble by v: p = 16, m = 128, v = 4 -> 15 / 512 of the ideal time.
  const BubbleFractions inter = closed_form_bubble({ScheduleKind::kInterleaved, 128, 16, 4});
  EXPECT_EQ(inter.over_ideal, (Ratio{15, 512}));
  EXPECT_EQ(inter.over_total, (Ratio{15, 527}));
  const BubbleReport replay = replay_bubble({ScheduleKind::kInterleaved, 128, 16, 4}, {1, 2});
  EXPECT_EQ(replay.makespan, (4 * 128 + 15) * 3);
  // One stage: no bubble.
  EXPECT_EQ(replay_bubble({ScheduleKind::kTrain, 5, 1, 1}).over_total(), (Ratio{0, 1}));
  EXPECT_EQ(Ratio::of(6, -4), (Ratio{-3, 2}));
}

template <class F>
void expect_user_error(F&& f, ErrorKind kind, const std::string& key) {
  try {
    f();
    ADD_FAILURE() << "no UserError";
  } catch (const UserError& e) {
    EXPECT_EQ(e.kind(), kind) << e.what();
    EXPECT_EQ(e.where().key_path, key) << e.what();
  }
}

TEST(ScheduleErrors, InvalidInputsAreUserErrors) {
  using enum ScheduleKind;
  expect_user_error([] { validate({kTrain, 4, 0, 1}); }, ErrorKind::kValue, "stages");
  expect_user_error([] { stage_schedule({kGPipe, 4, -1, 1}, 0); }, ErrorKind::kValue, "stages");
  expect_user_error([] { validate({kInference, 0, 2, 1}); }, ErrorKind::kValue, "micro_batches");
  expect_user_error(
      [] {
        pipeline_schedule({kTrain, -3, 2, 1});
      },
      ErrorKind::kValue, "micro_batches");
  expect_user_error(
      [] {
        stage_schedule({kInterleaved, 6, 4, 2}, 0);
      },
      ErrorKind::kConflict, "micro_batches");
  expect_user_error(
      [] {
        replay_bubble({kInterleaved, 3, 2, 2});
      },
      ErrorKind::kConflict, "micro_batches");
  expect_user_error([] { validate({kInterleaved, 4, 4, 1}); }, ErrorKind::kValue, "chunks");
  expect_user_error([] { validate({kTrain, 4, 4, 2}); }, ErrorKind::kConflict, "chunks");
  expect_user_error([] { stage_schedule({kTrain, 4, 4, 1}, 4); }, ErrorKind::kValue, "stage");
  expect_user_error([] { peak_in_flight({kTrain, 4, 4, 1}, -1); }, ErrorKind::kValue, "stage");
  expect_user_error([] { replay_bubble({kTrain, 4, 4, 1}, {0, 2}); }, ErrorKind::kValue, "forward");
  // Multiples of p are fine, including m == p.
  EXPECT_NO_THROW(validate({kInterleaved, 8, 4, 2}));
  EXPECT_NO_THROW(validate({kInterleaved, 4, 4, 2}));
}

}  // namespace
}  // namespace zp::pipe
