// `zeroplan simulate RUN.yaml`: one training step of the run, predicted: memory, collectives and
// time per rank class, with DeepSpeed's own estimate beside it, and the trace files on request.
#include <algorithm>
#include <filesystem>
#include <iostream>
#include <memory>

#include "cli/commands.h"
#include "cli/table.h"
#include "core/config/run_spec.h"
#include "core/trace/chrome_trace.h"
#include "core/trace/native_format.h"
#include "core/util/units.h"
#include "sim/report/result_json.h"
#include "sim/simulate.h"

namespace zp::cli {
namespace {

using sim::MemorySnapshot;
using sim::RankReport;
using sim::SimulationResult;
using sim::StepReport;

std::string bytes(std::int64_t b) {
  return units::format_bytes(static_cast<double>(b));
}
std::string duration(std::int64_t ns) {
  return units::format_duration_ns(ns);
}
std::string share(double part, double whole) {
  if (whole <= 0) return "-";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f%%", 100.0 * part / whole);
  return buf;
}

void print_memory(std::ostream& out, const MemorySnapshot& peak) {
  Table table({"category", "at the peak", "share"},
              {Table::Align::kLeft, Table::Align::kRight, Table::Align::kRight});
  for (std::size_t c = 0; c < trace::kMemoryCategoryCount; ++c) {
    const auto category = static_cast<trace::MemoryCategory>(c);
    if (!trace::on_device(category) || peak.bytes[c] == 0) continue;
    table.add({std::string(trace::to_string(category)), bytes(peak.bytes[c]),
               share(static_cast<double>(peak.bytes[c]), static_cast<double>(peak.allocated))});
  }
  table.print(out, "    ");
}

void print_host(std::ostream& out, const RankReport& r) {
  bool any = false;
  for (std::size_t c = 0; c < trace::kMemoryCategoryCount; ++c)
    any |= !trace::on_device(static_cast<trace::MemoryCategory>(c)) && r.peak.bytes[c] > 0;
  if (!any) return;
  out << "  Host and NVMe (per rank, at the device peak): ";
  bool first = true;
  for (std::size_t c = 0; c < trace::kMemoryCategoryCount; ++c) {
    const auto category = static_cast<trace::MemoryCategory>(c);
    if (trace::on_device(category) || r.peak.bytes[c] == 0) continue;
    out << (first ? "" : ", ") << trace::to_string(category) << " " << bytes(r.peak.bytes[c]);
    first = false;
  }
  out << "\n";
}

void print_transfers(std::ostream& out, const RankReport& r, std::size_t steps) {
  Table table({"transfer", "count", "bytes", "busy"}, {Table::Align::kLeft, Table::Align::kRight,
                                                       Table::Align::kRight, Table::Align::kRight});
  for (std::size_t k = 0; k < sim::kTransferKindCount; ++k) {
    const sim::TransferTotals& t = r.transfers[k];
    if (t.count == 0) continue;
    table.add({std::string(sim::to_string(static_cast<sim::TransferKind>(k))),
               std::to_string(t.count), bytes(t.bytes), duration(t.busy_ns)});
  }
  out << "  Collectives and copies" << (steps > 1 ? " (all reported steps)" : "") << ":\n";
  table.print(out, "    ");
}

void print_step(std::ostream& out, const StepReport& s) {
  const sim::CoordinatorFigures& f = s.coordinator;
  // Pipeline steps have no ZeRO-3 trace; they have a bubble instead.
  const bool zero3 = !s.trace_mode.empty();
  out << "  Step " << s.step << (zero3 ? " (trace " + s.trace_mode + ")" : std::string()) << ": "
      << duration(s.time_ns()) << "; compute " << duration(s.compute_ns)
      << ", exposed communication " << duration(s.exposed_comm_ns);
  if (zero3) {
    out << " (waiting for parameters " << duration(s.exposed_gather_ns) << ")";
  } else {
    out << ", bubble " << duration(s.bubble_ns) << " ("
        << share(static_cast<double>(s.bubble_ns), static_cast<double>(s.time_ns())) << ")";
  }
  out << "; peak " << bytes(s.peak.allocated) << "\n";
  if (!zero3) return;
  out << "    ZeRO-3: " << f.allgather_calls << " gathers (" << f.demand_gathers << " demand, "
      << f.prefetch_gathers << " prefetch) of " << f.params_gathered << " parameters, "
      << units::format_count(f.elements_gathered) << " elements; " << f.releases
      << " releases; peak available elements " << units::format_count(f.peak_available_counted)
      << " counted, " << units::format_count(f.peak_available_live) << " live; " << f.reduce_calls
      << " gradient reductions of " << units::format_count(f.reduce_elements) << " elements\n";
}

void print_summary(std::ostream& out, const RunSpec& run, const SimulationResult& r) {
  const ClusterSpec& c = run.cluster;
  out << "Run        " << run.file.string() << (run.name.empty() ? "" : " (" + run.name + ")")
      << "\n";
  out << "Model      " << run.model.label << ": "
      << units::format_count(run.tree.total_parameters()) << " parameters, "
      << zp::to_string(run.training.dtype) << ", micro batch " << run.training.micro_batch << " x "
      << run.training.sequence_length << " tokens, "
      << std::max<std::int64_t>(run.deepspeed.batch.gradient_accumulation_steps, 1)
      << " micro-batch(es) per step\n";
  out << "Cluster    " << c.nodes << " x " << c.gpus_per_node << " " << c.gpu << " ("
      << bytes(c.gpu_memory) << "); data " << run.parallel.data << " x pipeline "
      << run.parallel.pipeline << " x tensor " << run.parallel.tensor << ", ZeRO stage "
      << run.deepspeed.zero.stage << "\n";
  const bool zero3 = run.parallel.pipeline == 1 && run.deepspeed.zero.stage == 3;
  out << "Reported   "
      << (!r.steady_state ? "steps 0 to " + std::to_string(r.reported_steps.back())
          : zero3         ? std::string("the steady-state step (the first with a complete ZeRO-3 "
                                                "trace)")
                          : std::string("the steady-state step"))
      << "\n";
  out << "Step time  " << duration(r.step_time_ns) << ", model FLOPs utilisation "
      << share(r.mfu, 1.0) << "\n\n";
  for (const RankReport& rank : r.ranks) {
    out << rank.label << "\n";
    out << "  Peak allocated " << bytes(rank.peak.allocated) << " of " << bytes(c.gpu_memory)
        << " ("
        << share(static_cast<double>(rank.peak.allocated), static_cast<double>(c.gpu_memory))
        << "), reserved " << bytes(rank.peak_reserved) << "; at " << duration(rank.peak.time)
        << " in step " << rank.peak.step << ", during " << rank.peak_running << "\n";
    print_memory(out, rank.peak);
    print_host(out, rank);
    for (const StepReport& s : rank.steps)
      print_step(out, s);
    print_transfers(out, rank, rank.steps.size());
    out << "\n";
  }
  if (r.estimate) {
    const sim::DeepSpeedEstimate& e = *r.estimate;
    std::int64_t states = 0;
    for (auto category :
         {trace::MemoryCategory::kParamPartitions, trace::MemoryCategory::kGradPartitions,
          trace::MemoryCategory::kMasterWeights, trace::MemoryCategory::kOptimizerStates,
          trace::MemoryCategory::kPersistentParams})
      states += r.ranks.front().peak.bytes[static_cast<std::size_t>(category)];
    if (e.stage == 3) {
      out << "DeepSpeed's estimate_zero3_model_states_mem_needs (largest layer "
          << units::format_count(e.largest_layer_params) << " parameters): ";
    } else {
      out << "DeepSpeed's estimate_zero2_model_states_mem_needs: ";
    }
    out << bytes(e.gpu_bytes) << " per GPU, " << bytes(e.cpu_bytes)
        << " of host memory per node. Predicted model states at the peak: " << bytes(states)
        << "; the whole peak: " << bytes(r.ranks.front().peak.allocated) << ".\n";
  }
  for (const Warning& w : r.warnings)
    out << "warning: " << w.str() << "\n";
}

}  // namespace

void add_simulate_command(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "simulate",
      "Predict one training step of a run on every rank: memory over time with its breakdown at "
      "the peak, every collective, the step time, and the ZeRO-3 coordinator's decisions.");
  struct Args {
    std::string path;
    bool json = false;
    std::int64_t steps = 0;
    bool all_ranks = false;
    bool no_allocator = false;
    std::string trace;
    std::string chrome;
  };
  auto a = std::make_shared<Args>();
  cmd->add_option("RUN", a->path, "The run spec (YAML).")->required();
  cmd->add_flag("--json", a->json, "Print one JSON object (for scripts) instead of the summary.");
  cmd->add_option("--steps", a->steps,
                  "Simulate and report the first N steps, warm-up included (default: only the "
                  "steady-state step).");
  cmd->add_flag("--all-ranks", a->all_ranks,
                "Simulate every rank, not one per class of identical ranks.");
  cmd->add_flag("--no-allocator", a->no_allocator,
                "Do not model PyTorch's caching allocator (faster; reserved = allocated).");
  cmd->add_option("--trace", a->trace, "Write the native trace (for 'zeroplan view') here.");
  cmd->add_option("--chrome-trace", a->chrome,
                  "Write a Chrome trace (Perfetto, chrome://tracing) here.");
  cmd->callback([a] {
    // Refuse an output path that cannot be written before spending the time to simulate.
    for (const auto& [flag, file] :
         {std::pair{"--trace", a->trace}, {"--chrome-trace", a->chrome}}) {
      if (file.empty()) continue;
      const std::filesystem::path parent = std::filesystem::absolute(file).parent_path();
      if (!std::filesystem::is_directory(parent)) {
        throw UserError(ErrorKind::kIo, {"", 0, 0, flag},
                        "cannot write " + file + ": no folder " + parent.string());
      }
    }
    const RunSpec run = load_run_spec(a->path);
    sim::SimOptions options;
    options.steps = a->steps;
    options.all_ranks = a->all_ranks;
    options.model_allocator = !a->no_allocator;
    const bool want_trace = !a->trace.empty() || !a->chrome.empty();
    trace::Trace trace;
    const SimulationResult result = sim::simulate(run, options, want_trace ? &trace : nullptr);
    for (const Warning& w : run.warnings)
      std::cerr << "zeroplan: warning: " << w.str() << "\n";
    if (!a->trace.empty()) trace::write_native(trace, a->trace);
    if (!a->chrome.empty()) trace::write_chrome_trace(trace, a->chrome);
    if (a->json) {
      std::cout << sim::result_to_json(result).dump(2) << "\n";
    } else {
      print_summary(std::cout, run, result);
      if (!a->trace.empty()) std::cout << "Trace written to " << a->trace << "\n";
      if (!a->chrome.empty()) std::cout << "Chrome trace written to " << a->chrome << "\n";
    }
    std::cout.flush();
    for (const RankReport& rank : result.ranks) {
      const std::int64_t need = std::max(rank.peak.allocated, rank.peak_reserved);
      if (need > run.cluster.gpu_memory) {
        throw RunFails("the run does not fit: " + rank.label + " needs " + bytes(need) +
                       " of its " + bytes(run.cluster.gpu_memory) + " GPUs (see the summary)");
      }
    }
  });
}

}  // namespace zp::cli
