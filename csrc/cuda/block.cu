// cuda/block.cu: the GPU kernels of the block formats: one thread per block of elements, with the
// same block_scaling and quantize_in_block (qsim/block.h) as the CPU loop, so both devices give
// identical bits.
// Compiled at first use with NVRTC (qsim/cuda.py) and checked with nvcc in CI.
#include "qsim/block.h"

namespace qsim {

// One block on one thread: its maximum, then its elements (random words by global element index).
template <int MODE, typename T>
__device__ void block_on_thread(const T* in, T* out, long long n, long long index0, const BlockParams& b,
                                unsigned long long seed, int rand_shift) {
  T amax = 0;
  bool finite = true;
  for (long long i = 0; i < n; ++i) {
    const T a = in[i] < 0 ? -in[i] : in[i];
    finite &= is_finite(a);
    amax = a > amax ? a : amax;
  }
  const BlockScaling<T> s = block_scaling(amax, finite, b);
  uint32_t words[4] = {0u, 0u, 0u, 0u};
  for (long long i = 0; i < n; ++i) {
    const long long index = index0 + i;
    if (MODE == kStochastic && (i == 0 || (index & 3) == 0)) random_words(seed, (uint64_t)(index / 4), words);
    out[i] = quantize_in_block<MODE, T>(in[i], s, words[index & 3], rand_shift);
  }
}

}  // namespace qsim

#define QSIM_GRID_ARGS(P)                                                                              \
  int P##man, int P##emin, int P##subnormals, int P##overflow, int P##has_inf, int P##neg_zero,           \
      int P##wrap_bits, int P##wrap_signed, float P##max_pos_f, float P##max_neg_f, double P##max_pos_d, \
      double P##max_neg_d
#define QSIM_GRID(P)                                                                                     \
  {P##man, P##emin, P##subnormals, P##overflow, P##has_inf, P##neg_zero, P##wrap_bits, P##wrap_signed,   \
   P##max_pos_f, P##max_neg_f, P##max_pos_d, P##max_neg_d}

#define QSIM_BLOCK_KERNEL(NAME, MODE, T)                                                                    \
  extern "C" __global__ void NAME(const T* in, T* out, long long n, long long rows, long long row_length,   \
                                  long long block, QSIM_GRID_ARGS(e_), QSIM_GRID_ARGS(s_), int rule,         \
                                  int element_emax, int scale_emin, int scale_emax, int even_bits,           \
                                  double element_max, double tensor_scale, double smallest_scale,            \
                                  unsigned long long seed, int rand_shift) {                                 \
    const qsim::BlockParams b = {QSIM_GRID(e_), QSIM_GRID(s_), rule, element_emax, scale_emin, scale_emax,  \
                                 even_bits, element_max, tensor_scale, smallest_scale};                      \
    const long long per_row = (row_length + block - 1) / block;                                             \
    const long long stride = (long long)gridDim.x * blockDim.x;                                             \
    for (long long k = (long long)blockIdx.x * blockDim.x + threadIdx.x; k < rows * per_row; k += stride) { \
      const long long start = (k / per_row) * row_length + (k % per_row) * block;                           \
      const long long remaining = row_length - (k % per_row) * block;                                       \
      qsim::block_on_thread<MODE, T>(in + start, out + start, remaining < block ? remaining : block, start, \
                                     b, seed, rand_shift);                                                   \
    }                                                                                                        \
  }

#define QSIM_BLOCK_KERNELS(SUFFIX, T)                                                   \
  QSIM_BLOCK_KERNEL(quantize_blocks_nearest_##SUFFIX, qsim::kNearest, T)                 \
  QSIM_BLOCK_KERNEL(quantize_blocks_nearest_away_##SUFFIX, qsim::kNearestAway, T)        \
  QSIM_BLOCK_KERNEL(quantize_blocks_toward_zero_##SUFFIX, qsim::kTowardZero, T)          \
  QSIM_BLOCK_KERNEL(quantize_blocks_up_##SUFFIX, qsim::kUp, T)                           \
  QSIM_BLOCK_KERNEL(quantize_blocks_down_##SUFFIX, qsim::kDown, T)                       \
  QSIM_BLOCK_KERNEL(quantize_blocks_odd_##SUFFIX, qsim::kOdd, T)                         \
  QSIM_BLOCK_KERNEL(quantize_blocks_stochastic_##SUFFIX, qsim::kStochastic, T)

QSIM_BLOCK_KERNELS(f32, float)
QSIM_BLOCK_KERNELS(f64, double)
