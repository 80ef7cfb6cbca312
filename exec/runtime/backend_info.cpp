#include "exec/runtime/backend_info.h"

#include <torch/version.h>

#include "exec/cuda/cuda_info.h"

namespace zp::exec {

BackendInfo backend_info() {
  BackendInfo info;
  info.torch_version = TORCH_VERSION;
#ifdef USE_C10D_GLOO
  info.gloo = true;
#endif
#ifdef ZEROPLAN_HAVE_CUDA
  const CudaInfo cuda = cuda_info();
  info.cuda_compiled = true;
  info.cuda_runtime_version = cuda.runtime_version;
  info.nccl_version = cuda.nccl_version;
  info.visible_gpus = cuda.visible_gpus;
#endif
  return info;
}

std::string describe(const BackendInfo& info) {
  std::string out = "libtorch " + info.torch_version + (info.gloo ? " with Gloo" : " without Gloo");
  if (info.cuda_compiled) {
    out +=
        "; CUDA " + info.cuda_runtime_version + " and NCCL " + info.nccl_version + " compiled in, ";
    out += info.visible_gpus == 0 ? std::string("no GPU visible")
                                  : std::to_string(info.visible_gpus) + " GPU(s) visible";
  } else {
    out += "; CPU only";
  }
  return out;
}

}  // namespace zp::exec
