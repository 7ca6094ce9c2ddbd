// qsim/params.h: the plain-data description of a quantization grid that Python fills in once per
// format and every kernel (CPU and CUDA) reads. Shared by rounding.h and the bindings.
#pragma once

#if defined(__CUDACC_RTC__)
typedef unsigned int uint32_t;
typedef unsigned long long uint64_t;
typedef long long int64_t;
typedef int int32_t;
typedef unsigned long long uintptr_t;
#else
#include <cstdint>
#endif

namespace qsim {

// Order must match qsim/rounding.py's ROUNDING_MODES.
enum Rounding : int32_t {
  kNearest = 0,      // to nearest, ties to even
  kNearestAway = 1,  // to nearest, ties away from zero
  kTowardZero = 2,
  kUp = 3,           // toward +inf
  kDown = 4,         // toward -inf
  kOdd = 5,          // truncate, then set the last kept bit if anything was dropped
  kStochastic = 6,   // up with probability (distance to the lower neighbour) / ulp
};

// What happens to finite values whose rounded magnitude exceeds the largest finite one.
enum Overflow : int32_t {
  kSaturate = 0,  // clip to the largest finite magnitude
  kInf = 1,       // IEEE 754 §7.4: inf, except modes that round toward zero give the largest finite
  kNaN = 2,       // like kInf but NaN (formats with a NaN and no inf, e.g. e4m3fn as ml_dtypes does)
  kWrap = 3,      // two's-complement wrap-around of the integer code (fixed point)
};

// The grid: a magnitude with floor(log2|x|) = e is rounded to a multiple of 2^(max(e, emin) - man).
// Floating point: man = trailing mantissa bits, emin = exponent of the smallest normal.
// Without subnormals the grid below 2^emin is {0, 2^emin}. Fixed point uses emin above any finite
// exponent, so the quantum is the constant 2^(emin - man) = 2^-fl.
struct QuantParams {
  int32_t man;
  int32_t emin;
  int32_t subnormals;
  int32_t overflow;    // Overflow
  int32_t has_inf;     // ±inf inputs stay ±inf (else, in every mode, ±max for kSaturate and NaN otherwise)
  int32_t neg_zero;    // 0: a zero result is +0 (fnuz floats, fixed point)
  int32_t wrap_bits;   // word length for kWrap
  int32_t wrap_signed; // kWrap: two's complement (1) or unsigned (0) code
  float max_pos_f;     // largest finite magnitudes, rounded toward zero to the tensor's dtype
  float max_neg_f;
  double max_pos_d;
  double max_neg_d;
};

}  // namespace qsim
