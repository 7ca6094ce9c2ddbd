// qsim/lns.h: rounding to a logarithmic number system (qsim.Logarithmic), written once for the CPU
// (g++) and the GPU (nvcc / NVRTC). Kernels call lns_value<MODE>(x, params, table, rand, rand_shift).
//
// The format's values are ±2^(k / 2^f) for integer codes k in [code_min, code_max], and 0. In a
// tensor of dtype T they are held as w_k = RN_T(2^(k/2^f)) (irrational for most k), and w_k =
// 2^floor(k/2^f) · w_j with j = k mod 2^f: one binade [1, 2) of values serves all binades. With
// |x| = 2^e·(1 + M·2^-p) (p = T's mantissa bits) the code is k = e·2^f + j, where j counts the
// thresholds in [1, 2) at or below 1 + M·2^-p. Python (qsim/backends/logarithmic.py) computes the
// thresholds exactly and passes them as integers M must reach, so every decision is an integer
// comparison of mantissa bits:
//   directed modes and stochastic rounding: the thresholds are the values w_j themselves;
//   nearest modes: the midpoints (log or linear) rounded up to p bits — a float x is at or above an
//   irrational midpoint t iff it is at or above RU_p(t), as no p-bit number lies in between.
// Bucket table: bucket B = the top f+1 bits of M (width 2^-(f+1)) holds at most one threshold, as
// consecutive thresholds are more than 2^-(f+1) apart (their ratio is 2^(1/2^f) ≥ 1 + ln2·2^-f; the
// builder checks it); base[B] = thresholds below the bucket, thr[B] = the one in it (2^p if none).
// So j = base[B] + (M ≥ thr[B]): two loads, no search.
//
// Table layout (T's Bits): [0] the bits of the zero threshold (RU_T of the midpoint between 0 and the
// smallest magnitude: nearest modes give 0 below it); [1, 1 + 2^f) the mantissa bits of w_j;
// then thr[2^(f+1)] and base[2^(f+1)] for the thresholds of the mode.
#pragma once
#include "qsim/posit.h"
#include "qsim/rounding.h"

