// qsim/rounding.h: THE rounding arithmetic of qsim, written once and compiled for the CPU (g++) and the
// GPU (nvcc / NVRTC). Everything is a function from the input's bit pattern to the output value; no
// tables, no libm. Kernels call quantize_value<MODE>(x, params, random_word) per element.
//
// Worked example (e4m3, nearest): x = 0.30078125 = 1.203125·2^-2 as float32 has significand
// s = 0x9A0000 (24 bits, implicit 1 included) and value s·2^(e0) with e0 = -2 - 23 = -25. Its exponent
// e = -2 is normal in e4m3 (emin = -6), so the quantum is 2^(e - man) = 2^-5 and k = -5 - (-25) = 20
// low bits of s are dropped: q = s >> 20 = 9, remainder 0xA0000 / 2^20 = 0.625 of a quantum > 1/2,
// so q becomes 10 and the result is 10·2^-5 = 0.3125.
#pragma once
#include "qsim/params.h"
#include "qsim/philox.h"

#if !defined(__CUDACC__)
#include <cstring>
#include <limits>
#endif

namespace qsim {

template <typename T> struct FloatTraits;
template <> struct FloatTraits<float> {
  typedef uint32_t Bits;
  static constexpr int kMant = 23, kBias = 127, kWidth = 32;
};
template <> struct FloatTraits<double> {
  typedef uint64_t Bits;
  static constexpr int kMant = 52, kBias = 1023, kWidth = 64;
};

QSIM_HD uint32_t to_bits(float x) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(x);
#else
  uint32_t b; memcpy(&b, &x, sizeof b); return b;
#endif
}
QSIM_HD uint64_t to_bits(double x) {
#if defined(__CUDA_ARCH__)
  return (uint64_t)__double_as_longlong(x);
#else
  uint64_t b; memcpy(&b, &x, sizeof b); return b;
#endif
}
template <typename T> QSIM_HD T from_bits(typename FloatTraits<T>::Bits b);
template <> QSIM_HD float from_bits<float>(uint32_t b) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(b);
#else
  float x; memcpy(&x, &b, sizeof x); return x;
#endif
}
template <> QSIM_HD double from_bits<double>(uint64_t b) {
#if defined(__CUDA_ARCH__)
  return __longlong_as_double((long long)b);
#else
  double x; memcpy(&x, &b, sizeof x); return x;
#endif
}

// Number of significant bits of a nonzero v (floor(log2 v) + 1).
QSIM_HD int bit_length(uint64_t v) {
#if defined(__CUDA_ARCH__)
  return 64 - __clzll((long long)v);
#else
  return 64 - __builtin_clzll(v);
#endif
}

// 2^e as T, built from bits; e must lie in T's normal or subnormal range.
template <typename T> QSIM_HD T pow2(int e) {
  typedef FloatTraits<T> F;
  typedef typename F::Bits Bits;
  const int emin = 1 - F::kBias;
  Bits b = e >= emin ? (Bits)(e + F::kBias) << F::kMant : (Bits)1 << (e - (emin - F::kMant));
  return from_bits<T>(b);
}

template <typename T> QSIM_HD T infinity() { return from_bits<T>((typename FloatTraits<T>::Bits)((1ull << (FloatTraits<T>::kWidth - 1)) - 1) >> FloatTraits<T>::kMant << FloatTraits<T>::kMant); }
template <typename T> QSIM_HD T quiet_nan() { return from_bits<T>((typename FloatTraits<T>::Bits)((1ull << (FloatTraits<T>::kWidth - 1)) - 1) >> (FloatTraits<T>::kMant - 1) << (FloatTraits<T>::kMant - 1)); }

template <typename T> QSIM_HD T max_pos(const QuantParams& p);
template <> QSIM_HD float max_pos<float>(const QuantParams& p) { return p.max_pos_f; }
template <> QSIM_HD double max_pos<double>(const QuantParams& p) { return p.max_pos_d; }
template <typename T> QSIM_HD T max_neg(const QuantParams& p);
template <> QSIM_HD float max_neg<float>(const QuantParams& p) { return p.max_neg_f; }
template <> QSIM_HD double max_neg<double>(const QuantParams& p) { return p.max_neg_d; }

// Does `mode` move a value of this sign toward zero (so that IEEE overflow gives the largest finite)?
QSIM_HD bool rounds_toward_zero(int mode, bool neg) {
  return mode == kTowardZero || mode == kOdd || (mode == kUp && neg) || (mode == kDown && !neg);
}

// Decide whether the kept integer q moves one quantum away from zero. r32 holds the 32 dropped bits just
// below the quantum (the fraction of a quantum, scaled by 2^32); sticky says whether any bit below those
// was set. Stochastic rounding with r random bits rounds up iff rand_r < the top r bits of the fraction,
// so P(up) = floor(fraction·2^r) / 2^r: exactly the fraction when r = 32 and the fraction has ≤ 32 bits.
template <int MODE>
QSIM_HD bool round_away(uint64_t q, uint32_t r32, bool sticky, bool neg, uint32_t rand, int rand_shift) {
  const bool inexact = r32 != 0 || sticky;
  switch (MODE) {
    case kNearest: return r32 > 0x80000000u || (r32 == 0x80000000u && (sticky || (q & 1)));
    case kNearestAway: return r32 >= 0x80000000u;
    case kTowardZero: return false;
    case kUp: return inexact && !neg;
    case kDown: return inexact && neg;
    case kOdd: return false;  // handled by the caller: q |= inexact
    default: return (rand >> rand_shift) < (r32 >> rand_shift);  // kStochastic
  }
}

