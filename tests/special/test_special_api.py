"""API, semantics and bad-input tests for numkern.special (numpy side).

Numbers are checked against mpmath (40 digits), closed-form asymptotics, or scipy.special where
SciPy is accurate (moderate arguments).  Accuracy sweeps of the kernels live in the family's own
accuracy tests; here a handful of points per rule, plus the extremes of the domain.
"""
from __future__ import annotations

import json
import math
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import scipy.special as sc

import numkern
from numkern import special as nks

BINARY = ["log_iv", "log_kv", "iv", "ive", "kv", "kve", "iv_ratio", "iv_ratio_c"]
UNARY = ["i0", "i0e", "i1", "i1e", "k0", "k0e", "k1", "k1e"]
ALL = BINARY + UNARY
DROP_INS = ["iv", "ive", "kv", "kve"] + UNARY


def call(name, v, x, **kw):
    """Call a binary function as f(v, x) and a fixed-order one as f(x)."""
    f = getattr(nks, name)
    return f(x, **kw) if name in UNARY else f(v, x, **kw)


def scipy_ref(name, v, x):
    """float64 reference from SciPy, accurate at the moderate arguments used with it."""
    v = np.asarray(v, dtype=np.float64)
    x = np.asarray(x, dtype=np.float64)
    if name == "log_iv":
        return np.log(sc.ive(v, x)) + x
    if name == "log_kv":
        return np.log(sc.kve(v, x)) - x
    if name == "iv_ratio":
        return sc.ive(v, x) / sc.ive(v - 1, x)
    if name == "iv_ratio_c":
        return 1.0 - sc.ive(v, x) / sc.ive(v - 1, x)
    if name in UNARY:
        return getattr(sc, name)(x)
    return getattr(sc, name)(v, x)


def rel_err(a, ref):
    """|a - ref| / max(1, |ref|): relative for large logs, absolute near 0."""
    return abs(float(a) - float(ref)) / max(1.0, abs(float(ref)))


# moderate arguments where SciPy is accurate to ~1e-15 (v >= 1 keeps iv_ratio_c away from
# SciPy's cancellation)
V_MOD = np.array([1.0, 1.5, 2.5, 7.0])
X_MOD = np.array([0.1, 1.0, 5.0, 20.0])


# ---- values and broadcasting ----------------------------------------------------------------
@pytest.mark.parametrize("name", ALL)
def test_broadcast_matches_scipy_and_scalar_calls(name):
    v = V_MOD[:, None]
    x = X_MOD[None, :]
    got = call(name, v, x)
    shape = (1, 4) if name in UNARY else (4, 4)
    assert isinstance(got, np.ndarray) and got.shape == shape and got.dtype == np.float64
    ref = scipy_ref(name, np.broadcast_to(v, (4, 4)), np.broadcast_to(x, (4, 4)))
    if name in UNARY:
        ref = ref[:1]
    np.testing.assert_allclose(got, ref, rtol=2e-13, atol=0)
    # the array call equals the scalar calls element by element (same kernel, bit for bit)
    for i in range(shape[0]):
        for j in range(shape[1]):
            s = call(name, float(v[i, 0]), float(x[0, j]))
            assert s == got[i, j]


def test_broadcast_three_shapes():
    v = np.array([0.5, 2.0, 10.0]).reshape(3, 1, 1)
    x = np.array([0.1, 1.0, 30.0, 300.0]).reshape(1, 1, 4)
    got = nks.log_iv(v, np.broadcast_to(x[0], (2, 4)))
    assert got.shape == (3, 2, 4)
    ref = scipy_ref("log_iv", np.broadcast_to(v, (3, 2, 4)), np.broadcast_to(x, (3, 2, 4)))
    np.testing.assert_allclose(got, ref, rtol=1e-13)


def test_lists_are_accepted():
    got = nks.log_kv([1.0, 2.0], [[3.0], [4.0]])
    assert got.shape == (2, 2)
    np.testing.assert_allclose(got, scipy_ref("log_kv", [[1.0, 2.0]] * 2, [[3.0, 3.0], [4.0, 4.0]]),
                               rtol=1e-14)


# ---- out= -----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ALL)
def test_out_written_and_returned(name):
    v, x = V_MOD[:, None], X_MOD[None, :]
    expected = call(name, v, x)
    out = np.full(expected.shape, -7.0)
    res = call(name, v, x, out=out)
    assert res is out
    np.testing.assert_array_equal(out, expected)


def test_out_scalar_inputs_zero_dim():
    out = np.full((), -7.0)
    res = nks.log_iv(2.0, 3.0, out=out)
    assert res is out
    assert out[()] == nks.log_iv(2.0, 3.0)


def test_out_other_float_dtype_is_cast():
    x = np.array([0.5, 2.0, 40.0])
    out32 = np.zeros(3, dtype=np.float32)
    nks.log_kv(1.5, x, out=out32)
    np.testing.assert_array_equal(out32, nks.log_kv(1.5, x).astype(np.float32))


def test_out_strided_and_reversed():
    x = np.linspace(0.1, 50.0, 7)
    base = np.full(14, -7.0)
    out = base[::-2]
    res = nks.log_iv(3.0, x, out=out)
    assert res is out
    np.testing.assert_array_equal(out, nks.log_iv(3.0, x))
    np.testing.assert_array_equal(base[::-2][::-1], nks.log_iv(3.0, x)[::-1])
    np.testing.assert_array_equal(base[-2::-2], -7.0)  # untouched interleaved elements


