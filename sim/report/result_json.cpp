#include "sim/report/result_json.h"

namespace zp::sim {

std::string_view to_string(TransferKind kind) {
  switch (kind) {
    case TransferKind::kAllGather:
      return "allgather";
    case TransferKind::kReduceScatter:
      return "reduce_scatter";
    case TransferKind::kAllReduce:
      return "all_reduce";
    case TransferKind::kBroadcast:
      return "broadcast";
    case TransferKind::kSendRecv:
      return "send_recv";
    case TransferKind::kHostToDevice:
      return "host_to_device";
    case TransferKind::kDeviceToHost:
      return "device_to_host";
    case TransferKind::kNvme:
      return "nvme";
    case TransferKind::kCount:
      break;
  }
  return "?";
}

Json snapshot_to_json(const MemorySnapshot& s) {
  Json bytes = Json::object();
  for (std::size_t c = 0; c < trace::kMemoryCategoryCount; ++c)
    bytes[std::string(trace::to_string(static_cast<MemoryCategory>(c)))] = s.bytes[c];
  return Json{{"time_ns", s.time},
              {"step", s.step},
              {"allocated", s.allocated},
              {"reserved", s.reserved},
              {"by_category", bytes}};
}

namespace {

Json figures_json(const CoordinatorFigures& f) {
  return Json{{"allgather_calls", f.allgather_calls},
              {"demand_gathers", f.demand_gathers},
              {"prefetch_gathers", f.prefetch_gathers},
              {"outside_gathers", f.outside_gathers},
              {"params_gathered", f.params_gathered},
              {"elements_gathered", f.elements_gathered},
              {"releases", f.releases},
              {"peak_available_counted", f.peak_available_counted},
              {"peak_available_live", f.peak_available_live},
              {"reduce_calls", f.reduce_calls},
              {"reduce_elements", f.reduce_elements},
              {"invalidations", f.invalidations}};
}

}  // namespace

Json result_to_json(const SimulationResult& r) {
  Json ranks = Json::array();
  for (const RankReport& rank : r.ranks) {
    Json transfers = Json::object();
    for (std::size_t k = 0; k < kTransferKindCount; ++k) {
      const TransferTotals& t = rank.transfers[k];
      transfers[std::string(to_string(static_cast<TransferKind>(k)))] =
          Json{{"count", t.count}, {"bytes", t.bytes}, {"busy_ns", t.busy_ns}};
    }
    Json steps = Json::array();
    for (const StepReport& s : rank.steps) {
      steps.push_back(Json{{"step", s.step},
                           {"start_ns", s.start_ns},
                           {"end_ns", s.end_ns},
                           {"time_ns", s.time_ns()},
                           {"trace_mode", s.trace_mode},
                           {"compute_ns", s.compute_ns},
                           {"exposed_comm_ns", s.exposed_comm_ns},
                           {"exposed_gather_ns", s.exposed_gather_ns},
                           {"bubble_ns", s.bubble_ns},
                           {"peak", snapshot_to_json(s.peak)},
                           {"coordinator", figures_json(s.coordinator)}});
    }
    Json peak = snapshot_to_json(rank.peak);
    peak["running"] = rank.peak_running;
    ranks.push_back(Json{{"label", rank.label},
                         {"ranks", rank.ranks},
                         {"peak", peak},
                         {"peak_reserved", rank.peak_reserved},
                         {"peak_host", rank.peak_host},
                         {"peak_nvme", rank.peak_nvme},
                         {"out_of_memory_allocations", rank.out_of_memory},
                         {"model_flops_per_step", rank.model_flops_per_step},
                         {"bubble_ns", rank.bubble_ns},
                         {"transfers", transfers},
                         {"steps", steps}});
  }
  Json warnings = Json::array();
  for (const Warning& w : r.warnings)
    warnings.push_back(w.str());
  Json out{{"run", r.run_name},
           {"world_size", r.world_size},
           {"gpu_memory", r.gpu_memory},
           {"steady_state", r.steady_state},
           {"reported_steps", r.reported_steps},
           {"step_time_ns", r.step_time_ns},
           {"mfu", r.mfu},
           {"ranks", ranks},
           {"warnings", warnings}};
  if (r.estimate) {
    const DeepSpeedEstimate& e = *r.estimate;
    out["deepspeed_estimate"] =
        Json{{"function", e.stage == 3 ? "estimate_zero3_model_states_mem_needs"
                                       : "estimate_zero2_model_states_mem_needs"},
             {"total_params", e.total_params},
             {"largest_layer_params", e.largest_layer_params},
             {"cpu_offload", e.cpu_offload},
             {"cpu_offload_params", e.cpu_offload_params},
             {"gpu_bytes_per_gpu", e.gpu_bytes},
             {"cpu_bytes_per_node", e.cpu_bytes}};
  }
  return out;
}

}  // namespace zp::sim
