// bindings.cpp: the qsim._C module. It takes raw addresses of contiguous buffers that the Python layer
// has validated and keeps alive (qsim/quant.py), so no libtorch is linked. The GIL is released while a
// kernel runs.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <array>
#include <stdexcept>
#include <vector>

#include "cpu/accumulate.h"
#include "cpu/block.h"
#include "cpu/nonuniform.h"
#include "cpu/overq.h"
#include "cpu/quantize.h"
#include "cpu/sgd_step.h"
#include "cpu/tensor_scale.h"
#include "qsim/philox.h"

namespace py = pybind11;
using qsim::QuantParams;

// An elementwise kernel over elements of type E (their storage), taking buffer addresses.
template <typename E>
void def_elementwise(py::module_& m, const char* name,
                     void (*kernel)(const E*, E*, int64_t, const QuantParams&, int, uint64_t, int)) {
  m.def(
      name,
      [kernel](uintptr_t in, uintptr_t out, int64_t n, const QuantParams& p, int rounding, uint64_t seed, int rand_bits) {
        py::gil_scoped_release release;
        kernel(reinterpret_cast<const E*>(in), reinterpret_cast<E*>(out), n, p, rounding, seed, rand_bits);
      },
      py::arg("in_ptr"), py::arg("out_ptr"), py::arg("n"), py::arg("params"), py::arg("rounding"), py::arg("seed"),
      py::arg("rand_bits"));
}

// A block-format kernel over elements of type E (their storage).
template <typename E>
void def_blocks(py::module_& m, const char* name,
                void (*kernel)(const E*, E*, int64_t, int64_t, int64_t, const qsim::BlockParams&, int, uint64_t, int)) {
  m.def(name, [kernel](uintptr_t in, uintptr_t out, int64_t rows, int64_t row_length, int64_t block,
                       const qsim::BlockParams& b, int rounding, uint64_t seed, int rand_bits) {
    py::gil_scoped_release release;
    kernel(reinterpret_cast<const E*>(in), reinterpret_cast<E*>(out), rows, row_length, block, b, rounding, seed,
           rand_bits);
  });
}

// A block-format kernel with a per-tensor factor (NVFP4) over elements of type E: the tensor's largest
// magnitude, the factor (cpu/tensor_scale.h) and the blocks in one call, as small tensors need.
template <typename E, typename R>
void def_scaled_blocks(py::module_& m, const char* name,
                       void (*kernel)(const E*, E*, int64_t, int64_t, int64_t, const qsim::BlockParams&, int, uint64_t, int),
                       R (*maximum)(const E*, int64_t)) {
  m.def(name, [kernel, maximum](uintptr_t in, uintptr_t out, int64_t rows, int64_t row_length, int64_t block,
                                const qsim::BlockParams& b, double largest, double smallest_scale, int rounding,
                                uint64_t seed, int rand_bits) {
    py::gil_scoped_release release;
    qsim::BlockParams scaled = b;
    scaled.tensor_scale =
        qsim::tensor_scale((double)maximum(reinterpret_cast<const E*>(in), rows * row_length), largest, smallest_scale);
    kernel(reinterpret_cast<const E*>(in), reinterpret_cast<E*>(out), rows, row_length, block, scaled, rounding, seed,
           rand_bits);
  });
}

// The largest magnitude of n elements of type E (a float, or a double for double elements).
template <typename E, typename R>
void def_max_magnitude(py::module_& m, const char* name, R (*kernel)(const E*, int64_t)) {
  m.def(name, [kernel](uintptr_t in, int64_t n) {
    py::gil_scoped_release release;
    return kernel(reinterpret_cast<const E*>(in), n);
  });
}

// A posit kernel over elements of type E (their storage).
template <typename E>
void def_posit(py::module_& m, const char* name, void (*kernel)(const E*, E*, int64_t, int, int, int, uint64_t, int)) {
  m.def(name, [kernel](uintptr_t in, uintptr_t out, int64_t n, int nbits, int es, int rounding, uint64_t seed,
                       int rand_bits) {
    py::gil_scoped_release release;
    kernel(reinterpret_cast<const E*>(in), reinterpret_cast<E*>(out), n, nbits, es, rounding, seed, rand_bits);
  });
}

// OverQ along the channel axis (cpu/overq.h) over elements of type E: returns the counts (outliers, covered,
// precise, zeros, invalid).
template <typename E>
void def_overq(py::module_& m, const char* name,
               void (*kernel)(const E*, E*, uint8_t*, int64_t, int64_t, int64_t, int, int, bool, double, int64_t*)) {
  m.def(name, [kernel](uintptr_t in, uintptr_t out, uintptr_t state, int64_t outer, int64_t length, int64_t inner,
                       int bits, int cascade, bool precision, double scale) {
    std::array<int64_t, qsim::kOverqCounts> counts{};
    {
      py::gil_scoped_release release;
      kernel(reinterpret_cast<const E*>(in), reinterpret_cast<E*>(out), reinterpret_cast<uint8_t*>(state), outer,
             length, inner, bits, cascade, precision, scale, counts.data());
    }
    return counts;
  });
}

