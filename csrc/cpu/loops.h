// cpu/loops.h: the one OpenMP loop of every elementwise format: one pass over contiguous memory,
// out[i] = element(mode, in[i], random word of i), each element loaded into and stored from its compute
// type by Storage (cpu/storage.h). Stochastic rounding takes word i % 4 of random_words(seed, i / 4),
// drawn per block of elements first so both loops vectorise: results depend on the seed only, not on
// the thread count.
#pragma once
#include <cfenv>
#include <limits>
#include <stdexcept>
#include <type_traits>

#include "cpu/random.h"
#include "cpu/storage.h"

namespace qsim {

constexpr int64_t kParallelThreshold = 1 << 15;  // below this, threads cost more than they save
constexpr int kBlock = 768;                       // elements per block of random words (48-group runs)

// quantize_nearest_even and quantize_stochastic round with the FPU (the latter needs subnormals kept only),
// so they are taken (elementwise and in blocks) only where this thread's floating-point environment is the
// default one: round to nearest-even, subnormals neither flushed nor read as zero
// (torch.set_flush_denormal(True) sets both), no exception traps. The other paths use integers only.
inline bool default_float_environment() {
  volatile float tiny = std::numeric_limits<float>::denorm_min(), one = 1.0f, quarter = 0x1p-25f, three_quarters = 0x1.8p-24f;
#if defined(__GLIBC__)
  if (fegetexcept() != 0) return false;
#endif
  return tiny + tiny != 0.0f && one + quarter == one && one + three_quarters != one;
}

// The loops call a thread-local copy of `element`: through the caller's object GCC must assume that
// stores to out (a float array) change the object's float fields, and reloads them every iteration.

// The stochastic loop: blocks of kBlock elements, each block's random words drawn first. rand_shift is
// an int, or std::integral_constant<int, 0> when all 32 bits are used (the default), which folds the
// shifts of the words and fractions away.
template <int MODE, typename S, typename Element, typename Shift>
void stochastic_loop(const S* in, S* out, int64_t n, uint64_t seed, Shift rand_shift, const Element& element) {
  const std::integral_constant<int, MODE> mode;
  const int64_t blocks = (n + kBlock - 1) / kBlock;
#pragma omp parallel for schedule(static) if (n > kParallelThreshold)
  for (int64_t b = 0; b < blocks; ++b) {
    const Element local = element;
    uint32_t words[kBlock];
    const int64_t first_group = b * (kBlock / 4);
    random_words_run(seed, (uint64_t)first_group, kBlock / 4, words);
    const int64_t start = b * kBlock, count = n - start < kBlock ? n - start : kBlock;
#pragma omp simd
    for (int64_t i = 0; i < count; ++i)
      out[start + i] = Storage<S>::store(local(mode, Storage<S>::load(in[start + i]), words[i], rand_shift));
  }
}

// out[i] = element(MODE, in[i], random word of i); `element` is a generic lambda taking the mode as a
// std::integral_constant, so each mode compiles to its own loop.
template <int MODE, typename S, typename Element>
void round_loop(const S* in, S* out, int64_t n, uint64_t seed, int rand_bits, const Element& element) {
  const std::integral_constant<int, MODE> mode;
  const int rand_shift = 32 - rand_bits;
  if constexpr (MODE == kStochastic) {
    if (rand_shift == 0) {
      stochastic_loop<MODE>(in, out, n, seed, std::integral_constant<int, 0>(), element);
    } else {
      stochastic_loop<MODE>(in, out, n, seed, rand_shift, element);
    }
  } else {
    // Two loops rather than an if() clause: GCC leaves the serial path of `parallel for simd if(...)`
    // scalar, ten times slower on the small tensors that layer hooks quantize.
    if (n > kParallelThreshold) {
#pragma omp parallel
      {
        const Element local = element;
#pragma omp for simd schedule(static)
        for (int64_t i = 0; i < n; ++i) out[i] = Storage<S>::store(local(mode, Storage<S>::load(in[i]), 0u, rand_shift));
      }
    } else {
      const Element local = element;
#pragma omp simd
      for (int64_t i = 0; i < n; ++i) out[i] = Storage<S>::store(local(mode, Storage<S>::load(in[i]), 0u, rand_shift));
    }
  }
}

// f(std::integral_constant<int, MODE>()) for the rounding mode with code `rounding`: each mode compiles
// to its own code.
template <typename F>
void with_mode(int rounding, F f) {
  switch (rounding) {
    case kNearest: return f(std::integral_constant<int, kNearest>());
    case kNearestAway: return f(std::integral_constant<int, kNearestAway>());
    case kTowardZero: return f(std::integral_constant<int, kTowardZero>());
    case kUp: return f(std::integral_constant<int, kUp>());
    case kDown: return f(std::integral_constant<int, kDown>());
    case kOdd: return f(std::integral_constant<int, kOdd>());
    case kStochastic: return f(std::integral_constant<int, kStochastic>());
    default: throw std::invalid_argument("rounding: unknown mode code");
  }
}

// Runs round_loop with the rounding mode as a compile-time constant.
template <typename S, typename Element>
void dispatch_mode(int rounding, const S* in, S* out, int64_t n, uint64_t seed, int rand_bits, const Element& element) {
  with_mode(rounding, [&](auto mode) { round_loop<decltype(mode)::value>(in, out, n, seed, rand_bits, element); });
}

}  // namespace qsim
