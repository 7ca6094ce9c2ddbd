// cpu/random.h: the random words of a run of consecutive Philox groups, as the CPU loops draw them:
// words[4*g + j] = word j of random_words(seed, first_group + g) (qsim/philox.h), so results stay those
// of the GPU for the same seed. With AVX-512 groups go through the ten rounds sixteen to a vector, one group
// per 32-bit lane: GCC vectorises the scalar Philox with 64-bit lanes and 64-bit multiplies (vpmullq),
// at about a third of the speed. Lane l of the high and low halves of a 32×32-bit product comes from
// vpmuludq, which multiplies the even lanes; the odd lanes are shifted down for a second one.
#pragma once
#include "qsim/philox.h"

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

namespace qsim {

#if defined(__AVX512F__)
// hi, lo = the 64-bit products a·m split in halves, lane by lane.
inline void mulhilo32x16(__m512i a, __m512i m, __m512i& hi, __m512i& lo) {
  const __m512i even = _mm512_mul_epu32(a, m);                         // lanes 0, 2, ...: full products
  const __m512i odd = _mm512_mul_epu32(_mm512_srli_epi64(a, 32), m);  // lanes 1, 3, ...
  hi = _mm512_mask_blend_epi32(0xAAAA, _mm512_srli_epi64(even, 32), odd);
  lo = _mm512_mask_blend_epi32(0xAAAA, even, _mm512_slli_epi64(odd, 32));
}

// Philox4x32-10 of the 16·kBatches groups first_group, first_group + 1, ..., stored as interleaved words.
// kBatches independent batches of sixteen go through each round together: one batch alone waits on the
// latency of each round's multiply-shift-blend-xor chain.
constexpr int kBatches = 4;

inline void random_words_batches(uint64_t seed, uint64_t first_group, uint32_t* words) {
  const __m512i lanes = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  const __m512i m0 = _mm512_set1_epi32((int)0xD2511F53u), m1 = _mm512_set1_epi32((int)0xCD9E8D57u);
  __m512i c0[kBatches], c1[kBatches], c2[kBatches], c3[kBatches];
  for (int b = 0; b < kBatches; ++b) {
    // counter = (group low word, group high word, 0, 0); a low word that wraps carries into the high one.
    const uint64_t group = first_group + 16 * (uint64_t)b;
    const __m512i low = _mm512_set1_epi32((int)(uint32_t)group);
    c0[b] = _mm512_add_epi32(low, lanes);
    c1[b] = _mm512_set1_epi32((int)(uint32_t)(group >> 32));
    c1[b] = _mm512_mask_add_epi32(c1[b], _mm512_cmplt_epu32_mask(c0[b], low), c1[b], _mm512_set1_epi32(1));
    c2[b] = c3[b] = _mm512_setzero_si512();
  }
  uint32_t k0 = (uint32_t)seed, k1 = (uint32_t)(seed >> 32);
  for (int round = 0; round < 10; ++round) {
    const __m512i key0 = _mm512_set1_epi32((int)k0), key1 = _mm512_set1_epi32((int)k1);
    for (int b = 0; b < kBatches; ++b) {
      __m512i hi0, lo0, hi1, lo1;
      mulhilo32x16(c0[b], m0, hi0, lo0);
      mulhilo32x16(c2[b], m1, hi1, lo1);
      c0[b] = _mm512_xor_si512(_mm512_xor_si512(hi1, c1[b]), key0);
      c1[b] = lo1;
      c2[b] = _mm512_xor_si512(_mm512_xor_si512(hi0, c3[b]), key1);
      c3[b] = lo0;
    }
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  for (int b = 0; b < kBatches; ++b) {
    // Transpose to group order: within each 128-bit block i, u_j holds group 4i + j's four words; then
    // output vector i gathers block i of u0..u3.
    const __m512i t0 = _mm512_unpacklo_epi32(c0[b], c1[b]), t1 = _mm512_unpackhi_epi32(c0[b], c1[b]);
    const __m512i t2 = _mm512_unpacklo_epi32(c2[b], c3[b]), t3 = _mm512_unpackhi_epi32(c2[b], c3[b]);
    const __m512i u0 = _mm512_unpacklo_epi64(t0, t2), u1 = _mm512_unpackhi_epi64(t0, t2);
    const __m512i u2 = _mm512_unpacklo_epi64(t1, t3), u3 = _mm512_unpackhi_epi64(t1, t3);
    const __m512i v01_lo = _mm512_shuffle_i32x4(u0, u1, 0x44), v23_lo = _mm512_shuffle_i32x4(u2, u3, 0x44);
    const __m512i v01_hi = _mm512_shuffle_i32x4(u0, u1, 0xEE), v23_hi = _mm512_shuffle_i32x4(u2, u3, 0xEE);
    uint32_t* out = words + 64 * b;
    _mm512_storeu_si512(out, _mm512_shuffle_i32x4(v01_lo, v23_lo, 0x88));
    _mm512_storeu_si512(out + 16, _mm512_shuffle_i32x4(v01_lo, v23_lo, 0xDD));
    _mm512_storeu_si512(out + 32, _mm512_shuffle_i32x4(v01_hi, v23_hi, 0x88));
    _mm512_storeu_si512(out + 48, _mm512_shuffle_i32x4(v01_hi, v23_hi, 0xDD));
  }
}
#endif

// words[4*g + j] = word j of random_words(seed, first_group + g) for g < groups.
inline void random_words_run(uint64_t seed, uint64_t first_group, int groups, uint32_t* words) {
  int g = 0;
#if defined(__AVX512F__)
  for (; g + 16 * kBatches <= groups; g += 16 * kBatches) random_words_batches(seed, first_group + (uint64_t)g, words + 4 * g);
#endif
  for (uint32_t* w = words + 4 * g; g < groups; ++g, w += 4) random_words(seed, first_group + (uint64_t)g, w);
}

}  // namespace qsim
