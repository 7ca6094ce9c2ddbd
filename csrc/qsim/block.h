// qsim/block.h: formats whose elements share a scale per block (block floating point, OCP MX, NVFP4).
// Per block: (1) the largest magnitude, (2) the shared scale from it, (3) every element rounded with
// rounding.h onto the element grid scaled by that scale. Power-of-two scales shift the grid itself
// (emin and the limits move by the scale's exponent), so no division happens and no extra rounding
// either; other scales (an fp8 scale, as in NVFP4) divide, round and multiply back in T.
#pragma once
#include "qsim/rounding.h"

namespace qsim {

// How the exponent E of a power-of-two scale 2^E follows from the block's largest magnitude amax.
enum ScaleRule : int32_t {
  kScaleFloor = 0,  // E = floor(log2 amax) - emax: OCP MX v1.0 §6.3 (the block maximum may clip)
  kScaleCeil = 1,   // E = ceil(log2 amax) - emax
  kScaleRceil = 2,  // the smallest E with amax ≤ element_max · 2^E: never clips (NVIDIA's rounding)
  kScaleFormat = 3, // a scale in its own format: S = round(amax / element_max / tensor_scale)
};

struct BlockParams {
  QuantParams element;  // the element grid at scale 1
  QuantParams scale;    // the scale's grid, for kScaleFormat
  int32_t rule;         // ScaleRule
  int32_t element_emax; // floor(log2(element max))
  int32_t scale_emin;   // range of E for power-of-two scales (E8M0: -127..127)
  int32_t scale_emax;
  double element_max;
  double tensor_scale;  // a per-tensor factor above the block scales (NVFP4), else 1
};

// floor(log2 v) for a finite v > 0, from the bits (no libm: the same on every device).
template <typename T> QSIM_HD int floor_log2(T v) {
  typedef FloatTraits<T> F;
  typedef typename F::Bits Bits;
  const Bits bits = to_bits(v);
  const Bits exp_field = bits >> F::kMant;
  if (exp_field) return (int)exp_field - F::kBias;
  return bit_length((Bits)(bits & (((Bits)1 << F::kMant) - 1))) - 1 + 1 - F::kBias - F::kMant;
}

// The exponent of the power-of-two scale of a block with largest magnitude amax (> 0).
template <typename T> QSIM_HD int scale_exponent(T amax, const BlockParams& b) {
  const int e = floor_log2(amax);
  int E = e - b.element_emax;
  if (b.rule == kScaleCeil) E += amax != pow2<T>(e);
  if (b.rule == kScaleRceil) E += (double)amax > b.element_max * (double)pow2<double>(E);
  return E < b.scale_emin ? b.scale_emin : (E > b.scale_emax ? b.scale_emax : E);
}

// The element grid scaled by 2^E.
QSIM_HD QuantParams shift_grid(QuantParams p, int E) {
  const double factor = pow2<double>(E);
  p.emin += E;
  p.max_pos_d *= factor;
  p.max_neg_d *= factor;
  p.max_pos_f = (float)p.max_pos_d;  // exact unless beyond float's range, where nothing can exceed it
  p.max_neg_f = (float)p.max_neg_d;
  return p;
}

// Quantizes one block of n elements at in[0..n); `index0` is the first element's index for the
// random bits. A block holding NaN or ±inf has no scale: all of it becomes NaN (OCP MX v1.0 §6.3).
template <int MODE, typename T>
QSIM_HD void quantize_block(const T* in, T* out, int64_t n, int64_t index0, const BlockParams& b, uint64_t seed,
                            int rand_shift) {
  T amax = 0;
  bool finite = true;
  for (int64_t i = 0; i < n; ++i) {
    const T a = in[i] < 0 ? -in[i] : in[i];
    finite &= is_finite(a);
    amax = a > amax ? a : amax;
  }
  uint32_t words[4] = {0u, 0u, 0u, 0u};
  int64_t group = -1;
  if (!finite) {
    for (int64_t i = 0; i < n; ++i) out[i] = quiet_nan<T>();
    return;
  }
  if (b.rule == kScaleFormat) {
    // S = the scale format's rounding of amax / element_max / tensor_scale; elements x / (S·tensor_scale).
    const T wanted = (T)((double)amax / b.element_max / b.tensor_scale);
    const T scale = (T)((double)quantize_value<kNearest, T>(wanted, b.scale, 0u, 0) * b.tensor_scale);
    for (int64_t i = 0; i < n; ++i) {
      const int64_t index = index0 + i;
      if (MODE == kStochastic && index / 4 != group) { group = index / 4; random_words(seed, (uint64_t)group, words); }
      const T y = scale > (T)0 ? in[i] / scale : (T)0;
      out[i] = quantize_element<MODE, T>(y, b.element, words[index & 3], rand_shift) * scale;
    }
    return;
  }
  const QuantParams p = shift_grid(b.element, amax > (T)0 ? scale_exponent(amax, b) : b.scale_emin);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t index = index0 + i;
    if (MODE == kStochastic && index / 4 != group) { group = index / 4; random_words(seed, (uint64_t)group, words); }
    out[i] = quantize_element<MODE, T>(in[i], p, MODE == kStochastic ? words[index & 3] : 0u, rand_shift);
  }
}

}  // namespace qsim
