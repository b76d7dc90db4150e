"""Array handling for every numkern entry point, in one place.

numpy arrays (and Python scalars, lists) go to the CPU kernels in ``numkern._core``; torch CPU
tensors cross zero-copy through numpy; torch CUDA tensors and CuPy arrays go to ``numkern._cuda``
as device pointers on the caller's current stream.  Results come back as the same kind of array
on the same device.  numkern never imports torch or cupy itself unless the caller passed one.
"""
from __future__ import annotations

import numpy as np

from . import _core

try:  # the CUDA module exists only in CUDA builds
    from . import _cuda  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - depends on the build
    _cuda = None

NUMPY, TORCH, CUPY = "numpy", "torch", "cupy"
MAX_DIMS = 32  # csrc/cpu/common/elementwise.hpp kMaxDims


def array_kind(a) -> str:
    mod = type(a).__module__ or ""
    if mod.startswith("torch") and hasattr(a, "data_ptr"):
        return TORCH
    if mod.startswith("cupy") and hasattr(a, "__cuda_array_interface__"):
        return CUPY
    return NUMPY


def is_cuda(a) -> bool:
    k = array_kind(a)
    return k == CUPY or (k == TORCH and a.is_cuda)


def _check_numpy_dtype(arr: np.ndarray, name: str, allow_complex: bool = False) -> None:
    k = arr.dtype.kind
    if k in "biuf" or (allow_complex and k == "c"):
        return
    raise TypeError(f"{name}: unsupported dtype {arr.dtype} (expected a real numeric array)")


def compute_dtype(dtypes) -> np.dtype:
    """float32 when every input is float16/float32 (or a weak Python float), else float64.

    Integers and booleans are promoted to float64 (more accurate than SciPy, which computes
    int8/int16 in float32); float16 is computed and returned in float32, as SciPy does.
    """
    if any(isinstance(d, np.dtype) and d.kind in "biu" for d in dtypes):
        return np.dtype(np.float64)  # integer arrays, whatever their width
    rt = np.result_type(*dtypes)
    if rt.kind == "f" and rt.itemsize <= 4:
        return np.dtype(np.float32)
    return np.dtype(np.float64)


def _as_numpy(a, name: str, allow_complex: bool = False) -> np.ndarray | float | int:
    if isinstance(a, (bool, int, float)) and not isinstance(a, np.generic):
        return a  # weak Python scalar: numpy's NEP 50 promotion keeps the array's dtype
    try:
        arr = np.asarray(a)
    except (TypeError, ValueError) as e:  # ragged nested lists, objects numpy cannot read
        raise TypeError(f"{name}: cannot convert to a numeric array ({e})") from None
    _check_numpy_dtype(arr, name, allow_complex)
    return arr


def _broadcast_shape(shapes, names):
    try:
        return np.broadcast_shapes(*shapes)
    except ValueError:
        desc = ", ".join(f"{n} {tuple(s)}" for n, s in zip(names, shapes))
        raise ValueError(f"shapes do not broadcast: {desc}") from None


def has_complex(*args) -> bool:
    for a in args:
        if isinstance(a, complex):
            return True
        dt = getattr(a, "dtype", None)
        if dt is not None:
            try:
                if np.dtype(dt).kind == "c":
                    return True
            except TypeError:  # torch dtypes
                if getattr(dt, "is_complex", False):
                    return True
    return False


