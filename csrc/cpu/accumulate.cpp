// cpu/accumulate.cpp: the fused accumulator loop of cpu/accumulate.h. Work is split into tiles of
// kRows output rows × kCols output columns (one OpenMP task each, owning its outputs, so results do not
// depend on the thread count); inside a tile the chunks run in order. For every chunk, chunk_sums forms
// the tile's new sums (vectorised along m, each load of b shared by the tile's rows) and round_row
// rounds each row: through float32 where that is provably exact (round_via_float), else in float64.
#include "cpu/accumulate.h"

#include <algorithm>
#include <stdexcept>

#include "cpu/loops.h"
#include "qsim/rounding.h"

namespace qsim {
namespace {

constexpr int kRows = 4;        // output rows per tile
constexpr int kLanes = 16;      // columns whose sums chunk_sums keeps in registers
constexpr int64_t kCols = 256;  // output columns per tile (a multiple of 4)
constexpr int kOddMargin = 21;  // round_via_float needs grid quanta ≥ 2^(e - kOddMargin) in binade e

struct Problem {
  const float* a;
  int64_t a_sb, a_sn, a_sk;
  const float* b;
  int64_t b_sb, b_sk;
  double* out;
  int64_t batch, n, k, m, chunk;
  const uint64_t* seeds;
  int rand_shift;
  int threads;
};

// words[j] = the random word of output index first + j, for j < count (count ≤ kCols).
inline void output_words(uint64_t seed, int64_t first, int64_t count, uint32_t* words) {
  uint32_t groups[kCols + 8];
  const int64_t g0 = first / 4, g1 = (first + count - 1) / 4;
  for (int64_t g = g0; g <= g1; ++g) random_words(seed, (uint64_t)g, groups + 4 * (g - g0));
  std::copy(groups + first % 4, groups + first % 4 + count, words);
}

// The float64 path: s[j] <- x[j] rounded with this element's random word (every mode and grid).
template <int MODE>
void round_exact(double* __restrict s, const double* __restrict x, const uint32_t* __restrict words, int64_t width,
                 const QuantParams p, int rand_shift) {
  if (p.overflow == kWrap) {
    for (int64_t j = 0; j < width; ++j) s[j] = quantize_wrap<MODE, double>(x[j], p, words[j], rand_shift);
  } else {
#pragma omp simd
    for (int64_t j = 0; j < width; ++j) s[j] = quantize_value<MODE, double>(x[j], p, words[j], rand_shift);
  }
}

// The float64 binades (biased exponent fields lo .. lo + span) where round_via_float is exact; span < 0 if
// it cannot serve the grid or mode at all.
struct FloatRange {
  uint64_t lo;
  int64_t span;
};

// Deterministic modes without wrap-around whose limits are exact in float32 (so the float32 overflow test
// is the float64 one), in float32's normal binades e = -126 .. e_hi where the grid's quantum 2^qe(e) is at
// least 2^(e - kOddMargin). qe(e) - e does not grow with e, so those binades are a range.
FloatRange via_float_range(const QuantParams& p, int rounding) {
  const FloatRange none{0, -1};
  if (rounding == kStochastic || p.overflow == kWrap || (double)p.max_pos_f != p.max_pos_d ||
      (double)p.max_neg_f != p.max_neg_d)
    return none;
  int e_hi = -127;
  for (int e = -126; e <= 127; ++e) {
    const int qe = max_int(e, p.emin) - ((p.subnormals != 0) | (e >= p.emin) ? p.man : 0);
    if (qe < e - kOddMargin) break;
    e_hi = e;
  }
  return FloatRange{(uint64_t)(1023 - 126), (int64_t)e_hi + 126};
}

// The same result as round_exact, vectorised: quantize_value<float> of x rounded to odd at float32's 24
// bits. Why it is exact: let x lie in the binade [2^e, 2^(e+1)) of float32's normal range, where the grid's
// quantum is 2^qe with qe ≥ e - 21. Every grid point and every midpoint between two is a multiple of
// 2^(e-22), an even multiple of float32's quantum u = 2^(e-23) there. Rounding to odd maps x to itself if x
// is a multiple of u, and otherwise to the odd multiple of u between the two even multiples around x: a
// value of the same open interval between grid points and midpoints, in the same binade. Every
// deterministic mode (nearest either way, toward zero, up, down, odd) decides on that interval alone, so
// it rounds both alike (Boldo & Melquiond, IEEE TC 2008). Elements outside `range` (zero excepted: it
// converts exactly) are redone on the float64 path.
template <int MODE>
void round_via_float(double* __restrict s, const double* __restrict x, int64_t width, const QuantParams p,
                     const FloatRange range) {
  alignas(64) float y[kCols];
  alignas(64) uint64_t redo[kCols];
  uint64_t any = 0;
  const uint64_t lo = range.lo, span = (uint64_t)range.span;
#pragma omp simd reduction(| : any)
  for (int64_t j = 0; j < width; ++j) {
    const uint64_t bits = to_bits(x[j]);
    const uint64_t dropped = bits & ((1ull << 29) - 1);  // the 52 - 23 bits float32 has not
    y[j] = (float)from_bits<double>((bits & ~((1ull << 29) - 1)) | ((uint64_t)(dropped != 0) << 29));
    const uint64_t outside = (uint64_t)((((bits >> 52) & 0x7FF) - lo) > span);  // unsigned: below lo wraps
    redo[j] = outside & (uint64_t)((bits << 1) != 0);
    any |= redo[j];
  }
#pragma omp simd
  for (int64_t j = 0; j < width; ++j) s[j] = (double)quantize_value<MODE, float>(y[j], p, 0u, 0);
  if (any)
    for (int64_t j = 0; j < width; ++j)
      if (redo[j]) s[j] = quantize_value<MODE, double>(x[j], p, 0u, 0);
}

// One rounding step of a row segment: s[j] <- round_acc(x[j]).
template <int MODE>
void round_row(double* s, const double* x, const uint32_t* words, int64_t width, const QuantParams& p,
               int rand_shift, const FloatRange& range) {
  if (MODE != kStochastic && range.span >= 0) round_via_float<MODE>(s, x, width, p, range);
  else round_exact<MODE>(s, x, words, width, p, rand_shift);
}

// x[j] = s[j] + (0.0 + a[k0]·b[k0][j] + ... + a[k1-1]·b[k1-1][j]) for `rows` rows (a_sn apart in a, m
// apart in s): each row's chunk summed left to right from +0, as the reference loop does, then added to
// the running sum. Products of float32 values are exact in float64, so whether the compiler fuses
// multiply and add changes nothing. Blocks of kLanes columns keep kRows × kLanes sums in registers and
// share each load of b between the rows; the columns past the last whole block go row by row.
template <int ROWS>
void chunk_sums(const float* a, int64_t a_sn, int64_t a_sk, const float* b, int64_t b_sk, int64_t k0, int64_t k1,
                const double* s, int64_t m, int64_t width, double (*__restrict x)[kCols]) {
  const int64_t blocked = width / kLanes * kLanes;
  for (int64_t j0 = 0; j0 < blocked; j0 += kLanes) {
    double acc[ROWS][kLanes] = {};
    for (int64_t kk = k0; kk < k1; ++kk) {
      const float* __restrict b_row = b + kk * b_sk + j0;
      double av[ROWS];
      for (int r = 0; r < ROWS; ++r) av[r] = a[r * a_sn + kk * a_sk];
      for (int r = 0; r < ROWS; ++r)
#pragma omp simd
        for (int l = 0; l < kLanes; ++l) acc[r][l] += av[r] * (double)b_row[l];
    }
    for (int r = 0; r < ROWS; ++r)
#pragma omp simd
      for (int l = 0; l < kLanes; ++l) x[r][j0 + l] = s[r * m + j0 + l] + acc[r][l];
  }
  for (int r = 0; r < ROWS; ++r) {
    double* __restrict xr = x[r];
    for (int64_t j = blocked; j < width; ++j) xr[j] = 0.0;
    for (int64_t kk = k0; kk < k1; ++kk) {
      const double av = a[r * a_sn + kk * a_sk];
      const float* __restrict b_row = b + kk * b_sk;
      for (int64_t j = blocked; j < width; ++j) xr[j] += av * (double)b_row[j];
    }
    for (int64_t j = blocked; j < width; ++j) xr[j] += s[r * m + j];
  }
}

template <int MODE>
void accumulate(const Problem& pr, const QuantParams& params) {
  const int rand_shift = pr.rand_shift;
  const FloatRange range = via_float_range(params, MODE);
  const int64_t row_tiles = (pr.n + kRows - 1) / kRows, col_tiles = (pr.m + kCols - 1) / kCols;
  const int64_t tiles = pr.batch * row_tiles * col_tiles;
  const int64_t chunks = (pr.k + pr.chunk - 1) / pr.chunk;
  const bool parallel = pr.batch * pr.n * pr.m * std::max<int64_t>(pr.k, 1) > kParallelThreshold;
#pragma omp parallel for schedule(dynamic, 1) num_threads(pr.threads) if (parallel)
  for (int64_t t = 0; t < tiles; ++t) {
    const QuantParams p = params;  // private to the task, so the vectoriser sees loop invariants
    const int64_t bb = t / (row_tiles * col_tiles), rt = t / col_tiles % row_tiles, ct = t % col_tiles;
    const int64_t r0 = rt * kRows, r1 = std::min(r0 + kRows, pr.n);
    const int64_t m0 = ct * kCols, width = std::min(kCols, pr.m - m0);
    const float* a_tile = pr.a + bb * pr.a_sb;
    const float* b_tile = pr.b + bb * pr.b_sb + m0;
    alignas(64) double x[kRows][kCols];
    alignas(64) uint32_t words[kCols];
    for (int64_t j = 0; j < width; ++j) words[j] = 0u;
    for (int64_t c = 0; c < chunks; ++c) {
      const int64_t k0 = c * pr.chunk, k1 = std::min(k0 + pr.chunk, pr.k);
      double* s = pr.out + (bb * pr.n + r0) * pr.m + m0;  // the tile's first row of running sums
      const float* a_rows = a_tile + r0 * pr.a_sn;
      if (r1 - r0 == kRows) {
        chunk_sums<kRows>(a_rows, pr.a_sn, pr.a_sk, b_tile, pr.b_sk, k0, k1, s, pr.m, width, x);
      } else {
        for (int64_t r = 0; r < r1 - r0; ++r)
          chunk_sums<1>(a_rows + r * pr.a_sn, pr.a_sn, pr.a_sk, b_tile, pr.b_sk, k0, k1, s + r * pr.m, pr.m, width, x + r);
      }
      for (int64_t r = r0; r < r1; ++r) {
        const int64_t first = (bb * pr.n + r) * pr.m + m0;  // row-major output index of column m0
        if (MODE == kStochastic) output_words(pr.seeds[c], first, width, words);
        round_row<MODE>(pr.out + first, x[r - r0], words, width, p, rand_shift, range);
      }
    }
  }
}

void dispatch(const Problem& pr, const QuantParams& p, int rounding) {
  with_mode(rounding, [&](auto mode) { accumulate<decltype(mode)::value>(pr, p); });
}

}  // namespace

void accumulate_cpu_f32(const float* a, int64_t a_sb, int64_t a_sn, int64_t a_sk, const float* b, int64_t b_sb,
                        int64_t b_sk, double* out, int64_t batch, int64_t n, int64_t k, int64_t m,
                        const QuantParams& p, int rounding, int64_t chunk, const uint64_t* seeds, int rand_bits,
                        int threads) {
  if (chunk < 1) throw std::invalid_argument("chunk: expected a positive number of products per rounding");
  if (batch <= 0 || n <= 0 || m <= 0) return;
  const Problem pr{a, a_sb, a_sn, a_sk, b, b_sb, b_sk, out, batch, n, k, m, chunk, seeds, 32 - rand_bits,
                   std::max(threads, 1)};
  dispatch(pr, p, rounding);
}

}  // namespace qsim
