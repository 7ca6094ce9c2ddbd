// cuda/nonuniform.cu: GPU kernels for posits (qsim/posit.h) and logarithmic numbers (qsim/lns.h), the
// headers the CPU loops include. One thread per group of four consecutive elements, grid-stride, with
// one Philox call per group keyed by the group index exactly as on the CPU (element i takes word i % 4
// of random_words(seed, i / 4)), so both devices give identical bits for the same seed. Compiled at
// first use with NVRTC (qsim/cuda.py) and checked with nvcc in CI.
#include "qsim/lns.h"
#include "qsim/posit.h"

namespace qsim {

// out[i] = element(in[i], random word of i) for the n elements; `element` is a device functor.
template <int MODE, typename T, typename Element>
__device__ __forceinline__ void round_groups(const T* __restrict__ in, T* __restrict__ out, long long n,
                                             unsigned long long seed, const Element& element) {
  const long long groups = (n + 3) / 4;
  const long long stride = (long long)gridDim.x * blockDim.x;
  for (long long g = (long long)blockIdx.x * blockDim.x + threadIdx.x; g < groups; g += stride) {
    uint32_t words[4] = {0u, 0u, 0u, 0u};
    if (MODE == kStochastic) random_words(seed, (uint64_t)g, words);
    const long long base = 4 * g;
    for (int j = 0; j < 4 && base + j < n; ++j) out[base + j] = element(in[base + j], words[j]);
  }
}

template <int MODE, typename T>
struct PositElement {
  int nbits, es, rand_shift;
  __device__ T operator()(T x, uint32_t rand) const { return posit_value<MODE, T>(x, nbits, es, rand, rand_shift); }
};

template <int MODE, typename T>
struct LnsElement {
  LnsParams p;
  const typename FloatTraits<T>::Bits* table;
  int rand_shift;
  __device__ T operator()(T x, uint32_t rand) const { return lns_value<MODE, T>(x, p, table, rand, rand_shift); }
};

}  // namespace qsim

// One extern "C" entry point per (family, mode, dtype), plain names for NVRTC. An LNS table arrives as
// the device address of its uint32 (float32) or uint64 (float64) array (qsim/backends/logarithmic.py).
#define QSIM_POSIT_KERNEL(NAME, MODE, T)                                                                    \
  extern "C" __global__ void NAME(const T* in, T* out, long long n, int nbits, int es, unsigned long long seed, \
                                  int rand_shift) {                                                         \
    const qsim::PositElement<MODE, T> element = {nbits, es, rand_shift};                                    \
    qsim::round_groups<MODE, T>(in, out, n, seed, element);                                                 \
  }

#define QSIM_LNS_KERNEL(NAME, MODE, T)                                                                       \
  extern "C" __global__ void NAME(const T* in, T* out, long long n, int frac_bits, int code_min, int code_max, \
                                  int is_signed, int exact_ties, unsigned long long table,                   \
                                  unsigned long long seed, int rand_shift) {                                 \
    const qsim::LnsElement<MODE, T> element = {                                                              \
        {frac_bits, code_min, code_max, is_signed, exact_ties},                                              \
        reinterpret_cast<const typename qsim::FloatTraits<T>::Bits*>(table), rand_shift};                    \
    qsim::round_groups<MODE, T>(in, out, n, seed, element);                                                  \
  }

#define QSIM_FAMILY_KERNELS(KERNEL, FAMILY, SUFFIX, T)                   \
  KERNEL(FAMILY##_nearest_##SUFFIX, qsim::kNearest, T)                   \
  KERNEL(FAMILY##_nearest_away_##SUFFIX, qsim::kNearestAway, T)          \
  KERNEL(FAMILY##_toward_zero_##SUFFIX, qsim::kTowardZero, T)            \
  KERNEL(FAMILY##_up_##SUFFIX, qsim::kUp, T)                             \
  KERNEL(FAMILY##_down_##SUFFIX, qsim::kDown, T)                         \
  KERNEL(FAMILY##_odd_##SUFFIX, qsim::kOdd, T)                           \
  KERNEL(FAMILY##_stochastic_##SUFFIX, qsim::kStochastic, T)

QSIM_FAMILY_KERNELS(QSIM_POSIT_KERNEL, posit, f32, float)
QSIM_FAMILY_KERNELS(QSIM_POSIT_KERNEL, posit, f64, double)
QSIM_FAMILY_KERNELS(QSIM_LNS_KERNEL, lns, f32, float)
QSIM_FAMILY_KERNELS(QSIM_LNS_KERNEL, lns, f64, double)
