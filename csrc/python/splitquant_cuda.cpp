// numkern._cuda.splitquant: the fused SplitQuant linear kernel on device pointers.  Python
// (python/numkern/_splitquant_torch.py) checks shapes, dtypes, devices and contiguity.
#include <pybind11/pybind11.h>

#include <stdexcept>
#include <string>

#include "cuda/common/launch.hpp"
#include "cuda/splitquant/launch.hpp"
#include "python/common/registry.hpp"

namespace nk {
namespace {
namespace py = pybind11;

void bind_cuda_splitquant(py::module_& m) {
  m.def(
      "fused_linear",
      [](std::uintptr_t x, std::int64_t n, std::int64_t in, std::uintptr_t codes,
         std::uintptr_t clusters, std::uintptr_t scales, std::uintptr_t offsets, std::int64_t out,
         std::int64_t group_size, int bits, int k, std::uintptr_t bias, std::uintptr_t y,
         std::uintptr_t stream) {
        if (bits != 2 && bits != 4 && bits != 8) throw py::value_error("bits: must be 2, 4 or 8");
        if (k < 1 || k > 4) throw py::value_error("k: the fused format holds 1 to 4 clusters");
        if (n < 0 || in < 1 || out < 0) throw py::value_error("sizes must be positive");
        if (group_size < 1 || in % group_size != 0)
          throw py::value_error("group_size: must be >= 1 and divide the input dimension");
        int rc;
        {
          py::gil_scoped_release release;
          rc = cuda::splitquant::fused_linear(
              reinterpret_cast<const float*>(x), n, in, reinterpret_cast<const std::uint8_t*>(codes),
              reinterpret_cast<const std::uint8_t*>(clusters), reinterpret_cast<const float*>(scales),
              reinterpret_cast<const float*>(offsets), out, group_size, bits, k,
              reinterpret_cast<const float*>(bias), reinterpret_cast<float*>(y), stream);
        }
        if (rc != 0)
          throw std::runtime_error(std::string("numkern CUDA launch failed: ") + cuda::error_string(rc));
      },
      py::arg("x"), py::arg("n"), py::arg("in_features"), py::arg("codes"), py::arg("clusters"),
      py::arg("scales"), py::arg("offsets"), py::arg("out_features"), py::arg("group_size"),
      py::arg("bits"), py::arg("k"), py::arg("bias"), py::arg("y"), py::arg("stream"));
}
}  // namespace
NK_REGISTER_FAMILY(splitquant, bind_cuda_splitquant);
}  // namespace nk
