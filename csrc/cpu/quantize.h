// cpu/quantize.h: entry points of the CPU kernels (contiguous arrays, out may alias in).
#pragma once
#include "qsim/params.h"

namespace qsim {
void quantize_cpu_f32(const float* in, float* out, int64_t n, const QuantParams& p, int rounding, uint64_t seed, int rand_bits);
// Elements first, ..., first + n - 1 of a float32 tensor (first a multiple of 4), with the random words they
// draw in a call over the whole tensor: a tensor rounded span by span gets that call's bits (cpu/sgd_step.cpp).
void quantize_span_f32(const float* in, float* out, int64_t n, int64_t first, const QuantParams& p, int rounding,
                       uint64_t seed, int rand_bits);
void quantize_cpu_f64(const double* in, double* out, int64_t n, const QuantParams& p, int rounding, uint64_t seed, int rand_bits);
// bfloat16 / float16 tensors (their bit patterns), rounded in float32 and stored back nearest-even.
void quantize_cpu_bf16(const uint16_t* in, uint16_t* out, int64_t n, const QuantParams& p, int rounding, uint64_t seed,
                       int rand_bits);
void quantize_cpu_f16(const uint16_t* in, uint16_t* out, int64_t n, const QuantParams& p, int rounding, uint64_t seed,
                      int rand_bits);
}  // namespace qsim
