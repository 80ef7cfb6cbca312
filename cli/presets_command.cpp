// `zeroplan presets`: the built-in models and clusters a run spec can name.
#include <iostream>

#include "cli/commands.h"
#include "cli/table.h"
#include "core/config/cluster.h"
#include "core/model/presets.h"
#include "core/util/units.h"

namespace zp::cli {

void add_presets_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("presets", "List the built-in model and cluster presets.");
  auto json = std::make_shared<bool>(false);
  cmd->add_flag("--json", *json, "Print one JSON object instead of tables.");
  cmd->callback([json] {
    Json out = {{"models", Json::array()}, {"clusters", Json::array()}};
    Table models({"model", "family", "parameters", "layers", "hidden"},
                 {Table::Align::kLeft, Table::Align::kLeft, Table::Align::kRight,
                  Table::Align::kRight, Table::Align::kRight});
    for (const std::string& name : preset_names()) {
      const ModelConfig& c = *find_preset(name);
      // Counting needs no costs: a one-token shape is enough and fast.
      const std::int64_t params =
          build_model(c, BatchShape{1, 1, DType::kBFloat16}).total_parameters();
      models.add({name, std::string(to_string(c.family)), units::format_count(params),
                  std::to_string(c.num_layers), std::to_string(c.hidden_size)});
      out["models"].push_back({{"name", name},
                               {"family", to_string(c.family)},
                               {"parameters", params},
                               {"config", model_config_to_json(c)}});
    }
    Table clusters(
        {"cluster", "GPU", "nodes x GPUs", "GPU memory"},
        {Table::Align::kLeft, Table::Align::kLeft, Table::Align::kRight, Table::Align::kRight});
    for (const std::string& name : cluster_preset_names()) {
      const ClusterSpec& c = *find_cluster_preset(name);
      clusters.add({name, c.gpu, std::to_string(c.nodes) + " x " + std::to_string(c.gpus_per_node),
                    units::format_bytes(static_cast<double>(c.gpu_memory))});
      out["clusters"].push_back(cluster_to_json(c));
    }
    if (*json) {
      std::cout << out.dump(2) << "\n";
      return;
    }
    std::cout << "Models\n";
    models.print(std::cout);
    std::cout << "\nClusters\n";
    clusters.print(std::cout);
  });
}

}  // namespace zp::cli
