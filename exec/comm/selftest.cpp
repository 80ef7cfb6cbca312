#include "exec/comm/selftest.h"

#include <cstdio>
#include <memory>
#include <ostream>
#include <string>

namespace zp::exec::comm {

namespace {

class HostMemory final : public BufferMemory {
 public:
  Buffer allocate(std::int64_t numel) override {
    auto* data = new float[static_cast<std::size_t>(numel)]();
    return host_buffer(data, numel);
  }
  void release(Buffer buffer) override { delete[] static_cast<float*>(buffer.data); }
  void upload(Buffer to, const std::vector<float>& from) override {
    std::copy(from.begin(), from.end(), static_cast<float*>(to.data));
  }
  std::vector<float> download(Buffer from) override {
    const auto* p = static_cast<const float*>(from.data);
    return {p, p + from.numel};
  }
};

// Frees the buffers of one step however it ends.
class Scratch {
 public:
  explicit Scratch(BufferMemory& memory) : memory_(memory) {}
  ~Scratch() {
    for (const Buffer& b : buffers_)
      memory_.release(b);
  }
  Buffer make(const std::vector<float>& values) {
    Buffer b = memory_.allocate(static_cast<std::int64_t>(values.size()));
    buffers_.push_back(b);
    memory_.upload(b, values);
    return b;
  }