PYBIND11_MODULE(_C, m) {
  m.doc() = "qsim's fused CPU quantization kernels";

  py::class_<QuantParams>(m, "QuantParams")
      .def(py::init<>())
      .def_readwrite("man", &QuantParams::man)
      .def_readwrite("emin", &QuantParams::emin)
      .def_readwrite("subnormals", &QuantParams::subnormals)
      .def_readwrite("overflow", &QuantParams::overflow)
      .def_readwrite("has_inf", &QuantParams::has_inf)
      .def_readwrite("neg_zero", &QuantParams::neg_zero)
      .def_readwrite("wrap_bits", &QuantParams::wrap_bits)
      .def_readwrite("wrap_signed", &QuantParams::wrap_signed)
      .def_readwrite("max_pos_f", &QuantParams::max_pos_f)
      .def_readwrite("max_neg_f", &QuantParams::max_neg_f)
      .def_readwrite("max_pos_d", &QuantParams::max_pos_d)
      .def_readwrite("max_neg_d", &QuantParams::max_neg_d);

  def_elementwise<float>(m, "quantize_f32", qsim::quantize_cpu_f32);
  def_elementwise<double>(m, "quantize_f64", qsim::quantize_cpu_f64);
  def_elementwise<uint16_t>(m, "quantize_bf16", qsim::quantize_cpu_bf16);
  def_elementwise<uint16_t>(m, "quantize_f16", qsim::quantize_cpu_f16);
  // Block formats (qsim/block.h).
  py::class_<qsim::BlockParams>(m, "BlockParams")
      .def(py::init<>())
      .def(py::init<const qsim::BlockParams&>(), py::arg("other"))  // a copy
      .def_readwrite("element", &qsim::BlockParams::element)
      .def_readwrite("scale", &qsim::BlockParams::scale)
      .def_readwrite("rule", &qsim::BlockParams::rule)
      .def_readwrite("element_emax", &qsim::BlockParams::element_emax)
      .def_readwrite("scale_emin", &qsim::BlockParams::scale_emin)
      .def_readwrite("scale_emax", &qsim::BlockParams::scale_emax)
      .def_readwrite("even_bits", &qsim::BlockParams::even_bits)
      .def_readwrite("element_max", &qsim::BlockParams::element_max)
      .def_readwrite("tensor_scale", &qsim::BlockParams::tensor_scale)
      .def_readwrite("smallest_scale", &qsim::BlockParams::smallest_scale);
  def_blocks<float>(m, "quantize_blocks_f32", qsim::quantize_blocks_f32);
  def_blocks<double>(m, "quantize_blocks_f64", qsim::quantize_blocks_f64);
  def_blocks<uint16_t>(m, "quantize_blocks_bf16", qsim::quantize_blocks_bf16);
  def_blocks<uint16_t>(m, "quantize_blocks_f16", qsim::quantize_blocks_f16);
  def_scaled_blocks<float>(m, "quantize_scaled_blocks_f32", qsim::quantize_blocks_f32, qsim::max_magnitude_f32);
  def_scaled_blocks<double>(m, "quantize_scaled_blocks_f64", qsim::quantize_blocks_f64, qsim::max_magnitude_f64);
  def_scaled_blocks<uint16_t>(m, "quantize_scaled_blocks_bf16", qsim::quantize_blocks_bf16, qsim::max_magnitude_bf16);
  def_scaled_blocks<uint16_t>(m, "quantize_scaled_blocks_f16", qsim::quantize_blocks_f16, qsim::max_magnitude_f16);
  m.def("tensor_scale", &qsim::tensor_scale, py::arg("amax"), py::arg("largest"), py::arg("smallest_scale"),
        "NVFP4's per-tensor factor (cpu/tensor_scale.h).");
  def_max_magnitude<float>(m, "max_magnitude_f32", qsim::max_magnitude_f32);
  def_max_magnitude<double>(m, "max_magnitude_f64", qsim::max_magnitude_f64);
  def_max_magnitude<uint16_t>(m, "max_magnitude_bf16", qsim::max_magnitude_bf16);
  def_max_magnitude<uint16_t>(m, "max_magnitude_f16", qsim::max_magnitude_f16);

  // Posits and logarithmic numbers (cpu/nonuniform.cpp); an LNS table is the address of a uint32
  // (float32) or uint64 (float64) array laid out as qsim/lns.h describes.
  py::class_<qsim::LnsParams>(m, "LnsParams")
      .def(py::init<int32_t, int32_t, int32_t, int32_t, int32_t>(), py::arg("frac_bits"), py::arg("code_min"),
           py::arg("code_max"), py::arg("is_signed"), py::arg("exact_ties"));
  def_posit<float>(m, "posit_f32", qsim::posit_cpu_f32);
  def_posit<double>(m, "posit_f64", qsim::posit_cpu_f64);
  def_posit<uint16_t>(m, "posit_bf16", qsim::posit_cpu_bf16);
  def_posit<uint16_t>(m, "posit_f16", qsim::posit_cpu_f16);
  m.def("lns_f32", [](uintptr_t in, uintptr_t out, int64_t n, const qsim::LnsParams& p, uintptr_t table, int rounding, uint64_t seed, int rand_bits) {
    py::gil_scoped_release release;
    qsim::lns_cpu_f32(reinterpret_cast<const float*>(in), reinterpret_cast<float*>(out), n, p, reinterpret_cast<const uint32_t*>(table), rounding, seed, rand_bits);
  });
  m.def("lns_f64", [](uintptr_t in, uintptr_t out, int64_t n, const qsim::LnsParams& p, uintptr_t table, int rounding, uint64_t seed, int rand_bits) {
    py::gil_scoped_release release;
    qsim::lns_cpu_f64(reinterpret_cast<const double*>(in), reinterpret_cast<double*>(out), n, p, reinterpret_cast<const uint64_t*>(table), rounding, seed, rand_bits);
  });
  // Simulated low-precision accumulator (cpu/accumulate.h), used by qsim.nn.functional. out holds the
  // initial running sum and is updated in place; seeds has one entry per chunk (read for stochastic only).
  m.def(
      "accumulate_f32",
      [](uintptr_t a, int64_t a_sb, int64_t a_sn, int64_t a_sk, uintptr_t b, int64_t b_sb, int64_t b_sk, uintptr_t out,
         int64_t batch, int64_t n, int64_t k, int64_t m, const QuantParams& p, int rounding, int64_t chunk,
         const std::vector<uint64_t>& seeds, int rand_bits, int threads) {
        if (chunk < 1) throw std::invalid_argument("chunk: expected a positive number of products per rounding");
        if (rounding == qsim::kStochastic && (int64_t)seeds.size() < (k + chunk - 1) / chunk)
          throw std::invalid_argument("seeds: expected one seed per chunk for stochastic rounding");
        py::gil_scoped_release release;
        qsim::accumulate_cpu_f32(reinterpret_cast<const float*>(a), a_sb, a_sn, a_sk, reinterpret_cast<const float*>(b),
                                 b_sb, b_sk, reinterpret_cast<double*>(out), batch, n, k, m, p, rounding, chunk,
                                 seeds.data(), rand_bits, threads);
      },
      py::arg("a_ptr"), py::arg("a_sb"), py::arg("a_sn"), py::arg("a_sk"), py::arg("b_ptr"), py::arg("b_sb"),
      py::arg("b_sk"), py::arg("out_ptr"), py::arg("batch"), py::arg("n"), py::arg("k"), py::arg("m"),
      py::arg("params"), py::arg("rounding"), py::arg("chunk"), py::arg("seeds"), py::arg("rand_bits"), py::arg("threads"));

  m.def(
      "philox4x32_10",
      [](std::array<uint32_t, 4> counter, std::array<uint32_t, 2> key) {
        std::array<uint32_t, 4> out;
        qsim::philox4x32_10(counter.data(), key.data(), out.data());
        return out;
      },
      "Philox4x32-10 of one counter under one key (exposed for known-answer tests).");
  // LowPrecision(SGD)'s step on one float32 parameter (cpu/sgd_step.h, qsim/optim_fused.py): buffer and
  // master addresses may be 0 (no momentum, no accumulator); a role's params None leaves it in float32.
  m.def(
      "sgd_step_f32",
      [](uintptr_t param, uintptr_t grad, uintptr_t buffer, uintptr_t master, int64_t n, float lr, float momentum,
         float dampening_keep, float weight_decay, float grad_scale, bool scale_grad, bool use_weight_decay,
         bool use_momentum, bool nesterov, bool new_buffer, const QuantParams* g, int g_rounding, uint64_t g_seed,
         const QuantParams* mo, int m_rounding, uint64_t m_seed, const QuantParams* acc, int acc_rounding,
         uint64_t acc_seed, const QuantParams* w, int w_rounding, uint64_t w_seed, int rand_bits) {
        if ((use_momentum && buffer == 0) || (master != 0 && acc == nullptr))
          throw std::invalid_argument("sgd_step_f32: momentum needs a buffer and a master an accumulator format");
        const qsim::SgdStep s{lr, momentum, dampening_keep, weight_decay, grad_scale, scale_grad, use_weight_decay,
                              use_momentum, nesterov, new_buffer};
        py::gil_scoped_release release;
        qsim::sgd_step_f32(reinterpret_cast<float*>(param), reinterpret_cast<float*>(grad),
                           reinterpret_cast<float*>(buffer), reinterpret_cast<float*>(master), n, s,
                           {g, g_rounding, g_seed, rand_bits}, {mo, m_rounding, m_seed, rand_bits},
                           {acc, acc_rounding, acc_seed, rand_bits}, {w, w_rounding, w_seed, rand_bits});
      });
  def_overq<float>(m, "overq_f32", qsim::overq_cpu_f32);
  def_overq<double>(m, "overq_f64", qsim::overq_cpu_f64);
}
