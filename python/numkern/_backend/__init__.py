"""The one array/device layer of numkern (internal).

Every family's Python API goes through this package to reach the compiled kernels:

- ``array_kind`` / ``Context``: which library the caller's arrays come from (numpy, torch, CuPy),
  on which device; mixing libraries or devices is refused with an error naming the argument.
- ``result_dtype``: the one dtype rule (float32 when every array input is float16/float32, else
  float64; Python scalars are weak, integer and bool arrays compute in float64).
- ``Context.guard`` / ``Context.stream``: the caller's CUDA device is made current and kernels run
  on the caller's current stream.
- ``Context.input`` / ``Context.output`` / ``check_out``: conversion in, results back as the
  caller's kind, ``out=`` validation.  A numpy masked array with masked entries is refused
  (``refuse_masked``, a TypeError naming the argument; numkern.special's ufuncs propagate masks
  instead), and a torch tensor with a lazy negation / conjugation (neg / conj bit) is read with it
  applied (``resolved``).
- ``Context.call``: the hand-off to ``numkern._core.<family>`` or ``numkern._cuda.<family>``.
  Arrays go to the native side as they are (a numpy array, or an object with
  ``__cuda_array_interface__``); ``csrc/python/common/array_view.hpp`` turns each into one
  validated view.  CUDA entry points take the same arguments plus ``stream``.  A numpy array the
  view cannot read in place (unaligned, e.g. unpickled from an out-of-band buffer on a
  dask.distributed worker, or big-endian) is copied first by ``kernel_ready``; aligned arrays are
  never copied.
- ``Ops``: the few dense array operations the families do around their kernels (matmul, sums,
  QR, random probes) in the caller's library and on its device.
- ``elementwise``: ufunc-style broadcasting (v, x) -> out kernels (numkern.special).
"""
from .kinds import CUPY, NUMPY, TORCH, any_torch, array_kind, has_complex, is_cuda
from .dtypes import F32, F64, result_dtype, scalar_or_array_dtype
from .native import cuda_module, require_cuda
from .context import Context, kernel_ready, refuse_masked, resolved
from .ops import Ops
from .elementwise import check_numpy_out, check_torch_out, elementwise

__all__ = ["CUPY", "NUMPY", "TORCH", "any_torch", "array_kind", "has_complex", "is_cuda", "F32", "F64", "result_dtype",
           "scalar_or_array_dtype", "cuda_module", "require_cuda", "Context", "kernel_ready", "refuse_masked",
           "resolved", "Ops", "check_numpy_out", "check_torch_out", "elementwise"]
