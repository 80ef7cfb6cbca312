#include "exec/runtime/host_cpu.h"

#include <charconv>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

namespace zp::exec {

std::optional<HostCpuTimes> parse_proc_stat(std::string_view text) {
  const std::size_t eol = text.find('\n');
  std::string_view line = text.substr(0, eol);
  if (!line.starts_with("cpu ")) return std::nullopt;
  line.remove_prefix(4);
  std::vector<std::int64_t> v;
  while (!line.empty()) {
    while (!line.empty() && line.front() == ' ')
      line.remove_prefix(1);
    if (line.empty()) break;
    std::int64_t x = 0;
    const auto [end, error] = std::from_chars(line.data(), line.data() + line.size(), x);
    if (error != std::errc() || x < 0) return std::nullopt;
    v.push_back(x);
    line.remove_prefix(static_cast<std::size_t>(end - line.data()));
  }
  // user nice system idle iowait irq softirq steal [guest guest_nice]; kernels before 2.6.11
  // have no steal column, and so no steal.
  if (v.size() < 7) return std::nullopt;
  HostCpuTimes t;
  t.busy = v[0] + v[1] + v[2] + v[5] + v[6];
  t.idle = v[3] + v[4];
  t.steal = v.size() > 7 ? v[7] : 0;
  return t;
}

std::optional<HostCpuTimes> read_host_cpu_times() {
  std::ifstream in("/proc/stat");
  if (!in) return std::nullopt;
  std::string line;
  if (!std::getline(in, line)) return std::nullopt;
  return parse_proc_stat(line);
}

std::optional<double> steal_share(const std::optional<HostCpuTimes>& before,
                                  const std::optional<HostCpuTimes>& after) {
  if (!before || !after) return std::nullopt;
  const std::int64_t total = after->total() - before->total();
  const std::int64_t steal = after->steal - before->steal;
  if (total <= 0 || steal < 0) return std::nullopt;
  return static_cast<double>(steal) / static_cast<double>(total);
}

}  // namespace zp::exec
