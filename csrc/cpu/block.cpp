// cpu/block.cpp: block formats, each block's maximum, scale and element rounding while the block is in
// cache. Blocks of at most kSmallBlock elements (MX, NVFP4, BFP blocks): chunks of whole consecutive
// blocks over all threads. Larger blocks (a slice each): one block per thread at a time. Few blocks on a
// large tensor (one exponent per tensor, or per slice of few slices): blocks in turn, each with all threads
// on its maximum and then on its elements. Elements go in chunks of kChunk whose random words are drawn
// first, so loops vectorise. Below kParallelThreshold elements the same loops run on the calling thread
// alone (over_threads, loops.h: no parallel region, which even switched off costs more than a small
// tensor's work).
#include "cpu/block.h"

#include <omp.h>

#include <stdexcept>
#include <type_traits>
#include <vector>

#include "cpu/loops.h"

namespace qsim {
namespace {

constexpr int64_t kChunk = 768;      // elements per chunk of random words (a multiple of 4)
constexpr int64_t kSmallBlock = 64;  // blocks up to this length go kChunk / block to a chunk
constexpr int64_t kSpan = 1 << 14;   // elements per task of a parallel maximum

template <typename T> using Bits = typename FloatTraits<T>::Bits;
template <typename S> using Compute = typename Storage<S>::Compute;  // float for bfloat16/float16 storage

// On the lambdas of block_chunk's element loops: called from several places, GCC would stop inlining them,
// and with that lose the loops' fixed block length (a third slower).
#define QSIM_INLINE_LAMBDA __attribute__((always_inline))

// The bit pattern of |x|. These integers order as the magnitudes do, with inf above every finite value and
// NaN above inf: their maximum is the bits of the largest magnitude (+0 for an all-zero block, whatever
// the signs of its zeros), or of inf or a NaN where the block holds one. An integer maximum vectorises
// without the compare-and-blend of a float one.
template <typename T> Bits<T> magnitude_bits(T x) { return to_bits(x) & (~(Bits<T>)0 >> 1); }

template <typename S> Bits<Compute<S>> max_magnitude_bits(const S* x, int64_t n) {
  typedef Compute<S> T;
  Bits<T> m = 0;
#pragma omp simd reduction(max : m)
  for (int64_t i = 0; i < n; ++i) {
    const Bits<T> a = magnitude_bits(Storage<S>::load(x[i]));
    m = a > m ? a : m;
  }
  return m;
}

// max_magnitude_bits over all threads (tasks of kSpan elements) above kParallelThreshold.
template <typename S> Bits<Compute<S>> max_magnitude_bits_parallel(const S* x, int64_t n) {
  typedef Compute<S> T;
  if (n <= kParallelThreshold) return max_magnitude_bits(x, n);
  const int64_t spans = (n + kSpan - 1) / kSpan;
  Bits<T> m = 0;
#pragma omp parallel for schedule(static) reduction(max : m)
  for (int64_t c = 0; c < spans; ++c) {
    const Bits<T> a = max_magnitude_bits(x + c * kSpan, n - c * kSpan < kSpan ? n - c * kSpan : kSpan);
    m = a > m ? a : m;
  }
  return m;
}

template <typename T> uint32_t is_finite_bits(Bits<T> magnitude) {
  return (uint32_t)(magnitude < to_bits(infinity<T>()));
}

// The scaling of a block from the bits of its largest magnitude.
template <typename T> BlockScaling<T> scaling_of(Bits<T> amax, const BlockParams& b) {
  return block_scaling(from_bits<T>(amax), is_finite_bits<T>(amax) != 0, b);
}

// The random words of elements index .. index + count - 1 (count ≤ kChunk): word index % 4 of group
// index / 4 and on, drawn into `words` (kWordRoom of them); returns where element `index`'s word is.
constexpr int64_t kWordRoom = kChunk + 4;

inline const uint32_t* draw_words(uint64_t seed, int64_t index, int64_t count, uint32_t* words) {
  const int64_t offset = index & 3;
  const int groups = (int)((count + offset + 3) / 4);
  random_words_run(seed, (uint64_t)(index / 4), groups, words);
  return words + offset;
}

// The element grid as the element loops see it. SAT: it saturates and has subnormals, as every BFP grid
// and every registered MX element does; the loops then see those two fields as constants, the compiler
// drops their selects, and with fewer values to hold in registers it keeps its constants out of the loop.
// (Short of registers, GCC 12 re-creates the all-ones vector inside the loop with a vpternlogd, which
// Zen 5 makes wait for that register's last value from the previous iteration: the iterations chain,
// and up, down and stochastic rounding ran up to 2x slower.)
template <bool SAT> QuantParams loop_grid(QuantParams g) {
  if (SAT) {
    g.overflow = kSaturate;
    g.subnormals = 1;
  }
  return g;
}

// The element grid with its smallest normal exponent moved to emin and its limits (in T) to those of a
// block's shifted grid: quantize_value on it is quantize_on_grid(x, grid, emin, limit_pos, limit_neg).
template <typename T> QuantParams block_grid(QuantParams g, int emin, T limit_pos, T limit_neg) {
  g.emin = emin;
  if constexpr (std::is_same<T, float>::value) {
    g.max_pos_f = limit_pos;
    g.max_neg_f = limit_neg;
  } else {
    g.max_pos_d = limit_pos;
    g.max_neg_d = limit_neg;
  }
  return g;
}

// The constants of TruncatingShortPath (and, for nearest-even, of NearestEvenShortPath) that differ
// between blocks of power-of-two scales: those of the element grid `g` with its smallest normal exponent
// moved to emin and its limits to limit_pos/neg (so ql moves with emin), as the short path built on
// block_grid(g, emin, limit_pos, limit_neg) computes them, field by field, branch-free so that a loop over
// blocks vectorises. `applies` is nearest_even_applies for that grid (kNearest), or truncating_applies for
// it and `mode` and also -ql ≤ kBias, where TruncatingShortPath's second scale factor is 2^0 = 1 (its
// multiply then changes no bit), so that one factor is kept here.
template <typename T>
struct ShiftedShortGrid {
  typedef FloatTraits<T> F;
  typedef typename F::Bits Bits;
  Bits low_end, limit_pos, limit_neg, over_pos, over_neg;
  T scale, quantum, magic;  // 2^-ql, 2^ql and 2^(ql + kMant)
  uint32_t applies;

