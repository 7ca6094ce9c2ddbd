// cpu/overq.h: OverQ (overwrite quantization) along the channel axis of a contiguous tensor viewed as
// (outer, length, inner): each of the outer·inner channel vectors of `length` positions (stride inner) is
// quantized unsigned to `bits`, then its outliers and ordinary values borrow neighbouring zero slots
// (rules 1-5 of qsim/overq.py). state[i] receives the kOverq* flags of position i; counts[] the totals.
#pragma once
#include <cstdint>

namespace qsim {

enum : uint8_t {
  kOverqZero = 1,      // rne(x/scale) == 0: a zero slot
  kOverqOutlier = 2,   // rne(x/scale) > 2^bits - 1
  kOverqCovered = 4,   // an outlier that claimed a zero slot (range overwrite)
  kOverqPrecise = 8,   // an ordinary value that claimed a zero slot (precision overwrite)
  kOverqClaimed = 16,  // a zero slot taken by one of the above
};

// counts: outliers, covered outliers, precision overwrites, zero slots, invalid inputs (negative or NaN).
enum { kOverqCountOutliers, kOverqCountCovered, kOverqCountPrecise, kOverqCountZeros, kOverqCountInvalid, kOverqCounts };

void overq_cpu_f32(const float* in, float* out, uint8_t* state, int64_t outer, int64_t length, int64_t inner,
                   int bits, int cascade, bool precision, double scale, int64_t* counts);
void overq_cpu_f64(const double* in, double* out, uint8_t* state, int64_t outer, int64_t length, int64_t inner,
                   int bits, int cascade, bool precision, double scale, int64_t* counts);
}  // namespace qsim
