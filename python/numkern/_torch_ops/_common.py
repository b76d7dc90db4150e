"""Shared pieces of numkern's torch operators: the dtype rule, vmap of broadcasting ops, argument
preparation for the public wrappers, and the first-order-only derivative in a Bessel order."""
from __future__ import annotations

import numpy as np
import torch

from .._backend import check_torch_out, scalar_or_array_dtype

NAMESPACE = "numkern"


def result_dtype(*tensors) -> torch.dtype:
    """numkern's one dtype rule on tensors: float32 when every input is a floating tensor of at
    most 32 bits (float16, bfloat16, float32), else float64 (integer and bool inputs included)."""
    if all(t.dtype.is_floating_point and t.dtype.itemsize <= 4 for t in tensors):
        return torch.float32
    return torch.float64


def fake_elementwise(*tensors):
    """The fake (meta) result of a broadcasting elementwise op."""
    shape = torch.broadcast_shapes(*(t.shape for t in tensors))
    return tensors[0].new_empty(shape, dtype=result_dtype(*tensors))


def register_elementwise_vmap(op):
    """vmap rule of a broadcasting elementwise op: every batched input gets its batch dimension
    moved to the front and 1-padded to the broadcast rank, so that batch dimensions line up."""

    def rule(info, in_dims, *args):
        rank = max(t.dim() - (d is not None) for t, d in zip(args, in_dims))
        lifted = []
        for t, d in zip(args, in_dims):
            if d is not None:
                t = t.movedim(d, 0)
                pad = rank - (t.dim() - 1)
                t = t.reshape((t.shape[0],) + (1,) * pad + tuple(t.shape[1:]))
            lifted.append(t)
        return op(*lifted), 0

    torch.library.register_vmap(op, rule)


def _is_weak(a) -> bool:
    return isinstance(a, (bool, int, float)) and not isinstance(a, np.generic)


def prepare(args, names):
    """The public wrappers' arguments as tensors of one device and numkern's result dtype.

    Tensors keep their autograd history (the cast is differentiable); Python scalars are weak (they
    take the result dtype); numpy arrays and numpy scalars join CPU tensors and count in the dtype
    rule.  Errors name the argument: complex or non-numeric input (TypeError), different devices,
    a numpy array with a CUDA tensor, shapes that do not broadcast (ValueError)."""
    device = None
    for a, n in zip(args, names):
        if isinstance(a, torch.Tensor):
            if a.dtype.is_complex:
                raise TypeError(f"{n}: unsupported dtype {a.dtype} (expected a real tensor)")
            if device is None:
                device = a.device
            elif a.device != device:
                raise ValueError(f"inputs are on different devices: {device} and {a.device} ({n})")
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"numkern runs on CPU and CUDA tensors, got a tensor on {device}")
    conv = []
    for a, n in zip(args, names):
        if isinstance(a, torch.Tensor) or _is_weak(a):
            conv.append(a)
            continue
        scalar_or_array_dtype(a, n)  # TypeError naming the argument
        arr = np.asarray(a)
        if device.type == "cuda" and arr.ndim > 0:
            raise ValueError(f"{n}: a numpy (CPU) array cannot be combined with a CUDA tensor")
        conv.append(torch.as_tensor(arr, device=device))
    strong = [t for t in conv if isinstance(t, torch.Tensor)]
    dt = result_dtype(*strong)
    try:
        torch.broadcast_shapes(*(t.shape for t in strong))
    except RuntimeError:
        desc = ", ".join(f"{n} {tuple(t.shape)}" for n, t in zip(names, conv) if isinstance(t, torch.Tensor))
        raise ValueError(f"shapes do not broadcast: {desc}") from None
    return [t.to(dt) if isinstance(t, torch.Tensor) else torch.tensor(t, dtype=dt, device=device) for t in conv]


def finish(result, out):
    """Write `result` into a torch `out=` (validated first; out is not part of the graph)."""
    if out is None:
        return result
    check_torch_out(out, result)
    with torch.no_grad():
        out.copy_(result)
    return out


class FirstOrderOnly(torch.autograd.Function):
    """value = fn(*inputs) computed without a graph; differentiating it again raises.

    Carries the derivatives in a Bessel order v, which are central differences (first order
    only): a second derivative through them is refused rather than returned wrong."""

    generate_vmap_rule = True

    @staticmethod
    def forward(fn, what, *inputs):
        with torch.no_grad():
            return fn(*inputs)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.what = inputs[1]

    @staticmethod
    def backward(ctx, grad):
        raise RuntimeError(
            f"numkern: {ctx.what} is a central difference (a first derivative only) and cannot be "
            "differentiated again; detach the order (v.detach()) or do not ask for second derivatives "
            "involving it")


def first_order_only(fn, what, *inputs):
    if torch.is_grad_enabled() and any(t.requires_grad for t in inputs):
        return FirstOrderOnly.apply(fn, what, *inputs)
    with torch.no_grad():
        return fn(*inputs)
