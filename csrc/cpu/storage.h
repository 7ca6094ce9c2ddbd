// cpu/storage.h: how the elementwise and block loops read and write a tensor's elements. float and
// double are rounded as they are; bfloat16 and float16 tensors load into float32 (which holds them
// exactly), are rounded there, and store back rounded to nearest-even, as torch's own conversions round:
// the same bits as converting the whole tensor to float32, quantizing, and converting back, in one pass.
// Integer arithmetic only, so the conversions vectorise and do not depend on the FPU's rounding mode.
#pragma once
#include "qsim/rounding.h"

namespace qsim {

// (Forced inline: called out of line, as GCC chose for float16's longer conversions, loops do not vectorise.)
#define QSIM_STORAGE_INLINE __attribute__((always_inline)) static inline

struct BFloat16 { uint16_t bits; };
struct Float16 { uint16_t bits; };

template <typename S> struct Storage {  // float, double: rounded in place
  typedef S Compute;
  QSIM_STORAGE_INLINE S load(S x) { return x; }
  QSIM_STORAGE_INLINE S store(S x) { return x; }
};

template <> struct Storage<BFloat16> {
  typedef float Compute;
  QSIM_STORAGE_INLINE float load(BFloat16 x) { return from_bits<float>((uint32_t)x.bits << 16); }
  // Nearest-even on the dropped 16 bits; a NaN keeps its sign and top payload bits, made quiet.
  QSIM_STORAGE_INLINE BFloat16 store(float x) {
    const uint32_t u = to_bits(x);
    const uint32_t nan = (uint32_t)((u & 0x7FFFFFFFu) > 0x7F800000u);
    const uint32_t rounded = (u + 0x7FFFu + ((u >> 16) & 1u)) >> 16;
    return BFloat16{(uint16_t)select(nan, (u >> 16) | 0x40u, rounded)};
  }
};

template <> struct Storage<Float16> {
  typedef float Compute;
  // Normal halves by rebiasing the exponent; subnormal ones, man·2^-24, by normalising man (its leading
  // bit, at p, becomes 2^(p - 24)); inf and NaN by widening the all-ones exponent.
  QSIM_STORAGE_INLINE float load(Float16 x) {
    const uint32_t h = x.bits, sign = (h & 0x8000u) << 16, exp = (h >> 10) & 0x1Fu, man = h & 0x3FFu;
    const uint32_t normal = ((exp + 112u) << 23) | (man << 13);
    const uint32_t special = 0x7F800000u | (man << 13);
    const uint32_t p = (uint32_t)bit_length(man | 1u) - 1u;
    const uint32_t subnormal = select((uint32_t)(man != 0u), ((p + 103u) << 23) | ((man << (23u - p)) & 0x7FFFFFu), 0u);
    const uint32_t finite = select((uint32_t)(exp == 0u), subnormal, normal);
    const uint32_t magnitude = select((uint32_t)(exp == 0x1Fu), special, finite);
    return from_bits<float>(sign | magnitude);
  }
  // Nearest-even: normal halves drop 13 bits of the rebiased pattern; below 2^-14 the significand (with
  // its implicit bit) shifts right by 126 - exponent (at most 25: all of it, below half a unit), rounding
  // on the bits it drops, left-aligned in `rest`; 65520 and up overflow to inf; a NaN keeps its sign and
  // top payload bits, made quiet. (The 0/1 flags as separate integers: combined in one expression of
  // comparisons, GCC 12 does not vectorise the loop.)
  QSIM_STORAGE_INLINE Float16 store(float x) {
    const uint32_t u = to_bits(x), sign = (u >> 16) & 0x8000u, mag = u & 0x7FFFFFFFu;
    const uint32_t normal = (mag - 0x38000000u + 0xFFFu + ((mag >> 13) & 1u)) >> 13;
    const uint32_t shift = (uint32_t)min_int(max_int(126 - (int)(mag >> 23), 14), 25);
    const uint32_t significand = (mag & 0x7FFFFFu) | 0x800000u;
    const uint32_t kept = significand >> shift, rest = significand << (32u - shift);
    const uint32_t above = (uint32_t)(rest > 0x80000000u), tie = (uint32_t)(rest == 0x80000000u);
    const uint32_t finite = select((uint32_t)(mag < 0x38800000u), kept + (above | (tie & kept & 1u)), normal);
    const uint32_t big = select((uint32_t)(mag > 0x7F800000u), 0x7E00u | ((mag >> 13) & 0x3FFu), 0x7C00u);
    return Float16{(uint16_t)(sign | select((uint32_t)(mag >= 0x477FF000u), big, finite))};
  }
};

}  // namespace qsim