def test_out_aliasing_an_input():
    x = np.linspace(0.1, 50.0, 9)
    expected = nks.log_iv(2.5, x)
    res = nks.log_iv(2.5, x, out=x)
    assert res is x
    np.testing.assert_array_equal(x, expected)
    v = np.linspace(1.0, 5.0, 9)
    expected = nks.iv_ratio(v, 3.0)
    nks.iv_ratio(v, 3.0, out=v)
    np.testing.assert_array_equal(v, expected)


def test_out_wrong_shape_valueerror_and_untouched():
    out = np.full(4, -7.0)
    with pytest.raises(ValueError, match="out"):
        nks.log_iv(1.0, np.ones(3), out=out)
    np.testing.assert_array_equal(out, -7.0)
    out2 = np.full((3, 1), -7.0)  # same size, wrong shape
    with pytest.raises(ValueError):
        nks.log_kv(1.0, np.ones(3), out=out2)
    np.testing.assert_array_equal(out2, -7.0)


@pytest.mark.parametrize("name", ["log_iv", "log_kv", "iv", "ive", "kv", "kve"])
@pytest.mark.parametrize("dt", [np.float64, np.float32])
def test_plain_numpy_call_same_as_general_path(name, dt):
    """special/__init__.py's _plain_numpy_call (two arrays of one shape and float dtype, out= of
    that shape and dtype) gives what the general path gives for the same values (a broadcast
    view, or out= a 1-tuple, takes the general path), and returns out; an out= of the same shape
    but read-only, or another shape, still gets numkern's errors naming out."""
    rng = np.random.default_rng(23)
    v = np.exp(rng.uniform(np.log(0.1), np.log(1e4), 300)).astype(dt)
    x = np.exp(rng.uniform(np.log(1e-3), np.log(1e5), 300)).astype(dt)
    fn = getattr(nks, name)
    general = fn(np.broadcast_to(v, (1, 300)), x)[0]  # (a broadcast view: not the plain call)
    plain = fn(v, x)
    assert plain.dtype == dt
    np.testing.assert_array_equal(plain, general)
    out = np.full(300, -7.0, dtype=dt)
    assert fn(v, x, out=out) is out
    np.testing.assert_array_equal(out, general)
    out_t = np.full(300, -7.0, dtype=dt)
    fn(v, x, out=(out_t,))
    np.testing.assert_array_equal(out_t, general)
    ro = np.full(300, -7.0, dtype=dt)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="^out: "):
        fn(v, x, out=ro)
    with pytest.raises(ValueError, match="^out: "):
        fn(v, x, out=np.full(301, -7.0, dtype=dt))


def test_out_untouched_when_shapes_do_not_broadcast():
    out = np.full(3, -7.0)
    with pytest.raises(ValueError, match="broadcast"):
        nks.log_iv(np.ones(2), np.ones(3), out=out)
    np.testing.assert_array_equal(out, -7.0)


def test_out_untouched_on_bad_input_dtype():
    out = np.full(3, -7.0)
    with pytest.raises(TypeError):
        nks.log_iv(np.array(["a", "b", "c"]), np.ones(3), out=out)
    np.testing.assert_array_equal(out, -7.0)
    with pytest.raises(TypeError):
        nks.kv(1.0, np.array([1, None, 3], dtype=object), out=out)
    np.testing.assert_array_equal(out, -7.0)


def test_out_bad_kind_or_dtype():
    out_int = np.full(3, -7, dtype=np.int64)
    with pytest.raises(TypeError, match="out"):
        nks.log_iv(1.0, np.ones(3), out=out_int)
    np.testing.assert_array_equal(out_int, -7)
    with pytest.raises(TypeError, match="out"):
        nks.log_iv(1.0, np.ones(3), out=[0.0, 0.0, 0.0])
    ro = np.full(3, -7.0)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        nks.log_iv(1.0, np.ones(3), out=ro)
    np.testing.assert_array_equal(ro, -7.0)


class _FakeCupyArray:
    """Looks like a CuPy array to numkern._backend.array_kind (module cupy.*, with a
    __cuda_array_interface__), so the out=-only rule is tested without CuPy or a GPU."""

    __module__ = "cupy._core.core"
    shape = (3,)
    dtype = np.dtype(np.float64)

    __cuda_array_interface__ = {"shape": (3,), "typestr": "<f8", "data": (0, False), "version": 3}


@pytest.mark.parametrize("name", ["log_iv", "kv", "i0"])
def test_out_only_cupy_argument_typeerror(name):
    with pytest.raises(TypeError, match="out: a CuPy out= needs CuPy inputs"):
        call(name, np.ones(3), np.ones(3), out=_FakeCupyArray())


@pytest.mark.parametrize("name", ["log_iv", "kv", "i0"])
def test_out_only_torch_argument_typeerror(name):
    torch = pytest.importorskip("torch")
    out = torch.full((3,), -7.0, dtype=torch.float64)
    with pytest.raises(TypeError, match="out: a torch tensor out= needs torch tensor inputs"):
        call(name, np.ones(3), np.ones(3), out=out)
    assert (out == -7.0).all()


