// cpu/nonuniform.cpp: posits and logarithmic numbers on the CPU: the loop of cpu/loops.h around the
// element arithmetic of qsim/posit.h and qsim/lns.h. With AVX-512, float32 LNS has loops of its own
// for what that loop leaves slow: a gather of the packed 64-bit bucket records (microcoded on some
// cores) and their unpacking cost as much as the rest of the arithmetic, and GCC vectorises the
// stochastic decision with 64-bit lanes throughout.
//   Tables of at most 32 buckets of width 2^-(f+1) (qsim/backends/logarithmic.py appends these
//   "permuted" records when 2^(f+1) ≤ 32: lns8) are looked up with three two-register permutes.
//   Stochastic rounding runs in vector registers (lns_stochastic_f32), the records permuted in place
//   or gathered in a pass of their own over a part of the block (gathers beside the arithmetic are
//   slower still).
//   Deterministic modes with permuted records: the block's records to arrays, then lns_value_record
//   vectorised by GCC; with gathered ones, the loop of cpu/loops.h around lns_value.
// With AVX2 only the permuted records' lookup is hand-written (through GCC's gathers of the packed
// records lns8 ran at ~0.2x the copy; nearest 2.6 -> 1.6 ns/element in cache on Zen 3, stochastic 4.6 -> 3.4):
// lns_f32_blocks then serves stochastic rounding as well.
// All give lns_value's bits (the stochastic ones with cpu/loops.h's random words), as CUDA does.
#include "cpu/nonuniform.h"

#if defined(__AVX512F__) && defined(__AVX512CD__)
#include <immintrin.h>
#define QSIM_LNS_BLOCKS 1
#define QSIM_LNS_PERMUTES 1
#elif defined(__AVX2__)
#include <immintrin.h>
#define QSIM_LNS_PERMUTES 1
#endif

#include "cpu/loops.h"

namespace qsim {
namespace {

template <typename S>
void posit_cpu(const S* in, S* out, int64_t n, int nbits, int es, int rounding, uint64_t seed, int rand_bits) {
  typedef typename Storage<S>::Compute T;
  dispatch_mode(rounding, in, out, n, seed, rand_bits, [nbits, es](auto mode, T x, uint32_t rand, int rand_shift) {
    return posit_value<decltype(mode)::value, T>(x, nbits, es, rand, rand_shift);
  });
}

#if QSIM_LNS_BLOCKS
// Table words after the 64-bit records (qsim/backends/logarithmic.py): [6] the offset in words of the
// permuted records (0: none), [7] their width (bits of M below their bucket index); there, three arrays
// of 32 words: lo, hi and off | (base & 1) << 31 per bucket.
constexpr int kLnsPermuted = 32;

// Sixteen elements' records, from their bits: the bucket of the normalised mantissa, then three
// two-register permutes (permuted records) or two gathers of the packed 64-bit ones.
class LnsLookup {
 public:
  explicit LnsLookup(const uint32_t* table)
      : permuted_(table[6] != 0),
        width_(_mm_cvtsi32_si128((int)(table[6] ? table[7] : table[5]))),
        records_(reinterpret_cast<const long long*>(table + kLnsHeader)) {
    const uint32_t* tab = table + table[6];
    for (int k = 0; k < 3 && permuted_; ++k) {
      tab0_[k] = _mm512_loadu_si512(tab + k * kLnsPermuted);
      tab1_[k] = _mm512_loadu_si512(tab + k * kLnsPermuted + 16);
    }
  }
  int width() const { return (int)_mm_cvtsi128_si32(width_); }

