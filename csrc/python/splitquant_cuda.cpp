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
void fused_linear(py::object x, py::object codes, py::object clusters, py::object scales, py::object offsets,
                  py::object bias, py::object y, index_t group_size, int bits, std::uintptr_t stream) {
  splitquant_views::Linear l =
      splitquant_views::linear(x, codes, clusters, scales, offsets, bias, y, group_size, bits, pyb::Where::cuda);
  int rc;
  {
    py::gil_scoped_release release;
    rc = cuda::splitquant::fused_linear(l.x.ptr<float>(), l.n, l.in, l.f.codes.ptr<std::uint8_t>(),
                                        l.f.clusters.ptr<std::uint8_t>(), l.f.scales.ptr<float>(),
                                        l.f.offsets.ptr<float>(), l.f.out, group_size, bits, l.f.k, l.bias_ptr,
                                        l.y.ptr<float>(), stream);
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