# ---- CPU (numpy) --------------------------------------------------------------------------
def numpy_elementwise(kernel, args, names, out=None):
    """Run a (v, x) -> out elementwise kernel of _core on numpy inputs with ufunc semantics."""
    conv = [_as_numpy(a, n) for a, n in zip(args, names)]
    dt = compute_dtype([c.dtype if isinstance(c, np.ndarray) else c for c in conv])
    # the kernels read whole aligned elements: copy unaligned views (odd offsets or strides)
    arrs = [np.require(c, dtype=dt, requirements="A") for c in conv]
    for a, n in zip(arrs, names):
        if a.ndim > MAX_DIMS:
            raise ValueError(f"{n}: {a.ndim} dimensions, at most {MAX_DIMS} are supported")
    shape = _broadcast_shape([a.shape for a in arrs], names)
    arrs = [np.broadcast_to(a, shape) for a in arrs]
    scalar = all(a.ndim == 0 for a in arrs)
    if out is not None:
        check_numpy_out(out, shape, dt)
        direct = (out.dtype == dt and out.dtype.isnative and out.flags.aligned
                  and not any(np.may_share_memory(out, a) for a in arrs))
        if direct:
            kernel(*arrs, out)
            return out
        res = np.empty(shape, dtype=dt)
        kernel(*arrs, res)
        np.copyto(out, res, casting="same_kind")
        return out
    res = np.empty(shape, dtype=dt)
    kernel(*arrs, res)
    return res[()] if scalar else res


# ---- CUDA (torch / cupy) ------------------------------------------------------------------
def _require_cuda():
    if _cuda is None:
        raise RuntimeError(
            "numkern was built without CUDA support, so it cannot process CUDA arrays; "
            "reinstall on a machine with a CUDA compiler (NUMKERN_CUDA=ON) or move the data to the CPU")
    if _cuda.device_count() == 0:
        raise RuntimeError("numkern's CUDA module is built, but no CUDA device or driver is available")
    return _cuda


_TORCH_TO_CODE = {"torch.float32": 0, "torch.float64": 1}


def _torch_like_dtype(a, name):
    """The numpy dtype that stands for a torch tensor's dtype in compute_dtype."""
    if array_kind(a) != TORCH:
        c = _as_numpy(a, name)
        return c.dtype if isinstance(c, np.ndarray) else c
    if a.dtype.is_complex:
        raise TypeError(f"{name}: unsupported dtype {a.dtype} (expected a real tensor)")
    if a.dtype.is_floating_point:
        return np.dtype(np.float64) if a.dtype.itemsize >= 8 else np.dtype(np.float32)
    return np.dtype(np.int64)


def torch_elementwise(family, op_name, kernel, args, names, out=None):
    import torch

    tensors = [a for a in args if array_kind(a) == TORCH]
    if not tensors:  # only out is a tensor
        raise TypeError("out: a torch tensor out= needs torch tensor inputs; pass a numpy array")
    devices = {t.device for t in tensors}
    if len(devices) > 1:
        raise ValueError(f"inputs are on different devices: {sorted(str(d) for d in devices)}")
    device = next(iter(devices))
    for a, n in zip(args, names):
        k = array_kind(a)
        if k == CUPY:
            raise ValueError(f"{n}: cannot mix CuPy arrays with torch tensors")
        if device.type == "cuda" and k == NUMPY and isinstance(a, np.ndarray) and a.ndim > 0:
            raise ValueError(f"{n}: a numpy (CPU) array cannot be combined with a CUDA tensor")
    dt = torch.float32 if compute_dtype([_torch_like_dtype(a, n) for a, n in zip(args, names)]) == np.float32 \
        else torch.float64
    ts = [a.to(dt) if array_kind(a) == TORCH else torch.as_tensor(np.asarray(a), dtype=dt, device=device)
          for a in args]
    try:
        ts = torch.broadcast_tensors(*ts)
    except RuntimeError:
        _broadcast_shape([tuple(t.shape) for t in ts], names)
        raise
    if device.type == "cpu":
        nps = [t.detach().numpy() for t in ts]
        res = np.empty(nps[0].shape, dtype=nps[0].dtype)
        kernel(*nps, res)
        result = torch.from_numpy(res)
    else:
        cu = _require_cuda()
        ts = [t.detach().contiguous() for t in ts]
        result = torch.empty(ts[0].shape, dtype=dt, device=device)
        with torch.cuda.device(device):
            stream = torch.cuda.current_stream(device).cuda_stream
            getattr(cu, family).binary(op_name, _TORCH_TO_CODE[str(dt)], ts[0].data_ptr(), ts[1].data_ptr(),
                      result.data_ptr(), result.numel(), stream)
    if out is not None:
        if array_kind(out) != TORCH:
            raise TypeError("out: expected a torch tensor for torch inputs")
        check_torch_out(out, result)
        out.copy_(result)
        return out
    return result