# ---- the native entry points check their arguments again (csrc/python/special.cpp) ----------
def test_native_binding_checks_name_the_argument():
    import numkern._core as core

    f = core.special.log_iv
    ok, out = np.ones(3), np.full(3, -7.0)
    with pytest.raises(TypeError, match="x: expected dtype float64, got float32"):
        f(ok, np.ones(3, np.float32), out)
    with pytest.raises(ValueError, match="v: shape differs from out"):
        f(np.ones(4), ok, out)
    with pytest.raises(TypeError, match="out: dtype must be float32 or float64"):
        f(ok, ok, np.zeros(3, np.int64))
    ro = np.full(3, -7.0)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="out: array is read-only"):
        f(ok, ok, ro)
    with pytest.raises(TypeError, match="z: expected a numpy array or a CUDA array"):
        core.special.iv(ok, [1.0, 2.0, 3.0], out)
    with pytest.raises(TypeError, match="order: expected dtype float64"):
        core.special.i0(np.zeros(3, np.int64), ok, out)
    np.testing.assert_array_equal(out, -7.0)
    f(ok, ok, out)  # and a correct call writes
    np.testing.assert_array_equal(out, nks.log_iv(ok, ok))


# ---- dtypes ---------------------------------------------------------------------------------
def test_python_scalars_give_numpy_float64_scalar():
    r = nks.log_iv(1, 2)
    assert type(r) is np.float64
    assert rel_err(r, math.log(sc.iv(1, 2))) < 1e-15
    for name in ALL:
        r = call(name, 2, 3.0)
        assert type(r) is np.float64, name
    r32 = nks.log_kv(np.float32(1.5), np.float32(2.0))
    assert type(r32) is np.float32


@pytest.mark.parametrize("idt", [np.int8, np.int16, np.int32, np.int64, np.uint8, np.bool_])
def test_integers_and_bool_promote_to_float64(idt):
    x = np.array([1, 2, 3], dtype=idt) if idt is not np.bool_ else np.array([True, False, True])
    got = nks.log_iv(2, x)
    assert got.dtype == np.float64
    np.testing.assert_array_equal(got, nks.log_iv(2.0, x.astype(np.float64)))
    assert nks.i1e(x).dtype == np.float64


def test_float16_computed_in_float32():
    x16 = np.array([0.5, 2.0, 7.5, 60.0], dtype=np.float16)
    got = nks.log_iv(np.float16(1.5), x16)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, nks.log_iv(np.float32(1.5), x16.astype(np.float32)))
    # the fixed-order drop-ins follow SciPy's loops, which compute float16 in float64
    import scipy.special as sc
    assert nks.k0(x16).dtype == sc.k0(x16).dtype


def test_float32_stays_float32_and_is_rounded_double():
    x = np.array([1e-30, 0.3, 4.0, 90.0, 3e4], dtype=np.float32)
    for name in ALL:
        got = call(name, np.float32(2.5), x)
        assert got.dtype == np.float32, name
        with np.errstate(over="ignore"):  # doubles beyond float32 range round to inf
            ref = call(name, 2.5, x.astype(np.float64)).astype(np.float32)
        # computed through double and rounded once: within one float32 ulp of the double result
        with np.errstate(invalid="ignore"):
            ok = (got == ref) | (np.isnan(got) & np.isnan(ref)) | \
                (np.abs(got - ref) <= np.spacing(np.abs(ref)))
        assert ok.all(), (name, got, ref)


def test_weak_python_scalars_and_mixed_dtypes():
    x32 = np.array([1.0, 2.0], dtype=np.float32)
    assert nks.log_iv(1.5, x32).dtype == np.float32      # Python float is weak
    assert nks.log_iv(2, x32).dtype == np.float32        # Python int is weak
    assert nks.log_iv(np.float64(1.5), x32).dtype == np.float64
    assert nks.log_iv(np.array([1.5]), x32).dtype == np.float64
    assert nks.log_iv(np.array([1], dtype=np.int64), x32).dtype == np.float64
    assert nks.log_iv(np.array([1], dtype=np.int8), x32).dtype == np.float64


def test_non_native_byte_order_and_longdouble():
    x = np.array([0.5, 3.0, 40.0])
    big = x.astype(">f8")
    np.testing.assert_array_equal(nks.log_kv(2.0, big), nks.log_kv(2.0, x))
    ld = x.astype(np.longdouble)
    got = nks.log_kv(2.0, ld)
    assert got.dtype == np.float64
    np.testing.assert_array_equal(got, nks.log_kv(2.0, x))


# ---- special values -------------------------------------------------------------------------
def test_log_special_values():
    inf, nan = np.inf, np.nan
    assert nks.log_iv(0.0, 0.0) == 0.0
    for v in (1e-3, 0.5, 1.0, 3.0, 1e7):
        assert nks.log_iv(v, 0.0) == -inf
    for v in (0.0, 1e-3, 0.5, 3.0, 1e7, -2.5):
        assert nks.log_kv(v, 0.0) == inf
    for v in (0.0, 0.5, 3.0, 1e7):
        assert nks.log_iv(v, inf) == inf
        assert nks.log_kv(v, inf) == -inf
    assert nks.iv(0.0, 0.0) == 1.0 and nks.iv(2.0, 0.0) == 0.0
    assert nks.kv(1.0, 0.0) == inf and nks.kve(0.0, 0.0) == inf
    assert nks.iv_ratio(3.0, 0.0) == 0.0 and nks.iv_ratio_c(3.0, 0.0) == 1.0
    assert nks.iv_ratio(3.0, inf) == 1.0 and nks.iv_ratio_c(3.0, inf) == 0.0
    assert nks.i0(0.0) == 1.0 and nks.i1(0.0) == 0.0 and nks.k0(0.0) == inf


@pytest.mark.parametrize("v", [0.0, 0.5, 1.0, 2.0, 7.5])
def test_ive_at_zero_equals_iv_at_zero(v):
    # e^{-|0|} = 1, so ive(v, 0) = iv(v, 0): 1 for v = 0 and 0 for v > 0 (as SciPy)
    assert nks.ive(v, 0.0) == nks.iv(v, 0.0) == sc.ive(v, 0.0)


