// qsim/block.h: formats whose elements share a scale per block (block floating point, OCP MX, NVFP4).
// Per block: (1) the largest magnitude, (2) the shared scale from it (block_scaling), (3) every element
// rounded with rounding.h onto the element grid scaled by that scale (quantize_in_block). The loops over
// blocks are the devices' own (cpu/block.cpp, cuda/block.cu); the arithmetic is here, once. Power-of-two scales shift the grid itself
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
  const int subnormal = bit_length((Bits)(bits & (((Bits)1 << F::kMant) - 1)) | (Bits)1) - F::kBias - F::kMant;
  return (int)select((uint32_t)(exp_field != 0), (uint32_t)((int)exp_field - F::kBias), (uint32_t)subnormal);
}

// The exponent of the power-of-two scale of a block with largest magnitude amax (an all-zero block
// takes the smallest). Branch-free (the rule's terms are 0/1 flags), so that a CPU loop over many
// blocks' maxima vectorises.
template <typename T> QSIM_HD int scale_exponent(T amax, const BlockParams& b) {
  const int e = floor_log2(amax);
  int E = e - b.element_emax;
  E += (int)((uint32_t)(b.rule == kScaleCeil) & (uint32_t)(amax != pow2<T>(e)));
  E += (int)((uint32_t)(b.rule == kScaleRceil) & (uint32_t)((double)amax > b.element_max * (double)pow2<double>(E)));
  E = min_int(max_int(E, b.scale_emin), b.scale_emax);
  return (int)select((uint32_t)(amax > (T)0), (uint32_t)E, (uint32_t)b.scale_emin);
}

// A limit of the element grid (max_pos_d or max_neg_d) scaled by 2^E, in T. The float limits round to
// nearest. That is safe: a limit not representable in float32 has more significant bits than float32, so
// the element grid is finer than the input's and a float32 input lies on it already (no rounding,
// nothing goes past the limit); beyond float's range nothing can.
template <typename T> QSIM_HD T shifted_limit(double limit, int E) { return (T)(limit * pow2<double>(E)); }

// The element grid scaled by 2^E: its smallest normal exponent moves to emin + E, its limits scale.
QSIM_HD QuantParams shift_grid(QuantParams p, int E) {
  p.emin += E;
  p.max_pos_f = shifted_limit<float>(p.max_pos_d, E);
  p.max_neg_f = shifted_limit<float>(p.max_neg_d, E);
  p.max_pos_d = shifted_limit<double>(p.max_pos_d, E);
  p.max_neg_d = shifted_limit<double>(p.max_neg_d, E);
  return p;
}

// What a block's elements are rounded with, once its largest magnitude is known.
template <typename T>
struct BlockScaling {
  QuantParams grid;  // the element grid, shifted by a power-of-two scale
  T scale;           // a scale to divide by and multiply back (kScaleFormat), else 1
  bool nan;          // the block held NaN or ±inf: it has no scale, all of it becomes NaN (OCP MX v1.0 §6.3)
};

// A scale in its own format (kScaleFormat): S = the scale format's rounding of amax / element_max /
// tensor_scale, times tensor_scale. An all-zero block's maximum is +0 whatever order a vectorised
// reduction met -0 and +0 in (the GPU scans in order from +0), so its scale is +0 on every device.
// Branch-free, so that a CPU loop over many blocks' maxima vectorises.
template <typename T>
QSIM_HD T format_scale(T amax, const QuantParams& scale_grid, double element_max, double tensor_scale) {
  const T wanted = (T)((double)select((uint32_t)(amax > (T)0), amax, (T)0) / element_max / tensor_scale);
  return (T)((double)quantize_value<kNearest, T>(wanted, scale_grid, 0u, 0) * tensor_scale);
}

template <typename T>
QSIM_HD BlockScaling<T> block_scaling(T amax, bool finite, const BlockParams& b) {
  BlockScaling<T> s;
  s.nan = !finite;
  s.scale = (T)1;
  s.grid = b.element;
  if (b.rule == kScaleFormat) {
    s.scale = format_scale(amax, b.scale, b.element_max, b.tensor_scale);
  } else {
    s.grid = shift_grid(b.element, scale_exponent(amax, b));
  }
  return s;
}

// One element of a block: rounded onto the shifted grid, or divided by the scale, rounded, multiplied back.
template <int MODE, typename T>
QSIM_HD T quantize_in_block(T x, const BlockScaling<T>& s, uint32_t rand, int rand_shift) {
  if (s.nan) return quiet_nan<T>();
  if (s.scale == (T)1) return quantize_value<MODE, T>(x, s.grid, rand, rand_shift);
  const T y = s.scale > (T)0 ? x / s.scale : (T)0;
  return quantize_value<MODE, T>(y, s.grid, rand, rand_shift) * s.scale;
}

}  // namespace qsim
