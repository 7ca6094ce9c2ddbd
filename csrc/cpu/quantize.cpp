// cpu/quantize.cpp: one OpenMP pass over contiguous memory per call, reading x, rounding with
// rounding.h and writing y. Stochastic rounding draws Philox words in registers, one call per four
// elements, keyed by the element index: results do not depend on the thread count.
#include "cpu/quantize.h"

#include <stdexcept>

#include "qsim/rounding.h"

namespace qsim {
namespace {

constexpr int64_t kParallelThreshold = 1 << 15;  // below this, threads cost more than they save
constexpr int kBlock = 512;                       // elements per block of random words (a multiple of 4)

// ELEMENT is quantize_value or quantize_wrap, chosen once per call so the common loop has no branch.
template <int MODE, typename T, T (*ELEMENT)(T, const QuantParams&, uint32_t, int)>
void quantize_loop(const T* in, T* out, int64_t n, const QuantParams p, uint64_t seed, int rand_bits) {
  const int rand_shift = 32 - rand_bits;
  if (MODE == kStochastic) {
    // Blocks of kBlock elements: first the Philox words of the block's groups (one call per four
    // elements), then the rounding; both loops vectorise.
    const int64_t blocks = (n + kBlock - 1) / kBlock;
#pragma omp parallel for schedule(static) if (n > kParallelThreshold)
    for (int64_t b = 0; b < blocks; ++b) {
      uint32_t words[kBlock];
      const int64_t first_group = b * (kBlock / 4);
      for (int g = 0; g < kBlock / 4; ++g) random_words(seed, (uint64_t)(first_group + g), words + 4 * g);
      const int64_t start = b * kBlock, count = n - start < kBlock ? n - start : kBlock;
      for (int64_t i = 0; i < count; ++i) out[start + i] = ELEMENT(in[start + i], p, words[i], rand_shift);
    }
  } else {
#pragma omp parallel for simd schedule(static) if (n > kParallelThreshold)
    for (int64_t i = 0; i < n; ++i) out[i] = ELEMENT(in[i], p, 0u, rand_shift);
  }
}

template <int MODE, typename T>
void dispatch_overflow(const T* in, T* out, int64_t n, const QuantParams& p, uint64_t seed, int rand_bits) {
  if (p.overflow == kWrap) quantize_loop<MODE, T, quantize_wrap<MODE, T>>(in, out, n, p, seed, rand_bits);
  else quantize_loop<MODE, T, quantize_value<MODE, T>>(in, out, n, p, seed, rand_bits);
}

template <typename T>
void dispatch_mode(int rounding, const T* in, T* out, int64_t n, const QuantParams& p, uint64_t seed, int rand_bits) {
  switch (rounding) {
    case kNearest: return dispatch_overflow<kNearest>(in, out, n, p, seed, rand_bits);
    case kNearestAway: return dispatch_overflow<kNearestAway>(in, out, n, p, seed, rand_bits);
    case kTowardZero: return dispatch_overflow<kTowardZero>(in, out, n, p, seed, rand_bits);
    case kUp: return dispatch_overflow<kUp>(in, out, n, p, seed, rand_bits);
    case kDown: return dispatch_overflow<kDown>(in, out, n, p, seed, rand_bits);
    case kOdd: return dispatch_overflow<kOdd>(in, out, n, p, seed, rand_bits);
    case kStochastic: return dispatch_overflow<kStochastic>(in, out, n, p, seed, rand_bits);
    default: throw std::invalid_argument("rounding: unknown mode code");
  }
}

}  // namespace

void quantize_cpu_f32(const float* in, float* out, int64_t n, const QuantParams& p, int rounding, uint64_t seed, int rand_bits) {
  dispatch_mode(rounding, in, out, n, p, seed, rand_bits);
}

void quantize_cpu_f64(const double* in, double* out, int64_t n, const QuantParams& p, int rounding, uint64_t seed, int rand_bits) {
  dispatch_mode(rounding, in, out, n, p, seed, rand_bits);
}

}  // namespace qsim
