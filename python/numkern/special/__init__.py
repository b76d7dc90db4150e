"""Modified Bessel functions in the log domain, and drop-ins for ``scipy.special``.

All functions broadcast like ufuncs, accept numpy arrays, Python scalars, torch tensors (CPU and
CUDA; differentiable) and CuPy arrays, compute float32 inputs in float32 (through double inside
the kernel; float16 too for the two-argument functions, torch bfloat16 as float16) and everything
else in float64, with the same result dtype for numpy, dask and torch inputs, and take ``out=``.  Complex arguments of the drop-ins
are delegated to ``scipy.special`` (numpy inputs only).  Dask arrays give lazy dask arrays
(blockwise over the broadcast chunks, the dtype numpy inputs would give; ``out=`` is refused
there; docs/distributed.md).

numpy input (arrays, scalars, lists) and arrays of libraries that implement ``__array_ufunc__``
(dask, xarray, pint) go through real numpy ufuncs, ``numkern.special.ufuncs.<name>`` (same bits as
before), so the functions also take the ufunc keywords ``where=``, ``dtype=``, ``casting=``,
``order=``, ``subok=``, ``signature=`` and ``out=`` as a 1-tuple (numpy inputs only), and carry the
ufunc's methods: ``numkern.special.iv.outer(v, z)``, ``.at``, ``.reduce``, ``.accumulate``,
``.reduceat``, and ``.ufunc`` (the ufunc itself, for ``isinstance(..., np.ufunc)``).  torch tensors
and CuPy arrays take numkern's own paths, as before.  A torch ``out=`` is written outside the
autograd graph: one that requires grad is refused while grad mode is on (as torch's own out=
functions do), and an ``expand()``-ed one (elements sharing memory) is refused naming ``out``.
numpy masked arrays keep their mask through the ufuncs.

Conventions for the special values follow SciPy.  Negative arguments:
``log_kv``/``kv``/``kve`` are NaN for x < 0; ``iv``/``ive`` use I_n(-x) = (-1)^n I_n(x) for integer
n and are NaN for non-integer v; ``log_iv`` returns log|I_v(x)| for integer v (so log_iv(1, -2) ==
log_iv(1, 2)) and NaN for non-integer v.  Negative orders: K_{-v} = K_v and
I_{-v}(x) = I_v(x) + (2/pi) sin(pi v) K_v(x); ``log_iv`` is NaN where that is negative.  At x = 0
for non-integer v < 0, ``ive`` gives the signed limit x -> 0+ (ive(-1.5, 0) = -inf; SciPy NaN)
while ``iv`` keeps SciPy's +inf.  Python ints beyond int64 stand for their float; beyond float64's
range they are a ValueError naming the argument.  docs/special.md lists every difference from SciPy.
"""
from __future__ import annotations

import numpy as np

from .._backend import (CUPY, F32, F64, NUMPY, TORCH, any_torch, array_kind, check_numpy_out, elementwise,
                        has_complex, result_dtype, scalar_or_array_dtype)
from .._backend.elementwise import MAX_DIMS, _broadcast_shape
from .._dask import is_dask_array
from . import ufuncs

__all__ = [
    "log_iv", "log_kv", "iv", "ive", "kv", "kve", "i0", "i0e", "i1", "i1e", "k0", "k0e", "k1",
    "k1e", "iv_ratio", "iv_ratio_c",
]


def _is_duck(a) -> bool:
    """An array of another library that takes part in numpy's ufunc protocol (dask, xarray, pint)."""
    return (a is not None and not isinstance(a, (np.ndarray, np.generic))
            and getattr(type(a), "__array_ufunc__", None) is not None)


def _device_or_torch(args, out) -> bool:
    outs = out if isinstance(out, tuple) else (out,)
    return any(array_kind(a) in (TORCH, CUPY) for a in (*args, *outs))


def _no_ufunc_options(kwargs):
    if kwargs:
        raise TypeError(f"{', '.join(sorted(kwargs))}: numpy ufunc options, supported for numpy inputs only")


def _check_ufunc_out(out, shape, dt, kwargs):
    """out= of a numpy call (an array or a 1-tuple, of the broadcast shape): an error naming it."""
    outs = out if isinstance(out, tuple) else (out,)
    if len(outs) != 1:
        raise TypeError(f"out: expected one array (or a 1-tuple), got {len(outs)}")
    o = outs[0]
    if o is None:
        return
    if kwargs.get("dtype") is not None:
        dt = np.dtype(kwargs["dtype"])
    check_numpy_out(o, shape, o.dtype if kwargs.get("signature") is not None else dt)  # (same_kind)
    casting = kwargs.get("casting", "same_kind")
    if kwargs.get("signature") is None and not np.can_cast(dt, o.dtype, casting=casting):
        raise TypeError(f"out: cannot cast the result dtype {dt} to {o.dtype} (casting={casting!r})")


