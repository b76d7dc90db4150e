"""Context: the caller's array library and device for one call, and the hand-off to the kernels."""
from __future__ import annotations

import contextlib

import numpy as np

from . import native
from .dtypes import result_dtype
from .kinds import CUPY, NUMPY, TORCH, array_kind, resolved
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
        for i, a in enumerate(arrays):
            refuse_masked(a, self._name(i))
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
        torch for torch CUDA, CuPy) with `dtype`, C-contiguous unless contiguous=False.  A masked
        array with masked entries is refused (refuse_masked)."""
        refuse_masked(a, name)
        if array_kind(a) == TORCH and not self.cuda:
            a = _torch_cpu_numpy(a)
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
            a = resolved(a)
            return a if a.is_cuda else a.numpy()
        return a

    def call(self, family, fn, *args, **kwargs):
        """Run ``<module>.<family>.<fn>(*args, **kwargs)`` for this context: arrays are handed over
        by ``native``, and a CUDA call runs under the caller's device with ``stream=``.

        Every numpy array (torch CPU tensors included, as their numpy views) passes through
        ``kernel_ready``: one the kernels cannot read in place (unaligned, e.g. unpickled from an
        out-of-band buffer as dask.distributed does, or big-endian) is copied, and a copy the kernel
        wrote to is written back to the caller's array after the call."""
        copies = []  # (caller's array, the copy handed over)
        args = [_handover(self, a, copies) for a in args]
        kwargs = {k: _handover(self, v, copies) for k, v in kwargs.items()}
        f = getattr(self.module(family), fn)
        if not self.cuda:
            r = f(*args, **kwargs)
        else:
            with self.guard():
                r = f(*args, stream=self.stream(), **kwargs)
        if copies:
            _write_back(copies)
        return r


def refuse_masked(a, name):
    """A TypeError naming the argument for a numpy masked array with masked entries: the families
    other than numkern.special (whose ufuncs propagate the mask) read arrays as plain data, and
    silently computing with the values under the mask would be a wrong answer.  A masked array
    without masked entries is its data."""
    if isinstance(a, np.ma.MaskedArray) and np.ma.is_masked(a):
        n = int(np.ma.count_masked(a))
        raise TypeError(f"{name}: a masked array with masked entries ({n} of {a.size}); numkern does not apply "
                        f"masks here (pass {name}.filled(value), or drop the masked entries / rows)")


def kernel_ready(a: np.ndarray) -> np.ndarray:
    """`a` itself when the kernels can read it in place, else a C-contiguous copy in native byte order.

    In place means what csrc/python/common/array_view.hpp requires of a numpy array: native byte
    order, and the data pointer and every stride multiples of the item size.  numpy arrays are
    normally aligned, but an array rebuilt from a pickle protocol 5 out-of-band buffer (which is how
    dask.distributed ships arrays between processes), from ``np.frombuffer`` or from a view at a
    byte offset can start anywhere.  An aligned array is returned as it is (no copy; the check reads
    a few attributes)."""
    dt = a.dtype
    item = dt.itemsize
    if dt.isnative:
        if item <= 1:
            return a
        if all(s % item == 0 for s in a.strides):
            if a.size and dt.alignment == item and a.flags.aligned:  # numpy checked the pointer
                return a
            if a.__array_interface__["data"][0] % item == 0:
                return a
    return np.array(a, dtype=dt.newbyteorder("="), order="C")


def _write_back(copies):
    """Copy back into the caller's arrays what the kernel wrote into their copies (outputs); arrays
    the kernel only read are left untouched (not even rewritten with the same bytes)."""
    for orig, copy in copies:
        if orig.flags.writeable and orig.tobytes() != copy.astype(orig.dtype, copy=False).tobytes():
            np.copyto(orig, copy)


def _torch_cpu_numpy(t):
    """A torch CPU tensor as a numpy array: a zero-copy view, except bfloat16 (numpy has no bfloat16),
    widened to float32 as float16 is by the dtype rule."""
    t = resolved(t)
    if str(t.dtype) == "torch.bfloat16":
        import torch

        t = t.to(torch.float32)
    return t.numpy()


def _is_array(a) -> bool:
    return array_kind(a) in (TORCH, CUPY) or isinstance(a, np.ndarray)


def _host(ctx, a, copies):
    a = ctx.native(a)
    if isinstance(a, np.ndarray):
        r = kernel_ready(a)
        if r is not a:
            copies.append((a, r))
        return r
    return a


def _handover(ctx, a, copies):
    if _is_array(a):
        return _host(ctx, a, copies)
    if isinstance(a, (list, tuple)) and any(_is_array(e) for e in a):
        return [_host(ctx, e, copies) if _is_array(e) else e for e in a]
    return a