  ShiftedShortGrid() = default;
  ShiftedShortGrid(const QuantParams& g, int mode, int emin, T limit_p, T limit_n) {
    // (Arithmetic and bit blends rather than conditionals on the grid's fields: GCC does not vectorise a
    // conditional between a value of the loop and one of the grid.)
    const int sub = (int)(g.subnormals != 0);
    const int ql = emin - (g.man & -sub);  // nearest_low_quantum
    const int magic_exp = ql + F::kMant;
    const uint32_t nearest_even = (uint32_t)(g.overflow != kWrap && g.man >= 0) &
                                  (uint32_t)(emin >= 1 - F::kBias - sub) & (uint32_t)(magic_exp >= 1 - F::kBias) &
                                  (uint32_t)(magic_exp <= F::kBias);
    const uint32_t truncating = (uint32_t)(ql <= 0) & (uint32_t)(ql >= -F::kBias) & truncating_overflow_applies(g, mode);
    applies = nearest_even & ((uint32_t)(mode == kNearest) | truncating);
    const Bits inf_exp = to_bits(infinity<T>()) >> F::kMant;
    const Bits magic_bits = (Bits)(magic_exp + F::kBias) << F::kMant;  // 2^magic_exp, a normal T where applies
    magic = from_bits<T>(magic_bits);
    const Bits normal_floor = (Bits)min_int(max_int(emin + F::kBias, 1), (int)inf_exp) << F::kMant;
    low_end = magic_bits < normal_floor ? magic_bits : normal_floor;
    scale = from_bits<T>((Bits)(F::kBias - ql) << F::kMant);  // pow2(-ql) for 0 ≤ -ql ≤ kBias
    quantum = pow2<T>(ql);
    limit_pos = to_bits(limit_p);
    limit_neg = to_bits(limit_n);
    const Bits beyond = g.overflow == kInf ? to_bits(infinity<T>()) : to_bits(quiet_nan<T>());
    over_pos = select((uint32_t)(g.overflow == kSaturate), limit_pos, beyond);
    over_neg = select((uint32_t)(g.overflow == kSaturate), limit_neg, beyond);
  }
};

// N blocks' ShiftedShortGrids, field by field (GCC vectorises no loop that copies whole structs).
template <typename T, int64_t N>
struct ShiftedShortGrids {
  Bits<T> low_end[N], limit_pos[N], limit_neg[N], over_pos[N], over_neg[N];
  T scale[N], quantum[N], magic[N];
  uint32_t applies[N];

