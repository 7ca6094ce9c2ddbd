// cpu/quantize.cpp: fixed point and floating point on the CPU: the loop of cpu/loops.h around the
// element arithmetic of qsim/rounding.h.
#include "cpu/quantize.h"

#include "cpu/loops.h"
#include "qsim/rounding.h"

namespace qsim {
namespace {

template <typename T>
void quantize_cpu(const T* in, T* out, int64_t n, const QuantParams& p, int rounding, uint64_t seed, int rand_bits) {
  // The wrap-around path is chosen once per call, so the common loop has no branch.
  if (p.overflow == kWrap) {
    dispatch_mode(rounding, in, out, n, seed, rand_bits, [p](auto mode, T x, uint32_t rand, int rand_shift) {
      return quantize_wrap<decltype(mode)::value, T>(x, p, rand, rand_shift);
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
