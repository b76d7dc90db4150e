"""Array-library backends of numkern.kde: where the blocks live and who multiplies them.

Each backend offers the few operations the streaming pass needs (allocate, Gram block by the
library's own matmul, the compiled block update, conversions).  numpy (and torch CPU, through
zero-copy numpy views) uses BLAS and ``numkern._core.kde``; torch CUDA and CuPy use cuBLAS through
their matmul and ``numkern._cuda.kde`` on the caller's current stream.
"""
from __future__ import annotations

import numpy as np

from .. import _core
from .._arrays import CUPY, NUMPY, TORCH, _require_cuda, array_kind


class NumpyBackend:
    kind = NUMPY
    device = None

    def __init__(self, wrap_torch=False):
        self.wrap_torch = wrap_torch  # results go back as torch CPU tensors

    # -- conversion -------------------------------------------------------------------------
    def host(self, a):
        if array_kind(a) == TORCH:
            return a.detach().cpu().numpy()
        return np.asarray(a)

    def to_f64(self, a):
        return np.asarray(a, dtype=np.float64)

    def cast(self, a, dtype):
        return np.ascontiguousarray(a, dtype=dtype)

    def from_host(self, a, dtype=np.float64):
        return np.ascontiguousarray(a, dtype=dtype)

    def wrap(self, a):
        if self.wrap_torch:
            import torch

            return torch.from_numpy(np.ascontiguousarray(a))
        return a

    # -- allocation and arithmetic ----------------------------------------------------------
    def empty(self, shape, dtype):
        return np.empty(shape, dtype=dtype)

    def full(self, shape, value):
        return np.full(shape, value, dtype=np.float64)

    def zeros(self, shape):
        return np.zeros(shape, dtype=np.float64)

    def matmul_nt(self, a, b, out):
        return np.matmul(a, b.T, out=out)

    def row_sqnorms(self, a):
        a64 = np.asarray(a, dtype=np.float64)
        return np.einsum("ij,ij->i", a64, a64)

    def all_finite(self, a):
        return bool(np.isfinite(a).all())

    def take_rows(self, a, idx):
        return a[idx]

    log = staticmethod(np.log)
    exp = staticmethod(np.exp)

    def update(self, gram, x, y, xsq, ysq, logw, coef, self_diff, want_sq, acc):
        _core.kde.block_update(gram, x, y, xsq, ysq, logw, coef, int(self_diff), bool(want_sq), *acc)


class TorchCudaBackend:
    kind = TORCH

    def __init__(self, device):
        import torch

        self.torch = torch
        self.device = device
        self.cu = _require_cuda()

    def host(self, a):
        return a.detach().cpu().numpy() if array_kind(a) == TORCH else np.asarray(a)

    def _dt(self, dtype):
        return self.torch.float32 if np.dtype(dtype) == np.float32 else self.torch.float64

    def to_f64(self, a):
        return a.to(self.torch.float64)

    def cast(self, a, dtype):
        return a.to(self._dt(dtype)).contiguous()

    def from_host(self, a, dtype=np.float64):
        return self.torch.as_tensor(np.asarray(a), dtype=self._dt(dtype), device=self.device).contiguous()

    def wrap(self, a):
        return a

    def empty(self, shape, dtype):
        return self.torch.empty(shape, dtype=self._dt(dtype), device=self.device)

    def full(self, shape, value):
        return self.torch.full(shape, value, dtype=self.torch.float64, device=self.device)

    def zeros(self, shape):
        return self.torch.zeros(shape, dtype=self.torch.float64, device=self.device)

    def matmul_nt(self, a, b, out):
        return self.torch.matmul(a, b.T, out=out)

    def row_sqnorms(self, a):
        a64 = a.to(self.torch.float64)
        return (a64 * a64).sum(1)

    def all_finite(self, a):
        return bool(self.torch.isfinite(a).all().item())

    def take_rows(self, a, idx):
        return a[self.torch.as_tensor(idx, dtype=self.torch.int64, device=self.device)]

    def log(self, a):
        return self.torch.log(a)

    def exp(self, a):
        return self.torch.exp(a)

    def update(self, gram, x, y, xsq, ysq, logw, coef, self_diff, want_sq, acc):
        torch = self.torch
        dtype = 0 if x.dtype == torch.float32 else 1
        with torch.cuda.device(self.device):
            stream = torch.cuda.current_stream(self.device).cuda_stream
            self.cu.kde.block_update(
                0 if gram is None else gram.data_ptr(), x.data_ptr(), x.stride(0), y.data_ptr(), y.stride(0),
                x.shape[0], y.shape[0], x.shape[1], xsq.data_ptr(), ysq.data_ptr(), logw.data_ptr(),
                coef.data_ptr(), coef.shape[0], int(self_diff), bool(want_sq), acc[0].data_ptr(),
                acc[1].data_ptr(), acc[2].data_ptr(), dtype, stream)


