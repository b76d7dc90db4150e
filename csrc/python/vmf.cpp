// numkern._core.vmf: CPU entry points of the von Mises–Fisher family.  Python
// (numkern/_vmf_kernels.py) passes C-contiguous arrays of the right dtypes and shapes; the checks
// here are the second line of defence against an out-of-bounds write.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <string>

#include "cpu/vmf/vmf.hpp"
#include "numkern/vmf/vmf.hpp"
#include "python/common/registry.hpp"

namespace nk {
namespace {
namespace py = pybind11;

template <class T>
using carray = py::array_t<T, py::array::c_style>;

void need(bool ok, const std::string& msg) {
  if (!ok) throw py::value_error(msg);
}

template <class T>
const T* cptr(const py::array& a, const char* name, index_t size) {
  need(a.dtype().equal(py::dtype::of<T>()), std::string(name) + ": wrong dtype");
  need(a.flags() & py::array::c_style, std::string(name) + ": not C-contiguous");
  need(static_cast<index_t>(a.size()) == size, std::string(name) + ": wrong size");
  return static_cast<const T*>(a.data());
}
template <class T>
T* mptr(py::array& a, const char* name, index_t size) {
  need(a.writeable(), std::string(name) + ": read-only");
  cptr<T>(a, name, size);
  return static_cast<T*>(a.mutable_data());
}

template <class T>
void run_map(const std::string& op, const py::list& ins, py::array& out) {
  const index_t n = out.size();
  T* o = mptr<T>(out, "out", n);
  std::vector<const T*> p;
  for (auto& h : ins) p.push_back(cptr<T>(h.cast<py::array>(), "input", n));
  const bool binary = op == "log_normalizer" || op == "log_normalizer_shifted" || op == "entropy" ||
                      op == "kappa_mle" || op == "mean_length";
  if (!binary && op != "kl") throw py::value_error("unknown vmf operation: " + op);
  need(p.size() == (binary ? 2u : 4u), op + ": wrong number of inputs");
  py::gil_scoped_release release;
  if (op == "log_normalizer") { cpu::vmf::map2<ops::VmfLogNormalizer>(p[0], p[1], o, n); }
  else if (op == "log_normalizer_shifted") { cpu::vmf::map2<ops::VmfLogNormalizerShifted>(p[0], p[1], o, n); }
  else if (op == "entropy") { cpu::vmf::map2<ops::VmfEntropy>(p[0], p[1], o, n); }
  else if (op == "kappa_mle") { cpu::vmf::map2<ops::VmfKappaMle>(p[0], p[1], o, n); }
  else if (op == "mean_length") { cpu::vmf::map2<ops::VmfMeanLength>(p[0], p[1], o, n); }
  else if (op == "kl") { cpu::vmf::map4<ops::VmfKl>(p[0], p[1], p[2], p[3], o, n); }
}

template <class F>
void by_dtype(const py::array& a, F&& f) {
  if (a.dtype().equal(py::dtype::of<double>())) f(double{});
  else if (a.dtype().equal(py::dtype::of<float>())) f(float{});
  else throw py::type_error("dtype must be float32 or float64");
}

void bind_vmf(py::module_& m) {
  m.def("map", [](const std::string& op, const py::list& ins, py::array& out) {
    by_dtype(out, [&](auto t) { run_map<decltype(t)>(op, ins, out); });
  }, py::arg("op"), py::arg("inputs"), py::arg("out"));

  m.def("row_norm2", [](const py::array& x, index_t m, index_t d, py::array& out) {
    double* o = mptr<double>(out, "out", m);
    by_dtype(x, [&](auto t) {
      using T = decltype(t);
      const T* px = cptr<T>(x, "X", m * d);
      py::gil_scoped_release r;
      cpu::vmf::row_norm2<T>(px, m, d, o);
    });
  });

  m.def("weighted_sum", [](const py::array& x, const py::object& w, index_t g, index_t n, index_t d,
                           py::array& out) {
    double* o = mptr<double>(out, "out", g * d);
    by_dtype(x, [&](auto t) {
      using T = decltype(t);
      const T* px = cptr<T>(x, "X", g * n * d);
      const double* pw = w.is_none() ? nullptr : cptr<double>(w.cast<py::array>(), "weights", g * n);
      py::gil_scoped_release r;
      cpu::vmf::weighted_sum<T>(px, pw, g, n, d, o);
    });
  });

  m.def("logpdf", [](const py::array& x, bool shared_x, const py::array& mu, const py::array& shifted,
                     const py::array& kappa, index_t g, index_t n, index_t d, py::array& out,
                     py::array& norm2) {
    const double* pm = cptr<double>(mu, "mu", g * d);
    const double* ps = cptr<double>(shifted, "shifted", g);
    const double* pk = cptr<double>(kappa, "kappa", g);
    double* pn = mptr<double>(norm2, "norm2", g * n);
    by_dtype(x, [&](auto t) {
      using T = decltype(t);
      const T* px = cptr<T>(x, "X", (shared_x ? 1 : g) * n * d);
      T* po = mptr<T>(out, "out", g * n);
      py::gil_scoped_release r;
      cpu::vmf::logpdf<T>(px, shared_x ? 0 : n * d, pm, ps, pk, g, n, d, po, pn);
    });
  });

  m.def("estep", [](const py::array& dots, const py::array& b, const py::array& kappa, index_t n,
                    index_t k, py::array& logresp, py::array& lse) {
    const double* pd = cptr<double>(dots, "dots", n * k);
    const double* pb = cptr<double>(b, "b", k);
    const double* pk = cptr<double>(kappa, "kappa", k);
    double* pr = mptr<double>(logresp, "logresp", n * k);
    double* pl = mptr<double>(lse, "lse", n);
    py::gil_scoped_release r;
    cpu::vmf::estep(pd, pb, pk, n, k, pr, pl);
  });

  m.def("sample", [](const py::array& mu, const py::array& kappa, index_t g, index_t n, index_t d,
                     std::uint64_t seed, py::array& out) {
    need(d >= 2, "d must be >= 2");
    const double* pm = cptr<double>(mu, "mu", g * d);
    const double* pk = cptr<double>(kappa, "kappa", g);
    by_dtype(out, [&](auto t) {
      using T = decltype(t);
      T* po = mptr<T>(out, "out", g * n * d);
      py::gil_scoped_release r;
      cpu::vmf::sample<T>(pm, pk, g, n, d, seed, po);
    });
  });
}
}  // namespace
NK_REGISTER_FAMILY(vmf, bind_vmf);
}  // namespace nk
