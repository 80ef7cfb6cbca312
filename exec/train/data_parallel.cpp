#include "exec/train/data_parallel.h"

#include <ATen/ATen.h>

#include "core/util/error.h"
#include "exec/runtime/tensor_buffer.h"
#include "exec/train/fused_optimizer.h"

namespace zp::exec {

struct DataParallelTrainer::Impl {
  LmModel& model;
  comm::Communicator& group;
  FusedOptimizer optimizer;
};

DataParallelTrainer::DataParallelTrainer(LmModel& model, comm::Communicator& group,
                                         const OptimizerSpec& optimizer)
    : impl_(std::make_unique<Impl>(Impl{model, group, FusedOptimizer(optimizer)})) {}

DataParallelTrainer::~DataParallelTrainer() = default;

DataParallelStats DataParallelTrainer::step(const std::vector<TokenBatch>& micro_batches) {
  ZP_CHECK(!micro_batches.empty(), "a step needs at least one micro-batch");
  DataParallelStats stats;
  const std::int64_t start = comm::wall_clock_ns();
  // torch::optim's zero_grad: gradients kept, zeroed in place.
  for (const at::Tensor& p : impl_->model.parameters()) {
    at::Tensor& g = p.mutable_grad();
    if (g.defined()) g.detach_().zero_();
  }
  const double scale = 1.0 / static_cast<double>(micro_batches.size());
  for (const TokenBatch& batch : micro_batches) {
    const at::Tensor loss =
        impl_->model.loss(token_tensor(batch).to(impl_->model.parameters().front().device()));
    stats.loss += loss.item<double>() * scale;
    (loss * scale).backward();
  }
  std::vector<at::Tensor> grads;
  for (const at::Tensor& p : impl_->model.parameters())
    grads.push_back(p.grad().reshape(-1));
  at::Tensor flat = at::cat(grads);
  flat.div_(static_cast<double>(impl_->group.size()));
  if (impl_->group.size() > 1) {
    const std::int64_t begin = comm::wall_clock_ns();
    impl_->group.all_reduce(buffer_of(flat), comm::ReduceOp::kSum, "gradients")->wait();
    stats.comm_wait_ns = comm::wall_clock_ns() - begin;
  }
  std::int64_t at = 0;
  for (const at::Tensor& p : impl_->model.parameters()) {
    at::Tensor& g = p.mutable_grad();
    g.copy_(flat.narrow(0, at, g.numel()).view_as(g));
    at += g.numel();
  }
  // `grads` are views of the gradients just overwritten.
  impl_->optimizer.step(impl_->model.parameters(), grads);
  stats.step_ns = comm::wall_clock_ns() - start;
  return stats;
}

}  // namespace zp::exec