def test_ive_at_zero_negative_order():
    assert nks.iv(-0.5, 0.0) == np.inf
    assert nks.ive(-0.5, 0.0) == np.inf  # I_{-1/2}(0) e^0 = inf (SciPy returns NaN here)
    assert nks.ive(-2.0, 0.0) == 0.0     # I_{-2} = I_2


def test_i1e_at_zero():
    assert nks.i1e(0.0) == 0.0 and nks.i0e(0.0) == 1.0
    assert nks.i1e(np.float32(0.0)) == 0.0


@pytest.mark.parametrize("name", ALL)
def test_nan_in_nan_out(name):
    nan = np.nan
    pairs = [(1.5, nan), (0.0, nan)] if name in UNARY else \
        [(nan, 1.0), (1.5, nan), (nan, nan), (nan, 0.0), (nan, np.inf), (np.inf, nan)]
    for v, x in pairs:
        assert np.isnan(call(name, v, x)), (name, v, x)
    assert np.isnan(call(name, 1.5, np.float32(nan)))
    assert np.isnan(call(name, np.float32(1.5), np.array([nan], np.float32))).all()


def test_limits_at_infinity_of_scaled_drop_ins():
    # I_v(x) e^{-x} ~ 1/sqrt(2 pi x) -> 0 and K_v(x) e^{x} ~ sqrt(pi/(2x)) -> 0
    for v in (0.0, 1.0, 2.5):
        assert nks.iv(v, np.inf) == np.inf
        assert nks.ive(v, np.inf) == 0.0
        assert nks.kv(v, np.inf) == 0.0
        assert nks.kve(v, np.inf) == 0.0
    assert nks.i0e(np.inf) == 0.0 and nks.k1e(np.inf) == 0.0


# ---- negative order -------------------------------------------------------------------------
def test_k_negative_order_is_symmetric():
    x = np.array([1e-5, 0.3, 2.0, 50.0, 1e4])
    for v in (0.25, 1.0, 2.5, 30.0, 1e4):
        np.testing.assert_array_equal(nks.log_kv(-v, x), nks.log_kv(v, x))
        np.testing.assert_array_equal(nks.kv(-v, x), nks.kv(v, x))
        np.testing.assert_array_equal(nks.kve(-v, x), nks.kve(v, x))


NEG_ORDER_POINTS = [(v, x) for v in (0.3, 0.5, 1.7, 2.5, 3.2, 7.5, 25.3)
                    for x in (0.05, 0.5, 3.0, 10.0, 40.0)]


def test_i_negative_order_against_mpmath(mp):
    for v, x in NEG_ORDER_POINTS:
        ref = mp.besseli(-v, x)
        # the reflection formula itself, in mpmath, as a cross-check of the reference
        refl = mp.besseli(v, x) + 2 / mp.pi * mp.sin(mp.pi * v) * mp.besselk(v, x)
        assert abs(ref - refl) <= mp.mpf(10) ** -30 * abs(ref)
        got = nks.iv(-v, x)
        assert abs(got - float(ref)) <= 1e-15 * abs(float(ref)), (v, x, got, ref)
        lg = nks.log_iv(-v, x)
        if ref < 0:
            assert np.isnan(lg), (v, x, lg)
        else:
            assert rel_err(lg, mp.log(ref)) < 1e-15, (v, x, lg, ref)


def test_log_iv_negative_order_has_nan_where_negative():
    # I_{-3/2}(x) = sqrt(2/(pi x)) (sinh x - cosh x / x) < 0 for x < 1.1997 (tanh x = 1/x... root)
    assert np.isnan(nks.log_iv(-1.5, 0.5))
    assert np.isfinite(nks.log_iv(-1.5, 3.0))
    x = 3.0
    ref = math.log(math.sqrt(2 / (math.pi * x)) * (math.sinh(x) - math.cosh(x) / x))
    assert rel_err(nks.log_iv(-1.5, x), ref) < 1e-15


def test_negative_integer_order():
    x = np.array([0.1, 2.0, 30.0, 700.0])
    for n in (1, 2, 3, 10):
        np.testing.assert_array_equal(nks.log_iv(-n, x), nks.log_iv(n, x))
        np.testing.assert_array_equal(nks.iv(-n, x), nks.iv(n, x))


# ---- negative argument ----------------------------------------------------------------------
def test_negative_argument():
    x = np.array([0.1, 2.0, 30.0, 900.0])
    for v in (0.0, 0.5, 1.0, 2.5, 7.0):
        assert np.isnan(nks.log_kv(v, -x)).all()
        assert np.isnan(nks.kv(v, -x)).all() and np.isnan(nks.kve(v, -x)).all()
    for n in (0, 1, 2, 5):
        np.testing.assert_array_equal(nks.log_iv(n, -x), nks.log_iv(n, x))
        np.testing.assert_array_equal(nks.iv(n, -x), (-1) ** n * nks.iv(n, x))
        np.testing.assert_array_equal(nks.ive(n, -x), (-1) ** n * nks.ive(n, x))
    for v in (0.5, 1.5, 2.25):
        assert np.isnan(nks.log_iv(v, -x)).all()
        assert np.isnan(nks.iv(v, -x)).all()
    np.testing.assert_array_equal(nks.i0(-x), nks.i0(x))
    np.testing.assert_array_equal(nks.i1(-x), -nks.i1(x))
    np.testing.assert_array_equal(nks.i1e(-x), -nks.i1e(x))
    assert np.isnan(nks.k0(-x)).all() and np.isnan(nks.k1e(-x)).all()
    assert np.isnan(nks.iv_ratio(2.0, -1.0)) and np.isnan(nks.iv_ratio(0.25, 1.0))
    assert rel_err(nks.log_iv(1, -2.0), math.log(sc.iv(1, 2.0))) < 1e-15


