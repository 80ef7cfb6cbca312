#include "core/pipe/partition.h"

#include <algorithm>
#include <cctype>
#include <limits>
#include <regex>

namespace zp::pipe {
namespace {

void require_parts(std::int64_t num_parts) {
  if (num_parts < 1) {
    throw UserError(ErrorKind::kValue, {},
                    detail::concat("a pipeline needs at least one stage, got ", num_parts));
  }
}

// Inclusive prefix sums with a leading 0, checked for overflow and sign.
std::vector<std::int64_t> prefix_sums(const std::vector<std::int64_t>& weights) {
  std::vector<std::int64_t> sums(weights.size() + 1, 0);
  for (size_t i = 0; i < weights.size(); ++i) {
    const std::int64_t w = weights[i];
    if (w < 0) {
      throw UserError(ErrorKind::kValue, {},
                      detail::concat("layer ", i, " has a negative partition weight ", w));
    }
    if (w > std::numeric_limits<std::int64_t>::max() - sums[i]) {
      throw UserError(ErrorKind::kValue, {},
                      "the partition weights of the layers add up to more than 2^63 - 1");
    }
    sums[i + 1] = sums[i] + w;
  }
  return sums;
}

std::string lower_ascii(std::string_view text) {
  std::string out(text);
  for (char& c : out)
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::regex compile_type_regex(const std::string& pattern, std::string_view method) {
  try {
    return std::regex(pattern, std::regex::ECMAScript | std::regex::icase);
  } catch (const std::regex_error& e) {
    throw UserError(ErrorKind::kValue, {},
                    detail::concat("partition method '", method, "': '", pattern,
                                   "' is not a valid regular expression (", e.what(), ")"));
  }
}

// One entry per layer (or per stage, for `per` = "stages"), none negative.
void check_costs(const std::vector<std::int64_t>& costs, const char* field,
                 const PartitionMethod& method, size_t expected, const char* per = "layers") {
  if (costs.size() != expected) {
    throw UserError(ErrorKind::kValue, {},
                    detail::concat("partition method '", method.str(), "': ", costs.size(), " ",
                                   field, " for ", expected, " ", per));
  }
  for (std::int64_t c : costs) {
    if (c < 0) {
      throw UserError(ErrorKind::kValue, {},
                      detail::concat("partition method '", method.str(), "': ", field,
                                     " must be >= 0, got ", c));
    }
  }
}

const std::vector<std::int64_t>& require_costs(
    const std::optional<std::vector<std::int64_t>>& costs, const char* field,
    const PartitionMethod& method, size_t num_layers) {
  if (!costs) {
    throw UserError(
        ErrorKind::kMissing, {},
        detail::concat("partition method '", method.str(), "' needs per-layer ", field));
  }
  check_costs(*costs, field, method, num_layers);
  return *costs;
}

}  // namespace

std::vector<std::int64_t> partition_uniform(std::int64_t num_items, std::int64_t num_parts) {
  require_parts(num_parts);
  if (num_items < 0) {
    throw UserError(
        ErrorKind::kValue, {},
        detail::concat("cannot partition a negative number of layers (", num_items, ")"));
  }
  std::vector<std::int64_t> parts(static_cast<size_t>(num_parts) + 1);
  if (num_items <= num_parts) {
    for (std::int64_t p = 0; p <= num_parts; ++p)
      parts[static_cast<size_t>(p)] = std::min(p, num_items);
    return parts;
  }
  const std::int64_t chunk = num_items / num_parts;
  const std::int64_t residual = num_items % num_parts;
  for (std::int64_t p = 0; p <= num_parts; ++p) {
    parts[static_cast<size_t>(p)] = p * chunk + std::min(p, residual);
  }
  return parts;
}

std::vector<std::int64_t> partition_balanced(const std::vector<std::int64_t>& weights,
                                             std::int64_t num_parts) {
  require_parts(num_parts);
  const std::vector<std::int64_t> sums = prefix_sums(weights);
  const auto n = static_cast<std::int64_t>(weights.size());
  const std::int64_t m = num_parts;
  if (n <= m) return partition_uniform(n, m);

  // State (i, j): the first i items in j non-empty parts, with the largest and smallest part of the
  // one predecessor DeepSpeed keeps. A state is reachable iff 1 <= j <= i, or i = j = 0. DeepSpeed
  // also visits unreachable predecessors (their cost is infinite), but a reachable one always
  // replaces them, so skipping them changes nothing.
  struct State {
    bool reachable = false;
    std::int64_t cost = 0;
    std::int64_t largest = 0;
    std::int64_t smallest = 0;
    std::int64_t split = 0;
  };
  const auto cols = static_cast<size_t>(m + 1);
  std::vector<State> dp(static_cast<size_t>(n + 1) * cols);
  auto at = [&](std::int64_t i, std::int64_t j) -> State& {
    return dp[static_cast<size_t>(i) * cols + static_cast<size_t>(j)];
  };
  at(0, 0).reachable = true;
  for (std::int64_t i = 1; i <= n; ++i) {
    for (std::int64_t j = 1; j <= std::min(i, m); ++j) {
      State& cur = at(i, j);
      for (std::int64_t k = 0; k < i; ++k) {
        const State& prev = at(k, j - 1);
        if (!prev.reachable) continue;
        const std::int64_t part = sums[static_cast<size_t>(i)] - sums[static_cast<size_t>(k)];
        // The empty prefix has no smallest part (DeepSpeed's +inf); its largest is 0.
        const std::int64_t largest = std::max(prev.largest, part);
        const std::int64_t smallest = j == 1 ? part : std::min(prev.smallest, part);
        const std::int64_t cost = largest - smallest;
        // `<=`: on a tie the later split wins, as in DeepSpeed.
        if (!cur.reachable || cost <= cur.cost) {
          cur = State{true, cost, largest, smallest, k};
        }
      }
    }
  }
  std::vector<std::int64_t> parts(static_cast<size_t>(m) + 1);
  parts[static_cast<size_t>(m)] = n;
  for (std::int64_t j = m; j >= 1; --j) {
    const State& s = at(parts[static_cast<size_t>(j)], j);
    ZP_CHECK(s.reachable, "partition_balanced backtracked into an unreachable state");
    parts[static_cast<size_t>(j - 1)] = s.split;
  }
  return parts;
}

std::vector<std::int64_t> partition_min_max(const std::vector<std::int64_t>& weights,
                                            std::int64_t num_parts) {
  require_parts(num_parts);
  const std::vector<std::int64_t> sums = prefix_sums(weights);
  const auto n = static_cast<std::int64_t>(weights.size());
  const std::int64_t m = num_parts;
  if (n <= m) return partition_uniform(n, m);

  // Parts a greedy packing needs when no part may exceed `bound`; fewer than m can always be split
  // further, since n > m.
  auto parts_needed = [&](std::int64_t bound) {
    std::int64_t count = 1;
    std::int64_t load = 0;
    for (std::int64_t w : weights) {
      if (load + w > bound) {
        ++count;
        load = 0;
      }
      load += w;
    }
    return count;
  };
  std::int64_t lo = *std::max_element(weights.begin(), weights.end());
  std::int64_t hi = sums.back();
  while (lo < hi) {
    const std::int64_t mid = lo + (hi - lo) / 2;
    if (parts_needed(mid) <= m) {
      hi = mid;
    } else {
      lo = mid + 1;
    }
  }
  const std::int64_t bound = lo;

  // Each stage takes layers while they fit under the bound and enough remain for the stages after
  // it; the last stage takes the rest, which then fits too.
  std::vector<std::int64_t> parts(static_cast<size_t>(m) + 1, 0);
  std::int64_t pos = 0;
  for (std::int64_t p = 0; p + 1 < m; ++p) {
    const std::int64_t last_allowed = n - (m - 1 - p);  // exclusive end leaving one per later stage
    const std::int64_t start = pos;
    ++pos;  // a single layer always fits: bound >= every weight
    while (pos < last_allowed &&
           sums[static_cast<size_t>(pos + 1)] - sums[static_cast<size_t>(start)] <= bound) {
      ++pos;
    }
    parts[static_cast<size_t>(p + 1)] = pos;
  }
  parts[static_cast<size_t>(m)] = n;
  ZP_CHECK(sums[static_cast<size_t>(n)] - sums[static_cast<size_t>(pos)] <= bound,
           "partition_min_max: the last stage exceeds the optimal bound ", bound);
  return parts;
}

std::int64_t max_part_weight(const std::vector<std::int64_t>& weights,
                             const std::vector<std::int64_t>& boundaries) {
  ZP_CHECK(!boundaries.empty() && boundaries.back() == static_cast<std::int64_t>(weights.size()),
           "boundaries do not cover the ", weights.size(), " weights");
  std::int64_t heaviest = 0;
  for (size_t s = 0; s + 1 < boundaries.size(); ++s) {
    std::int64_t load = 0;
    for (std::int64_t i = boundaries[s]; i < boundaries[s + 1]; ++i) {
      load += weights[static_cast<size_t>(i)];
    }
    heaviest = std::max(heaviest, load);
  }
  return heaviest;
}

std::int64_t stage_owner(const std::vector<std::int64_t>& boundaries, std::int64_t layer) {
  const std::int64_t num_layers = boundaries.empty() ? 0 : boundaries.back();
  if (layer < 0 || layer >= num_layers) {
    throw UserError(
        ErrorKind::kValue, {},
        detail::concat("layer ", layer, " is outside the pipeline's ", num_layers, " layers"));
  }
  for (size_t s = 0; s + 1 < boundaries.size(); ++s) {
    if (boundaries[s] <= layer && layer < boundaries[s + 1]) return static_cast<std::int64_t>(s);
  }
  ZP_CHECK(false, "layer ", layer, " is owned by no stage");
  return -1;
}

std::string PartitionMethod::str() const {
  switch (kind) {
    case PartitionKind::kUniform:
      return "uniform";
    case PartitionKind::kParameters:
      return "parameters";
    case PartitionKind::kType:
      return "type:" + type_regex;
    case PartitionKind::kProfile:
      return "profile";
    case PartitionKind::kMemory:
      return "memory";
  }
  return "?";
}

PartitionMethod parse_partition_method(std::string_view text) {
  const std::string method = lower_ascii(text);
  PartitionMethod out;
  if (method == "uniform") {
    out.kind = PartitionKind::kUniform;
  } else if (method == "parameters") {
    out.kind = PartitionKind::kParameters;
  } else if (method.starts_with("type:")) {
    out.kind = PartitionKind::kType;
    const std::string rest = method.substr(5);
    out.type_regex = rest.substr(0, rest.find(':'));
    compile_type_regex(out.type_regex, text);
  } else if (method == "profile") {
    out.kind = PartitionKind::kProfile;
  } else if (method == "memory") {
    out.kind = PartitionKind::kMemory;
  } else {
    throw UserError(ErrorKind::kValue, {},
                    detail::concat("partition method '", text,
                                   "' is not one of uniform, parameters, type:REGEX, profile, "
                                   "memory"));
  }
  return out;
}

std::int64_t PipelinePartition::stage_begin(std::int64_t stage) const {
  ZP_CHECK(stage >= 0 && stage < num_stages(), "stage ", stage, " of ", num_stages());
  return boundaries[static_cast<size_t>(stage)];
}

std::int64_t PipelinePartition::stage_end(std::int64_t stage) const {
  ZP_CHECK(stage >= 0 && stage < num_stages(), "stage ", stage, " of ", num_stages());
  return boundaries[static_cast<size_t>(stage) + 1];
}

PipelinePartition partition_layers(const PipelineLayers& layers, std::int64_t num_stages,
                                   const PartitionMethod& method, const PartitionCosts& costs) {
  require_parts(num_stages);
  const size_t n = layers.layers.size();
  PipelinePartition out;
  bool may_be_exact = true;
  switch (method.kind) {
    case PartitionKind::kUniform:
      out.boundaries = partition_uniform(static_cast<std::int64_t>(n), num_stages);
      may_be_exact = false;
      break;
    case PartitionKind::kParameters:
      for (const Layer& l : layers.layers)
        out.weights.push_back(l.trainable_parameters);
      break;
    case PartitionKind::kType: {
      const std::regex re = compile_type_regex(method.type_regex, method.str());
      bool any = false;
      for (const Layer& l : layers.layers) {
        const bool match = std::regex_search(l.type, re);
        any = any || match;
        out.weights.push_back(match ? 1 : 0);
      }
      if (!any) {
        throw UserError(ErrorKind::kValue, {},
                        detail::concat("Partitioning '", method.type_regex,
                                       "' found no valid layers to partition."));
      }
      may_be_exact = false;
      break;
    }
    case PartitionKind::kProfile:
      out.weights = require_costs(costs.time_ns, "times", method, n);
      break;
    case PartitionKind::kMemory: {
      if (!costs.memory) {
        throw UserError(ErrorKind::kMissing, {},
                        "partition method 'memory' needs per-layer memory costs");
      }
      const StageMemoryCosts& m = *costs.memory;
      check_costs(m.static_bytes, "static memory sizes", method, n);
      check_costs(m.activation_bytes, "activation sizes", method, n);
      check_costs(m.in_flight, "in-flight counts", method, static_cast<size_t>(num_stages),
                  "stages");
      for (size_t i = 0; i < n; ++i)
        out.weights.push_back(m.static_bytes[i] + m.activation_bytes[i]);
      out.boundaries = partition_memory(m, num_stages);
      may_be_exact = false;
      break;
    }
  }
  if (method.kind != PartitionKind::kUniform && method.kind != PartitionKind::kMemory) {
    out.boundaries = costs.exact && may_be_exact ? partition_min_max(out.weights, num_stages)
                                                 : partition_balanced(out.weights, num_stages);
  }
  for (std::int64_t s = 0; s < num_stages; ++s) {
    if (out.stage_begin(s) == out.stage_end(s)) {
      out.warnings.push_back(Warning{{},
                                     detail::concat("pipeline stage ", s, " of ", num_stages,
                                                    " has no layers (partition_method '",
                                                    method.str(), "' over ", n, " layers)")});
    }
  }
  return out;
}

namespace {

// Cost of layers [begin, end) on `stage`, from prefix sums; saturates instead of overflowing.
std::int64_t stage_cost(const std::vector<std::int64_t>& static_prefix,
                        const std::vector<std::int64_t>& act_prefix, std::int64_t in_flight,
                        size_t begin, size_t end) {
  std::int64_t act = 0, cost = 0;
  if (__builtin_mul_overflow(in_flight, act_prefix[end] - act_prefix[begin], &act) ||
      __builtin_add_overflow(static_prefix[end] - static_prefix[begin], act, &cost)) {
    return INT64_MAX;
  }
  return cost;
}

}  // namespace

std::int64_t stage_memory_peak(const StageMemoryCosts& costs,
                               const std::vector<std::int64_t>& boundaries, std::int64_t stage) {
  std::int64_t stat = 0, act = 0;
  for (std::int64_t l = boundaries[static_cast<size_t>(stage)];
       l < boundaries[static_cast<size_t>(stage) + 1]; ++l) {
    stat += costs.static_bytes[static_cast<size_t>(l)];
    act += costs.activation_bytes[static_cast<size_t>(l)];
  }
  return stat + costs.in_flight[static_cast<size_t>(stage)] * act;
}

std::vector<std::int64_t> partition_memory(const StageMemoryCosts& costs, std::int64_t num_stages) {
  require_parts(num_stages);
  const size_t n = costs.static_bytes.size();
  const auto m = static_cast<size_t>(num_stages);
  ZP_CHECK(costs.activation_bytes.size() == n && costs.in_flight.size() == m,
           "memory costs of mismatched sizes");
  if (n <= m) return partition_uniform(static_cast<std::int64_t>(n), num_stages);
  std::vector<std::int64_t> sp(n + 1, 0), ap(n + 1, 0);
  for (size_t i = 0; i < n; ++i) {
    sp[i + 1] = sp[i] + costs.static_bytes[i];
    ap[i + 1] = ap[i] + costs.activation_bytes[i];
  }
  // best[s][j]: the smallest largest peak of stages 0..s-1 holding layers [0, j), every stage
  // non-empty. A greedy fill is not enough: stages hold different numbers of micro-batches, so
  // where a layer lands changes what it costs. O(m n^2).
  constexpr std::int64_t kInf = INT64_MAX;
  std::vector<std::vector<std::int64_t>> best(m + 1, std::vector<std::int64_t>(n + 1, kInf));
  std::vector<std::vector<size_t>> from(m + 1, std::vector<size_t>(n + 1, 0));
  best[0][0] = 0;
  for (size_t s = 1; s <= m; ++s) {
    const std::int64_t k = costs.in_flight[s - 1];
    for (size_t j = s; j + (m - s) <= n; ++j) {
      for (size_t i = s - 1; i < j; ++i) {
        if (best[s - 1][i] == kInf) continue;
        const std::int64_t worst = std::max(best[s - 1][i], stage_cost(sp, ap, k, i, j));
        if (worst < best[s][j]) {
          best[s][j] = worst;
          from[s][j] = i;
        }
      }
    }
  }
  ZP_CHECK(best[m][n] != kInf, "no partition of ", n, " layers over ", m, " stages");
  std::vector<std::int64_t> b(m + 1);
  b[m] = static_cast<std::int64_t>(n);
  for (size_t s = m, j = n; s > 0; --s) {
    j = from[s][j];
    b[s - 1] = static_cast<std::int64_t>(j);
  }
  return b;
}

}  // namespace zp::pipe
