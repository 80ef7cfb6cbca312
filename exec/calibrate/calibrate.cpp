#include "exec/calibrate/calibrate.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <chrono>
#include <functional>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "core/config/calibration.h"
#include "core/config/document.h"
#include "core/model/families/transformer.h"
#include "core/model/model_config.h"
#include "core/util/error.h"
#include "core/util/median.h"
#include "core/zero/hook_schedule.h"
#include "core/zero/zero_model.h"
#include "exec/model/lm_model.h"
#include "exec/runtime/backend_info.h"
#include "exec/runtime/host_cpu.h"
#include "exec/runtime/tensor_buffer.h"
#include "exec/train/reference_trainer.h"
#include "exec/zero/zero3_engine.h"

namespace zp::exec {

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// A piece of compute between two collectives, about what a small module's call takes.
constexpr double kComputePieceSeconds = 500e-6;

// Collectives timed together as a step's share of them: the tiny GPT-2 example issues 27 a step
// on 2 ranks.
constexpr int kStepBlock = 25;

// Seconds per call of `fn` while every rank runs it: after a barrier each rank calls it for the
// same wall-clock window, and the median of a few windows stands. Ranks sharing cores then share
// them for the whole of each window, as a training step's ranks do; a fixed number of calls
// would let the ranks that finish first idle at the next barrier and leave the last ones the
// cores to themselves (with 4 ranks on 2 cores, rates came out up to 4 times too high). A window
// holds several of the largest calls (a 512-square matmul takes tens of milliseconds), so that
// the ranks' windows end together.
double time_per_call(comm::Communicator& world, const std::function<void()>& fn,
                     double window_seconds) {
  fn();
  fn();
  std::vector<double> windows;
  for (int w = 0; w < 5; ++w) {
    world.barrier();
    const auto start = Clock::now();
    std::int64_t calls = 0;
    double elapsed = 0;
    do {
      fn();
      ++calls;
      elapsed = seconds_since(start);
    } while (elapsed < window_seconds);
    windows.push_back(elapsed / static_cast<double>(calls));
  }
  return median(windows);
}

// Median seconds per call of a collective `fn`, run the same number of times on every rank: the
// link's time, idle.
double time_collective(comm::Communicator& world, const std::function<void()>& fn, int iterations) {
  world.barrier();
  fn();
  std::vector<double> times;
  for (int i = 0; i < iterations; ++i) {
    const auto start = Clock::now();
    fn();
    times.push_back(seconds_since(start));
  }
  return median(times);
}

// A piece of compute of about kComputePieceSeconds on this rank (linear layers, as a small
// module's call), for collectives to be timed as a step issues them: between pieces.
class ComputePiece {
 public:
  ComputePiece(comm::Communicator& world, double window_seconds)
      : x_(at::randn({64, 128})), w_(at::randn({128, 128})) {
    const double one = time_per_call(
        world, [&] { (void)at::linear(x_, w_); }, window_seconds);
    reps_ = static_cast<int>(std::clamp(kComputePieceSeconds / one, 1.0, 1e4));
  }
  void operator()() const {
    for (int i = 0; i < reps_; ++i)
      (void)at::linear(x_, w_);
  }

