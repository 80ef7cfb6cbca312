#include "exec/train/fused_optimizer.h"

#include <algorithm>
#include <cmath>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include "core/util/error.h"

namespace zp::exec {
namespace {

// Elements per task of at::parallel_for: a step is memory-bound, so a task should be large enough
// to stream (well past a cache line per tensor) yet leave work for every intra-op thread.
constexpr std::int64_t kGrain = std::int64_t{1} << 15;
// Elements per piece of torch's element-wise chain (where the one-pass loop does not run).
constexpr std::int64_t kPiece = std::int64_t{1} << 14;

bool takes_fused_loop(const at::Tensor& p, const at::Tensor& g) {
  return p.device().is_cpu() && g.device().is_cpu() && p.scalar_type() == at::kFloat &&
         g.scalar_type() == at::kFloat && p.is_contiguous() && g.is_contiguous();
}

struct AdamWScalars {
  float decay;  // 1 - lr * weight_decay
  float beta1, one_minus_beta1, beta2, one_minus_beta2;
  float sqrt_bias_correction2;
  float eps;
  float neg_step_size;  // -lr / bias_correction1
};

void adamw_fused(float* p, const float* g, float* m, float* v, std::int64_t n,
                 const AdamWScalars& s, bool decays) {
  at::parallel_for(0, n, kGrain, [&](std::int64_t begin, std::int64_t end) {
    for (std::int64_t i = begin; i < end; ++i) {
      float param = decays ? p[i] * s.decay : p[i];
      const float grad = g[i];
      const float avg = m[i] * s.beta1 + s.one_minus_beta1 * grad;
      const float avg_sq = v[i] * s.beta2 + s.one_minus_beta2 * grad * grad;
      const float denom = std::sqrt(avg_sq) / s.sqrt_bias_correction2 + s.eps;
      param += s.neg_step_size * (avg / denom);
      m[i] = avg;
      v[i] = avg_sq;
      p[i] = param;
    }
  });
}

void sgd_fused(float* p, const float* g, float* buf, std::int64_t n, float weight_decay,
               float momentum, bool first, float neg_lr) {
  at::parallel_for(0, n, kGrain, [&](std::int64_t begin, std::int64_t end) {
    for (std::int64_t i = begin; i < end; ++i) {
      float d = weight_decay != 0.0F ? g[i] + weight_decay * p[i] : g[i];
      if (buf != nullptr) {
        d = first ? d : buf[i] * momentum + d;
        buf[i] = d;
      }
      p[i] += neg_lr * d;
    }
  });
}

}  // namespace

FusedOptimizer::FusedOptimizer(const OptimizerSpec& spec) : spec_(spec) {}

void FusedOptimizer::step(const std::vector<at::Tensor>& params,
                          const std::vector<at::Tensor>& grads) {
  ZP_CHECK(params.size() == grads.size(), params.size(), " parameters but ", grads.size(),
           " gradients");
  ZP_CHECK(first_.empty() || first_.size() == params.size(), "optimizer made for ", first_.size(),
           " parameters, stepped with ", params.size());
  first_.resize(params.size());
  second_.resize(params.size());
  steps_.resize(params.size(), 0);
  const at::NoGradGuard no_grad;
  const OptimizerSpec& o = spec_;
  const bool adamw = o.kind == OptimizerKind::kAdamW;

  for (std::size_t i = 0; i < params.size(); ++i) {
    at::Tensor p = params[i].detach();
    const at::Tensor& grad = grads[i];
    if (!grad.defined()) continue;
    // Steps are counted per parameter, as torch::optim counts them: one skipped for want of a
    // gradient keeps its bias correction behind.
    const double step = static_cast<double>(++steps_[i]);
    const double bias_correction1 = 1.0 - std::pow(o.beta1, step);
    const double bias_correction2 = 1.0 - std::pow(o.beta2, step);
    ZP_CHECK(grad.numel() == p.numel(), "parameter ", i, " has ", p.numel(),
             " elements, its gradient ", grad.numel());
    const at::Tensor g = grad.detach();
    // State is made on a parameter's first step, zeroed as torch::optim makes it (SGD's momentum
    // buffer starts as the first update itself).
    const bool fresh = !first_[i].defined();
    if (fresh && adamw) {
      first_[i] = at::zeros_like(p, at::MemoryFormat::Contiguous);
      second_[i] = at::zeros_like(p, at::MemoryFormat::Contiguous);
    } else if (fresh && o.momentum != 0.0) {
      first_[i] = at::empty_like(p, at::MemoryFormat::Contiguous);
    }

    if (takes_fused_loop(p, g)) {
      if (adamw) {
        const AdamWScalars s{static_cast<float>(1.0 - o.lr * o.weight_decay),
                             static_cast<float>(o.beta1),
                             static_cast<float>(1.0 - o.beta1),
                             static_cast<float>(o.beta2),
                             static_cast<float>(1.0 - o.beta2),
                             static_cast<float>(std::sqrt(bias_correction2)),
                             static_cast<float>(o.eps),
                             static_cast<float>(-o.lr / bias_correction1)};
        adamw_fused(p.data_ptr<float>(), g.data_ptr<float>(), first_[i].data_ptr<float>(),
                    second_[i].data_ptr<float>(), p.numel(), s, o.weight_decay != 0.0);
      } else {
        sgd_fused(p.data_ptr<float>(), g.data_ptr<float>(),
                  first_[i].defined() ? first_[i].data_ptr<float>() : nullptr, p.numel(),
                  static_cast<float>(o.weight_decay), static_cast<float>(o.momentum), fresh,
                  static_cast<float>(-o.lr));
      }
      continue;
    }

    // Elsewhere (a GPU, other dtypes): torch's element-wise chain, the same arithmetic, over
    // pieces, so that its temporaries (AdamW's denominator) are a piece's size, not the tensor's.
    const at::Tensor flat_p = p.view(-1), flat_g = g.reshape(-1);
    for (std::int64_t begin = 0; begin < p.numel(); begin += kPiece) {
      const std::int64_t len = std::min(kPiece, p.numel() - begin);
      at::Tensor pp = flat_p.narrow(0, begin, len);
      const at::Tensor gp = flat_g.narrow(0, begin, len);
      at::Tensor first =
          first_[i].defined() ? first_[i].view(-1).narrow(0, begin, len) : at::Tensor();
      if (adamw) {
        at::Tensor second = second_[i].view(-1).narrow(0, begin, len);
        if (o.weight_decay != 0.0) pp.mul_(1.0 - o.lr * o.weight_decay);
        first.mul_(o.beta1).add_(gp, 1.0 - o.beta1);
        second.mul_(o.beta2).addcmul_(gp, gp, 1.0 - o.beta2);
        const at::Tensor denom = (second.sqrt() / std::sqrt(bias_correction2)).add_(o.eps);
        pp.addcdiv_(first, denom, -o.lr / bias_correction1);
      } else {
        at::Tensor d = o.weight_decay != 0.0 ? gp.add(pp, o.weight_decay) : gp;
        if (first.defined()) {
          if (fresh) {
            first.copy_(d);
          } else {
            first.mul_(o.momentum).add_(d);
          }
          d = first;
        }
        pp.add_(d, -o.lr);
      }
    }
  }
}

}  // namespace zp::exec