 private:
  BufferMemory& memory_;
  std::vector<Buffer> buffers_;
};

void expect(const std::vector<float>& got, const std::function<float(std::int64_t)>& want, int rank,
            std::string_view op) {
  for (std::size_t i = 0; i < got.size(); ++i) {
    const float w = want(static_cast<std::int64_t>(i));
    if (got[i] != w) {
      throw SelftestFailure("rank " + std::to_string(rank) + ": " + std::string(op) +
                            " gave element " + std::to_string(i) + " = " + std::to_string(got[i]) +
                            ", expected " + std::to_string(w));
    }
  }
}

}  // namespace

std::unique_ptr<BufferMemory> host_memory() {
  return std::make_unique<HostMemory>();
}

std::vector<OpRecord> run_selftest(Communicator& comm, BufferMemory& memory,
                                   const SelftestOptions& options) {
  const int w = comm.size();
  const int r = comm.rank();
  const std::int64_t n = options.numel;
  // ZeRO-3's partitioning: every rank holds ceil(n / w) elements, the last ones padding.
  const std::int64_t chunk = (n + w - 1) / w;
  const std::int64_t padded = chunk * w;
  const auto before = [&](std::string_view op) {
    if (options.before_op) options.before_op(op);
  };
  // Small integers, so that every sum below is exact in fp32.
  const auto value = [](int rank, std::int64_t i) {
    return static_cast<float>(rank * 1000 + i % 997);
  };
  const float ranks_sum = static_cast<float>(w * (w + 1) / 2);

  for (int it = 0; it < options.iterations; ++it) {
    Scratch scratch(memory);
    const std::string suffix = " " + std::to_string(it);

    // All-gather of each rank's partition into the padded flat buffer.
    std::vector<float> part(static_cast<std::size_t>(chunk));
    for (std::int64_t i = 0; i < chunk; ++i)
      part[static_cast<std::size_t>(i)] = value(r, i);
    const Buffer in = scratch.make(part);
    const Buffer flat = scratch.make(std::vector<float>(static_cast<std::size_t>(padded), -1.f));
    before("all_gather");
    comm.all_gather(in, flat, "gather" + suffix)->wait();
    expect(
        memory.download(flat),
        [&](std::int64_t j) { return value(static_cast<int>(j / chunk), j % chunk); }, r,
        "all_gather");

    // Reduce-scatter of the padded flat buffer: rank k contributes (k + 1) * (j % 101).
    std::vector<float> grads(static_cast<std::size_t>(padded));
    for (std::int64_t j = 0; j < padded; ++j)
      grads[static_cast<std::size_t>(j)] = static_cast<float>((r + 1) * (j % 101));
    const Buffer grad = scratch.make(grads);
    const Buffer mine = scratch.make(std::vector<float>(static_cast<std::size_t>(chunk), -1.f));
    before("reduce_scatter");
    comm.reduce_scatter(grad, mine, ReduceOp::kSum, "bucket" + suffix)->wait();
    expect(
        memory.download(mine),
        [&](std::int64_t i) { return ranks_sum * static_cast<float>((r * chunk + i) % 101); }, r,
        "reduce_scatter");
    expect(
        memory.download(grad), [&](std::int64_t j) { return grads[static_cast<std::size_t>(j)]; },
        r, "reduce_scatter (input kept)");

    // All-reduce, sum and max, of the unpadded buffer.
    std::vector<float> values(static_cast<std::size_t>(n));
    for (std::int64_t j = 0; j < n; ++j)
      values[static_cast<std::size_t>(j)] = static_cast<float>(r + j % 7);
    const Buffer sum = scratch.make(values);
    before("all_reduce");
    auto sum_work = comm.all_reduce(sum, ReduceOp::kSum, "sum" + suffix);
    const Buffer max = scratch.make(values);
    auto max_work = comm.all_reduce(max, ReduceOp::kMax, "max" + suffix);
    sum_work->wait();
    max_work->wait();
    expect(
        memory.download(sum),
        [&](std::int64_t j) { return static_cast<float>(w * (j % 7) + w * (w - 1) / 2); }, r,
        "all_reduce sum");
    expect(
        memory.download(max), [&](std::int64_t j) { return static_cast<float>(w - 1 + j % 7); }, r,
        "all_reduce max");

    // Broadcast from the last rank.
    const int root = w - 1;
    std::vector<float> mine_or_zero(static_cast<std::size_t>(n), 0.f);
    if (r == root) {
      for (std::int64_t j = 0; j < n; ++j)
        mine_or_zero[static_cast<std::size_t>(j)] = static_cast<float>(root + j % 13);
    }
    const Buffer bcast = scratch.make(mine_or_zero);
    before("broadcast");
    comm.broadcast(bcast, root, "broadcast" + suffix)->wait();
    expect(
        memory.download(bcast), [&](std::int64_t j) { return static_cast<float>(root + j % 13); },
        r, "broadcast");

    // A ring of sends: each rank's partition to the next rank, as pipeline stages pass
    // activations.
    if (w > 1) {
      const int next = (r + 1) % w;
      const int prev = (r + w - 1) % w;
      const Buffer got = scratch.make(std::vector<float>(static_cast<std::size_t>(chunk), -1.f));
      before("send_recv");
      // Even ranks send first, odd ones receive first: on a backend whose point-to-point
      // operations run in issue order on one stream (NCCL), every send then meets its receive.
      WorkPtr send, recv;
      if (r % 2 == 0) {
        send = comm.send(in, next, it, "to " + std::to_string(next));
        recv = comm.recv(got, prev, it, "from " + std::to_string(prev));
      } else {
        recv = comm.recv(got, prev, it, "from " + std::to_string(prev));
        send = comm.send(in, next, it, "to " + std::to_string(next));
      }
      send->wait();
      recv->wait();
      expect(
          memory.download(got), [&](std::int64_t i) { return value(prev, i); }, r, "recv");
    }

    before("barrier");
    comm.barrier();
  }
  return comm.log().records();
}

void print_records(std::ostream& out, const std::vector<OpRecord>& records) {
  char line[160];
  std::snprintf(line, sizeof line, "%-15s %-14s %14s %10s %9s\n", "operation", "label", "bytes",
                "ms", "GB/s");
  out << line;
  for (const OpRecord& rec : records) {
    const double ms = static_cast<double>(rec.end_ns - rec.start_ns) / 1e6;
    const double gbps = ms > 0 ? static_cast<double>(rec.bytes) / (ms * 1e6) : 0.0;
    std::snprintf(line, sizeof line, "%-15s %-14s %14lld %10.3f %9.3f\n",
                  std::string(to_string(rec.kind)).c_str(), rec.label.c_str(),
                  static_cast<long long>(rec.bytes), ms, gbps);
    out << line;
  }
}

}  // namespace zp::exec::comm
