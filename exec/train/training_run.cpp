#include "exec/train/training_run.h"
#include "exec/runtime/backend_info.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cstdio>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "core/model/summary.h"
#include "core/trace/chrome_trace.h"
#include "core/trace/native_format.h"
#include "core/util/error.h"
#include "core/util/units.h"
#include "core/zero/zero_model.h"
#include "exec/calibrate/calibrate.h"
#include "exec/comm/trace_records.h"
#include "exec/memory/counting_allocator.h"
#include "exec/memory/memory_scope.h"
#include "exec/runtime/host_cpu.h"
#include "exec/runtime/tensor_buffer.h"
#ifdef ZEROPLAN_HAVE_CUDA
#include "exec/cuda/cuda_info.h"
#include "exec/memory/cuda_memory_meter.h"
#endif
#include "exec/model/lm_model.h"
#include "exec/pipe/pipeline_engine.h"
#include "exec/zero/zero3_engine.h"

namespace zp::exec {

namespace {

using trace::MemoryCategory;

SourceLocation spec_key(const RunSpec& spec, const std::string& key) {
  return SourceLocation{spec.file.string(), 0, 0, key};
}

// A key of the DeepSpeed config: in its own file, or under `deepspeed` in the run spec.
SourceLocation ds_key(const RunSpec& spec, const std::string& key) {
  if (!spec.deepspeed_file.empty()) return SourceLocation{spec.deepspeed_file.string(), 0, 0, key};
  return spec_key(spec, "deepspeed." + key);
}

double number_at(const RunSpec& spec, const Json& params, const std::string& name,
                 double fallback) {
  if (!params.contains(name)) return fallback;
  const Json& v = params.at(name);
  if (!v.is_number()) {
    throw UserError(ErrorKind::kType, ds_key(spec, "optimizer.params." + name),
                    "must be a number, not " + v.dump());
  }
  return v.get<double>();
}

// The DeepSpeed config's optimizer, as torch::optim runs it. DeepSpeed's Adam is AdamW unless
// adam_w_mode is false; exec runs the decoupled form only.
OptimizerSpec read_optimizer(const RunSpec& spec, bool& is_default) {
  OptimizerSpec o;
  o.kind = OptimizerKind::kAdamW;
  o.lr = 1e-3;
  const Json& root = spec.deepspeed.original;
  is_default = !root.is_object() || !root.contains("optimizer");
  if (is_default) return o;
  const Json& section = root.at("optimizer");
  std::string type = section.is_object() && section.contains("type") && section["type"].is_string()
                         ? section["type"].get<std::string>()
                         : "";
  std::string lower = type;
  std::transform(lower.begin(), lower.end(), lower.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  const Json params =
      section.is_object() && section.contains("params") ? section["params"] : Json::object();
  if (lower == "sgd") {
    o.kind = OptimizerKind::kSgd;
    o.momentum = number_at(spec, params, "momentum", 0.0);
  } else if (lower == "adam" || lower == "adamw") {
    if (lower == "adam" && params.contains("adam_w_mode") && params["adam_w_mode"].is_boolean() &&
        !params["adam_w_mode"].get<bool>()) {
      throw UserError(ErrorKind::kUnsupported, ds_key(spec, "optimizer.params.adam_w_mode"),
                      "exec runs Adam in its decoupled-weight-decay form (AdamW) only");
    }
    if (params.contains("betas")) {
      const Json& betas = params["betas"];
      if (!betas.is_array() || betas.size() != 2 || !betas[0].is_number() ||
          !betas[1].is_number()) {
        throw UserError(ErrorKind::kType, ds_key(spec, "optimizer.params.betas"),
                        "must be two numbers, not " + betas.dump());
      }
      o.beta1 = betas[0].get<double>();
      o.beta2 = betas[1].get<double>();
    }
    o.eps = number_at(spec, params, "eps", o.eps);
  } else {
    throw UserError(ErrorKind::kUnsupported, ds_key(spec, "optimizer.type"),
                    "exec trains with SGD, Adam or AdamW, not '" + type + "'");
  }
  o.lr = number_at(spec, params, "lr", o.lr);
  o.weight_decay = number_at(spec, params, "weight_decay", 0.0);
  if (o.lr <= 0) {
    throw UserError(ErrorKind::kValue, ds_key(spec, "optimizer.params.lr"),
                    "must be positive, not " + std::to_string(o.lr));
  }
  return o;
}

std::string optimizer_text(const TrainingPlan& plan) {
  const OptimizerSpec& o = plan.optimizer;
  char text[160];
  if (o.kind == OptimizerKind::kSgd) {
    std::snprintf(text, sizeof text, "SGD lr %g momentum %g weight decay %g", o.lr, o.momentum,
                  o.weight_decay);
  } else {
    std::snprintf(text, sizeof text, "AdamW lr %g betas (%g, %g) eps %g weight decay %g", o.lr,
                  o.beta1, o.beta2, o.eps, o.weight_decay);
  }
  return std::string(text) +
         (plan.default_optimizer ? " (the DeepSpeed config names no optimizer)" : "");
}

// One rank's figures, exchanged as int64 so that rank 0 can report every rank.
// One rank's figures, exchanged as int64 so that rank 0 can report every rank.
struct RankFigures {
  static constexpr std::size_t kPeak = 0;      // allocated
  static constexpr std::size_t kReserved = 1;  // peak reserved
  static constexpr std::size_t kAtPeak = 2;    // each category at the peak, then unattributed
  static constexpr std::size_t kSteps = kAtPeak + trace::kMemoryCategoryCount + 1;
  static constexpr std::size_t kPerStep = 5;  // step, compute, hook, comm wait, optimizer ns
  static std::size_t size(std::int64_t steps) {
    return kSteps + kPerStep * static_cast<std::size_t>(steps);
  }
};

// Small exchanges of the report go through the training device (NCCL moves device memory only).
std::vector<std::int64_t> gather_int64(comm::Communicator& world, const at::Device& device,
                                       const std::vector<std::int64_t>& mine) {
  const auto n = static_cast<std::int64_t>(mine.size());
  const at::Tensor in = at::tensor(at::ArrayRef<std::int64_t>(mine), at::kLong).to(device);
  const at::Tensor all = at::empty({n * world.size()}, in.options());
  world.all_gather(buffer_of(in), buffer_of(all), "report")->wait();
  const at::Tensor host = all.cpu();
  return std::vector<std::int64_t>(host.data_ptr<std::int64_t>(),
                                   host.data_ptr<std::int64_t>() + host.numel());
}

// Every rank's trace to rank 0, merged there.
void collect_trace(comm::Communicator& world, const at::Device& device, const trace::Trace& mine,
                   trace::Trace& merged) {
  const std::string text = trace::to_native_json(mine).dump();
  const std::vector<std::int64_t> sizes =
      gather_int64(world, device, {static_cast<std::int64_t>(text.size())});
  if (world.rank() != 0) {
    const at::Tensor bytes = at::from_blob(const_cast<char*>(text.data()),
                                           {static_cast<std::int64_t>(text.size())}, at::kByte)
                                 .to(device, /*non_blocking=*/false, /*copy=*/true);
    world.send(buffer_of(bytes), 0, 1, "trace")->wait();
    return;
  }
  merged = mine;
  for (int r = 1; r < world.size(); ++r) {
    const at::Tensor bytes = at::empty({sizes[static_cast<std::size_t>(r)]},
                                       at::TensorOptions(at::kByte).device(device));
    world.recv(buffer_of(bytes), r, 1, "trace")->wait();
    const at::Tensor host = bytes.cpu();
    const auto* data = host.data_ptr<std::uint8_t>();
    const std::string theirs(data, data + host.numel());
    trace::append_ranks(
        merged, trace::from_native_json(trace::parse_json(theirs, "rank " + std::to_string(r)),
                                        "rank " + std::to_string(r)));
  }
}

std::string ms(std::int64_t ns) {
  char text[32];
  std::snprintf(text, sizeof text, "%.1f ms", static_cast<double>(ns) / 1e6);
  return text;
}

}  // namespace

TrainingPlan plan_training(RunSpec spec, std::int64_t world, const TrainingOptions& options) {
  TrainingPlan plan;
  plan.options = options;
  plan.world = world;
  if (options.steps < 1) {
    throw UserError(ErrorKind::kValue, SourceLocation{"", 0, 0, "--steps"},
                    "must be at least 1, not " + std::to_string(options.steps));
  }
  if (options.device.rfind("cuda", 0) == 0 && !at::hasCUDA()) {
    throw UserError(ErrorKind::kUnsupported, SourceLocation{"", 0, 0, "--device"},
                    "cuda: this libtorch is a CPU build; training on GPUs needs a CUDA libtorch");
  }
  const ZeroConfig& zero = spec.deepspeed.zero;
  if (spec.parallel.tensor > 1) {
    throw UserError(ErrorKind::kUnsupported, spec_key(spec, "parallel.tensor"),
                    "exec does not run tensor parallelism yet; 'zeroplan simulate' predicts it");
  }
  if (spec.parallel.pipeline > 1) {
    // DeepSpeed's pipeline engine takes ZeRO stages 0 and 1; exec's runs stage 0.
    if (zero.stage != 0) {
      throw UserError(ErrorKind::kUnsupported, ds_key(spec, "zero_optimization.stage"),
                      "exec runs pipelines with ZeRO stage 0; this run uses stage " +
                          std::to_string(zero.stage) + " ('zeroplan simulate' predicts it)");
    }
    if (options.device != "cpu") {
      throw UserError(ErrorKind::kUnsupported, SourceLocation{"", 0, 0, "--device"},
                      "exec runs pipelines on CPU ranks only for now");
    }
  } else if (zero.stage != 3) {
    throw UserError(ErrorKind::kUnsupported, ds_key(spec, "zero_optimization.stage"),
                    "exec trains ZeRO stage 3 without a pipeline; this run uses stage " +
                        std::to_string(zero.stage) + " ('zeroplan simulate' predicts it)");
  }
  if (spec.parallel.world() != world) {
    throw UserError(ErrorKind::kConflict, spec_key(spec, "parallel.data"),
                    "the run spec lays out " + std::to_string(spec.parallel.world()) +
                        " rank(s) but " + std::to_string(world) +
                        " are running (--nproc or WORLD_SIZE)");
  }
  if ((zero.offload_optimizer && zero.offload_optimizer->device != OffloadDevice::kNone) ||
      (zero.offload_param && zero.offload_param->device != OffloadDevice::kNone)) {
    throw UserError(
        ErrorKind::kUnsupported,
        ds_key(spec, zero.offload_param && zero.offload_param->device != OffloadDevice::kNone
                         ? "zero_optimization.offload_param"
                         : "zero_optimization.offload_optimizer"),
        "exec does not offload yet; 'zeroplan simulate' predicts offloaded runs");
  }
  check_runnable(spec.model.config, spec.tree);
  plan.accumulation = std::max<std::int64_t>(1, spec.deepspeed.batch.gradient_accumulation_steps);
  plan.optimizer = read_optimizer(spec, plan.default_optimizer);
  plan.spec = std::move(spec);
  return plan;
}

int run_training(const TrainingPlan& plan, comm::Communicator& world,
                 const comm::GroupMaker& make_group, std::ostream& out) {
  const RunSpec& spec = plan.spec;
  const int rank = world.rank();
  ZP_CHECK(world.size() == plan.world, "planned for ", plan.world, " ranks, running on ",
           world.size());

  const at::Device device(plan.options.device);
  // Every rank's times relative to one origin: rank 0's clock when training starts.
  const std::int64_t origin = gather_int64(world, device, {comm::wall_clock_ns()}).front();

  // The counting allocator on the CPU (every category); the caching allocator's totals on CUDA.
  std::optional<memory::CountingAllocator> allocator;
  std::unique_ptr<memory::MemoryMeter> cuda_meter;
  Zero3Options engine_options{plan.optimizer, {}};
  if (device.is_cuda()) {
#ifdef ZEROPLAN_HAVE_CUDA
    if (plan.options.count_memory) cuda_meter = memory::make_cuda_memory_meter(device.index());
    engine_options.synchronize = [index = device.index()] { cuda_synchronize(index); };
#endif
  } else if (plan.options.count_memory) {
    allocator.emplace(memory::CountingAllocator::Options{.record_samples = plan.wants_trace(),
                                                         .record_allocations = plan.wants_trace()});
  }
  const bool pipeline = spec.parallel.pipeline > 1;
  // Whole parameters until the engine partitions them (ZeRO-3) or keeps its stage's (pipeline).
  std::optional<memory::MemoryScope> building(
      std::in_place, trace::MemoryCategory::kParamPartitions, memory::intern_label("parameters"));
  LmModel model(spec.model.config, spec.tree, plan.options.seed);
  model.to(plan.options.device);
  model.set_checkpoint_interval(pipeline ? spec.deepspeed.pipeline.activation_checkpoint_interval
                                         : spec.training.checkpoint_interval);
  model.set_cpu_checkpointing(spec.deepspeed.activation_checkpointing.cpu_checkpointing);
  const zero::ZeroModel zero_model(spec.tree, spec.zero_settings());
  std::optional<Zero3Engine> zero3;
  std::optional<PipelineEngine> pipe_engine;
  if (pipeline) {
    pipe_engine.emplace(
        model, world,
        PipelineOptions{
            static_cast<int>(spec.parallel.pipeline), static_cast<int>(plan.accumulation),
            pipe::parse_partition_method(spec.deepspeed.pipeline.partition), plan.optimizer},
        make_group);
  } else {
    zero3.emplace(model, zero_model, world, engine_options);
  }

  building.reset();

  trace::Trace trace;
  trace.source = trace::Source::kMeasured;
  trace.ranks.push_back(
      trace::RankInfo{"rank " + std::to_string(rank),
                      {rank},
                      pipe_engine ? static_cast<std::int32_t>(pipe_engine->stage()) : 0});
  if (plan.wants_trace()) {
    if (zero3) zero3->record_into(&trace, 0, origin);
    if (pipe_engine) pipe_engine->record_into(&trace, 0, origin);
  }
  world.log().clear();

  // The data-parallel group: every rank without a pipeline, the pipelines' ranks with one.
  const std::int64_t data_size = spec.parallel.data;
  const int data_index = pipe_engine ? pipe_engine->data_index() : rank;
  const SyntheticData data{
      .seed = plan.options.seed,
      .global_batch = spec.training.micro_batch * data_size * plan.accumulation,
      .seq = spec.training.sequence_length,
      .vocab = spec.model.config->vocab_size};
  if (rank == 0 && !plan.options.json) {
    out << spec.name << ": " << spec.model.label << " ("
        << units::format_count(spec.tree.total_parameters()) << " parameters), "
        << (pipeline ? std::to_string(spec.parallel.pipeline) + " pipeline stages x " +
                           std::to_string(data_size) + " data-parallel"
                     : std::string("ZeRO-3"))
        << " over " << plan.world << " rank(s) (" << world.backend() << ", " << intra_op_threads()
        << " thread(s) each), " << spec.training.micro_batch << " x "
        << spec.training.sequence_length << " tokens per micro-batch, " << plan.accumulation
        << " micro-batch(es) per step"
        << (spec.training.checkpoint_interval > 0
                ? ", checkpointing every " + std::to_string(spec.training.checkpoint_interval) +
                      " layer(s)"
                : std::string())
        << "\n"
        << optimizer_text(plan) << "; synthetic data, seed " << plan.options.seed << "\n\n";
  }
  // The machine's speed before and after the steps, for a reader of the trace to set the step
  // times against the speed the cluster was calibrated at (CPU ranks, all at once, as calibrate
  // measures; rank 0's is recorded).
  const bool probes = plan.wants_trace() && plan.options.device == "cpu";
  const SpeedProbe probe_before = probes ? speed_probe(world) : SpeedProbe{};
  const bool comm_probes = probes && world.size() > 1;
  const CollectiveProbe comm_before = comm_probes ? collective_probe(world) : CollectiveProbe{};
  world.log().clear();  // the probes' collectives are no step's
  // CPU time the hypervisor took from this host (rank 0's) during the steps.
  const std::optional<HostCpuTimes> cpu_before = read_host_cpu_times();
  std::vector<Zero3StepStats> steps;
  std::vector<comm::OpRecord> records;  // every step's, for the report
  for (std::int64_t step = 0; step < plan.options.steps; ++step) {
    const TokenBatch global = synthetic_batch(data, step);
    std::vector<TokenBatch> micro;
    for (std::int64_t m = 0; m < plan.accumulation; ++m) {
      micro.push_back(micro_batch(global, data_index, static_cast<int>(data_size),
                                  static_cast<int>(m), static_cast<int>(plan.accumulation)));
    }
    if (zero3) {
      steps.push_back(zero3->step(micro));
    } else {
      const PipelineStepStats p = pipe_engine->step(micro);
      Zero3StepStats s;
      s.loss = p.loss;
      s.step_ns = p.step_ns;
      s.comm_wait_ns = p.comm_wait_ns;
      steps.push_back(s);
    }
    // The step's collectives, numbered with their step as sim numbers its own.
    const std::vector<comm::OpRecord> step_records = world.log().records();
    world.log().clear();
    if (plan.wants_trace()) {
      comm::append_to_trace(step_records,
                            comm::TraceTarget{0, pipeline ? "world" : "data", plan.world, origin,
                                              static_cast<std::int32_t>(step)},
                            trace);
    }
    records.insert(records.end(), step_records.begin(), step_records.end());
    // A pipeline's collectives over its sub-groups (tied weights, data parallel, the loss).
    for (const PipelineEngine::Group& g :
         pipe_engine ? pipe_engine->groups() : std::vector<PipelineEngine::Group>{}) {
      const std::vector<comm::OpRecord> group_records = g.comm->log().records();
      g.comm->log().clear();
      if (plan.wants_trace()) {
        const std::size_t before = trace.ops.size();
        comm::append_to_trace(
            group_records,
            comm::TraceTarget{0, g.name, g.comm->size(), origin, static_cast<std::int32_t>(step)},
            trace);
        // DeepSpeed's pipeline engine runs without overlap_comm: its collectives hold the compute
        // stream, where the simulator puts them too.
        for (std::size_t i = before; i < trace.ops.size(); ++i)
          trace.ops[i].stream = trace::StreamKind::kCompute;
      }
      records.insert(records.end(), group_records.begin(), group_records.end());
    }
    if (rank == 0 && !plan.options.json) {
      const Zero3StepStats& s = steps.back();
      char line[200];
      if (zero3) {
        std::snprintf(
            line, sizeof line,
            "step %lld  loss %.4f  %s  (compute %s, engine %s, comm wait %s, optimizer %s)\n",
            static_cast<long long>(step), s.loss, ms(s.step_ns).c_str(), ms(s.compute_ns).c_str(),
            ms(s.overhead_ns()).c_str(), ms(s.comm_wait_ns).c_str(), ms(s.optimizer_ns).c_str());
      } else {
        std::snprintf(line, sizeof line, "step %lld  loss %.4f  %s  (comm wait %s)\n",
                      static_cast<long long>(step), s.loss, ms(s.step_ns).c_str(),
                      ms(s.comm_wait_ns).c_str());
      }
      out << line << std::flush;
    }
  }

  const std::optional<double> steal = steal_share(cpu_before, read_host_cpu_times());
  const SpeedProbe probe_after = probes ? speed_probe(world) : SpeedProbe{};
  const CollectiveProbe comm_after = comm_probes ? collective_probe(world) : CollectiveProbe{};
  const memory::MemoryReading reading = allocator    ? allocator->read()
                                        : cuda_meter ? cuda_meter->read()
                                                     : memory::MemoryReading{};

  // The report's figures from every rank.
  std::vector<std::int64_t> mine;
  mine.push_back(reading.peak_allocated);
  mine.push_back(reading.peak_reserved);
  for (std::size_t c = 0; c < trace::kMemoryCategoryCount; ++c)
    mine.push_back(reading.at_peak.bytes[c]);
  mine.push_back(reading.at_peak.unattributed);
  for (const Zero3StepStats& s : steps) {
    mine.insert(mine.end(), {s.step_ns, s.compute_ns, s.hook_ns, s.comm_wait_ns, s.optimizer_ns});
  }
  ZP_CHECK(mine.size() == RankFigures::size(plan.options.steps), "figures");
  const std::vector<std::int64_t> all = gather_int64(world, device, mine);

  if (plan.wants_trace()) {
    if (allocator) {
      memory::append_to_trace(allocator->take_samples(), 0, origin, trace);
      memory::append_to_trace(allocator->take_allocations(), 0, origin, trace);
    }
    trace::Trace merged;
    collect_trace(world, device, trace, merged);
    if (rank == 0) {
      merged.metadata["run"] = spec.name;
      merged.metadata["model"] = spec.model.label;
      merged.metadata["steps"] = plan.options.steps;
      if (probes) {
        merged.metadata["speed_probe"] = {{"flops", probe_before.flops},
                                          {"bytes", probe_before.bytes},
                                          {"seconds_before", probe_before.seconds},
                                          {"seconds_after", probe_after.seconds}};
      }
      if (comm_probes) {
        merged.metadata["collective_probe"] = {{"bytes", comm_before.bytes},
                                               {"ranks", world.size()},
                                               {"seconds_before", comm_before.seconds},
                                               {"seconds_after", comm_after.seconds}};
      }
      if (steal) merged.metadata["host_steal_share"] = *steal;
      if (!plan.options.trace.empty()) trace::write_native(merged, plan.options.trace);
      if (!plan.options.chrome_trace.empty())
        trace::write_chrome_trace(merged, plan.options.chrome_trace);
    }
  }
  if (rank != 0) return 0;

  using F = RankFigures;
  const std::size_t stride = F::size(plan.options.steps);
  const auto category_name = [](std::size_t c) {
    return c < trace::kMemoryCategoryCount ? std::string(to_string(static_cast<MemoryCategory>(c)))
                                           : std::string("unattributed");
  };
  if (plan.options.json) {
    Json j;
    j["run"] = spec.name;
    j["world"] = plan.world;
    j["device"] = plan.options.device;
    j["losses"] = Json::array();
    for (const Zero3StepStats& s : steps)
      j["losses"].push_back(s.loss);
    for (int r = 0; r < world.size(); ++r) {
      const std::int64_t* f = all.data() + static_cast<std::size_t>(r) * stride;
      Json rj;
      rj["peak_allocated_bytes"] = f[F::kPeak];
      rj["peak_reserved_bytes"] = f[F::kReserved];
      rj["at_peak"] = Json::object();
      for (std::size_t c = 0; c <= trace::kMemoryCategoryCount; ++c)
        if (f[F::kAtPeak + c] != 0) rj["at_peak"][category_name(c)] = f[F::kAtPeak + c];
      for (std::size_t s = 0; s < static_cast<std::size_t>(plan.options.steps); ++s) {
        const std::int64_t* t = f + F::kSteps + F::kPerStep * s;
        rj["steps"].push_back(Json{{"step_ns", t[0]},
                                   {"compute_ns", t[1]},
                                   {"hook_ns", t[2]},
                                   {"comm_wait_ns", t[3]},
                                   {"optimizer_ns", t[4]}});
      }
      j["ranks"].push_back(rj);
    }
    out << j.dump(2) << "\n";
    return 0;
  }

  if (plan.options.count_memory) {
    out << "\nPeak memory ("
        << (device.is_cuda() ? "the CUDA caching allocator" : "counting allocator") << "):\n";
  }
  for (int r = 0; r < world.size() && plan.options.count_memory; ++r) {
    const std::int64_t* f = all.data() + static_cast<std::size_t>(r) * stride;
    out << "  rank " << r << ": " << units::format_bytes(static_cast<double>(f[F::kPeak]));
    if (device.is_cuda()) {
      out << " allocated, " << units::format_bytes(static_cast<double>(f[F::kReserved]))
          << " reserved\n";
      continue;
    }
    const char* sep = " = ";
    for (std::size_t c = 0; c <= trace::kMemoryCategoryCount; ++c) {
      if (f[F::kAtPeak + c] == 0) continue;
      out << sep << category_name(c) << " "
          << units::format_bytes(static_cast<double>(f[F::kAtPeak + c]));
      sep = " + ";
    }
    out << "\n";
  }
  out << "\nCollectives on rank 0, " << plan.options.steps << " step(s):\n";
  struct Total {
    std::int64_t count = 0, bytes = 0, ns = 0;
  };
  std::vector<std::pair<std::string, Total>> totals;
  for (const comm::OpRecord& r : records) {
    const std::string kind(to_string(r.kind));
    auto it =
        std::find_if(totals.begin(), totals.end(), [&](const auto& t) { return t.first == kind; });
    if (it == totals.end()) it = totals.insert(totals.end(), {kind, Total{}});
    ++it->second.count;
    it->second.bytes += r.bytes;
    it->second.ns += r.end_ns - r.start_ns;
  }
  for (const auto& [kind, t] : totals) {
    char line[160];
    std::snprintf(line, sizeof line, "  %-15s %6lld  %12s  %s\n", kind.c_str(),
                  static_cast<long long>(t.count),
                  units::format_bytes(static_cast<double>(t.bytes)).c_str(), ms(t.ns).c_str());
    out << line;
  }
  if (!plan.options.trace.empty()) out << "\nTrace: " << plan.options.trace << "\n";
  if (!plan.options.chrome_trace.empty())
    out << "Chrome trace: " << plan.options.chrome_trace << "\n";
  return 0;
}

}  // namespace zp::exec
