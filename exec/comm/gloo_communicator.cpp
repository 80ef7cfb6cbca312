// The one translation unit that includes c10d: the TCPStore behind Store, and ProcessGroupGloo.
// Both live here because c10d's headers cost seconds per file that includes them.
#include "exec/comm/gloo_communicator.h"

#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include <atomic>
#include <cstdlib>
#include <functional>
#include <map>
#include <mutex>
#include <sstream>
#include <thread>
#include <utility>

#include "core/util/error.h"

namespace zp::exec::comm {

namespace {

// One line from an exception out of c10d or Gloo: no backtrace, no source position prefix.
std::string one_line(const std::exception& e) {
  std::string text;
  if (const auto* c10 = dynamic_cast<const c10::Error*>(&e))
    text = c10->what_without_backtrace();
  else
    text = e.what();
  // Gloo prefixes "[path/to/file.cc:123] ".
  if (!text.empty() && text.front() == '[') {
    const auto close = text.find("] ");
    if (close != std::string::npos) text = text.substr(close + 2);
  }
  const auto newline = text.find('\n');
  if (newline != std::string::npos) text.resize(newline);
  return text;
}

std::string seconds(std::chrono::milliseconds ms) {
  const auto s = ms.count() / 1000.0;
  std::ostringstream out;
  out << s << " s";
  return out.str();
}

class C10dStore final : public Store {
 public:
  C10dStore(c10::intrusive_ptr<c10d::Store> store, int port, std::string host)
      : store_(std::move(store)), port_(port), host_(std::move(host)) {}

  int port() const override { return port_; }

  void set(const std::string& key, const std::string& value) override {
    run("set " + key,
        [&] { store_->set(key, std::vector<std::uint8_t>(value.begin(), value.end())); });
  }
  std::string get(const std::string& key) override {
    std::vector<std::uint8_t> bytes;
    run("get " + key, [&] { bytes = store_->get(key); });
    return {bytes.begin(), bytes.end()};
  }
  std::int64_t add(const std::string& key, std::int64_t delta) override {
    std::int64_t out = 0;
    run("add " + key, [&] { out = store_->add(key, delta); });
    return out;
  }

  const c10::intrusive_ptr<c10d::Store>& c10d() const { return store_; }

  // Groups made on this store object are numbered per axis, so every rank (which makes its
  // groups in the same order) picks the same keys, and a group never reads an older one's.
  int next_instance(const std::string& axis) {
    const std::lock_guard lock(mutex_);
    return instances_[axis]++;
  }

 private:
  template <class F>
  void run(const std::string& what, F&& f) {
    try {
      f();
    } catch (const std::exception& e) {
      throw CommError("rendezvous store " + host_ + ":" + std::to_string(port_) + ": " + what +
                      " failed: " + one_line(e));
    }
  }