// s · 2^-k rounded to an integer with MODE (k ≥ 1). Step by step: q keeps the bits of s above position
// k; r32 holds the 32 dropped bits just below it; sticky records any set bit below those.
template <int MODE>
QSIM_HD uint64_t round_shift(uint64_t s, int k, bool neg, uint32_t rand, int rand_shift) {
  const uint64_t q = k < 64 ? s >> k : 0;
  const uint32_t r32 = k <= 32 ? (uint32_t)(s << (32 - k)) : (k - 32 < 64 ? (uint32_t)(s >> (k - 32)) : 0u);
  const bool sticky = k > 32 && (k - 32 >= 64 ? s != 0 : (s & (((uint64_t)1 << (k - 32)) - 1)) != 0);
  if (MODE == kOdd) return q | (uint64_t)(r32 != 0 || sticky);
  return q + (uint64_t)round_away<MODE>(q, r32, sticky, neg, rand, rand_shift);
}

// Two's-complement (or unsigned) wrap of the integer code q·sign modulo 2^bits, as a value of T.
template <typename T>
QSIM_HD T wrap_code(uint64_t q, bool neg, int qe, const QuantParams& p) {
  const uint64_t mask = p.wrap_bits >= 64 ? ~(uint64_t)0 : ((uint64_t)1 << p.wrap_bits) - 1;
  const uint64_t code = (neg ? (uint64_t)0 - q : q) & mask;
  int64_t value = (int64_t)code;
  if (p.wrap_signed && p.wrap_bits < 64 && (code >> (p.wrap_bits - 1)) != 0) value -= (int64_t)1 << p.wrap_bits;
  return value == 0 ? (T)0 : (T)value * pow2<T>(qe);
}

// Rounds x onto the grid of `p` with rounding MODE; `rand` is this element's random word (stochastic only)
// and rand_shift = 32 - (number of random bits used).
template <int MODE, typename T>
QSIM_HD T quantize_value(T x, const QuantParams& p, uint32_t rand, int rand_shift) {
  typedef FloatTraits<T> F;
  typedef typename F::Bits Bits;
  const Bits bits = to_bits(x);
  const bool neg = (bits >> (F::kWidth - 1)) != 0;
  const Bits mag_bits = bits & (((Bits)1 << (F::kWidth - 1)) - 1);
  const Bits exp_field = mag_bits >> F::kMant;
  const Bits exp_all_ones = ((Bits)1 << (F::kWidth - 1 - F::kMant)) - 1;

  // 1. NaN stays NaN; ±inf stays ±inf where the format has inf, otherwise it overflows below.
  if (exp_field == exp_all_ones && (mag_bits & (((Bits)1 << F::kMant) - 1)) != 0) return x;
  const bool is_inf = exp_field == exp_all_ones;
  if (is_inf && p.has_inf) return x;

  T magnitude = 0;
  bool overflow = is_inf;
  if (!is_inf) {
    // 2. |x| = s · 2^e0 with s the significand (implicit bit included for normals).
    const uint64_t s = (uint64_t)(mag_bits & (((Bits)1 << F::kMant) - 1)) | (exp_field ? (uint64_t)1 << F::kMant : 0);
    if (s == 0) return (neg && p.neg_zero) ? x : (T)0;
    const int e0 = (exp_field ? (int)exp_field : 1) - F::kBias - F::kMant;
    const int e = e0 + bit_length(s) - 1;  // floor(log2|x|)

    // 3. The quantum is 2^qe; drop the k = qe - e0 low bits of s (none if k ≤ 0: x is on the grid).
    const int qe = (e >= p.emin) ? e - p.man : (p.subnormals ? p.emin - p.man : p.emin);
    const int k = qe - e0;
    if (p.overflow == kWrap) {
      const uint64_t q = k <= 0 ? (-k >= 64 ? 0 : s << -k) : round_shift<MODE>(s, k, neg, rand, rand_shift);
      return wrap_code<T>(q, neg, qe, p);
    }
    if (k <= 0) {
      magnitude = from_bits<T>(mag_bits);
    } else {
      const uint64_t q = round_shift<MODE>(s, k, neg, rand, rand_shift);
      if (q == 0) return (neg && p.neg_zero) ? -(T)0 : (T)0;
      magnitude = (T)q * pow2<T>(qe);  // exact: q has at most kMant + 2 bits
    }
    overflow = magnitude > (neg ? max_neg<T>(p) : max_pos<T>(p));
  }

  // 4. Out of range: finite overflow, or inf in a format without inf.
  if (overflow) {
    const T limit = neg ? max_neg<T>(p) : max_pos<T>(p);
    if (p.overflow == kSaturate || (!is_inf && rounds_toward_zero(MODE, neg))) magnitude = limit;
    else if (p.overflow == kInf) magnitude = infinity<T>();
    else return quiet_nan<T>();
  }
  return neg ? -magnitude : magnitude;
}

}  // namespace qsim
