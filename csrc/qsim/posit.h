// qsim/posit.h: rounding to posit<nbits, es> (Posit Standard 2022, with es a parameter), written once
// for the CPU (g++) and the GPU (nvcc / NVRTC). Kernels call posit_value<MODE>(x, nbits, es, rand, rand_shift).
//
// A positive posit is the bit string after its sign bit, read as an unsigned integer: the encoding is
// monotonic, so rounding a value to a posit is rounding its infinitely long string to nbits-1 bits.
// The string of |x| = 2^e·(1 + m) is
//   regime  k = floor(e / 2^es): k+1 ones then a zero (k ≥ 0), or -k zeros then a one (k < 0);
//   exponent e mod 2^es in es bits; then the fraction bits of m.
// Worked example, posit<8,2>, x = 3.3 = 2^1·1.65: k = 0 → regime "10", exponent "01", fraction 1010011…;
// the 7 bits after the sign are 10 01 101|0011… so q = 0b1001101 (= 3.25); the dropped bits start 0,
// so nearest keeps q: 3.3 → 3.25.
//
// Rounding on the string (the standard's rule, §4.1: ties to the even bit pattern) gives the value
// midpoint when only fraction bits are dropped and the geometric midpoint of two powers of two when
// exponent bits are dropped too. Directed modes are exact floor/ceiling on the values (the encoding is
// monotonic); "odd" sets the last kept bit of an inexact string. Stochastic rounding is unbiased on the
// values: P(up) = (x - lo) / (hi - lo), also where the neighbours lo, hi are powers of two 2^(2^d)
// apart. Beyond ±maxpos every mode saturates (no finite value rounds to NaR). Below minpos, nearest,
// nearest_away and odd give ±minpos (the standard: a nonzero value never rounds to 0); toward_zero, up,
// down and stochastic treat [0, minpos] as an ordinary interval between neighbours. NaN and ±inf give
// NaR (NaN); zero is +0 (posits have one zero).
#pragma once
#include "qsim/rounding.h"

