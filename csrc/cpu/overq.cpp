// cpu/overq.cpp: the OverQ kernel. The rules are sequential along a channel vector (a claim changes what
// later positions find) but vectors are independent. A thread takes a tile of vectors and walks their
// positions in step, so that every pass reads rows of the tile and the tile stays in cache across the
// passes (memory is read once):
//   1. classify and round (rules 1-2), elementwise, vectorised;
//   2. range overwrite (rule 3), scalar, skipped when the tile has no outlier (the common case);
//   3. precision overwrite (rule 4) and the claimed flags (rule 5), without branches: each vector keeps
//      a bit mask of the free zero slots in its window (bit d = position i + d), so the nearest free
//      slot is the mask's lowest set bit (vectorised across vectors side by side);
//   4. the refined values of the positions step 3 flagged, elementwise, vectorised (a bit select).
#include "cpu/overq.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <type_traits>

#include "cpu/loops.h"

namespace qsim {
namespace {

constexpr int64_t kTileElements = 1 << 14;  // about 64 KiB of float32 per tile: in L2 across the passes
constexpr int64_t kTileVectors = 256;       // vectors side by side in a tile when inner > 1

// Round half to even. kFpu: the FPU's nearbyint, taken only in the default floating-point environment
// (round to nearest-even), where it vectorises. Otherwise floor only, exact whatever the rounding mode:
// v - floor(v) is exact for every finite double v >= 0; NaN and +inf come back unchanged.
template <bool kFpu>
inline double round_half_even(double v) {
  if constexpr (kFpu) {
    return std::nearbyint(v);
  } else {
    const double low = std::floor(v), fraction = v - low;
    const bool odd = std::floor(low * 0.5) * 2.0 != low;
    return fraction > 0.5 || (fraction == 0.5 && odd) ? low + 1.0 : low;
  }
}

struct Counts {
  int64_t outliers = 0, covered = 0, precise = 0, zeros = 0, invalid = 0;
};

// A tile: `vectors` channel vectors of `length` positions, position i of vector v at
// first + i * inner + v * step (step 1 when inner > 1: vectors side by side; step = length when inner == 1).
struct Tile {
  int64_t first, vectors, step;
};

template <typename T, bool kFpu>
struct OverqKernel {
  const T* in;
  T* out;
  uint8_t* state;
  int64_t length, inner;
  int cascade;
  bool precision;
  double scale, qmax, qmax_range, fine, unfine;

  // Rules 1-2 on n contiguous elements from `at`.
  void classify(int64_t at, int64_t n, Counts& c) const {
    int64_t zeros = 0, outliers = 0, invalid = 0;
    const T* __restrict x = in + at;
    T* __restrict y = out + at;
    uint8_t* __restrict s = state + at;
#pragma omp simd reduction(+ : zeros, outliers, invalid)
    for (int64_t i = 0; i < n; ++i) {
      const double v = (double)x[i];
      const double r = round_half_even<kFpu>(v / scale);
      const int zero = r == 0.0, outlier = r > qmax;
      invalid += !(v >= 0.0);  // negative or NaN: the caller raises
      zeros += zero;
      outliers += outlier;
      s[i] = (uint8_t)(zero * kOverqZero + outlier * kOverqOutlier);
      y[i] = (T)(std::min(r, qmax) * scale);
    }
    c.zeros += zeros, c.outliers += outliers, c.invalid += invalid;
  }

  // Rule 3: each outlier, in increasing position order, claims the nearest free zero slot in
  // (i, i + 1 + cascade] and keeps 2·bits of range.
  void range(const Tile& t, Counts& c) const {
    // Rows in order, so that vectors side by side are read along memory; each vector's positions still
    // go in increasing order, and vectors do not interact.
    // Locals: stores through a uint8_t pointer may alias the kernel's fields, which GCC would reload.
    uint8_t* const flags = state;
    const int64_t length = this->length, inner = this->inner, cascade = this->cascade;
    int64_t covered = 0;
    for (int64_t i = 0; i < length; ++i) {
      const int64_t last = std::min(length - 1, i + 1 + cascade);
      for (int64_t v = 0; v < t.vectors; ++v) {
        const int64_t base = t.first + v * t.step, at = base + i * inner;
        if (flags[at] != kOverqOutlier) continue;
        for (int64_t j = i + 1; j <= last; ++j) {
          uint8_t& slot = flags[base + j * inner];
          if (slot != kOverqZero) continue;
          slot |= kOverqClaimed;
          flags[at] |= kOverqCovered;
          out[at] = (T)(std::min(round_half_even<kFpu>((double)in[at] / scale), qmax_range) * scale);
          ++covered;
          break;
        }
      }
    }
    c.covered += covered;
  }

