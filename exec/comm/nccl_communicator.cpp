#include "exec/comm/nccl_communicator.h"

#include <cuda_runtime_api.h>
#include <nccl.h>

#include <chrono>
#include <cstring>
#include <string>
#include <thread>

#include "core/util/error.h"

namespace zp::exec::comm {

namespace {

using Clock = std::chrono::steady_clock;

void cuda_check(cudaError_t status, const char* what) {
  if (status != cudaSuccess)
    throw CommError(std::string("CUDA: ") + what + " failed: " + cudaGetErrorString(status));
}

ncclDataType_t nccl_type(DType dtype) {
  switch (dtype) {
    case DType::kFloat32:
      return ncclFloat32;
    case DType::kFloat64:
      return ncclFloat64;
    case DType::kFloat16:
      return ncclFloat16;
    case DType::kBFloat16:
      return ncclBfloat16;
    case DType::kInt32:
      return ncclInt32;
    case DType::kInt64:
      return ncclInt64;
    case DType::kUInt8:
      return ncclUint8;
  }
  return ncclFloat32;
}

ncclRedOp_t nccl_op(ReduceOp op) {
  switch (op) {
    case ReduceOp::kSum:
      return ncclSum;
    case ReduceOp::kMax:
      return ncclMax;
    case ReduceOp::kMin:
      return ncclMin;
  }
  return ncclSum;
}

// The communicator's NCCL handle and what a Work needs to wait on it with a deadline.
struct NcclState {
  ncclComm_t comm = nullptr;
  int rank = 0;
  int device = 0;
  std::chrono::milliseconds timeout{0};
  cudaEvent_t anchor = nullptr;  // recorded at creation, at wall time anchor_ns
  std::int64_t anchor_ns = 0;
  bool aborted = false;

  // Waits out a non-blocking call; aborts the communicator and throws on error or timeout.
  void settle(ncclResult_t result, const std::string& what) {
    const auto deadline = Clock::now() + timeout;
    while (result == ncclInProgress) {
      if (Clock::now() > deadline) fail(what + " timed out after " + seconds());
      std::this_thread::sleep_for(std::chrono::microseconds(100));
      ncclCommGetAsyncError(comm, &result);
    }
    if (result != ncclSuccess) fail(what + " failed: " + ncclGetErrorString(result));
  }

  [[noreturn]] void fail(const std::string& message) {
    if (comm != nullptr && !aborted) {
      ncclCommAbort(comm);
      aborted = true;
    }
    throw CommError("rank " + std::to_string(rank) + ": NCCL " + message +
                    " (a peer died or stopped answering?)");
  }

  std::string seconds() const { return std::to_string(timeout.count() / 1000.0) + " s"; }

  std::int64_t wall_ns(cudaEvent_t event) const {
    float ms = 0;
    if (cudaEventElapsedTime(&ms, anchor, event) != cudaSuccess) return wall_clock_ns();
    return anchor_ns + static_cast<std::int64_t>(static_cast<double>(ms) * 1e6);
  }
};

class NcclWork final : public Work {
 public:
  NcclWork(std::shared_ptr<NcclState> state, cudaEvent_t start, cudaEvent_t end, OpRecord record,
           OpLog* log)
      : state_(std::move(state)), start_(start), end_(end), record_(std::move(record)), log_(log) {}

  ~NcclWork() override {
    // A work dropped unwaited still writes into its buffers: let it finish, but not past the
    // timeout (a dead peer would hold it forever).
    const auto deadline = Clock::now() + state_->timeout;
    while (!waited_ && cudaEventQuery(end_) == cudaErrorNotReady && Clock::now() < deadline)
      std::this_thread::sleep_for(std::chrono::microseconds(50));
    cudaEventDestroy(start_);
    cudaEventDestroy(end_);
  }

