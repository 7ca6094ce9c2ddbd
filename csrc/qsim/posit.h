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
template <typename T>
QSIM_HD T posit_magnitude(uint64_t q, int nbits, int es) {
  typedef FloatTraits<T> F;
  typedef typename F::Bits Bits;
  const uint64_t v = q << (65 - nbits);  // the nbits-1 pattern bits, left-aligned in 64
  const uint32_t ones = (uint32_t)(v >> 63);
  // Padding below the pattern is 0, so a run of ones stops there; q ≥ 1 so a run of zeros stops too.
  const int run = 64 - bit_length(ones ? ~v : v);
  const int k = ones ? run - 1 : -run;
  const uint64_t after = v << min_int(run + 1, 63);  // run + 1 ≤ nbits: exponent, then fraction bits
  const int exponent = es == 0 ? 0 : (int)(after >> (64 - es));
  const Bits fraction = (Bits)((after << es) >> (64 - F::kMant));
  const int scale = k * (1 << es) + exponent;
  return from_bits<T>(((Bits)(scale + F::kBias) << F::kMant) | fraction);
}

template <int MODE, typename T>
QSIM_HD T posit_value(T x, int nbits, int es, uint32_t rand, int rand_shift) {
  typedef FloatTraits<T> F;
  typedef typename F::Bits Bits;
  const Bits bits = to_bits(x);
  const uint32_t neg = (uint32_t)(bits >> (F::kWidth - 1));
  const Bits mag_bits = bits & (((Bits)1 << (F::kWidth - 1)) - 1);
  const uint32_t special = (uint32_t)((mag_bits >> F::kMant) == ((Bits)1 << (F::kWidth - 1 - F::kMant)) - 1);
  const uint32_t zero = (uint32_t)(mag_bits == 0);
  const Normalised<T> n = normalise<T>(mag_bits);
  const int kept = nbits - 1;
  const int top = (nbits - 2) << es;  // maxpos = 2^top, minpos = 2^-top
  const uint64_t max_pattern = ((uint64_t)1 << kept) - 1;

  // 1. The string of |x|, for minpos ≤ |x| < maxpos (other values take the branches of step 3; e is
  // clamped so that the arithmetic stays in range for them). The regime then fits the kept bits
  // (length ≤ nbits-1), so head = regime + exponent has L ≤ 31 + es bits.
  const int e = min_int(max_int(n.e, -top), max_int(top - 1, -top));
  const int k = e >> es;  // floor(e / 2^es)
  const uint32_t exponent = (uint32_t)e & ((1u << es) - 1u);
  const uint32_t positive = (uint32_t)(k >= 0);
  const int regime_length = positive ? k + 2 : 1 - k;
  const uint64_t regime = positive ? (((uint64_t)1 << max_int(k + 1, 0)) - 1) << 1 : (uint64_t)1;
  const int head_length = regime_length + es;
  const uint64_t head = (regime << es) | exponent;
  // The fraction follows the head: shifted left while it fits in 64 bits (always for float), else right
  // with the shifted-out bits kept as a sticky flag.
  const int shift = 64 - head_length - F::kMant;
  const uint64_t frac = (uint64_t)n.frac;
  const uint64_t tail = shift >= 0 ? frac << min_int(shift, 63) : frac >> min_int(-shift, 63);
  const uint32_t lost = (uint32_t)(shift < 0 && (frac & (((uint64_t)1 << min_int(-shift, 63)) - 1)) != 0);
  const uint64_t string = (head << (64 - head_length)) | tail;

  // 2. Keep nbits-1 bits; r32 = the 32 dropped bits below them, sticky = anything further down.
  uint64_t q = string >> (64 - kept);
  const uint64_t rest = string << kept;
  const uint32_t r32 = (uint32_t)(rest >> 32);
  const uint32_t sticky = (uint32_t)((uint32_t)rest != 0) | lost;
  const uint32_t inexact = (uint32_t)((r32 | sticky) != 0);
  const int dropped_exponent_bits = head_length - kept;  // d > 0: the neighbours are 2^a and 2^(a + 2^d)
  if (MODE == kOdd) {
    q |= inexact;
  } else if (MODE == kStochastic) {
    // Linear neighbours (d ≤ 0): the dropped bits are the fraction of the way from lo to hi.
    const uint32_t linear_up = round_away<kStochastic>((uint32_t)(q & 1), r32, sticky, neg, rand, rand_shift);
    // d ≥ 1: lo = 2^a, hi = 2^(a+T), T = 2^d, and |x| = 2^(a+u)·(1+m) with u = e mod T, so
    // f = (2^u·(1+m) - 1) / (2^T - 1). floor(f·(2^T-1)·2^32) = (1+m)·2^(u+32) - 2^32 floored, which is
    // below 2^(T+32) ≤ 2^64 (T ≤ 32 as es ≤ 5); up iff (ρ+1)·2^(32-r)·(2^T-1) ≤ it (see scaled_le).
    const int d = max_int(min_int(dropped_exponent_bits, 5), 1);
    const int u = (int)(exponent & ((1u << d) - 1u));
    const uint64_t significand = frac | ((uint64_t)1 << F::kMant);
    const int up_shift = u + 32 - F::kMant;
    const uint64_t scaled = up_shift >= 0 ? significand << min_int(up_shift, 63) : significand >> min_int(-up_shift, 63);
    const uint64_t span = ((uint64_t)1 << (1 << d)) - 1;
    const uint32_t power_up = scaled_le(stochastic_bound(rand, rand_shift), span, scaled - ((uint64_t)1 << 32), 0);
    q += dropped_exponent_bits > 0 ? power_up : linear_up;
  } else {
    q += round_away<MODE>((uint32_t)(q & 1), r32, sticky, neg, rand, rand_shift);
  }

  // 3. Out of range. Above maxpos: maxpos. Below minpos: the interval [0, minpos], where nearest,
  // nearest_away and odd give minpos, the directed modes 0 or minpos, and stochastic rounding picks
  // minpos with probability |x| / minpos = |x|·2^top (exact: floor(|x|·2^(top+32)) < 2^32).
  uint64_t under;
  if (MODE == kStochastic) {
    const double scaled = (double)from_bits<T>(mag_bits) * pow2<double>(top + 32);
    const uint32_t fraction = (uint32_t)(scaled < 4294967295.0 ? scaled : 4294967295.0);
    under = (uint64_t)((rand >> rand_shift) < (fraction >> rand_shift));
  } else if (MODE == kTowardZero) {
    under = 0;
  } else if (MODE == kUp) {
    under = (uint64_t)(neg ^ 1u);
  } else if (MODE == kDown) {
    under = (uint64_t)neg;
  } else {
    under = 1;
  }
  q = n.e >= top ? max_pattern : (n.e < -top ? under : q);

  // 4. Back to a value: NaN and ±inf give NaR, zero and a zero pattern give +0.
  const T magnitude = select((uint32_t)(q == 0) | zero, (T)0, posit_magnitude<T>(q | (uint64_t)(q == 0), nbits, es));
  return select(special, quiet_nan<T>(), select(neg & (uint32_t)(magnitude != (T)0), -magnitude, magnitude));
}

}  // namespace qsim
