// `zeroplan inspect RUN.yaml`: the resolved run, every setting with its origin, and the model.
#include <iostream>

#include "cli/commands.h"
#include "cli/table.h"
#include "core/config/run_spec.h"
#include "core/model/summary.h"
#include "core/util/units.h"
#include "core/zero/partition.h"
#include "core/zero/zero_model.h"

namespace zp::cli {
namespace {

std::string_view to_string(ModelSpec::Kind kind) {
  switch (kind) {
    case ModelSpec::Kind::kPreset:
      return "preset";
    case ModelSpec::Kind::kFamily:
      return "family";
    case ModelSpec::Kind::kFile:
      return "file";
  }
  return "?";
}

std::string value_text(const Json& v) {
  return v.is_string() ? v.get<std::string>() : v.dump();
}

void print_settings(std::ostream& out, const std::string& title, const Provenance& settings) {
  out << title << "\n";
  Table table({"key", "value", "origin", "note"});
  for (const ResolvedSetting& s : settings) {
    table.add({s.key, value_text(s.value), std::string(zp::to_string(s.origin)), s.note});
  }
  table.print(out);
}

struct Report {
  const RunSpec& run;
  ModelSummary model;
  zero::PartitionSummary zero3;
  std::vector<std::string> leaves;  // z3 leaf modules, by qualified name
  std::int64_t hooked_modules = 0;  // modules with ZeRO hooks
  std::vector<Warning> warnings;    // the run's and the ZeRO model's
};

Json provenance_json(const Provenance& settings) {
  Json out = Json::array();
  for (const ResolvedSetting& s : settings) {
    out.push_back({{"key", s.key},
                   {"value", s.value},
                   {"origin", zp::to_string(s.origin)},
                   {"note", s.note}});
  }
  return out;
}

Json report_json(const Report& r) {
  const RunSpec& run = r.run;
  Json model = {{"kind", to_string(run.model.kind)},
                {"name", run.model.label},
                {"total_parameters", r.model.parameters},
                {"trainable_parameters", r.model.trainable_parameters},
                {"parameter_tensors", r.model.parameter_tensors},
                {"tied_parameters", r.model.tied_parameters},
                {"parameter_bytes", r.model.parameter_bytes},
                {"modules", r.model.modules},
                {"forward_flops_per_micro_batch", r.model.forward_flops},
                {"activation_bytes_per_micro_batch", r.model.activation_bytes}};
  if (run.model.config) model["config"] = model_config_to_json(*run.model.config);
  if (run.model.kind == ModelSpec::Kind::kFile) model["file"] = run.model.file.string();
  Json by_type = Json::array();
  for (const ModuleTypeTotals& t : r.model.by_type) {
    by_type.push_back({{"type", t.type}, {"modules", t.modules}, {"parameters", t.parameters}});
  }
  model["parameters_by_type"] = by_type;
  Json largest = Json::array();
  for (ModuleId id : r.model.largest) {
    largest.push_back({{"module", run.tree.qualified_name(id)},
                       {"type", run.tree.module(id).type},
                       {"parameters", own_parameters(run.tree, id)}});
  }
  model["largest_modules"] = largest;

  Json warnings = Json::array();
  for (const Warning& w : run.warnings)
    warnings.push_back(w.str());
  Json out = {{"run", run.file.string()},
              {"name", run.name},
              {"total_parameters", r.model.parameters},
              {"model", model},
              {"cluster", cluster_to_json(run.cluster)},
              {"parallel",
               {{"data", run.parallel.data},
                {"pipeline", run.parallel.pipeline},
                {"tensor", run.parallel.tensor}}},
              {"training",
               {{"sequence_length", run.training.sequence_length},
                {"micro_batch", run.training.micro_batch},
                {"dtype", zp::to_string(run.training.dtype)},
                {"gradient_accumulation_steps", run.deepspeed.batch.gradient_accumulation_steps},
                {"train_batch_size", run.deepspeed.batch.train_batch_size}}},
              {"deepspeed_file", run.deepspeed_file.string()},
              {"deepspeed", deepspeed_config_to_json(run.deepspeed)},
              {"deepspeed_provenance", provenance_json(run.deepspeed.provenance)},
              {"run_provenance", provenance_json(run.provenance)},
              {"warnings", warnings}};
  if (run.deepspeed.zero.stage == 3) {
    out["zero3"] = {{"data_parallel_size", r.zero3.group_size},
                    {"parameters", r.zero3.parameters},
                    {"numel", r.zero3.numel},
                    {"padded_numel", r.zero3.padded_numel},
                    {"partition_numel_per_rank", r.zero3.partition_numel},
                    {"persistent_parameters", r.zero3.persistent_parameters},
                    {"persistent_numel", r.zero3.persistent_numel},
                    {"deepspeed_version", zero::to_string(run.deepspeed_version)},
                    {"hooked_modules", r.hooked_modules},
                    {"leaf_modules", r.leaves}};
  }
  return out;
}

void print_report(std::ostream& out, const Report& r) {
  const RunSpec& run = r.run;
  const ClusterSpec& c = run.cluster;
  const BatchConfig& b = run.deepspeed.batch;
  const int elem = dtype_size(run.training.dtype);
  out << "Run        " << run.file.string() << (run.name.empty() ? "" : " (" + run.name + ")")
      << "\n";
  out << "Model      " << run.model.label << " (" << to_string(run.model.kind)
      << "): " << units::format_count(r.model.parameters) << " parameters in "
      << r.model.parameter_tensors << " tensors, " << r.model.modules << " modules\n";
  out << "Cluster    " << c.name << ": " << c.nodes << " node" << (c.nodes == 1 ? "" : "s") << " x "
      << c.gpus_per_node << " " << (c.gpu.empty() ? "GPUs" : c.gpu) << ", "
      << units::format_bytes(static_cast<double>(c.gpu_memory)) << " each\n";
  out << "Layout     " << run.parallel.world() << " GPUs = data " << run.parallel.data
      << " x pipeline " << run.parallel.pipeline << " x tensor " << run.parallel.tensor << "\n";
  out << "Batch      global " << b.train_batch_size << " = micro " << b.micro_batch_per_gpu
      << " x accumulation " << b.gradient_accumulation_steps << " x data " << run.parallel.data
      << "; sequence " << run.training.sequence_length << "; " << zp::to_string(run.training.dtype)
      << "\n";
  out << "DeepSpeed  ZeRO stage " << run.deepspeed.zero.stage << " ("
      << (run.deepspeed_file.empty() ? "inline" : run.deepspeed_file.string()) << ")\n";

  if (!run.warnings.empty()) {
    out << "\nWarnings (" << run.warnings.size() << ")\n";
    for (const Warning& w : run.warnings)
      out << "  " << w.str() << "\n";
  }
  out << "\n";
  print_settings(out, "Run settings", run.provenance);
  out << "\n";
  print_settings(out, "DeepSpeed settings", run.deepspeed.provenance);

  out << "\nModel: parameters by module type\n";
  Table types(
      {"type", "modules", "parameters", "share"},
      {Table::Align::kLeft, Table::Align::kRight, Table::Align::kRight, Table::Align::kRight});
  for (const ModuleTypeTotals& t : r.model.by_type) {
    if (t.parameters == 0) continue;
    char share[32];
    std::snprintf(share, sizeof share, "%.1f%%",
                  100.0 * static_cast<double>(t.parameters) /
                      static_cast<double>(std::max<std::int64_t>(1, r.model.parameters)));
    types.add({t.type, std::to_string(t.modules), units::format_count(t.parameters), share});
  }
  types.add({"total", std::to_string(r.model.modules), units::format_count(r.model.parameters),
             "100.0%"});
  types.print(out);
  if (r.model.tied_parameters > 0) {
    out << "  (" << r.model.tied_parameters << " tied parameter tensor(s), counted once)\n";
  }

  out << "\nLargest modules (parameters registered on the module itself)\n";
  Table largest({"module", "type", "parameters"},
                {Table::Align::kLeft, Table::Align::kLeft, Table::Align::kRight});
  for (ModuleId id : r.model.largest) {
    largest.add({run.tree.qualified_name(id), run.tree.module(id).type,
                 units::format_count(own_parameters(run.tree, id))});
  }
  largest.print(out);

  out << "\nPer micro-batch forward: "
      << units::format_si(static_cast<double>(r.model.forward_flops), "FLOP")
      << "; activations saved for backward: "
      << units::format_bytes(static_cast<double>(r.model.activation_bytes))
      << " (no checkpointing)\n";

  const ZeroConfig& z = run.deepspeed.zero;
  if (z.stage == 3) {
    const zero::PartitionSummary& p = r.zero3;
    out << "\nZeRO-3 partitioning over " << p.group_size << " data-parallel ranks\n";
    out << "  partitioned   " << units::format_count(p.parameters) << " tensors, "
        << units::format_count(p.numel) << " elements (" << units::format_count(p.padded_numel)
        << " after padding to multiples of " << p.group_size << ")\n";
    out << "  per rank      " << units::format_count(p.partition_numel)
        << " elements = " << units::format_bytes(static_cast<double>(p.partition_numel * elem))
        << " in " << zp::to_string(run.training.dtype) << "\n";
    out << "  persistent    " << units::format_count(p.persistent_parameters) << " tensors, "
        << units::format_count(p.persistent_numel) << " elements kept whole on every rank ("
        << units::format_bytes(static_cast<double>(p.persistent_numel * elem))
        << "): stage3_param_persistence_threshold "
        << units::format_count(z.param_persistence_threshold)
        << ", stage3_model_persistence_threshold "
        << (z.model_persistence_threshold == INT64_MAX
                ? std::string("unlimited")
                : units::format_count(z.model_persistence_threshold))
        << "\n";
    out << "  hooks         " << r.hooked_modules << " of " << r.model.modules
        << " modules, DeepSpeed " << zero::to_string(run.deepspeed_version) << " behaviour\n";
    if (!r.leaves.empty()) {
      std::string list;
      for (size_t i = 0; i < r.leaves.size() && i < 4; ++i)
        list += (i ? ", " : "") + r.leaves[i];
      if (r.leaves.size() > 4) list += ", ... (" + std::to_string(r.leaves.size()) + " in all)";
      out << "  z3 leaves     " << list << "\n";
    }
  } else {
    out << "\nZeRO stage " << z.stage << ": parameters are not partitioned"
        << (z.stage > 0 ? " (optimizer states" + std::string(z.stage == 2 ? " and gradients" : "") +
                              " are, over " + std::to_string(run.parallel.data) + " ranks)"
                        : "")
        << "\n";
  }
}

}  // namespace

void add_inspect_command(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "inspect",
      "Resolve a run spec and show every setting with its origin (user, default, deprecated key, "
      "inferred, run spec), the model summary and what ZeRO-3 partitions.");
  auto path = std::make_shared<std::string>();
  auto json = std::make_shared<bool>(false);
  cmd->add_option("RUN", *path, "The run spec (YAML).")->required();
  cmd->add_flag("--json", *json, "Print one JSON object (for scripts) instead of text.");
  cmd->callback([path, json] {
    const RunSpec run = load_run_spec(*path);
    Report report{run, summarize_model(run.tree), {}, {}, 0, run.warnings};
    report.zero3 = zero::summarize_partitioning(run.tree, run.parallel.data,
                                                run.deepspeed.zero.param_persistence_threshold,
                                                run.deepspeed.zero.model_persistence_threshold);
    if (run.deepspeed.zero.stage == 3) {
      const zero::ZeroModel zero_model(run.tree, run.zero_settings());
      for (ModuleId m : zero_model.leaves())
        report.leaves.push_back(run.tree.qualified_name(m));
      for (size_t m = 0; m < run.tree.modules().size(); ++m) {
        if (zero_model.is_hooked(static_cast<ModuleId>(m))) ++report.hooked_modules;
      }
      report.warnings.insert(report.warnings.end(), zero_model.warnings().begin(),
                             zero_model.warnings().end());
    }
    if (*json) {
      for (const Warning& w : report.warnings)
        std::cerr << "zeroplan: warning: " << w.str() << "\n";
      std::cout << report_json(report).dump(2) << "\n";
    } else {
      print_report(std::cout, report);
    }
  });
}

}  // namespace zp::cli
