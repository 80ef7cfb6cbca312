#include "core/config/cluster.h"

#include <array>
#include <cmath>
#include <filesystem>
#include <stdexcept>

#include "core/config/reader.h"
#include "core/util/suggest.h"
#include "core/util/units.h"

namespace zp {
namespace {

constexpr double kTera = 1e12;
constexpr double kGB = 1e9;
constexpr std::int64_t kGiB = 1024LL * 1024 * 1024;

// Datasheet figures (dense, no sparsity). Links: NVLink/NVSwitch bandwidth per GPU and direction;
// the inter-node figure is each GPU's own NIC (DGX systems have one per GPU).
std::vector<ClusterSpec> make_presets() {
  ClusterSpec a100;
  a100.name = "dgx-a100-80g";
  a100.gpu = "A100-SXM4-80GB";
  a100.nodes = 1;
  a100.gpus_per_node = 8;
  a100.gpu_memory = 80 * kGiB;
  a100.peak_flops = {{"fp64", 19.5 * kTera}, {"fp32", 19.5 * kTera}, {"tf32", 156 * kTera},
                     {"fp16", 312 * kTera},  {"bf16", 312 * kTera},  {"int8", 624 * kTera}};
  a100.hbm_bandwidth = 2039 * kGB;
  a100.intra_node = {300 * kGB, 3000};  // NVLink 3: 600 GB/s both directions
  a100.inter_node = {25 * kGB, 5000};   // 200 Gb/s HDR InfiniBand per GPU
  a100.host_memory = 2048 * kGiB;
  a100.pcie_bandwidth = 25 * kGB;  // PCIe 4.0 x16, achievable
  a100.nvme_bandwidth = 25 * kGB;  // 8 x U.2 NVMe, RAID 0, read

  ClusterSpec a100_40 = a100;
  a100_40.name = "dgx-a100-40g";
  a100_40.gpu = "A100-SXM4-40GB";
  a100_40.gpu_memory = 40 * kGiB;
  a100_40.hbm_bandwidth = 1555 * kGB;
  a100_40.host_memory = 1024 * kGiB;

  ClusterSpec h100;
  h100.name = "dgx-h100";
  h100.gpu = "H100-SXM5-80GB";
  h100.nodes = 1;
  h100.gpus_per_node = 8;
  h100.gpu_memory = 80 * kGiB;
  h100.peak_flops = {{"fp64", 67 * kTera},    {"fp32", 67 * kTera},    {"tf32", 494.7 * kTera},
                     {"fp16", 989.4 * kTera}, {"bf16", 989.4 * kTera}, {"fp8", 1978.9 * kTera},
                     {"int8", 1978.9 * kTera}};
  h100.hbm_bandwidth = 3350 * kGB;
  h100.intra_node = {450 * kGB, 3000};  // NVLink 4: 900 GB/s both directions
  h100.inter_node = {50 * kGB, 5000};   // 400 Gb/s NDR InfiniBand per GPU
  h100.host_memory = 2048 * kGiB;
  h100.pcie_bandwidth = 50 * kGB;  // PCIe 5.0 x16, achievable
  h100.nvme_bandwidth = 50 * kGB;

  ClusterSpec h200 = h100;
  h200.name = "dgx-h200";
  h200.gpu = "H200-SXM-141GB";
  h200.gpu_memory = 141LL * 1000 * 1000 * 1000;
  h200.hbm_bandwidth = 4800 * kGB;

  // One PCIe card per node over Ethernet: where smaller jobs often run.
  ClusterSpec l40s;
  l40s.name = "l40s-pcie";
  l40s.gpu = "L40S-48GB";
  l40s.nodes = 1;
  l40s.gpus_per_node = 4;
  l40s.gpu_memory = 48 * kGiB;
  l40s.peak_flops = {{"fp32", 91.6 * kTera}, {"tf32", 183 * kTera}, {"fp16", 362 * kTera},
                     {"bf16", 362 * kTera},  {"fp8", 733 * kTera},  {"int8", 733 * kTera}};
  l40s.hbm_bandwidth = 864 * kGB;
  l40s.intra_node = {25 * kGB, 10000};    // through PCIe 4.0, no NVLink
  l40s.inter_node = {12.5 * kGB, 10000};  // 100 Gb/s Ethernet
  l40s.host_memory = 512 * kGiB;
  l40s.pcie_bandwidth = 25 * kGB;
  l40s.nvme_bandwidth = 7 * kGB;

  return {a100, a100_40, h100, h200, l40s};
}

const std::vector<ClusterSpec>& presets() {
  static const std::vector<ClusterSpec> all = make_presets();
  return all;
}

const std::array<std::string, 7> kFlopsDtypes = {"fp64", "fp32", "tf32", "fp16",
                                                 "bf16", "fp8",  "int8"};

// Runs a unit parser and turns its complaint into an error at `node`.
template <class F>
auto with_units(const Node& node, F parse) {
  try {
    if (node.value().is_number()) return parse(node.value().dump());
    return parse(read_string(node));
  } catch (const std::invalid_argument& e) {
    node.fail(ErrorKind::kValue, e.what());
  }
}

std::int64_t read_count(const Node& node) {
  const std::int64_t v = read_int(node, Coercion::kStrict);
  require_at_least(node, v, 1);
  return v;
}

void read_link(const Node& node, LinkSpec& link, const std::string& key) {
  ObjectReader r(node, key);
  if (auto b = r.get("bandwidth")) {
    link.bandwidth = with_units(*b, units::parse_bandwidth);
    if (link.bandwidth <= 0)
      b->fail(ErrorKind::kValue, b->repr() + " is out of range: must be > 0");
  }
  if (auto l = r.get("latency")) {
    link.latency_ns = with_units(*l, units::parse_duration_ns);
    if (link.latency_ns < 0)
      l->fail(ErrorKind::kValue, l->repr() + " is out of range: must be >= 0");
  }
  r.reject_unknown();
}

}  // namespace

const ClusterSpec* find_cluster_preset(std::string_view name) {
  for (const ClusterSpec& c : presets()) {
    if (c.name == name) return &c;
  }
  return nullptr;
}

std::vector<std::string> cluster_preset_names() {
  std::vector<std::string> names;
  for (const ClusterSpec& c : presets())
    names.push_back(c.name);
  return names;
}

namespace {
const ClusterSpec& preset_or_fail(const Node& node) {
  const std::string name = read_string(node);
  const ClusterSpec* preset = find_cluster_preset(name);
  if (!preset) {
    std::string list;
    for (const std::string& n : cluster_preset_names())
      list += (list.empty() ? "" : ", ") + n;
    node.fail(ErrorKind::kValue, "unknown cluster preset \"" + name + "\"" +
                                     did_you_mean(name, cluster_preset_names()) +
                                     "; presets: " + list);
  }
  return *preset;
}

// The value in the unit people read it in, for notes: "80.0 GiB", "300 GB/s".
std::string human(const std::string& key, const Json& value) {
  if (!value.is_number()) return "";
  const double v = value.get<double>();
  if (key.ends_with("memory")) return units::format_bytes(v);
  if (key.ends_with("bandwidth")) return units::format_si(v, "B/s");
  if (key.ends_with("latency_ns")) return units::format_duration_ns(value.get<std::int64_t>());
  if (key.starts_with("peak_flops") || key == "elementwise_flops" ||
      key.starts_with("module_flops"))
    return units::format_si(v, "FLOP/s");
  return "";
}

// Records every resolved value; keys present in `written` (the user's mapping) count as the user's.
void record_cluster(const ClusterSpec& c, const Json& written, const std::string& preset_note,
                    Provenance& provenance) {
  auto add = [&](const std::string& key, const Json& value, bool by_user) {
    std::string note = human(key, value);
    if (!by_user && !preset_note.empty())
      note += note.empty() ? preset_note : " (" + preset_note + ")";
    provenance.push_back(
        {"cluster." + key, value, by_user ? Origin::kUser : Origin::kDefault, note});
  };
  const Json resolved = cluster_to_json(c);
  for (const auto& [key, value] : resolved.items()) {
    const bool by_user = written.is_object() && written.contains(key);
    if (value.is_object()) {
      for (const auto& [sub, v] : value.items())
        add(key + "." + sub, v, by_user);
    } else {
      add(key, value, by_user);
    }
  }
}
}  // namespace

ClusterSpec parse_cluster(const Node& node, Provenance& provenance) {
  if (node.value().is_string()) {
    const ClusterSpec& preset = preset_or_fail(node);
    record_cluster(preset, Json(), "preset " + preset.name, provenance);
    return preset;
  }
  ObjectReader r(node, "cluster");
  ClusterSpec c;
  c.name = "inline";
  std::string base_note;
  if (auto p = r.get("preset")) {
    c = preset_or_fail(*p);
    base_note = "preset " + c.name;
  }
  // A description in a file of its own (what `zeroplan calibrate` writes): the value of a
  // `cluster:` key, alone in the file or under `cluster`, relative to this file's folder.
  if (auto f = r.get("file")) {
    if (!base_note.empty()) f->fail(ErrorKind::kConflict, "give 'preset' or 'file', not both");
    const std::filesystem::path written = read_string(*f);
    const std::filesystem::path path =
        written.is_absolute() ? written : node.document().path().parent_path() / written;
    if (!std::filesystem::is_regular_file(path))
      f->fail(ErrorKind::kMissing, "no cluster description " + path.string());
    const Document doc = Document::load(path);
    Node root(doc);
    if (root.value().is_object() && root.value().contains("cluster")) root = root.child("cluster");
    if (root.value().is_object() && root.value().contains("file"))
      root.child("file").fail(ErrorKind::kUnsupported, "a cluster file cannot name another");
    Provenance ignored;
    c = parse_cluster(root, ignored);
    c.name = written.string();
    base_note = "file " + written.string();
  }
  const bool from_preset = !base_note.empty();
  if (auto n = r.get("gpu")) c.gpu = read_string(*n);
  if (auto n = r.get("nodes")) c.nodes = read_count(*n);
  if (auto n = r.get("gpus_per_node")) c.gpus_per_node = read_count(*n);
  if (auto n = r.get("gpu_memory")) {
    c.gpu_memory = with_units(*n, units::parse_bytes);
    if (c.gpu_memory <= 0) n->fail(ErrorKind::kValue, n->repr() + " is out of range: must be > 0");
  }
  if (auto n = r.get("peak_flops")) {
    ObjectReader f(*n, "cluster.peak_flops");
    for (const std::string& dtype : kFlopsDtypes) {
      if (auto v = f.get(dtype)) {
        const double flops = with_units(*v, units::parse_flops);
        if (flops <= 0) v->fail(ErrorKind::kValue, v->repr() + " is out of range: must be > 0");
        c.peak_flops[dtype] = flops;
      }
    }
    f.reject_unknown();
  }
  if (auto n = r.get("hbm_bandwidth")) c.hbm_bandwidth = with_units(*n, units::parse_bandwidth);
  if (auto n = r.get("intra_node")) read_link(*n, c.intra_node, "intra_node");
  if (auto n = r.get("inter_node")) read_link(*n, c.inter_node, "inter_node");
  if (auto n = r.get("point_to_point")) {
    // Both keys: a link of its own, not one half-inherited from intra_node.
    for (const char* key : {"bandwidth", "latency"}) {
      if (n->value().is_object() && !n->value().contains(key)) {
        throw UserError(ErrorKind::kMissing, n->location(),
                        std::string("cluster.point_to_point needs '") + key + "'");
      }
    }
    LinkSpec link;
    read_link(*n, link, "point_to_point");
    c.point_to_point = link;
  }
  if (auto n = r.get("host_memory")) c.host_memory = with_units(*n, units::parse_bytes);
  if (auto n = r.get("pcie_bandwidth")) c.pcie_bandwidth = with_units(*n, units::parse_bandwidth);
  if (auto n = r.get("nvme_bandwidth")) c.nvme_bandwidth = with_units(*n, units::parse_bandwidth);
  if (auto n = r.get("efficiency")) {
    ObjectReader e(*n, "cluster.efficiency");
    auto fraction = [&](const char* key, double& out) {
      if (auto v = e.get(key)) {
        out = read_double(*v, Coercion::kStrict);
        if (!(out > 0 && out <= 1))
          v->fail(ErrorKind::kValue, v->repr() + " is out of range: must be in (0, 1]");
      }
    };
    fraction("compute", c.efficiency.compute);
    fraction("hbm", c.efficiency.hbm);
    fraction("network", c.efficiency.network);
    e.reject_unknown();
  }
  // Durations of at least nothing.
  const auto duration = [&](const char* key, std::int64_t& field) {
    if (auto n = r.get(key)) {
      field = with_units(*n, units::parse_duration_ns);
      if (field < 0) n->fail(ErrorKind::kValue, n->repr() + " is out of range: must be >= 0");
    }
  };
  duration("kernel_launch", c.kernel_launch_ns);
  duration("autograd_node", c.autograd_node_ns);
  duration("hook_overhead", c.hook_overhead_ns);
  if (auto n = r.get("asynchronous_launch"))
    c.asynchronous_launch = read_bool(*n, Coercion::kStrict);
  if (auto n = r.get("comm_overlaps_compute"))
    c.comm_overlaps_compute = read_bool(*n, Coercion::kStrict);
  duration("collective_overhead", c.collective_overhead_ns);
  duration("collective_host_time", c.collective_host_ns);
  if (auto n = r.get("reduce_scatter_by_all_reduce"))
    c.reduce_scatter_by_all_reduce = read_bool(*n, Coercion::kStrict);
  if (auto n = r.get("elementwise_flops")) {
    c.elementwise_flops = with_units(*n, units::parse_flops);
    if (!(c.elementwise_flops > 0))
      n->fail(ErrorKind::kValue, n->repr() + " is out of range: must be > 0");
  }
  if (auto n = r.get("module_flops")) {
    ObjectReader f(*n, "cluster.module_flops");
    for (const auto& [name, value] : n->value().items()) {
      (void)value;
      const Node v = *f.get(name);
      const double flops = with_units(v, units::parse_flops);
      if (!(flops > 0))
        v.fail(ErrorKind::kValue,
               v.repr() + " is out of range: must be > 0 (FLOP/s of class " + name + ")");
      c.module_flops[name] = flops;
    }
  }
  if (auto n = r.get("step_slowdown")) {
    ObjectReader f(*n, "cluster.step_slowdown");
    auto factor = [&](const char* key, double& out) {
      if (auto v = f.get(key)) {
        out = read_double(*v, Coercion::kStrict);
        if (!(out >= 1) || !std::isfinite(out))
          v->fail(ErrorKind::kValue,
                  v->repr() +
                      " is out of range: must be >= 1 (a step is never faster than its "
                      "calls alone)");
      }
    };
    factor("kernels", c.step_slowdown.kernels);
    factor("rates", c.step_slowdown.rates);
    f.reject_unknown();
  }
  if (auto n = r.get("host_optimizer_rate")) {
    c.host_optimizer_rate = read_double(*n, Coercion::kStrict);
    if (!(c.host_optimizer_rate > 0))
      n->fail(ErrorKind::kValue,
              n->repr() + " is out of range: must be > 0 (parameters per second)");
  }
  r.reject_unknown();

  // Without a preset underneath, the keys a simulation cannot do without must be given.
  if (!from_preset) {
    for (const char* key : {"gpus_per_node", "gpu_memory", "peak_flops", "hbm_bandwidth",
                            "intra_node", "inter_node", "pcie_bandwidth"}) {
      if (!node.value().contains(key)) {
        throw UserError(ErrorKind::kMissing, node.location(),
                        std::string("an inline cluster needs '") + key +
                            "' (or start from a preset with 'preset: NAME')");
      }
    }
  }
  record_cluster(c, node.value(), base_note, provenance);
  return c;
}

namespace {
Json link_json(const LinkSpec& link) {
  return Json{{"bandwidth", link.bandwidth}, {"latency_ns", link.latency_ns}};
}
}  // namespace

Json cluster_to_json(const ClusterSpec& c) {
  Json flops = Json::object();
  for (const auto& [dtype, v] : c.peak_flops)
    flops[dtype] = v;
  Json module_flops = Json::object();
  for (const auto& [name, v] : c.module_flops)
    module_flops[name] = v;
  return Json{
      {"name", c.name},
      {"gpu", c.gpu},
      {"nodes", c.nodes},
      {"gpus_per_node", c.gpus_per_node},
      {"gpu_memory", c.gpu_memory},
      {"peak_flops", flops},
      {"hbm_bandwidth", c.hbm_bandwidth},
      {"intra_node", link_json(c.intra_node)},
      {"inter_node", link_json(c.inter_node)},
      {"point_to_point", c.point_to_point ? link_json(*c.point_to_point) : Json()},
      {"host_memory", c.host_memory},
      {"pcie_bandwidth", c.pcie_bandwidth},
      {"nvme_bandwidth", c.nvme_bandwidth},
      {"efficiency",
       {{"compute", c.efficiency.compute},
        {"hbm", c.efficiency.hbm},
        {"network", c.efficiency.network}}},
      {"kernel_launch_ns", c.kernel_launch_ns},
      {"autograd_node_ns", c.autograd_node_ns},
      {"hook_overhead_ns", c.hook_overhead_ns},
      {"asynchronous_launch", c.asynchronous_launch},
      {"comm_overlaps_compute", c.comm_overlaps_compute},
      {"reduce_scatter_by_all_reduce", c.reduce_scatter_by_all_reduce},
      {"collective_overhead_ns", c.collective_overhead_ns},
      {"collective_host_ns", c.collective_host_ns},
      {"elementwise_flops", c.elementwise_flops},
      {"module_flops", module_flops},
      {"step_slowdown", {{"kernels", c.step_slowdown.kernels}, {"rates", c.step_slowdown.rates}}},
      {"host_optimizer_rate", c.host_optimizer_rate}};
}

}  // namespace zp