def _check_ufunc_args(args, names, out, kwargs):
    """numkern's checks of a numpy call: raise the error naming the argument (or return)."""
    dts = []
    for a, n in zip(args, names):
        if a is None:
            raise TypeError(f"{n}: expected a real number or array, got None")
        dts.append(scalar_or_array_dtype(a, n))  # TypeError naming the argument
    shape = _broadcast_shape([np.shape(a) for a in args], names)
    if out is not None:
        if len(args) == 1:  # i0 ... k1e: float32 only for float32 x (float16 computes in float64)
            dt = F32 if dts[0] == F32 else F64
        else:
            dt = result_dtype(*args, names=names)
        _check_ufunc_out(out, shape, dt, kwargs)


def _ufunc_call(name, args, names, out, kwargs):
    """numpy (and duck-array) input: the real ufunc ``numkern.special.ufuncs.<name>``.

    The ufunc checks everything before its loop writes, so a failing call writes nothing; its
    errors are then replaced by one that names the argument where numkern's checks find it."""
    uf = getattr(ufuncs, name)
    if out is not None:
        kwargs = dict(kwargs, out=out)
    args = tuple(int(a) if type(a) is bool else a for a in args)  # Python bools are weak, like ints
    outs = out if isinstance(out, tuple) else (out,)
    for a, n in zip((*args, *outs), (*names, "out")):
        if getattr(a, "ndim", 0) > MAX_DIMS:  # the limit of numkern's torch and CuPy paths, for all kinds
            raise ValueError(f"{n}: {a.ndim} dimensions, at most {MAX_DIMS} are supported")
    if len(outs) == 1 and isinstance(outs[0], np.ndarray) and not any(_is_duck(a) for a in args):
        # out= of exactly the broadcast shape (a numpy ufunc also broadcasts the inputs to a larger out)
        _check_ufunc_args(args, names, out, kwargs)
    try:
        return uf(*args, **kwargs)
    except Exception as e:  # noqa: BLE001 - re-raised below unless a check names the argument
        err = e
    if not any(_is_duck(a) for a in (*args, *outs)):  # a duck array's own errors stand
        _check_ufunc_args(args, names, out, kwargs)
    raise err


_FAST_DTYPES = (F64, F32)


def _plain_numpy_call(op, v, x, out, kwargs):
    """The ufunc for the common call -- two numpy arrays (not subclasses) of one shape and of
    float64 or float32, out= absent or a writeable array of that shape and dtype, no ufunc
    keywords -- without the general path's dispatch and checks, whose outcome is fixed there (the
    same ufunc, the same bits); None for any other call.  (Right after other work, e.g. a SciPy
    call on 10^5 elements, each Python-level step of the general path ran ~10x slower than warm:
    the checks of an out= call took ~130 us, 0.6-0.9 ns an element of a 200,000-element call, on
    an Intel Xeon host; bench/RESULTS.md #21.)"""
    if kwargs or type(v) is not np.ndarray or type(x) is not np.ndarray:
        return None
    dt = v.dtype
    if x.dtype != dt or dt not in _FAST_DTYPES or x.shape != v.shape or v.ndim > MAX_DIMS:
        return None
    if out is None:
        return getattr(ufuncs, op)(v, x)
    if type(out) is np.ndarray and out.dtype == dt and out.shape == v.shape and out.flags.writeable:
        return getattr(ufuncs, op)(v, x, out=out)
    return None


_F64_MAX_INT = 2 ** 1024 - 2 ** 970  # the least int that float() rounds beyond DBL_MAX (OverflowError)
_I64 = 2 ** 63


def _python_int(a, name):
    """A Python int outside int64 as the float it stands for (numpy would make it an object array,
    or raise OverflowError naming nothing); ValueError naming the argument where no float64
    holds it (np.float64(10**400) raises too).  Other arguments unchanged."""
    if type(a) is not int or -_I64 <= a < _I64:
        return a
    if abs(a) >= _F64_MAX_INT:
        raise ValueError(f"{name}: integer too large to convert to float64 (|{name}| >= 2**1024 - 2**970, "
                         "which rounds beyond the largest float64)")
    return float(a)


