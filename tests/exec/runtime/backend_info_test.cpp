#include "exec/runtime/backend_info.h"

#include <gtest/gtest.h>

#include <ATen/ATen.h>

namespace zp::exec {
namespace {

TEST(BackendInfo, ReportsTheLibtorchThisBuildLinks) {
  const BackendInfo info = backend_info();
  EXPECT_EQ(info.torch_version.substr(0, 2), "1.") << info.torch_version;
  EXPECT_TRUE(info.gloo);
  EXPECT_NE(describe(info).find("libtorch " + info.torch_version), std::string::npos);
#ifdef ZEROPLAN_HAVE_CUDA
  EXPECT_TRUE(info.cuda_compiled);
  EXPECT_FALSE(info.nccl_version.empty());
  EXPECT_FALSE(info.cuda_runtime_version.empty());
#endif
}

TEST(BackendInfo, LibtorchComputesOnThisMachine) {
  // A matrix product through whatever BLAS the system selected.
  const at::Tensor a = at::ones({64, 32});
  const at::Tensor b = at::full({32, 16}, 2.0);
  EXPECT_EQ(at::mm(a, b).sum().item<double>(), 64.0 * 16 * 32 * 2);
}

TEST(BackendInfo, SaysWhichBlasTheProcessRunsOn) {
  const BackendInfo info = backend_info();
  // The setup selects OpenBLAS: the reference BLAS makes matrix products ~10x slower.
  EXPECT_NE(info.blas.find("OpenBLAS"), std::string::npos) << info.blas;
  EXPECT_NE(describe(info).find("BLAS: " + info.blas), std::string::npos);
}

}  // namespace
}  // namespace zp::exec