 private:
  at::Tensor x_, w_;
  int reps_ = 1;
};

// Operations timed as a training step issues them, between pieces of compute: each round, after a
// barrier, `block` calls of the piece alone, then `block` calls of each op (each op runs the piece
// itself, before or beside its collective); an op's figure is in_step_excess of the rounds'
// block means, and `piece_seconds` gets the median of the piece's.
std::vector<double> in_step_seconds(comm::Communicator& world, const ComputePiece& piece,
                                    const std::vector<std::function<void()>>& ops, int rounds,
                                    int block, double& piece_seconds) {
  const auto block_mean = [&](const std::function<void()>& fn) {
    world.barrier();
    const auto start = Clock::now();
    for (int i = 0; i < block; ++i)
      fn();
    return seconds_since(start) / block;
  };
  for (const auto& op : ops)
    op();  // the first call of each pays for buffers and connections
  std::vector<double> alone;
  std::vector<std::vector<double>> with(ops.size());
  for (int r = 0; r < rounds; ++r) {
    alone.push_back(block_mean([&] { piece(); }));
    for (std::size_t i = 0; i < ops.size(); ++i)
      with[i].push_back(block_mean(ops[i]));
  }
  std::vector<double> out;
  for (const std::vector<double>& w : with)
    out.push_back(in_step_excess(alone, w));
  piece_seconds = median(std::move(alone));
  return out;
}

// Seconds per call of an n-square fp32 linear layer whose weight requires a gradient: a module's
// call, which allocates its output and records the autograd node training records. Calibrate's
// matmul points and the speed probe are the same measurement.
double square_linear_seconds(comm::Communicator& world, std::int64_t n, double window_seconds) {
  const at::Tensor x = at::randn({n, n});
  const at::Tensor w = at::randn({n, n}).requires_grad_(true);
  return time_per_call(
      world, [&] { (void)at::linear(x, w); }, window_seconds);
}

Json point(const char* unit, double amount, double seconds) {
  return Json{{unit, amount}, {"seconds", seconds}};
}

// The mean over the ranks of each rank's `value`.
double mean_over_ranks(comm::Communicator& world, double value) {
  world.all_reduce(comm::host_buffer(&value, 1))->wait();
  return value / world.size();
}

// The reference runs (calibration_reference_runs) trained on every rank at once with exec's
// ZeRO-3 engine: each run's compute a step (forward, backward, recomputation and the optimizer),
// and the first's hooks (their time less their waiting for collectives) with the hooks the
// simulator charges (training_step_schedule's events). Each rank's median over the steps after
// the first, averaged over the ranks: where ranks share cores, a rank's compute a step moves with
// what the others run beside it, over spells of a second (25 steps' median moved by a factor of
// 1.8 within one run of 4 ranks on 2 cores), so a few dozen steps of one rank are a snapshot.
// A run's calls a step are counted over its steps alone, its engine's setup apart. Tried and not
// kept: the runs taking their steps in turn (docs/validate.md, "calibrate").
void reference_runs(comm::Communicator& world, bool quick, Json& out,
                    const std::function<void(const std::string&)>& say) {
  const std::vector<RunSpec> runs = calibration_reference_runs(world.size());
  const int steps = quick ? 3 : 120;
  say(std::to_string(runs.size()) + " reference ZeRO-3 runs' compute and hooks, " +
      std::to_string(steps) + " steps each on every rank");
  out["reference_compute"] = Json::array();
  out["reference_calls"] = Json::array();
  world.log().clear();
  for (std::size_t i = 0; i < runs.size(); ++i) {
    const RunSpec& run = runs[i];
    const ModelConfig& c = *run.model.config;
    const zero::ZeroModel zero_model(run.tree, run.zero_settings());
    LmModel model(c, run.tree, /*seed=*/0);
    Zero3Engine engine(model, zero_model, world, Zero3Options{});
    const SyntheticData data{.seed = 1,
                             .global_batch = run.training.micro_batch * world.size(),
                             .seq = run.training.sequence_length,
                             .vocab = c.vocab_size};
    std::vector<double> overhead;
    std::vector<double> compute;
    std::int64_t calls = 0;
    for (int step = 0; step < steps; ++step) {
      world.log().clear();
      const TokenBatch global = synthetic_batch(data, step);
      const Zero3StepStats stats = engine.step({micro_batch(global, world.rank(), world.size())});
      for (const comm::OpRecord& r : world.log().records())
        calls += r.kind == comm::CommKind::kAllGather || r.kind == comm::CommKind::kReduceScatter ||
                 r.kind == comm::CommKind::kAllReduce || r.kind == comm::CommKind::kBroadcast;
      if (step == 0) continue;
      overhead.push_back(static_cast<double>(stats.overhead_ns()) * 1e-9);
      compute.push_back(static_cast<double>(stats.compute_ns + stats.optimizer_ns) * 1e-9);
    }
    world.log().clear();
    out["reference_calls"].push_back(static_cast<double>(calls) / steps);
    out["reference_compute"].push_back(mean_over_ranks(world, median(std::move(compute))));
    if (i == 0) {
      const zero::StepSchedule schedule = zero::training_step_schedule(zero_model);
      const auto events =
          static_cast<std::int64_t>(schedule.forward.size() + schedule.backward.size());
      out["hooks"] = Json{{"events", events},
                          {"seconds", mean_over_ranks(world, median(std::move(overhead)))}};
    }
    world.log().clear();
  }
}

}  // namespace

double in_step_excess(const std::vector<double>& piece, const std::vector<double>& op) {
  ZP_CHECK(!piece.empty() && piece.size() == op.size(), "in-step rounds: ", piece.size(),
           " of the piece, ", op.size(), " of the op");
  std::vector<double> beyond;
  for (std::size_t r = 0; r < piece.size(); ++r)
    beyond.push_back(op[r] - piece[r]);
  return median(std::move(beyond));
}

