// cpu/block.h: entry points of the CPU block-format kernels. The data is `rows` rows of `row_length`
// contiguous elements; each row is cut into blocks of `block` elements (the last one may be shorter).
#pragma once
#include "qsim/block.h"

namespace qsim {
void quantize_blocks_f32(const float* in, float* out, int64_t rows, int64_t row_length, int64_t block,
                         const BlockParams& b, int rounding, uint64_t seed, int rand_bits);
void quantize_blocks_f64(const double* in, double* out, int64_t rows, int64_t row_length, int64_t block,
                         const BlockParams& b, int rounding, uint64_t seed, int rand_bits);
// bfloat16 / float16 tensors (their bit patterns), rounded in float32 and stored back nearest-even.
void quantize_blocks_bf16(const uint16_t* in, uint16_t* out, int64_t rows, int64_t row_length, int64_t block,
                          const BlockParams& b, int rounding, uint64_t seed, int rand_bits);
void quantize_blocks_f16(const uint16_t* in, uint16_t* out, int64_t rows, int64_t row_length, int64_t block,
                         const BlockParams& b, int rounding, uint64_t seed, int rand_bits);

// The largest |in[i]| (+0 for no elements), or inf where there is an inf, or a NaN where there is a NaN:
// the per-tensor maximum of NVFP4's tensor scale, on all threads, in one read of memory.
float max_magnitude_f32(const float* in, int64_t n);
double max_magnitude_f64(const double* in, int64_t n);
float max_magnitude_bf16(const uint16_t* in, int64_t n);
float max_magnitude_f16(const uint16_t* in, int64_t n);
}  // namespace qsim
