// cpu/loops.h: the one OpenMP loop of every elementwise format: one pass over contiguous memory,
// out[i] = element(mode, in[i], random word of i), each element loaded into and stored from its compute
// type by Storage (cpu/storage.h). Stochastic rounding takes word i % 4 of random_words(seed, i / 4),
// drawn per block of elements first so both loops vectorise: results depend on the seed only, not on
// the thread count.
#pragma once
#include <omp.h>

#include <cfenv>
#include <limits>
#include <stdexcept>
#include <type_traits>

#include "cpu/random.h"
#include "cpu/storage.h"

namespace qsim {

constexpr int64_t kParallelThreshold = 1 << 15;  // below this, threads cost more than they save
constexpr int kBlock = 768;                       // elements per block of random words (48-group runs)

// quantize_nearest_even and TruncatingShortPath round with the FPU (the latter needs subnormals kept only),
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

// body(begin, end), compiled once (not inlined: one copy of the loop, from which the element arithmetic
// it calls has a single call site and is inlined; called from two places, GCC left the larger ones called
// per element, unvectorised, on small tensors).
template <typename Body> __attribute__((noinline)) void run_share(const Body& body, int64_t begin, int64_t end) {
  body(begin, end);
}

// body(begin, end) over [0, count): on the calling thread when `parallel` is false, else one contiguous share
// per thread. The same loop runs whatever the size; the threshold decides only how many threads run it.
// (Not `parallel for simd if(...)`: an if clause without the `parallel:` modifier switches the simd loop
// off too (OpenMP 5.0), and a parallel region switched off still sets up a team of one, ~0.3 us a call.)
template <typename Body> void over_threads(int64_t count, bool parallel, const Body& body) {
  if (!parallel) return run_share(body, 0, count);
#pragma omp parallel
  {
    const int64_t t = omp_get_thread_num(), threads = omp_get_num_threads();
    run_share(body, count * t / threads, count * (t + 1) / threads);
  }
}

// The loops call a thread-local copy of `element`, and their bodies capture pointers by value: through the
// caller's objects GCC must assume that stores to out (a float array) change their fields, and reloads
// them every iteration.

// The stochastic loop: blocks of kBlock elements, each block's random words drawn first. rand_shift is
// an int, or std::integral_constant<int, 0> when all 32 bits are used (the default), which folds the
// shifts of the words and fractions away. in[0] is element `first` of its tensor (a multiple of 4: a span
// rounded on its own draws the words it draws within the whole tensor).
template <int MODE, typename S, typename Element, typename Shift>
void stochastic_loop(const S* in, S* out, int64_t n, uint64_t seed, Shift rand_shift, const Element& element,
                     int64_t first) {
  const std::integral_constant<int, MODE> mode;
  const int64_t blocks = (n + kBlock - 1) / kBlock;
  over_threads(blocks, n > kParallelThreshold, [in, out, n, seed, rand_shift, mode, first, &element](int64_t b0, int64_t b1) {
    const Element local = element;
    for (int64_t b = b0; b < b1; ++b) {
      uint32_t words[kBlock];
      random_words_run(seed, (uint64_t)((first + b * kBlock) / 4), kBlock / 4, words);
      const int64_t start = b * kBlock, count = n - start < kBlock ? n - start : kBlock;
#pragma omp simd
      for (int64_t i = 0; i < count; ++i)
        out[start + i] = Storage<S>::store(local(mode, Storage<S>::load(in[start + i]), words[i], rand_shift));
    }
  });
}

// out[i] = element(MODE, in[i], random word of first + i); `element` is a generic lambda taking the mode as
// a std::integral_constant, so each mode compiles to its own loop.
template <int MODE, typename S, typename Element>
void round_loop(const S* in, S* out, int64_t n, uint64_t seed, int rand_bits, const Element& element,
                int64_t first = 0) {
  const std::integral_constant<int, MODE> mode;
  const int rand_shift = 32 - rand_bits;
  if constexpr (MODE == kStochastic) {
    if (rand_shift == 0) {
      stochastic_loop<MODE>(in, out, n, seed, std::integral_constant<int, 0>(), element, first);
    } else {
      stochastic_loop<MODE>(in, out, n, seed, rand_shift, element, first);
    }
  } else {
    over_threads(n, n > kParallelThreshold, [in, out, rand_shift, mode, &element](int64_t begin, int64_t end) {
      const Element local = element;
#pragma omp simd
      for (int64_t i = begin; i < end; ++i)
        out[i] = Storage<S>::store(local(mode, Storage<S>::load(in[i]), 0u, rand_shift));
    });
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
void dispatch_mode(int rounding, const S* in, S* out, int64_t n, uint64_t seed, int rand_bits, const Element& element,
                   int64_t first = 0) {
  with_mode(rounding, [&](auto mode) { round_loop<decltype(mode)::value>(in, out, n, seed, rand_bits, element, first); });
}

}  // namespace qsim
