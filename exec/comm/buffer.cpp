#include "exec/comm/buffer.h"

#include "core/util/error.h"

namespace zp::exec::comm {

int dtype_size(DType dtype) {
  switch (dtype) {
    case DType::kFloat32:
    case DType::kInt32:
      return 4;
    case DType::kFloat64:
    case DType::kInt64:
      return 8;
    case DType::kFloat16:
    case DType::kBFloat16:
      return 2;
    case DType::kUInt8:
      return 1;
  }
  return 1;
}

std::string_view to_string(DType dtype) {
  switch (dtype) {
    case DType::kFloat32:
      return "fp32";
    case DType::kFloat64:
      return "fp64";
    case DType::kFloat16:
      return "fp16";
    case DType::kBFloat16:
      return "bf16";
    case DType::kInt32:
      return "int32";
    case DType::kInt64:
      return "int64";
    case DType::kUInt8:
      return "uint8";
  }
  return "?";
}

std::string_view to_string(ReduceOp op) {
  switch (op) {
    case ReduceOp::kSum:
      return "sum";
    case ReduceOp::kMax:
      return "max";
    case ReduceOp::kMin:
      return "min";
  }
  return "?";
}

Buffer Buffer::slice(std::int64_t offset, std::int64_t count) const {
  ZP_CHECK(offset >= 0 && count >= 0 && offset + count <= numel, "slice [", offset, ", ",
           offset + count, ") of a buffer of ", numel);
  Buffer out = *this;
  out.data = static_cast<char*>(data) + offset * dtype_size(dtype);
  out.numel = count;
  return out;
}

}  // namespace zp::exec::comm
