// A cluster description: what the simulator needs to know about the hardware.
//
// Bandwidths are bytes per second, latencies integer nanoseconds, memory bytes. The description is
// per GPU where a quantity is per GPU (memory, FLOP/s, HBM, NVLink, PCIe, its share of the node's
// network) and per node where it is shared (host memory, NVMe). docs/run-spec.md lists every key.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "core/config/document.h"
#include "core/config/provenance.h"

namespace zp {

struct LinkSpec {
  double bandwidth = 0;         // bytes/s, one direction
  std::int64_t latency_ns = 0;  // per message
  bool operator==(const LinkSpec&) const = default;
};

// What fraction of a peak a real workload reaches: dense kernels of FLOP/s, memory-bound kernels of
// HBM bandwidth, collectives of link bandwidth (NCCL's bus bandwidth over the wire rate).
struct Efficiency {
  double compute = 0.5;
  double hbm = 0.8;
  double network = 0.8;
  bool operator==(const Efficiency&) const = default;
};

struct ClusterSpec {
  std::string name;  // preset name, the file it was read from, or "inline"
  std::string gpu;   // a label: "A100-SXM4-80GB"
  std::int64_t nodes = 1;
  std::int64_t gpus_per_node = 1;
  std::int64_t gpu_memory = 0;               // bytes per GPU
  std::map<std::string, double> peak_flops;  // per dtype (fp64, fp32, tf32, fp16, bf16, fp8, int8)
  double hbm_bandwidth = 0;                  // bytes/s per GPU
  LinkSpec intra_node;                       // GPU to GPU inside a node (NVLink/NVSwitch), per GPU
  LinkSpec inter_node;  // between nodes, each GPU's share of the node's network
  // A send/recv between two GPUs of a node (a pipeline's activations and gradients), where it
  // costs other than a collective's hop: on CPU ranks a collective's latency carries what a step
  // adds to a collective (its threads waking on busy cores), a message's what a step adds to a
  // message (zeroplan calibrate measures both). Unset: intra_node.
  std::optional<LinkSpec> point_to_point;
  std::int64_t host_memory = 0;  // bytes per node
  double pcie_bandwidth = 0;     // host <-> GPU, bytes/s per GPU
  double nvme_bandwidth = 0;     // bytes/s per node
  Efficiency efficiency;
  // Fixed cost of each kernel a module's pass launches (sim/hardware/kernel_counts.h): PyTorch's
  // dispatch, the output's allocation, the launch; in forward also recording the autograd node.
  std::int64_t kernel_launch_ns = 4000;
  // What autograd's engine adds to each kernel it runs in backward (taking the node from its ready
  // queue, collecting its input gradients, releasing what it saved).
  std::int64_t autograd_node_ns = 2000;
  // Host time the ZeRO-3 engine spends in each of its hooks (a module's pre- and post-forward and
  // backward, a gradient's hand-over): the coordinator's bookkeeping and the issuing of its
  // collectives, on the rank's timeline. DeepSpeed's hooks are Python; exec's, C++ (zeroplan
  // calibrate measures them). 0: not modelled.
  std::int64_t hook_overhead_ns = 0;
  // Whether the host enqueues kernels while earlier ones run, as on a GPU: a pass then takes the
  // longer of its launches and its roofline. CPU ranks run each operation as it is called, so there
  // the two add (zeroplan calibrate writes false).
  bool asynchronous_launch = true;
  // Whether a rank's collectives progress while it computes, as on a GPU (NCCL runs on SMs of its
  // own, copies on copy engines). CPU ranks whose threads fill the cores run their collectives'
  // threads on the cores their compute holds: each collective then holds the rank's compute for
  // its whole time (zeroplan calibrate measures which).
  bool comm_overlaps_compute = true;
  // Whether the communication backend has no reduce-scatter of its own and runs an all-reduce of
  // the whole buffer instead, each rank keeping its chunk, as c10d's Gloo backend does: a
  // reduce-scatter then costs an all-reduce (zeroplan calibrate writes true for Gloo).
  bool reduce_scatter_by_all_reduce = false;
  // Fixed time each collective call costs once, whatever its hops (send/recv aside: see
  // point_to_point): on CPU ranks what a step adds to a collective, its threads waking on cores
  // the ranks compute on, paid once per call, where a latency is paid per hop and twice by an
  // all-reduce (zeroplan calibrate measures it). 0: none beyond the hops' latency.
  std::int64_t collective_overhead_ns = 0;
  // Host time each collective call (not a send/recv) takes from its rank's timeline (its compute
  // and hooks wait): on CPU ranks the CPU time its threads (Gloo's worker and TCP loop) take from
  // the cores the rank computes on, while it runs beside the compute (zeroplan calibrate measures
  // it). 0: none.
  std::int64_t collective_host_ns = 0;
  // FLOP/s of element-wise work, a module's own work that is not a matrix product (norms,
  // activations, dropout, residual sums, the loss): CUDA cores beside the tensor cores, or a CPU
  // thread's tanh, exp and random numbers beside its matmuls. 0: peak_flops of the run's dtype.
  double elementwise_flops = 0;
  // FLOP/s of one module class's own work, forward and backward, by its class name ("Dropout"),
  // in place of elementwise_flops or peak_flops: for a class that runs far from its kind's rate,
  // as dropout's random numbers on a CPU thread (zeroplan calibrate measures it).
  std::map<std::string, double> module_flops;
  // How a training step's compute runs against the isolated calls that the rates and per-kernel
  // costs above describe: each kernel's fixed cost (kernel_launch, autograd_node) times `kernels`,
  // every FLOP and memory rate divided by `rates`. On CPU ranks a step's calls run slower than the
  // same calls repeated in a loop (zeroplan calibrate measures both factors on reference runs).
  // {1, 1}: as measured in isolation.
  struct StepSlowdown {
    double kernels = 1;
    double rates = 1;
    bool operator==(const StepSlowdown&) const = default;
  };
  StepSlowdown step_slowdown;
  // An offloaded optimizer's step on the host (DeepSpeed's CPU Adam): parameters per second per
  // node, shared by the node's GPUs.
  double host_optimizer_rate = 1e9;

  std::int64_t total_gpus() const { return nodes * gpus_per_node; }
  bool operator==(const ClusterSpec&) const = default;
};

// The built-in descriptions, by name ("dgx-a100-80g", ...).
const ClusterSpec* find_cluster_preset(std::string_view name);
std::vector<std::string> cluster_preset_names();

// Reads the `cluster:` value of a run spec: a preset name, or a mapping with an optional `preset`
// or `file` (a description in a file of its own, relative to the run spec's folder) to start from
// and any keys to set. Records every value's origin under "cluster.".
ClusterSpec parse_cluster(const Node& node, Provenance& provenance);

Json cluster_to_json(const ClusterSpec& cluster);

}  // namespace zp
