"""Which array library an object belongs to, without importing torch or CuPy."""
from __future__ import annotations

import sys

import numpy as np

NUMPY, TORCH, CUPY = "numpy", "torch", "cupy"


def array_kind(a) -> str:
    """'torch' for a torch tensor, 'cupy' for a CuPy array, else 'numpy' (arrays, lists, scalars)."""
    t = type(a)
    if t is np.ndarray or t is float or t is int or a is None:  # (the common cases, without the name test)
        return NUMPY
    mod = t.__module__ or ""
    if mod.startswith("torch") and hasattr(a, "data_ptr"):
        return TORCH
    if mod.startswith("cupy") and hasattr(a, "__cuda_array_interface__"):
        return CUPY
    return NUMPY


def resolved(t):
    """A torch tensor detached, with a lazy negation or conjugation (the neg / conj bit, e.g. of
    ``z.conj().imag`` or ``x.conj()``) applied: numpy views and __cuda_array_interface__ expose the
    raw storage, which holds the values before that negation."""
    return t.detach().resolve_conj().resolve_neg()


def is_cuda(a) -> bool:
    k = array_kind(a)
    return k == CUPY or (k == TORCH and a.is_cuda)


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


def any_torch(*args) -> bool:
    """Whether any argument is a torch tensor (without importing torch; traceable by torch.compile,
    unlike array_kind, whose type(a).__module__ test graph-breaks on Python scalars)."""
    torch = sys.modules.get("torch")
    return torch is not None and any(isinstance(a, torch.Tensor) for a in args)
