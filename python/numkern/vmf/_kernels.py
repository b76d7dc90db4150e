"""Array backends and kernel launches for numkern.vmf (internal).

numkern.vmf works on one of two backend array libraries: numpy (numpy input and torch CPU
tensors, which cross zero-copy) or the caller's CUDA library (torch CUDA tensors, CuPy arrays).
A ``Backend`` offers the handful of array operations the vMF code needs (matmul, sums, ...) and
launches the C++ (``numkern._core.vmf``) or CUDA (``numkern._cuda.vmf``) kernels on C-contiguous
arrays; ``Context`` remembers the kind of array the caller gave so results go back as the same.
"""
from __future__ import annotations

import numpy as np

from .. import _core
from .._arrays import CUPY, NUMPY, TORCH, _require_cuda, array_kind

F32, F64 = "float32", "float64"


class Backend:
    """numpy-API backend (numpy or CuPy)."""

    def __init__(self, xp, cuda: bool):
        self.xp = xp
        self.cuda = cuda

    # ---- array operations --------------------------------------------------------------
    def _contig(self, a):
        # ascontiguousarray would turn a 0-d array into shape (1,)
        return a if a.flags.c_contiguous else a.copy()

    def asarray(self, a, dtype):
        return self._contig(self.xp.asarray(a, dtype=dtype))

    def empty(self, shape, dtype=F64):
        return self.xp.empty(shape, dtype=dtype)

    def full(self, shape, value, dtype=F64):
        return self.xp.full(shape, value, dtype=dtype)

    def dtype_name(self, a) -> str:
        return str(a.dtype)

    def reshape(self, a, shape):
        return self._contig(a.reshape(shape))

    def broadcast(self, a, shape):
        return self._contig(self.xp.broadcast_to(a, shape))

    def matmul(self, a, b):
        return a @ b

    def sum(self, a, axis=None):
        return a.sum(axis=axis)

    def max(self, a, axis=None):
        return a.max(axis=axis)

    def argmax(self, a, axis):
        return a.argmax(axis=axis)

    def sqrt(self, a):
        return self.xp.sqrt(a)

    def exp(self, a):
        return self.xp.exp(a)

    def log(self, a):
        return self.xp.log(a)

    def abs(self, a):
        return self.xp.abs(a)

    def where(self, c, a, b):
        return self.xp.where(c, a, b)

    def minimum(self, a, b):
        return self.xp.minimum(a, b)

    def maximum(self, a, b):
        return self.xp.maximum(a, b)

    def all_finite(self, a) -> bool:
        return bool(self.xp.isfinite(a).all())

    def count(self, mask) -> int:
        return int(mask.sum())

    def astype(self, a, dtype):
        return self._contig(a.astype(dtype, copy=False))

    def to_host(self, a) -> np.ndarray:
        return self.xp.asnumpy(a) if self.cuda else np.asarray(a)

    def from_host(self, a, dtype=F64):
        return self.asarray(np.asarray(a), dtype)

    def take_rows(self, a, idx):
        return self._contig(a[self.from_host(np.asarray(idx), "int64")])

    # ---- kernels -----------------------------------------------------------------------
    def _ptr(self, a):
        return a.data.ptr

    def _stream(self):
        import cupy

        return cupy.cuda.get_current_stream().ptr

    def _code(self, a):
        return 0 if self.dtype_name(a) == F32 else 1

    def map(self, op, inputs, out):
        if self.cuda:
            _require_cuda().vmf.map(op, self._code(out), [self._ptr(a) for a in inputs], self._ptr(out),
                                    int(out.size),
                                    self._stream())
        else:
            _core.vmf.map(op, list(inputs), out)
        return out

    def row_norm2(self, x, m, d):
        out = self.empty((m,), F64)
        if self.cuda:
            _require_cuda().vmf.row_norm2(self._code(x), self._ptr(x), m, d, self._ptr(out), self._stream())
        else:
            _core.vmf.row_norm2(x, m, d, out)
        return out

    def weighted_sum(self, x, w, g, n, d):
        out = self.empty((g, d), F64)
        if self.cuda:
            _require_cuda().vmf.weighted_sum(self._code(x), self._ptr(x), 0 if w is None else self._ptr(w),
                                             g, n, d, self._ptr(out), self._stream())
        else:
            _core.vmf.weighted_sum(x, w, g, n, d, out)
        return out

    def logpdf(self, x, shared, mu, shifted, kappa, g, n, d, dtype):
        out = self.empty((g, n), dtype)
        norm2 = self.empty((g, n), F64)
        if self.cuda:
            _require_cuda().vmf.logpdf(self._code(x), self._ptr(x), shared, self._ptr(mu), self._ptr(shifted),
                                       self._ptr(kappa), g, n, d, self._ptr(out), self._ptr(norm2),
                                       self._stream())
        else:
            _core.vmf.logpdf(x, shared, mu, shifted, kappa, g, n, d, out, norm2)
        return out, norm2

    def estep(self, dots, b, kappa, n, k):
        logresp = self.empty((n, k), F64)
        lse = self.empty((n,), F64)
        if self.cuda:
            _require_cuda().vmf.estep(self._ptr(dots), self._ptr(b), self._ptr(kappa), n, k,
                                      self._ptr(logresp), self._ptr(lse), self._stream())
        else:
            _core.vmf.estep(dots, b, kappa, n, k, logresp, lse)
        return logresp, lse

    def sample(self, mu, kappa, g, n, d, seed, dtype):
        out = self.empty((g, n, d), dtype)
        if self.cuda:
            _require_cuda().vmf.sample(self._code(out), self._ptr(mu), self._ptr(kappa), g, n, d, seed,
                                       self._ptr(out), self._stream())
        else:
            _core.vmf.sample(mu, kappa, g, n, d, seed, out)
        return out


