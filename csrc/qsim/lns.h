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
// Bucket records: bucket B = the top b bits of M (b = max(f+1, 9): width 2^-b ≤ 2^-(f+1)) holds at
// most one threshold, as consecutive thresholds are more than 2^-(f+1) apart (their ratio is
// 2^(1/2^f) ≥ 1 + ln2·2^-f; the builder checks it). With base = the count of thresholds below the
// bucket, V(i) = the mantissa bits of w_i (2^p for i = 2^f: the next binade's 1) and off = the
// threshold's offset in the bucket (the bucket width if none), one record per bucket holds all that
// an element needs, so each element loads one record and nothing else:
//   j = base + ge, ge = (M mod 2^(p-b) ≥ off); code parity = (e·2^f + base + ge) mod 2;
//   nearest tables: the result's mantissa is V(base) or V(base + 1) (lo, hi), the latter iff ge
//     (and no tie is broken down); V(j) = 2^p makes ((e + bias) << p) + V(j) carry into binade e + 1;
//   directed tables: the threshold is a value, V(base + 1) = bucket start + off, so lo = V(base) and
//     hi = V(base + 2) (V(base + 1) in a bucket without a threshold) give floor and ceiling of |x|.
// Codes beyond [code_min, code_max] are told by comparing |x|'s bits with constants instead: below
// `low` the code is under code_min, at or above `high` at or beyond code_max.
//
// Table layout (T's Bits; kLnsHeader words, then the records): [0] the bits of the zero threshold (RU_T
// of the midpoint between 0 and the smallest magnitude: nearest modes give 0 below it); [1], [2] the
// bits of w_min and w_max; [3] low: the bits of w_min (directed) or one above RU_T of the midpoint
// between codes code_min - 1 and code_min (nearest: at or below it the result is w_min or 0);
// [4] high: the bits of w_max (directed) or RU_T of the midpoint above it (nearest); [5] p - b;
// [6], [7]: float32 tables of at most 32 buckets of width 2^-(f+1) also carry these for the CPU's
// register permutes (cpu/nonuniform.cpp), after the records: their offset in words and p - (f+1), else 0.
// Records: float: one uint64, lo | hi << 24 | off << 48 | (base & 1) << 63; double: three words,
// off | (base & 1) << 63, lo, hi.
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

// Up with probability a / d, drawn from the random integer ρ = rand >> rand_shift: iff
// (ρ+1)·2^rand_shift·d ≤ a·2^c. For float's operands (d ≥ 1 and a below 2^25, c ≤ 32) that is
// (ρ'+1)·d ≤ a·2^c with the 32-bit ρ' = rand | (2^rand_shift - 1) (so ρ'+1 = (ρ+1)·2^rand_shift), and,
// as a·2^c is a multiple of 2^c, ((ρ'·d + d - 1) >> c) < a: one 32×32-bit product below 2^57, an add,
// a shift and a comparison (all of which vectorise); double's need the limbs of scaled_le.
template <typename T>
QSIM_HD uint32_t stochastic_up(uint32_t rand, int rand_shift, uint64_t d, uint64_t a, int c) {
  if (FloatTraits<T>::kMant > 24) return scaled_le(stochastic_bound(rand, rand_shift), d, a, c);
  const uint32_t r = rand | (uint32_t)(((uint64_t)1 << rand_shift) - 1);
  return (uint32_t)((((uint64_t)r * (uint32_t)d + ((uint32_t)d - 1u)) >> c) < a);
}

constexpr int kLnsHeader = 8;  // table words before the records

// One bucket's record: the threshold's offset in the bucket, V(base) and the other candidate
// mantissa (see the table layout above), and the parity of base.
template <typename T>
struct LnsRecord {
  typename FloatTraits<T>::Bits off, lo, hi;
  uint32_t base_odd;
};

// The records of a table: 64-bit words (a float record is one word: one gather lane on the CPU).
template <typename T>
QSIM_HD const uint64_t* lns_records(const typename FloatTraits<T>::Bits* table) {
  return reinterpret_cast<const uint64_t*>(table + kLnsHeader);
}