  // The precision overwrite of the flagged positions among n contiguous ones: rne(x/s · 2^b) / 2^b · s,
  // stored by a bit select on every position (a conditional store would not vectorise).
  static void refine(const T* __restrict x, T* __restrict y, const uint8_t* __restrict flags, int64_t n,
                     double scale, double fine, double unfine) {
    using Bits = std::conditional_t<sizeof(T) == 4, uint32_t, uint64_t>;
    Bits* __restrict bits = reinterpret_cast<Bits*>(y);
#pragma omp simd
    for (int64_t v = 0; v < n; ++v) {
      const T refined = (T)(round_half_even<kFpu>((double)x[v] / scale * fine) * unfine * scale);
      Bits r;
      std::memcpy(&r, &refined, sizeof r);
      const Bits take = (Bits)0 - (Bits)((flags[v] & kOverqPrecise) != 0);  // all ones where flagged
      bits[v] = (r & take) | (bits[v] & ~take);
    }
  }

  // Rule 4 at one position and the kOverqClaimed flags of rule 5, without branches: `free` has bit d set
  // when position i + d is a zero slot not yet claimed (d = 0 .. span); an ordinary value claims the
  // lowest set bit of 1 .. span, the nearest free slot. Position i then leaves the window (a zero slot
  // whose bit is clear was claimed, here or by range overwrite) and i + span + 1 enters it. Returns 1 for
  // a claim.
  static uint64_t claim_step(uint8_t& flags, uint64_t& free, uint8_t incoming, uint64_t window, int64_t span) {
    const uint64_t f = flags;
    const uint64_t open = free & window;
    const uint64_t nearest = open & (~open + 1);
    const uint64_t claim = nearest & ((uint64_t)0 - (uint64_t)(f == 0));  // only ordinary values claim
    const uint64_t bits = free & ~claim;
    const uint64_t claimed = (uint64_t)(claim != 0);
    const uint64_t taken = (uint64_t)(f == kOverqZero) & ~bits & 1;
    flags = (uint8_t)(f | claimed * kOverqPrecise | taken * kOverqClaimed);
    free = (bits >> 1) | ((uint64_t)(incoming == kOverqZero) << span);
    return claimed;
  }

  // Rule 4 on a tile of vectors side by side (inner > 1): row by row, vectorised across the vectors.
  int64_t precise_rows(const Tile& t, uint64_t* __restrict free, int64_t span, uint64_t window) const {
    const int64_t length = this->length, inner = this->inner;  // locals, as in range()
    for (int64_t v = 0; v < t.vectors; ++v) {
      uint64_t bits = 0;
      for (int64_t d = 0; d <= span && d < length; ++d)
        bits |= (uint64_t)(state[t.first + v + d * inner] == kOverqZero) << d;
      free[v] = bits;
    }
    static const uint8_t kNoRow[kTileVectors] = {};  // the positions past the end: no zero slot comes in
    int64_t claims = 0;
    for (int64_t i = 0; i < length; ++i) {
      uint8_t* __restrict s = state + t.first + i * inner;
      const uint8_t* __restrict incoming = i + span + 1 < length ? s + (span + 1) * inner : kNoRow;
#pragma omp simd reduction(+ : claims)
      for (int64_t v = 0; v < t.vectors; ++v) claims += claim_step(s[v], free[v], incoming[v], window, span);
    }
    return claims;
  }

  // Rule 4 on one contiguous vector (inner == 1).
  int64_t precise_vector(uint8_t* __restrict s, int64_t span, uint64_t window) const {
    const int64_t length = this->length;
    uint64_t free = 0;
    for (int64_t d = 0; d <= span && d < length; ++d) free |= (uint64_t)(s[d] == kOverqZero) << d;
    int64_t claims = 0;
    for (int64_t i = 0; i < length; ++i)
      claims += claim_step(s[i], free, i + span + 1 < length ? s[i + span + 1] : (uint8_t)0, window, span);
    return claims;
  }

