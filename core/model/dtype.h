// Element types of parameters and activations.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

namespace zp {

enum class DType : std::uint8_t {
  kFloat32,
  kFloat16,
  kBFloat16,
  kFloat64,
  kInt64,
  kInt32,
  kInt8,
  kUInt8,
  kBool
};

// Bytes per element. Inline: the simulator asks for it per parameter per event.
constexpr int dtype_size(DType dtype) {
  switch (dtype) {
    case DType::kFloat64:
    case DType::kInt64:
      return 8;
    case DType::kFloat32:
    case DType::kInt32:
      return 4;
    case DType::kFloat16:
    case DType::kBFloat16:
      return 2;
    case DType::kInt8:
    case DType::kUInt8:
    case DType::kBool:
      return 1;
  }
  return 0;
}
bool is_floating(DType dtype);
// "fp32", "fp16", "bf16", "fp64", "int64", "int32", "int8", "uint8", "bool".
std::string_view to_string(DType dtype);
// Accepts the names above and PyTorch's ("float32", "torch.bfloat16", "half", "float", ...).
std::optional<DType> parse_dtype(std::string_view name);

}  // namespace zp
