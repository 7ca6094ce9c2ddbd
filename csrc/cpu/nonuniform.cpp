// cpu/nonuniform.cpp: the OpenMP loops for posits and logarithmic numbers: one pass over contiguous
// memory, the element arithmetic from qsim/posit.h and qsim/lns.h. As in cpu/quantize.cpp, stochastic
// rounding takes word i % 4 of random_words(seed, i / 4) for element i, so results depend on the seed
// only, not on the thread count.
#include "cpu/nonuniform.h"

#include <stdexcept>
#include <type_traits>

namespace qsim {
namespace {

constexpr int64_t kParallelThreshold = 1 << 15;  // below this, threads cost more than they save
constexpr int kBlock = 512;                       // elements per block of random words (a multiple of 4)

// out[i] = element(MODE, in[i], random word of i); `element` is a generic lambda taking the mode as a
// std::integral_constant, so each mode compiles to its own loop.
template <int MODE, typename T, typename Element>
void round_loop(const T* in, T* out, int64_t n, uint64_t seed, int rand_bits, const Element& element) {
  const std::integral_constant<int, MODE> mode;
  const int rand_shift = 32 - rand_bits;
  if (MODE == kStochastic) {
    const int64_t blocks = (n + kBlock - 1) / kBlock;
#pragma omp parallel for schedule(static) if (n > kParallelThreshold)
    for (int64_t b = 0; b < blocks; ++b) {
      uint32_t words[kBlock];
      const int64_t first_group = b * (kBlock / 4);
      for (int g = 0; g < kBlock / 4; ++g) random_words(seed, (uint64_t)(first_group + g), words + 4 * g);
      const int64_t start = b * kBlock, count = n - start < kBlock ? n - start : kBlock;
      for (int64_t i = 0; i < count; ++i) out[start + i] = element(mode, in[start + i], words[i], rand_shift);
    }
  } else {
#pragma omp parallel for simd schedule(static) if (n > kParallelThreshold)
    for (int64_t i = 0; i < n; ++i) out[i] = element(mode, in[i], 0u, rand_shift);
  }
}

template <typename T, typename Element>
void dispatch_mode(int rounding, const T* in, T* out, int64_t n, uint64_t seed, int rand_bits, const Element& element) {
  switch (rounding) {
    case kNearest: return round_loop<kNearest>(in, out, n, seed, rand_bits, element);
    case kNearestAway: return round_loop<kNearestAway>(in, out, n, seed, rand_bits, element);
    case kTowardZero: return round_loop<kTowardZero>(in, out, n, seed, rand_bits, element);
    case kUp: return round_loop<kUp>(in, out, n, seed, rand_bits, element);
    case kDown: return round_loop<kDown>(in, out, n, seed, rand_bits, element);
    case kOdd: return round_loop<kOdd>(in, out, n, seed, rand_bits, element);
    case kStochastic: return round_loop<kStochastic>(in, out, n, seed, rand_bits, element);
    default: throw std::invalid_argument("rounding: unknown mode code");
  }
}

template <typename T>
void posit_cpu(const T* in, T* out, int64_t n, int nbits, int es, int rounding, uint64_t seed, int rand_bits) {
  dispatch_mode(rounding, in, out, n, seed, rand_bits, [nbits, es](auto mode, T x, uint32_t rand, int rand_shift) {
    return posit_value<decltype(mode)::value, T>(x, nbits, es, rand, rand_shift);
  });
}

template <typename T>
void lns_cpu(const T* in, T* out, int64_t n, const LnsParams& p, const typename FloatTraits<T>::Bits* table,
             int rounding, uint64_t seed, int rand_bits) {
  // The fields are captured one by one: a captured struct is loaded whole in the loop, which GCC 12
  // does not vectorise.
  const int f = p.frac_bits, code_min = p.code_min, code_max = p.code_max, is_signed = p.is_signed, ties = p.exact_ties;
  dispatch_mode(rounding, in, out, n, seed, rand_bits,
                [f, code_min, code_max, is_signed, ties, table](auto mode, T x, uint32_t rand, int rand_shift) {
                  const LnsParams params = {f, code_min, code_max, is_signed, ties};
                  return lns_value<decltype(mode)::value, T>(x, params, table, rand, rand_shift);
                });
}

}  // namespace

void posit_cpu_f32(const float* in, float* out, int64_t n, int nbits, int es, int rounding, uint64_t seed, int rand_bits) {
  posit_cpu(in, out, n, nbits, es, rounding, seed, rand_bits);
}
void posit_cpu_f64(const double* in, double* out, int64_t n, int nbits, int es, int rounding, uint64_t seed, int rand_bits) {
  posit_cpu(in, out, n, nbits, es, rounding, seed, rand_bits);
}
void lns_cpu_f32(const float* in, float* out, int64_t n, const LnsParams& p, const uint32_t* table, int rounding,
                 uint64_t seed, int rand_bits) {
  lns_cpu(in, out, n, p, table, rounding, seed, rand_bits);
}
void lns_cpu_f64(const double* in, double* out, int64_t n, const LnsParams& p, const uint64_t* table, int rounding,
                 uint64_t seed, int rand_bits) {
  lns_cpu(in, out, n, p, table, rounding, seed, rand_bits);
}

}  // namespace qsim
