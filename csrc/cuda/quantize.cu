// cuda/quantize.cu: the GPU kernels. The rounding arithmetic is rounding.h, the same header the CPU
// kernels include; this file only maps elements to threads. Each thread takes groups of four
// consecutive elements (one Philox call serves the four, keyed by the group index exactly as on the
// CPU, so both devices give identical bits for the same seed), loads them as a float4 when aligned,
// and strides over the grid. Compiled at first use with NVRTC (qsim/cuda.py) and checked with nvcc in CI.
#include "qsim/rounding.h"

namespace qsim {

template <int MODE, typename T>
__device__ __forceinline__ void quantize_groups(const T* __restrict__ in, T* __restrict__ out, long long n,
                                                const QuantParams& p, unsigned long long seed, int rand_shift) {
  const long long groups = (n + 3) / 4;
  const long long stride = (long long)gridDim.x * blockDim.x;
  for (long long g = (long long)blockIdx.x * blockDim.x + threadIdx.x; g < groups; g += stride) {
    uint32_t words[4] = {0u, 0u, 0u, 0u};
    if (MODE == kStochastic) random_words(seed, (uint64_t)g, words);
    const long long base = 4 * g;
    const bool whole = base + 3 < n;
    if (sizeof(T) == 4 && whole && ((reinterpret_cast<uintptr_t>(in) | reinterpret_cast<uintptr_t>(out)) & 15) == 0) {
      const float4 v = reinterpret_cast<const float4*>(in)[g];
      float4 r;
      r.x = quantize_element<MODE, float>(v.x, p, words[0], rand_shift);
      r.y = quantize_element<MODE, float>(v.y, p, words[1], rand_shift);
      r.z = quantize_element<MODE, float>(v.z, p, words[2], rand_shift);
      r.w = quantize_element<MODE, float>(v.w, p, words[3], rand_shift);
      reinterpret_cast<float4*>(out)[g] = r;
    } else {
      for (int j = 0; j < 4 && base + j < n; ++j) out[base + j] = quantize_element<MODE, T>(in[base + j], p, words[j], rand_shift);
    }
  }
}

}  // namespace qsim

// One extern "C" entry point per (mode, dtype): plain names for NVRTC, and every instantiation is
// compiled by the nvcc check. The grid description arrives field by field (kernel arguments must be
// plain scalars for the launcher).
#define QSIM_CUDA_KERNEL(NAME, MODE, T)                                                                   \
  extern "C" __global__ void NAME(const T* in, T* out, long long n, int man, int emin, int subnormals,   \
                                  int overflow, int has_inf, int neg_zero, int wrap_bits, int wrap_signed, \
                                  float max_pos_f, float max_neg_f, double max_pos_d, double max_neg_d,    \
                                  unsigned long long seed, int rand_shift) {                              \
    const qsim::QuantParams p = {man, emin, subnormals, overflow, has_inf, neg_zero, wrap_bits,           \
                                 wrap_signed, max_pos_f, max_neg_f, max_pos_d, max_neg_d};                \
    qsim::quantize_groups<MODE, T>(in, out, n, p, seed, rand_shift);                                      \
  }

#define QSIM_CUDA_KERNELS(SUFFIX, T)                                  \
  QSIM_CUDA_KERNEL(quantize_nearest_##SUFFIX, qsim::kNearest, T)        \
  QSIM_CUDA_KERNEL(quantize_nearest_away_##SUFFIX, qsim::kNearestAway, T) \
  QSIM_CUDA_KERNEL(quantize_toward_zero_##SUFFIX, qsim::kTowardZero, T) \
  QSIM_CUDA_KERNEL(quantize_up_##SUFFIX, qsim::kUp, T)                  \
  QSIM_CUDA_KERNEL(quantize_down_##SUFFIX, qsim::kDown, T)              \
  QSIM_CUDA_KERNEL(quantize_odd_##SUFFIX, qsim::kOdd, T)                \
  QSIM_CUDA_KERNEL(quantize_stochastic_##SUFFIX, qsim::kStochastic, T)

QSIM_CUDA_KERNELS(f32, float)
QSIM_CUDA_KERNELS(f64, double)
