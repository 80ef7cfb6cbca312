// What the real-execution backend was built with: the libtorch version, whether c10d's Gloo is
// there, and, when compiled in, the CUDA runtime and NCCL versions and the GPUs visible now; and
// the BLAS the process runs on (matrix products are ~10x slower on the reference BLAS).
#pragma once

#include <string>

namespace zp::exec {

struct BackendInfo {
  std::string torch_version;  // "1.13.0"
  bool gloo = false;          // c10d's ProcessGroupGloo
  bool cuda_compiled = false;
  std::string cuda_runtime_version;  // "13.0" when compiled in
  std::string nccl_version;          // "2.28.3" when compiled in
  int visible_gpus = 0;              // 0 without a driver or device
  std::string blas;                  // the BLAS library this process has mapped, and its file
};

BackendInfo backend_info();

// torch's intra-op threads in this process (OpenMP's team size), and a way to set them for a
// rank that another launcher started (--threads); ranks of --nproc get OMP_NUM_THREADS instead.
int intra_op_threads();
void set_intra_op_threads(int threads);
// The cores this process may run on (its affinity mask), which local ranks divide among them.
int usable_cores();

// One line: "libtorch 1.13.0 with Gloo; CUDA 13.0 and NCCL 2.28.3 compiled in, no GPU visible;
// BLAS: OpenBLAS (its library file)".
std::string describe(const BackendInfo& info);

}  // namespace zp::exec
