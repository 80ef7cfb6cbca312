// The median of a list of figures, the mean of the middle two for an even count: what noisy
// measurements (step times, a calibration's points) are summarised by, since one outlier moves a
// mean by all its excess and a median not at all.
#pragma once

#include <algorithm>
#include <vector>

#include "core/util/error.h"

namespace zp {

template <class T>
T median(std::vector<T> values) {
  ZP_CHECK(!values.empty(), "the median of no values");
  std::sort(values.begin(), values.end());
  const std::size_t n = values.size();
  return n % 2 == 1 ? values[n / 2] : (values[n / 2 - 1] + values[n / 2]) / 2;
}

}  // namespace zp