def test_drop_ins_match_scipy_on_signs():
    v = np.array([0.0, 1.0, 2.0, 3.0, -1.0, 0.5, 2.5])[:, None]
    x = np.array([-30.0, -2.0, -0.1, 0.1, 2.0, 30.0])[None, :]
    for name in ("iv", "ive", "kv", "kve"):
        got = getattr(nks, name)(v, x)
        ref = getattr(sc, name)(v, x)
        np.testing.assert_allclose(got, ref, rtol=1e-13, atol=0, equal_nan=True, err_msg=name)


# ---- the whole domain -----------------------------------------------------------------------
V_GRID = [0.0, 1e-3, 0.5, 1.0, 10.0, 100.0, 1e4, 1e7]
X_GRID = [1e-300, 1e-10, 1.0, 1e3, 1e10, 1e300]


@pytest.mark.parametrize("name", ["log_iv", "log_kv"])
def test_log_finite_on_extreme_grid(name):
    v = np.array(V_GRID)[:, None]
    x = np.array(X_GRID)[None, :]
    got = getattr(nks, name)(v, x)
    assert got.shape == (8, 6)
    assert np.isfinite(got).all(), got
    f32 = getattr(nks, name)(v.astype(np.float32), np.array([1e-30, 1.0, 1e3, 1e30], np.float32))
    assert np.isfinite(f32).all(), f32


def test_ratios_on_extreme_grid():
    v = np.array([0.5, 0.75, 1.0, 10.0, 100.0, 1e4, 1e7])[:, None]
    x = np.array(X_GRID)[None, :]
    r = nks.iv_ratio(v, x)
    c = nks.iv_ratio_c(v, x)
    assert np.isfinite(r).all() and np.isfinite(c).all()
    assert ((r >= 0) & (r <= 1) & (c >= 0) & (c <= 1)).all()
    # r + c = 1 up to rounding of the larger one
    np.testing.assert_allclose(r + c, 1.0, rtol=0, atol=2.3e-16)
    # small x: R ~ x / (2v); large x: 1 - R ~ (2v - 1) / (2x)
    np.testing.assert_allclose(r[:, 0], 1e-300 / (2 * v[:, 0]), rtol=1e-14)
    np.testing.assert_allclose(c[:, -1], (2 * v[:, 0] - 1) / 2e300, rtol=1e-14, atol=0)


# references at the extremes: mpmath.besseli at 40 digits, log K by quadrature (conftest)
EXTREME_POINTS = [
    (1e7, 1e3), (1e7, 1e-10), (1e4, 1e10), (1e4, 1e3), (100.0, 1e3), (0.5, 1e10),
    (1e-3, 1e-300), (0.0, 1e-300), (10.0, 1e-10), (1e-3, 1e10), (1e4, 1e4), (300.5, 500.0),
    (0.5, 1e-300),
]


@pytest.mark.parametrize("v,x", EXTREME_POINTS)
def test_extreme_points_against_mpmath(mp, mp_log_kv, v, x):
    ref_i = mp.log(mp.besseli(v, x, maxterms=10**6))
    ref_k = mp_log_kv(v, x)
    assert rel_err(nks.log_iv(v, x), ref_i) < 1e-15, (nks.log_iv(v, x), ref_i)
    assert rel_err(nks.log_kv(v, x), ref_k) < 1e-15, (nks.log_kv(v, x), ref_k)


@pytest.mark.parametrize("v", [1e5, 1e7, 1e9])
def test_debye_large_order(mp, v):
    # DLMF 10.41.3-4 with u_1(p) = (3p - 5p^3)/24: the next term is u_2/v^2 < 1e-10, and the
    # logs are > 1e4, so these references are good to ~1e-15 relative.
    for z in (1e-3, 0.1, 0.66, 1.0, 3.0, 100.0):
        x = float(v * z)
        vv = mp.mpf(v)
        zz = mp.mpf(x) / vv  # the reference at exactly the double x that is passed
        p = 1 / mp.sqrt(1 + zz * zz)
        eta = mp.sqrt(1 + zz * zz) + mp.log(zz / (1 + mp.sqrt(1 + zz * zz)))
        u1 = (3 * p - 5 * p**3) / 24
        ref_i = vv * eta - mp.log(2 * mp.pi * vv) / 2 - mp.log(1 + zz * zz) / 4 + mp.log(1 + u1 / vv)
        ref_k = -vv * eta + mp.log(mp.pi / (2 * vv)) / 2 - mp.log(1 + zz * zz) / 4 + mp.log(1 - u1 / vv)
        assert rel_err(nks.log_iv(v, x), ref_i) < 1e-14, (v, z, nks.log_iv(v, x), ref_i)
        assert rel_err(nks.log_kv(v, x), ref_k) < 1e-14, (v, z, nks.log_kv(v, x), ref_k)


