"""Elementwise (a, b) -> out kernels with ufunc semantics, for numpy, torch and CuPy.

numpy: broadcasting by strides (no broadcast copies), the one dtype rule, out= of any dtype the
result casts to (same_kind); torch and CuPy: broadcast on the device, contiguous operands, the
caller's device and current stream.  The kernel is ``<module>.<family>.<op>(a, b, out)``
(CUDA: ``..., stream=``), both sides reading ArrayViews (csrc/python/common/array_view.hpp).
"""
from __future__ import annotations

import numpy as np

from . import native
from .context import Context, kernel_ready, resolved
from .dtypes import result_dtype, scalar_or_array_dtype
from .kinds import CUPY, NUMPY, TORCH, array_kind

MAX_DIMS = 32  # csrc/python/common/array_view.hpp kMaxDims


def _as_numpy(a, name: str):
    if isinstance(a, (bool, int, float)) and not isinstance(a, np.generic):
        return a  # weak Python scalar: NEP 50 promotion keeps the array's dtype
    scalar_or_array_dtype(a, name)  # TypeError naming the argument for non-numeric input
    try:
        return np.asarray(a)
    except (TypeError, ValueError) as e:  # ragged nested lists, objects numpy cannot read
        raise TypeError(f"{name}: cannot convert to a numeric array ({e})") from None


def _broadcast_shape(shapes, names):
    try:
        return np.broadcast_shapes(*shapes)
    except ValueError:
        desc = ", ".join(f"{n} {tuple(s)}" for n, s in zip(names, shapes))
        raise ValueError(f"shapes do not broadcast: {desc}") from None


def check_numpy_out(out, shape, result_dtype_):
    """A numpy `out=` must match the broadcast shape, be writeable and take the result's dtype."""
    if not isinstance(out, np.ndarray):
        raise TypeError(f"out: expected a numpy array, got {type(out).__name__}")
    if out.shape != tuple(shape):
        raise ValueError(f"out: shape {out.shape} does not match the broadcast shape {tuple(shape)}")
    if not out.flags.writeable:
        raise ValueError("out: array is read-only")
    if not np.can_cast(result_dtype_, out.dtype, casting="same_kind"):
        raise TypeError(f"out: cannot cast the result dtype {np.dtype(result_dtype_)} to {out.dtype}")


def check_torch_out(out, result):
    """out= for a torch result: a tensor of the same shape and device that the result casts to, each
    element with its own memory, and not requiring grad while grad mode is on (out= is written
    outside the autograd graph)."""
    if array_kind(out) != TORCH:
        raise TypeError("out: expected a torch tensor for torch inputs")
    if tuple(out.shape) != tuple(result.shape):
        raise ValueError(f"out: shape {tuple(out.shape)} does not match {tuple(result.shape)}")
    if out.device != result.device:
        raise ValueError(f"out: on {out.device}, the inputs are on {result.device}")
    if not (out.dtype.is_floating_point or out.dtype.is_complex):  # numpy's same_kind rule
        raise TypeError(f"out: cannot cast the result dtype {result.dtype} to {out.dtype}")
    if any(st == 0 and n > 1 for st, n in zip(out.stride(), out.shape)):  # numpy: a read-only broadcast view
        raise ValueError("out: several elements share one memory location (an expand()ed / broadcast tensor); "
                         "pass a tensor with its own storage, e.g. out.clone()")
    import torch

    if out.requires_grad and torch.is_grad_enabled():  # as torch's own out= functions
        raise RuntimeError("out: requires grad, and out= is not part of the autograd graph (torch refuses out= "
                           "when an argument requires grad); use the returned tensor, or pass out under "
                           "torch.no_grad() or out.detach() to overwrite its values")


