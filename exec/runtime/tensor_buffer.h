// The communicator's view of a tensor: its data pointer, element count and device. For files that
// already include ATen (the communicator's interface stays free of it).
#pragma once

#include <ATen/core/Tensor.h>

#include "core/util/error.h"
#include "exec/comm/buffer.h"

namespace zp::exec {

// fp32, int64 and uint8 tensors, contiguous.
inline comm::Buffer buffer_of(const at::Tensor& t) {
  ZP_CHECK(t.is_contiguous(), "a collective needs a contiguous tensor");
  comm::Buffer b;
  switch (t.scalar_type()) {
    case at::kFloat:
      b = comm::host_buffer(t.data_ptr<float>(), t.numel());
      break;
    case at::kLong:
      b = comm::host_buffer(t.data_ptr<std::int64_t>(), t.numel());
      break;
    case at::kByte:
      b = comm::host_buffer(t.data_ptr<std::uint8_t>(), t.numel());
      break;
    default:
      ZP_CHECK(false, "no collective for ", t.scalar_type(), " tensors here");
  }
  if (t.is_cuda()) {
    b.device = comm::DeviceKind::kCuda;
    b.device_index = t.get_device();
  }
  return b;
}

}  // namespace zp::exec