class TorchCudaBackend(Backend):
    """The same operations on torch CUDA tensors of one device."""

    def __init__(self, device):
        import torch

        self.torch = torch
        self.device = device
        self.cuda = True

    def _dt(self, dtype):
        t = self.torch
        return {F32: t.float32, F64: t.float64, "int64": t.int64}[dtype]

    def asarray(self, a, dtype):
        t = self.torch
        if isinstance(a, t.Tensor):
            return a.detach().to(device=self.device, dtype=self._dt(dtype)).contiguous()
        return t.as_tensor(np.asarray(a), dtype=self._dt(dtype), device=self.device).contiguous()

    def empty(self, shape, dtype=F64):
        return self.torch.empty(shape, dtype=self._dt(dtype), device=self.device)

    def full(self, shape, value, dtype=F64):
        return self.torch.full(shape, value, dtype=self._dt(dtype), device=self.device)

    def dtype_name(self, a) -> str:
        return F32 if a.dtype == self.torch.float32 else F64

    def reshape(self, a, shape):
        return a.reshape(shape).contiguous()

    def broadcast(self, a, shape):
        return a.expand(shape).contiguous()

    def sum(self, a, axis=None):
        return a.sum() if axis is None else a.sum(dim=axis)

    def max(self, a, axis=None):
        return a.max() if axis is None else a.max(dim=axis).values

    def argmax(self, a, axis):
        return a.argmax(dim=axis)

    def sqrt(self, a):
        return self.torch.sqrt(a)

    def exp(self, a):
        return self.torch.exp(a)

    def log(self, a):
        return self.torch.log(a)

    def abs(self, a):
        return self.torch.abs(a)

    def where(self, c, a, b):
        return self.torch.where(c, a, b)

    def minimum(self, a, b):
        b = b if isinstance(b, self.torch.Tensor) else self.torch.as_tensor(b, dtype=a.dtype, device=a.device)
        return self.torch.minimum(a, b)

    def maximum(self, a, b):
        b = b if isinstance(b, self.torch.Tensor) else self.torch.as_tensor(b, dtype=a.dtype, device=a.device)
        return self.torch.maximum(a, b)

    def all_finite(self, a) -> bool:
        return bool(self.torch.isfinite(a).all().item())

    def count(self, mask) -> int:
        return int(mask.sum().item())

    def astype(self, a, dtype):
        return a.to(self._dt(dtype)).contiguous()

    def to_host(self, a) -> np.ndarray:
        return a.detach().cpu().numpy()

    def take_rows(self, a, idx):
        return a[self.torch.as_tensor(np.asarray(idx), device=self.device)].contiguous()

    def _ptr(self, a):
        return a.data_ptr()

    def _stream(self):
        return self.torch.cuda.current_stream(self.device).cuda_stream

    def map(self, op, inputs, out):
        _require_cuda().vmf.map(op, self._code(out), [self._ptr(a) for a in inputs], self._ptr(out),
                                out.numel(), self._stream())
        return out