  void run(int64_t outer, int64_t* counts) const {
    const int64_t n = outer * length * inner;
    // Tiles: kTileVectors side by side (inner > 1), or whole consecutive vectors (inner == 1).
    const int64_t vectors_per_tile =
        inner > 1 ? kTileVectors : std::max<int64_t>(1, kTileElements / std::max<int64_t>(length, 1));
    const int64_t tiles_per_slab = inner > 1 ? (inner + kTileVectors - 1) / kTileVectors : 1;
    const int64_t slabs = inner > 1 ? outer : (outer + vectors_per_tile - 1) / vectors_per_tile;
    const int64_t tiles = slabs * tiles_per_slab;
    int64_t outliers = 0, covered = 0, precise_total = 0, zeros = 0, invalid = 0;
#pragma omp parallel for schedule(dynamic, 1) reduction(+ : outliers, covered, precise_total, zeros, invalid) \
    if (n > kParallelThreshold)
    for (int64_t k = 0; k < tiles; ++k) {
      Tile t;
      if (inner > 1) {
        const int64_t o = k / tiles_per_slab, v0 = (k % tiles_per_slab) * kTileVectors;
        t = {o * length * inner + v0, std::min(kTileVectors, inner - v0), 1};
      } else {
        const int64_t o0 = k * vectors_per_tile;
        t = {o0 * length, std::min(vectors_per_tile, outer - o0), length};
      }
      Counts c;
      if (inner > 1) {
        for (int64_t i = 0; i < length; ++i) classify(t.first + i * inner, t.vectors, c);
      } else {
        classify(t.first, t.vectors * length, c);
      }
      if (c.outliers > 0) range(t, c);
      if (precision) {
        const int64_t span = (int64_t)cascade + 1;           // a claim reaches positions i + 1 .. i + span
        const uint64_t window = ((uint64_t)2 << span) - 2;  // bits 1 .. span of a free-slot mask
        if (inner > 1) {
          uint64_t free[kTileVectors];
          c.precise += precise_rows(t, free, span, window);
          for (int64_t i = 0; i < length; ++i) {
            const int64_t row = t.first + i * inner;
            refine(in + row, out + row, state + row, t.vectors, scale, fine, unfine);
          }
        } else {
          for (int64_t v = 0; v < t.vectors; ++v)
            c.precise += precise_vector(state + t.first + v * length, span, window);
          refine(in + t.first, out + t.first, state + t.first, t.vectors * length, scale, fine, unfine);
        }
      }
      outliers += c.outliers, covered += c.covered, precise_total += c.precise;
      zeros += c.zeros, invalid += c.invalid;
    }
    counts[kOverqCountOutliers] = outliers;
    counts[kOverqCountCovered] = covered;
    counts[kOverqCountPrecise] = precise_total;
    counts[kOverqCountZeros] = zeros;
    counts[kOverqCountInvalid] = invalid;
  }
};

template <typename T>
void overq_loop(const T* in, T* out, uint8_t* state, int64_t outer, int64_t length, int64_t inner, int bits,
                int cascade, bool precision, double scale, int64_t* counts) {
  const double qmax = std::ldexp(1.0, bits) - 1.0, qmax_range = std::ldexp(1.0, 2 * bits) - 1.0;
  // Precision overwrite: `bits` more fractional bits; 2^-bits is exact, so multiplying by it divides.
  const double fine = std::ldexp(1.0, bits), unfine = std::ldexp(1.0, -bits);
  if (default_float_environment()) {
    OverqKernel<T, true>{in, out, state, length, inner, cascade, precision, scale, qmax, qmax_range, fine, unfine}
        .run(outer, counts);
  } else {
    OverqKernel<T, false>{in, out, state, length, inner, cascade, precision, scale, qmax, qmax_range, fine, unfine}
        .run(outer, counts);
  }
}

}  // namespace

void overq_cpu_f32(const float* in, float* out, uint8_t* state, int64_t outer, int64_t length, int64_t inner,
                   int bits, int cascade, bool precision, double scale, int64_t* counts) {
  overq_loop(in, out, state, outer, length, inner, bits, cascade, precision, scale, counts);
}

void overq_cpu_f64(const double* in, double* out, uint8_t* state, int64_t outer, int64_t length, int64_t inner,
                   int bits, int cascade, bool precision, double scale, int64_t* counts) {
  overq_loop(in, out, state, outer, length, inner, bits, cascade, precision, scale, counts);
}
}  // namespace qsim