  // lo, hi and off | (base & 1) << 31 of the buckets of sixteen normalised mantissas (normalise().frac).
  void operator()(__m512i frac, __m512i& lo, __m512i& hi, __m512i& off_odd) const {
    const __m512i bucket = _mm512_srl_epi32(frac, width_);
    if (permuted_) {
      lo = _mm512_permutex2var_epi32(tab0_[0], bucket, tab1_[0]);
      hi = _mm512_permutex2var_epi32(tab0_[1], bucket, tab1_[1]);
      off_odd = _mm512_permutex2var_epi32(tab0_[2], bucket, tab1_[2]);
      return;
    }
    // lo | hi << 24 | off << 48 | odd << 63: the low and high halves of the records, then the fields.
    const __m512i g0 = _mm512_i32gather_epi64(_mm512_castsi512_si256(bucket), records_, 8);
    const __m512i g1 = _mm512_i32gather_epi64(_mm512_extracti64x4_epi64(bucket, 1), records_, 8);
    const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i low = _mm512_permutex2var_epi32(g0, even, g1);
    const __m512i high = _mm512_permutex2var_epi32(g0, _mm512_add_epi32(even, _mm512_set1_epi32(1)), g1);
    const __m512i mask24 = _mm512_set1_epi32(0xFFFFFF);
    lo = _mm512_and_si512(low, mask24);
    hi = _mm512_and_si512(_mm512_or_si512(_mm512_srli_epi32(low, 24), _mm512_slli_epi32(high, 8)), mask24);
    off_odd = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi32(high, 16), _mm512_set1_epi32(0x7FFF)),
                              _mm512_and_si512(high, _mm512_set1_epi32((int)0x80000000u)));
  }

 private:
  bool permuted_;
  __m128i width_;
  const long long* records_;
  __m512i tab0_[3], tab1_[3];
};

// normalise() of sixteen |x| bits: the shift that brings a subnormal's leading one to the implicit bit
// (0 for normals, which have 8 leading zeros or fewer), and frac, the 23 bits below that one.
inline __m512i normalise_shift(__m512i mag) {
  const __m512i lz = _mm512_lzcnt_epi32(_mm512_or_si512(mag, _mm512_set1_epi32(1)));
  return _mm512_max_epi32(_mm512_sub_epi32(lz, _mm512_set1_epi32(8)), _mm512_setzero_si512());
}
inline __m512i normalised_frac(__m512i mag, __m512i shift) {
  return _mm512_and_si512(_mm512_sllv_epi32(mag, shift), _mm512_set1_epi32(0x7FFFFF));
}

// Sixteen floats from x (fewer at the end: the rest read as 0). Whole-vector loads and stores: masked
// ones are several times slower on some cores.
inline __m512i load_bits(const float* x, int left) {
  return left >= 16 ? _mm512_loadu_si512(x) : _mm512_maskz_loadu_epi32((__mmask16)((1u << left) - 1), x);
}

// The records of the buckets of x[0..count): lo[i], hi[i], off_odd[i] = off | (base & 1) << 31.
void lns_lookup_f32(const float* x, int count, const uint32_t* table, uint32_t* lo, uint32_t* hi, uint32_t* off_odd) {
  const LnsLookup lookup(table);
  const __m512i abs_mask = _mm512_set1_epi32(0x7FFFFFFF);
  for (int i = 0; i < count; i += 16) {
    __m512i l, h, o;
    const __m512i mag = _mm512_and_si512(load_bits(x + i, count - i), abs_mask);
    lookup(normalised_frac(mag, normalise_shift(mag)), l, h, o);
    _mm512_store_si512(lo + i, l);  // whole vectors: the arrays have room for them
    _mm512_store_si512(hi + i, h);
    _mm512_store_si512(off_odd + i, o);
  }
}

