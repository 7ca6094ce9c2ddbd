// qsim/block.h: formats whose elements share a scale per block (block floating point, OCP MX, NVFP4).
// Per block: (1) the largest magnitude, (2) the shared scale from it (block_scaling), (3) every element
// rounded with rounding.h onto the element grid scaled by that scale (quantize_in_block). The loops over
// blocks are the devices' own (cpu/block.cpp, cuda/block.cu); the arithmetic is here, once. Power-of-two scales shift the grid itself
// (emin and the limits move by the scale's exponent), so no division happens and no extra rounding
// either; other scales (an fp8 scale, as in NVFP4) multiply by a reciprocal, round and multiply back in T.
#pragma once
#include "qsim/rounding.h"

namespace qsim {

// How the exponent E of a power-of-two scale 2^E follows from the block's largest magnitude amax.
enum ScaleRule : int32_t {
  kScaleFloor = 0,  // E = floor(log2 amax) - emax: OCP MX v1.0 §6.3 (the block maximum may clip)
  kScaleCeil = 1,   // E = ceil(log2 amax) - emax
  kScaleRceil = 2,  // the smallest E with amax ≤ element_max · 2^E: never clips (NVIDIA's rounding)
  kScaleEven = 3,   // floor's E of amax rounded half up to the element's precision first (torchao's EVEN)
  kScaleFormat = 4, // a scale in its own format: S = round(amax / element_max / tensor_scale) (format_scale)
};

struct BlockParams {
  QuantParams element;  // the element grid at scale 1
  QuantParams scale;    // the scale's grid, for kScaleFormat
  int32_t rule;         // ScaleRule
  int32_t element_emax; // floor(log2(element max))
  int32_t scale_emin;   // range of E for power-of-two scales (E8M0: -127..127)
  int32_t scale_emax;
  int32_t even_bits;    // kScaleEven: the element's fraction bits in its top binade
  double element_max;
  double tensor_scale;    // a per-tensor fp32 factor above the block scales (NVFP4), else 1
  double smallest_scale;  // kScaleFormat: the scale format's smallest normal, the least block scale
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

// Whether amax, rounded half up to `bits` fraction bits on its own bit pattern, carries into the next
// power of two (as torchao's EVEN rule adds half a unit and keeps the exponent field; at subnormal
// maxima, whose scales clamp to E8M0's least, the exponent's count differs, never the clamped scale).
template <typename T> QSIM_HD uint32_t even_carry(T amax, int bits) {
  typedef FloatTraits<T> F;
  typedef typename F::Bits Bits;
  const Bits fraction = to_bits(amax) & (((Bits)1 << F::kMant) - 1);
  const Bits half = (Bits)1 << max_int(F::kMant - 1 - bits, 0);
  return (uint32_t)(bits < F::kMant) & (uint32_t)((fraction + half) >> F::kMant);
}

// The exponent of the power-of-two scale of a block with largest magnitude amax (an all-zero block
// takes the smallest). Branch-free (the rule's terms are 0/1 flags), so that a CPU loop over many
// blocks' maxima vectorises.
template <typename T> QSIM_HD int scale_exponent(T amax, const BlockParams& b) {
  const int e = floor_log2(amax);
  int E = e - b.element_emax;
  E += (int)((uint32_t)(b.rule == kScaleCeil) & (uint32_t)(amax != pow2<T>(e)));
  E += (int)((uint32_t)(b.rule == kScaleEven) & even_carry(amax, b.even_bits));
  E += (int)((uint32_t)(b.rule == kScaleRceil) & (uint32_t)((double)amax > b.element_max * (double)pow2<double>(E)));
  E = min_int(max_int(E, b.scale_emin), b.scale_emax);
  return (int)select((uint32_t)(amax > (T)0), (uint32_t)E, (uint32_t)b.scale_emin);
}

// The largest value of the element grid g scaled by 2^E that T holds: T's largest finite value less its
// remainder modulo the scaled grid's quantum q in T's top binade. That quantum is 2^(max(emax(T), emin + E)
// - man), or 2^(emin + E) where the grid has no subnormals and its smallest normal lies above T's range;
// past 2^emax(T), no nonzero grid value is finite in T and the top is 0. With u = T's ulp there, the
// remainder is max(q, u) - u, and every term is a multiple of u below 2^(emax(T) + 1): the arithmetic is
// exact (no shifts by a variable count either, so that the CPU loop over blocks vectorises). Worked example
// (float32, fp8_e4m3 elements, E = 120): q = 2^(127 - 3) leaves (2^128 - 2^104) - (2^124 - 2^104) =
// 1.875·2^127, where the scaled limit 448·2^120 = 1.75·2^128 is past float32's range.
template <typename T> QSIM_HD T top_in_range(const QuantParams& g, int E) {
  typedef FloatTraits<T> F;
  const int emin = g.emin + E;
  const int quantum_exp = pick((uint32_t)(g.subnormals != 0) | (uint32_t)(emin <= F::kBias),
                               max_int(F::kBias, emin) - g.man, emin);
  const T ulp = pow2<T>(F::kBias - F::kMant);
  const T quantum = pow2<T>(min_int(max_int(quantum_exp, F::kBias - F::kMant), F::kBias));
  const T largest = from_bits<T>(to_bits(infinity<T>()) - 1);
  return select((uint32_t)(quantum_exp > F::kBias), (T)0, largest - (quantum - ulp));
}

// A limit of the element grid g (its max_pos_d or max_neg_d) scaled by 2^E, in T. The float limits round
// to nearest. That is safe: a limit not representable in float32 has more significant bits than float32,
// so the element grid is finer than the input's and a float32 input lies on it already (no rounding,
// nothing goes past the limit). Past T's range the limit is top_in_range: a finite x then rounds (or
// saturates) to a finite value, never to ±inf.
template <typename T> QSIM_HD T shifted_limit(const QuantParams& g, double limit, int E) {
  const T scaled = (T)(limit * pow2<double>(E)), top = top_in_range<T>(g, E);
  return select((uint32_t)(scaled > top), top, scaled);
}

// The element grid scaled by 2^E: its smallest normal exponent moves to emin + E, its limits scale.
QSIM_HD QuantParams shift_grid(QuantParams p, int E) {
  const QuantParams g = p;
  p.emin += E;
  p.max_pos_f = shifted_limit<float>(g, g.max_pos_d, E);
  p.max_neg_f = shifted_limit<float>(g, g.max_neg_d, E);
  p.max_pos_d = shifted_limit<double>(g, g.max_pos_d, E);
  p.max_neg_d = shifted_limit<double>(g, g.max_neg_d, E);
  return p;
}

// A scale in its own format (kScaleFormat), as torchao's NVFP4 (and NVIDIA's kernels it follows) computes
// it in T: S = the scale format's nearest rounding of amax / element_max / tensor_scale, raised to the
// scale format's smallest normal (so an all-zero block, or one far below the tensor's maximum, keeps a
// positive scale). Branch-free, so that a CPU loop over many blocks' maxima vectorises. FPU: the
// rounding by quantize_nearest_even, the same bits where nearest_even_applies to scale_grid and this
// thread's floating-point environment is the default one (the CPU caller checks both).
template <typename T, bool FPU = false>
QSIM_HD T format_scale(T amax, const QuantParams& scale_grid, T element_max, T tensor_scale, T smallest) {
  const T wanted = amax / element_max / tensor_scale;
  const T raised = select((uint32_t)(wanted > smallest), wanted, smallest);  // (NaN: a NaN block's, unused)
  return FPU ? quantize_nearest_even<T>(raised, scale_grid) : quantize_value<kNearest, T>(raised, scale_grid, 0u, 0);
}

// A block of scale S in its own format rounds each element as x · reciprocal_factor (1 / tensor_scale
// first, then / S: torchao's order) and multiplies the result back by scale_factor.
template <typename T> QSIM_HD T reciprocal_factor(T S, T tensor_scale) { return (T)1 / tensor_scale / S; }
template <typename T> QSIM_HD T scale_factor(T S, T tensor_scale) { return tensor_scale * S; }

// What a block's elements are rounded with, once its largest magnitude is known.
template <typename T>
struct BlockScaling {
  QuantParams grid;  // the element grid, shifted by a power-of-two scale
  bool by_format;    // a scale in its own format (kScaleFormat): x · reciprocal rounds, times scale
  T scale, reciprocal;
  bool nan;          // the block held NaN or ±inf: it has no scale, all of it becomes NaN (OCP MX v1.0 §6.3)
};

template <typename T>
QSIM_HD BlockScaling<T> block_scaling(T amax, bool finite, const BlockParams& b) {
  BlockScaling<T> s;
  s.nan = !finite;
  s.grid = b.element;
  s.by_format = b.rule == kScaleFormat;
  s.scale = s.reciprocal = (T)1;
  if (s.by_format) {
    const T S = format_scale(amax, b.scale, (T)b.element_max, (T)b.tensor_scale, (T)b.smallest_scale);
    s.scale = scale_factor(S, (T)b.tensor_scale);
    s.reciprocal = reciprocal_factor(S, (T)b.tensor_scale);
  } else {
    s.grid = shift_grid(b.element, scale_exponent(amax, b));
  }
  return s;
}

// One element of a block: rounded onto the shifted grid, or scaled, rounded and multiplied back.
template <int MODE, typename T>
QSIM_HD T quantize_in_block(T x, const BlockScaling<T>& s, uint32_t rand, int rand_shift) {
  if (s.nan) return quiet_nan<T>();
  if (!s.by_format) return quantize_value<MODE, T>(x, s.grid, rand, rand_shift);
  return quantize_value<MODE, T>(x * s.reciprocal, s.grid, rand, rand_shift) * s.scale;
}

}  // namespace qsim
