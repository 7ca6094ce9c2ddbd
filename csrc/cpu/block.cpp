// cpu/block.cpp: one pass over memory for block formats: OpenMP over blocks, each block's maximum,
// scale and element rounding done while it is in cache (qsim/block.h).
#include "cpu/block.h"

#include <stdexcept>

namespace qsim {
namespace {

template <int MODE, typename T>
void blocks_loop(const T* in, T* out, int64_t rows, int64_t row_length, int64_t block, const BlockParams& b,
                 uint64_t seed, int rand_bits) {
  const int64_t per_row = (row_length + block - 1) / block;
  const int64_t total = rows * per_row;
#pragma omp parallel for schedule(static) if (rows * row_length > (1 << 15))
  for (int64_t k = 0; k < total; ++k) {
    const int64_t start = (k / per_row) * row_length + (k % per_row) * block;
    const int64_t remaining = row_length - (k % per_row) * block;
    const int64_t n = remaining < block ? remaining : block;
    quantize_block<MODE, T>(in + start, out + start, n, start, b, seed, 32 - rand_bits);
  }
}

template <typename T>
void dispatch(int rounding, const T* in, T* out, int64_t rows, int64_t row_length, int64_t block,
              const BlockParams& b, uint64_t seed, int rand_bits) {
  switch (rounding) {
    case kNearest: return blocks_loop<kNearest>(in, out, rows, row_length, block, b, seed, rand_bits);
    case kNearestAway: return blocks_loop<kNearestAway>(in, out, rows, row_length, block, b, seed, rand_bits);
    case kTowardZero: return blocks_loop<kTowardZero>(in, out, rows, row_length, block, b, seed, rand_bits);
    case kUp: return blocks_loop<kUp>(in, out, rows, row_length, block, b, seed, rand_bits);
    case kDown: return blocks_loop<kDown>(in, out, rows, row_length, block, b, seed, rand_bits);
    case kOdd: return blocks_loop<kOdd>(in, out, rows, row_length, block, b, seed, rand_bits);
    case kStochastic: return blocks_loop<kStochastic>(in, out, rows, row_length, block, b, seed, rand_bits);
    default: throw std::invalid_argument("rounding: unknown mode code");
  }
}

}  // namespace

void quantize_blocks_f32(const float* in, float* out, int64_t rows, int64_t row_length, int64_t block,
                         const BlockParams& b, int rounding, uint64_t seed, int rand_bits) {
  dispatch(rounding, in, out, rows, row_length, block, b, seed, rand_bits);
}

void quantize_blocks_f64(const double* in, double* out, int64_t rows, int64_t row_length, int64_t block,
                         const BlockParams& b, int rounding, uint64_t seed, int rand_bits) {
  dispatch(rounding, in, out, rows, row_length, block, b, seed, rand_bits);
}

}  // namespace qsim
