// cpu/accumulate.h: the simulated low-precision accumulator of qsim.nn.functional as one fused loop.
// out[b, n, m] holds the initial running sum (the rounded bias, or zeros) and receives
//     s <- round_acc(s + sum_{k in chunk c} a[b, n, k] * b[b, k, m])    for c = 0, 1, ... in order,
// products and chunk sums in float64 (a float32 product is exact there), each chunk summed left to right.
#pragma once
#include "qsim/params.h"

namespace qsim {

// a: float32 (B, N, K) with element strides (a_sb, a_sn, a_sk); b: float32 (B, K, M) with strides (b_sb, b_sk)
// and unit stride along m; out: contiguous float64 (B, N, M), updated in place. Stochastic rounding of
// chunk c takes word i % 4 of random_words(seeds[c], i / 4) for the row-major output index
// i = (b·N + n)·M + m, as one qsim quantize call of the whole (B, N, M) running sum with seed seeds[c]
// would; `seeds` holds ceil(K / chunk) values and is read only for stochastic rounding. Runs on `threads`
// OpenMP threads (the caller passes torch's intra-op count); results do not depend on it.
void accumulate_cpu_f32(const float* a, int64_t a_sb, int64_t a_sn, int64_t a_sk, const float* b, int64_t b_sb,
                        int64_t b_sk, double* out, int64_t batch, int64_t n, int64_t k, int64_t m,
                        const QuantParams& p, int rounding, int64_t chunk, const uint64_t* seeds, int rand_bits,
                        int threads);

}  // namespace qsim
