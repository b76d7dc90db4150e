// numkern._cuda.splitquant: the fused SplitQuant linear kernel on CUDA arrays; the arguments of
// numkern._core.splitquant.fused_linear plus the caller's `stream`.
#include <pybind11/pybind11.h>

#include <stdexcept>
#include <string>

#include "cuda/common/launch.hpp"
#include "cuda/splitquant/launch.hpp"
#include "python/common/array_view.hpp"
#include "python/common/registry.hpp"
#include "python/splitquant_views.hpp"

namespace nk {
namespace {
namespace py = pybind11;
using pyb::ArrayView;
using pyb::as_view;

void fused_linear(py::object x_obj, py::object codes, py::object clusters, py::object scales, py::object offsets,
                  py::object bias_obj, py::object y_obj, index_t group_size, int bits, std::uintptr_t stream) {
  ArrayView x = as_view(x_obj, "x").dtype<float>().ndim(2).cuda().c_contiguous();
  const index_t n = x.dim(0), in = x.dim(1);
  if (in < 1) x.fail("in_features must be >= 1");
  splitquant_views::Fused f =
      splitquant_views::fused(codes, clusters, scales, offsets, in, group_size, bits, pyb::Where::cuda);
  const float* bp = nullptr;
  ArrayView bias;
  if (!bias_obj.is_none()) {
    bias = splitquant_views::bias(bias_obj, f.out, pyb::Where::cuda);
    bp = bias.ptr<float>();
  }
  ArrayView y = as_view(y_obj, "y").dtype<float>().shape({n, f.out}).cuda().c_contiguous();
  float* py_ = y.mut<float>();
  int rc;
  {
    py::gil_scoped_release release;
    rc = cuda::splitquant::fused_linear(x.ptr<float>(), n, in, f.codes.ptr<std::uint8_t>(),
                                        f.clusters.ptr<std::uint8_t>(), f.scales.ptr<float>(), f.offsets.ptr<float>(),
                                        f.out, group_size, bits, f.k, bp, py_, stream);
  }
  if (rc != 0) throw std::runtime_error(std::string("numkern CUDA launch failed: ") + cuda::error_string(rc));
}

void bind_cuda_splitquant(py::module_& m) {
  m.def("fused_linear", &fused_linear, py::arg("x"), py::arg("codes"), py::arg("clusters"), py::arg("scales"),
        py::arg("offsets"), py::arg("bias"), py::arg("y"), py::arg("group_size"), py::arg("bits"),
        py::arg("stream"));
}
}  // namespace
NK_REGISTER_FAMILY(splitquant, bind_cuda_splitquant);
}  // namespace nk
