// cpu/quantize.cpp: fixed point and floating point on the CPU: the loop of cpu/loops.h around the
// element arithmetic of qsim/rounding.h, for float32/float64 tensors and, rounded in float32 as they
// load, bfloat16/float16 ones.
#include "cpu/quantize.h"

#include "cpu/loops.h"
#include "qsim/rounding.h"

namespace qsim {
namespace {

template <typename S>
void quantize_cpu(const S* in, S* out, int64_t n, const QuantParams& p, int rounding, uint64_t seed, int rand_bits,
                  int64_t first = 0) {
  typedef typename Storage<S>::Compute T;
  // The wrap-around path, the short paths (nearest-even; stochastic and the directed modes) and the generic one
  // are chosen once per call, so no loop branches.
  if (p.overflow == kWrap) {
    dispatch_mode(rounding, in, out, n, seed, rand_bits, [p](auto mode, T x, uint32_t rand, int rand_shift) {
      return quantize_wrap<decltype(mode)::value, T>(x, p, rand, rand_shift);
    }, first);
  } else if (rounding == kNearest && nearest_even_applies<T>(p) && default_float_environment()) {
    round_loop<kNearest>(in, out, n, seed, rand_bits, [p](auto, T x, uint32_t, int) { return quantize_nearest_even<T>(x, p); });
  } else if (rounding != kNearest && truncating_applies<T>(p, rounding) && default_float_environment()) {
    const TruncatingShortPath<T> path(p);
    with_mode(rounding, [&](auto mode) {
      if constexpr (decltype(mode)::value != kNearest)
        round_loop<decltype(mode)::value>(in, out, n, seed, rand_bits, [path](auto m, T x, uint32_t rand, auto rand_shift) {
          return path.template operator()<decltype(m)::value>(x, rand, rand_shift);
        }, first);
    });
  } else {
    dispatch_mode(rounding, in, out, n, seed, rand_bits, [p](auto mode, T x, uint32_t rand, int rand_shift) {
      return quantize_value<decltype(mode)::value, T>(x, p, rand, rand_shift);
    }, first);
  }
}

}  // namespace

void quantize_cpu_f32(const float* in, float* out, int64_t n, const QuantParams& p, int rounding, uint64_t seed, int rand_bits) {
  quantize_cpu(in, out, n, p, rounding, seed, rand_bits);
}

void quantize_span_f32(const float* in, float* out, int64_t n, int64_t first, const QuantParams& p, int rounding,
                       uint64_t seed, int rand_bits) {
  quantize_cpu(in, out, n, p, rounding, seed, rand_bits, first);
}

void quantize_cpu_f64(const double* in, double* out, int64_t n, const QuantParams& p, int rounding, uint64_t seed, int rand_bits) {
  quantize_cpu(in, out, n, p, rounding, seed, rand_bits);
}

void quantize_cpu_bf16(const uint16_t* in, uint16_t* out, int64_t n, const QuantParams& p, int rounding, uint64_t seed,
                       int rand_bits) {
  quantize_cpu(reinterpret_cast<const BFloat16*>(in), reinterpret_cast<BFloat16*>(out), n, p, rounding, seed, rand_bits);
}

void quantize_cpu_f16(const uint16_t* in, uint16_t* out, int64_t n, const QuantParams& p, int rounding, uint64_t seed,
                      int rand_bits) {
  quantize_cpu(reinterpret_cast<const Float16*>(in), reinterpret_cast<Float16*>(out), n, p, rounding, seed, rand_bits);
}

}  // namespace qsim