@pytest.mark.parametrize("x", [1e10, 1e100, 1e300])
@pytest.mark.parametrize("v", [0.0, 1e-3, 0.5, 1.0, 10.0, 100.0, 1e4])
def test_large_x_asymptotics(v, x):
    # log I_v(x) = x - log(2 pi x)/2 - (4v^2-1)/(8x) + O(v^2/x^2), and
    # log K_v(x) = -x + log(pi/(2x))/2 + (4v^2-1)/(8x) + O(v^2/x^2); the O-terms are < 1e-12 here
    mu = 4 * v * v
    ref_i = x - 0.5 * math.log(2 * math.pi * x) - (mu - 1) / (8 * x)
    ref_k = -x + 0.5 * math.log(math.pi / (2 * x)) + (mu - 1) / (8 * x)
    assert rel_err(nks.log_iv(v, x), ref_i) < 1e-15
    assert rel_err(nks.log_kv(v, x), ref_k) < 1e-15


@pytest.mark.parametrize("x", [1e-300, 1e-200, 1e-10])
@pytest.mark.parametrize("v", [1e-3, 0.5, 1.0, 10.0, 100.0, 1e4, 1e7])
def test_small_x_asymptotics(v, x):
    # I_v(x) = (x/2)^v / Gamma(v+1) (1 + x^2 / (4 (v+1)) + O(x^4))
    ref_i = v * math.log(x / 2) - math.lgamma(v + 1) + math.log1p(x * x / (4 * (v + 1)))
    assert rel_err(nks.log_iv(v, x), ref_i) < 1e-15, (nks.log_iv(v, x), ref_i)
    if v >= 1.0:
        # K_v(x) = Gamma(v)/2 (2/x)^v (1 + O(x^2 log x)) for v >= 1
        ref_k = math.lgamma(v) - math.log(2) + v * math.log(2 / x)
        assert rel_err(nks.log_kv(v, x), ref_k) < 1e-15, (nks.log_kv(v, x), ref_k)
    if v == 0.5:  # K_{1/2}(x) = sqrt(pi/(2x)) e^{-x}, exactly
        assert rel_err(nks.log_kv(v, x), 0.5 * math.log(math.pi / (2 * x)) - x) < 1e-15


def test_k0_small_x_logarithmic():
    # K_0(x) = -log(x/2) - gamma + O(x^2 log x)
    for x in (1e-300, 1e-100, 1e-10):
        ref = math.log(-math.log(x / 2) - 0.5772156649015329)
        assert rel_err(nks.log_kv(0.0, x), ref) < 1e-15
        assert nks.log_iv(0.0, x) == 0.0 or abs(nks.log_iv(0.0, x)) < 1e-19


# ---- bad input ------------------------------------------------------------------------------
@pytest.mark.parametrize("name", BINARY)
def test_strings_and_objects_typeerror_naming_argument(name):
    f = getattr(nks, name)
    second = "z" if name in ("iv", "ive", "kv", "kve") else "x"
    bads = ["abc", np.array(["1.0", "2.0"]), np.array([1.0, None], dtype=object),
            np.array([1.0, 2.0], dtype=object), None, {"a": 1},
            np.array(["2020-01-01"], dtype="datetime64[D]")]
    for bad in bads:
        with pytest.raises(TypeError) as e:
            f(bad, 1.0)
        assert str(e.value).startswith("v:") or " v" in str(e.value) or "'v'" in str(e.value), str(e.value)
        with pytest.raises(TypeError) as e:
            f(1.0, bad)
        assert second in str(e.value), str(e.value)


@pytest.mark.parametrize("name", UNARY)
def test_unary_bad_input_typeerror(name):
    with pytest.raises(TypeError, match="x"):
        getattr(nks, name)("abc")
    with pytest.raises(TypeError, match="x"):
        getattr(nks, name)(np.array([1.0], dtype=object))


def test_complex_rejected_by_log_functions():
    for name in ("log_iv", "log_kv", "iv_ratio", "iv_ratio_c"):
        with pytest.raises(TypeError, match="x"):
            getattr(nks, name)(1.0, np.array([1 + 1j]))
        with pytest.raises(TypeError, match="x"):
            getattr(nks, name)(1.0, 2j)


@pytest.mark.parametrize("name", BINARY)
def test_shapes_that_do_not_broadcast(name):
    with pytest.raises(ValueError, match="broadcast"):
        call(name, np.ones(2), np.ones(3))
    with pytest.raises(ValueError, match="broadcast"):
        call(name, np.ones((2, 3)), np.ones((3, 2)))


@pytest.mark.parametrize("name", UNARY)
def test_unary_out_shape_mismatch(name):
    out = np.full(4, -7.0)
    with pytest.raises(ValueError, match="out"):
        getattr(nks, name)(np.ones(3), out=out)
    np.testing.assert_array_equal(out, -7.0)


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("dt", [np.float32, np.float64])
def test_empty_arrays(name, dt):
    got = call(name, np.ones(3, dtype=dt), np.empty((0, 3), dtype=dt))
    assert isinstance(got, np.ndarray)
    assert got.shape == (0, 3) and got.dtype == dt
    got = call(name, 2.0, np.empty(0, dtype=dt))
    assert got.shape == (0,) and got.dtype == dt
    out = np.empty((0, 3), dtype=dt)
    assert call(name, np.ones(3, dtype=dt), np.empty((0, 3), dtype=dt), out=out) is out


def _layouts(rng):
    """(view, contiguous copy) pairs: reversed, strided, transposed, broadcast, unaligned..."""
    a = rng.uniform(0.01, 60.0, size=40)
    m = rng.uniform(0.01, 60.0, size=(6, 8))
    c3 = rng.uniform(0.01, 60.0, size=(4, 5, 6))
    raw = np.zeros(8 * 20 + 1, dtype=np.uint8)
    unaligned = raw[1:].view(np.float64)
    unaligned[:] = np.linspace(0.1, 30.0, 20)
    assert not unaligned.flags.aligned
    return [
        a[::-2], a[::3], a[::-1], m.T, m[::-2, ::-3], np.asfortranarray(m),
        np.broadcast_to(a[:8], (5, 8)), np.broadcast_to(m[:, :1], (6, 8)),
        c3[::-1, ::2, ::-3].transpose(2, 0, 1), unaligned,
    ]