SpeedProbe speed_probe(comm::Communicator& world) {
  constexpr std::int64_t n = 256;
  return SpeedProbe{2.0 * static_cast<double>(n * n * n), 3.0 * static_cast<double>(n * n) * 4.0,
                    square_linear_seconds(world, n, 0.05)};
}

CollectiveProbe collective_probe(comm::Communicator& world, int rounds) {
  ZP_CHECK(world.size() > 1 && rounds > 0, "a collective probe on ", world.size(), " rank(s), ",
           rounds, " round(s)");
  constexpr std::int64_t numel = 16384;  // calibrate's middle in-step size: 64 KiB
  const std::int64_t p = world.size();
  const std::int64_t chunk = (numel + p - 1) / p;
  const at::Tensor flat = at::zeros({chunk * p});
  const at::Tensor mine = at::zeros({chunk});
  const ComputePiece piece(world, 0.02);
  double piece_seconds = 0;
  const std::vector<double> after =
      in_step_seconds(world, piece, {[&] {
                        piece();
                        world.all_gather(buffer_of(mine), buffer_of(flat), "probe")->wait();
                      }},
                      rounds, kStepBlock, piece_seconds);
  world.log().clear();
  return CollectiveProbe{4.0 * static_cast<double>(chunk * p), std::max(0.0, after[0])};
}

