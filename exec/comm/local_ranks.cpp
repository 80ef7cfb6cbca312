#include "exec/comm/local_ranks.h"

#include <exception>
#include <memory>
#include <thread>
#include <vector>

#include "exec/comm/gloo_communicator.h"

namespace zp::exec::comm {

void run_local_ranks(int world, const std::function<void(Communicator&)>& body,
                     std::chrono::milliseconds timeout, GlooOptions gloo) {
  run_local_ranks_with_groups(
      world, [&](Communicator& comm, const GroupMaker&) { body(comm); }, timeout, gloo);
}

void run_local_ranks_with_groups(int world,
                                 const std::function<void(Communicator&, const GroupMaker&)>& body,
                                 std::chrono::milliseconds timeout, GlooOptions gloo) {
  gloo.hostname = "127.0.0.1";
  Store::Options host;
  host.host_store = true;
  host.port = 0;
  host.timeout = timeout;
  const auto server = Store::open(host);
  std::vector<std::exception_ptr> errors(static_cast<std::size_t>(world));
  std::vector<std::thread> threads;
  for (int r = 0; r < world; ++r) {
    threads.emplace_back([&, r] {
      try {
        Store::Options client;
        client.port = server->port();
        client.timeout = timeout;
        const auto store = Store::open(client);
        GroupSpec group;
        group.rank = r;
        group.size = world;
        group.timeout = timeout;
        const auto comm = make_gloo_communicator(store, group, gloo);
        const GroupMaker make_group = [&](const GroupSpec& sub) {
          return make_gloo_communicator(store, sub, gloo);
        };
        body(*comm, make_group);
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

}  // namespace zp::exec::comm
