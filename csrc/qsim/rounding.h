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
  typedef int32_t Int;  // a signed integer as wide
  static constexpr int kMant = 23, kBias = 127, kWidth = 32;
};
template <> struct FloatTraits<double> {
  typedef uint64_t Bits;
  typedef int64_t Int;
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
QSIM_HD int bit_length(uint32_t v) {
#if defined(__CUDA_ARCH__)
  return 32 - __clz((int)v);
#elif !defined(__AVX512CD__)
  // Without AVX-512's vector lzcnt GCC leaves a loop around clz scalar: read the exponent of v as a float
  // instead, v's bits below its top 24 cleared first so that the conversion is exact (no carry into 2^(n+1)).
  const uint32_t wide = 0u - (uint32_t)(v >= (1u << 24));
  float f = (float)(v & ~(wide & 0xFFu));
  uint32_t b; memcpy(&b, &f, sizeof b);
  return (int)(b >> 23) - 126;
#else
  return 32 - __builtin_clz(v);
#endif
}
QSIM_HD int bit_length(uint64_t v) {
#if defined(__CUDA_ARCH__)
  return 64 - __clzll((long long)v);
#elif !defined(__AVX512CD__)
  // The same per 32-bit half, bit-blended (the half not taken may be 0: its garbage is masked off).
  const uint32_t high = (uint32_t)(v >> 32), has_high = 0u - (uint32_t)(high != 0);
  return (int)(((uint32_t)(32 + bit_length(high)) & has_high) | ((uint32_t)bit_length((uint32_t)v) & ~has_high));
#else
  return 64 - __builtin_clzll(v);
#endif
}

// c ? a : b (c is a 0/1 flag) written as a bit blend on the host: GCC cannot if-convert, and so not
// vectorise, chains of float selects that merge into many-way branches; the GPU selects natively.
template <typename T> QSIM_HD T select(uint32_t c, T a, T b) {
#if defined(__CUDA_ARCH__)
  return c ? a : b;
#else
  typedef typename FloatTraits<T>::Bits Bits;
  const Bits mask = (Bits)0 - (Bits)c;  // c is 0 or 1
  return from_bits<T>((to_bits(a) & mask) | (to_bits(b) & ~mask));
#endif
}
template <> QSIM_HD uint32_t select(uint32_t c, uint32_t a, uint32_t b) {
  const uint32_t mask = 0u - c;
  return (a & mask) | (b & ~mask);
}
template <> QSIM_HD uint64_t select(uint32_t c, uint64_t a, uint64_t b) {
  const uint64_t mask = (uint64_t)0 - c;
  return (a & mask) | (b & ~mask);
}

// c ? a : b for integer selects. With AVX-512 (and on the GPU) GCC if-converts a plain conditional into
// one masked blend (vpblendmd), fewer instructions than a bit blend; with AVX2 only, GCC 12 if-converts
// none of them and left the short paths' loops scalar and branchy (~10x slower), so there a bit blend, as
// select's (same results).
#if defined(__CUDA_ARCH__) || defined(__AVX512F__)
template <typename U> QSIM_HD U pick(uint32_t c, U a, U b) { return c ? a : b; }
#else
template <typename U> QSIM_HD U pick(uint32_t c, U a, U b) {
  const U mask = (U)0 - (U)c;  // c is 0 or 1
  return (a & mask) | (b & ~mask);
}
#endif

QSIM_HD int min_int(int a, int b) { return a < b ? a : b; }
QSIM_HD int max_int(int a, int b) { return a > b ? a : b; }

// 2^e as T for e in T's normal or subnormal range: 2^max(e, emin) · 2^min(e - emin, 0), both factors
// normal and built from bits, the product exact. (No variable shift: GCC narrows its count to 32 bits,
// and then cannot vectorise a shift of 64-bit lanes.)
template <typename T> QSIM_HD T pow2(int e) {
  typedef FloatTraits<T> F;
  typedef typename F::Bits Bits;
  const int emin = 1 - F::kBias;
  return from_bits<T>((Bits)(max_int(e, emin) + F::kBias) << F::kMant) *
         from_bits<T>((Bits)(min_int(e - emin, 0) + F::kBias) << F::kMant);
}

template <typename T> QSIM_HD T infinity() { return from_bits<T>((typename FloatTraits<T>::Bits)((1ull << (FloatTraits<T>::kWidth - 1)) - 1) >> FloatTraits<T>::kMant << FloatTraits<T>::kMant); }
template <typename T> QSIM_HD T quiet_nan() { return from_bits<T>((typename FloatTraits<T>::Bits)((1ull << (FloatTraits<T>::kWidth - 1)) - 1) >> (FloatTraits<T>::kMant - 1) << (FloatTraits<T>::kMant - 1)); }

template <typename T> QSIM_HD bool is_finite(T v) {
  typedef typename FloatTraits<T>::Bits Bits;
  const Bits exp_mask = (((Bits)1 << (FloatTraits<T>::kWidth - 1 - FloatTraits<T>::kMant)) - 1) << FloatTraits<T>::kMant;
  return (to_bits(v) & exp_mask) != exp_mask;
}

template <typename T> QSIM_HD T max_pos(const QuantParams& p);
template <> QSIM_HD float max_pos<float>(const QuantParams& p) { return p.max_pos_f; }
template <> QSIM_HD double max_pos<double>(const QuantParams& p) { return p.max_pos_d; }
template <typename T> QSIM_HD T max_neg(const QuantParams& p);
template <> QSIM_HD float max_neg<float>(const QuantParams& p) { return p.max_neg_f; }
template <> QSIM_HD double max_neg<double>(const QuantParams& p) { return p.max_neg_d; }

// 1 if `mode` moves a value of this sign toward zero (IEEE overflow then gives the largest finite), else 0.
QSIM_HD uint32_t rounds_toward_zero(int mode, uint32_t neg) {
  return (uint32_t)(mode == kTowardZero || mode == kOdd) | ((uint32_t)(mode == kUp) & neg) |
         ((uint32_t)(mode == kDown) & (neg ^ 1u));
}

// Decide whether the kept integer q (odd or not) moves one quantum away from zero. r32 holds the 32 dropped bits just
// below the quantum (the fraction of a quantum, scaled by 2^32); sticky says whether any bit below those
// was set. Stochastic rounding with r random bits rounds up iff rand_r < the top r bits of the fraction,
// so P(up) = floor(fraction·2^r) / 2^r: exactly the fraction when r = 32 and the fraction has ≤ 32 bits.
template <int MODE>
QSIM_HD uint32_t round_away(uint32_t q_odd, uint32_t r32, uint32_t sticky, uint32_t neg, uint32_t rand, int rand_shift) {
  const uint32_t inexact = (uint32_t)((r32 | sticky) != 0);
  switch (MODE) {
    // (Half a quantum or more is r32's top bit; more than half, any bit below it or sticky: shifts and
    // tests against zero, where unsigned compares cost AVX2 several instructions.)
    case kNearest: return (r32 >> 31) & ((uint32_t)((r32 << 1) != 0) | sticky | q_odd);
    case kNearestAway: return r32 >> 31;
    case kTowardZero: return 0u;
    case kUp: return inexact & (neg ^ 1u);
    case kDown: return inexact & neg;
    case kOdd: return 0u;  // handled by the caller: q |= inexact
    default: return (uint32_t)((rand >> rand_shift) < (r32 >> rand_shift));  // kStochastic
  }
}

// s · 2^-k rounded to an integer with MODE, for k ≥ 1 and s < 2^(kMant+1), in the integer width U of T's
// bit pattern (32 bits for float, so the float loop vectorises without 64-bit lanes). Step by step:
// q keeps the bits of s above position k; r holds the dropped bits left-aligned in U (exactly, when
// k ≤ width; beyond, the value is below 2^-8 of a quantum and the bits shifted out can only make it
// inexact); r32 is the top 32 bits of r. Flags are 0/1 integers and shifts are clamped, instead of
// branches and bools, so that the loop vectorises.
template <int MODE, typename U>
QSIM_HD U round_shift(U s, int k, uint32_t neg, uint32_t rand, int rand_shift) {
  const int width = (int)sizeof(U) * 8;
  const U q = s >> min_int(k, width - 1);  // 0 once k > bit_length(s)
  const U r = (s << max_int(width - k, 0)) >> min_int(max_int(k - width, 0), width - 1);
  const uint32_t r32 = (uint32_t)(r >> (width - 32));
  const uint32_t below = width > 32 ? (uint32_t)r : 0u;  // bits under r32 (doubles only)
  const uint32_t sticky = (uint32_t)(below != 0) | ((uint32_t)(k > width) & (uint32_t)(s != 0));
  if (MODE == kOdd) return q | (U)(uint32_t)((r32 | sticky) != 0);
  return q + (U)round_away<MODE>((uint32_t)(q & 1), r32, sticky, neg, rand, rand_shift);
}

// |x| = s · 2^e0 and the quantum exponent qe of its binade on the grid of p (x finite).
template <typename U>
struct Decomposed {
  U s;
  int e0, qe, k;  // k = qe - e0 low bits of s to drop (none if k ≤ 0: x is on the grid)
};

template <typename T>
QSIM_HD Decomposed<typename FloatTraits<T>::Bits> decompose(typename FloatTraits<T>::Bits mag_bits, const QuantParams& p) {
  typedef FloatTraits<T> F;
  typedef typename F::Bits Bits;
  const Bits exp_field = mag_bits >> F::kMant;
  Decomposed<Bits> d;
  d.s = (mag_bits & (((Bits)1 << F::kMant) - 1)) | ((Bits)(exp_field != 0) << F::kMant);
  d.e0 = max_int((int)exp_field, 1) - F::kBias - F::kMant;
  const int e = d.e0 + bit_length(d.s | (Bits)1) - 1;  // floor(log2|x|)
  // Below 2^emin the quantum is 2^(emin - man) with subnormals, 2^emin without.
  d.qe = max_int(e, p.emin) - ((p.subnormals != 0) | (e >= p.emin) ? p.man : 0);
  d.k = d.qe - d.e0;
  return d;
}

// The top 32 bits of the fraction s·2^-k mod 1 (of a quantum, scaled by 2^32) and a sticky flag for any
// set bit below them, for 0 ≤ k ≤ kc_max; both shifts of each pair stay within U's width.
// Non-stochastic modes only compare that fraction with 1/2 and 0, so callers clamp k to kMant + 2, past
// which every fraction is below 1/2 and nonzero iff s is: one shift pair suffices. Stochastic rounding
// compares the 32 bits themselves: k beyond U's width shifts s right instead.
template <int MODE, typename U>
QSIM_HD void fraction_bits(U s, int kc, uint32_t& r32, uint32_t& sticky) {
  const int width = (int)sizeof(U) * 8;
  U r = (U)(s << 1) << (width - 1 - min_int(kc, width - 1));  // s·2^(width-kc) mod 2^width (0 when kc = 0)
  // (A bit blend: as a conditional, GCC computes the comparison that follows once for each arm.)
  if (MODE == kStochastic) r = select((uint32_t)(kc < width), r, s >> min_int(kc - width, width - 1));
  r32 = (uint32_t)(r >> (width - 32));
  sticky = width > 32 && MODE != kStochastic ? (uint32_t)((uint32_t)r != 0) : 0u;  // (stochastic ignores it)
}

// Rounds x onto the grid of `p` with its smallest normal exponent moved to `emin` and largest finite
// magnitudes limit_pos and limit_neg (p's own, or those of a block's shifted grid), with rounding MODE;
// `rand` is this element's random word (stochastic only) and rand_shift = 32 - (number of random bits
// used). For grids whose overflow is not kWrap. All arithmetic is on the bit patterns, with 0/1 flags,
// clamped shifts and selects, so that the loop around it vectorises. Step by step:
template <int MODE, typename T>
QSIM_HD T quantize_on_grid(T x, const QuantParams& p, int emin, T limit_pos, T limit_neg, uint32_t rand,
                           int rand_shift) {
  typedef FloatTraits<T> F;
  typedef typename F::Bits Bits;
  const Bits bits = to_bits(x);
  const uint32_t neg = (uint32_t)(bits >> (F::kWidth - 1));
  const Bits mag = bits & (((Bits)1 << (F::kWidth - 1)) - 1);
  const Bits exp_field = mag >> F::kMant;
  const uint32_t special = (uint32_t)(exp_field == ((Bits)1 << (F::kWidth - 1 - F::kMant)) - 1);  // inf, NaN
  const uint32_t is_nan = special & (uint32_t)((mag & (((Bits)1 << F::kMant) - 1)) != 0);

  // 1. |x| = s·2^e0 with e = floor(log2|x|); the quantum of its binade is 2^qe, and k = qe - e0 low bits
  // of s are dropped (none if k ≤ 0: x is on the grid). Below 2^emin the quantum is 2^(emin - man) with
  // subnormals, 2^emin without.
  const Bits s = (mag & (((Bits)1 << F::kMant) - 1)) | ((Bits)(exp_field != 0) << F::kMant);
  const int e0 = max_int((int)exp_field, 1) - F::kBias - F::kMant;
  const int e = e0 + bit_length(s | (Bits)1) - 1;
  const int qe = max_int(e, emin) - (int)pick((uint32_t)(p.subnormals != 0) | (uint32_t)(e >= emin), (uint32_t)p.man, 0u);
  const int k = qe - e0;

  // 2. q = s·2^-k rounded with MODE (q = s when k ≤ 0).
  const int kc = min_int(max_int(k, 0), MODE == kStochastic ? 2 * F::kWidth : F::kMant + 2);
  const Bits q0 = s >> min_int(kc, F::kWidth - 1);
  uint32_t r32, sticky;
  fraction_bits<MODE>(s, kc, r32, sticky);
  const Bits q = MODE == kOdd ? q0 | (Bits)(uint32_t)((r32 | sticky) != 0)
                              : q0 + (Bits)round_away<MODE>((uint32_t)(q0 & 1), r32, sticky, neg, rand, rand_shift);

  // 3. q·2^qe as bits. For k ≤ kMant, q·2^k ≥ 2^kMant when x is normal, and x's exponent field with q·2^k
  // in place of s is the result: a carry out of the significand steps the exponent up, as it should,
  // and subnormal x (no implicit bit) carries into the normals the same way. For k > kMant, q is 0 or 1
  // and 2^qe is normal (qe ≥ e0 + kMant + 1 ≥ emin(T) + 1).
  const Bits kept = (mag - s) + (q << min_int(kc, F::kMant));
  const Bits quantum = ((Bits)(qe + F::kBias) << F::kMant) & ((Bits)0 - q);
  const Bits rounded = pick((uint32_t)(k > F::kMant), quantum, kept);

  // 4. Out of range. A finite value beyond the limit of its sign overflows: IEEE 754 §7.4: modes that
  // round this sign toward zero give the largest finite value instead of inf (kInf) or NaN (kNaN). An inf
  // in a format without inf is exact, not rounded: in every mode it saturates where the format saturates
  // and becomes NaN otherwise (docs/overflow.md); NaN, and inf
  // where the format has inf, pass through. Magnitudes compare as integers of their bit patterns.
  const Bits limit = to_bits(select(neg, limit_neg, limit_pos));
  const Bits beyond = to_bits(select((uint32_t)(p.overflow == kInf), infinity<T>(), quiet_nan<T>()));
  const uint32_t saturates = (uint32_t)(p.overflow == kSaturate);
  const Bits finite_over = pick(saturates | rounds_toward_zero(MODE, neg), limit, beyond);
  const Bits special_over = pick(saturates, limit, beyond);
  const Bits finite = pick((uint32_t)(rounded > limit), finite_over, rounded);
  const Bits special_mag = pick(is_nan | (uint32_t)(p.has_inf != 0), mag, special_over);
  const Bits magnitude = pick(special, special_mag, finite);

  // 5. Sign: a zero result is -0 only where the format has -0.
  const uint32_t negative = neg & ((uint32_t)(magnitude != 0) | (uint32_t)(p.neg_zero != 0));
  return from_bits<T>(magnitude | ((Bits)negative << (F::kWidth - 1)));
}

// Rounds x onto the grid of `p` (see quantize_on_grid).
template <int MODE, typename T>
QSIM_HD T quantize_value(T x, const QuantParams& p, uint32_t rand, int rand_shift) {
  return quantize_on_grid<MODE, T>(x, p, p.emin, max_pos<T>(p), max_neg<T>(p), rand, rand_shift);
}

// ---- Round to nearest, ties to even: a short path for the most used mode -------------------------------
// quantize_value<kNearest> decides every element with the mode-generic bit arithmetic above (about 50
// vector operations). quantize_nearest_even gives the same bits with about 20, by splitting the
// magnitudes a = |x| at a constant low_end of the grid:
//
// Below low_end, the quantum is the constant 2^ql, ql = emin - man with subnormals, emin without
// (fixed point: everywhere, since its emin lies above every finite exponent), and a < M = 2^(ql + kMant).
// Then (a + M) - M, in the FPU's round-to-nearest-even, is a rounded to a multiple of 2^ql, ties to even:
// the T values in [M, 2M] are M + j·2^ql (ulp(M) = 2^ql), so a + M rounds to the j nearest a/2^ql, and a
// tie goes to the even significand 2^kMant + j, i.e. to even j (j = 2^kMant gives 2M, after the odd
// 2^kMant - 1). M ≤ a + M ≤ 2M, so subtracting M is exact (Sterbenz), and j·2^ql is a T value (j ≤ 2^kMant,
// and 2^ql is at least T's smallest subnormal as M is normal): exactly the value quantize_on_grid computes.
// (low_end is 2^emin, or T's smallest normal 2^emin(T) when that is above it: then emin = emin(T) - 1 and
// a in [2^emin, 2^emin(T)) has quantum 2^(emin - man) = 2^ql as well.)
// Worked example (fp8_e4m3, ql = -9, M = 2^14, float32): a = 0.005 = 2.56·2^-9 → a + M = 16384.005 rounds
// to 16384 + 3·2^-9, and subtracting M leaves 3·2^-9 = 0.005859375.
//
// From low_end up, a is a normal T with exponent e ≥ emin, so its quantum is 2^(e - man) and the number of
// significand bits to drop is the constant k = kMant - man (clamped to [0, kMant]); or a is on the grid
// already and k = 0 (fixed point: low_end = M, and every a ≥ M is a multiple of 2^ql). Adding 2^(k-1) - 1 plus the
// last kept bit to the bit pattern carries into bit k exactly when the dropped part is above half a
// quantum, or exactly half with an odd kept significand; clearing the low k bits then leaves the rounded
// value, a carry out of the significand stepping the exponent up (to the inf pattern past T's largest),
// as step 3 of quantize_on_grid does. The kept significand's last bit is bit k of the pattern with the
// implicit bit set (for k = kMant it is that implicit bit).
//
// Overflow, inf/NaN and the sign then follow steps 4-5 of quantize_on_grid for kNearest, where the
// finite and the special overflow give the same value; NaN and, where the format has inf, ±inf keep
// their bit patterns, which is what `passes` selects. Preconditions (nearest_even_applies): a non-wrap
// grid, M a normal T, and emin ≥ emin(T) - 1 with subnormals, emin ≥ emin(T) without (else float32
// subnormals 2^-127 ≤ a < 2^-126 on an exp-8 fnuz grid without subnormals would need a third quantum);
// and an FPU rounding to nearest-even, not flushing subnormals and not trapping (CPU callers check it;
// GPU arithmetic always is so). Never compile with -ffast-math, which would fold (a + M) - M into a.
QSIM_HD int nearest_low_quantum(const QuantParams& p) { return p.emin - (p.subnormals != 0 ? p.man : 0); }

template <typename T>
QSIM_HD bool nearest_even_applies(const QuantParams& p) {
  typedef FloatTraits<T> F;
  const int magic_exp = nearest_low_quantum(p) + F::kMant;
  return p.overflow != kWrap && p.man >= 0 && p.emin >= (p.subnormals != 0 ? -F::kBias : 1 - F::kBias) &&
         magic_exp >= 1 - F::kBias && magic_exp <= F::kBias;
}

// What quantize_nearest_even and TruncatingShortPath share: the grid's constants (the same for every
// element, so hoisted out of the loop) and the last steps, overflow, inf/NaN and the sign, which are
// steps 4-5 of quantize_on_grid for a mode that does not round toward zero: finite and special overflow
// then give the same value. NaN and, where the format has inf, ±inf keep their bit patterns (`passes`).
template <typename T>
struct ShortPathGrid {
  typedef FloatTraits<T> F;
  typedef typename F::Bits Bits;
  typedef typename F::Int Int;
  Bits sign_mask, inf_bits, magic_bits, low_end, dropped, limit_pos, limit_neg, over_pos, over_neg, passes, zero_sign;
  int ql, k;

  QSIM_HD explicit ShortPathGrid(const QuantParams& p) {
    sign_mask = (Bits)1 << (F::kWidth - 1);
    inf_bits = to_bits(infinity<T>());
    ql = nearest_low_quantum(p);
    magic_bits = to_bits(pow2<T>(ql + F::kMant));
    const Bits normal_floor = (Bits)min_int(max_int(p.emin + F::kBias, 1), (int)(inf_bits >> F::kMant)) << F::kMant;
    low_end = magic_bits < normal_floor ? magic_bits : normal_floor;
    k = min_int(max_int(F::kMant - p.man, 0), F::kMant);
    dropped = ((Bits)1 << k) - 1;
    limit_pos = to_bits(max_pos<T>(p));
    limit_neg = to_bits(max_neg<T>(p));
    const Bits beyond = p.overflow == kInf ? inf_bits : to_bits(quiet_nan<T>());
    over_pos = p.overflow == kSaturate ? limit_pos : beyond;
    over_neg = p.overflow == kSaturate ? limit_neg : beyond;
    passes = inf_bits + (Bits)(p.has_inf == 0);
    zero_sign = p.neg_zero != 0 ? sign_mask : 0;
  }

  // The result for x = sign | mag whose magnitude rounds to `rounded` before the range check.
  // One select per statement: with AVX-512 GCC turns each into a masked blend (nested, into branchy mask code).
  QSIM_HD T finish(Bits sign, Bits mag, Bits rounded) const {
    return finish(sign, mag, rounded, limit_pos, limit_neg, over_pos, over_neg);
  }
  // The same with the limits (and what overflows to) of a block's shifted grid in place of the grid's own.
  QSIM_HD T finish(Bits sign, Bits mag, Bits rounded, Bits limit_p, Bits limit_n, Bits over_p, Bits over_n) const {
    const uint32_t neg = (uint32_t)(sign != 0);
    const Bits limit = pick(neg, limit_n, limit_p);
    const Bits over = pick(neg, over_n, over_p);
    // (Magnitudes compare as signed integers: below 2^(width-1), they order alike, and AVX2 has no unsigned
    // vector compare; a NaN's `rounded` may wrap past it, but NaN passes.)
    const Bits finite = pick((uint32_t)((Int)rounded > (Int)limit), over, rounded);
    const Bits magnitude = pick((uint32_t)((Int)mag >= (Int)passes), mag, finite);
    return from_bits<T>(magnitude | (sign & pick((uint32_t)(magnitude != 0), sign_mask, zero_sign)));
  }
};

// The grid's constants of quantize_nearest_even (hoisted out of loops, or built once per block where a
// block's power-of-two scale shifts the grid) and its per-element steps.
template <typename T>
struct NearestEvenShortPath {
  typedef FloatTraits<T> F;
  typedef typename F::Bits Bits;
  typedef typename F::Int Int;
  ShortPathGrid<T> g;
  T magic;
  Bits kept_lsb;  // no rounding bit to look at when nothing is dropped

  QSIM_HD explicit NearestEvenShortPath(const QuantParams& p)
      : g(p), magic(from_bits<T>(g.magic_bits)), kept_lsb((Bits)(g.k > 0)) {}

  QSIM_HD T operator()(T x) const {
    return round(x, magic, g.low_end, g.limit_pos, g.limit_neg, g.over_pos, g.over_neg);
  }

  // The same on a grid that differs from g's in ql (so the magic number 2^(ql + kMant) and low_end) and in
  // the limits only: a block's grid shifted by its power-of-two scale, whose constants the caller gives
  // (cpu/block.cpp).
  QSIM_HD T round(T x, T magic_number, Bits low_end, Bits limit_p, Bits limit_n, Bits over_p, Bits over_n) const {
    const Bits bits = to_bits(x);
    const Bits sign = bits & g.sign_mask, mag = bits & ~g.sign_mask;
    const T a = from_bits<T>(mag);
    const Bits below = to_bits((a + magic_number) - magic_number);
    const Bits odd = ((mag | ((Bits)1 << F::kMant)) >> g.k) & kept_lsb;
    const Bits above = (mag + (g.dropped >> 1) + odd) & ~g.dropped;
    return g.finish(sign, mag, pick((uint32_t)((Int)mag < (Int)low_end), below, above), limit_p, limit_n, over_p, over_n);
  }
};

template <typename T>
QSIM_HD T quantize_nearest_even(T x, const QuantParams& p) {
  return NearestEvenShortPath<T>(p)(x);
}

// ---- Stochastic rounding: a short path as well -----------------------------------------------------
// quantize_value<kStochastic> rounds |x| = a up one quantum iff (rand >> rand_shift) < (r32 >> rand_shift),
// where r32 = floor(f·2^32) for the fraction f of a quantum that a lies above its lower neighbour: for
// k ≤ width dropped bits, fraction_bits left-aligns them (r32 is then exactly f·2^32 truncated to its top
// 32 bits), and for k > width it shifts s right by k - width, which is the same floor. TruncatingShortPath
// gives the same bits with about half as many vector operations, split at quantize_nearest_even's low_end:
//
// From low_end up (a is a normal T with exponent e ≥ emin, or on the grid already, as shown there), the
// dropped bits are the k = kMant - man low bits of the bit pattern (clamped to [0, kMant]; k = 0 when a
// is on the grid); they are the low k bits of s too, so r32 = (mag << (width - k)) >> (width - 32), and
// quantize_on_grid's kept = (mag - s) + ((s >> k) + away) << k = (mag & ~dropped) + (away << k): a carry
// out of the significand steps the exponent up as in its step 3. For k = 0, r32 = 0 and away = 0.
//
// Below low_end the quantum is the constant 2^ql (see quantize_nearest_even) and a < 2^(ql + kMant), so
// t = a·2^-ql < 2^kMant, computed exactly by two multiplies by powers of two when ql ≤ 0 (scaling up
// loses no bit, and the first factor, at most 2^-ql, keeps the product below t). j = trunc(t) is
// floor(a / 2^ql), the kept integer; f = t - j is exact (its bits are a subset of t's) and f < 1, so
// f·2^32 < 2^32 is exact too and its truncation to an integer is r32. The result (j + away)·2^ql is exact:
// j + away ≤ 2^kMant is a T, and the product is a multiple of 2^ql ≥ T's smallest subnormal below 2^(ql +
// kMant + 1), a T value, so the multiply returns it (it needs no rounding, only subnormals kept: CPU
// callers check the environment). Every lane computes both paths: t is capped at 2^kMant, where the
// other path is taken, so that the conversions stay in range (out of range, they are undefined).
//
// Overflow, inf/NaN and the sign are as in quantize_nearest_even: stochastic rounding does not round
// toward zero, so steps 4-5 of quantize_on_grid send finite and special overflow to the same value.
// (A NaN lane's payload may carry `above` into the sign bit; `passes` keeps the NaN's own pattern.)
// Preconditions (stochastic_applies): those of nearest_even_applies, and ql ≤ 0.
template <typename T>
QSIM_HD bool stochastic_applies(const QuantParams& p) {
  return nearest_even_applies<T>(p) && nearest_low_quantum(p) <= 0;
}

// The same split rounds with the other modes but nearest-even (which quantize_nearest_even does in fewer
// steps), MODE deciding the step away from zero from the dropped part instead of comparing it with the
// random threshold: up to low_end, with the fraction f = t - j of a quantum (exact, see above), f ≥ 1/2
// (kNearestAway: round_away's r32 ≥ 2^31 is the fraction's top bit), f ≠ 0 (kUp for positive, kDown for
// negative values), nothing (kTowardZero), or j | (f ≠ 0) (kOdd, quantize_on_grid's q0 | inexact); from
// low_end up, the same tests on the dropped bits mag & dropped: ≥ 2^(k-1) (adding 2^(k-1) = (dropped >> 1)
// + 1 and truncating; nothing for k = 0, where nothing is dropped), ≠ 0, and for kOdd
// the kept significand's last bit, bit k of the pattern, or'ed in (for k = kMant that is the implicit bit,
// already 1: nothing changes, as q0 | inexact = 1). Overflow: quantize_on_grid sends a finite value of a
// mode that rounds its sign toward zero to the limit rather than to inf or NaN (`round` picks that sign's
// limit as what overflows to), and an inf without inf in the format to inf or NaN unless the grid
// saturates: `finish` does not tell that inf from a finite overflow, so where the format has no inf and
// does not saturate, the mode must round neither sign toward zero (truncating_applies). None of this
// depends on the FPU's rounding direction (the multiplies are exact, the conversions truncate), only on
// subnormals being kept.
QSIM_HD uint32_t truncating_overflow_applies(const QuantParams& p, int mode) {
  return (uint32_t)(p.overflow == kSaturate) | (uint32_t)(p.has_inf != 0) |
         ((rounds_toward_zero(mode, 0u) | rounds_toward_zero(mode, 1u)) ^ 1u);
}

template <typename T>
QSIM_HD bool truncating_applies(const QuantParams& p, int mode) {
  return stochastic_applies<T>(p) && truncating_overflow_applies(p, mode) != 0;
}

// The grid's constants of the stochastic short path (the same for every element, so hoisted out of the loop,
// or built once per block where a block's power-of-two scale shifts the grid) and its per-element steps,
// for stochastic rounding and the modes above.
template <typename T>
struct TruncatingShortPath {
  typedef FloatTraits<T> F;
  typedef typename F::Bits Bits;
  typedef typename F::Int Int;
  ShortPathGrid<T> g;
  T scale1, scale2, quantum1, quantum2;
  int left;

  // The quantum 2^ql = quantum1·quantum2 as two normal factors (quantum2 ≥ 2^-kMant, as 2^(ql + kMant) is
  // normal): a subnormal operand costs x86 cores a slow micro-coded multiply on every vector (bf16's quantum
  // is 2^-133).
  QSIM_HD explicit TruncatingShortPath(const QuantParams& p) : g(p) {
    const int up1 = min_int(-g.ql, F::kBias), ql1 = max_int(g.ql, 1 - F::kBias);
    scale1 = pow2<T>(up1);
    scale2 = pow2<T>(-g.ql - up1);
    quantum1 = pow2<T>(ql1);
    quantum2 = pow2<T>(g.ql - ql1);
    left = F::kWidth - max_int(g.k, 1);  // k = 0: the shift below leaves 0 after the mask
  }

  template <int MODE = kStochastic, typename Shift = int>
  QSIM_HD T operator()(T x, uint32_t rand, Shift rand_shift) const {
    return round<MODE>(x, rand, rand_shift, g.low_end, scale1, scale2, quantum1, g.limit_pos, g.limit_neg, g.over_pos,
                       g.over_neg, quantum2);
  }

  // The same on a grid that differs from g's in ql (so low_end, the scale factors 2^-ql = factor1·factor2 and
  // the quantum 2^ql = unit·unit2) and in the limits only: a block's grid shifted by its power-of-two scale,
  // whose constants the caller gives (cpu/block.cpp).
  template <int MODE = kStochastic, typename Shift = int>
  QSIM_HD T round(T x, uint32_t rand, Shift rand_shift, Bits low_end, T factor1, T factor2, T unit, Bits limit_p,
                  Bits limit_n, Bits over_p, Bits over_n, T unit2 = (T)1) const {
    static_assert(MODE != kNearest, "nearest-even: quantize_nearest_even");
    const T two32 = (T)4294967296.0, cap = pow2<T>(F::kMant);
    const uint32_t threshold = rand >> rand_shift;
    const Bits bits = to_bits(x);
    const Bits sign = bits & g.sign_mask, mag = bits & ~g.sign_mask;
    const uint32_t neg = (uint32_t)(sign != 0);
    // From low_end up: the dropped bits, left-aligned (all zero when k = 0: mag & dropped is 0 then).
    const uint32_t r_above = (uint32_t)(((mag & g.dropped) << left) >> (F::kWidth - 32));
    const uint32_t inexact_above = (uint32_t)((mag & g.dropped) != 0);
    Bits above;
    switch (MODE) {
      case kNearestAway: above = (mag + (g.dropped >> 1) + (Bits)(g.k > 0)) & ~g.dropped; break;
      case kTowardZero: above = mag & ~g.dropped; break;
      case kUp: above = (mag & ~g.dropped) + ((Bits)(inexact_above & (neg ^ 1u)) << g.k); break;
      case kDown: above = (mag & ~g.dropped) + ((Bits)(inexact_above & neg) << g.k); break;
      case kOdd: above = (mag & ~g.dropped) | ((Bits)(inexact_above & (uint32_t)(g.k < F::kMant)) << g.k); break;
      default: above = (mag & ~g.dropped) + ((Bits)(threshold < (r_above >> rand_shift)) << g.k);  // kStochastic
    }
    // Below low_end: t = a / 2^ql, its integer part and fraction.
    const T scaled = from_bits<T>(mag) * factor1 * factor2;
    // (The lanes of the other path, inf and NaN included, to cap. A bit blend: as a conditional, GCC moves
    // the float arithmetic below into a branch, which it cannot if-convert, and so vectorise.)
    const uint32_t lower = (uint32_t)((Int)mag < (Int)low_end);  // (signed: see finish)
    const T t = select(lower, scaled, cap);
    const Int j = (Int)t;
    const T f = t - (T)j;
    Int kept;
    switch (MODE) {
      case kNearestAway: kept = j + (Int)(f >= (T)0.5); break;
      case kTowardZero: kept = j; break;
      case kUp: kept = j + (Int)((uint32_t)(f != (T)0) & (neg ^ 1u)); break;
      case kDown: kept = j + (Int)((uint32_t)(f != (T)0) & neg); break;
      case kOdd: kept = j | (Int)(f != (T)0); break;
      default: kept = j + (Int)(threshold < ((uint32_t)(f * two32) >> rand_shift));  // kStochastic
    }
    const Bits below = to_bits((T)kept * unit * unit2);  // (both products exact: kept·2^ql is a T value)
    // (A sign that MODE rounds toward zero overflows to its limit: constants, hoisted out of loops.)
    const Bits overflow_p = pick(rounds_toward_zero(MODE, 0u), limit_p, over_p);
    const Bits overflow_n = pick(rounds_toward_zero(MODE, 1u), limit_n, over_n);
    return g.finish(sign, mag, select(lower, below, above), limit_p, limit_n, overflow_p, overflow_n);  // (a bit blend, as t's)
  }
};

// The same for kWrap grids (fixed point with wrap-around): round as if unbounded, then keep the integer
// code modulo 2^wrap_bits, two's complement if wrap_signed. NaN stays NaN; ±inf has no code and gives NaN.
// A code with more significant bits than T holds (an unsigned code of a negative x, up to 2^wrap_bits - 1)
// is truncated toward zero to T's precision, which keeps it on the grid and in range; a value past T's
// range is limited to the format's limit in T, as the other grids' are.
template <int MODE, typename T>
QSIM_HD T quantize_wrap(T x, const QuantParams& p, uint32_t rand, int rand_shift) {
  typedef FloatTraits<T> F;
  typedef typename F::Bits Bits;
  typedef typename F::Int Int;
  const Bits bits = to_bits(x);
  const uint32_t neg = (uint32_t)(bits >> (F::kWidth - 1));
  const Bits mag_bits = bits & (((Bits)1 << (F::kWidth - 1)) - 1);
  const uint32_t special = (uint32_t)((mag_bits >> F::kMant) == ((Bits)1 << (F::kWidth - 1 - F::kMant)) - 1);
  const Decomposed<Bits> d = decompose<T>(mag_bits, p);
  // q = s·2^-k rounded: shifted left, exactly, for k ≤ 0 (0 past 63 bits), else rounded in T's width (s and
  // q fit it). Both are computed and one picked, as throughout: branches would keep the loop scalar.
  const int up = max_int(-d.k, 0);
  const uint64_t exact = pick((uint32_t)(up < 64), (uint64_t)d.s << min_int(up, 63), (uint64_t)0);
  const uint64_t rounded = (uint64_t)round_shift<MODE>(d.s, max_int(d.k, 1), neg, rand, rand_shift);
  const uint64_t q = pick((uint32_t)(d.k <= 0), exact, rounded);
  const uint64_t mask = p.wrap_bits >= 64 ? ~(uint64_t)0 : ((uint64_t)1 << p.wrap_bits) - 1;
  const uint64_t code = pick(neg, (uint64_t)0 - q, q) & mask;
  // A signed code with its top bit set stands for code - 2^wrap_bits, of magnitude 2^wrap_bits - code.
  const uint32_t negative = (uint32_t)(p.wrap_signed != 0) & (uint32_t)(code >> (p.wrap_bits - 1));
  const uint64_t magnitude = pick(negative, ((uint64_t)0 - code) & mask, code);
  // Its top kMant + 1 bits, as (magnitude >> extra)·2^extra: exact products, and a conversion from a signed
  // integer of T's width (one that vectorises).
  const int extra = max_int(bit_length(magnitude | 1) - (F::kMant + 1), 0);
  const T value = (T)(Int)(magnitude >> extra) * pow2<T>(extra) * pow2<T>(d.qe);
  const T limit = select(negative, max_neg<T>(p), max_pos<T>(p));
  const T bounded = select((uint32_t)(value > limit), limit, value);
  return select(special, quiet_nan<T>(), from_bits<T>(to_bits(bounded) | ((Bits)negative << (F::kWidth - 1))));
}

// One element: the wrap-around path for kWrap grids, the select-only path otherwise.
template <int MODE, typename T>
QSIM_HD T quantize_element(T x, const QuantParams& p, uint32_t rand, int rand_shift) {
  return p.overflow == kWrap ? quantize_wrap<MODE, T>(x, p, rand, rand_shift) : quantize_value<MODE, T>(x, p, rand, rand_shift);
}

}  // namespace qsim