  void wait() override {
    ZP_CHECK(!waited_, "a communication Work waited on twice");
    waited_ = true;
    const auto deadline = Clock::now() + state_->timeout;
    const std::string what = std::string(to_string(record_.kind)) +
                             (record_.label.empty() ? "" : " '" + record_.label + "'");
    for (;;) {
      const cudaError_t status = cudaEventQuery(end_);
      if (status == cudaSuccess) break;
      if (status != cudaErrorNotReady) cuda_check(status, what.c_str());
      ncclResult_t async = ncclSuccess;
      ncclCommGetAsyncError(state_->comm, &async);
      if (async != ncclSuccess && async != ncclInProgress)
        state_->fail(what + " failed: " + ncclGetErrorString(async));
      if (Clock::now() > deadline) state_->fail(what + " timed out after " + state_->seconds());
      std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
    record_.start_ns = state_->wall_ns(start_);
    record_.end_ns = state_->wall_ns(end_);
    log_->add(std::move(record_));
  }

 private:
  std::shared_ptr<NcclState> state_;
  cudaEvent_t start_;
  cudaEvent_t end_;
  OpRecord record_;
  OpLog* log_;
  bool waited_ = false;
};

class NcclCommunicator final : public Communicator {
 public:
  NcclCommunicator(GroupSpec group, std::shared_ptr<NcclState> state, cudaStream_t stream,
                   cudaStream_t producer)
      : Communicator(std::move(group)),
        state_(std::move(state)),
        stream_(stream),
        producer_(producer) {
    cuda_check(cudaEventCreateWithFlags(&ready_, cudaEventDisableTiming), "cudaEventCreate");
    cuda_check(cudaMalloc(&barrier_, sizeof(float)), "cudaMalloc");
  }

  ~NcclCommunicator() override {
    cudaStreamSynchronize(stream_);
    cudaFree(barrier_);
    cudaEventDestroy(ready_);
    if (!state_->aborted) ncclCommDestroy(state_->comm);
    cudaEventDestroy(state_->anchor);
    cudaStreamDestroy(stream_);
  }

  std::string_view backend() const override { return "nccl"; }

 protected:
  WorkPtr do_all_gather(Buffer input, Buffer output, OpRecord record) override {
    return enqueue(std::move(record), [&] {
      return ncclAllGather(input.data, output.data, static_cast<std::size_t>(input.numel),
                           nccl_type(input.dtype), state_->comm, stream_);
    });
  }
  WorkPtr do_reduce_scatter(Buffer input, Buffer output, ReduceOp op, OpRecord record) override {
    return enqueue(std::move(record), [&] {
      return ncclReduceScatter(input.data, output.data, static_cast<std::size_t>(output.numel),
                               nccl_type(input.dtype), nccl_op(op), state_->comm, stream_);
    });
  }
  WorkPtr do_all_reduce(Buffer data, ReduceOp op, OpRecord record) override {
    return enqueue(std::move(record), [&] {
      return ncclAllReduce(data.data, data.data, static_cast<std::size_t>(data.numel),
                           nccl_type(data.dtype), nccl_op(op), state_->comm, stream_);
    });
  }
  WorkPtr do_broadcast(Buffer data, int root, OpRecord record) override {
    return enqueue(std::move(record), [&] {
      return ncclBroadcast(data.data, data.data, static_cast<std::size_t>(data.numel),
                           nccl_type(data.dtype), root, state_->comm, stream_);
    });
  }
  // NCCL has no tags: messages between two ranks match in issue order.
  WorkPtr do_send(Buffer data, int peer, int /*tag*/, OpRecord record) override {
    return enqueue(std::move(record), [&] {
      return ncclSend(data.data, static_cast<std::size_t>(data.numel), nccl_type(data.dtype), peer,
                      state_->comm, stream_);
    });
  }
  WorkPtr do_recv(Buffer data, int peer, int /*tag*/, OpRecord record) override {
    return enqueue(std::move(record), [&] {
      return ncclRecv(data.data, static_cast<std::size_t>(data.numel), nccl_type(data.dtype), peer,
                      state_->comm, stream_);
    });
  }
  void do_barrier(OpRecord record) override {
    enqueue(std::move(record), [&] {
      return ncclAllReduce(barrier_, barrier_, 1, ncclFloat32, ncclSum, state_->comm, stream_);
    })->wait();
  }

