// Versions of the CUDA runtime and NCCL this build links, and the GPUs visible at run time.
// Compiled only when CUDA and NCCL are found (ZEROPLAN_HAVE_CUDA).
#pragma once

#include <string>

namespace zp::exec {

struct CudaInfo {
  std::string runtime_version;
  std::string nccl_version;
  int visible_gpus = 0;
  std::string device_error;  // why no GPU is visible, when CUDA says
};

CudaInfo cuda_info();

// Waits until GPU `device` has finished all its queued work (cudaDeviceSynchronize).
void cuda_synchronize(int device);

}  // namespace zp::exec
