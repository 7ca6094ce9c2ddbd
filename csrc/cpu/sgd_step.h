// cpu/sgd_step.h: one pass of torch.optim.SGD's step with qsim.optim.LowPrecision's roundings, for one
// float32 parameter: what LowPrecision does in ~8 passes and ~8 kernel or torch calls, done span by span
// in cache, with the same arithmetic and random words, so the same bits (qsim/optim_fused.py).
#pragma once
#include "qsim/params.h"

namespace qsim {

// torch.optim.SGD's hyper-parameters, as float32 (torch's float kernels cast scalars to float).
struct SgdStep {
  float lr, momentum, dampening_keep, weight_decay, grad_scale;  // dampening_keep = 1 - dampening
  // Which optional stages run (as torch and LowPrecision decide, in double: `momentum != 0`); new_buffer:
  // the momentum buffer starts as the step (torch's first step).
  bool scale_grad, use_weight_decay, use_momentum, nesterov, new_buffer;
};

// One role's rounding (G, M, Acc or W); params == nullptr leaves that role in float32.
struct RoleRounding {
  const QuantParams* params;
  int rounding;
  uint64_t seed;
  int rand_bits;
};

// param, grad: n floats; buffer: the momentum buffer (unused without momentum); master: the accumulator's
// copy (nullptr without an accumulator format, whose acc is then unused). Steps: grad <- G(grad * grad_scale);
// from w = master or param, the SGD step into param (and buffer); then master <- Acc(param) and
// param <- W(master), or without a master param <- W(param); buffer <- M(buffer).
void sgd_step_f32(float* param, float* grad, float* buffer, float* master, int64_t n, const SgdStep& s,
                  const RoleRounding& g, const RoleRounding& m, const RoleRounding& acc, const RoleRounding& w);

}  // namespace qsim
