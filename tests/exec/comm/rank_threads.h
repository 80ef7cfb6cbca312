// Rendezvous stores for tests that set their ranks up by hand; run_ranks for those that do not.
#pragma once

#include <chrono>
#include <memory>

#include "exec/comm/gloo_communicator.h"
#include "exec/comm/local_ranks.h"

namespace zp::exec::comm::testing {

inline std::shared_ptr<Store> host_store(std::chrono::milliseconds timeout) {
  Store::Options o;
  o.host_store = true;
  o.port = 0;
  o.timeout = timeout;
  return Store::open(o);
}

inline std::shared_ptr<Store> client_store(int port, std::chrono::milliseconds timeout) {
  Store::Options o;
  o.port = port;
  o.timeout = timeout;
  return Store::open(o);
}

using comm::run_local_ranks;
inline void run_ranks(int world, const std::function<void(Communicator&)>& body,
                      std::chrono::milliseconds timeout = std::chrono::seconds(60),
                      GlooOptions gloo = {}) {
  run_local_ranks(world, body, timeout, gloo);
}

}  // namespace zp::exec::comm::testing
