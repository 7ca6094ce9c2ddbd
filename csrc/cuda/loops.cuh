// cuda/loops.cuh: the one GPU loop of every elementwise format. One thread per group of four
// consecutive elements, grid-stride, one Philox call per group keyed by the group index exactly as on
// the CPU (element i takes word i % 4 of random_words(seed, i / 4)), so both devices give identical bits
// for the same seed. Aligned float groups move as one float4.
#pragma once
#include "qsim/philox.h"

namespace qsim {

// out[i] = element(in[i], random word of i) for the n elements; `element` is a device functor.
template <int MODE, typename T, typename Element>
__device__ __forceinline__ void round_groups(const T* __restrict__ in, T* __restrict__ out, long long n,
                                             unsigned long long seed, const Element& element) {
  const long long groups = (n + 3) / 4;
  const long long stride = (long long)gridDim.x * blockDim.x;
  const bool aligned = sizeof(T) == 4 && ((reinterpret_cast<uintptr_t>(in) | reinterpret_cast<uintptr_t>(out)) & 15) == 0;
  for (long long g = (long long)blockIdx.x * blockDim.x + threadIdx.x; g < groups; g += stride) {
    uint32_t words[4] = {0u, 0u, 0u, 0u};
    if (MODE == kStochastic) random_words(seed, (uint64_t)g, words);
    const long long base = 4 * g;
    if (aligned && base + 3 < n) {
      const float4 v = reinterpret_cast<const float4*>(in)[g];
      float4 r;
      r.x = (float)element((T)v.x, words[0]);
      r.y = (float)element((T)v.y, words[1]);
      r.z = (float)element((T)v.z, words[2]);
      r.w = (float)element((T)v.w, words[3]);
      reinterpret_cast<float4*>(out)[g] = r;
    } else {
      for (int j = 0; j < 4 && base + j < n; ++j) out[base + j] = element(in[base + j], words[j]);
    }
  }
}

}  // namespace qsim