@pytest.mark.parametrize("name", ALL)
def test_noncontiguous_views_equal_contiguous(name):
    rng = np.random.default_rng(7)
    for view in _layouts(rng):
        contiguous = np.ascontiguousarray(view)
        np.testing.assert_array_equal(call(name, 2.5, view), call(name, 2.5, contiguous))
        if name in BINARY:
            vs = view * 0.1 + 0.5
            np.testing.assert_array_equal(call(name, vs, view), call(name, np.ascontiguousarray(vs),
                                                                      contiguous))
    # both operands broadcast with stride 0 along different axes
    v = np.broadcast_to(np.array([0.5, 3.0, 40.0])[:, None], (3, 4))
    x = np.broadcast_to(np.array([0.1, 1.0, 10.0, 100.0]), (3, 4))
    if name in BINARY:
        np.testing.assert_array_equal(call(name, v, x), call(name, v.copy(), x.copy()))


NASTY_SCRIPT = textwrap.dedent(r"""
    import json, sys
    import numpy as np
    import numkern
    from numkern import special as s
    from numkern import _core

    calls = {
        "ndim40": lambda: s.log_iv(np.ones((1,) * 40), 1.0),
        "ndim33_out": lambda: s.log_iv(1.0, np.ones((1,) * 33), out=np.empty((1,) * 33)),
        "structured": lambda: s.log_iv(np.zeros(3, dtype=[("a", "f8")]), 1.0),
        "bytes": lambda: s.log_kv(b"12", 1.0),
        "ragged": lambda: s.log_iv([1.0, [2.0, 3.0]], 1.0),
        "core_shape": lambda: _core.special.log_iv(np.ones(3), np.ones(4), np.empty(3)),
        "core_dtype": lambda: _core.special.log_iv(np.ones(3, np.float32), np.ones(3), np.empty(3)),
        "core_out_int": lambda: _core.special.log_iv(np.ones(3), np.ones(3), np.empty(3, np.int32)),
        "core_ndim": lambda: _core.special.log_iv(np.ones((1,) * 40), np.ones((1,) * 40),
                                                   np.empty((1,) * 40)),
        "core_readonly": lambda: _core.special.log_iv(np.ones(3), np.ones(3),
                                                       np.broadcast_to(np.empty(1), (3,))),
        "core_not_array": lambda: _core.special.log_iv("a", 1, None),
        "huge_v": lambda: s.log_iv(np.array([1e308, -1e308, 5e-324]), np.array([1e308, 5e-324, 1e308])),
        "huge_ratio": lambda: s.iv_ratio(np.array([1e308, 0.5, 1e300]), np.array([5e-324, 1e308, 1e-300])),
        "inf_everywhere": lambda: [getattr(s, n)(np.array([np.inf, -np.inf, np.nan, 0.0])[:, None],
                                                  np.array([np.inf, -np.inf, np.nan, 0.0, -0.0]))
                                   for n in ("log_iv", "log_kv", "iv", "ive", "kv", "kve",
                                             "iv_ratio", "iv_ratio_c")],
        "threads0": lambda: numkern.set_num_threads(0),
        "threads_neg": lambda: numkern.set_num_threads(-5),
        "threads_huge": lambda: numkern.set_num_threads(2**40),
        "threads_float": lambda: numkern.set_num_threads(2.0),
    }
    result = {}
    for name, fn in calls.items():
        try:
            fn()
            result[name] = "ok"
        except Exception as e:  # noqa: BLE001 - the point is that nothing escapes as a crash
            result[name] = type(e).__name__
    print(json.dumps(result))
""")


def test_nasty_calls_do_not_crash_interpreter(tmp_path):
    script = tmp_path / "nasty.py"
    script.write_text(NASTY_SCRIPT)
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert proc.returncode in (0, 1), (proc.returncode, proc.stderr[-2000:])
    assert proc.returncode == 0, proc.stderr[-2000:]
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    expected = {
        "ndim40": "ValueError", "ndim33_out": "ValueError", "structured": "TypeError",
        "bytes": "TypeError", "core_shape": "ValueError", "core_dtype": "TypeError",
        "core_out_int": "TypeError", "core_ndim": "ValueError", "core_readonly": "ValueError",
        "core_not_array": "TypeError", "huge_v": "ok", "huge_ratio": "ok", "inf_everywhere": "ok",
        "threads0": "ValueError", "threads_neg": "ValueError", "threads_huge": "TypeError",
        "threads_float": "TypeError",
    }
    wrong = {k: (res[k], want) for k, want in expected.items() if res[k] != want}
    assert not wrong, wrong
    assert res["ragged"] in ("ValueError", "TypeError")


# ---- complex delegation ---------------------------------------------------------------------
def test_complex_delegated_to_scipy():
    z = np.array([0.5 + 0.5j, 2.0 - 3.0j, -4.0 + 1.0j, 30.0 + 0.0j])
    v = np.array([0.0, 1.5, 3.0, -2.5])
    for name in ("iv", "ive", "kv", "kve"):
        np.testing.assert_array_equal(getattr(nks, name)(v, z), getattr(sc, name)(v, z))
        np.testing.assert_array_equal(getattr(nks, name)(1.5, 2 + 1j), getattr(sc, name)(1.5, 2 + 1j))
    out = np.zeros(4, dtype=complex)
    assert nks.kv(v, z, out=out) is out
    np.testing.assert_array_equal(out, sc.kv(v, z))


