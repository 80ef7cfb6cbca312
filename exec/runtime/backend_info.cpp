#include "exec/runtime/backend_info.h"

#include <sched.h>

#include <ATen/Parallel.h>
#include <torch/version.h>

#include <fstream>
#include <string>
#include <thread>

#include "exec/cuda/cuda_info.h"

namespace zp::exec {

std::string loaded_blas() {
  // Debian's libtorch links libblas.so.3, which the alternatives system points at the reference
  // BLAS, OpenBLAS or another; the mapped file's path says which one this process runs on.
  std::ifstream maps("/proc/self/maps");
  std::string line;
  while (std::getline(maps, line)) {
    const auto slash = line.find('/');
    if (slash == std::string::npos) continue;
    const std::string path = line.substr(slash);
    const std::string file = path.substr(path.rfind('/') + 1);
    if (file.rfind("libblas", 0) != 0 && file.rfind("libopenblas", 0) != 0 &&
        file.rfind("libmkl", 0) != 0) {
      continue;
    }
    if (path.find("openblas") != std::string::npos) return "OpenBLAS (" + path + ")";
    if (path.find("mkl") != std::string::npos) return "MKL (" + path + ")";
    return "reference BLAS (" + path + ")";
  }
  return "no BLAS library mapped";
}

BackendInfo backend_info() {
  BackendInfo info;
  info.torch_version = TORCH_VERSION;
  info.blas = loaded_blas();
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
  out += "; BLAS: " + info.blas;
  return out;
}

int intra_op_threads() {
  return at::get_num_threads();
}

void set_intra_op_threads(int threads) {
  at::set_num_threads(threads);
}

int usable_cores() {
  cpu_set_t mask;
  CPU_ZERO(&mask);
  if (::sched_getaffinity(0, sizeof(mask), &mask) == 0) return CPU_COUNT(&mask);
  return static_cast<int>(std::thread::hardware_concurrency());
}

}  // namespace zp::exec