  c10::intrusive_ptr<c10d::Store> store_;
  int port_;
  std::string host_;
  std::mutex mutex_;
  std::map<std::string, int> instances_;
};

at::ScalarType scalar_type(DType dtype) {
  switch (dtype) {
    case DType::kFloat32:
      return at::kFloat;
    case DType::kFloat64:
      return at::kDouble;
    case DType::kFloat16:
      return at::kHalf;
    case DType::kBFloat16:
      return at::kBFloat16;
    case DType::kInt32:
      return at::kInt;
    case DType::kInt64:
      return at::kLong;
    case DType::kUInt8:
      return at::kByte;
  }
  return at::kFloat;
}

at::Tensor as_tensor(const Buffer& b) {
  ZP_CHECK(b.device == DeviceKind::kCpu, "the Gloo communicator takes host buffers");
  return at::from_blob(b.data, {b.numel}, at::TensorOptions().dtype(scalar_type(b.dtype)));
}

c10d::ReduceOp reduce_op(ReduceOp op) {
  switch (op) {
    case ReduceOp::kSum:
      return c10d::ReduceOp::SUM;
    case ReduceOp::kMax:
      return c10d::ReduceOp::MAX;
    case ReduceOp::kMin:
      return c10d::ReduceOp::MIN;
  }
  return c10d::ReduceOp::SUM;
}

// Spins, yielding the core, until done() or `span` has passed.
template <class Done>
void poll_for(Done done, std::chrono::microseconds span) {
  const auto until = std::chrono::steady_clock::now() + span;
  while (!done() && std::chrono::steady_clock::now() < until)
    std::this_thread::yield();
}

// Completion of one operation, made of one or more c10d work items: stamps the end time when the
// last one finishes (on Gloo's thread, through the works' futures where they have them) and logs
// the record once waited on.
class GlooWork final : public Work {
 public:
  GlooWork(std::vector<c10::intrusive_ptr<c10d::Work>> works, OpRecord record, OpLog* log, int rank,
           std::chrono::milliseconds timeout, bool has_future, std::chrono::microseconds poll,
           std::function<void()> on_success = {})
      : works_(std::move(works)),
        state_(std::make_shared<State>()),
        log_(log),
        rank_(rank),
        timeout_(timeout),
        poll_for_(has_future ? poll : std::chrono::microseconds(0)) {
    state_->record = std::move(record);
    state_->on_success = std::move(on_success);
    state_->pending.store(static_cast<int>(works_.size()));
    if (has_future) {
      for (const c10::intrusive_ptr<c10d::Work>& work : works_) {
        // Runs on Gloo's thread before wait() wakes, or here when the work is already done.
        work->getFuture()->addCallback([state = state_](c10::ivalue::Future& future) {
          if (future.hasError()) state->failed.store(true);
          if (state->pending.fetch_sub(1) != 1) return;
          if (!state->failed.load() && state->on_success) state->on_success();
          state->end_ns.store(wall_clock_ns());
        });
      }
    }
  }

  ~GlooWork() override {
    // A work dropped unwaited must not outlive the buffers it writes into silently: finish it.
    if (!waited_) {
      for (const c10::intrusive_ptr<c10d::Work>& work : works_) {
        try {
          work->wait(timeout_);
        } catch (...) {
        }
      }
    }
  }

  void wait() override {
    ZP_CHECK(!waited_, "a communication Work waited on twice");
    waited_ = true;
    try {
      for (const c10::intrusive_ptr<c10d::Work>& work : works_) {
        // A collective's work completes its future, done or failed, and wait() then returns or
        // throws at once.
        if (poll_for_.count() > 0) poll_for([&] { return work->isCompleted(); }, poll_for_);
        work->wait(timeout_);
      }
    } catch (const std::exception& e) {
      throw CommError("rank " + std::to_string(rank_) + ": " +
                      std::string(to_string(state_->record.kind)) +
                      (state_->record.label.empty() ? "" : " '" + state_->record.label + "'") +
                      " failed: " + one_line(e) + " (timeout " + seconds(timeout_) +
                      "; did a peer die or hang?)");
    }
    OpRecord r = state_->record;
    const std::int64_t end = state_->end_ns.load();
    if (end != 0) {
      r.end_ns = end;
    } else {
      // Send and receive have no future: they end, at the latest, when the wait returns.
      if (state_->on_success) state_->on_success();
      r.end_ns = wall_clock_ns();
    }
    log_->add(std::move(r));
  }

 private:
  struct State {
    OpRecord record;
    std::function<void()> on_success;
    std::atomic<int> pending{0};
    std::atomic<bool> failed{false};
    std::atomic<std::int64_t> end_ns{0};
  };
  std::vector<c10::intrusive_ptr<c10d::Work>> works_;
  std::shared_ptr<State> state_;
  OpLog* log_;
  int rank_;
  std::chrono::milliseconds timeout_;
  // A collective's wait polls this long, then sleeps. A send's or receive's does not poll: c10d
  // can wait on one only by blocking (a wait with a short timeout fails it).
  std::chrono::microseconds poll_for_{0};
  bool waited_ = false;
};

class GlooCommunicator final : public Communicator {
 public:
  GlooCommunicator(GroupSpec group, c10::intrusive_ptr<c10d::ProcessGroupGloo> pg,
                   std::chrono::microseconds poll)
      : Communicator(std::move(group)), pg_(std::move(pg)), poll_(poll) {}

  std::string_view backend() const override { return "gloo"; }