namespace qsim {

struct LnsParams {
  int32_t frac_bits;    // f
  int32_t code_min;     // code of the smallest magnitude; code_min - 1 encodes zero
  int32_t code_max;     // code of the largest magnitude
  int32_t is_signed;    // 0: no sign bit, negative inputs round to 0
  int32_t exact_ties;   // 1 when midpoints are dyadic (f = 0, linear midpoints): x equal to one is a tie
};

// scaled_le for operands d, a of T's significand width: float's (below 2^25) keep r·d and a·2^c under
// 2^57, so one 64-bit comparison does (and vectorises); double's need the limbs.
template <typename T>
QSIM_HD uint32_t scaled_le_small(uint64_t r, uint64_t d, uint64_t a, int c) {
  return FloatTraits<T>::kMant <= 24 ? (uint32_t)(r * d <= (a << c)) : scaled_le(r, d, a, c);
}

template <typename T>
QSIM_HD T lns_from_code(int code, int frac_bits, const typename FloatTraits<T>::Bits* values) {
  typedef FloatTraits<T> F;
  typedef typename F::Bits Bits;
  const int binade = code >> frac_bits;  // floor(code / 2^f)
  const int j = code & ((1 << frac_bits) - 1);
  return from_bits<T>(((Bits)(binade + F::kBias) << F::kMant) | values[j]);
}

template <int MODE, typename T>
QSIM_HD T lns_value(T x, const LnsParams& p, const typename FloatTraits<T>::Bits* table, uint32_t rand, int rand_shift) {
  typedef FloatTraits<T> F;
  typedef typename F::Bits Bits;
  const int f = p.frac_bits;
  const Bits* values = table + 1;
  const Bits* thr = values + (1 << f);
  const Bits* base = thr + (2 << f);
  const Bits bits = to_bits(x);
  const uint32_t neg = (uint32_t)(bits >> (F::kWidth - 1));
  const Bits mag_bits = bits & (((Bits)1 << (F::kWidth - 1)) - 1);
  const uint32_t is_nan = (uint32_t)(mag_bits > ((((Bits)1 << (F::kWidth - 1 - F::kMant)) - 1) << F::kMant));
  const Normalised<T> n = normalise<T>(mag_bits);

  // 1. The code at or below |x| (directed tables) or nearest to it (nearest tables); ±inf gives a
  // code beyond code_max and saturates like any large value.
  const Bits bucket = n.frac >> (F::kMant - f - 1);
  const int j = (int)base[bucket] + (int)(n.frac >= thr[bucket]);
  const int code = n.e * (1 << f) + j;

  int result = code;
  uint32_t zero = (uint32_t)(mag_bits == 0) | (neg & (uint32_t)(p.is_signed == 0));
  if (MODE == kNearest || MODE == kNearestAway) {
    // Ties (only with dyadic midpoints): to the even code, or away from zero; j then counted the
    // midpoint, so `code` is the upper neighbour. Below the zero threshold: 0 (its code is even).
    const uint32_t exact_ties = (uint32_t)(p.exact_ties != 0);
    const uint32_t tie = exact_ties & (uint32_t)(n.frac == thr[bucket]);
    if (MODE == kNearest) result -= (int)(tie & (uint32_t)code & 1u);
    const Bits zero_threshold = table[0];
    const uint32_t zero_tie = MODE == kNearest ? exact_ties & (uint32_t)(mag_bits == zero_threshold) : 0u;
    zero |= (uint32_t)(mag_bits < zero_threshold) | zero_tie;
    result = min_int(max_int(result, p.code_min), p.code_max);
  } else {
    const uint32_t inexact = (uint32_t)(n.frac != values[min_int(j, (1 << f) - 1)]);
    uint32_t away;
    if (MODE == kStochastic) {
      // P(up) = (|x| - w_lo) / (w_hi - w_lo), in units of 2^(e-p); w_hi may open the next binade (2^p).
      const Bits hi = j + 1 < (1 << f) ? values[j + 1] : (Bits)1 << F::kMant;
      away = scaled_le_small<T>(stochastic_bound(rand, rand_shift), (uint64_t)(hi - values[j]), (uint64_t)(n.frac - values[j]), 32);
    } else if (MODE == kOdd) {
      away = inexact & (((uint32_t)code & 1u) ^ 1u);  // to the odd neighbour
    } else {
      away = round_away<MODE>(0u, 0u, inexact, neg, rand, rand_shift);
    }
    // Underflow, |x| < w_min: between 0 and w_min. Stochastic: P(w_min) = |x| / w_min with
    // |x| = S·2^(e-p) and w_min = W·2^(e_min-p), so f = S / (W·2^δ), δ = e_min - e ≥ 0; up iff
    // (ρ+1)·2^(32-r)·W ≤ S·2^(32-δ), never once δ > 32 (then f < 2^-32).
    uint32_t under;
    if (MODE == kStochastic) {
      const int e_min = p.code_min >> f;
      const int delta = e_min - n.e;
      const uint64_t w_min = (uint64_t)values[p.code_min & ((1 << f) - 1)] | ((uint64_t)1 << F::kMant);
      const uint64_t s = (uint64_t)n.frac | ((uint64_t)1 << F::kMant);
      under = (uint32_t)(delta <= 32) & scaled_le_small<T>(stochastic_bound(rand, rand_shift), w_min, s, max_int(32 - delta, 0));
    } else if (MODE == kOdd) {
      under = 1u;  // w_min's code is odd (zero's, code_min - 1 = -2^(N-1), is even)
    } else {
      under = round_away<MODE>(0u, 0u, 1u, neg, rand, rand_shift);
    }
    const uint32_t underflow = (uint32_t)(code < p.code_min);
    zero |= underflow & (under ^ 1u);
    result = underflow ? p.code_min : min_int(code + (int)away, p.code_max);
  }

  // 2. Back to a value; zero is +0; NaN stays NaN.
  const T magnitude = select(zero, (T)0, lns_from_code<T>(result, f, values));
  const T signed_magnitude = select(neg & (zero ^ 1u), -magnitude, magnitude);
  return select(is_nan, x, signed_magnitude);
}

}  // namespace qsim
