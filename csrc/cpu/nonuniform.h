// cpu/nonuniform.h: entry points of the CPU kernels for formats whose values are not a uniform grid per
// binade: posits (qsim/posit.h) and logarithmic numbers (qsim/lns.h). Contiguous arrays; out may alias in.
#pragma once
#include "qsim/lns.h"

namespace qsim {
void posit_cpu_f32(const float* in, float* out, int64_t n, int nbits, int es, int rounding, uint64_t seed, int rand_bits);
void posit_cpu_f64(const double* in, double* out, int64_t n, int nbits, int es, int rounding, uint64_t seed, int rand_bits);
// bfloat16 / float16 tensors (their bit patterns), rounded in float32 and stored back nearest-even.
void posit_cpu_bf16(const uint16_t* in, uint16_t* out, int64_t n, int nbits, int es, int rounding, uint64_t seed,
                    int rand_bits);
void posit_cpu_f16(const uint16_t* in, uint16_t* out, int64_t n, int nbits, int es, int rounding, uint64_t seed,
                   int rand_bits);
void lns_cpu_f32(const float* in, float* out, int64_t n, const LnsParams& p, const uint32_t* table, int rounding,
                 uint64_t seed, int rand_bits);
void lns_cpu_f64(const double* in, double* out, int64_t n, const LnsParams& p, const uint64_t* table, int rounding,
                 uint64_t seed, int rand_bits);
}  // namespace qsim
