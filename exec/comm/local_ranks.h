// Runs a body on N ranks, one thread each, joined through one rendezvous store hosted here: for
// tests and benchmarks, cheaper and steadier on a small loaded machine than N processes, with the
// same Gloo transport between the ranks.
#pragma once

#include <chrono>
#include <functional>

#include "exec/comm/communicator.h"
#include "exec/comm/gloo_communicator.h"

namespace zp::exec::comm {

// Calls body(comm) on each of `world` ranks (comm: the world group over Gloo on 127.0.0.1, with
// `gloo`'s other options) and joins them; rethrows the first rank's exception, if any.
void run_local_ranks(int world, const std::function<void(Communicator&)>& body,
                     std::chrono::milliseconds timeout = std::chrono::seconds(60),
                     GlooOptions gloo = {});

// The same, with a GroupMaker that makes sub-groups of the world over Gloo through the same store.
void run_local_ranks_with_groups(int world,
                                 const std::function<void(Communicator&, const GroupMaker&)>& body,
                                 std::chrono::milliseconds timeout = std::chrono::seconds(60),
                                 GlooOptions gloo = {});

}  // namespace zp::exec::comm
