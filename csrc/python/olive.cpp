// numkern._core.olive: OVP encode / decode / fused matmul on C-contiguous numpy arrays.
// python/numkern/quant_olive.py validates first; the checks here only keep a wrong call from
// reading or writing out of bounds.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <string>

#include "cpu/olive/olive.hpp"
#include "python/common/registry.hpp"

namespace nk {
namespace {
namespace py = pybind11;
// numpy copies an input that is not C-contiguous or not aligned (a view at an odd byte offset):
// the kernels dereference float pointers, which must be aligned.
constexpr int kAlignedC = py::array::c_style | py::detail::npy_api::NPY_ARRAY_ALIGNED_;
using F32 = py::array_t<float, kAlignedC>;
using F64 = py::array_t<double, kAlignedC>;
using U8 = py::array_t<std::uint8_t, kAlignedC>;

void raise_if(const char* message) {
  if (message) throw py::value_error(message);
}

void check_format(int bits, int normal) { raise_if(cpu::olive::check_format(bits, normal)); }

void check_codes(const U8& codes, const F32& scales, bool per_row, index_t rows, index_t cols, int bits) {
  if (codes.ndim() != 2) throw py::value_error("codes: shape does not match the quantized shape");
  if (scales.ndim() != 1) throw py::value_error("scales: shape does not match the quantized shape");
  raise_if(cpu::olive::check_codes(codes.shape(0), codes.shape(1), scales.shape(0), per_row, rows,
                                   cols, bits));
}

py::tuple encode(const F32& x, int bits, int normal, bool keep_left, bool per_row, int mode,
                 const F64& alphas_in) {
  check_format(bits, normal);
  if (x.ndim() != 2) throw py::value_error("x: expected a 2-d array");
  if (mode < 0 || mode > 2) throw py::value_error("mode: must be 0, 1 or 2");
  const index_t rows = x.shape(0), cols = x.shape(1);
  if (rows == 0 || cols == 0) throw py::value_error("x: empty");
  const index_t groups = per_row ? rows : 1;
  if (mode == 2 && (alphas_in.ndim() != 1 || alphas_in.shape(0) != groups))
    throw py::value_error("alphas: need one threshold per group");
  U8 codes({rows, cpu::olive::bytes_per_row(cols, bits)});
  F32 scales(groups);
  F64 alphas(groups), errs(groups);
  if (mode == 2) std::copy(alphas_in.data(), alphas_in.data() + groups, alphas.mutable_data());
  cpu::olive::EncodeSpec spec{bits, normal, keep_left, per_row, static_cast<cpu::olive::AlphaMode>(mode)};
  const float* px = x.data();
  std::uint8_t* pc = codes.mutable_data();
  float* ps = scales.mutable_data();
  double* pa = alphas.mutable_data();
  double* pe = errs.mutable_data();
  {
    py::gil_scoped_release release;
    cpu::olive::encode(px, rows, cols, spec, pc, ps, pa, pe);
  }
  return py::make_tuple(codes, scales, alphas, errs);
}

F32 decode(const U8& codes, const F32& scales, bool per_row, index_t rows, index_t cols, int bits,
           int normal) {
  check_format(bits, normal);
  check_codes(codes, scales, per_row, rows, cols, bits);
  F32 out({rows, cols});
  const std::uint8_t* pc = codes.data();
  const float* ps = scales.data();
  float* po = out.mutable_data();
  {
    py::gil_scoped_release release;
    cpu::olive::decode(pc, ps, per_row, rows, cols, bits, normal, po);
  }
  return out;
}

F32 matmul(const F32& x, const U8& codes, const F32& scales, bool per_row, index_t n, index_t k, int bits,
           int normal) {
  check_format(bits, normal);
  check_codes(codes, scales, per_row, n, k, bits);
  if (x.ndim() != 2 || x.shape(1) != k) throw py::value_error("x: inner dimension does not match");
  const index_t batch = x.shape(0);
  F32 out({batch, n});
  const float* px = x.data();
  const std::uint8_t* pc = codes.data();
  const float* ps = scales.data();
  float* po = out.mutable_data();
  {
    py::gil_scoped_release release;
    cpu::olive::matmul(px, batch, pc, ps, per_row, n, k, bits, normal, po);
  }
  return out;
}

void bind_olive(py::module_& m) {
  m.def("encode", &encode, py::arg("x"), py::arg("bits"), py::arg("normal"), py::arg("keep_left"),
        py::arg("per_row"), py::arg("mode"), py::arg("alphas"));
  m.def("decode", &decode, py::arg("codes"), py::arg("scales"), py::arg("per_row"), py::arg("rows"),
        py::arg("cols"), py::arg("bits"), py::arg("normal"));
  m.def("matmul", &matmul, py::arg("x"), py::arg("codes"), py::arg("scales"), py::arg("per_row"),
        py::arg("n"), py::arg("k"), py::arg("bits"), py::arg("normal"));
  static const char* const isa_names[] = {"auto", "portable", "avx2", "avx512"};
  m.def(
      "set_isa",
      [](const std::string& name) {
        for (int k = 0; k < 4; ++k)
          if (name == isa_names[k]) {
            const auto isa = static_cast<cpu::olive::Isa>(k);
            if (!cpu::olive::isa_supported(isa))
              throw py::value_error("isa: '" + name + "' is not supported by this CPU");
            cpu::olive::set_isa(isa);
            return;
          }
        throw py::value_error("isa: expected 'auto', 'portable', 'avx2' or 'avx512', got '" + name + "'");
      },
      py::arg("isa"), "Force the decoders / GEMV kernels (testing): 'portable', 'avx2', 'avx512' or 'auto'.");
  m.def(
      "isa", []() { return std::string(isa_names[static_cast<int>(cpu::olive::active_isa())]); },
      "The decoders / GEMV kernels in use: 'portable', 'avx2' or 'avx512'.");
  m.def(
      "isa_supported",
      [](const std::string& name) {
        for (int k = 0; k < 4; ++k)
          if (name == isa_names[k]) return cpu::olive::isa_supported(static_cast<cpu::olive::Isa>(k));
        return false;
      },
      py::arg("isa"), "Whether set_isa(isa) can run on this CPU.");
}
}  // namespace
NK_REGISTER_FAMILY(olive, bind_olive);
}  // namespace nk
