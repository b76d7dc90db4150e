"""The few dense operations the Hessian estimators need, for numpy, torch and CuPy arrays.

The estimators draw probes and do their small dense algebra (QR, triangular solves) in the array
library of the operator they probe, on its device, so a torch CUDA Hessian-vector product never
round-trips through the host.
"""
from __future__ import annotations

import numpy as np

from .._arrays import CUPY, NUMPY, TORCH, array_kind


class Backend:
    """Array library (kind), dtype and device that probes and results live in."""

    def __init__(self, kind=NUMPY, dtype=None, device=None):
        self.kind = kind
        self.device = device
        if kind == TORCH:
            import torch

            self.lib = torch
            self.dtype = dtype if dtype is not None else torch.float64
        elif kind == CUPY:
            import cupy

            self.lib = cupy
            self.dtype = np.dtype(dtype) if dtype is not None else np.dtype(np.float64)
        else:
            self.lib = np
            self.dtype = np.dtype(dtype) if dtype is not None else np.dtype(np.float64)

    @classmethod
    def like(cls, a):
        kind = array_kind(a)
        if kind == TORCH:
            dt = a.dtype if a.dtype.is_floating_point else None
            return cls(TORCH, dt, a.device)
        if kind == CUPY:
            return cls(CUPY, a.dtype if a.dtype.kind == "f" else None, a.device)
        a = np.asarray(a)
        return cls(NUMPY, a.dtype if a.dtype.kind == "f" else None)

    # ---- random probes ------------------------------------------------------------------
    def generator(self, seed):
        if self.kind == TORCH:
            g = self.lib.Generator(device=self.device if self.device is not None else "cpu")
            g.manual_seed(int(np.random.SeedSequence(seed).generate_state(1)[0]) if seed is not None
                          else int(np.random.SeedSequence().generate_state(1)[0]))
            return g
        if self.kind == CUPY:
            return self.lib.random.RandomState(None if seed is None else
                                               int(np.random.SeedSequence(seed).generate_state(1)[0]))
        return np.random.default_rng(seed)

    def probes(self, gen, shape, probe):
        """Random probes with E[v v^T] = I: Rademacher (+-1) or standard Gaussian."""
        if self.kind == TORCH:
            t = self.lib
            if probe == "gaussian":
                return t.randn(shape, generator=gen, dtype=self.dtype, device=self.device)
            bits = t.randint(0, 2, shape, generator=gen, device=self.device)
            return (2 * bits - 1).to(self.dtype)
        if probe == "gaussian":
            return gen.standard_normal(shape).astype(self.dtype, copy=False)
        if self.kind == CUPY:
            return (2 * gen.randint(0, 2, size=shape) - 1).astype(self.dtype)
        return (2 * gen.integers(0, 2, size=shape) - 1).astype(self.dtype)

    # ---- algebra --------------------------------------------------------------------------
    def asarray(self, a):
        if self.kind == TORCH:
            return self.lib.as_tensor(a, dtype=self.dtype, device=self.device)
        return self.lib.asarray(a, dtype=self.dtype)

    def zeros(self, shape):
        if self.kind == TORCH:
            return self.lib.zeros(shape, dtype=self.dtype, device=self.device)
        return self.lib.zeros(shape, dtype=self.dtype)

    def eye(self, n):
        if self.kind == TORCH:
            return self.lib.eye(n, dtype=self.dtype, device=self.device)
        return self.lib.eye(n, dtype=self.dtype)

    def qr(self, a):
        if self.kind == TORCH:
            return self.lib.linalg.qr(a, mode="reduced")
        return self.lib.linalg.qr(a, mode="reduced")

    def solve_upper_transposed(self, R, B):
        """X with R^T X = B for upper-triangular R."""
        if self.kind == TORCH:
            return self.lib.linalg.solve_triangular(R.T, B, upper=False)
        if self.kind == CUPY:
            from cupyx.scipy.linalg import solve_triangular
        else:
            from scipy.linalg import solve_triangular
        return solve_triangular(R, B, trans="T", lower=False)

    def concat(self, arrays, axis=0):
        if self.kind == TORCH:
            return self.lib.cat(arrays, dim=axis)
        return self.lib.concatenate(arrays, axis=axis)

    def std(self, a, axis=0):
        """Sample standard deviation (ddof = 1); 0 for a single sample."""
        m = a.shape[axis]
        if m < 2:
            return self.lib.zeros_like(a.sum(axis))
        if self.kind == TORCH:
            return a.std(dim=axis, correction=1)
        return a.std(axis=axis, ddof=1)

    def all_finite(self, a) -> bool:
        return bool(self.lib.isfinite(a).all())

    def to_float(self, x) -> float:
        return float(x.item()) if hasattr(x, "item") else float(x)
