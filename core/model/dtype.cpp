#include "core/model/dtype.h"

#include <array>
#include <utility>

namespace zp {

bool is_floating(DType dtype) {
  return dtype == DType::kFloat32 || dtype == DType::kFloat16 || dtype == DType::kBFloat16 ||
         dtype == DType::kFloat64;
}

std::string_view to_string(DType dtype) {
  switch (dtype) {
    case DType::kFloat32:
      return "fp32";
    case DType::kFloat16:
      return "fp16";
    case DType::kBFloat16:
      return "bf16";
    case DType::kFloat64:
      return "fp64";
    case DType::kInt64:
      return "int64";
    case DType::kInt32:
      return "int32";
    case DType::kInt8:
      return "int8";
    case DType::kUInt8:
      return "uint8";
    case DType::kBool:
      return "bool";
  }
  return "?";
}

std::optional<DType> parse_dtype(std::string_view name) {
  if (name.starts_with("torch.")) name.remove_prefix(6);
  static constexpr std::array<std::pair<std::string_view, DType>, 20> kNames = {{
      {"fp32", DType::kFloat32},    {"float32", DType::kFloat32},   {"float", DType::kFloat32},
      {"fp16", DType::kFloat16},    {"float16", DType::kFloat16},   {"half", DType::kFloat16},
      {"bf16", DType::kBFloat16},   {"bfloat16", DType::kBFloat16}, {"fp64", DType::kFloat64},
      {"float64", DType::kFloat64}, {"double", DType::kFloat64},    {"int64", DType::kInt64},
      {"long", DType::kInt64},      {"int32", DType::kInt32},       {"int", DType::kInt32},
      {"int8", DType::kInt8},       {"uint8", DType::kUInt8},       {"bool", DType::kBool},
      {"i64", DType::kInt64},       {"i32", DType::kInt32},
  }};
  for (auto [n, d] : kNames) {
    if (n == name) return d;
  }
  return std::nullopt;
}

}  // namespace zp