template <typename T>
QSIM_HD LnsRecord<T> lns_record(const uint64_t* records, int64_t bucket);
template <>
QSIM_HD LnsRecord<float> lns_record<float>(const uint64_t* records, int64_t bucket) {
  const uint64_t r = records[bucket];
  LnsRecord<float> rec;
  rec.lo = (uint32_t)r & 0xFFFFFFu;
  rec.hi = (uint32_t)(r >> 24) & 0xFFFFFFu;
  rec.off = (uint32_t)(r >> 48) & 0x7FFFu;
  rec.base_odd = (uint32_t)(r >> 63);
  return rec;
}
template <>
QSIM_HD LnsRecord<double> lns_record<double>(const uint64_t* records, int64_t bucket) {
  const uint64_t first = records[3 * bucket];
  LnsRecord<double> rec;
  rec.off = first & ~((uint64_t)1 << 63);
  rec.base_odd = (uint32_t)(first >> 63);
  rec.lo = records[3 * bucket + 1];
  rec.hi = records[3 * bucket + 2];
  return rec;
}

// x rounded with its bucket's record `rec` given: `width` is the number of bits of M below the bucket
// index (table[5] for the table's own records; the CPU's permuted records of cpu/nonuniform.cpp use
// wider buckets). lns_value below looks the record up.
template <int MODE, typename T>
QSIM_HD T lns_value_record(T x, const LnsParams& p, const typename FloatTraits<T>::Bits* table, int width,
                           const LnsRecord<T>& rec, uint32_t rand, int rand_shift) {
  typedef FloatTraits<T> F;
  typedef typename F::Bits Bits;
  const Bits zero_threshold = table[0], w_min = table[1], w_max = table[2], low = table[3], high = table[4];
  const Bits bits = to_bits(x);
  const uint32_t neg = (uint32_t)(bits >> (F::kWidth - 1));
  const Bits mag_bits = bits & (((Bits)1 << (F::kWidth - 1)) - 1);
  const uint32_t is_nan = (uint32_t)(mag_bits > ((((Bits)1 << (F::kWidth - 1 - F::kMant)) - 1) << F::kMant));
  const Normalised<T> n = normalise<T>(mag_bits);

  // 1. In the bucket of M: j = base + ge thresholds at or below it (directed tables: the code at or below
  // |x|; nearest tables: the code nearest to it), and that code's parity.
  const Bits below_mask = ((Bits)1 << width) - 1;
  const Bits below = n.frac & below_mask;
  const uint32_t ge = (uint32_t)(below >= rec.off);
  const uint32_t code_odd = (((uint32_t)n.e << p.frac_bits) + rec.base_odd + ge) & 1u;

  // Codes out of range: under code_min (directed: |x| < w_min; nearest: |x| at or below the midpoint
  // below w_min), at or beyond code_max (±inf too): saturate.
  const uint32_t under = (uint32_t)(mag_bits < low), over = (uint32_t)(mag_bits >= high);
  uint32_t zero = (uint32_t)(mag_bits == 0) | (neg & (uint32_t)(p.is_signed == 0));
  Bits mant;
  if (MODE == kNearest || MODE == kNearestAway) {
    // Ties (only with dyadic midpoints): to the even code, or away from zero; ge then counted the
    // midpoint, so the odd code base + 1 gives way to base. Below the zero threshold: 0 (its code is even).
    const uint32_t exact_ties = (uint32_t)(p.exact_ties != 0);
    const uint32_t tie = exact_ties & (uint32_t)(below == rec.off);
    const uint32_t up = MODE == kNearest ? ge & ((tie & code_odd) ^ 1u) : ge;
    mant = pick(up, rec.hi, rec.lo);
    const uint32_t zero_tie = MODE == kNearest ? exact_ties & (uint32_t)(mag_bits == zero_threshold) : 0u;
    zero |= (uint32_t)(mag_bits < zero_threshold) | zero_tie;
  } else {
    // The neighbours of |x| in its binade: floor = the threshold when ge, else V(base); ceiling = the
    // next value: hi (V(base + 2), or V(base + 1) in a bucket without a threshold) or the threshold.
    const Bits threshold = n.frac - below + rec.off;
    const uint32_t no_threshold = (uint32_t)(rec.off > below_mask);
    const Bits floor = pick(ge, threshold, rec.lo);
    const Bits ceiling = pick(ge | no_threshold, rec.hi, threshold);
    const uint32_t inexact = (uint32_t)(n.frac != floor);
    // Underflow, |x| < w_min: between 0 and w_min (up_from_zero: to w_min).
    uint32_t away, up_from_zero;
    if (MODE == kStochastic) {
      // P(up) = (|x| - floor) / (ceiling - floor), in units of 2^(e-p); under w_min, P(w_min) = |x| / w_min
      // with |x| = S·2^(e-p) and w_min = W·2^(e_min-p), so P = S / (W·2^δ), δ = e_min - e ≥ 0: up iff
      // (ρ+1)·2^(32-r)·W ≤ S·2^(32-δ), never once δ > 32 (then P < 2^-32). One draw decides either.
      const int delta = (int)(w_min >> F::kMant) - F::kBias - n.e;
      const Bits w = (w_min & (((Bits)1 << F::kMant) - 1)) | ((Bits)1 << F::kMant);
      const Bits s = n.frac | ((Bits)1 << F::kMant);
      const int c = under ? max_int(32 - delta, 0) : 32;
      const uint32_t up = stochastic_up<T>(rand, rand_shift, (uint64_t)pick(under, w, ceiling - floor),
                                           (uint64_t)pick(under, s, n.frac - floor), c);
      away = up;
      up_from_zero = (uint32_t)(delta <= 32) & up;
    } else if (MODE == kOdd) {
      away = inexact & (code_odd ^ 1u);  // to the odd neighbour
      up_from_zero = 1u;                 // w_min's code is odd (zero's, code_min - 1 = -2^(N-1), is even)
    } else {
      away = round_away<MODE>(0u, 0u, inexact, neg, rand, rand_shift);
      up_from_zero = round_away<MODE>(0u, 0u, 1u, neg, rand, rand_shift);
    }
    mant = pick(away, ceiling, floor);
    zero |= under & (up_from_zero ^ 1u);
  }

  // 2. Back to a value: e's binade with the chosen mantissa (V = 2^p carries into the next binade),
  // or the saturated ends; zero is +0; NaN stays NaN. (Integer selects are picks, which GCC turns into
  // masked blends, but for the zero one: as a conditional, GCC duplicates the stochastic test above
  // into its arms.)
  const Bits in_range = ((Bits)(n.e + F::kBias) << F::kMant) + mant;
  const Bits magnitude_bits = pick(under, w_min, pick(over, w_max, in_range));
  const Bits signed_bits = select(zero, (Bits)0, magnitude_bits | ((Bits)neg << (F::kWidth - 1)));
  return from_bits<T>(pick(is_nan, bits, signed_bits));
}

// The bucket of x's mantissa bits M: its top bits, above `width`.
template <typename T>
QSIM_HD int64_t lns_bucket(T x, int width) {
  typedef typename FloatTraits<T>::Bits Bits;
  const Bits mag_bits = to_bits(x) & (((Bits)1 << (FloatTraits<T>::kWidth - 1)) - 1);
  return (int64_t)(normalise<T>(mag_bits).frac >> width);
}

template <int MODE, typename T>
QSIM_HD T lns_value(T x, const LnsParams& p, const typename FloatTraits<T>::Bits* table, uint32_t rand, int rand_shift) {
  const int width = (int)table[5];  // bits of M below the bucket index
  const LnsRecord<T> rec = lns_record<T>(lns_records<T>(table), lns_bucket<T>(x, width));
  return lns_value_record<MODE, T>(x, p, table, width, rec, rand, rand_shift);
}

}  // namespace qsim
