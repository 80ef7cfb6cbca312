// The GPU communicator: NCCL called directly, its operations queued on a CUDA stream of its own.
// Compiled only with CUDA and NCCL (ZEROPLAN_HAVE_CUDA). Free of libtorch, so the engine hands
// it tensors' device pointers.
//
// Ordering: an operation first waits (on the GPU) for the work already queued on the producer
// stream, so its input is ready; Work::wait() blocks the host until it is done. Times come from
// CUDA events, placed on the wall clock through an event recorded when the communicator was made.
// Failures: NCCL runs non-blocking, so a peer that dies or stops answering surfaces as a
// CommError once the group's timeout passes, after which the communicator is aborted.
// Point-to-point operations run in issue order on the one stream: a send must be issued in the
// order its receiver issues the matching receive.
#pragma once

#include <memory>

#include "exec/comm/communicator.h"
#include "exec/comm/selftest.h"

namespace zp::exec::comm {

struct NcclOptions {
  int device = 0;                   // the GPU, usually the local rank
  void* producer_stream = nullptr;  // cudaStream_t whose work inputs come from; null: default
};

// Joins the group through the store (rank 0 publishes NCCL's unique id). UserError-free: a
// missing GPU is checked before (launch::check_device); CommError on CUDA or NCCL failure.
std::unique_ptr<Communicator> make_nccl_communicator(const std::shared_ptr<Store>& store,
                                                     const GroupSpec& group,
                                                     const NcclOptions& options);

// Device memory on `device`, for the self-test.
std::unique_ptr<BufferMemory> cuda_memory(int device);

}  // namespace zp::exec::comm