 private:
  template <class F>
  WorkPtr enqueue(OpRecord record, F&& call) {
    ZP_CHECK(!state_->aborted, "an operation on an aborted NCCL communicator");
    cuda_check(cudaSetDevice(state_->device), "cudaSetDevice");
    cuda_check(cudaEventRecord(ready_, producer_), "cudaEventRecord");
    cuda_check(cudaStreamWaitEvent(stream_, ready_, 0), "cudaStreamWaitEvent");
    cudaEvent_t start = nullptr, end = nullptr;
    cuda_check(cudaEventCreate(&start), "cudaEventCreate");
    cuda_check(cudaEventCreate(&end), "cudaEventCreate");
    cuda_check(cudaEventRecord(start, stream_), "cudaEventRecord");
    state_->settle(call(), std::string(to_string(record.kind)));
    cuda_check(cudaEventRecord(end, stream_), "cudaEventRecord");
    return std::make_unique<NcclWork>(state_, start, end, std::move(record), &log_);
  }

  std::shared_ptr<NcclState> state_;
  cudaStream_t stream_;
  cudaStream_t producer_;
  cudaEvent_t ready_ = nullptr;
  void* barrier_ = nullptr;
};

class CudaMemory final : public BufferMemory {
 public:
  explicit CudaMemory(int device) : device_(device) {}
  Buffer allocate(std::int64_t numel) override {
    cuda_check(cudaSetDevice(device_), "cudaSetDevice");
    void* data = nullptr;
    cuda_check(cudaMalloc(&data, static_cast<std::size_t>(numel) * sizeof(float)), "cudaMalloc");
    return Buffer{data, numel, DType::kFloat32, DeviceKind::kCuda, device_};
  }
  void release(Buffer buffer) override { cudaFree(buffer.data); }
  void upload(Buffer to, const std::vector<float>& from) override {
    cuda_check(
        cudaMemcpy(to.data, from.data(), from.size() * sizeof(float), cudaMemcpyHostToDevice),
        "cudaMemcpy");
  }
  std::vector<float> download(Buffer from) override {
    std::vector<float> out(static_cast<std::size_t>(from.numel));
    cuda_check(
        cudaMemcpy(out.data(), from.data, out.size() * sizeof(float), cudaMemcpyDeviceToHost),
        "cudaMemcpy");
    return out;
  }

 private:
  int device_;
};

}  // namespace

std::unique_ptr<Communicator> make_nccl_communicator(const std::shared_ptr<Store>& store,
                                                     const GroupSpec& group,
                                                     const NcclOptions& options) {
  auto state = std::make_shared<NcclState>();
  state->rank = group.rank;
  state->device = options.device;
  state->timeout = group.timeout;
  cuda_check(cudaSetDevice(options.device), "cudaSetDevice");

  // Every rank makes its groups in the same order, so the count names the same key everywhere.
  const std::string key =
      "zeroplan/nccl/" + group.axis + "/" +
      std::to_string(
          store->add("zeroplan/nccl/" + group.axis + "/made/" + std::to_string(group.rank), 1)) +
      "/id";
  ncclUniqueId id;
  if (group.rank == 0) {
    const ncclResult_t r = ncclGetUniqueId(&id);
    if (r != ncclSuccess)
      throw CommError(std::string("NCCL: ncclGetUniqueId failed: ") + ncclGetErrorString(r));
    store->set(key, std::string(reinterpret_cast<const char*>(&id), sizeof(id)));
  } else {
    const std::string bytes = store->get(key);
    ZP_CHECK(bytes.size() == sizeof(id), "an NCCL unique id of ", bytes.size(), " bytes");
    std::memcpy(&id, bytes.data(), sizeof(id));
  }

  // Non-blocking, so that a peer that never joins ends in a timeout rather than a hang.
  ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
  config.blocking = 0;
  state->settle(ncclCommInitRankConfig(&state->comm, group.size, id, group.rank, &config),
                "ncclCommInitRank for group '" + group.axis + "'");

  cudaStream_t stream = nullptr;
  cuda_check(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), "cudaStreamCreate");
  cuda_check(cudaEventCreate(&state->anchor), "cudaEventCreate");
  cuda_check(cudaEventRecord(state->anchor, stream), "cudaEventRecord");
  cuda_check(cudaEventSynchronize(state->anchor), "cudaEventSynchronize");
  state->anchor_ns = wall_clock_ns();
  return std::make_unique<NcclCommunicator>(group, std::move(state), stream,
                                            static_cast<cudaStream_t>(options.producer_stream));
}

std::unique_ptr<BufferMemory> cuda_memory(int device) {
  return std::make_unique<CudaMemory>(device);
}

}  // namespace zp::exec::comm
