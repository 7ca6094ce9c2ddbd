// cpu/nonuniform.cpp: posits and logarithmic numbers on the CPU: the loop of cpu/loops.h around the
// element arithmetic of qsim/posit.h and qsim/lns.h.
#include "cpu/nonuniform.h"

#include "cpu/loops.h"

namespace qsim {
namespace {

template <typename T>
void posit_cpu(const T* in, T* out, int64_t n, int nbits, int es, int rounding, uint64_t seed, int rand_bits) {
  dispatch_mode(rounding, in, out, n, seed, rand_bits, [nbits, es](auto mode, T x, uint32_t rand, int rand_shift) {
    return posit_value<decltype(mode)::value, T>(x, nbits, es, rand, rand_shift);
  });
}

template <typename T>
void lns_cpu(const T* in, T* out, int64_t n, const LnsParams& p, const typename FloatTraits<T>::Bits* table,
             int rounding, uint64_t seed, int rand_bits) {
  // The fields are captured one by one: a captured struct is loaded whole in the loop, which GCC 12
  // does not vectorise.
  const int f = p.frac_bits, code_min = p.code_min, code_max = p.code_max, is_signed = p.is_signed, ties = p.exact_ties;
  dispatch_mode(rounding, in, out, n, seed, rand_bits,
                [f, code_min, code_max, is_signed, ties, table](auto mode, T x, uint32_t rand, int rand_shift) {
                  const LnsParams params = {f, code_min, code_max, is_signed, ties};
                  return lns_value<decltype(mode)::value, T>(x, params, table, rand, rand_shift);
                });
}

}  // namespace

void posit_cpu_f32(const float* in, float* out, int64_t n, int nbits, int es, int rounding, uint64_t seed, int rand_bits) {
  posit_cpu(in, out, n, nbits, es, rounding, seed, rand_bits);
}
void posit_cpu_f64(const double* in, double* out, int64_t n, int nbits, int es, int rounding, uint64_t seed, int rand_bits) {
  posit_cpu(in, out, n, nbits, es, rounding, seed, rand_bits);
}
void lns_cpu_f32(const float* in, float* out, int64_t n, const LnsParams& p, const uint32_t* table, int rounding,
                 uint64_t seed, int rand_bits) {
  lns_cpu(in, out, n, p, table, rounding, seed, rand_bits);
}
void lns_cpu_f64(const double* in, double* out, int64_t n, const LnsParams& p, const uint64_t* table, int rounding,
                 uint64_t seed, int rand_bits) {
  lns_cpu(in, out, n, p, table, rounding, seed, rand_bits);
}

}  // namespace qsim