// lns_value<kStochastic, float> of x[0..count) with words[i], sixteen at a time: the same steps in
// vector registers (GCC vectorises the scalar form with 64-bit lanes throughout the decision: twice
// the work). The decision ((ρ'·d + d - 1) >> c) < a of stochastic_up: 32×32-bit products of the even
// and the odd lanes, shifted, saturated to 32 bits and compared in 32-bit lanes.
template <typename Records>
void lns_stochastic_f32(const float* x, float* y, int count, const uint32_t* table, const LnsParams& p,
                        const uint32_t* words, int rand_shift, const Records& records) {
  const LnsLookup lookup(table);
  const __m512i w_min = _mm512_set1_epi32((int)table[1]), w_max = _mm512_set1_epi32((int)table[2]);
  const __m512i low = _mm512_set1_epi32((int)table[3]), high = _mm512_set1_epi32((int)table[4]);
  const __m512i below_mask = _mm512_set1_epi32((int)((1u << lookup.width()) - 1));
  const __m512i mant_mask = _mm512_set1_epi32(0x7FFFFF), implicit = _mm512_set1_epi32(0x800000);
  const __m512i abs_mask = _mm512_set1_epi32(0x7FFFFFFF), one = _mm512_set1_epi32(1), zero = _mm512_setzero_si512();
  const __m512i low32 = _mm512_set1_epi64(0xFFFFFFFFll);
  const __m512i w = _mm512_or_si512(_mm512_and_si512(w_min, mant_mask), implicit);
  const __m512i e_min_biased = _mm512_set1_epi32((int)(table[1] >> 23));
  const __m512i r_fill = _mm512_set1_epi32((int)(uint32_t)(((uint64_t)1 << rand_shift) - 1));
  const __mmask16 unsigned_format = p.is_signed ? (__mmask16)0 : (__mmask16)0xFFFF;
  for (int i = 0; i < count; i += 16) {
    const __m512i bits = load_bits(x + i, count - i);
    const __m512i mag = _mm512_and_si512(bits, abs_mask);
    const __mmask16 neg = _mm512_cmplt_epi32_mask(bits, zero);
    const __mmask16 is_nan = _mm512_cmpgt_epu32_mask(mag, _mm512_set1_epi32(0x7F800000));
    // normalise(), and e + 127, the biased exponent of |x|'s binade: max(exp, 1) - shift; delta = e_min - e.
    const __m512i shift = normalise_shift(mag), frac = normalised_frac(mag, shift);
    const __m512i e_biased = _mm512_sub_epi32(_mm512_max_epi32(_mm512_srli_epi32(mag, 23), one), shift);
    const __m512i delta = _mm512_sub_epi32(e_min_biased, e_biased);
    __m512i lo, hi, off_odd;
    records(i, frac, lo, hi, off_odd);
    const __m512i off = _mm512_and_si512(off_odd, abs_mask);
    const __m512i below = _mm512_and_si512(frac, below_mask);
    const __mmask16 ge = _mm512_cmpge_epu32_mask(below, off);
    const __mmask16 under = _mm512_cmplt_epu32_mask(mag, low), over = _mm512_cmpge_epu32_mask(mag, high);
    const __mmask16 no_threshold = _mm512_cmpgt_epu32_mask(off, below_mask);
    const __m512i threshold = _mm512_add_epi32(_mm512_sub_epi32(frac, below), off);
    const __m512i floor = _mm512_mask_blend_epi32(ge, lo, threshold);
    const __m512i ceiling = _mm512_mask_blend_epi32(ge | no_threshold, threshold, hi);
    // Up iff ((ρ'·d + d - 1) >> c) < a: in range d = ceiling - floor, a = |x|'s excess over floor, c = 32;
    // under w_min d = W, a = S, c = max(32 - delta, 0).
    const __m512i d = _mm512_mask_blend_epi32(under, _mm512_sub_epi32(ceiling, floor), w);
    const __m512i a = _mm512_mask_blend_epi32(under, _mm512_sub_epi32(frac, floor), _mm512_or_si512(frac, implicit));
    const __m512i c = _mm512_mask_blend_epi32(under, _mm512_set1_epi32(32),
                                              _mm512_max_epi32(_mm512_sub_epi32(_mm512_set1_epi32(32), delta), zero));
    const __m512i r = _mm512_or_si512(_mm512_loadu_si512(words + i), r_fill);
    const __m512i d1 = _mm512_sub_epi32(d, one);
    const __m512i even = _mm512_srlv_epi64(_mm512_add_epi64(_mm512_mul_epu32(r, d), _mm512_and_si512(d1, low32)),
                                           _mm512_and_si512(c, low32));
    const __m512i odd = _mm512_srlv_epi64(_mm512_add_epi64(_mm512_mul_epu32(_mm512_srli_epi64(r, 32), _mm512_srli_epi64(d, 32)),
                                                           _mm512_srli_epi64(d1, 32)),
                                          _mm512_srli_epi64(c, 32));
    const __m512i q = _mm512_mask_blend_epi32((__mmask16)0xAAAA, _mm512_min_epu64(even, low32),
                                              _mm512_slli_epi64(_mm512_min_epu64(odd, low32), 32));
    const __mmask16 up = _mm512_cmplt_epu32_mask(q, a);
    const __mmask16 up_from_zero = up & _mm512_cmple_epi32_mask(delta, _mm512_set1_epi32(32));
    const __m512i mant = _mm512_mask_blend_epi32(up, floor, ceiling);
    const __mmask16 to_zero = _mm512_cmpeq_epi32_mask(mag, zero) | (neg & unsigned_format) | (under & (__mmask16)~up_from_zero);
    const __m512i in_range = _mm512_add_epi32(_mm512_slli_epi32(e_biased, 23), mant);
    const __m512i magnitude = _mm512_mask_blend_epi32(under, _mm512_mask_blend_epi32(over, in_range, w_max), w_min);
    __m512i result = _mm512_maskz_mov_epi32((__mmask16)~to_zero, _mm512_or_si512(magnitude, _mm512_andnot_si512(abs_mask, bits)));
    result = _mm512_mask_blend_epi32(is_nan, result, bits);
    if (count - i >= 16) {
      _mm512_storeu_si512(y + i, result);
    } else {
      _mm512_mask_storeu_epi32(y + i, (__mmask16)((1u << (count - i)) - 1), result);
    }
  }
}