  void set(int64_t j, const ShiftedShortGrid<T>& s) {
    low_end[j] = s.low_end, limit_pos[j] = s.limit_pos, limit_neg[j] = s.limit_neg;
    over_pos[j] = s.over_pos, over_neg[j] = s.over_neg, scale[j] = s.scale, quantum[j] = s.quantum;
    magic[j] = s.magic, applies[j] = s.applies;
  }
  ShiftedShortGrid<T> get(int64_t j) const {
    ShiftedShortGrid<T> s;
    s.low_end = low_end[j], s.limit_pos = limit_pos[j], s.limit_neg = limit_neg[j];
    s.over_pos = over_pos[j], s.over_neg = over_neg[j], s.scale = scale[j], s.quantum = quantum[j];
    s.magic = magic[j], s.applies = applies[j];
    return s;
  }
};

// Elements x[0..count) of a block (count ≤ kChunk) into y, x[0] being element `index` of the tensor
// (its random words: word index % 4 of group index / 4, drawn for the groups this chunk touches).
template <int MODE, typename S, bool SAT>
void chunk_elements(const S* x, S* y, int64_t count, int64_t index, const BlockScaling<Compute<S>>& s, uint64_t seed,
                    int rand_shift, bool fpu) {
  typedef Compute<S> T;
  typedef Storage<S> IO;
  uint32_t words[kWordRoom];
  const uint32_t* w = MODE == kStochastic ? draw_words(seed, index, count, words) : words;
  const QuantParams grid = loop_grid<SAT>(s.grid);  // a copy: stores to y cannot alias it
  if (s.nan) {
    for (int64_t i = 0; i < count; ++i) y[i] = IO::store(quiet_nan<T>());
  } else if (MODE == kNearest && fpu && !s.by_format && nearest_even_applies<T>(s.grid)) {
    const NearestEvenShortPath<T> nearest(s.grid);
#pragma omp simd
    for (int64_t i = 0; i < count; ++i) y[i] = IO::store(nearest(IO::load(x[i])));  // (rounding.h)
  } else if (MODE != kNearest && fpu && !s.by_format && truncating_applies<T>(s.grid, MODE)) {
    // (On s.grid, not loop_grid's: with its constants GCC does not vectorise this loop. MODE is not kNearest
    // here; the ternary only keeps kNearest's instantiation of this branch compiling.)
    const TruncatingShortPath<T> path(s.grid);
#pragma omp simd
    for (int64_t i = 0; i < count; ++i)
      y[i] = IO::store(path.template operator()<MODE == kNearest ? kStochastic : MODE>(IO::load(x[i]), w[i], rand_shift));
  } else if (!s.by_format) {  // a power-of-two scale, folded into the grid
#pragma omp simd
    for (int64_t i = 0; i < count; ++i)
      y[i] = IO::store(quantize_value<MODE, T>(IO::load(x[i]), grid, MODE == kStochastic ? w[i] : 0u, rand_shift));
  } else {  // quantize_in_block's scaling, with its branch hoisted so the loop vectorises
    const T scale = s.scale, reciprocal = s.reciprocal;
#pragma omp simd
    for (int64_t i = 0; i < count; ++i)
      y[i] = IO::store(
          quantize_value<MODE, T>(IO::load(x[i]) * reciprocal, grid, MODE == kStochastic ? w[i] : 0u, rand_shift) * scale);
  }
}

// One block on the calling thread: its maximum, then its elements.
template <int MODE, typename S, bool SAT>
void one_block(const S* in, S* out, int64_t n, int64_t index0, const BlockParams& b, uint64_t seed, int rand_shift,
               bool fpu) {
  const BlockScaling<Compute<S>> s = scaling_of<Compute<S>>(max_magnitude_bits(in, n), b);
  for (int64_t start = 0; start < n; start += kChunk)
    chunk_elements<MODE, S, SAT>(in + start, out + start, n - start < kChunk ? n - start : kChunk, index0 + start, s,
                                 seed, rand_shift, fpu);
}

// One block on all threads, in one parallel region: each thread's maximum over its contiguous share of
// chunks, a barrier, then its elements over the same share. (Forward: backward chunk by chunk, to start
// on what the first pass left in cache, ran at less than half the speed; the prefetchers lose the stream.)
template <int MODE, typename S, bool SAT>
void large_block(const S* in, S* out, int64_t n, int64_t index0, const BlockParams& b, uint64_t seed, int rand_shift,
                 bool fpu) {
  typedef Compute<S> T;
  const int64_t chunks = (n + kChunk - 1) / kChunk;
  std::vector<Bits<T>> maxima(omp_get_max_threads(), 0);
#pragma omp parallel
  {
    const int t = omp_get_thread_num(), threads = omp_get_num_threads();
    const int64_t c0 = chunks * t / threads, c1 = chunks * (t + 1) / threads;
    const int64_t begin = c0 * kChunk < n ? c0 * kChunk : n, end = c1 * kChunk < n ? c1 * kChunk : n;
    maxima[t] = max_magnitude_bits(in + begin, end - begin);
#pragma omp barrier
    Bits<T> amax = 0;
    for (int i = 0; i < threads; ++i) amax = maxima[i] > amax ? maxima[i] : amax;
    const BlockScaling<T> s = scaling_of<T>(amax, b);
    for (int64_t c = c0; c < c1; ++c) {
      const int64_t start = c * kChunk;
      chunk_elements<MODE, S, SAT>(in + start, out + start, n - start < kChunk ? n - start : kChunk, index0 + start,
                                   s, seed, rand_shift, fpu);
    }
  }
}

// f(0), ..., f(count - 1), on all threads or on this one (over_threads, loops.h).
template <typename F> void for_each(int64_t count, bool parallel, const F& f) {
  over_threads(count, parallel, [&f](int64_t begin, int64_t end) {
    for (int64_t c = begin; c < end; ++c) f(c);
  });
}

// Blocks k0..k1 of at most kSmallBlock elements each, consecutive in memory (across rows too) from
// in[first]: (1) each block's largest magnitude, (2) the scalings of all of them in one vectorised loop
// (block_scaling's arithmetic: BY_FORMAT, a scale in its own format; else a power-of-two scale folded into
// the grid), (3) each block's elements in a vectorised loop with its scaling broadcast. BLOCK > 0: every
// block has BLOCK elements (rows are whole blocks), so the per-block loops have a fixed length and
// vectorise without remainders; BLOCK = 0: `block` elements, the last of a row shorter.
template <int MODE, typename S, int BLOCK, bool BY_FORMAT, bool SAT>
void block_chunk(const S* in, S* out, int64_t k0, int64_t k1, int64_t per_row, int64_t row_length, int64_t block,
                 const BlockParams& b, uint64_t seed, int rand_shift, bool fpu) {
  typedef Compute<S> T;
  typedef Storage<S> IO;
  const int64_t blocks = k1 - k0, first = (k0 / per_row) * row_length + (k0 % per_row) * block;
  int64_t begin[kChunk + 1];  // block j is x[begin[j] .. begin[j + 1])
  begin[0] = 0;
  for (int64_t j = 0; j < blocks; ++j) {
    const int64_t remaining = row_length - ((k0 + j) % per_row) * block;
    begin[j + 1] = begin[j] + (BLOCK > 0 ? BLOCK : remaining < block ? remaining : block);
  }
  const int64_t count = begin[blocks];
  const S* x = in + first;
  S* y = out + first;

  Bits<T> amax[kChunk];
  for (int64_t j = 0; j < blocks; ++j)
    amax[j] = BLOCK > 0 ? max_magnitude_bits(x + j * BLOCK, BLOCK)
                        : max_magnitude_bits(x + begin[j], begin[j + 1] - begin[j]);

  uint32_t words[kWordRoom];
  const uint32_t* w = MODE == kStochastic ? draw_words(seed, first, count, words) : words;

  const QuantParams grid = loop_grid<SAT>(b.element), element_grid = b.element;
  uint32_t nan[kChunk];
  T limit_pos[kChunk], limit_neg[kChunk], scale[kChunk], reciprocal[kChunk];
  int32_t emin[kChunk];
  ShiftedShortGrids<T, !BY_FORMAT ? kChunk : 1> short_grids;
#pragma omp simd
  for (int64_t j = 0; j < blocks; ++j) nan[j] = is_finite_bits<T>(amax[j]) ^ 1u;
  if (BY_FORMAT) {
    const QuantParams scale_grid = b.scale;
    const T element_max = (T)b.element_max, tensor_scale = (T)b.tensor_scale, smallest = (T)b.smallest_scale;
    auto scales = [&](auto fpu_rounding) QSIM_INLINE_LAMBDA {
#pragma omp simd
      for (int64_t j = 0; j < blocks; ++j) {
        const T block_scale = format_scale<T, decltype(fpu_rounding)::value>(from_bits<T>(amax[j]), scale_grid,
                                                                              element_max, tensor_scale, smallest);
        scale[j] = scale_factor(block_scale, tensor_scale);
        reciprocal[j] = reciprocal_factor(block_scale, tensor_scale);
      }
    };
    if (fpu && nearest_even_applies<T>(scale_grid)) {
      scales(std::true_type());
    } else {
      scales(std::false_type());
    }
  } else {
    const BlockParams params = b;
#pragma omp simd
    for (int64_t j = 0; j < blocks; ++j) {
      const int E = scale_exponent(from_bits<T>(amax[j]), params);  // shift_grid, field by field
      emin[j] = grid.emin + E;
      limit_pos[j] = shifted_limit<T>(grid, grid.max_pos_d, E);
      limit_neg[j] = shifted_limit<T>(grid, grid.max_neg_d, E);
    }
    if (fpu) {
      const QuantParams g = element_grid;
#pragma omp simd
      for (int64_t j = 0; j < blocks; ++j)
        short_grids.set(j, ShiftedShortGrid<T>(g, MODE, emin[j], limit_pos[j], limit_neg[j]));
    }
  }
  // Blocks j..j+U-1 of `length` elements each from x[i0]; U > 1 interleaves the blocks' chains of dependent
  // operations (one 16-element block per iteration, a single vector, left the core waiting on its chain).
  // Each element goes through element(u, v, word): the rounding of v on block u's grid. (A local copy, and
  // lambdas that capture by value: what stores to y might change, GCC reloads and cannot vectorise.)
  auto round_blocks = [&](int64_t j, int64_t i0, int64_t length, auto unroll,
                          const auto& element_in) QSIM_INLINE_LAMBDA {
    constexpr int U = decltype(unroll)::value;
    T sc[U], rec[U];
    uint32_t bad[U];
    for (int u = 0; u < U; ++u) {
      bad[u] = nan[j + u];
      sc[u] = BY_FORMAT ? scale[j + u] : (T)1;
      rec[u] = BY_FORMAT ? reciprocal[j + u] : (T)1;
    }
    const S* xb = x + i0;
    S* yb = y + i0;
    const uint32_t* wb = w + i0;
    const auto element = element_in;
#pragma omp simd
    for (int64_t i = 0; i < length; ++i) {
#pragma GCC unroll 4
      for (int u = 0; u < U; ++u) {
        const int64_t k = u * length + i;
        const T v = BY_FORMAT ? IO::load(xb[k]) * rec[u] : IO::load(xb[k]);
        T r = element(u, v, MODE == kStochastic ? wb[k] : 0u);
        if (BY_FORMAT) r *= sc[u];
        yb[k] = IO::store(select(bad[u], quiet_nan<T>(), r));
      }
    }
  };
  // The grid of block j: the element grid, shifted by the block's power-of-two scale unless BY_FORMAT. (Not
  // loop_grid's: with its constants GCC does not vectorise the short paths.)
  auto grid_of = [&](int64_t j) {
    return BY_FORMAT ? element_grid : block_grid<T>(element_grid, emin[j], limit_pos[j], limit_neg[j]);
  };
  // Blocks j..j+U-1 through an FPU short path where this thread's environment and all their grids allow
  // it, else through quantize_on_grid. Same bits: quantize_on_grid(v, grid, emin, limit_pos, limit_neg) is
  // quantize_value(v, grid_of(block)), which TruncatingShortPath and quantize_nearest_even equal where
  // truncating_applies / nearest_even_applies hold for that grid (rounding.h); BY_FORMAT scales v alike on
  // both paths. For power-of-two scales, TruncatingShortPath::round and NearestEvenShortPath::round take the
  // block's ShiftedShortGrid in place of the fields of the short path of grid_of(block) that differ from the
  // element grid's.
  const TruncatingShortPath<T> path(element_grid);
  const NearestEvenShortPath<T> nearest(element_grid);
  auto round_group = [&](int64_t j, int64_t i0, int64_t length, auto unroll) QSIM_INLINE_LAMBDA {
    constexpr int U = decltype(unroll)::value;
    if constexpr (MODE != kNearest && BY_FORMAT) {
      if (fpu && truncating_applies<T>(element_grid, MODE))
        return round_blocks(j, i0, length, unroll, [path, rand_shift](int, T v, uint32_t w) QSIM_INLINE_LAMBDA {
          return path.template operator()<MODE>(v, w, rand_shift);
        });
    }
    if constexpr (!BY_FORMAT) {
      uint32_t applies = (uint32_t)fpu;
      for (int u = 0; u < U; ++u) applies &= short_grids.applies[j + u];
      if (applies) {
        ShiftedShortGrid<T> sg[U];
        for (int u = 0; u < U; ++u) sg[u] = short_grids.get(j + u);
        if constexpr (MODE == kNearest)
          return round_blocks(j, i0, length, unroll, [nearest, sg](int u, T v, uint32_t) QSIM_INLINE_LAMBDA {
            const ShiftedShortGrid<T>& b = sg[u];
            return nearest.round(v, b.magic, b.low_end, b.limit_pos, b.limit_neg, b.over_pos, b.over_neg);
          });
        else
          return round_blocks(j, i0, length, unroll, [path, sg, rand_shift](int u, T v, uint32_t w) QSIM_INLINE_LAMBDA {
            const ShiftedShortGrid<T>& b = sg[u];
            return path.template round<MODE>(v, w, rand_shift, b.low_end, b.scale, (T)1, b.quantum, b.limit_pos,
                                              b.limit_neg, b.over_pos, b.over_neg);
          });
      }
    }
    if constexpr (MODE == kNearest && BY_FORMAT) {
      if (fpu && nearest_even_applies<T>(element_grid))
        return round_blocks(j, i0, length, unroll, [nearest](int, T v, uint32_t) QSIM_INLINE_LAMBDA {
          return nearest(v);
        });
    }
    T lp[U], ln[U];
    int32_t e[U];
    for (int u = 0; u < U; ++u) {
      const QuantParams g = grid_of(j + u);
      e[u] = g.emin;
      lp[u] = max_pos<T>(g);
      ln[u] = max_neg<T>(g);
    }
    round_blocks(j, i0, length, unroll, [grid, e, lp, ln, rand_shift](int u, T v, uint32_t w) QSIM_INLINE_LAMBDA {
      return quantize_on_grid<MODE, T>(v, grid, e[u], lp[u], ln[u], w, rand_shift);
    });
  };
  constexpr int U = BLOCK > 0 ? 64 / BLOCK : 1;  // four float vectors an iteration for MX (32) and NVFP4 (16)
  int64_t j = 0;
  for (; j + U <= blocks; j += U)
    round_group(j, BLOCK > 0 ? j * BLOCK : begin[j], BLOCK > 0 ? BLOCK : begin[j + 1] - begin[j],
                std::integral_constant<int, U>());
  for (; j < blocks; ++j)
    round_group(j, BLOCK > 0 ? j * BLOCK : begin[j], BLOCK > 0 ? BLOCK : begin[j + 1] - begin[j],
                std::integral_constant<int, 1>());
}

template <int MODE, typename S, int BLOCK, bool BY_FORMAT, bool SAT>
void small_blocks(const S* in, S* out, int64_t rows, int64_t row_length, int64_t block, const BlockParams& b,
                  uint64_t seed, int rand_shift, bool fpu, bool parallel) {
  const int64_t per_row = (row_length + block - 1) / block;
  const int64_t total = rows * per_row, per_chunk = kChunk / block;
  for_each((total + per_chunk - 1) / per_chunk, parallel, [&](int64_t c) {
    const int64_t k0 = c * per_chunk, k1 = total - k0 < per_chunk ? total : k0 + per_chunk;
    block_chunk<MODE, S, BLOCK, BY_FORMAT, SAT>(in, out, k0, k1, per_row, row_length, block, b, seed, rand_shift, fpu);
  });
}

template <int MODE, typename S, bool SAT>
void blocks_loop(const S* in, S* out, int64_t rows, int64_t row_length, int64_t block, const BlockParams& b,
                 uint64_t seed, int rand_shift, bool fpu) {
  const bool parallel = rows * row_length > kParallelThreshold && omp_get_max_threads() > 1;
  if (block <= kSmallBlock) {
    // Fixed lengths for the common layouts: MX (32, power-of-two scales) and NVFP4 (16, e4m3 scales).
    const bool whole = row_length % block == 0, by_format = b.rule == kScaleFormat;
    if constexpr (SAT) {
      if (whole && block == 32 && !by_format)
        return small_blocks<MODE, S, 32, false, SAT>(in, out, rows, row_length, block, b, seed, rand_shift, fpu, parallel);
      if (whole && block == 16 && by_format)
        return small_blocks<MODE, S, 16, true, SAT>(in, out, rows, row_length, block, b, seed, rand_shift, fpu, parallel);
    }
    if (by_format)
      return small_blocks<MODE, S, 0, true, SAT>(in, out, rows, row_length, block, b, seed, rand_shift, fpu, parallel);
    return small_blocks<MODE, S, 0, false, SAT>(in, out, rows, row_length, block, b, seed, rand_shift, fpu, parallel);
  }
  const int64_t per_row = (row_length + block - 1) / block;
  const int64_t total = rows * per_row;
  auto block_at = [&](int64_t k, auto run) {
    const int64_t start = (k / per_row) * row_length + (k % per_row) * block;
    const int64_t remaining = row_length - (k % per_row) * block;
    run(in + start, out + start, remaining < block ? remaining : block, start, b, seed, rand_shift, fpu);
  };
  if (parallel && total < 4 * omp_get_max_threads()) {
    for (int64_t k = 0; k < total; ++k) block_at(k, large_block<MODE, S, SAT>);
  } else {
    for_each(total, parallel, [&](int64_t k) { block_at(k, one_block<MODE, S, SAT>); });
  }
}

template <int MODE, typename S>
void blocks_loop(const S* in, S* out, int64_t rows, int64_t row_length, int64_t block, const BlockParams& b,
                 uint64_t seed, int rand_bits) {
  // The FPU's short paths (rounding.h), where this thread's floating-point environment allows them.
  const bool fpu = default_float_environment();
  if (b.element.overflow == kSaturate && b.element.subnormals != 0)
    return blocks_loop<MODE, S, true>(in, out, rows, row_length, block, b, seed, 32 - rand_bits, fpu);
  blocks_loop<MODE, S, false>(in, out, rows, row_length, block, b, seed, 32 - rand_bits, fpu);
}

template <typename S>
void dispatch(int rounding, const S* in, S* out, int64_t rows, int64_t row_length, int64_t block,
              const BlockParams& b, uint64_t seed, int rand_bits) {
  with_mode(rounding, [&](auto mode) {
    blocks_loop<decltype(mode)::value>(in, out, rows, row_length, block, b, seed, rand_bits);
  });
}

}  // namespace

void quantize_blocks_f32(const float* in, float* out, int64_t rows, int64_t row_length, int64_t block,
                         const BlockParams& b, int rounding, uint64_t seed, int rand_bits) {
  dispatch(rounding, in, out, rows, row_length, block, b, seed, rand_bits);
}

void quantize_blocks_f64(const double* in, double* out, int64_t rows, int64_t row_length, int64_t block,
                         const BlockParams& b, int rounding, uint64_t seed, int rand_bits) {
  dispatch(rounding, in, out, rows, row_length, block, b, seed, rand_bits);
}

void quantize_blocks_bf16(const uint16_t* in, uint16_t* out, int64_t rows, int64_t row_length, int64_t block,
                          const BlockParams& b, int rounding, uint64_t seed, int rand_bits) {
  dispatch(rounding, reinterpret_cast<const BFloat16*>(in), reinterpret_cast<BFloat16*>(out), rows, row_length, block, b,
           seed, rand_bits);
}

void quantize_blocks_f16(const uint16_t* in, uint16_t* out, int64_t rows, int64_t row_length, int64_t block,
                         const BlockParams& b, int rounding, uint64_t seed, int rand_bits) {
  dispatch(rounding, reinterpret_cast<const Float16*>(in), reinterpret_cast<Float16*>(out), rows, row_length, block, b,
           seed, rand_bits);
}

float max_magnitude_f32(const float* in, int64_t n) { return from_bits<float>(max_magnitude_bits_parallel(in, n)); }

float max_magnitude_bf16(const uint16_t* in, int64_t n) {
  return from_bits<float>(max_magnitude_bits_parallel(reinterpret_cast<const BFloat16*>(in), n));
}

float max_magnitude_f16(const uint16_t* in, int64_t n) {
  return from_bits<float>(max_magnitude_bits_parallel(reinterpret_cast<const Float16*>(in), n));
}

double max_magnitude_f64(const double* in, int64_t n) { return from_bits<double>(max_magnitude_bits_parallel(in, n)); }

}  // namespace qsim