 protected:
  // One broadcast per rank, each straight into its slice of the output: c10d's Gloo all-gather
  // would stage the whole output in a buffer of its own first (and copy it out after), which a
  // GPU's all-gather into the flat buffer does not need. The same bytes go over the wire.
  WorkPtr do_all_gather(Buffer input, Buffer output, OpRecord record) override {
    const at::Tensor flat = as_tensor(output);
    at::Tensor mine = flat.narrow(0, rank() * input.numel, input.numel);
    if (mine.data_ptr() != input.data) mine.copy_(as_tensor(input));
    std::vector<c10::intrusive_ptr<c10d::Work>> works;
    for (int r = 0; r < size(); ++r) {
      std::vector<at::Tensor> slice{flat.narrow(0, r * input.numel, input.numel)};
      c10d::BroadcastOptions options;
      options.rootRank = r;
      works.push_back(call([&] { return pg_->broadcast(slice, options); }, record));
    }
    return make(std::move(works), std::move(record), true);
  }

  // Gloo has no reduce-scatter: an all-reduce, of which this rank keeps its chunk. In place (the
  // output is this rank's chunk of the input) the input itself is reduced; otherwise a copy of it,
  // so that the input is left as it was.
  WorkPtr do_reduce_scatter(Buffer input, Buffer output, ReduceOp op, OpRecord record) override {
    c10d::AllreduceOptions options;
    options.reduceOp = reduce_op(op);
    if (is_in_place_chunk(input, output)) {
      std::vector<at::Tensor> tensors{as_tensor(input)};
      return make(pg_->allreduce(tensors, options), std::move(record), true);
    }
    std::vector<at::Tensor> scratch{as_tensor(input).clone()};
    at::Tensor chunk = scratch[0].narrow(0, rank() * output.numel, output.numel);
    at::Tensor out = as_tensor(output);
    auto work = pg_->allreduce(scratch, options);
    return make(std::move(work), std::move(record), true,
                [chunk, out]() mutable { out.copy_(chunk); });
  }

  WorkPtr do_all_reduce(Buffer data, ReduceOp op, OpRecord record) override {
    std::vector<at::Tensor> tensors{as_tensor(data)};
    c10d::AllreduceOptions options;
    options.reduceOp = reduce_op(op);
    return make(pg_->allreduce(tensors, options), std::move(record), true);
  }

  WorkPtr do_broadcast(Buffer data, int root, OpRecord record) override {
    std::vector<at::Tensor> tensors{as_tensor(data)};
    c10d::BroadcastOptions options;
    options.rootRank = root;
    return make(pg_->broadcast(tensors, options), std::move(record), true);
  }

  WorkPtr do_send(Buffer data, int peer, int tag, OpRecord record) override {
    std::vector<at::Tensor> tensors{as_tensor(data)};
    return make(call([&] { return pg_->send(tensors, peer, tag); }, record), std::move(record),
                false);
  }

  WorkPtr do_recv(Buffer data, int peer, int tag, OpRecord record) override {
    std::vector<at::Tensor> tensors{as_tensor(data)};
    return make(call([&] { return pg_->recv(tensors, peer, tag); }, record), std::move(record),
                false);
  }

  void do_barrier(OpRecord record) override {
    make(pg_->barrier(), std::move(record), true)->wait();
  }

 private:
  template <class F>
  c10::intrusive_ptr<c10d::Work> call(F&& f, const OpRecord& record) {
    try {
      return f();
    } catch (const std::exception& e) {
      throw CommError("rank " + std::to_string(rank()) + ": " +
                      std::string(to_string(record.kind)) + " failed: " + one_line(e));
    }
  }

  WorkPtr make(c10::intrusive_ptr<c10d::Work> work, OpRecord record, bool has_future,
               std::function<void()> on_success = {}) {
    std::vector<c10::intrusive_ptr<c10d::Work>> works{std::move(work)};
    return make(std::move(works), std::move(record), has_future, std::move(on_success));
  }
  WorkPtr make(std::vector<c10::intrusive_ptr<c10d::Work>> works, OpRecord record, bool has_future,
               std::function<void()> on_success = {}) {
    return std::make_unique<GlooWork>(std::move(works), std::move(record), &log_, rank(),
                                      group().timeout, has_future, poll_, std::move(on_success));
  }