def _call(op, v, x, out, names=("v", "x"), kwargs=None):
    res = _plain_numpy_call(op, v, x, out, kwargs)
    if res is not None:
        return res
    kwargs = kwargs or {}
    v, x = _python_int(v, names[0]), _python_int(x, names[1])
    # dask before torch: a torch tensor with a dask array is special_blockwise's TypeError (computing
    # the dask array eagerly into a torch tensor would defeat its laziness)
    if is_dask_array(v) or is_dask_array(x):  # lazy, blockwise (numkern/_dask.py)
        from .._dask import special_blockwise

        _no_ufunc_options(kwargs)
        return special_blockwise(globals()[op], (v, x), names, out)
    if any_torch(v, x):  # torch operators torch.ops.numkern.<op> (complex tensors: TypeError there)
        from ._autograd import torch_binary

        _no_ufunc_options(kwargs)
        return torch_binary(op, v, x, out, names)
    if _device_or_torch((v, x), out):
        _no_ufunc_options(kwargs)
        return elementwise("special", op, (v, x), names, out)
    return _ufunc_call(op, (v, x), names, out, kwargs)


# scipy.special's ufunc of each name, kept from the first complex call: code that patches
# numkern's drop-ins into scipy.special (scipy.special.iv = numkern.special.iv) keeps working.
_SCIPY_UFUNCS: dict = {}


def _scipy_ufunc(name, arg_name):
    uf = _SCIPY_UFUNCS.get(name)
    if uf is None:
        import scipy.special as sc

        uf = getattr(sc, name)
        if uf is globals().get(name) or uf is getattr(ufuncs, name, None):
            raise TypeError(f"{arg_name}: complex arguments are delegated to scipy.special.{name}, which is "
                            f"numkern's own {name} here (patched in before numkern's first complex call)")
        _SCIPY_UFUNCS[name] = uf
    return uf


def _scipy_complex(name, *args, out=None, names=("v", "z"), kwargs=None):
    # validated here so that errors name the argument (SciPy's ufunc messages do not)
    names = names[-len(args):]
    ufunc = _scipy_ufunc(name, names[-1])
    arrs = []
    for a, n in zip(args, names):
        if array_kind(a) != NUMPY:
            raise TypeError(f"{n}: complex arguments are supported for numpy inputs only "
                            "(delegated to scipy.special)")
        scalar_or_array_dtype(a, n, allow_complex=True)  # TypeError naming the argument
        arrs.append(np.asarray(a))
    if len(arrs) == 2 and arrs[0].dtype.kind == "c":
        raise TypeError("v: the order must be real (complex z is delegated to scipy.special)")
    if not any("D" in t.split("->")[0] for t in ufunc.types):
        raise TypeError(f"{names[-1]}: complex arguments are not supported by {name} "
                        f"(scipy.special.{name} is real only)")
    shape = _broadcast_shape([a.shape for a in arrs], names)
    kwargs = kwargs or {}
    if out is None:
        return ufunc(*args, **kwargs)
    check_numpy_out(out, shape, np.complex128)
    return ufunc(*args, out=out, **kwargs)


def _real_or_complex(op, v, z, out, kwargs):
    res = _plain_numpy_call(op, v, z, out, kwargs)  # (float arrays: not complex)
    if res is not None:
        return res
    if not any_torch(v, z) and not (is_dask_array(v) or is_dask_array(z)) and has_complex(v, z):
        return _scipy_complex(op, v, z, out=out, kwargs=kwargs)
    return _call(op, v, z, out, ("v", "z"), kwargs)


def log_iv(v, x, out=None, **kwargs):
    r"""log I_v(x), the logarithm of the modified Bessel function of the first kind,
    I_v(x) = sum_k (x/2)^(2k+v) / (k! Gamma(k+v+1)).

    Computed entirely in the log domain, so it is finite wherever the logarithm is: e.g.
    ``log_iv(5000, 10)`` and ``log_iv(1e6, 1e-300)`` where ``scipy.special.ive`` returns 0.

    Domain: real v and x.  v >= 0, x >= 0: every value, accurate to ~1e-15 relative
    (|error| / max(1, |log I|)) up to v, x = DBL_MAX; log_iv(0, 0) = 0, log_iv(v > 0, 0) = -inf,
    x = inf gives +inf (v = inf included), -inf where log I < -DBL_MAX (log_iv(1e306, 1)).
    v < 0: I_{-v} = I_v + (2/pi) sin(pi v) K_v, NaN where negative; v = -inf as v = +inf (every
    double below -2^53 is an even integer, I_{-n} = I_n; x = inf then NaN).  x < 0: log|I_v(x)| for
    integer v (on the CPU bit for bit log_iv(v, |x|)), NaN otherwise.  NaN in gives NaN out.
    torch: d/dx = I_{v+1}/I_v + v/x from the stable ratio; d/dv by a central difference in
    float64 (docs/torch.md).
    """
    return _call("log_iv", v, x, out, kwargs=kwargs)


