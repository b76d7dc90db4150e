"""The one dtype rule of numkern."""
from __future__ import annotations

import numpy as np

from .kinds import TORCH, array_kind

F32, F64 = np.dtype(np.float32), np.dtype(np.float64)


def _weak(a) -> bool:
    """Python bool/int/float (not numpy scalars): they do not decide the result dtype (NEP 50)."""
    return isinstance(a, (bool, int, float)) and not isinstance(a, np.generic)


def scalar_or_array_dtype(a, name: str, allow_complex: bool = False):
    """The numpy dtype standing for argument `a` in the dtype rule (None for a weak scalar).

    torch dtypes map to the numpy dtype of the same kind and width; anything numpy cannot read
    as a real numeric array is a TypeError naming the argument."""
    if a is None or _weak(a):
        return None
    if array_kind(a) == TORCH:
        dt = a.dtype
        if dt.is_complex and not allow_complex:
            raise TypeError(f"{name}: unsupported dtype {dt} (expected a real tensor)")
        if dt.is_floating_point:
            return F32 if dt.itemsize <= 4 else F64
        return np.dtype(bool) if str(dt) == "torch.bool" else np.dtype(np.int64)
    try:
        dt = np.dtype(a.dtype) if hasattr(a, "dtype") else np.asarray(a).dtype
    except (TypeError, ValueError) as e:  # ragged lists, objects numpy cannot read
        raise TypeError(f"{name}: cannot convert to a numeric array ({e})") from None
    if dt.kind in "biuf" or (allow_complex and dt.kind == "c"):
        return dt
    raise TypeError(f"{name}: unsupported dtype {dt} (expected a real numeric array)")


def result_dtype(*args, names=()) -> np.dtype:
    """float32 when every array argument is float16/float32, else float64.

    Python scalars are weak (they never widen the result); integer and bool arrays of any width
    compute in float64 (SciPy computes int8/int16 in float32, which loses accuracy); float16 (and torch
    bfloat16, which numpy lacks: Context.input widens it) computes and returns in float32.  With no
    array argument at all the result is float64."""
    dts = []
    for i, a in enumerate(args):
        dt = scalar_or_array_dtype(a, names[i] if i < len(names) else "input")
        if dt is not None:
            dts.append(dt)
    if dts and all(d.kind == "f" and d.itemsize <= 4 for d in dts):
        return F32
    return F64