class CupyBackend:
    kind = CUPY

    def __init__(self, device_id):
        import cupy

        self.cupy = cupy
        self.device = device_id
        self.cu = _require_cuda()

    def host(self, a):
        return self.cupy.asnumpy(a) if array_kind(a) == CUPY else np.asarray(a)

    def to_f64(self, a):
        return a.astype(self.cupy.float64, copy=False)

    def cast(self, a, dtype):
        with self.cupy.cuda.Device(self.device):
            return self.cupy.ascontiguousarray(a, dtype=dtype)

    def from_host(self, a, dtype=np.float64):
        with self.cupy.cuda.Device(self.device):
            return self.cupy.ascontiguousarray(self.cupy.asarray(np.asarray(a), dtype=dtype))

    def wrap(self, a):
        return a

    def empty(self, shape, dtype):
        with self.cupy.cuda.Device(self.device):
            return self.cupy.empty(shape, dtype=dtype)

    def full(self, shape, value):
        with self.cupy.cuda.Device(self.device):
            return self.cupy.full(shape, value, dtype=self.cupy.float64)

    def zeros(self, shape):
        with self.cupy.cuda.Device(self.device):
            return self.cupy.zeros(shape, dtype=self.cupy.float64)

    def matmul_nt(self, a, b, out):
        with self.cupy.cuda.Device(self.device):
            return self.cupy.matmul(a, b.T, out=out)

    def row_sqnorms(self, a):
        a64 = a.astype(self.cupy.float64)
        return (a64 * a64).sum(1)

    def all_finite(self, a):
        return bool(self.cupy.isfinite(a).all())

    def take_rows(self, a, idx):
        with self.cupy.cuda.Device(self.device):
            return a[self.cupy.asarray(idx)]

    def log(self, a):
        return self.cupy.log(a)

    def exp(self, a):
        return self.cupy.exp(a)

    def update(self, gram, x, y, xsq, ysq, logw, coef, self_diff, want_sq, acc):
        dtype = 0 if x.dtype == np.float32 else 1
        item = x.dtype.itemsize
        with self.cupy.cuda.Device(self.device):
            stream = self.cupy.cuda.get_current_stream().ptr
            self.cu.kde.block_update(
                0 if gram is None else gram.data.ptr, x.data.ptr, x.strides[0] // item, y.data.ptr,
                y.strides[0] // item, x.shape[0], y.shape[0], x.shape[1], xsq.data.ptr, ysq.data.ptr,
                logw.data.ptr, coef.data.ptr, coef.shape[0], int(self_diff), bool(want_sq), acc[0].data.ptr,
                acc[1].data.ptr, acc[2].data.ptr, dtype, stream)


def backend_for(a):
    """The backend that keeps an array where it is (torch CPU tensors go through numpy)."""
    kind = array_kind(a)
    if kind == TORCH:
        if a.is_cuda:
            return TorchCudaBackend(a.device)
        return NumpyBackend(wrap_torch=True)
    if kind == CUPY:
        return CupyBackend(a.device.id)
    return NumpyBackend()