// Stochastic rounding over blocks of kBlock elements: the block's random words (those of cpu/loops.h:
// word i % 4 of group i / 4, whatever the thread count), then lns_stochastic_f32.
void lns_f32_stochastic_blocks(const float* in, float* out, int64_t n, const LnsParams& p, const uint32_t* table,
                               uint64_t seed, int rand_bits) {
  const int64_t blocks = (n + kBlock - 1) / kBlock;
  over_threads(blocks, n > kParallelThreshold, [=](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      alignas(64) uint32_t words[kBlock];
      const int64_t start = b * kBlock;
      const int count = (int)(n - start < kBlock ? n - start : kBlock);
      random_words_run(seed, (uint64_t)(b * (kBlock / 4)), (count + 3) / 4, words);
      if (table[6] != 0) {
        const LnsLookup lookup(table);
        lns_stochastic_f32(in + start, out + start, count, table, p, words, 32 - rand_bits,
                           [&lookup](int, __m512i frac, __m512i& l, __m512i& h, __m512i& o) { lookup(frac, l, h, o); });
      } else {
        constexpr int kPart = 256;  // records of a part of the block: the arrays stay in L1 beside the table
        alignas(64) uint32_t lo[kPart], hi[kPart], off_odd[kPart];
        for (int part = 0; part < count; part += kPart) {
          const int m = count - part < kPart ? count - part : kPart;
          lns_lookup_f32(in + start + part, m, table, lo, hi, off_odd);
          lns_stochastic_f32(in + start + part, out + start + part, m, table, p, words + part, 32 - rand_bits,
                             [&](int i, __m512i, __m512i& l, __m512i& h, __m512i& o) {
                               l = _mm512_load_si512(lo + i);
                               h = _mm512_load_si512(hi + i);
                               o = _mm512_load_si512(off_odd + i);
                             });
        }
      }
    }
  });
}
#elif QSIM_LNS_PERMUTES
// AVX2: the lookup of permuted records (eight lanes: one-register permutes of the quarters of each 32-word
// array that the table's buckets use, blended by bucket bits 3 and 4), for lns_f32_blocks in every mode.
// Without a vector lzcnt, a subnormal's normalised fraction is read from its exact conversion to float.
constexpr int kLnsPermuted = 32;

