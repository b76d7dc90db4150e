"""Context: the caller's array library and device for one call, and the hand-off to the kernels."""
from __future__ import annotations

import contextlib

import numpy as np

from . import native
from .dtypes import result_dtype
from .kinds import CUPY, NUMPY, TORCH, array_kind
from .ops import Ops


class Context:
    """The kind (numpy / torch / CuPy) and device of the arrays of one call.

    ``Context(x, mu, kappa, names=("x", "mu", "kappa"))`` checks that the array arguments come from
    one library and one device (None and Python scalars are ignored; a numpy array may join torch
    CPU tensors, not CUDA ones).  torch CPU tensors are computed on zero-copy numpy views, so
    ``ctx.ops`` is numpy's for them; results go back as torch tensors through ``output``.
    """

    def __init__(self, *arrays, names=()):
        self.names = tuple(names)
        kinds = {array_kind(a) for a in arrays if a is not None}
        if TORCH in kinds and CUPY in kinds:
            raise ValueError("cannot mix torch tensors and CuPy arrays in one call")
        self.kind = TORCH if TORCH in kinds else CUPY if CUPY in kinds else NUMPY
        self.device = None  # torch.device, CuPy device id, or None for numpy
        self.cuda = False
        if self.kind == TORCH:
            devices = {a.device for a in arrays if array_kind(a) == TORCH}
            if len(devices) > 1:
                raise ValueError(f"inputs are on different devices: {sorted(str(d) for d in devices)}")
            self.device = next(iter(devices))
            self.cuda = self.device.type == "cuda"
            if self.device.type not in ("cpu", "cuda"):
                raise ValueError(f"numkern runs on CPU and CUDA tensors, got a tensor on {self.device}")
        elif self.kind == CUPY:
            devices = {a.device.id for a in arrays if array_kind(a) == CUPY}
            if len(devices) > 1:
                raise ValueError(f"inputs are on different devices: {sorted(devices)}")
            self.device = next(iter(devices))
            self.cuda = True
        if self.cuda:
            for i, a in enumerate(arrays):
                if isinstance(a, np.ndarray) and a.ndim > 0:
                    what = "a CUDA tensor" if self.kind == TORCH else "a CuPy (CUDA) array"
                    raise ValueError(f"{self._name(i)}: a numpy (CPU) array cannot be combined with {what}")
        self.ops = Ops.for_context(self)

    def _name(self, i):
        return self.names[i] if i < len(self.names) else "input"

    # ---- dtype, conversion -----------------------------------------------------------------
    def result_dtype(self, *arrays, names=()) -> np.dtype:
        """The one dtype rule (numkern._backend.result_dtype) over these arguments."""
        return result_dtype(*arrays, names=names)

    def input(self, a, dtype, name, contiguous=True):
        """The caller's argument as an array of the compute library (numpy for numpy and torch CPU,
        torch for torch CUDA, CuPy) with `dtype`, C-contiguous unless contiguous=False."""
        if array_kind(a) == TORCH and not self.cuda:
            a = a.detach().numpy()
        try:
            return self.ops.asarray(a, dtype, contiguous=contiguous)
        except (TypeError, ValueError, RuntimeError) as e:
            raise TypeError(f"{name}: cannot convert to a {np.dtype(dtype)} array ({e})") from None

    def output(self, a, dtype=None):
        """A compute-library array back as the caller's kind (numpy 0-d arrays become scalars)."""
        if dtype is not None and self.ops.dtype(a) != np.dtype(dtype):
            a = self.ops.astype(a, dtype)
        if self.kind == TORCH and not self.cuda:
            import torch

            # torch cannot share a read-only array (e.g. a broadcast view): copy it
            return torch.from_numpy(a if a.flags.c_contiguous and a.flags.writeable else np.array(a, order="C"))
        if self.kind == NUMPY and isinstance(a, np.ndarray) and a.ndim == 0:
            return a[()]
        return a

    # ---- device, stream, kernels -------------------------------------------------------------
    @contextlib.contextmanager
    def guard(self):
        """Make the caller's CUDA device current for the duration (no-op on the CPU)."""
        if not self.cuda:
            yield
        elif self.kind == TORCH:
            import torch

            with torch.cuda.device(self.device):
                yield
        else:
            import cupy

            with cupy.cuda.Device(self.device):
                yield

    def stream(self) -> int:
        """The caller's current CUDA stream as an integer handle (0 on the CPU)."""
        if not self.cuda:
            return 0
        if self.kind == TORCH:
            import torch

            return torch.cuda.current_stream(self.device).cuda_stream
        import cupy

        return cupy.cuda.get_current_stream().ptr

    def module(self, family):
        """numkern._core.<family> or numkern._cuda.<family> for this context."""
        if self.cuda:
            return getattr(native.require_cuda(), family)
        return getattr(native._core, family)

    @staticmethod
    def native(a):
        """What the native side reads as an array view: numpy arrays as they are, torch CUDA
        tensors detached (they expose __cuda_array_interface__), CuPy arrays as they are."""
        if a is None:
            return None
        if array_kind(a) == TORCH:
            return a.detach() if a.is_cuda else a.detach().numpy()
        return a

    def call(self, family, fn, *args, **kwargs):
        """Run ``<module>.<family>.<fn>(*args, **kwargs)`` for this context: arrays are handed over
        by ``native``, and a CUDA call runs under the caller's device with ``stream=``."""
        args = [_handover(self, a) for a in args]
        kwargs = {k: _handover(self, v) for k, v in kwargs.items()}
        f = getattr(self.module(family), fn)
        if not self.cuda:
            return f(*args, **kwargs)
        with self.guard():
            return f(*args, stream=self.stream(), **kwargs)


def _is_array(a) -> bool:
    return array_kind(a) in (TORCH, CUPY) or isinstance(a, np.ndarray)


def _handover(ctx, a):
    if _is_array(a):
        return ctx.native(a)
    if isinstance(a, (list, tuple)) and any(_is_array(e) for e in a):
        return [ctx.native(e) if _is_array(e) else e for e in a]
    return a