int run_calibration(comm::Communicator& world, const CalibrationOptions& options, std::ostream& out,
                    std::ostream& progress) {
  const bool lead = world.rank() == 0;
  const double batch = options.quick ? 0.005 : 0.1;
  const int iterations = options.quick ? 5 : 20;
  const auto say = [&](const std::string& text) {
    if (lead) progress << "calibrate: " << text << std::endl;
  };
  at::manual_seed(0);
  Json j;
  j["format"] = "zeroplan-calibration";
  j["version"] = 1;
  j["ranks"] = world.size();
  j["backend"] = std::string(world.backend());
  j["threads_per_rank"] = at::get_num_threads();
  j["cores"] = usable_cores();
  j["collectives_poll"] = options.collectives_poll;
  const std::optional<HostCpuTimes> cpu_before = read_host_cpu_times();

  // Dense compute: square fp32 linear layers (square_linear_seconds), from sizes where the call's
  // fixed cost dominates to sizes where the FLOP rate does.
  const std::vector<std::int64_t> sizes =
      options.quick ? std::vector<std::int64_t>{32, 128, 256}
                    : std::vector<std::int64_t>{32, 64, 128, 256, 384, 512};
  say("matmul throughput (fp32), " + std::to_string(sizes.size()) + " sizes on every rank");
  j["matmul"] = Json::array();
  for (const std::int64_t n : sizes) {
    j["matmul"].push_back(point("flops", 2.0 * static_cast<double>(n * n * n),
                                square_linear_seconds(world, n, batch)));
  }

  // Memory-bound compute: a + b, three fp32 streams, allocated and recorded as above.
  const std::vector<std::int64_t> lengths =
      options.quick ? std::vector<std::int64_t>{4096, 262144}
                    : std::vector<std::int64_t>{1024, 16384, 65536, 262144, 1048576};
  say("elementwise bandwidth, " + std::to_string(lengths.size()) + " sizes on every rank");
  j["elementwise"] = Json::array();
  for (const std::int64_t n : lengths) {
    const at::Tensor a = at::randn({n}).requires_grad_(true);
    const at::Tensor b = at::randn({n});
    const double s = time_per_call(
        world, [&] { (void)at::add(a, b); }, batch);
    j["elementwise"].push_back(point("bytes", 12.0 * static_cast<double>(n), s));
  }

  // Element-wise work that is not a matrix product, priced at the model's FLOPs per element
  // (core/model/families/transformer.h): GELU's tanh form, SiLU, a LayerNorm over rows of 256,
  // each on an input that requires a gradient, as a module's call. Dropout apart: its random
  // numbers run at a rate of their own (on a CPU thread some 20 times below the others), so its
  // forward and backward are timed together against the model's FLOPs for both.
  const std::vector<std::int64_t> vector_lengths =
      options.quick ? std::vector<std::int64_t>{16384} : std::vector<std::int64_t>{16384, 262144};
  say("element-wise FLOP rates, " + std::to_string(4 * vector_lengths.size()) +
      " points on every rank");
  j["elementwise_ops"] = Json::array();
  j["dropout"] = Json::array();
  for (const std::int64_t n : vector_lengths) {
    const at::Tensor x = at::randn({n / 256, 256}).requires_grad_(true);
    const at::Tensor gamma = at::ones({256});
    const at::Tensor beta = at::zeros({256});
    const auto add = [&](std::int64_t flops_per_element, const std::function<void()>& fn) {
      j["elementwise_ops"].push_back(point("flops", static_cast<double>(flops_per_element * n),
                                           time_per_call(world, fn, batch)));
    };
    add(families::kGeluFlops, [&] { (void)at::gelu(x, "tanh"); });
    add(families::kSiluFlops, [&] { (void)at::silu(x); });
    add(families::kLayerNormFlops, [&] { (void)at::layer_norm(x, {256}, gamma, beta, 1e-5); });
    const ModuleCost dropout = families::dropout_cost(n, 0.1, 4);
    const double scale = 1.0 / 0.9;
    j["dropout"].push_back(
        point("flops", static_cast<double>(dropout.forward_flops + dropout.backward_or_default()),
              time_per_call(
                  world,
                  [&] {
                    const auto [y, mask] = at::native_dropout(x, 0.1, true);
                    (void)at::native_dropout_backward(y, mask, scale);
                  },
                  batch)));
  }

  // The fixed cost of a kernel, forward and backward: chains of K products of a small tensor that
  // requires a gradient, so that each is one kernel with its autograd node and the bytes cost
  // nothing. The forward's time per product is kernel_launch; the backward's (sum().backward()
  // through the chain, less the forward) per product is kernel_launch + autograd_node. The line's
  // fixed part (the sum, the engine's start) is a backward's, not a kernel's.
  const std::vector<std::int64_t> chains =
      options.quick ? std::vector<std::int64_t>{4, 32} : std::vector<std::int64_t>{4, 16, 64};
  say("kernel fixed costs, forward and backward, " + std::to_string(chains.size()) +
      " chain lengths on every rank");
  j["kernels_forward"] = Json::array();
  j["kernels_backward"] = Json::array();
  {
    const at::Tensor x = at::randn({256}).requires_grad_(true);
    const at::Tensor b = at::randn({256});
    for (const std::int64_t k : chains) {
      const auto chain = [&] {
        at::Tensor y = x;
        for (std::int64_t i = 0; i < k; ++i)
          y = y * b;
        return y;
      };
      const double forward = time_per_call(
          world, [&] { (void)chain(); }, batch);
      const double both = time_per_call(
          world, [&] { chain().sum().backward(); }, batch);
      j["kernels_forward"].push_back(point("kernels", static_cast<double>(k), forward));
      j["kernels_backward"].push_back(
          point("kernels", static_cast<double>(k), std::max(both - forward, 1e-9)));
    }
  }

  // Host copies: what a copy between a device and its host costs, here memory to memory.
  say("host copy bandwidth on every rank");
  j["host_copy"] = Json::array();
  for (const std::int64_t n : {std::int64_t{1} << 18, std::int64_t{1} << 22}) {
    const at::Tensor from = at::randn({n});
    at::Tensor to = at::empty({n});
    const double s = time_per_call(
        world, [&] { to.copy_(from); }, batch);
    j["host_copy"].push_back(point("bytes", 4.0 * static_cast<double>(n), s));
  }

  // Collectives over every rank; bytes as a trace counts them (the whole gathered output, the
  // whole reduced input, the message).
  const std::vector<std::int64_t> elements =
      options.quick ? std::vector<std::int64_t>{1024, 65536}
                    : std::vector<std::int64_t>{256, 1024, 4096, 16384, 65536, 262144, 1048576};
  const int p = world.size();
  j["allgather"] = Json::array();
  j["reduce_scatter"] = Json::array();
  j["send_recv"] = Json::array();
  if (p > 1) {
    say("all-gather and reduce-scatter over " + std::to_string(p) + " ranks, " +
        std::to_string(elements.size()) + " sizes");
    for (const std::int64_t numel : elements) {
      const std::int64_t chunk = (numel + p - 1) / p;
      at::Tensor flat = at::zeros({chunk * p});
      at::Tensor mine = at::zeros({chunk});
      const double gather = time_collective(
          world, [&] { world.all_gather(buffer_of(mine), buffer_of(flat), "calibrate")->wait(); },
          iterations);
      const double reduce = time_collective(
          world,
          [&] {
            world
                .reduce_scatter(buffer_of(flat), buffer_of(mine), comm::ReduceOp::kSum, "calibrate")
                ->wait();
          },
          iterations);
      const double bytes = 4.0 * static_cast<double>(chunk * p);
      j["allgather"].push_back(point("bytes", bytes, gather));
      j["reduce_scatter"].push_back(point("bytes", bytes, reduce));
    }
    // Collectives as a training step issues them, between pieces of compute on the same rank:
    // after a piece (a demand fetch or a gradient reduction: the rank waits for it), and issued
    // before a piece and waited for after it (a prefetch). Each point is the time beyond the
    // compute alone. Where ranks share the cores with the collectives' threads, the first costs
    // more than an idle collective (the threads wake on cores the ranks are computing on) and
    // the second overlaps nothing; on devices with their own engines, neither.
    {
      const ComputePiece piece(world, batch);
      const std::vector<std::int64_t> in_step =
          options.quick ? std::vector<std::int64_t>{16384}
                        : std::vector<std::int64_t>{1024, 16384, 262144};
      std::vector<std::function<void()>> ops;
      std::vector<at::Tensor> buffers;  // each op's, alive while the ops run
      for (const std::int64_t numel : in_step) {
        const std::int64_t chunk = (numel + p - 1) / p;
        const at::Tensor flat = buffers.emplace_back(at::zeros({chunk * p}));
        const at::Tensor mine = buffers.emplace_back(at::zeros({chunk}));
        const auto gather = [&world, flat, mine] {
          return world.all_gather(buffer_of(mine), buffer_of(flat), "calibrate");
        };
        ops.emplace_back([&piece, gather] {
          piece();
          gather()->wait();
        });
        ops.emplace_back([&piece, gather] {
          auto pending = gather();
          piece();
          pending->wait();
        });
      }
      // A pipeline's messages as its steps send them: every rank computes a piece, then the
      // ranks exchange a message in pairs (0 and 1, 2 and 3, ...), a round trip halved as below.
      const bool pairs = p % 2 == 0;
      if (pairs) {
        const int peer = world.rank() ^ 1;
        const bool first = world.rank() % 2 == 0;
        for (const std::int64_t numel : in_step) {
          const at::Tensor message = buffers.emplace_back(at::zeros({numel}));
          ops.emplace_back([&world, &piece, message, peer, first] {
            piece();
            if (first) {
              world.send(buffer_of(message), peer, 9, "calibrate")->wait();
              world.recv(buffer_of(message), peer, 10, "calibrate")->wait();
            } else {
              world.recv(buffer_of(message), peer, 9, "calibrate")->wait();
              world.send(buffer_of(message), peer, 10, "calibrate")->wait();
            }
          });
        }
      }
      say("all-gather" + std::string(pairs ? " and send/recv" : "") +
          " between pieces of compute, " + std::to_string(in_step.size()) + " sizes");
      double alone = 0;
      const std::vector<double> beyond =
          in_step_seconds(world, piece, ops, options.quick ? 3 : 16, kStepBlock, alone);
      j["compute_piece"] = alone;
      j["allgather_after_compute"] = Json::array();
      j["allgather_beside_compute"] = Json::array();
      j["send_recv_after_compute"] = Json::array();
      for (std::size_t i = 0; i < in_step.size(); ++i) {
        const std::int64_t chunk = (in_step[i] + p - 1) / p;
        const double bytes = 4.0 * static_cast<double>(chunk * p);
        j["allgather_after_compute"].push_back(point("bytes", bytes, beyond[2 * i]));
        j["allgather_beside_compute"].push_back(point("bytes", bytes, beyond[2 * i + 1]));
        if (pairs)
          j["send_recv_after_compute"].push_back(
              point("bytes", 4.0 * static_cast<double>(in_step[i]),
                    std::max(beyond[2 * in_step.size() + i] / 2, 1e-9)));
      }
    }
    say("send/recv between ranks 0 and 1, " + std::to_string(elements.size()) + " sizes");
    for (const std::int64_t numel : elements) {
      at::Tensor message = at::zeros({numel});
      // A round trip, halved: one message's time without trusting two clocks.
      const double round_trip = time_collective(
          world,
          [&] {
            if (world.rank() == 0) {
              world.send(buffer_of(message), 1, 7, "calibrate")->wait();
              world.recv(buffer_of(message), 1, 8, "calibrate")->wait();
            } else if (world.rank() == 1) {
              world.recv(buffer_of(message), 0, 7, "calibrate")->wait();
              world.send(buffer_of(message), 0, 8, "calibrate")->wait();
            }
          },
          iterations);
      j["send_recv"].push_back(point("bytes", 4.0 * static_cast<double>(numel), round_trip / 2));
    }
  }
  reference_runs(world, options.quick, j, say);
  world.barrier();
  // The lead rank's host: the one its ranks share.
  if (const auto steal = steal_share(cpu_before, read_host_cpu_times()))
    j["host_steal_share"] = *steal;
  world.log().clear();
  if (lead) out << j.dump(2) << std::endl;
  return 0;
}

}  // namespace zp::exec