def log_kv(v, x, out=None, **kwargs):
    r"""log K_v(x), the logarithm of the modified Bessel function of the second kind,
    K_v(x) = (pi/2) (I_{-v}(x) - I_v(x)) / sin(pi v) (its limit for integer v) =
    int_0^inf exp(-x cosh t) cosh(v t) dt.

    Domain: real v (K_{-v} = K_v), x >= 0: log_kv(v, 0) = +inf, log_kv(v, inf) = -inf; NaN for
    x < 0 and for NaN input (log_kv(inf, inf) = -inf).  Finite for every finite v and
    0 < x < inf where |log K| <= DBL_MAX (no intermediate overflow up to v, x = DBL_MAX):
    ``log_kv(1e4, 1e4)`` is -5332.95..., where ``scipy.special.kve`` overflows.
    torch: d/dx = v/x - K_{v+1}/K_v; d/dv by a central difference in float64 (docs/torch.md).
    """
    return _call("log_kv", v, x, out, kwargs=kwargs)


def iv(v, z, out=None, **kwargs):
    r"""I_v(z), modified Bessel function of the first kind (drop-in for ``scipy.special.iv``).

    I_v(z) = sum_k (z/2)^(2k+v) / (k! Gamma(k+v+1)).  Domain: real v and z (complex z:
    ``scipy.special.iv``), with SciPy's conventions: z < 0 gives I_n(z) = (-1)^n I_n(|z|) for
    integer n and NaN for non-integer v; I_{-n} = I_n; v = -inf as v = +inf (every double below
    -2^53 is an even integer).  Special values: iv(0, 0) = 1, iv(v > 0, 0) = 0, iv(v, inf) = inf,
    iv(inf, z) = 0 for finite z; non-integer v < 0 at z = 0: +inf as SciPy, also where
    I_v(z) -> -inf as z -> 0+ (Gamma(1+v) < 0, e.g. v = -1.5; ``ive`` gives the signed limit).
    Accuracy: within max(2 eps, SciPy's error) for v >= 0 (docs/special.md); non-integer v < 0:
    I_{-nu} = I_nu + (2/pi) sin(pi nu) K_nu formed from the values, error ~2 eps times the
    cancellation factor (|I_nu| + |c K_nu|) / |I_{-nu}|, which is intrinsic near the zeros of
    I_{-nu}.  0 or inf exactly where the value under/overflows.
    """
    return _real_or_complex("iv", v, z, out, kwargs)


def ive(v, z, out=None, **kwargs):
    r"""I_v(z) exp(-|z|), exponentially scaled I (drop-in for ``scipy.special.ive``).

    I_v(z) = sum_k (z/2)^(2k+v) / (k! Gamma(k+v+1)).  Domain: real v and z (complex z:
    ``scipy.special.ive``), as ``iv``: (-1)^n symmetry for integer n and z < 0, NaN for
    non-integer v and z < 0.  Special values: ive(0, 0) = 1, ive(v > 0, 0) = 0,
    ive(v, +-inf) = 0 for finite v (SciPy: NaN for non-integer v), ive(+-inf, z) = 0.
    Differences from SciPy (docs/special.md): non-integer v < 0 at z = 0 gives the signed limit
    z -> 0+, +-inf with the sign of Gamma(1+v) (ive(-0.5, 0) = inf, ive(-1.5, 0) = -inf; SciPy:
    NaN); ive(1, 2^-1074) = 0, the correctly rounded value (I_1(z) e^-z lies just below half the
    least subnormal; SciPy 2^-1074).  Accuracy as ``iv``.
    """
    return _real_or_complex("ive", v, z, out, kwargs)


