// cpu/random.h: the random words of a run of consecutive Philox groups, as the CPU loops draw them:
// words[4*g + j] = word j of random_words(seed, first_group + g) (qsim/philox.h), so results stay those
// of the GPU for the same seed. With AVX-512 groups go through the ten rounds eight to a vector, one group
// per 64-bit lane, each state word in the low half of its lane: vpmuludq multiplies exactly those
// halves into the full 64-bit product, whose low half is already the next round's c1 (c3) and whose
// high half is one shift away from c0 (c2), and the two xors of a round are one vpternlogd: six
// instructions per round for eight groups. (Sixteen groups in 32-bit lanes need the odd lanes shifted
// down, two multiplies and two blends to put each half back in its lane: eight per round.) GCC
// vectorises the scalar Philox with 64-bit lanes and 64-bit multiplies (vpmullq), about three times slower.
#pragma once
#include "qsim/philox.h"

#if defined(__AVX512F__) || defined(__AVX2__)
#include <immintrin.h>
#endif

namespace qsim {

#if defined(__AVX512F__)
// Philox4x32-10 of the 8·B groups first_group, first_group + 1, ..., stored as interleaved words.
// B independent batches of eight go through each round together: fewer wait on the latency of each
// round's multiply-shift-xor chain (six keep 24 state vectors in registers: the most without spilling).
template <int B>
void random_words_batches(uint64_t seed, uint64_t first_group, uint32_t* words) {
  const __m512i lanes = _mm512_setr_epi64(0, 1, 2, 3, 4, 5, 6, 7);
  const __m512i m0 = _mm512_set1_epi64(0xD2511F53u), m1 = _mm512_set1_epi64(0xCD9E8D57u);
  // Round 1 from the counter (group low word, group high word, 0, 0): the product with c2 = 0 vanishes.
  const __m512i key0 = _mm512_set1_epi32((int)(uint32_t)seed), key1 = _mm512_set1_epi32((int)(uint32_t)(seed >> 32));
  __m512i c0[B], c1[B], c2[B], c3[B];
  for (int b = 0; b < B; ++b) {
    const __m512i group = _mm512_add_epi64(_mm512_set1_epi64((long long)(first_group + 8 * (uint64_t)b)), lanes);
    const __m512i p0 = _mm512_mul_epu32(group, m0);
    c0[b] = _mm512_xor_si512(_mm512_srli_epi64(group, 32), key0);
    c1[b] = _mm512_setzero_si512();
    c2[b] = _mm512_xor_si512(_mm512_srli_epi64(p0, 32), key1);
    c3[b] = p0;
  }
  uint32_t k0 = (uint32_t)seed, k1 = (uint32_t)(seed >> 32);
  for (int round = 1; round < 10; ++round) {
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
    const __m512i round_key0 = _mm512_set1_epi32((int)k0), round_key1 = _mm512_set1_epi32((int)k1);
    for (int b = 0; b < B; ++b) {
      // The high halves of the lanes of c0..c3 hold leftovers that no multiply reads and no output keeps.
      const __m512i p0 = _mm512_mul_epu32(c0[b], m0), p1 = _mm512_mul_epu32(c2[b], m1);
      c0[b] = _mm512_ternarylogic_epi64(_mm512_srli_epi64(p1, 32), c1[b], round_key0, 0x96);  // a ^ b ^ c
      c1[b] = p1;
      c2[b] = _mm512_ternarylogic_epi64(_mm512_srli_epi64(p0, 32), c3[b], round_key1, 0x96);
      c3[b] = p0;
    }
  }
  // To group order: lane g of w01 = (c0, c1) of group g, of w23 = (c2, c3); the outputs interleave them.
  const __m512i first_half = _mm512_setr_epi64(0, 8, 1, 9, 2, 10, 3, 11), second_half = _mm512_setr_epi64(4, 12, 5, 13, 6, 14, 7, 15);
  for (int b = 0; b < B; ++b) {
    const __m512i w01 = _mm512_mask_shuffle_epi32(c0[b], 0xAAAA, c1[b], _MM_PERM_CCAA);
    const __m512i w23 = _mm512_mask_shuffle_epi32(c2[b], 0xAAAA, c3[b], _MM_PERM_CCAA);
    _mm512_storeu_si512(words + 32 * b, _mm512_permutex2var_epi64(w01, first_half, w23));
    _mm512_storeu_si512(words + 32 * b + 16, _mm512_permutex2var_epi64(w01, second_half, w23));
  }
}
#elif defined(__AVX2__)
// The same with AVX2, four groups to a vector (two xors for each vpternlogd). Without it GCC left the
// scalar Philox half vectorised, ~4x slower: it made most of the cost of stochastic rounding.
template <int B>
void random_words_batches(uint64_t seed, uint64_t first_group, uint32_t* words) {
  const __m256i lanes = _mm256_setr_epi64x(0, 1, 2, 3);
  const __m256i m0 = _mm256_set1_epi64x(0xD2511F53u), m1 = _mm256_set1_epi64x(0xCD9E8D57u);
  const __m256i key0 = _mm256_set1_epi32((int)(uint32_t)seed), key1 = _mm256_set1_epi32((int)(uint32_t)(seed >> 32));
  __m256i c0[B], c1[B], c2[B], c3[B];
  for (int b = 0; b < B; ++b) {
    const __m256i group = _mm256_add_epi64(_mm256_set1_epi64x((long long)(first_group + 4 * (uint64_t)b)), lanes);
    const __m256i p0 = _mm256_mul_epu32(group, m0);
    c0[b] = _mm256_xor_si256(_mm256_srli_epi64(group, 32), key0);
    c1[b] = _mm256_setzero_si256();
    c2[b] = _mm256_xor_si256(_mm256_srli_epi64(p0, 32), key1);
    c3[b] = p0;
  }
  uint32_t k0 = (uint32_t)seed, k1 = (uint32_t)(seed >> 32);
  for (int round = 1; round < 10; ++round) {
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
    const __m256i round_key0 = _mm256_set1_epi32((int)k0), round_key1 = _mm256_set1_epi32((int)k1);
    for (int b = 0; b < B; ++b) {
      const __m256i p0 = _mm256_mul_epu32(c0[b], m0), p1 = _mm256_mul_epu32(c2[b], m1);
      c0[b] = _mm256_xor_si256(_mm256_xor_si256(_mm256_srli_epi64(p1, 32), c1[b]), round_key0);
      c1[b] = p1;
      c2[b] = _mm256_xor_si256(_mm256_xor_si256(_mm256_srli_epi64(p0, 32), c3[b]), round_key1);
      c3[b] = p0;
    }
  }
  // Lane g of w01 = (c0, c1) of group g, of w23 = (c2, c3); the outputs interleave them, in group order.
  for (int b = 0; b < B; ++b) {
    const __m256i w01 = _mm256_blend_epi32(c0[b], _mm256_slli_epi64(c1[b], 32), 0xAA);
    const __m256i w23 = _mm256_blend_epi32(c2[b], _mm256_slli_epi64(c3[b], 32), 0xAA);
    const __m256i even = _mm256_unpacklo_epi64(w01, w23), odd = _mm256_unpackhi_epi64(w01, w23);  // groups 0, 2 | 1, 3
    _mm256_storeu_si256((__m256i*)(words + 16 * b), _mm256_permute2x128_si256(even, odd, 0x20));
    _mm256_storeu_si256((__m256i*)(words + 16 * b + 8), _mm256_permute2x128_si256(even, odd, 0x31));
  }
}
#endif

// words[4*g + j] = word j of random_words(seed, first_group + g) for g < groups: six batches at a time,
// then part-runs of 32, 16 and 8 groups (AVX2: three batches of four, then 8 and 4: twelve state vectors
// of its sixteen registers), and only the last few groups one at a time.
inline void random_words_run(uint64_t seed, uint64_t first_group, int groups, uint32_t* words) {
  int g = 0;
#if defined(__AVX512F__)
  for (; g + 48 <= groups; g += 48) random_words_batches<6>(seed, first_group + (uint64_t)g, words + 4 * g);
  if (g + 32 <= groups) { random_words_batches<4>(seed, first_group + (uint64_t)g, words + 4 * g); g += 32; }
  if (g + 16 <= groups) { random_words_batches<2>(seed, first_group + (uint64_t)g, words + 4 * g); g += 16; }
  if (g + 8 <= groups) { random_words_batches<1>(seed, first_group + (uint64_t)g, words + 4 * g); g += 8; }
#elif defined(__AVX2__)
  for (; g + 12 <= groups; g += 12) random_words_batches<3>(seed, first_group + (uint64_t)g, words + 4 * g);
  if (g + 8 <= groups) { random_words_batches<2>(seed, first_group + (uint64_t)g, words + 4 * g); g += 8; }
  if (g + 4 <= groups) { random_words_batches<1>(seed, first_group + (uint64_t)g, words + 4 * g); g += 4; }
#endif
  for (uint32_t* w = words + 4 * g; g < groups; ++g, w += 4) random_words(seed, first_group + (uint64_t)g, w);
}

}  // namespace qsim
