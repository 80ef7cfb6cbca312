// The host's CPU time by state, as Linux counts it for all CPUs together (/proc/stat's first
// line): a virtual machine's "steal" is the time its virtual CPUs were ready to run while the
// hypervisor ran someone else. On a shared host that share moves from minute to minute, and every
// measured time moves with it: calibrate and validate report it beside what they measured.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

namespace zp::exec {

struct HostCpuTimes {
  std::int64_t busy = 0;   // user, nice, system, irq, softirq (ticks)
  std::int64_t idle = 0;   // idle and iowait
  std::int64_t steal = 0;  // taken by the hypervisor
  std::int64_t total() const { return busy + idle + steal; }
};

// The aggregate "cpu" line of /proc/stat's text; nullopt when there is none or it is malformed.
// Guest time is already inside user and nice, so it is not added again.
std::optional<HostCpuTimes> parse_proc_stat(std::string_view text);
// This host's counters now; nullopt where /proc/stat cannot be read (not Linux).
std::optional<HostCpuTimes> read_host_cpu_times();

// Of the CPU time that passed between two readings, the share stolen; nullopt when either reading
// is missing or no time passed.
std::optional<double> steal_share(const std::optional<HostCpuTimes>& before,
                                  const std::optional<HostCpuTimes>& after);

}  // namespace zp::exec
