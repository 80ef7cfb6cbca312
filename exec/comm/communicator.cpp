#include "exec/comm/communicator.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/util/error.h"

namespace zp::exec::comm {

namespace {
void check_same_type(const Buffer& a, const Buffer& b, std::string_view op) {
  ZP_CHECK(a.dtype == b.dtype && a.device == b.device, op, ": input ", to_string(a.dtype),
           " and output ", to_string(b.dtype), " differ in type or device");
}
}  // namespace

OpRecord Communicator::begin(CommKind kind, std::int64_t bytes, int peer, std::string_view label) {
  OpRecord r;
  r.kind = kind;
  r.seq = next_seq_++;
  r.bytes = bytes;
  r.peer = peer;
  r.label = std::string(label);
  r.start_ns = wall_clock_ns();
  return r;
}

bool Communicator::is_in_place_chunk(const Buffer& input, const Buffer& output) const {
  return output.data == input.slice(rank() * output.numel, output.numel).data;
}

WorkPtr Communicator::all_gather(Buffer input, Buffer output, std::string_view label) {
  check_same_type(input, output, "all_gather");
  ZP_CHECK(output.numel == input.numel * size(), "all_gather: output of ", output.numel,
           " elements for ", size(), " ranks of ", input.numel);
  return do_all_gather(input, output, begin(CommKind::kAllGather, output.bytes(), -1, label));
}

WorkPtr Communicator::reduce_scatter(Buffer input, Buffer output, ReduceOp op,
                                     std::string_view label) {
  check_same_type(input, output, "reduce_scatter");
  ZP_CHECK(input.numel == output.numel * size(), "reduce_scatter: input of ", input.numel,
           " elements for ", size(), " ranks of ", output.numel);
  const auto* in = static_cast<const char*>(input.data);
  const auto* out = static_cast<const char*>(output.data);
  ZP_CHECK(
      is_in_place_chunk(input, output) || out + output.bytes() <= in || in + input.bytes() <= out,
      "reduce_scatter: the output overlaps the input but is not this rank's chunk of it");
  return do_reduce_scatter(input, output, op,
                           begin(CommKind::kReduceScatter, input.bytes(), -1, label));
}

WorkPtr Communicator::all_reduce(Buffer data, ReduceOp op, std::string_view label) {
  return do_all_reduce(data, op, begin(CommKind::kAllReduce, data.bytes(), -1, label));
}

WorkPtr Communicator::broadcast(Buffer data, int root, std::string_view label) {
  ZP_CHECK(root >= 0 && root < size(), "broadcast root ", root, " in a group of ", size());
  return do_broadcast(data, root, begin(CommKind::kBroadcast, data.bytes(), root, label));
}

WorkPtr Communicator::send(Buffer data, int peer, int tag, std::string_view label) {
  ZP_CHECK(peer >= 0 && peer < size() && peer != rank(), "send to rank ", peer, " from ", rank(),
           " in a group of ", size());
  return do_send(data, peer, tag, begin(CommKind::kSend, data.bytes(), peer, label));
}

WorkPtr Communicator::recv(Buffer data, int peer, int tag, std::string_view label) {
  ZP_CHECK(peer >= 0 && peer < size() && peer != rank(), "recv from rank ", peer, " on ", rank(),
           " in a group of ", size());
  return do_recv(data, peer, tag, begin(CommKind::kRecv, data.bytes(), peer, label));
}

void Communicator::barrier() {
  do_barrier(begin(CommKind::kBarrier, 0, -1, "barrier"));
}

bool port_is_free(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return false;
  // SO_REUSEADDR: a port held only by TIME_WAIT connections of a finished run is free; one with a
  // listener is not.
  const int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_ANY);
  addr.sin_port = htons(static_cast<std::uint16_t>(port));
  const bool ok = ::bind(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) == 0 &&
                  ::listen(fd, 1) == 0;
  ::close(fd);
  return ok;
}

}  // namespace zp::exec::comm