  c10::intrusive_ptr<c10d::ProcessGroupGloo> pg_;
  std::chrono::microseconds poll_;
};

std::shared_ptr<::gloo::transport::Device> make_device(const GlooOptions& options) {
  if (const char* iface = std::getenv("GLOO_SOCKET_IFNAME"); iface != nullptr && *iface != '\0') {
    std::string name(iface);
    const auto comma = name.find(',');
    if (comma != std::string::npos) name.resize(comma);
    return c10d::ProcessGroupGloo::createDeviceForInterface(name);
  }
  if (!options.hostname.empty())
    return c10d::ProcessGroupGloo::createDeviceForHostname(options.hostname);
  return c10d::ProcessGroupGloo::createDefaultDevice();
}

// c10d logs its failures to stderr through glog before throwing them; the exception is reported
// in one line, so the log lines only repeat it. GLOG_minloglevel, when set, still rules.
void quiet_c10d_logging() {
#ifdef C10_USE_GLOG
  static std::once_flag once;
  std::call_once(once, [] {
    if (std::getenv("GLOG_minloglevel") != nullptr) return;
    if (!::google::IsGoogleLoggingInitialized()) ::google::InitGoogleLogging("zeroplan-exec");
    FLAGS_minloglevel = ::google::GLOG_FATAL;
  });
#endif
}

}  // namespace

std::shared_ptr<Store> Store::open(const Options& o) {
  quiet_c10d_logging();
  const std::string where = o.host + ":" + std::to_string(o.port);
  if (o.host_store && o.port != 0 && !port_is_free(o.port)) {
    throw UserError(ErrorKind::kValue, SourceLocation{"", 0, 0, o.port_key},
                    std::to_string(o.port) +
                        " is already in use on this host; choose a free port (or 0 for any)");
  }
  c10d::TCPStoreOptions t;
  t.port = static_cast<std::uint16_t>(o.port);
  t.isServer = o.host_store;
  t.waitWorkers = false;
  t.timeout = o.timeout;
  try {
    auto store = c10::make_intrusive<c10d::TCPStore>(o.host, t);
    const int port = store->getPort();
    return std::make_shared<C10dStore>(std::move(store), port, o.host);
  } catch (const std::exception& e) {
    if (o.host_store) {
      throw CommError("could not host the rendezvous store on " + where + ": " + one_line(e));
    }
    throw CommError("could not reach the rendezvous store at " + where + " within " +
                    seconds(o.timeout) +
                    " (is rank 0, or the launcher, running there?): " + one_line(e));
  }
}

std::unique_ptr<Communicator> make_gloo_communicator(const std::shared_ptr<Store>& store,
                                                     const GroupSpec& group,
                                                     const GlooOptions& options) {
  auto* c10d_store = dynamic_cast<C10dStore*>(store.get());
  ZP_CHECK(c10d_store != nullptr, "the Gloo communicator needs a store from Store::open");
  ZP_CHECK(group.size >= 1 && group.rank >= 0 && group.rank < group.size, "rank ", group.rank,
           " of a group of ", group.size);
  const std::string prefix =
      "zeroplan/" + group.axis + "/" + std::to_string(c10d_store->next_instance(group.axis));
  try {
    auto gloo_options = c10d::ProcessGroupGloo::Options::create(group.timeout);
    gloo_options->devices.push_back(make_device(options));
    gloo_options->threads = options.threads;
    auto prefixed = c10::make_intrusive<c10d::PrefixStore>(prefix, c10d_store->c10d());
    auto pg =
        c10::make_intrusive<c10d::ProcessGroupGloo>(prefixed, group.rank, group.size, gloo_options);
    // A rank's mesh is up before its peers' are: without this barrier a rank that returns and
    // fails at once closes connections a peer is still setting up, and the peer reports a join
    // failure instead of waiting for the real error.
    pg->barrier()->wait();
    return std::make_unique<GlooCommunicator>(group, std::move(pg), options.poll_for);
  } catch (const std::exception& e) {
    throw CommError("rank " + std::to_string(group.rank) + ": the " + std::to_string(group.size) +
                    " ranks of group '" + group.axis + "' did not all join within " +
                    seconds(group.timeout) + " (a missing or failed peer?): " + one_line(e));
  }
}

}  // namespace zp::exec::comm
