// numkern._core.kde: the block update of the streaming log-sum-exp (python/numkern/kde.py drives
// the loop over blocks and computes the Gram blocks with the array library's matmul).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <string>

#include "cpu/kde/kde.hpp"
#include "python/common/registry.hpp"

namespace nk {
namespace {
namespace py = pybind11;

void require(bool ok, const std::string& msg) {
  if (!ok) throw py::value_error(msg);
}

// Rows of a 2-D array must be contiguous; returns the row stride in elements.
index_t row_stride(const py::array& a, const char* name, index_t rows, index_t cols) {
  require(a.ndim() == 2 && a.shape(0) == rows && a.shape(1) == cols,
          std::string(name) + ": wrong shape");
  const index_t item = static_cast<index_t>(a.itemsize());
  require(cols <= 1 || a.strides(1) == item, std::string(name) + ": rows must be contiguous");
  require(a.strides(0) % item == 0 && a.strides(0) >= 0, std::string(name) + ": bad row stride");
  return rows > 1 ? a.strides(0) / item : cols;
}

const double* f64_vector(const py::array& a, const char* name, index_t n) {
  require(a.dtype().equal(py::dtype::of<double>()), std::string(name) + ": must be float64");
  require(a.ndim() == 1 && a.shape(0) == n, std::string(name) + ": wrong length");
  require(n <= 1 || a.strides(0) == 8, std::string(name) + ": must be contiguous");
  return static_cast<const double*>(a.data());
}

double* f64_accumulator(py::array& a, const char* name, index_t mb, index_t K) {
  require(a.dtype().equal(py::dtype::of<double>()), std::string(name) + ": must be float64");
  require(a.ndim() == 2 && a.shape(0) == mb && a.shape(1) == K, std::string(name) + ": wrong shape");
  require(a.writeable(), std::string(name) + ": read-only");
  require((a.flags() & py::array::c_style) != 0, std::string(name) + ": must be C-contiguous");
  return static_cast<double*>(a.mutable_data());
}

template <class T>
void update_typed(const py::object& gram, const py::array& x, const py::array& y, const py::array& xsq,
                  const py::array& ysq, const py::array& logw, const py::array& coef, index_t self_diff,
                  bool want_sq, py::array& acc_max, py::array& acc_sum, py::array& acc_sum2) {
  require(x.ndim() == 2 && y.ndim() == 2, "x, y: must be 2-D");
  require(y.dtype().equal(x.dtype()), "y: dtype differs from x");
  cpu::KdeBlock<T> b{};
  b.mb = x.shape(0);
  b.nb = y.shape(0);
  b.d = x.shape(1);
  require(y.shape(1) == b.d, "y: dimension differs from x");
  b.x = static_cast<const T*>(x.data());
  b.ldx = row_stride(x, "x", b.mb, b.d);
  b.y = static_cast<const T*>(y.data());
  b.ldy = row_stride(y, "y", b.nb, b.d);
  b.gram = nullptr;
  if (!gram.is_none()) {
    py::array g = py::reinterpret_borrow<py::array>(gram);
    require(g.dtype().equal(x.dtype()), "gram: dtype differs from x");
    require(g.ndim() == 2 && g.shape(0) == b.mb && g.shape(1) == b.nb, "gram: wrong shape");
    require((g.flags() & py::array::c_style) != 0, "gram: must be C-contiguous");
    b.gram = static_cast<const T*>(g.data());
  }
  b.xsq = f64_vector(xsq, "xsq", b.mb);
  b.ysq = f64_vector(ysq, "ysq", b.nb);
  b.logw = f64_vector(logw, "logw", b.nb);
  require(coef.ndim() == 1 && coef.shape(0) >= 1, "coef: need at least one bandwidth");
  b.K = coef.shape(0);
  b.coef = f64_vector(coef, "coef", b.K);
  b.self_diff = self_diff;
  b.want_sq = want_sq;
  b.acc_max = f64_accumulator(acc_max, "acc_max", b.mb, b.K);
  b.acc_sum = f64_accumulator(acc_sum, "acc_sum", b.mb, b.K);
  b.acc_sum2 = f64_accumulator(acc_sum2, "acc_sum2", b.mb, b.K);
  py::gil_scoped_release release;
  cpu::kde_block_update<T>(b);
}

void bind_kde(py::module_& m) {
  m.def(
      "block_update",
      [](const py::object& gram, const py::array& x, const py::array& y, const py::array& xsq,
         const py::array& ysq, const py::array& logw, const py::array& coef, index_t self_diff,
         bool want_sq, py::array& acc_max, py::array& acc_sum, py::array& acc_sum2) {
        if (x.dtype().equal(py::dtype::of<double>()))
          update_typed<double>(gram, x, y, xsq, ysq, logw, coef, self_diff, want_sq, acc_max, acc_sum,
                               acc_sum2);
        else if (x.dtype().equal(py::dtype::of<float>()))
          update_typed<float>(gram, x, y, xsq, ysq, logw, coef, self_diff, want_sq, acc_max, acc_sum,
                              acc_sum2);
        else
          throw py::type_error("x: dtype must be float32 or float64");
      },
      py::arg("gram"), py::arg("x"), py::arg("y"), py::arg("xsq"), py::arg("ysq"), py::arg("logw"),
      py::arg("coef"), py::arg("self_diff"), py::arg("want_sq"), py::arg("acc_max"), py::arg("acc_sum"),
      py::arg("acc_sum2"),
      "Fold one (mb x nb) block into the running log-sum-exp accumulators (see csrc/cpu/kde/kde.hpp).");
  m.def(
      "set_isa",
      [](const std::string& name) {
        static const char* names[] = {"auto", "portable", "avx2", "avx512"};
        for (int k = 0; k < 4; ++k)
          if (name == names[k]) {
            const auto isa = static_cast<cpu::KdeIsa>(k);
            require(cpu::kde_isa_supported(isa), "isa: '" + name + "' is not supported by this CPU");
            cpu::kde_set_isa(isa);
            return;
          }
        throw py::value_error("isa: expected 'auto', 'portable', 'avx2' or 'avx512', got '" + name + "'");
      },
      py::arg("isa"),
      "Force the row kernel of block_update (testing): 'portable', 'avx2', 'avx512', or 'auto'.");
  m.def(
      "isa",
      []() {
        static const char* names[] = {"auto", "portable", "avx2", "avx512"};
        return std::string(names[static_cast<int>(cpu::kde_active_isa())]);
      },
      "The row kernel block_update uses: 'portable', 'avx2' or 'avx512'.");
  m.def(
      "isa_supported",
      [](const std::string& name) {
        if (name == "avx512") return cpu::kde_isa_supported(cpu::KdeIsa::avx512);
        if (name == "avx2") return cpu::kde_isa_supported(cpu::KdeIsa::avx2);
        return name == "portable" || name == "auto";
      },
      py::arg("isa"), "Whether set_isa(isa) can run on this CPU.");
}
}  // namespace
NK_REGISTER_FAMILY(kde, bind_kde);
}  // namespace nk
