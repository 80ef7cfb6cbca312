// Runs a test body on N ranks, one thread each, joined through one rendezvous store hosted by the
// test: cheaper and steadier on a small loaded machine than N processes, with the same Gloo
// transport between them.
#pragma once

#include <exception>
#include <functional>
#include <memory>
#include <thread>
#include <vector>

#include "exec/comm/gloo_communicator.h"

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

// Calls body(comm) on each of `world` ranks; rethrows the first rank's exception, if any.
inline void run_ranks(int world, const std::function<void(Communicator&)>& body,
                      std::chrono::milliseconds timeout = std::chrono::seconds(60)) {
  const auto server = host_store(timeout);
  std::vector<std::exception_ptr> errors(static_cast<std::size_t>(world));
  std::vector<std::thread> threads;
  for (int r = 0; r < world; ++r) {
    threads.emplace_back([&, r] {
      try {
        const auto store = client_store(server->port(), timeout);
        GroupSpec group;
        group.rank = r;
        group.size = world;
        group.timeout = timeout;
        GlooOptions gloo;
        gloo.hostname = "127.0.0.1";
        const auto comm = make_gloo_communicator(store, group, gloo);
        body(*comm);
      } catch (...) {
        errors[static_cast<std::size_t>(r)] = std::current_exception();
      }
    });
  }
  for (std::thread& t : threads)
    t.join();
  for (const std::exception_ptr& e : errors)
    if (e) std::rethrow_exception(e);
}

}  // namespace zp::exec::comm::testing
