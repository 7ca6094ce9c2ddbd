// cpu/block.cpp: block formats in one pass over memory. Each block's maximum, scale and element
// rounding happen while the block is in cache. Many blocks: OpenMP over blocks. Few large blocks (one
// exponent per tensor or per slice): blocks in turn, each with a parallel maximum and a parallel
// element loop. Elements go in chunks of kChunk whose random words are drawn first, so loops vectorise.
#include "cpu/block.h"

#include <omp.h>

#include <stdexcept>

#include "cpu/random.h"

namespace qsim {
namespace {

constexpr int64_t kChunk = 512;  // elements per chunk of random words (a multiple of 4)
constexpr int64_t kLargeBlock = 1 << 16;

// f(0), ..., f(count - 1), on all threads or on this one (a parallel region, even one switched off by
// an if clause, costs more than a small block's work).
template <typename F>
void for_each(int64_t count, bool parallel, F f) {
  if (parallel) {
#pragma omp parallel for schedule(static)
    for (int64_t c = 0; c < count; ++c) f(c);
  } else {
    for (int64_t c = 0; c < count; ++c) f(c);
  }
}

template <typename T>
void block_maximum(const T* in, int64_t n, bool parallel, T& amax, bool& finite) {
  const int64_t chunks = (n + kChunk - 1) / kChunk;
  T m = 0;
  int bad = 0;
  auto chunk_maximum = [&](int64_t c, T& chunk_max, int& chunk_bad) {
    const int64_t start = c * kChunk, stop = n - start < kChunk ? n : start + kChunk;
#pragma omp simd reduction(max : chunk_max) reduction(| : chunk_bad)
    for (int64_t i = start; i < stop; ++i) {
      const T a = in[i] < 0 ? -in[i] : in[i];
      chunk_bad |= !is_finite(a);
      chunk_max = a > chunk_max ? a : chunk_max;
    }
  };
  if (parallel) {
#pragma omp parallel for schedule(static) reduction(max : m) reduction(| : bad)
    for (int64_t c = 0; c < chunks; ++c) chunk_maximum(c, m, bad);
  } else {
    for (int64_t c = 0; c < chunks; ++c) chunk_maximum(c, m, bad);
  }
  amax = m;
  finite = !bad;
}

template <int MODE, typename T>
void block_elements(const T* in, T* out, int64_t n, int64_t index0, const BlockScaling<T>& s, uint64_t seed,
                    int rand_shift, bool parallel) {
  for_each((n + kChunk - 1) / kChunk, parallel, [&](int64_t c) {
    const int64_t start = c * kChunk, count = n - start < kChunk ? n - start : kChunk;
    uint32_t words[kChunk + 4];
    if (MODE == kStochastic) {
      // Words of the groups of 4 (by global index) that this chunk touches, shifted so that word i
      // belongs to element index0 + start + i.
      const int64_t first = index0 + start, offset = first & 3;
      random_words_run(seed, (uint64_t)(first / 4), (int)((count + offset + 3) / 4), words);
      for (int64_t i = 0; i < count; ++i) words[i] = words[i + offset];
    }
    const T* x = in + start;
    T* y = out + start;
    if (s.nan) {
      for (int64_t i = 0; i < count; ++i) y[i] = quiet_nan<T>();
    } else if (s.scale == (T)1) {  // a power-of-two scale, folded into the grid
#pragma omp simd
      for (int64_t i = 0; i < count; ++i)
        y[i] = quantize_value<MODE, T>(x[i], s.grid, MODE == kStochastic ? words[i] : 0u, rand_shift);
    } else {  // quantize_in_block's division by a scale, with its branches hoisted so the loop vectorises
      const T scale = s.scale, divisor = s.scale > (T)0 ? s.scale : (T)1;
      const uint32_t positive = (uint32_t)(s.scale > (T)0);
      const QuantParams grid = s.grid;
#pragma omp simd
      for (int64_t i = 0; i < count; ++i)
        y[i] = quantize_value<MODE, T>(select(positive, x[i] / divisor, (T)0), grid, MODE == kStochastic ? words[i] : 0u, rand_shift) * scale;
    }
  });
}

template <int MODE, typename T>
void one_block(const T* in, T* out, int64_t n, int64_t index0, const BlockParams& b, uint64_t seed, int rand_shift,
               bool parallel) {
  T amax;
  bool finite;
  block_maximum(in, n, parallel, amax, finite);
  block_elements<MODE, T>(in, out, n, index0, block_scaling(amax, finite, b), seed, rand_shift, parallel);
}

// Blocks of at most kSmallBlock elements, kChunk / block consecutive blocks at a time (consecutive blocks
// are contiguous in memory, across rows too): (1) each block's maximum and scaling, (2) those spread to
// per-element arrays (grid exponent, limits, scale), (3) one flat vectorised loop over the chunk's
// elements, with no per-block loop overhead.
constexpr int64_t kSmallBlock = 64;

template <int MODE, typename T>
void small_blocks(const T* in, T* out, int64_t rows, int64_t row_length, int64_t block, const BlockParams& b,
                  uint64_t seed, int rand_shift) {
  const int64_t per_row = (row_length + block - 1) / block;
  const int64_t total = rows * per_row, per_chunk = kChunk / block;
  const int64_t chunks = (total + per_chunk - 1) / per_chunk;
  const QuantParams grid = b.element;
  const bool divides = b.rule == kScaleFormat;
#pragma omp parallel for schedule(static) if (rows * row_length > (1 << 15))
  for (int64_t c = 0; c < chunks; ++c) {
    const int64_t k0 = c * per_chunk, k1 = total - k0 < per_chunk ? total : k0 + per_chunk;
    const int64_t first = (k0 / per_row) * row_length + (k0 % per_row) * block;
    int32_t emin[kChunk];
    uint32_t nan[kChunk], positive[kChunk];
    T limit_pos[kChunk], limit_neg[kChunk], divisor[kChunk], scale[kChunk];
    // The passes are apart so that the blocks' independent reductions and scalings overlap in the core.
    const int64_t blocks = k1 - k0;
    int64_t length[kChunk];
    T amax[kChunk];
    int bad[kChunk];
    int64_t count = 0;
    for (int64_t j = 0; j < blocks; ++j) {
      const int64_t remaining = row_length - ((k0 + j) % per_row) * block;
      length[j] = remaining < block ? remaining : block;
      const T* x = in + first + count;
      T m = 0;
      int f = 0;
#pragma omp simd reduction(max : m) reduction(| : f)
      for (int64_t i = 0; i < length[j]; ++i) {
        const T a = x[i] < 0 ? -x[i] : x[i];
        f |= !is_finite(a);
        m = a > m ? a : m;
      }
      amax[j] = m;
      bad[j] = f;
      count += length[j];
    }
    if (divides) {  // the scales of all the chunk's blocks in one vectorised loop (block_scaling's arithmetic)
      T block_scale[kChunk];
      const QuantParams scale_grid = b.scale;
      const double element_max = b.element_max, tensor_scale = b.tensor_scale;
#pragma omp simd
      for (int64_t j = 0; j < blocks; ++j) block_scale[j] = format_scale(amax[j], scale_grid, element_max, tensor_scale);
      const T lp = max_pos<T>(grid), ln = max_neg<T>(grid);
      for (int64_t j = 0, i0 = 0; j < blocks; i0 += length[j], ++j) {
        const T sc = block_scale[j], dv = sc > (T)0 ? sc : (T)1;
        const uint32_t pos = (uint32_t)(sc > (T)0), is_nan = (uint32_t)(bad[j] != 0);
        for (int64_t i = i0; i < i0 + length[j]; ++i) {
          limit_pos[i] = lp; limit_neg[i] = ln; nan[i] = is_nan;
          scale[i] = sc; divisor[i] = dv; positive[i] = pos;
        }
      }
    } else {  // the shifted grids of all the chunk's blocks in one vectorised loop (block_scaling's arithmetic)
      int32_t block_emin[kChunk];
      T block_pos[kChunk], block_neg[kChunk];
      const BlockParams params = b;
#pragma omp simd
      for (int64_t j = 0; j < blocks; ++j) {
        const QuantParams shifted = shift_grid(grid, scale_exponent(amax[j], params));
        block_emin[j] = shifted.emin;
        block_pos[j] = max_pos<T>(shifted);
        block_neg[j] = max_neg<T>(shifted);
      }
      for (int64_t j = 0, i0 = 0; j < blocks; i0 += length[j], ++j) {
        const T lp = block_pos[j], ln = block_neg[j];
        const uint32_t is_nan = (uint32_t)(bad[j] != 0);
        const int32_t e = block_emin[j];
        for (int64_t i = i0; i < i0 + length[j]; ++i) {
          limit_pos[i] = lp; limit_neg[i] = ln; nan[i] = is_nan; emin[i] = e;
        }
      }
    }
    uint32_t words[kChunk + 4];
    if (MODE == kStochastic) {  // words of the groups of 4 (by global index) this chunk touches
      const int64_t offset = first & 3;
      random_words_run(seed, (uint64_t)(first / 4), (int)((count + offset + 3) / 4), words);
      for (int64_t i = 0; i < count; ++i) words[i] = words[i + offset];
    }
    const T* x = in + first;
    T* y = out + first;
    if (divides) {
#pragma omp simd
      for (int64_t i = 0; i < count; ++i) {
        const T v = select(positive[i], x[i] / divisor[i], (T)0);
        const T r = quantize_on_grid<MODE, T>(v, grid, grid.emin, limit_pos[i], limit_neg[i],
                                              MODE == kStochastic ? words[i] : 0u, rand_shift) * scale[i];
        y[i] = select(nan[i], quiet_nan<T>(), r);
      }
    } else {
#pragma omp simd
      for (int64_t i = 0; i < count; ++i) {
        const T r = quantize_on_grid<MODE, T>(x[i], grid, emin[i], limit_pos[i], limit_neg[i],
                                              MODE == kStochastic ? words[i] : 0u, rand_shift);
        y[i] = select(nan[i], quiet_nan<T>(), r);
      }
    }
  }
}

template <int MODE, typename T>
void blocks_loop(const T* in, T* out, int64_t rows, int64_t row_length, int64_t block, const BlockParams& b,
                 uint64_t seed, int rand_bits) {
  if (block <= kSmallBlock) return small_blocks<MODE, T>(in, out, rows, row_length, block, b, seed, 32 - rand_bits);
  const int64_t per_row = (row_length + block - 1) / block;
  const int64_t total = rows * per_row;
  const bool few_large = block >= kLargeBlock && total < 4 * omp_get_max_threads();
#pragma omp parallel for schedule(static) if (!few_large && rows * row_length > (1 << 15))
  for (int64_t k = 0; k < total; ++k) {
    const int64_t start = (k / per_row) * row_length + (k % per_row) * block;
    const int64_t remaining = row_length - (k % per_row) * block;
    one_block<MODE, T>(in + start, out + start, remaining < block ? remaining : block, start, b, seed, 32 - rand_bits,
                       few_large);
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
