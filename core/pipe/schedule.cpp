#include "core/pipe/schedule.h"

#include <algorithm>
#include <numeric>
#include <set>
#include <utility>

#include "core/util/error.h"

namespace zp::pipe {
namespace {

using K = InstructionKind;

[[noreturn]] void invalid(ErrorKind kind, std::string key, std::string message) {
  SourceLocation where;
  where.key_path = std::move(key);
  throw UserError(kind, std::move(where), std::move(message));
}

bool is_even(int x) {
  return x % 2 == 0;
}

Instruction buffer_op(K kind, int buffer, int micro_batch, int chunk = 0) {
  return Instruction{kind, buffer, micro_batch, chunk};
}

// The three instructions that close every training batch, in DeepSpeed's order: tied weights
// are reduced across stages before the data-parallel reduction that the optimizer step needs.
void append_batch_end(Step& step) {
  step.push_back(Instruction{K::kReduceTiedGrads, -1, -1, 0});
  step.push_back(Instruction{K::kReduceGrads, -1, -1, 0});
  step.push_back(Instruction{K::kOptimizerStep, -1, -1, 0});
}

// DeepSpeed's TrainSchedule. Stages alternate: a stage runs forwards on the steps whose parity is
// its own and backwards on the others, so neighbours always sit in opposite phases and each
// transfer of the previous step's result meets its receive in the same step.
std::vector<Step> train_steps(int m, int p, int s, int buffers) {
  const int total = 2 * (m + p - 1);
  const bool first = s == 0;
  const bool last = s == p - 1;
  auto valid = [m](int mb) { return mb >= 0 && mb < m; };
  std::vector<Step> steps(static_cast<std::size_t>(total));
  int prev = -1;
  for (int t = 0; t < total; ++t) {
    const bool forward = (t % 2) == (s % 2);
    const int mb = forward ? t / 2 - s / 2 : (t + 1) / 2 - p + (s + 1) / 2;
    Step& step = steps[static_cast<std::size_t>(t)];
    if (forward) {
      if (valid(prev) && !first) step.push_back(buffer_op(K::kSendGrad, prev % buffers, prev));
      if (valid(mb) && !first) step.push_back(buffer_op(K::kRecvActivation, mb % buffers, mb));
    } else {
      if (valid(mb) && !last) step.push_back(buffer_op(K::kRecvGrad, mb % buffers, mb));
      if (valid(prev) && !last) {
        step.push_back(buffer_op(K::kSendActivation, prev % buffers, prev));
      }
    }
    // The last stage loads too: it reads the labels for the loss.
    if ((first || last) && forward && valid(mb)) {
      step.push_back(buffer_op(K::kLoadMicroBatch, mb % buffers, mb));
    }
    if (valid(mb)) {
      step.push_back(buffer_op(forward ? K::kForwardPass : K::kBackwardPass, mb % buffers, mb));
    }
    if (t == total - 1) append_batch_end(step);
    prev = mb;
  }
  return steps;
}

// DeepSpeed's InferenceSchedule: two buffers in turn, one receiving this step's input while the
// other sends the previous step's output. Even stages send before they receive and odd stages
// the other way round, so blocking transfers between neighbours never wait on each other.
std::vector<Step> inference_steps(int m, int p, int s) {
  const int total = m + p - 1;
  const bool first = s == 0;
  const bool last = s == p - 1;
  auto valid = [m](int mb) { return mb >= 0 && mb < m; };
  std::vector<Step> steps(static_cast<std::size_t>(total));
  for (int t = 0; t < total; ++t) {
    const int mb = t - s;
    const int recv_buffer = is_even(s) ? t % 2 : (t + 1) % 2;
    const int send_buffer = 1 - recv_buffer;
    Step& step = steps[static_cast<std::size_t>(t)];
    if ((first || last) && valid(mb)) {
      step.push_back(buffer_op(K::kLoadMicroBatch, recv_buffer, mb));
    }
    const bool sends = !last && valid(mb - 1);
    const bool receives = !first && valid(mb);
    if (is_even(s)) {
      if (sends) step.push_back(buffer_op(K::kSendActivation, send_buffer, mb - 1));
      if (receives) step.push_back(buffer_op(K::kRecvActivation, recv_buffer, mb));
    } else {
      if (receives) step.push_back(buffer_op(K::kRecvActivation, recv_buffer, mb));
      if (sends) step.push_back(buffer_op(K::kSendActivation, send_buffer, mb - 1));
    }
    if (valid(mb)) step.push_back(buffer_op(K::kForwardPass, recv_buffer, mb));
  }
  return steps;
}

// GPipe in DeepSpeed's lock-step form: a forward phase shaped like InferenceSchedule (stage s
// runs micro-batch t - s at step t and sends it on at step t + 1), then a backward phase that
// mirrors it from the last stage down. Every activation lives until its backward, so each
// micro-batch has its own buffer. Transfers are ordered by stage parity as in inference.
std::vector<Step> gpipe_steps(int m, int p, int s) {
  const int phase = m + p - 1;
  const bool first = s == 0;
  const bool last = s == p - 1;
  auto valid = [m](int mb) { return mb >= 0 && mb < m; };
  std::vector<Step> steps(static_cast<std::size_t>(2 * phase));
  for (int t = 0; t < 2 * phase; ++t) {
    const bool forward = t < phase;
    const int mb = forward ? t - s : t - phase - (p - 1 - s);
    Step& step = steps[static_cast<std::size_t>(t)];
    Step sends;
    Step receives;
    if (forward) {
      if (!last && valid(mb - 1)) sends.push_back(buffer_op(K::kSendActivation, mb - 1, mb - 1));
      if (!first && valid(mb)) receives.push_back(buffer_op(K::kRecvActivation, mb, mb));
    } else {
      if (!first && valid(mb - 1)) sends.push_back(buffer_op(K::kSendGrad, mb - 1, mb - 1));
      if (!last && valid(mb)) receives.push_back(buffer_op(K::kRecvGrad, mb, mb));
    }
    const Step& before = is_even(s) ? sends : receives;
    const Step& after = is_even(s) ? receives : sends;
    step.insert(step.end(), before.begin(), before.end());
    step.insert(step.end(), after.begin(), after.end());
    if ((first || last) && forward && valid(mb)) {
      step.push_back(buffer_op(K::kLoadMicroBatch, mb, mb));
    }
    if (valid(mb)) step.push_back(buffer_op(forward ? K::kForwardPass : K::kBackwardPass, mb, mb));
    if (t == 2 * phase - 1) append_batch_end(step);
  }
  return steps;
}

// Megatron-LM's interleaved order. Virtual micro-batches are taken in groups of p * v: within a
// group, p micro-batches go through chunk 0, then the same p through chunk 1, and so on; the
// backward order walks the chunks from the last one down.
struct VirtualPass {
  int chunk;
  int micro_batch;
};

VirtualPass interleaved_pass(int k, int p, int v, bool forward) {
  const int in_group = k % (p * v);
  const int chunk = in_group / p;
  return VirtualPass{forward ? chunk : v - 1 - chunk, (k / (p * v)) * p + k % p};
}

// Buffers are handed out lowest-free-first when a forward starts and returned by its backward,
// so the buffer count equals the peak number of held activations.
class BufferPool {
 public:
  int acquire(VirtualPass pass) {
    int id = 0;
    while (in_use_.contains(id))
      ++id;
    in_use_.insert(id);
    owner_.push_back({pass.chunk, pass.micro_batch, id});
    high_water_ = std::max(high_water_, static_cast<int>(in_use_.size()));
    return id;
  }
  int release(VirtualPass pass) {
    const auto it = std::find_if(owner_.begin(), owner_.end(), [&](const Owner& o) {
      return o.chunk == pass.chunk && o.micro_batch == pass.micro_batch;
    });
    ZP_CHECK(it != owner_.end(), "backward of chunk ", pass.chunk, " micro-batch ",
             pass.micro_batch, " before its forward");
    const int id = it->buffer;
    in_use_.erase(id);
    owner_.erase(it);
    return id;
  }
  int high_water() const { return high_water_; }

