#include "exec/cuda/cuda_info.h"

#include <cuda_runtime_api.h>
#include <nccl.h>

#include "core/util/error.h"

namespace zp::exec {

CudaInfo cuda_info() {
  CudaInfo info;
  int runtime = 0;
  if (cudaRuntimeGetVersion(&runtime) == cudaSuccess) {
    info.runtime_version =
        std::to_string(runtime / 1000) + "." + std::to_string((runtime % 1000) / 10);
  }
  int nccl = 0;
  if (ncclGetVersion(&nccl) == ncclSuccess) {
    // NCCL >= 2.9 encodes major*10000 + minor*100 + patch.
    info.nccl_version = std::to_string(nccl / 10000) + "." + std::to_string((nccl % 10000) / 100) +
                        "." + std::to_string(nccl % 100);
  }
  int devices = 0;
  // Without a driver this fails; that only means no GPU is visible.
  const cudaError_t status = cudaGetDeviceCount(&devices);
  if (status == cudaSuccess)
    info.visible_gpus = devices;
  else
    info.device_error = cudaGetErrorString(status);
  return info;
}

void cuda_synchronize(int device) {
  const cudaError_t set = cudaSetDevice(device);
  const cudaError_t sync = set == cudaSuccess ? cudaDeviceSynchronize() : set;
  ZP_CHECK(sync == cudaSuccess, "cudaDeviceSynchronize on GPU ", device, ": ",
           cudaGetErrorString(sync));
}

}  // namespace zp::exec