def _numpy(kernel, args, names, out):
    conv = [_as_numpy(a, n) for a, n in zip(args, names)]
    dt = result_dtype(*conv, names=names)
    # the kernels read whole aligned elements: copy unaligned views (odd offsets or strides)
    arrs = [kernel_ready(np.asarray(c, dtype=dt)) for c in conv]
    for a, n in zip(arrs, names):
        if a.ndim > MAX_DIMS:
            raise ValueError(f"{n}: {a.ndim} dimensions, at most {MAX_DIMS} are supported")
    shape = _broadcast_shape([a.shape for a in arrs], names)
    arrs = [np.broadcast_to(a, shape) for a in arrs]
    scalar = all(a.ndim == 0 for a in arrs)
    if out is not None:
        check_numpy_out(out, shape, dt)
        direct = (out.dtype == dt and kernel_ready(out) is out
                  and not any(np.may_share_memory(out, a) for a in arrs))
        if direct:
            kernel(*arrs, out)
            return out
        res = np.empty(shape, dtype=dt)
        kernel(*arrs, res)  # out is written only after the kernel succeeded
        np.copyto(out, res, casting="same_kind")
        return out
    res = np.empty(shape, dtype=dt)
    kernel(*arrs, res)
    return res[()] if scalar else res


def _device_operands(ctx, args, names):
    """Broadcast, contiguous device operands of the result dtype (torch CUDA or CuPy)."""
    dt = result_dtype(*args, names=names)
    ts = [ctx.ops.asarray(a if array_kind(a) != NUMPY else np.asarray(a), dt, contiguous=False) for a in args]
    shape = _broadcast_shape([tuple(t.shape) for t in ts], names)
    return [ctx.ops.broadcast(t, shape) for t in ts], shape, dt


def _torch(family, op, kernel, args, names, out):
    import torch

    tensors = [a for a in args if array_kind(a) == TORCH]
    if not tensors:  # only out is a tensor
        raise TypeError("out: a torch tensor out= needs torch tensor inputs; pass a numpy array")
    ctx = Context(*args, names=names)
    for a, n in zip(args, names):
        if array_kind(a) == CUPY:
            raise ValueError(f"{n}: cannot mix CuPy arrays with torch tensors")
    if not ctx.cuda:
        dt = torch.float32 if result_dtype(*args, names=names) == np.float32 else torch.float64
        ts = [resolved(a).to(dt) if array_kind(a) == TORCH else torch.as_tensor(np.asarray(a), dtype=dt)
              for a in args]
        try:
            ts = torch.broadcast_tensors(*ts)
        except RuntimeError:
            _broadcast_shape([tuple(t.shape) for t in ts], names)
            raise
        nps = [kernel_ready(t.numpy()) for t in ts]
        res = np.empty(nps[0].shape, dtype=nps[0].dtype)
        kernel(*nps, res)
        result = torch.from_numpy(res)
    else:
        with ctx.guard():
            ts, shape, dt = _device_operands(ctx, args, names)
            result = ctx.ops.empty(shape, dt)
            ctx.call(family, op, ts[0], ts[1], result)
    if out is not None:
        check_torch_out(out, result)
        out.copy_(result)
        return out
    return result


def _cupy(family, op, args, names, out):
    for a, n in zip(args, names):
        if array_kind(a) == TORCH:
            raise ValueError(f"{n}: cannot mix torch tensors with CuPy arrays")
    if not any(array_kind(a) == CUPY for a in args):  # only out is a CuPy array
        raise TypeError("out: a CuPy out= needs CuPy inputs; pass a numpy array or move the inputs "
                        "to the device")
    ctx = Context(*args, names=names)
    native.require_cuda()
    with ctx.guard():
        arrs, shape, dt = _device_operands(ctx, args, names)
        result = ctx.ops.empty(shape, dt)
        ctx.call(family, op, arrs[0], arrs[1], result)
        if out is not None:
            if array_kind(out) != CUPY or tuple(out.shape) != tuple(shape):
                raise ValueError("out: expected a CuPy array of the broadcast shape")
            if out.device.id != ctx.device:
                raise ValueError(f"out: on device {out.device.id}, the inputs are on device {ctx.device}")
            out[...] = result
            return out
    return result


def elementwise(family, op, args, names, out=None):
    """Dispatch the binary elementwise kernel ``<family>.<op>`` by the kind of the inputs."""
    kinds = {array_kind(a) for a in args}
    if out is not None:
        kinds.add(array_kind(out))
    if TORCH in kinds and CUPY in kinds:
        raise ValueError("cannot mix torch tensors and CuPy arrays in one call")
    if TORCH in kinds:
        return _torch(family, op, getattr(getattr(native._core, family), op), args, names, out)
    if CUPY in kinds:
        return _cupy(family, op, args, names, out)
    return _numpy(getattr(getattr(native._core, family), op), args, names, out)
