// cpu/tensor_scale.h: NVFP4's per-tensor factor above its block scales, from the tensor's largest magnitude
// (torchao's per_tensor_amax_to_scale), for the CPU kernel's one call and, through the bindings, for the
// GPU path (qsim/backends/block.py), so both compute it one way.
#pragma once
#include <cfloat>
#include <cmath>

namespace qsim {

// The float32 rounding of amax / largest, largest = max(element) · max(scale), so that block scales span the
// scale format's range; 1 (block scales alone) where that is not finite, or so small that the largest
// reciprocal of a block scale, 1 / factor / smallest_scale, overflows float32 (a tensor of zeros, NaN or inf,
// or of magnitudes below ~2^-110 for NVFP4).
inline double tensor_scale(double amax, double largest, double smallest_scale) {
  const double factor = (float)(amax / largest);
  const bool usable = std::isfinite(factor) && factor > 0 && (double)(float)(1 / factor) / smallest_scale <= FLT_MAX;
  return usable ? factor : 1.0;
}

}  // namespace qsim