 private:
  struct Owner {
    int chunk;
    int micro_batch;
    int buffer;
  };
  std::set<int> in_use_;
  std::vector<Owner> owner_;
  int high_water_ = 0;
};

struct InterleavedStream {
  std::vector<Step> steps;
  int buffers = 0;
};

InterleavedStream interleaved_steps(int m, int p, int v, int s) {
  const int total = m * v;
  const int warmup = interleaved_warmup(m, p, v, s);
  const int last_virtual = p * v - 1;
  BufferPool pool;
  InterleavedStream out;
  auto forward = [&](int k) {
    const VirtualPass pass = interleaved_pass(k, p, v, true);
    const int vs = pass.chunk * p + s;
    const int buffer = pool.acquire(pass);
    Step step;
    if (vs > 0) step.push_back(buffer_op(K::kRecvActivation, buffer, pass.micro_batch, pass.chunk));
    if (vs == 0 || vs == last_virtual) {
      step.push_back(buffer_op(K::kLoadMicroBatch, buffer, pass.micro_batch, pass.chunk));
    }
    step.push_back(buffer_op(K::kForwardPass, buffer, pass.micro_batch, pass.chunk));
    if (vs < last_virtual) {
      step.push_back(buffer_op(K::kSendActivation, buffer, pass.micro_batch, pass.chunk));
    }
    out.steps.push_back(std::move(step));
  };
  auto backward = [&](int k) {
    const VirtualPass pass = interleaved_pass(k, p, v, false);
    const int vs = pass.chunk * p + s;
    const int buffer = pool.release(pass);
    Step step;
    if (vs < last_virtual) {
      step.push_back(buffer_op(K::kRecvGrad, buffer, pass.micro_batch, pass.chunk));
    }
    step.push_back(buffer_op(K::kBackwardPass, buffer, pass.micro_batch, pass.chunk));
    if (vs > 0) step.push_back(buffer_op(K::kSendGrad, buffer, pass.micro_batch, pass.chunk));
    out.steps.push_back(std::move(step));
  };
  for (int k = 0; k < warmup; ++k)
    forward(k);
  for (int k = 0; k < total - warmup; ++k) {
    forward(warmup + k);
    backward(k);
  }
  for (int k = total - warmup; k < total; ++k)
    backward(k);
  append_batch_end(out.steps.back());
  out.buffers = pool.high_water();
  return out;
}

void check_stage(const ScheduleSpec& spec, int stage) {
  if (stage < 0 || stage >= spec.stages) {
    invalid(ErrorKind::kValue, "stage",
            detail::concat("stage ", stage, " is outside the pipeline: it has ", spec.stages,
                           " stage(s), numbered from 0"));
  }
}

}  // namespace

std::string_view to_string(InstructionKind kind) {
  switch (kind) {
    case K::kLoadMicroBatch:
      return "LoadMicroBatch";
    case K::kForwardPass:
      return "ForwardPass";
    case K::kBackwardPass:
      return "BackwardPass";
    case K::kSendActivation:
      return "SendActivation";
    case K::kRecvActivation:
      return "RecvActivation";
    case K::kSendGrad:
      return "SendGrad";
    case K::kRecvGrad:
      return "RecvGrad";
    case K::kReduceTiedGrads:
      return "ReduceTiedGrads";
    case K::kReduceGrads:
      return "ReduceGrads";
    case K::kOptimizerStep:
      return "OptimizerStep";
  }
  return "?";
}

bool acts_on_buffer(InstructionKind kind) {
  return kind != K::kReduceTiedGrads && kind != K::kReduceGrads && kind != K::kOptimizerStep;
}

std::string to_string(const Instruction& instruction) {
  std::string out(to_string(instruction.kind));
  out += '(';
  if (acts_on_buffer(instruction.kind)) {
    out += "buffer_id=" + std::to_string(instruction.buffer_id);
    if (instruction.chunk != 0) out += ", chunk=" + std::to_string(instruction.chunk);
  }
  out += ')';
  return out;
}

std::string_view to_string(ScheduleKind kind) {
  switch (kind) {
    case ScheduleKind::kTrain:
      return "train";
    case ScheduleKind::kInference:
      return "inference";
    case ScheduleKind::kGPipe:
      return "gpipe";
    case ScheduleKind::kInterleaved:
      return "interleaved";
  }
  return "?";
}

void validate(const ScheduleSpec& spec) {
  if (spec.stages < 1) {
    invalid(ErrorKind::kValue, "stages",
            detail::concat("a pipeline needs at least 1 stage, got ", spec.stages));
  }
  if (spec.micro_batches < 1) {
    invalid(ErrorKind::kValue, "micro_batches",
            detail::concat("a batch needs at least 1 micro-batch, got ", spec.micro_batches));
  }
  if (spec.kind != ScheduleKind::kInterleaved) {
    if (spec.chunks != 1) {
      invalid(ErrorKind::kConflict, "chunks",
              detail::concat("the ", to_string(spec.kind),
                             " schedule runs 1 model chunk per device, got ", spec.chunks,
                             "; only the interleaved schedule takes more"));
    }
    return;
  }
  if (spec.chunks < 2) {
    invalid(ErrorKind::kValue, "chunks",
            detail::concat("the interleaved schedule needs at least 2 model chunks per device, "
                           "got ",
                           spec.chunks, "; with 1 it is the train (1F1B) schedule"));
  }
  if (spec.micro_batches % spec.stages != 0) {
    invalid(ErrorKind::kConflict, "micro_batches",
            detail::concat("the interleaved schedule needs micro-batches divisible by stages, as "
                           "Megatron-LM does: ",
                           spec.micro_batches, " micro-batches, ", spec.stages, " stages"));
  }
}

int interleaved_warmup(int micro_batches, int stages, int chunks, int stage) {
  const int total = micro_batches * chunks;
  // With m == p Megatron-LM runs every forward first: 1F1B would gain nothing.
  if (micro_batches == stages) return total;
  return std::min(2 * (stages - stage - 1) + (chunks - 1) * stages, total);
}

int num_pipe_buffers(const ScheduleSpec& spec, int stage) {
  validate(spec);
  check_stage(spec, stage);
  switch (spec.kind) {
    case ScheduleKind::kTrain:
      // At least two even when one activation is in flight: DeepSpeed's engine double-buffers.
      return std::max(2, std::min(spec.stages - stage, spec.micro_batches));
    case ScheduleKind::kInference:
      return 2;
    case ScheduleKind::kGPipe:
      return spec.micro_batches;
    case ScheduleKind::kInterleaved:
      return peak_in_flight(spec, stage);
  }
  return 0;
}

StageSchedule stage_schedule(const ScheduleSpec& spec, int stage) {
  validate(spec);
  check_stage(spec, stage);
  StageSchedule out;
  out.stage = stage;
  const int m = spec.micro_batches;
  const int p = spec.stages;
  switch (spec.kind) {
    case ScheduleKind::kTrain:
      out.num_pipe_buffers = num_pipe_buffers(spec, stage);
      out.steps = train_steps(m, p, stage, out.num_pipe_buffers);
      break;
    case ScheduleKind::kInference:
      out.num_pipe_buffers = num_pipe_buffers(spec, stage);
      out.steps = inference_steps(m, p, stage);
      break;
    case ScheduleKind::kGPipe:
      out.num_pipe_buffers = num_pipe_buffers(spec, stage);
      out.steps = gpipe_steps(m, p, stage);
      break;
    case ScheduleKind::kInterleaved: {
      InterleavedStream stream = interleaved_steps(m, p, spec.chunks, stage);
      out.num_pipe_buffers = stream.buffers;
      ZP_CHECK(out.num_pipe_buffers == num_pipe_buffers(spec, stage), "interleaved stage ", stage,
               " uses ", out.num_pipe_buffers, " buffers, the warmup count says ",
               num_pipe_buffers(spec, stage));
      out.steps = std::move(stream.steps);
      break;
    }
  }
  return out;
}

std::vector<StageSchedule> pipeline_schedule(const ScheduleSpec& spec) {
  validate(spec);
  std::vector<StageSchedule> out;
  out.reserve(static_cast<std::size_t>(spec.stages));
  for (int s = 0; s < spec.stages; ++s)
    out.push_back(stage_schedule(spec, s));
  return out;
}

ActivationPeak replay_activation_peak(const StageSchedule& schedule) {
  std::set<std::pair<int, int>> has_backward;
  for (const Step& step : schedule.steps) {
    for (const Instruction& i : step) {
      if (i.kind == K::kBackwardPass) has_backward.insert({i.chunk, i.micro_batch});
    }
  }
  ActivationPeak peak;
  std::vector<HeldActivation> held;
  for (std::size_t t = 0; t < schedule.steps.size(); ++t) {
    for (const Instruction& i : schedule.steps[t]) {
      const HeldActivation a{i.chunk, i.micro_batch};
      if (i.kind == K::kForwardPass && has_backward.contains({i.chunk, i.micro_batch})) {
        ZP_CHECK(std::find(held.begin(), held.end(), a) == held.end(), "stage ", schedule.stage,
                 " runs the forward of chunk ", a.chunk, " micro-batch ", a.micro_batch, " twice");
        held.push_back(a);
        if (static_cast<int>(held.size()) > peak.count) {
          peak.count = static_cast<int>(held.size());
          peak.step = static_cast<int>(t);
          peak.held = held;
        }
      } else if (i.kind == K::kBackwardPass) {
        const auto it = std::find(held.begin(), held.end(), a);
        ZP_CHECK(it != held.end(), "stage ", schedule.stage, " runs the backward of chunk ",
                 a.chunk, " micro-batch ", a.micro_batch, " before its forward");
        held.erase(it);
      }
    }
  }
  return peak;
}

int peak_in_flight(const ScheduleSpec& spec, int stage) {
  validate(spec);
  check_stage(spec, stage);
  switch (spec.kind) {
    case ScheduleKind::kInference:
      return 0;
    case ScheduleKind::kTrain:
      return std::min(spec.stages - stage, spec.micro_batches);
    case ScheduleKind::kGPipe:
      return spec.micro_batches;
    case ScheduleKind::kInterleaved: {
      const int total = spec.micro_batches * spec.chunks;
      const int warmup = interleaved_warmup(spec.micro_batches, spec.stages, spec.chunks, stage);
      return warmup == total ? total : warmup + 1;
    }
  }
  return 0;
}

Ratio Ratio::of(std::int64_t numerator, std::int64_t denominator) {
  ZP_CHECK(denominator != 0, "a ratio over 0");
  if (denominator < 0) {
    numerator = -numerator;
    denominator = -denominator;
  }
  const std::int64_t g = std::gcd(numerator, denominator);
  return Ratio{numerator / g, denominator / g};
}

std::int64_t BubbleReport::idle() const {
  std::int64_t sum = 0;
  for (const std::int64_t b : busy)
    sum += makespan - b;
  return sum;
}

Ratio BubbleReport::over_total() const {
  if (makespan == 0) return Ratio{};
  return Ratio::of(idle(), static_cast<std::int64_t>(busy.size()) * makespan);
}

Ratio BubbleReport::over_ideal() const {
  const std::int64_t work = std::accumulate(busy.begin(), busy.end(), std::int64_t{0});
  if (work == 0) return Ratio{};
  return Ratio::of(idle(), work);
}

BubbleReport replay_bubble(const ScheduleSpec& spec, const PassCosts& costs) {
  validate(spec);
  if (costs.forward < 1 || costs.backward < 1) {
    invalid(ErrorKind::kValue, costs.forward < 1 ? "forward" : "backward",
            detail::concat("pass costs must be at least 1 time unit, got forward ", costs.forward,
                           ", backward ", costs.backward));
  }
  const int p = spec.stages;
  const int m = spec.micro_batches;
  const int virtual_stages = p * spec.chunks;

  struct Pass {
    bool forward;
    int virtual_stage;
    int micro_batch;
  };
  std::vector<std::vector<Pass>> passes(static_cast<std::size_t>(p));
  for (const StageSchedule& stage : pipeline_schedule(spec)) {
    for (const Step& step : stage.steps) {
      for (const Instruction& i : step) {
        if (i.kind != K::kForwardPass && i.kind != K::kBackwardPass) continue;
        passes[static_cast<std::size_t>(stage.stage)].push_back(
            Pass{i.kind == K::kForwardPass, i.chunk * p + stage.stage, i.micro_batch});
      }
    }
  }

  // End time of each pass by (virtual stage, micro-batch); -1 until it has run.
  const auto slots = static_cast<std::size_t>(virtual_stages) * static_cast<std::size_t>(m);
  std::vector<std::int64_t> forward_end(slots, -1);
  std::vector<std::int64_t> backward_end(slots, -1);
  auto slot = [m](int vs, int mb) {
    return static_cast<std::size_t>(vs) * static_cast<std::size_t>(m) +
           static_cast<std::size_t>(mb);
  };

  BubbleReport report;
  report.busy.assign(static_cast<std::size_t>(p), 0);
  std::vector<std::int64_t> free_at(static_cast<std::size_t>(p), 0);
  std::vector<std::size_t> next(static_cast<std::size_t>(p), 0);
  std::size_t remaining = 0;
  for (const auto& list : passes)
    remaining += list.size();

  // Each device stops at the first pass whose input is not there yet; rounds go on until all have
  // run. A round that runs nothing means a stream waits on itself: a bug in a generator.
  while (remaining > 0) {
    bool progressed = false;
    for (std::size_t d = 0; d < passes.size(); ++d) {
      while (next[d] < passes[d].size()) {
        const Pass& pass = passes[d][next[d]];
        std::int64_t ready = 0;
        if (pass.forward) {
          ready = pass.virtual_stage == 0
                      ? 0
                      : forward_end[slot(pass.virtual_stage - 1, pass.micro_batch)];
        } else if (pass.virtual_stage == virtual_stages - 1) {
          ready = forward_end[slot(pass.virtual_stage, pass.micro_batch)];
        } else {
          ready = backward_end[slot(pass.virtual_stage + 1, pass.micro_batch)];
        }
        if (ready < 0) break;
        const std::int64_t cost = pass.forward ? costs.forward : costs.backward;
        const std::int64_t end = std::max(ready, free_at[d]) + cost;
        (pass.forward ? forward_end : backward_end)[slot(pass.virtual_stage, pass.micro_batch)] =
            end;
        free_at[d] = end;
        report.busy[d] += cost;
        report.makespan = std::max(report.makespan, end);
        ++next[d];
        --remaining;
        progressed = true;
      }
    }
    ZP_CHECK(progressed, "the ", to_string(spec.kind), " schedule deadlocks with ", m,
             " micro-batches, ", p, " stages");
  }
  return report;
}

BubbleFractions closed_form_bubble(const ScheduleSpec& spec) {
  validate(spec);
  const std::int64_t p = spec.stages;
  const std::int64_t vm = static_cast<std::int64_t>(spec.chunks) * spec.micro_batches;
  return BubbleFractions{Ratio::of(p - 1, vm + p - 1), Ratio::of(p - 1, vm)};
}

}  // namespace zp::pipe
