// numkern._cuda.vmf: the CUDA entry points of the von Mises–Fisher family.  Same arguments as
// numkern._core.vmf (csrc/python/vmf.cpp, checked by the same vmf_args.hpp) plus `stream`, the
// caller's current stream; Python calls both through numkern._backend's Context.call, which makes
// the arrays' device current first.
#include <pybind11/pybind11.h>

#include <stdexcept>
#include <string>

#include "cuda/vmf/launch.hpp"
#include "python/common/registry.hpp"
#include "python/vmf_args.hpp"

namespace nk {
namespace {
namespace py = pybind11;
using pyb::Where;

void check(int rc) {
  if (rc != 0) throw std::runtime_error(std::string("numkern vmf CUDA launch failed: ") + cuda::error_string(rc));
}

void bind_cuda_vmf(py::module_& m) {
  m.def("map", [](const std::string& op, const py::sequence& inputs, const py::object& out, std::uintptr_t stream) {
    auto a = vmf_args::map_args(op, inputs, out, Where::cuda);
    pyb::dispatch_float(a.out, [&](auto t) {
      using T = decltype(t);
      const T* in[4] = {};
      for (size_t i = 0; i < a.in.size(); ++i) in[i] = a.in[i].ptr<T>();
      T* o = a.out.mut<T>();
      int rc;
      {
        py::gil_scoped_release r;
        rc = cuda::vmf::map<T>(a.op, in, o, a.out.size(), stream);
      }
      check(rc);
    });
  }, py::arg("op"), py::arg("inputs"), py::arg("out"), py::arg("stream"));

  m.def("row_norm2", [](const py::object& x, const py::object& out, std::uintptr_t stream) {
    auto a = vmf_args::row_norm2_args(x, out, Where::cuda);
    pyb::dispatch_float(a.x, [&](auto t) {
      using T = decltype(t);
      double* o = a.out.mut<double>();
      int rc;
      {
        py::gil_scoped_release r;
        rc = cuda::vmf::row_norm2<T>(a.x.ptr<T>(), a.m, a.d, o, stream);
      }
      check(rc);
    });
  }, py::arg("x"), py::arg("out"), py::arg("stream"));

  m.def("weighted_sum", [](const py::object& x, const py::object& w, const py::object& out, std::uintptr_t stream) {
    auto a = vmf_args::weighted_sum_args(x, w, out, Where::cuda);
    pyb::dispatch_float(a.x, [&](auto t) {
      using T = decltype(t);
      const double* pw = a.has_w ? a.w.ptr<double>() : nullptr;
      double* o = a.out.mut<double>();
      int rc;
      {
        py::gil_scoped_release r;
        rc = cuda::vmf::weighted_sum<T>(a.x.ptr<T>(), pw, a.g, a.n, a.d, o, stream);
      }
      check(rc);
    });
  }, py::arg("x"), py::arg("w"), py::arg("out"), py::arg("stream"));

  m.def("logpdf", [](const py::object& x, const py::object& mu, const py::object& shifted, const py::object& kappa,
                     const py::object& out, const py::object& norm2, std::uintptr_t stream) {
    auto a = vmf_args::logpdf_args(x, mu, shifted, kappa, out, norm2, Where::cuda);
    pyb::dispatch_float(a.x, [&](auto t) {
      using T = decltype(t);
      T* po = a.out.mut<T>();
      double* pn = a.norm2.mut<double>();
      int rc;
      {
        py::gil_scoped_release r;
        rc = cuda::vmf::logpdf<T>(a.x.ptr<T>(), a.x_group_stride, a.mu.ptr<double>(), a.shifted.ptr<double>(),
                                  a.kappa.ptr<double>(), a.g, a.n, a.d, po, pn, stream);
      }
      check(rc);
    });
  }, py::arg("x"), py::arg("mu"), py::arg("shifted"), py::arg("kappa"), py::arg("out"), py::arg("norm2"),
        py::arg("stream"));

  m.def("estep", [](const py::object& dots, const py::object& b, const py::object& kappa, const py::object& logresp,
                    const py::object& lse, std::uintptr_t stream) {
    auto a = vmf_args::estep_args(dots, b, kappa, logresp, lse, Where::cuda);
    double* lr = a.logresp.mut<double>();
    double* ls = a.lse.mut<double>();
    int rc;
    {
      py::gil_scoped_release r;
      rc = cuda::vmf::estep(a.dots.ptr<double>(), a.b.ptr<double>(), a.kappa.ptr<double>(), a.n, a.k, lr, ls,
                            stream);
    }
    check(rc);
  }, py::arg("dots"), py::arg("b"), py::arg("kappa"), py::arg("logresp"), py::arg("lse"), py::arg("stream"));

  m.def("sample", [](const py::object& mu, const py::object& kappa, std::uint64_t seed, const py::object& out,
                     std::uintptr_t stream) {
    auto a = vmf_args::sample_args(mu, kappa, out, Where::cuda);
    pyb::dispatch_float(a.out, [&](auto t) {
      using T = decltype(t);
      T* po = a.out.mut<T>();
      int rc;
      {
        py::gil_scoped_release r;
        rc = cuda::vmf::sample<T>(a.mu.ptr<double>(), a.kappa.ptr<double>(), a.g, a.n, a.d, seed, po, stream);
      }
      check(rc);
    });
  }, py::arg("mu"), py::arg("kappa"), py::arg("seed"), py::arg("out"), py::arg("stream"));
}
}  // namespace
NK_REGISTER_FAMILY(vmf, bind_cuda_vmf);
}  // namespace nk
