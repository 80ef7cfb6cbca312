// One communicator: a group of ranks that run collectives together (DeepSpeed's process group).
// Implementations: Gloo over c10d on the host (gloo_communicator.h), NCCL on CUDA streams
// (nccl_communicator.h). The ZeRO-3 engine sees only this interface.
//
// Every operation is issued in the same order on every rank of the group (as c10d and NCCL
// require), returns a Work to wait on, and is recorded in log() once complete. Buffer shapes
// are the caller's contract; a mismatch is a bug in the caller (InternalError), not bad input.
//
// Failures (a peer that died, a peer that does not answer within the timeout) surface as
// CommError from the call or from Work::wait(), with one line saying what happened.
//
// Thread safety: issue operations from one thread; Work may be waited on from any thread.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>

#include "exec/comm/buffer.h"
#include "exec/comm/op_log.h"

namespace zp::exec::comm {

// A communication failure: a peer died or did not answer in time, or the rendezvous failed.
class CommError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class Work {
 public:
  virtual ~Work() = default;
  // Blocks until the operation is complete and its output written; CommError on failure.
  // Call it once.
  virtual void wait() = 0;
};
using WorkPtr = std::unique_ptr<Work>;

struct GroupSpec {
  std::string axis = "world";  // the trace group's name: "world", "data", "pipe 0-1"
  int rank = 0;                // this process's rank in the group
  int size = 1;
  std::chrono::milliseconds timeout{std::chrono::minutes(5)};
};

class Communicator;

// Makes the communicator of a group of ranks (a sub-group of the world, DeepSpeed's
// dist.new_group): each member calls it with its own rank in the group, in the same order as the
// other members make their groups. `group.axis` must name the group uniquely among the groups of
// the job (it keys the rendezvous). CommError when the members do not all join in time.
using GroupMaker = std::function<std::unique_ptr<Communicator>(const GroupSpec& group)>;

class Communicator {
 public:
  explicit Communicator(GroupSpec group) : group_(std::move(group)) {}
  virtual ~Communicator() = default;
  Communicator(const Communicator&) = delete;
  Communicator& operator=(const Communicator&) = delete;

  int rank() const { return group_.rank; }
  int size() const { return group_.size; }
  const GroupSpec& group() const { return group_; }
  virtual std::string_view backend() const = 0;

  // Gathers every rank's `input` into `output` (size() * input.numel elements), rank r's at
  // offset r * input.numel: the flat buffer a ZeRO-3 parameter is gathered into. `input` may be
  // this rank's slice of `output` itself (in place, as DeepSpeed gathers).
  WorkPtr all_gather(Buffer input, Buffer output, std::string_view label = {});
  // Reduces `input` (size() * output.numel elements) over the ranks and leaves this rank's
  // chunk, elements [rank * output.numel, (rank + 1) * output.numel), in `output`. `output` may
  // be that chunk of `input` itself (in place, as DeepSpeed's reduce_scatter_coalesced issues
  // it): the rest of `input` is then left undefined. Otherwise `input` is not modified, and the
  // two must not overlap.
  WorkPtr reduce_scatter(Buffer input, Buffer output, ReduceOp op = ReduceOp::kSum,
                         std::string_view label = {});
  // In place.
  WorkPtr all_reduce(Buffer data, ReduceOp op = ReduceOp::kSum, std::string_view label = {});
  // In place: `root`'s data to every rank.
  WorkPtr broadcast(Buffer data, int root, std::string_view label = {});
  WorkPtr send(Buffer data, int peer, int tag = 0, std::string_view label = {});
  WorkPtr recv(Buffer data, int peer, int tag = 0, std::string_view label = {});
  // Blocks until every rank has reached it.
  void barrier();

  OpLog& log() { return log_; }
  const OpLog& log() const { return log_; }

 protected:
  // The record an implementation completes (end_ns) and adds to the log.
  OpRecord begin(CommKind kind, std::int64_t bytes, int peer, std::string_view label);
  // True when a reduce-scatter's `output` is this rank's chunk of its `input`.
  bool is_in_place_chunk(const Buffer& input, const Buffer& output) const;

  virtual WorkPtr do_all_gather(Buffer input, Buffer output, OpRecord record) = 0;
  virtual WorkPtr do_reduce_scatter(Buffer input, Buffer output, ReduceOp op, OpRecord record) = 0;
  virtual WorkPtr do_all_reduce(Buffer data, ReduceOp op, OpRecord record) = 0;
  virtual WorkPtr do_broadcast(Buffer data, int root, OpRecord record) = 0;
  virtual WorkPtr do_send(Buffer data, int peer, int tag, OpRecord record) = 0;
  virtual WorkPtr do_recv(Buffer data, int peer, int tag, OpRecord record) = 0;
  virtual void do_barrier(OpRecord record) = 0;

  OpLog log_;

 private:
  GroupSpec group_;
  std::int64_t next_seq_ = 0;
};

// The rendezvous: a key-value store every rank of a job reaches (c10d's TCPStore). One process
// hosts it (the launcher, or rank 0); the others connect. Communicators find each other through
// it. Thread-safe.
class Store {
 public:
  struct Options {
    std::string host = "127.0.0.1";
    int port = 0;  // 0 when hosting: any free port (see port())
    bool host_store = false;
    std::chrono::milliseconds timeout{std::chrono::minutes(5)};
    std::string port_key = "port";  // how the user named the port, for errors: "MASTER_PORT"
  };
  // Hosting on a port in use is a UserError (kValue, key "port"); a store that cannot be
  // reached within the timeout is a CommError.
  static std::shared_ptr<Store> open(const Options& options);
  virtual ~Store() = default;

  virtual int port() const = 0;
  virtual void set(const std::string& key, const std::string& value) = 0;
  // Waits for the key up to the store's timeout; CommError when it does not appear.
  virtual std::string get(const std::string& key) = 0;
  virtual std::int64_t add(const std::string& key, std::int64_t delta) = 0;
};

// True when a TCP listener could bind `port` on this host now (a free port, or one whose last
// user is only lingering in TIME_WAIT).
bool port_is_free(int port);

}  // namespace zp::exec::comm
