"""Thin wrappers of numkern.vmf's kernels (internal).

Each allocates the outputs with the context's ``Ops`` and runs ``<module>.vmf.<fn>`` through
``Context.call`` (numkern._backend): the C++ kernels for numpy and torch CPU input, the CUDA
kernels, under the arrays' device and on the caller's current stream, for torch CUDA tensors and
CuPy arrays.  The native side reads every array as a checked view and takes sizes from shapes.
"""
from __future__ import annotations

from .._backend import F64


def vmap(ctx, op, inputs, out):
    """out = op(*inputs) elementwise (arrays of out's shape and dtype)."""
    ctx.call("vmf", "map", op, list(inputs), out)
    return out


def row_norm2(ctx, x):
    """|x_r|^2 (float64) of the rows of a 2-D array."""
    out = ctx.ops.empty((tuple(x.shape)[0],), F64)
    ctx.call("vmf", "row_norm2", x, out)
    return out


def weighted_sum(ctx, x, w):
    """sum_i w[g, i] x[g, i, :] for x (G, n, d), w (G, n) float64 or None -> (G, d) float64."""
    g, _, d = tuple(x.shape)
    out = ctx.ops.empty((g, d), F64)
    ctx.call("vmf", "weighted_sum", x, w, out)
    return out


def logpdf(ctx, x, mu, shifted, kappa, n):
    """log f of x (G or 1, n, d) under G distributions -> (out (G, n) of x's dtype, |x|^2 (G, n))."""
    g = tuple(mu.shape)[0]
    out = ctx.ops.empty((g, n), ctx.ops.dtype(x))
    norm2 = ctx.ops.empty((g, n), F64)
    ctx.call("vmf", "logpdf", x, mu, shifted, kappa, out, norm2)
    return out, norm2


def estep(ctx, dots, b, kappa):
    """Mixture E-step on dots (n, K): (log-responsibilities (n, K), log-sum-exp (n,))."""
    n, k = tuple(dots.shape)
    logresp = ctx.ops.empty((n, k), F64)
    lse = ctx.ops.empty((n,), F64)
    ctx.call("vmf", "estep", dots, b, kappa, logresp, lse)
    return logresp, lse


def sample(ctx, mu, kappa, n, seed, dtype):
    """(G, n, d) draws of `dtype` from vMF(mu (G, d), kappa (G,))."""
    g, d = tuple(mu.shape)
    out = ctx.ops.empty((g, n, d), dtype)
    ctx.call("vmf", "sample", mu, kappa, seed, out)
    return out
