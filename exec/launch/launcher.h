// zeroplan-exec --nproc N: hosts the rendezvous store, starts N ranks (this program again, by
// fork and exec, with the torchrun variables set), and watches them until all have ended.
//
// Faults end the job within a bounded time: when a rank fails, the others get `grace` seconds to
// notice (through Gloo or the store) and report it themselves, then every rank still running is
// stopped (SIGTERM, SIGKILL two seconds later). When a rank finishes but another still runs
// `timeout` seconds later, that one is taken to hang and stopped. SIGINT and SIGTERM to the
// launcher stop the ranks too. The ranks share one process group, which is signalled and reaped
// whole, and each dies with the launcher (PR_SET_PDEATHSIG), so nothing is left running.
#pragma once

#include <iosfwd>
#include <string>
#include <vector>

#include "exec/launch/options.h"

namespace zp::exec::launch {

// Returns the exit status: 0 when every rank succeeded, else the first failure's (kExitCommFailed
// for a rank that had to be stopped or died by a signal). `args` are this process's arguments
// (without argv[0]).
int launch_local(const ExecOptions& options, const std::vector<std::string>& args,
                 std::ostream& log);

}  // namespace zp::exec::launch
