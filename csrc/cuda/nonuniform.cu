// cuda/nonuniform.cu: GPU kernels for posits (qsim/posit.h) and logarithmic numbers (qsim/lns.h), the
// headers the CPU loops include, in the loop of cuda/loops.cuh. Compiled at first use with NVRTC
// (qsim/cuda.py) and checked with nvcc in CI.
#include "cuda/loops.cuh"
#include "qsim/lns.h"
#include "qsim/posit.h"

namespace qsim {

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
