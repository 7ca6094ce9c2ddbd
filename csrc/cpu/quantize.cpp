// cpu/quantize.cpp: fixed point and floating point on the CPU: the loop of cpu/loops.h around the
// element arithmetic of qsim/rounding.h.
#include "cpu/quantize.h"

#include <cfenv>
#include <limits>

#include "cpu/loops.h"
#include "qsim/rounding.h"

namespace qsim {
namespace {

// quantize_nearest_even and quantize_stochastic round with the FPU (the latter needs subnormals kept only),
// so they are taken only where this thread's floating-point environment is the default one: round to
// nearest-even, subnormals neither flushed nor read as zero (torch.set_flush_denormal(True) sets both),
// no exception traps. The other paths use integers only.
bool default_float_environment() {
  volatile float tiny = std::numeric_limits<float>::denorm_min(), one = 1.0f, quarter = 0x1p-25f, three_quarters = 0x1.8p-24f;
#if defined(__GLIBC__)
  if (fegetexcept() != 0) return false;
#endif
  return tiny + tiny != 0.0f && one + quarter == one && one + three_quarters != one;
}

template <typename T>
void quantize_cpu(const T* in, T* out, int64_t n, const QuantParams& p, int rounding, uint64_t seed, int rand_bits) {
  // The wrap-around, nearest-even and stochastic paths are chosen once per call, so no loop branches.
  if (p.overflow == kWrap) {
    dispatch_mode(rounding, in, out, n, seed, rand_bits, [p](auto mode, T x, uint32_t rand, int rand_shift) {
      return quantize_wrap<decltype(mode)::value, T>(x, p, rand, rand_shift);
    });
  } else if (rounding == kNearest && nearest_even_applies<T>(p) && default_float_environment()) {
    round_loop<kNearest>(in, out, n, seed, rand_bits, [p](auto, T x, uint32_t, int) { return quantize_nearest_even<T>(x, p); });
  } else if (rounding == kStochastic && stochastic_applies<T>(p) && default_float_environment()) {
    round_loop<kStochastic>(in, out, n, seed, rand_bits, [p](auto, T x, uint32_t rand, auto rand_shift) {
      return quantize_stochastic<T>(x, p, rand, rand_shift);
    });
  } else {
    dispatch_mode(rounding, in, out, n, seed, rand_bits, [p](auto mode, T x, uint32_t rand, int rand_shift) {
      return quantize_value<decltype(mode)::value, T>(x, p, rand, rand_shift);
    });
  }
}

}  // namespace

void quantize_cpu_f32(const float* in, float* out, int64_t n, const QuantParams& p, int rounding, uint64_t seed, int rand_bits) {
  quantize_cpu(in, out, n, p, rounding, seed, rand_bits);
}

void quantize_cpu_f64(const double* in, double* out, int64_t n, const QuantParams& p, int rounding, uint64_t seed, int rand_bits) {
  quantize_cpu(in, out, n, p, rounding, seed, rand_bits);
}

}  // namespace qsim
