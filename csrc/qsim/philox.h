// qsim/philox.h: Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC 2011).
// Counter-based: the bits for counter c under key k depend on (k, c) only, so element i of a tensor gets
// the same random bits on any device and with any number of threads. Kernels use counter = i / 4 and
// take word i % 4, so one call serves four neighbouring elements.
#pragma once
#include "qsim/params.h"

#if defined(__CUDACC__)
#define QSIM_HD __host__ __device__ __forceinline__
#else
#define QSIM_HD inline __attribute__((always_inline))
#endif

namespace qsim {

QSIM_HD void mulhilo32(uint32_t a, uint32_t b, uint32_t& hi, uint32_t& lo) {
  uint64_t product = (uint64_t)a * (uint64_t)b;
  hi = (uint32_t)(product >> 32);
  lo = (uint32_t)product;
}

// out = Philox4x32-10(counter, key); the constants are those of Random123.
QSIM_HD void philox4x32_10(const uint32_t counter[4], const uint32_t key[2], uint32_t out[4]) {
  uint32_t c0 = counter[0], c1 = counter[1], c2 = counter[2], c3 = counter[3];
  uint32_t k0 = key[0], k1 = key[1];
  for (int round = 0; round < 10; ++round) {
    uint32_t hi0, lo0, hi1, lo1;
    mulhilo32(0xD2511F53u, c0, hi0, lo0);
    mulhilo32(0xCD9E8D57u, c2, hi1, lo1);
    c0 = hi1 ^ c1 ^ k0;
    c1 = lo1;
    c2 = hi0 ^ c3 ^ k1;
    c3 = lo0;
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  out[0] = c0; out[1] = c1; out[2] = c2; out[3] = c3;
}

// The four random words for elements 4*group .. 4*group+3 under a 64-bit seed.
QSIM_HD void random_words(uint64_t seed, uint64_t group, uint32_t out[4]) {
  const uint32_t counter[4] = {(uint32_t)group, (uint32_t)(group >> 32), 0u, 0u};
  const uint32_t key[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)};
  philox4x32_10(counter, key, out);
}

}  // namespace qsim