def check_torch_out(out, result):
    """out= for a torch result: a tensor of the same shape that the floating result casts to."""
    if array_kind(out) != TORCH:
        raise TypeError("out: expected a torch tensor for torch inputs")
    if tuple(out.shape) != tuple(result.shape):
        raise ValueError(f"out: shape {tuple(out.shape)} does not match {tuple(result.shape)}")
    if not (out.dtype.is_floating_point or out.dtype.is_complex):  # numpy's same_kind rule
        raise TypeError(f"out: cannot cast the result dtype {result.dtype} to {out.dtype}")


def cupy_elementwise(family, op_name, args, names, out=None):
    import cupy

    for a, n in zip(args, names):
        k = array_kind(a)
        if k == TORCH:
            raise ValueError(f"{n}: cannot mix torch tensors with CuPy arrays")
        if k == NUMPY and isinstance(a, np.ndarray) and a.ndim > 0:
            raise ValueError(f"{n}: a numpy (CPU) array cannot be combined with a CuPy (CUDA) array")
        if k == CUPY and a.dtype.kind not in "biuf":
            raise TypeError(f"{n}: unsupported dtype {a.dtype}")
    devs = {a.device.id for a in args if array_kind(a) == CUPY}
    if len(devs) > 1:
        raise ValueError(f"inputs are on different devices: {sorted(devs)}")
    dt = compute_dtype([a.dtype if hasattr(a, "dtype") else a for a in args])
    cu = _require_cuda()
    with cupy.cuda.Device(next(iter(devs))):
        arrs = [cupy.asarray(a, dtype=dt) for a in args]
        shape = _broadcast_shape([a.shape for a in arrs], names)
        arrs = [cupy.ascontiguousarray(cupy.broadcast_to(a, shape)) for a in arrs]
        result = cupy.empty(shape, dtype=dt)
        stream = cupy.cuda.get_current_stream().ptr
        getattr(cu, family).binary(op_name, 0 if dt == np.float32 else 1, arrs[0].data.ptr, arrs[1].data.ptr,
                  result.data.ptr, result.size, stream)
        if out is not None:
            if array_kind(out) != CUPY or out.shape != shape:
                raise ValueError("out: expected a CuPy array of the broadcast shape")
            out[...] = result
            return out
    return result


def check_numpy_out(out, shape, result_dtype):
    """A numpy `out=` must match the broadcast shape, be writeable and take the result's dtype."""
    if not isinstance(out, np.ndarray):
        raise TypeError(f"out: expected a numpy array, got {type(out).__name__}")
    if out.shape != shape:
        raise ValueError(f"out: shape {out.shape} does not match the broadcast shape {shape}")
    if not out.flags.writeable:
        raise ValueError("out: array is read-only")
    if not np.can_cast(result_dtype, out.dtype, casting="same_kind"):
        raise TypeError(f"out: cannot cast the result dtype {np.dtype(result_dtype)} to {out.dtype}")


def elementwise(family, op_name, args, names, out=None):
    """Dispatch the binary elementwise kernel ``_core.<family>.<op_name>`` by the kind of inputs."""
    kinds = {array_kind(a) for a in args}
    if out is not None:
        kinds.add(array_kind(out))
    if TORCH in kinds and CUPY in kinds:
        raise ValueError("cannot mix torch tensors and CuPy arrays in one call")
    kernel = getattr(getattr(_core, family), op_name)
    if TORCH in kinds:
        return torch_elementwise(family, op_name, kernel, args, names, out)
    if CUPY in kinds:
        return cupy_elementwise(family, op_name, args, names, out)
    return numpy_elementwise(kernel, args, names, out)