namespace qsim {

// 1 iff r·d ≤ a·2^c, exactly, for r ≤ 2^32, d and a below 2^54, 0 ≤ c ≤ 32 (products up to 118 bits,
// compared in 32-bit limbs). Stochastic rounding with fraction f = a / d and the random integer ρ of
// r bits rounds up iff ρ < floor(f·2^r) ⟺ (ρ+1)·2^(32-r) ≤ f·2^32: callers pass r = (ρ+1) << (32-r).
QSIM_HD uint32_t scaled_le(uint64_t r, uint64_t d, uint64_t a, int c) {
  const uint64_t low = r * (d & 0xFFFFFFFFull);  // < 2^64
  const uint64_t high = r * (d >> 32) + (low >> 32);
  const uint64_t a_high = a >> (32 - c);
  const uint64_t a_low = (a << c) & 0xFFFFFFFFull;
  return (uint32_t)(high < a_high) | ((uint32_t)(high == a_high) & (uint32_t)((low & 0xFFFFFFFFull) <= a_low));
}

// The random integer ρ of rand_bits = 32 - rand_shift bits, as the scaled bound (ρ+1)·2^rand_shift ≤ 2^32.
QSIM_HD uint64_t stochastic_bound(uint32_t rand, int rand_shift) {
  return ((uint64_t)(rand >> rand_shift) + 1) << rand_shift;
}

// |x| as 2^e · (1 + frac·2^-kMant): the normalised exponent and the kMant fraction bits (subnormals shifted up).
template <typename T>
struct Normalised {
  typename FloatTraits<T>::Bits frac;
  int e;
};

template <typename T>
QSIM_HD Normalised<T> normalise(typename FloatTraits<T>::Bits mag_bits) {
  typedef FloatTraits<T> F;
  typedef typename F::Bits Bits;
  const Bits mant_mask = ((Bits)1 << F::kMant) - 1;
  const Bits exp_field = mag_bits >> F::kMant;
  const Bits s = (mag_bits & mant_mask) | ((Bits)(exp_field != 0) << F::kMant);
  const int length = bit_length(s | (Bits)1);
  Normalised<T> n;
  n.e = max_int((int)exp_field, 1) - F::kBias - F::kMant + length - 1;
  n.frac = (s << (F::kMant + 1 - length)) & mant_mask;
  return n;
}

// The magnitude of the positive posit<nbits, es> pattern q (1 ≤ q < 2^(nbits-1)) as T. Its regime is a
// run of equal bits: k = run - 1 for ones, -run for zeros; then es exponent bits and the fraction,
// missing bits read as 0. The scale lies in T's normal range (Posit validates (nbits-2)·2^es ≤ 126).
template <int MODE, typename T>
QSIM_HD T posit_value(T x, int nbits, int es, uint32_t rand, int rand_shift) {
  typedef FloatTraits<T> F;
  typedef typename F::Bits Bits;
  const int width = F::kWidth;
  const Bits bits = to_bits(x);
  const uint32_t neg = (uint32_t)(bits >> (width - 1));
  const Bits mag_bits = bits & (((Bits)1 << (width - 1)) - 1);
  const uint32_t special = (uint32_t)((mag_bits >> F::kMant) == ((Bits)1 << (width - 1 - F::kMant)) - 1);
  const int kept = nbits - 1;
  const int top = (nbits - 2) << es;  // maxpos = 2^top, minpos = 2^-top
  // The scale of |x| as a normal float; subnormals and 0 read as -kBias, below any minpos (top ≤ 126).
  const int e_raw = (int)(mag_bits >> F::kMant) - F::kBias;

  // 1. For minpos ≤ |x| < maxpos (e is clamped so that the arithmetic stays in range for the others,
  // which step 3 replaces), regime k = floor(e / 2^es) takes R = k+2 (k ≥ 0) or 1-k bits, leaving
  // F = nbits-1 - R - es fraction bits; F < 0 means -F exponent bits are cut off too.
  const int e = max_int(min_int(e_raw, top - 1), -top);
  const int k = e >> es;
  const int regime_length = k >= 0 ? k + 2 : 1 - k;
  const int fraction_bits = kept - regime_length - es;
  // The string after the regime is [e mod 2^es][fraction of |x|]; so is the bottom of the integer
  // V = (e + kOffset)·2^kMant + fraction, kOffset a multiple of 32 ≥ 2^es that makes it positive, and V
  // is increasing in |x| with the carries of the pattern: rounding the string is rounding V to a
  // multiple of 2^drop. (For float, V < 2^9·2^23 fits the 32-bit lanes.)
  const int kOffset = 160;
  const Bits v = ((Bits)(e + kOffset) << F::kMant) | (mag_bits & (((Bits)1 << F::kMant) - 1));
  const int drop = max_int(F::kMant - fraction_bits, 0);  // ≤ kMant + es
  const int last_regime_bit = (int)(drop == F::kMant + es);  // all exponent bits cut: the terminator is last

  // 2. Keep V >> drop; r32 = the 32 dropped bits below it, sticky = anything further down. The last
  // kept bit of the pattern is bit `drop` of V, or the regime's terminator (1 iff k < 0).
  Bits q = v >> drop;
  const Bits rest = drop == 0 ? (Bits)0 : v << (width - max_int(drop, 1));
  const uint32_t r32 = (uint32_t)(rest >> (width - 32));
  const uint32_t sticky = width > 32 ? (uint32_t)((uint32_t)rest != 0) : 0u;
  const uint32_t q_odd = last_regime_bit ? (uint32_t)(k < 0) : (uint32_t)(q & 1);
  const uint32_t inexact = (uint32_t)((r32 | sticky) != 0);
  uint32_t up;
  if (MODE == kOdd) {
    up = inexact & (q_odd ^ 1u);
  } else if (MODE == kStochastic) {
    // Only fraction bits dropped (drop ≤ kMant): the dropped bits are the fraction of the way from lo
    // to hi. Exponent bits dropped too (d = drop - kMant ≥ 1): lo = 2^a, hi = 2^(a+T), T = 2^d, and
    // |x| = 2^(a+u)·(1+m), u = e mod T, so f = (2^u·(1+m) - 1) / (2^T - 1). Then
    // floor(f·(2^T-1)·2^32) = floor((1+m)·2^(u+32)) - 2^32 < 2^(T+32) ≤ 2^64 (T ≤ 32 as es ≤ 5), and
    // up iff (ρ+1)·2^(32-r)·(2^T-1) ≤ it (see scaled_le).
    const uint32_t linear_up = round_away<kStochastic>(q_odd, r32, sticky, neg, rand, rand_shift);
    // (Powers of two as 32-bit shifts of variables or masks: GCC 12 does not vectorise 1ull << n.)
    const uint32_t t = 1u << max_int(min_int(drop - F::kMant, 5), 1);
    const uint64_t u = (uint64_t)((uint32_t)e & (t - 1u));
    const uint64_t significand = (uint64_t)(mag_bits & (((Bits)1 << F::kMant) - 1)) | ((uint64_t)1 << F::kMant);
    // (1+m)·2^(u+32) as an integer: u + 32 - kMant ≥ 0 for float; for double shift right when negative.
    const uint64_t scaled = F::kMant <= 32 ? significand << (u + (uint64_t)(32 - F::kMant))
                                           : (u + 32 >= (uint64_t)F::kMant ? significand << (u + 32 - (uint64_t)F::kMant)
                                                                          : significand >> ((uint64_t)F::kMant - 32 - u));
    const uint64_t span = (uint64_t)(0xFFFFFFFFu >> (32 - t));  // 2^T - 1 < 2^32: the product below is < 2^64
    const uint32_t power_up = (uint32_t)(stochastic_bound(rand, rand_shift) * span <= scaled - ((uint64_t)1 << 32));
    up = drop > F::kMant ? power_up : linear_up;
  } else {
    up = round_away<MODE>(q_odd, r32, sticky, neg, rand, rand_shift);
  }
  // Back to the float's bits: V's exponent offset becomes the bias.
  const Bits in_range = ((q + (Bits)up) << drop) - ((Bits)(kOffset - F::kBias) << F::kMant);

  // 3. Out of range. Above maxpos: maxpos. Below minpos: the interval [0, minpos], where nearest,
  // nearest_away and odd give minpos, the directed modes 0 or minpos, and stochastic rounding picks
  // minpos with probability |x| / minpos = |x|·2^top (exact: floor(|x|·2^top·2^32) < 2^32).
  uint32_t under;
  if (MODE == kStochastic) {
    const T scaled = from_bits<T>(mag_bits) * pow2<T>(top) * pow2<T>(32);
    const uint32_t fraction = (uint32_t)(scaled < (T)4294967040.0 ? scaled : (T)4294967040.0);  // 2^32 - 2^8: exact in float
    under = (uint32_t)((rand >> rand_shift) < (fraction >> rand_shift));
  } else if (MODE == kTowardZero) {
    under = 0u;
  } else if (MODE == kUp) {
    under = neg ^ 1u;
  } else if (MODE == kDown) {
    under = neg;
  } else {
    under = 1u;
  }
  const Bits maxpos = (Bits)(top + F::kBias) << F::kMant;
  const Bits minpos = (Bits)(F::kBias - top) << F::kMant;
  const uint32_t is_zero = (uint32_t)(mag_bits == 0) | ((uint32_t)(e_raw < -top) & (under ^ 1u));
  const Bits magnitude = e_raw >= top ? maxpos : (e_raw < -top ? minpos : in_range);

  // 4. NaN and ±inf give NaR (NaN); a zero result is +0.
  const T value = select(is_zero, (T)0, from_bits<T>(magnitude));
  return select(special, quiet_nan<T>(), select(neg & (is_zero ^ 1u), -value, value));
}

}  // namespace qsim
