"""numkern.special's sixteen functions as real numpy ufuncs (``isinstance(f, np.ufunc)``).

Made in C++ by numpy's ufunc C API (csrc/python/special_ufunc.cpp) from the same CPU loop as the
numpy path of ``numkern.special``, so each returns the same bits as the function of that name.
They support everything a ufunc does: ``out=`` (an array or a 1-tuple), ``where=``, ``dtype=``,
``casting=``, ``order=``, ``.outer``, ``.at``, ``.reduce``/``.accumulate``/``.reduceat`` (two-argument
functions), and ``__array_ufunc__`` dispatch (dask arrays, xarray, pint call back into them).

Loops: ``ff->f``, ``dd->d`` (v, x) and ``d->d``, ``f->f`` (x); real arguments only (complex input is
a TypeError here; ``numkern.special.iv`` etc. delegate it to SciPy).  The loop is chosen by numkern's
dtype rule, not numpy's first-safe-loop search: float32 when every array input is float32 (for the
two-argument functions also float16), else float64 -- so integer and bool inputs of every width
compute in float64 (``scipy.special`` computes int8/int16 in float32).  Python scalars do not widen
the result (NEP 50).  With ``dtype=`` or ``signature=``, numpy's own loop search applies.

numpy releases the GIL around the loops (for more than ~500 elements); the loops use numkern's
thread pool (``numkern.set_num_threads``).  Floating-point exception flags raised inside a loop
are discarded, so overflow to inf or a NaN result gives no RuntimeWarning, as in SciPy.

The public functions ``numkern.special.iv`` etc. call these for numpy input and also take torch
tensors and CuPy arrays; ``numkern.special.iv.outer`` etc. are these ufuncs' methods.
"""
from __future__ import annotations

from .._backend import native

_m = native._core.special_ufunc

log_iv = _m.log_iv
log_kv = _m.log_kv
iv = _m.iv
ive = _m.ive
kv = _m.kv
kve = _m.kve
iv_ratio = _m.iv_ratio
iv_ratio_c = _m.iv_ratio_c
i0 = _m.i0
i0e = _m.i0e
i1 = _m.i1
i1e = _m.i1e
k0 = _m.k0
k0e = _m.k0e
k1 = _m.k1
k1e = _m.k1e

__all__ = [
    "log_iv", "log_kv", "iv", "ive", "kv", "kve", "iv_ratio", "iv_ratio_c", "i0", "i0e", "i1", "i1e",
    "k0", "k0e", "k1", "k1e",
]
