// The host communicator: c10d's ProcessGroupGloo, rendezvous through a Store (c10d's TCPStore).
//
// Gloo lacks two collectives ZeRO-3 lives on, so they are built from what it has, and each is
// still recorded once, as the logical operation with its logical bytes:
//  - all-gather into one flat buffer: Gloo's list all-gather with the list made of views into
//    the flat output;
//  - reduce-scatter: an all-reduce of a copy of the input, then this rank's chunk copied out
//    (twice a ring reduce-scatter's traffic, and one input-sized scratch buffer while it runs).
// Host buffers only.
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "exec/comm/communicator.h"

namespace zp::exec::comm {

struct GlooOptions {
  // The address this rank's Gloo transport binds: empty for the host's name (or the interface in
  // GLOO_SOCKET_IFNAME when that is set), "127.0.0.1" for ranks that all run on this machine.
  std::string hostname;
  int threads = 2;  // Gloo worker threads that run asynchronous collectives
  // How long a wait for a collective polls (yielding the core to any thread that wants it) before
  // it sleeps; 0: it sleeps at once. A rank that sleeps leaves its core idle, and waking an idle
  // core takes tens to hundreds of microseconds on a virtual machine, varying with the host's
  // load: more than a small collective costs. A long wait still sleeps, so that Gloo's own
  // threads find a core. Sends and receives always sleep: c10d waits on them only by blocking.
  std::chrono::microseconds poll_for{0};
};

// Joins the group: blocks until every rank of it has called this with the same store and
// group.axis, in the same order as any other group it makes on this store object. CommError when
// the others do not all arrive within group.timeout.
std::unique_ptr<Communicator> make_gloo_communicator(const std::shared_ptr<Store>& store,
                                                     const GroupSpec& group,
                                                     const GlooOptions& options = {});

}  // namespace zp::exec::comm
