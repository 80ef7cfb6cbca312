// A view of memory that a collective reads or writes: a pointer, an element count and a type, on
// the host or on one GPU. Communicators take views rather than tensors so that their interface
// stays free of libtorch headers (each file that includes them costs seconds to compile); a
// caller holding an at::Tensor passes its data_ptr(). The memory belongs to the caller and must
// stay valid until the operation's Work has been waited on.
#pragma once

#include <cstdint>
#include <string_view>

namespace zp::exec::comm {

enum class DType : std::uint8_t { kFloat32, kFloat64, kFloat16, kBFloat16, kInt32, kInt64, kUInt8 };

int dtype_size(DType dtype);
std::string_view to_string(DType dtype);

enum class DeviceKind : std::uint8_t { kCpu, kCuda };

struct Buffer {
  void* data = nullptr;
  std::int64_t numel = 0;
  DType dtype = DType::kFloat32;
  DeviceKind device = DeviceKind::kCpu;
  int device_index = 0;  // the GPU, for kCuda

  std::int64_t bytes() const { return numel * dtype_size(dtype); }
  // Elements [offset, offset + count) of this buffer.
  Buffer slice(std::int64_t offset, std::int64_t count) const;
};

template <class T>
constexpr DType dtype_of();
template <>
constexpr DType dtype_of<float>() {
  return DType::kFloat32;
}
template <>
constexpr DType dtype_of<double>() {
  return DType::kFloat64;
}
template <>
constexpr DType dtype_of<std::int32_t>() {
  return DType::kInt32;
}
template <>
constexpr DType dtype_of<std::int64_t>() {
  return DType::kInt64;
}
template <>
constexpr DType dtype_of<std::uint8_t>() {
  return DType::kUInt8;
}

// A host buffer over `count` elements at `data`.
template <class T>
Buffer host_buffer(T* data, std::int64_t count) {
  return Buffer{data, count, dtype_of<T>(), DeviceKind::kCpu, 0};
}

enum class ReduceOp : std::uint8_t { kSum, kMax, kMin };
std::string_view to_string(ReduceOp op);

}  // namespace zp::exec::comm