// The records of the buckets of x[0..count) in tables of QUARTERS·8 buckets: lo[i], hi[i], off_odd[i] =
// off | (base & 1) << 31; the arrays have room for whole vectors.
template <int QUARTERS>
void lookup_quarters(const float* x, int count, const uint32_t* table, uint32_t* lo, uint32_t* hi, uint32_t* off_odd) {
  const uint32_t* tab = table + table[6];
  const __m128i width = _mm_cvtsi32_si128((int)table[7]);
  const __m256i abs_mask = _mm256_set1_epi32(0x7FFFFFFF), mant_mask = _mm256_set1_epi32(0x7FFFFF);
  const __m256i smallest_normal = _mm256_set1_epi32(0x800000), lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  uint32_t* const fields[3] = {lo, hi, off_odd};
  for (int i = 0; i < count; i += 8) {
    const __m256i bits = count - i >= 8 ? _mm256_loadu_si256((const __m256i*)(x + i))
                                        : _mm256_maskload_epi32((const int*)(x + i),
                                                                _mm256_cmpgt_epi32(_mm256_set1_epi32(count - i), lanes));
    const __m256i mag = _mm256_and_si256(bits, abs_mask);
    const __m256i subnormal = _mm256_cmpgt_epi32(smallest_normal, mag);
    const __m256i exact = _mm256_castps_si256(_mm256_cvtepi32_ps(mag));  // (exact below 2^24)
    const __m256i frac = _mm256_and_si256(_mm256_blendv_epi8(mag, exact, subnormal), mant_mask);
    const __m256i bucket = _mm256_srl_epi32(frac, width);
    const __m256 bit3 = _mm256_castsi256_ps(_mm256_slli_epi32(bucket, 28));
    const __m256 bit4 = _mm256_castsi256_ps(_mm256_slli_epi32(bucket, 27));
    for (int k = 0; k < 3; ++k) {
      const __m256i* quarter = (const __m256i*)(tab + k * kLnsPermuted);
      __m256 q[QUARTERS];
      for (int j = 0; j < QUARTERS; ++j)
        q[j] = _mm256_castsi256_ps(_mm256_permutevar8x32_epi32(_mm256_loadu_si256(quarter + j), bucket));
      __m256 record = q[0];
      if constexpr (QUARTERS >= 2) record = _mm256_blendv_ps(q[0], q[1], bit3);
      if constexpr (QUARTERS == 4) record = _mm256_blendv_ps(record, _mm256_blendv_ps(q[2], q[3], bit3), bit4);
      _mm256_store_si256((__m256i*)(fields[k] + i), _mm256_castps_si256(record));
    }
  }
}

void lns_lookup_f32(const float* x, int count, const uint32_t* table, uint32_t* lo, uint32_t* hi, uint32_t* off_odd) {
  const int buckets = 1 << (23 - (int)table[7]);
  if (buckets <= 8) return lookup_quarters<1>(x, count, table, lo, hi, off_odd);
  if (buckets <= 16) return lookup_quarters<2>(x, count, table, lo, hi, off_odd);
  lookup_quarters<4>(x, count, table, lo, hi, off_odd);
}
#endif

#if QSIM_LNS_PERMUTES
// out = lns_value over blocks of kBlock elements with permuted records: each block's records looked up
// first (and, for stochastic rounding, its random words drawn: those of cpu/loops.h, word i % 4 of group
// i / 4, whatever the thread count), then the arithmetic, vectorised by GCC, with the records as arrays.
template <int MODE>
void lns_f32_blocks(const float* in, float* out, int64_t n, const LnsParams& p, const uint32_t* table, uint64_t seed,
                    int rand_bits) {
  // The fields are copied one by one: a captured struct is loaded whole in the loop, which GCC 12 does not vectorise.
  const int f = p.frac_bits, code_min = p.code_min, code_max = p.code_max, is_signed = p.is_signed, ties = p.exact_ties;
  const int width = (int)table[7], rand_shift = 32 - rand_bits;
  const int64_t blocks = (n + kBlock - 1) / kBlock;
  over_threads(blocks, n > kParallelThreshold, [=](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      alignas(64) uint32_t lo[kBlock], hi[kBlock], off_odd[kBlock], words[kBlock];
      const int64_t start = b * kBlock;
      const int count = (int)(n - start < kBlock ? n - start : kBlock);
      if (MODE == kStochastic) random_words_run(seed, (uint64_t)(b * (kBlock / 4)), (count + 3) / 4, words);
      lns_lookup_f32(in + start, count, table, lo, hi, off_odd);
      const float* x = in + start;
      float* y = out + start;
#pragma omp simd
      for (int i = 0; i < count; ++i) {
        const LnsParams params = {f, code_min, code_max, is_signed, ties};
        LnsRecord<float> rec;
        rec.off = off_odd[i] & 0x7FFFFFFFu;
        rec.lo = lo[i];
        rec.hi = hi[i];
        rec.base_odd = off_odd[i] >> 31;
        y[i] = lns_value_record<MODE, float>(x[i], params, table, width, rec, MODE == kStochastic ? words[i] : 0u,
                                             rand_shift);
      }
    }
  });
}

