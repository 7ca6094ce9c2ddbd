// cuda/quantize.cu: the GPU kernels of fixed and floating point: the rounding arithmetic of rounding.h
// (the header the CPU kernels include) in the loop of cuda/loops.cuh. Compiled at first use with NVRTC
// (qsim/cuda.py) and checked with nvcc in CI.
#include "cuda/loops.cuh"
#include "qsim/rounding.h"

namespace qsim {

template <int MODE, typename T>
struct GridElement {
  QuantParams p;
  int rand_shift;
  __device__ T operator()(T x, uint32_t rand) const { return quantize_element<MODE, T>(x, p, rand, rand_shift); }
};

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
    qsim::round_groups<MODE, T>(in, out, n, seed, qsim::GridElement<MODE, T>{p, rand_shift});             \
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
