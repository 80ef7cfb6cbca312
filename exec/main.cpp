// zeroplan-exec: the real-execution worker. It is a program of its own so that zeroplan's other
// commands do not pay for loading libtorch, CUDA and NCCL (most of a second) on every start.
#include <cstring>
#include <iostream>

#include "exec/runtime/backend_info.h"

int main(int argc, char** argv) {
  if (argc == 2 &&
      (std::strcmp(argv[1], "--version") == 0 || std::strcmp(argv[1], "--help") == 0)) {
    std::cout << "zeroplan-exec " << ZEROPLAN_VERSION << "\n"
              << zp::exec::describe(zp::exec::backend_info()) << "\n";
    return 0;
  }
  std::cerr << "zeroplan-exec: usage: zeroplan-exec --version\n";
  return 2;
}
