// numkern._core special-function entry points: elementwise (v, x) -> out kernels.
#include "cpu/special/bessel_block.hpp"  // BlockKernel specializations: before def_binary instantiates
#include "numkern/special/bessel.hpp"
#include "numkern/special/bessel01.hpp"
#include "python/common/array_args.hpp"
#include "python/common/registry.hpp"

namespace nk {
namespace {
// The one-element-at-a-time path (what the CUDA kernels run), kept callable so that the tests
// can compare the CPU block path (cpu/special/bessel_block.hpp) against it.
struct LogIvScalarPath : ops::LogIv {};
struct LogKvScalarPath : ops::LogKv {};
struct IvScalarPath : ops::Iv {};
struct IveScalarPath : ops::Ive {};
struct KvScalarPath : ops::Kv {};
struct KveScalarPath : ops::Kve {};

void bind_special(pybind11::module_& m) {
  using namespace py_args;
  def_binary<ops::LogIv>(m, "log_iv");
  def_binary<ops::LogKv>(m, "log_kv");
  def_binary<ops::Iv>(m, "iv");
  def_binary<ops::Ive>(m, "ive");
  def_binary<ops::Kv>(m, "kv");
  def_binary<ops::Kve>(m, "kve");
  def_binary<ops::IvRatio>(m, "iv_ratio");
  def_binary<ops::IvRatioC>(m, "iv_ratio_c");
  def_binary<ops::DLogIvDx>(m, "dlog_iv_dx");
  def_binary<ops::DLogKvDx>(m, "dlog_kv_dx");
  def_binary<ops::I0>(m, "i0");
  def_binary<ops::I0e>(m, "i0e");
  def_binary<ops::I1>(m, "i1");
  def_binary<ops::I1e>(m, "i1e");
  def_binary<ops::K0>(m, "k0");
  def_binary<ops::K0e>(m, "k0e");
  def_binary<ops::K1>(m, "k1");
  def_binary<ops::K1e>(m, "k1e");
  def_binary<LogIvScalarPath>(m, "_log_iv_scalar_path");
  def_binary<LogKvScalarPath>(m, "_log_kv_scalar_path");
  def_binary<IvScalarPath>(m, "_iv_scalar_path");
  def_binary<IveScalarPath>(m, "_ive_scalar_path");
  def_binary<KvScalarPath>(m, "_kv_scalar_path");
  def_binary<KveScalarPath>(m, "_kve_scalar_path");
}
}  // namespace
NK_REGISTER_FAMILY(special, bind_special);
}  // namespace nk