def kv(v, z, out=None, **kwargs):
    r"""K_v(z), modified Bessel function of the second kind (drop-in for ``scipy.special.kv``).

    K_v(z) = (pi/2) (I_{-v}(z) - I_v(z)) / sin(pi v) (its limit for integer v); K_{-v} = K_v.
    Domain: real v, z >= 0 (complex z: ``scipy.special.kv``); NaN for z < 0 and NaN input;
    kv(v, 0) = inf, kv(v, inf) = 0, kv(+-inf, z) = inf for finite z > 0.  Accuracy within
    max(2 eps, SciPy's error) (docs/special.md); 0 exactly where the value underflows.
    """
    return _real_or_complex("kv", v, z, out, kwargs)


def kve(v, z, out=None, **kwargs):
    r"""K_v(z) exp(z), exponentially scaled K (drop-in for ``scipy.special.kve``).

    K_v(z) = (pi/2) (I_{-v}(z) - I_v(z)) / sin(pi v) (its limit for integer v); K_{-v} = K_v.
    Domain: real v, z >= 0 (complex z: ``scipy.special.kve``); NaN for z < 0 and NaN input.
    Special values: kve(v, 0) = inf, kve(v, inf) = 0 for finite v (NaN for v = +-inf),
    kve(+-inf, z) = inf for finite z > 0.  Differences from SciPy (docs/special.md): none in the
    special values; accuracy within max(2 eps, SciPy's error).
    """
    return _real_or_complex("kve", v, z, out, kwargs)


def _fixed_order(name, order, x, out, kwargs):
    x = _python_int(x, "x")
    if any_torch(x):  # torch operators torch.ops.numkern.<name>
        from ._autograd import torch_unary

        _no_ufunc_options(kwargs)
        return torch_unary(name, x, out)
    if is_dask_array(x):  # lazy, blockwise (numkern/_dask.py)
        from .._dask import special_blockwise

        _no_ufunc_options(kwargs)
        return special_blockwise(globals()[name], (x,), ("x",), out)
    if has_complex(x):
        return _scipy_complex(name, x, out=out, names=("x",), kwargs=kwargs)
    if _device_or_torch((x,), out):
        _no_ufunc_options(kwargs)
        # dedicated Chebyshev kernels (numkern/bessel01.hpp); the order argument is not read
        return elementwise("special", name, (order, x), ("order", "x"), out)
    # A Python int order is a "weak" scalar: float32 x stays float32, as in SciPy; SciPy's
    # fixed-order functions compute float16 in float64, and so does the ufunc.
    return _ufunc_call(name, (x,), ("x",), out, kwargs)


def i0(x, out=None, **kwargs):
    r"""I_0(x) = sum_k (x/2)^(2k) / (k!)^2, modified Bessel function of order 0 (drop-in for
    ``scipy.special.i0``).

    Domain: real x (complex: ``scipy.special.i0``); even in x.  i0(0) = 1, i0(+-inf) = inf,
    inf where the value overflows (|x| > 713.98...); NaN in gives NaN out.
    """
    return _fixed_order("i0", 0, x, out, kwargs)


def i0e(x, out=None, **kwargs):
    r"""I_0(x) exp(-|x|), I_0(x) = sum_k (x/2)^(2k) / (k!)^2 (drop-in for ``scipy.special.i0e``).

    Domain: real x (complex: ``scipy.special.i0e``); even in x, no overflow.  i0e(0) = 1,
    i0e(+-inf) = 0; ~1/sqrt(2 pi |x|) for large |x|; NaN in gives NaN out.
    """
    return _fixed_order("i0e", 0, x, out, kwargs)


def i1(x, out=None, **kwargs):
    r"""I_1(x) = sum_k (x/2)^(2k+1) / (k! (k+1)!), modified Bessel function of order 1 (drop-in
    for ``scipy.special.i1``).

    Domain: real x (complex: ``scipy.special.i1``); odd in x.  i1(0) = 0, i1(+-inf) = +-inf,
    +-inf where the value overflows; correctly rounded for subnormal x (i1(2^-1074) = 2^-1074:
    x/2 is a tie there and I_1(x) lies just above it); NaN in gives NaN out.
    """
    return _fixed_order("i1", 1, x, out, kwargs)


def i1e(x, out=None, **kwargs):
    r"""I_1(x) exp(-|x|), I_1(x) = sum_k (x/2)^(2k+1) / (k! (k+1)!) (drop-in for
    ``scipy.special.i1e``).

    Domain: real x (complex: ``scipy.special.i1e``); odd in x, no overflow.  i1e(0) = 0,
    i1e(+-inf) = +-0; NaN in gives NaN out.  Subnormal x: correctly rounded, so i1e(2^-1074) = 0
    (I_1(x) e^-x = x/2 (1 - x + ...) lies just below half the least subnormal; SciPy: 2^-1074).
    """
    return _fixed_order("i1e", 1, x, out, kwargs)