class Context:
    """The caller's array kind (numpy / torch CPU / torch CUDA / CuPy) and the backend serving it."""

    def __init__(self, *arrays):
        kinds = {array_kind(a) for a in arrays if a is not None}
        if TORCH in kinds and CUPY in kinds:
            raise ValueError("cannot mix torch tensors and CuPy arrays in one call")
        self.kind = TORCH if TORCH in kinds else CUPY if CUPY in kinds else NUMPY
        self.device = None
        if self.kind == TORCH:
            devices = {a.device for a in arrays if array_kind(a) == TORCH}
            if len(devices) > 1:
                raise ValueError(f"inputs are on different devices: {sorted(str(d) for d in devices)}")
            self.device = next(iter(devices))
            if self.device.type == "cuda":
                for a in arrays:
                    if isinstance(a, np.ndarray) and a.ndim > 0:
                        raise ValueError("a numpy (CPU) array cannot be combined with a CUDA tensor")
                self.be = TorchCudaBackend(self.device)
            else:
                self.be = Backend(np, cuda=False)
        elif self.kind == CUPY:
            import cupy

            for a in arrays:
                if isinstance(a, np.ndarray) and a.ndim > 0:
                    raise ValueError("a numpy (CPU) array cannot be combined with a CuPy (CUDA) array")
            self.be = Backend(cupy, cuda=True)
        else:
            self.be = Backend(np, cuda=False)

    def float_dtype(self, *arrays, names=()) -> str:
        """float32 when every array argument is float16/float32, else float64 (as numkern.special).

        names: the arguments' names, for the error messages."""
        kinds = []
        for i, a in enumerate(arrays):
            name = names[i] if i < len(names) else "input"
            if a is None or (isinstance(a, (bool, int, float)) and not isinstance(a, np.generic)):
                continue  # weak Python scalars (np.float64 subclasses float but is not weak)
            k = array_kind(a)
            if k == TORCH:
                if a.dtype.is_complex:
                    raise TypeError(f"{name}: unsupported dtype {a.dtype}")
                kinds.append(F32 if a.dtype.is_floating_point and a.dtype.itemsize <= 4 else F64)
            else:
                try:
                    dt = np.dtype(a.dtype) if hasattr(a, "dtype") else np.asarray(a).dtype
                except (TypeError, ValueError) as e:  # ragged lists, objects numpy cannot read
                    raise TypeError(f"{name}: cannot convert to a numeric array ({e})") from None
                if dt.kind not in "biuf":
                    raise TypeError(f"{name}: unsupported dtype {dt} (expected real numbers)")
                kinds.append(F32 if dt.kind == "f" and dt.itemsize <= 4 else F64)
        return F32 if kinds and all(n == F32 for n in kinds) else F64

    def input(self, a, dtype, name):
        """The caller's array as a C-contiguous backend array of `dtype`."""
        k = array_kind(a)
        if k == TORCH and self.kind == TORCH:
            if self.device.type == "cpu":
                a = a.detach().numpy()
            else:
                return self.be.asarray(a, dtype)
        try:
            return self.be.asarray(a, dtype)
        except (TypeError, ValueError) as e:
            raise TypeError(f"{name}: cannot convert to a {dtype} array ({e})") from None

    def output(self, a, dtype=None):
        """A backend array as the caller's kind (and `dtype` when given)."""
        if dtype is not None and self.be.dtype_name(a) != dtype:
            a = self.be.astype(a, dtype)
        if self.kind == TORCH and self.device.type == "cpu":
            import torch

            return torch.from_numpy(a if a.flags.c_contiguous else a.copy())
        if self.kind == NUMPY and isinstance(a, np.ndarray) and a.ndim == 0:
            return a[()]
        return a