#endif

template <typename T>
void lns_cpu(const T* in, T* out, int64_t n, const LnsParams& p, const typename FloatTraits<T>::Bits* table,
             int rounding, uint64_t seed, int rand_bits) {
#if QSIM_LNS_PERMUTES
  if constexpr (std::is_same<T, float>::value) {
#if QSIM_LNS_BLOCKS
    if (rounding == kStochastic) return lns_f32_stochastic_blocks(in, out, n, p, table, seed, rand_bits);
#endif
    if (table[6] != 0)
      return with_mode(rounding, [&](auto mode) { lns_f32_blocks<decltype(mode)::value>(in, out, n, p, table, seed, rand_bits); });
  }
#endif
  // The fields are captured one by one: a captured struct is loaded whole in the loop, which GCC 12
  // does not vectorise.
  const int f = p.frac_bits, code_min = p.code_min, code_max = p.code_max, is_signed = p.is_signed, ties = p.exact_ties;
  dispatch_mode(rounding, in, out, n, seed, rand_bits,
                [f, code_min, code_max, is_signed, ties, table](auto mode, T x, uint32_t rand, int rand_shift) {
                  const LnsParams params = {f, code_min, code_max, is_signed, ties};
                  return lns_value<decltype(mode)::value, T>(x, params, table, rand, rand_shift);
                });
}

}  // namespace

void posit_cpu_f32(const float* in, float* out, int64_t n, int nbits, int es, int rounding, uint64_t seed, int rand_bits) {
  posit_cpu(in, out, n, nbits, es, rounding, seed, rand_bits);
}
void posit_cpu_f64(const double* in, double* out, int64_t n, int nbits, int es, int rounding, uint64_t seed, int rand_bits) {
  posit_cpu(in, out, n, nbits, es, rounding, seed, rand_bits);
}
void posit_cpu_bf16(const uint16_t* in, uint16_t* out, int64_t n, int nbits, int es, int rounding, uint64_t seed,
                    int rand_bits) {
  posit_cpu(reinterpret_cast<const BFloat16*>(in), reinterpret_cast<BFloat16*>(out), n, nbits, es, rounding, seed,
            rand_bits);
}
void posit_cpu_f16(const uint16_t* in, uint16_t* out, int64_t n, int nbits, int es, int rounding, uint64_t seed,
                   int rand_bits) {
  posit_cpu(reinterpret_cast<const Float16*>(in), reinterpret_cast<Float16*>(out), n, nbits, es, rounding, seed,
            rand_bits);
}
void lns_cpu_f32(const float* in, float* out, int64_t n, const LnsParams& p, const uint32_t* table, int rounding,
                 uint64_t seed, int rand_bits) {
  lns_cpu(in, out, n, p, table, rounding, seed, rand_bits);
}
void lns_cpu_f64(const double* in, double* out, int64_t n, const LnsParams& p, const uint64_t* table, int rounding,
                 uint64_t seed, int rand_bits) {
  lns_cpu(in, out, n, p, table, rounding, seed, rand_bits);
}

}  // namespace qsim