def test_complex_fixed_order_follows_scipy():
    # SciPy's i0 ... k1e have no complex loops: the delegated call raises SciPy's TypeError
    for name in UNARY:
        with pytest.raises(TypeError):
            sc_res = getattr(sc, name)(np.array([1 + 1j]))  # noqa: F841
        with pytest.raises(TypeError):
            getattr(nks, name)(np.array([1 + 1j]))


# ---- module metadata ------------------------------------------------------------------------
def test_version_and_show_config(capsys):
    assert isinstance(numkern.__version__, str) and numkern.__version__[0].isdigit()
    cfg = numkern.show_config()
    printed = capsys.readouterr().out
    for key in ("compiler", "openmp", "cuda_built", "num_threads"):
        assert key in cfg, key
        assert key in printed
    assert isinstance(cfg["openmp"], bool) and isinstance(cfg["cuda_built"], bool)
    assert cfg["num_threads"] == numkern.get_num_threads() >= 1
    assert isinstance(cfg["compiler"], str) and cfg["compiler"]


def test_every_public_function_has_docstring():
    assert sorted(nks.__all__) == sorted(ALL)
    for name in nks.__all__:
        doc = getattr(nks, name).__doc__
        assert doc and len(doc) > 30, name


def test_import_and_numpy_calls_do_not_import_torch_or_cupy():
    code = ("import sys, numpy as np, numkern; from numkern import special as s; "
            "s.log_iv(np.ones(3), 2.0); s.kv(1.5, 2.0, out=np.empty(())); numkern.show_config(file=sys.stderr); "
            "print(sorted(m for m in ('torch', 'cupy') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "[]"


def test_out_wider_dtype_and_float32_inputs():
    x32 = np.array([0.5, 3.0, 40.0], dtype=np.float32)
    out = np.full(3, -7.0)
    assert nks.log_iv(np.float32(2.0), x32, out=out) is out
    np.testing.assert_array_equal(out, nks.log_iv(np.float32(2.0), x32).astype(np.float64))


try:
    from hypothesis import given
    from hypothesis import strategies as st
    from hypothesis.extra.numpy import arrays, mutually_broadcastable_shapes
except ImportError:  # pragma: no cover
    given = None

if given is not None:
    @given(shapes=mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=3, max_side=4),
           name=st.sampled_from(BINARY), data=st.data())
    def test_broadcasting_property(shapes, name, data):
        finite = st.floats(0.5, 1e4, allow_nan=False, allow_infinity=False)
        v = data.draw(arrays(np.float64, shapes.input_shapes[0], elements=finite))
        x = data.draw(arrays(np.float64, shapes.input_shapes[1], elements=finite))
        got = call(name, v, x)
        assert np.shape(got) == shapes.result_shape
        vb, xb = np.broadcast_arrays(v, x)
        expected = np.array([call(name, float(a), float(b)) for a, b in zip(vb.ravel(), xb.ravel())])
        np.testing.assert_array_equal(np.ravel(got), expected)
        out = np.full(shapes.result_shape, -7.0)
        assert call(name, v, x, out=out) is out
        np.testing.assert_array_equal(out, got)


# ---- Python ints beyond int64 / float64 --------------------------------------------------------
def test_huge_python_int_is_named():
    # np.float64(10**400) raises OverflowError: an error naming the argument (was OverflowError
    # naming nothing, and for i0 a TypeError about dtype('O'))
    for f, msg in ((lambda: nks.iv(10 ** 400, 1.0), "v"), (lambda: nks.iv(1.0, -10 ** 400), "z"),
                   (lambda: nks.log_iv(1.0, 10 ** 400), "x"), (lambda: nks.i0(10 ** 400), "x"),
                   (lambda: nks.k1e(-(10 ** 309)), "x")):
        with pytest.raises(ValueError, match=rf"^{msg}: integer too large to convert to float64"):
            f()
    torch = pytest.importorskip("torch")
    with pytest.raises(ValueError, match=r"^v: integer too large"):
        nks.iv(10 ** 400, torch.ones(2))


def test_python_int_beyond_int64_is_its_float():
    # representable as float64: the float it stands for (numpy made an object array of it)
    assert nks.i0(10 ** 30) == nks.i0(1e30) == np.inf
    assert nks.k0(10 ** 30) == 0.0 and nks.i0e(10 ** 30) == nks.i0e(1e30)
    assert nks.iv(10 ** 30, 1.0) == nks.iv(1e30, 1.0)
    assert nks.log_iv(2 ** 63, 1.0) == nks.log_iv(float(2 ** 63), 1.0)
    big = 2 ** 1024 - 2 ** 971  # the largest int below the overflow threshold: DBL_MAX
    assert nks.log_kv(0.5, big) == nks.log_kv(0.5, np.finfo(float).max)


def test_torch_with_dask_is_a_typeerror():
    # the dask check comes first: special_blockwise's TypeError instead of computing the dask
    # array eagerly into a torch tensor
    torch = pytest.importorskip("torch")
    da = pytest.importorskip("dask.array")
    d = da.ones(3, chunks=2)
    t = torch.ones(3)
    for args in ((t, d), (d, t)):
        with pytest.raises(TypeError, match="a torch array cannot be combined with dask arrays"):
            nks.iv(*args)
        with pytest.raises(TypeError, match="a torch array cannot be combined with dask arrays"):
            nks.log_kv(*args)