def k0(x, out=None, **kwargs):
    r"""K_0(x) = int_0^inf exp(-x cosh t) dt, modified Bessel function of the second kind of
    order 0 (drop-in for ``scipy.special.k0``).

    Domain: x >= 0 (complex: ``scipy.special.k0``); NaN for x < 0 and NaN, inf at 0, 0 at inf
    and where the value underflows.
    """
    return _fixed_order("k0", 0, x, out, kwargs)


def k0e(x, out=None, **kwargs):
    r"""K_0(x) exp(x), K_0(x) = int_0^inf exp(-x cosh t) dt (drop-in for ``scipy.special.k0e``).

    Domain: x >= 0 (complex: ``scipy.special.k0e``); NaN for x < 0 and NaN, inf at 0, 0 at inf;
    ~sqrt(pi / (2x)) for large x, no underflow.
    """
    return _fixed_order("k0e", 0, x, out, kwargs)


def k1(x, out=None, **kwargs):
    r"""K_1(x) = int_0^inf exp(-x cosh t) cosh t dt, modified Bessel function of the second kind
    of order 1 (drop-in for ``scipy.special.k1``).

    Domain: x >= 0 (complex: ``scipy.special.k1``); NaN for x < 0 and NaN, inf at 0 (K_1 ~ 1/x),
    0 at inf and where the value underflows.
    """
    return _fixed_order("k1", 1, x, out, kwargs)


def k1e(x, out=None, **kwargs):
    r"""K_1(x) exp(x), K_1(x) = int_0^inf exp(-x cosh t) cosh t dt (drop-in for
    ``scipy.special.k1e``).

    Domain: x >= 0 (complex: ``scipy.special.k1e``); NaN for x < 0 and NaN, inf at 0, 0 at inf;
    ~sqrt(pi / (2x)) for large x, no underflow.
    """
    return _fixed_order("k1e", 1, x, out, kwargs)


def iv_ratio(v, x, out=None, **kwargs):
    r"""I_v(x) / I_{v-1}(x), for v >= 1/2 and x >= 0 (NaN outside), with
    I_v(x) = sum_k (x/2)^(2k+v) / (k! Gamma(k+v+1)).

    Perron's continued fraction evaluated backward (double-double for v < 1), and
    x / (v + sqrt(v^2 + x^2)) once v or x >= 2^60: relative error <= 2 eps for all v >= 1/2 and
    x >= 0 up to DBL_MAX (measured: correctly rounded on the reference table).  x = +-0 gives x
    (odd in x, as SciPy's private ``_iv_ratio``), 1 at x = inf, 0 at v = inf, NaN at v = x = inf.  This is A_d(kappa) = iv_ratio(d/2, kappa) of the von Mises-Fisher
    distribution.  torch: d/dx = 1 - R^2 - (2v-1) R / x (Riccati equation).
    """
    return _call("iv_ratio", v, x, out, kwargs=kwargs)


def iv_ratio_c(v, x, out=None, **kwargs):
    r"""1 - I_v(x) / I_{v-1}(x), computed without cancellation, for v >= 1/2 and x >= 0 (NaN
    outside), I_v(x) = sum_k (x/2)^(2k+v) / (k! Gamma(k+v+1)).

    For x >> v this is ~ (2v-1)/(2x); it keeps full relative accuracy where ``1 - iv_ratio``
    would lose every digit.  Exactly 1 - tanh(x) = 2/(e^{2x}+1) at v = 1/2.  Relative error
    <= 2 eps for every v >= 1/2 (for 1/2 < v < 1, where 1 - R cancels by 2v/(2v-1), the
    fraction runs in double-double); 1 at x = 0, 0 at x = inf.
    """
    return _call("iv_ratio_c", v, x, out, kwargs=kwargs)


# The ufunc methods and attributes of numkern.special.ufuncs.<name> on the public function of that
# name (numpy input): numkern.special.iv.outer(v, z), .at, .reduce, .accumulate, .reduceat, .types ...
_UFUNC_ATTRS = ("outer", "at", "reduce", "accumulate", "reduceat", "nin", "nout", "nargs", "ntypes", "types",
                "identity", "signature")
for _name in __all__:
    _f, _uf = globals()[_name], getattr(ufuncs, _name)
    _f.ufunc = _uf
    for _attr in _UFUNC_ATTRS:
        setattr(_f, _attr, getattr(_uf, _attr))
del _name, _f, _uf, _attr
