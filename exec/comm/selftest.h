// The communication self-test: every collective of a Communicator once or more on a buffer of an
// awkward size (padded to the group as ZeRO-3 pads partitions), each result checked against a
// value worked out by hand, and the per-operation bytes and times reported. It is what
// `zeroplan-exec --selftest` runs on each rank until the training engine exists.
#pragma once

#include <cstdint>
#include <functional>
#include <iosfwd>
#include <stdexcept>
#include <string_view>
#include <vector>

#include "exec/comm/communicator.h"

namespace zp::exec::comm {

// A result that is not what the collective should have produced.
class SelftestFailure : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Where the self-test's buffers live: host memory here, device memory for NCCL.
class BufferMemory {
 public:
  virtual ~BufferMemory() = default;
  virtual Buffer allocate(std::int64_t numel) = 0;  // fp32
  virtual void release(Buffer buffer) = 0;
  virtual void upload(Buffer to, const std::vector<float>& from) = 0;
  virtual std::vector<float> download(Buffer from) = 0;
};
// Host memory.
std::unique_ptr<BufferMemory> host_memory();

struct SelftestOptions {
  std::int64_t numel = 1000003;  // elements of the flat buffer before padding
  int iterations = 2;
  // Called before each operation with its name (tests and --selftest-fault use it).
  std::function<void(std::string_view op)> before_op;
};

// Runs the sequence, throws SelftestFailure on a wrong result (CommError on a failed one), and
// returns the operations' records.
std::vector<OpRecord> run_selftest(Communicator& comm, BufferMemory& memory,
                                   const SelftestOptions& options);

// A table of the records: operation, label, bytes, milliseconds, GB/s.
void print_records(std::ostream& out, const std::vector<OpRecord>& records);

}  // namespace zp::exec::comm
