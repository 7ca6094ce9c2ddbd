// cpu/sgd_step.cpp: LowPrecision(SGD)'s step in one pass (cpu/sgd_step.h). Each span of kBlock elements goes
// through every stage while it is in L1; the roundings are quantize_span_f32, the kernel of qsim.quantize
// on that span with the random words of its place in the tensor. The arithmetic is torch's: a multiply for
// mul_, one fused multiply-add for each add with alpha (torch's vectorised add is fmadd(other, alpha, self),
// also on the tail of a tensor).
#include "cpu/sgd_step.h"

#include <cmath>

#include "cpu/loops.h"
#include "cpu/quantize.h"

namespace qsim {
namespace {

void round_span(const RoleRounding& r, const float* in, float* out, int64_t count, int64_t first) {
  quantize_span_f32(in, out, count, first, *r.params, r.rounding, r.seed, r.rand_bits);
}

}  // namespace

void sgd_step_f32(float* param, float* grad, float* buffer, float* master, int64_t n, const SgdStep& s,
                  const RoleRounding& g, const RoleRounding& m, const RoleRounding& acc, const RoleRounding& w) {
  const int64_t spans = (n + kBlock - 1) / kBlock;
  over_threads(spans, n > kParallelThreshold, [&](int64_t s0, int64_t s1) {
    float step[kBlock];
    for (int64_t span = s0; span < s1; ++span) {
      const int64_t first = span * kBlock, count = n - first < kBlock ? n - first : kBlock;
      float *p = param + first, *gr = grad + first, *b = s.use_momentum ? buffer + first : nullptr;
      const float* from = master != nullptr ? master + first : p;
      if (s.scale_grad)
        for (int64_t i = 0; i < count; ++i) gr[i] *= s.grad_scale;
      if (g.params != nullptr) round_span(g, gr, gr, count, first);
      for (int64_t i = 0; i < count; ++i) step[i] = s.use_weight_decay ? std::fma(from[i], s.weight_decay, gr[i]) : gr[i];
      if (s.use_momentum) {
        for (int64_t i = 0; i < count; ++i) {
          b[i] = s.new_buffer ? step[i] : std::fma(step[i], s.dampening_keep, b[i] * s.momentum);
          step[i] = s.nesterov ? std::fma(b[i], s.momentum, step[i]) : b[i];
        }
      }
      for (int64_t i = 0; i < count; ++i) p[i] = std::fma(step[i], -s.lr, from[i]);
      if (master != nullptr) {  // (a master exists only with an accumulator format)
        round_span(acc, p, master + first, count, first);
        if (w.params != nullptr) round_span(w, master + first, p, count, first);
        else for (int64_t i = 0; i < count; ++i) p[i] = master[first + i];
      } else if (w.params != nullptr) {
        round_span(w, p, p, count, first);
      }
      if (s.use_momentum && m.params != nullptr) round_span(m, b, b, count, first);
    }
  });
}

}  // namespace qsim
