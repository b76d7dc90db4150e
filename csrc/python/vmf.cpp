// numkern._core.vmf: CPU entry points of the von Mises–Fisher family.  Every array arrives as it
// is from numkern._backend (Context.call) and is read with nk::pyb::as_view; sizes come from the
// views' shapes.  The CUDA entries (vmf_cuda.cpp) take the same arguments plus `stream`.
#include <pybind11/pybind11.h>

#include <string>
#include <vector>

#include "cpu/vmf/vmf.hpp"
#include "numkern/vmf/vmf.hpp"
#include "python/common/array_view.hpp"
#include "python/common/registry.hpp"
#include "python/vmf_args.hpp"

namespace nk {
namespace {
namespace py = pybind11;
using pyb::ArrayView;
using pyb::as_view;

template <class T>
void run_map(ops::VmfMap op, const std::vector<ArrayView>& in, ArrayView& out) {
  const index_t n = out.size();
  T* o = out.mut<T>();
  const T* p[4] = {};
  for (size_t i = 0; i < in.size(); ++i) p[i] = in[i].ptr<T>();
  py::gil_scoped_release release;
  switch (op) {
    case ops::VmfMap::log_normalizer: cpu::vmf::map2<ops::VmfLogNormalizer>(p[0], p[1], o, n); break;
    case ops::VmfMap::log_normalizer_shifted:
      cpu::vmf::map2<ops::VmfLogNormalizerShifted>(p[0], p[1], o, n);
      break;
    case ops::VmfMap::entropy: cpu::vmf::map2<ops::VmfEntropy>(p[0], p[1], o, n); break;
    case ops::VmfMap::kappa_mle: cpu::vmf::map2<ops::VmfKappaMle>(p[0], p[1], o, n); break;
    case ops::VmfMap::mean_length: cpu::vmf::map2<ops::VmfMeanLength>(p[0], p[1], o, n); break;
    case ops::VmfMap::kl: cpu::vmf::map4<ops::VmfKl>(p[0], p[1], p[2], p[3], o, n); break;
  }
}

void bind_vmf(py::module_& m) {
  m.def("map", [](const std::string& op, const py::sequence& inputs, const py::object& out) {
    auto args = vmf_args::map_args(op, inputs, out, pyb::Where::host);
    pyb::dispatch_float(args.out, [&](auto t) { run_map<decltype(t)>(args.op, args.in, args.out); });
  }, py::arg("op"), py::arg("inputs"), py::arg("out"),
        "out = op(*inputs) elementwise; op: log_normalizer, log_normalizer_shifted, entropy, kappa_mle, "
        "mean_length (2 inputs) or kl (4 inputs); every array C-contiguous, of out's shape and dtype.");

  m.def("row_norm2", [](const py::object& x, const py::object& out) {
    auto a = vmf_args::row_norm2_args(x, out, pyb::Where::host);
    pyb::dispatch_float(a.x, [&](auto t) {
      using T = decltype(t);
      py::gil_scoped_release r;
      cpu::vmf::row_norm2<T>(a.x.ptr<T>(), a.m, a.d, a.out.mut<double>());
    });
  }, py::arg("x"), py::arg("out"), "out[r] = |x[r]|^2 for x (m, d); out (m,) float64.");

  m.def("weighted_sum", [](const py::object& x, const py::object& w, const py::object& out) {
    auto a = vmf_args::weighted_sum_args(x, w, out, pyb::Where::host);
    pyb::dispatch_float(a.x, [&](auto t) {
      using T = decltype(t);
      const double* pw = a.has_w ? a.w.ptr<double>() : nullptr;
      py::gil_scoped_release r;
      cpu::vmf::weighted_sum<T>(a.x.ptr<T>(), pw, a.g, a.n, a.d, a.out.mut<double>());
    });
  }, py::arg("x"), py::arg("w"), py::arg("out"),
        "out[g] = sum_i w[g, i] x[g, i] for x (G, n, d), w (G, n) float64 or None, out (G, d) float64.");

  m.def("logpdf", [](const py::object& x, const py::object& mu, const py::object& shifted,
                     const py::object& kappa, const py::object& out, const py::object& norm2) {
    auto a = vmf_args::logpdf_args(x, mu, shifted, kappa, out, norm2, pyb::Where::host);
    pyb::dispatch_float(a.x, [&](auto t) {
      using T = decltype(t);
      T* po = a.out.mut<T>();
      py::gil_scoped_release r;
      cpu::vmf::logpdf<T>(a.x.ptr<T>(), a.x_group_stride, a.mu.ptr<double>(), a.shifted.ptr<double>(),
                          a.kappa.ptr<double>(), a.g, a.n, a.d, po, a.norm2.mut<double>());
    });
  }, py::arg("x"), py::arg("mu"), py::arg("shifted"), py::arg("kappa"), py::arg("out"), py::arg("norm2"),
        "log f of x (G or 1, n, d) under (mu (G, d), shifted = log C + kappa (G,), kappa (G,)) into "
        "out (G, n) (x's dtype) and |x|^2 into norm2 (G, n) float64; x with 1 group is shared.");

  m.def("estep", [](const py::object& dots, const py::object& b, const py::object& kappa,
                    const py::object& logresp, const py::object& lse) {
    auto a = vmf_args::estep_args(dots, b, kappa, logresp, lse, pyb::Where::host);
    py::gil_scoped_release r;
    cpu::vmf::estep(a.dots.ptr<double>(), a.b.ptr<double>(), a.kappa.ptr<double>(), a.n, a.k,
                    a.logresp.mut<double>(), a.lse.mut<double>());
  }, py::arg("dots"), py::arg("b"), py::arg("kappa"), py::arg("logresp"), py::arg("lse"),
        "Mixture E-step on dots (n, K) float64 with b, kappa (K,): logresp (n, K), lse (n,).");

  m.def("sample", [](const py::object& mu, const py::object& kappa, std::uint64_t seed, const py::object& out) {
    auto a = vmf_args::sample_args(mu, kappa, out, pyb::Where::host);
    pyb::dispatch_float(a.out, [&](auto t) {
      using T = decltype(t);
      T* po = a.out.mut<T>();
      py::gil_scoped_release r;
      cpu::vmf::sample<T>(a.mu.ptr<double>(), a.kappa.ptr<double>(), a.g, a.n, a.d, seed, po);
    });
  }, py::arg("mu"), py::arg("kappa"), py::arg("seed"), py::arg("out"),
        "out (G, n, d) ~ vMF(mu (G, d) float64, kappa (G,) float64) from the counter-based streams of seed.");
}
}  // namespace
NK_REGISTER_FAMILY(vmf, bind_vmf);
}  // namespace nk
