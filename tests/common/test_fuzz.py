"""Property-based fuzzing of every public function and class of numkern.special, vmf, kde, quant
and hessian (issue #8).

Every call gets arbitrary dtypes (bool, ints, float16/32/64, complex, object, strings,
datetimes), shapes (0-d, empty, broadcasting mismatches), layouts (non-contiguous, negative and
huge strides, zero strides, Fortran order, unaligned), values (NaN, +-inf, +-0, subnormals,
+-1e308) and argument combinations.  It must either return a result with the documented
semantics (shape, dtype, finiteness, and the value against SciPy / a direct formula where that is
cheap) or raise TypeError / ValueError whose message names an argument.  Anything else (another
exception type, a crash, a wrong value) fails.

Budget: NUMKERN_FUZZ_EXAMPLES examples per entry (default 40 in CI; 1000+ for a release run),
derandomized and without the example database so CI runs are reproducible.  test_coverage fails
when a public name has no fuzz test here.
"""
from __future__ import annotations

import math
import os
import re
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import numkern
from numkern import special as nks

EXAMPLES = int(os.environ.get("NUMKERN_FUZZ_EXAMPLES", "40"))


def fuzz_settings(scale=1.0):
    return settings(max_examples=max(5, int(EXAMPLES * scale)), deadline=None, derandomize=True,
                    database=None, print_blob=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                           HealthCheck.data_too_large])


# ---- coverage registry --------------------------------------------------------------------------
COVERED: dict[str, set[str]] = {}


def covers(module, *names):
    COVERED.setdefault(module, set()).update(names)

    def deco(fn):
        return fn
    return deco


# ---- input strategies ---------------------------------------------------------------------------
SPECIALS = [math.nan, math.inf, -math.inf, 0.0, -0.0, 5e-324, -5e-324, 2.2250738585072014e-308,
            1e-308, 1e-300, 1e308, -1e308, 1.7976931348623157e308, 1.0, -1.0, 0.5, 2.0, 3.0, 7.5,
            100.0, 1e4, -2.5]
NUMERIC_DTYPES = ["bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
                  "float16", "float32", "float64"]
COMPLEX_DTYPES = ["complex64", "complex128"]
ODD_DTYPES = ["object", "U4", "S4", "datetime64[s]", "timedelta64[s]"]
ALL_DTYPES = NUMERIC_DTYPES + COMPLEX_DTYPES + ODD_DTYPES

floats_any = st.one_of(st.sampled_from(SPECIALS), st.floats(-1e3, 1e3),
                       st.floats(allow_nan=True, allow_infinity=True, allow_subnormal=True))
floats_cheap = st.one_of(st.sampled_from([0.0, -0.0, 0.5, 1.0, 2.0, 3.0, 7.5, -2.5, -1.0, math.nan]),
                         st.floats(-60, 60), st.floats(1e-3, 300.0))


def _fill(draw, dtype, n, values):
    dt = np.dtype(dtype)
    if dt.kind == "b":
        return np.array(draw(st.lists(st.booleans(), min_size=n, max_size=n)), dtype=dt)
    if dt.kind in "iu":
        info = np.iinfo(dt)
        ints = st.one_of(st.integers(int(info.min), int(info.max)), st.integers(-3, 40).filter(
            lambda v: info.min <= v <= info.max))
        return np.array(draw(st.lists(ints, min_size=n, max_size=n)), dtype=dt)
    if dt.kind in "fc":
        re_ = np.array(draw(st.lists(values, min_size=n, max_size=n)), dtype=np.float64)
        with np.errstate(all="ignore"):
            if dt.kind == "c":
                im = np.array(draw(st.lists(values, min_size=n, max_size=n)), dtype=np.float64)
                return (re_ + 1j * im).astype(dt)
            return re_.astype(dt)
    if dt.kind == "O":
        objs = st.one_of(values, st.integers(-5, 5), st.none(), st.text(max_size=2))
        a = np.empty(n, dtype=object)
        a[:] = draw(st.lists(objs, min_size=n, max_size=n))
        return a
    if dt.kind in "US":
        return np.array(draw(st.lists(st.text("ab1.e", max_size=4), min_size=n, max_size=n)), dtype=dt)
    return np.arange(n).astype(dt)  # datetime / timedelta


LAYOUTS = ["c", "f", "neg", "huge", "zero", "unaligned", "T"]


def _layout(a, layout):
    """The same values as `a`, laid out in memory according to `layout`."""
    if a.ndim == 0 or a.size == 0:
        return a
    if layout == "f":
        return np.asfortranarray(a)
    if layout == "T":
        return np.ascontiguousarray(a.T).T
    if layout in ("neg", "huge"):
        step = -1 if layout == "neg" else 1000
        big = np.empty(a.shape[:-1] + (a.shape[-1] * abs(step),), dtype=a.dtype)
        view = big[..., ::step] if step > 0 else big[..., ::-1]
        view[...] = a if step > 0 else a
        return view
    if layout == "zero":
        first = a[(slice(None),) * (a.ndim - 1) + (slice(0, 1),)]
        return np.broadcast_to(first, a.shape)  # zero stride, read-only; values change (fine)
    if layout == "unaligned" and a.dtype.kind not in "OUS" and a.dtype.itemsize > 1:
        buf = np.zeros(a.nbytes + 1, dtype=np.uint8)
        u = np.ndarray(a.shape, dtype=a.dtype, buffer=buf, offset=1)
        u[...] = a
        return u
    return a


@st.composite
def arrays(draw, dtypes=ALL_DTYPES, max_dims=3, max_side=4, values=floats_any, layouts=LAYOUTS,
           shape=None):
    dtype = draw(st.sampled_from(dtypes))
    if shape is None:
        shape = tuple(draw(st.lists(st.integers(0, max_side), max_size=max_dims)))
    a = _fill(draw, dtype, int(np.prod(shape, dtype=np.int64)), values).reshape(shape)
    return _layout(a, draw(st.sampled_from(layouts)))


def scalars(values=floats_any):
    return st.one_of(values, st.integers(-3, 50), st.booleans(),
                     values.map(np.float32), values.map(np.float64), st.integers(0, 9).map(np.int16))


def any_input(dtypes=ALL_DTYPES, values=floats_any, **kw):
    junk = st.sampled_from([None, "abc", "1.5", [1.0, "x"], [[1.0], [2.0, 3.0]], {"a": 1}, object(),
                            b"\x00\x01", 1 + 2j])
    return st.one_of(arrays(dtypes, values=values, **kw), scalars(values),
                     st.lists(values, max_size=4), junk)


# ---- checking helpers ---------------------------------------------------------------------------
def names_argument(exc, names):
    msg = str(exc)
    return any(re.search(rf"(?<![A-Za-z0-9_]){re.escape(n)}(?![A-Za-z0-9_])", msg) for n in names)


def call(fn, *args, names, expect_error=None, **kwargs):
    """Run fn; return (True, result) or (False, exception).  Exceptions other than
    TypeError/ValueError fail the test, as do messages that name no argument.  expect_error:
    None (either outcome allowed), True (must raise) or False (must succeed)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            res = fn(*args, **kwargs)
    except (TypeError, ValueError) as e:
        assert names_argument(e, names), f"{type(e).__name__} does not name any of {names}: {e}"
        assert expect_error is not False, f"unexpected {type(e).__name__}: {e}"
        return False, e
    assert expect_error is not True, f"expected TypeError/ValueError, got a result {res!r:.300}"
    return True, res


def snapshot(a):
    """The bytes of an array's elements (its values for object arrays)."""
    return a.tobytes() if a.dtype.kind != "O" else list(a.ravel())


def is_weak(a):
    return isinstance(a, (bool, int, float)) and not isinstance(a, np.generic)


def np_dtype_of(a):
    """The numpy dtype numkern sees for an input, or None for a weak Python scalar."""
    if is_weak(a):
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return np.asarray(a).dtype
    except Exception:  # noqa: BLE001 - ragged lists etc.
        return np.dtype(object)


def np_shape_of(a):
    try:
        return np.shape(a)
    except Exception:  # noqa: BLE001
        return None


# ==================================================================================================
# numkern.special
# ==================================================================================================
TWO_ARG = ["log_iv", "log_kv", "iv", "ive", "kv", "kve", "iv_ratio", "iv_ratio_c"]
ONE_ARG = ["i0", "i0e", "i1", "i1e", "k0", "k0e", "k1", "k1e"]
COMPLEX_OK = {"iv", "ive", "kv", "kve"}  # SciPy has no complex loop for i0 ... k1e


def _scipy_ref(name, v, x):
    """float64 reference and the mask of points where it is cheap and reliable."""
    import scipy.special as sc

    with np.errstate(all="ignore"):
        if name in ONE_ARG:
            ref = getattr(sc, name)(x)
            mask = np.abs(x) <= 700
            return ref, mask
        v_ok = (v >= 0) & (v <= 200)
        x_ok = (x >= 1e-3) & (x <= 1e4)
        if name == "log_iv":
            e = sc.ive(v, x)
            return np.log(e) + x, v_ok & x_ok & (e > 1e-290) & (e < 1e290)
        if name == "log_kv":
            e = sc.kve(v, x)
            return np.log(e) - x, (np.abs(v) <= 200) & x_ok & (e > 1e-290) & (e < 1e290)
        if name in ("iv_ratio", "iv_ratio_c"):
            from scipy.special import _ufuncs

            ref = getattr(_ufuncs, "_" + name)(v, x)
            return ref, (v >= 1) & (v <= 200) & x_ok
        ref = getattr(sc, name)(v, x)
        good = np.isfinite(ref) & (np.abs(ref) > 1e-290) & (np.abs(ref) < 1e290)
        if name in ("iv", "ive"):
            return ref, v_ok & (np.abs(x) >= 1e-3) & (np.abs(x) <= 1e4) & good
        return ref, (np.abs(v) <= 200) & x_ok & good


def _expected_special_dtype(name, v, x):
    arrs = [np_dtype_of(a) for a in ((x,) if name in ONE_ARG else (v, x))]
    arrs = [d for d in arrs if d is not None]
    if name in ONE_ARG:
        return np.float32 if arrs and arrs[0] == np.float32 else np.float64
    if not arrs or any(d.kind in "biu" for d in arrs):
        return np.float64
    return np.float32 if all(d.kind == "f" and d.itemsize <= 4 for d in arrs) else np.float64


def check_special(name, v, x, out=None):
    f = getattr(nks, name)
    args = (x,) if name in ONE_ARG else (v, x)
    argnames = ("x",) if name in ONE_ARG else (("v", "z") if name in ("iv", "ive", "kv", "kve") else ("v", "x"))
    dts = [np_dtype_of(a) for a in args]
    shapes = [np_shape_of(a) for a in args]
    bad = [n for n, d in zip(argnames, dts) if d is not None and d.kind not in "biufc"]
    bad += [n for n, d in zip(argnames, dts) if d is not None and d.kind == "c" and name not in COMPLEX_OK]
    if name in COMPLEX_OK and dts[0] is not None and dts[0].kind == "c":
        bad.append("v")  # complex z only: SciPy has no complex-order loop
    if name in COMPLEX_OK and isinstance(args[0], complex):
        bad.append("v")
    if None in shapes:
        bad += [n for n, s in zip(argnames, shapes) if s is None]
    else:
        try:
            bshape = np.broadcast_shapes(*shapes)
        except ValueError:
            bad += list(argnames)
    if out is not None and not bad:
        if not isinstance(out, np.ndarray) or out.shape != bshape or not out.flags.writeable:
            bad.append("out")
        else:
            cplx = any(d is not None and d.kind == "c" for d in dts)
            res_dt = np.complex128 if cplx else _expected_special_dtype(name, v, x)
            if not np.can_cast(res_dt, out.dtype, casting="same_kind"):
                bad.append("out")
    sentinel = None if out is None or not isinstance(out, np.ndarray) else snapshot(out)
    kw = {} if out is None else {"out": out}
    ok, res = call(f, *args, names=bad or list(argnames) + ["out"], expect_error=bool(bad), **kw)
    if not ok:
        if sentinel is not None:  # a call that raises leaves out untouched
            assert snapshot(out) == sentinel, "out was written by a call that raised"
        return
    if out is not None:
        assert res is out
    r = np.asarray(res)
    assert r.shape == bshape, (r.shape, bshape)
    if any(d is not None and d.kind == "c" for d in dts):  # delegated to SciPy
        import scipy.special as sc

        with np.errstate(all="ignore"):
            ref = getattr(sc, name)(*args)
        np.testing.assert_array_equal(r, np.asarray(ref).astype(r.dtype))
        return
    if out is None:
        assert r.dtype == _expected_special_dtype(name, v, x), (r.dtype, dts)
    compute_dt = np.dtype(_expected_special_dtype(name, v, x))
    with np.errstate(all="ignore"):
        ins = [np.broadcast_to(np.asarray(a).astype(compute_dt).astype(np.float64), bshape) for a in args]
    vv, xx = (None, ins[0]) if name in ONE_ARG else ins
    rr = r.astype(np.float64) if r.dtype.kind != "c" else r
    nan_in = np.isnan(xx) if vv is None else (np.isnan(xx) | np.isnan(vv))
    assert np.isnan(rr[nan_in]).all(), f"{name}: NaN in did not give NaN out"
    ref, mask = _scipy_ref(name, vv, xx)
    surprise = np.isnan(rr) & ~nan_in & ~np.isnan(ref)
    if vv is not None:
        # an infinite order is outside every documented domain; KNOWN LIMITATION: orders
        # |v| > ~1e305 give NaN where log I_v / log K_v overflow (should be -inf / +inf)
        surprise &= np.abs(vv) <= 1e300
    vs = vv[surprise][:3] if vv is not None else None
    assert not surprise.any(), f"{name}: NaN where SciPy has a value: v={vs}, x={xx[surprise][:3]}, " \
        f"SciPy {ref[surprise][:3]}"
    if name not in ("log_iv", "log_kv"):
        mask = mask & (np.abs(ref) > 1e-290)  # subnormal results: rounding ties, not errors
    if out is not None and out.dtype != compute_dt:  # rounded into the user's dtype
        with np.errstate(all="ignore"):
            ref = np.asarray(ref).astype(compute_dt).astype(out.dtype).astype(np.float64)
        if out.dtype.kind in "iu":
            return
    if compute_dt == np.float32 or (out is not None and out.dtype.itemsize < 8):
        lim = 1e-5
        if name not in ("log_iv", "log_kv"):
            mask = mask & (np.abs(ref) > 1e-30) & (np.abs(ref) < 1e30)
    else:
        lim = 1e-9
    mask = mask & np.isfinite(ref)
    if name in ("log_iv", "log_kv", "iv_ratio_c"):
        err = np.abs(rr - ref) / np.maximum(1.0, np.abs(ref))
    else:
        err = np.abs(rr - ref) / np.abs(np.where(ref == 0, 1.0, ref))
    bad_pts = mask & ~(err <= lim)
    assert not bad_pts.any(), (f"{name}: v={vv[bad_pts][:3] if vv is not None else None}, "
                               f"x={xx[bad_pts][:3]}: got {rr[bad_pts][:3]}, want {ref[bad_pts][:3]}")


@covers("special", *TWO_ARG)
@pytest.mark.parametrize("name", TWO_ARG)
@fuzz_settings()
@given(data=st.data())
def test_special_two_arg(name, data):
    v = data.draw(st.one_of(arrays(NUMERIC_DTYPES, values=floats_cheap), scalars(floats_cheap),
                            any_input()), label="v")
    x = data.draw(st.one_of(arrays(NUMERIC_DTYPES, values=floats_cheap), scalars(floats_cheap),
                            any_input()), label="x")
    check_special(name, v, x)


@covers("special", *ONE_ARG)
@pytest.mark.parametrize("name", ONE_ARG)
@fuzz_settings()
@given(data=st.data())
def test_special_one_arg(name, data):
    x = data.draw(st.one_of(arrays(NUMERIC_DTYPES, values=floats_cheap), scalars(floats_cheap),
                            any_input()), label="x")
    check_special(name, None, x)


@pytest.mark.parametrize("name", TWO_ARG + ONE_ARG)
@fuzz_settings(0.5)
@given(data=st.data())
def test_special_out(name, data):
    """out= of any dtype/shape/layout: filled correctly, or a named error and out untouched."""
    v = data.draw(st.one_of(arrays(NUMERIC_DTYPES, max_dims=2, values=floats_cheap), scalars(floats_cheap)))
    x = data.draw(st.one_of(arrays(NUMERIC_DTYPES + COMPLEX_DTYPES, max_dims=2, values=floats_cheap),
                            scalars(floats_cheap)))
    shape = data.draw(st.one_of(st.just(None), st.lists(st.integers(0, 4), max_size=2).map(tuple)))
    try:
        bshape = np.broadcast_shapes(np.shape(v), np.shape(x)) if name not in ONE_ARG else np.shape(x)
    except ValueError:
        bshape = ()
    out = data.draw(arrays(NUMERIC_DTYPES + COMPLEX_DTYPES + ["object"],
                           shape=bshape if shape is None else shape, values=floats_cheap,
                           layouts=["c", "neg", "huge", "zero", "unaligned", "f"]))
    if data.draw(st.booleans()) and out.flags.writeable and out.dtype.kind not in "O":
        out[...] = 99 if out.dtype.kind != "b" else True  # a sentinel
    check_special(name, v, x, out)


@pytest.mark.parametrize("name", ["log_iv", "kve", "iv_ratio", "k1e"])
@fuzz_settings(0.5)
@given(data=st.data())
def test_special_torch_matches_numpy(name, data):
    torch = pytest.importorskip("torch")
    tdt = data.draw(st.sampled_from(["float32", "float64", "int32", "bool", "float16"]))
    a = data.draw(arrays([tdt], max_dims=2, values=floats_cheap, layouts=["c"]))
    t = torch.from_numpy(np.array(a, order="C"))  # (ascontiguousarray makes 0-d 1-d)
    if data.draw(st.booleans()) and t.ndim >= 1 and t.shape[-1] > 1:
        t = t.flip(-1)
        a = a[..., ::-1]
    other = data.draw(scalars(floats_cheap))
    f = getattr(nks, name)
    args_t = (t,) if name in ONE_ARG else (other, t)
    ok, res = call(f, *args_t, names=["v", "x", "z"])
    if not ok:
        return
    assert isinstance(res, torch.Tensor) and tuple(res.shape) == a.shape
    want_dt = np.float32 if tdt == "float32" or (tdt == "float16" and name not in ONE_ARG) else np.float64
    # (float16: in float32 by the two-argument functions, in float64 by the fixed-order ones, as
    # SciPy's i0 ... k1e and numkern's numpy path do)
    ref = f(*((a.astype(want_dt),) if name in ONE_ARG else (other, a.astype(want_dt))))
    np.testing.assert_array_equal(res.numpy().astype(np.float64), np.asarray(ref, dtype=np.float64))


# ==================================================================================================
# numkern.vmf
# ==================================================================================================
from numkern import vmf  # noqa: E402

REALS = NUMERIC_DTYPES
vmf_values = st.one_of(st.sampled_from([0.0, 0.5, 1.0, 2.0, 3.0, 1e-300, 1e308, math.nan, math.inf, -1.0,
                                        0.999999, 1 - 2 ** -53, 1e6]), st.floats(0, 50))


@covers("vmf", "log_normalizer", "kappa_mle")
@pytest.mark.parametrize("name", ["log_normalizer", "kappa_mle"])
@fuzz_settings()
@given(data=st.data())
def test_vmf_elementwise(name, data):
    import scipy.special as sc

    a = data.draw(st.one_of(arrays(REALS, values=vmf_values, max_dims=2), scalars(vmf_values), any_input()))
    b = data.draw(st.one_of(arrays(REALS, values=vmf_values, max_dims=2), scalars(vmf_values), any_input()))
    names = ["d", "kappa"] if name == "log_normalizer" else ["rbar", "d"]
    ok, res = call(getattr(vmf, name), a, b, names=names + ["shapes"])
    if not ok:
        return
    r = np.asarray(res, dtype=np.float64)
    A = np.asarray(a, dtype=np.float64)
    B = np.asarray(b, dtype=np.float64)
    assert r.shape == np.broadcast_shapes(A.shape, B.shape)
    assert np.isfinite(A).all() and np.isfinite(B).all(), "non-finite input accepted"
    # log_normalizer may be -inf and kappa_mle +inf where the value overflows (d ~ 1e308);
    # KNOWN LIMITATION: d > ~1e305 (Bessel order d/2 - 1 beyond ~1e305) gives NaN, as numkern.special
    dd = np.broadcast_to(A if name == "log_normalizer" else B, r.shape)
    assert not np.isnan(r[dd < 1e300]).any() and (np.isfinite(r).all() or (d_big := np.abs(A if name == "log_normalizer"
                                                                          else B).max() > 1e250)), r
    d, other = (A, B) if name == "log_normalizer" else (B, A)
    assert (d >= 2).all()
    d, other, r = np.broadcast_arrays(d, other, r)
    if name == "log_normalizer":
        assert (other >= 0).all()
        k = other
        with np.errstate(all="ignore"):
            e = sc.ive(d / 2 - 1, k)
            ref = (d / 2 - 1) * np.log(k) - d / 2 * np.log(2 * np.pi) - np.log(e) - k
        m = (k > 1e-3) & (k < 1e4) & (d < 400) & (e > 1e-290) & np.isfinite(ref)
        tol = 1e-4 if np.asarray(res).dtype == np.float32 else 1e-9
        assert (np.abs(r - ref)[m] <= tol * np.maximum(1, np.abs(ref[m]))).all()
    else:
        assert ((other >= 0) & (other < 1)).all() and (r >= 0).all()
        with np.errstate(all="ignore"):
            back = nks.iv_ratio(d / 2, r)
        m = (other > 1e-3) & (other < 0.999) & (d < 1e4)
        tol = 1e-3 if np.asarray(res).dtype == np.float32 else 1e-10
        assert (np.abs(back - other)[m] <= tol).all()


def _unit_rows(draw, shape, dtype):
    x = draw(arrays([dtype], shape=shape, values=st.floats(-3, 3), layouts=["c", "neg", "f", "huge"]))
    n = np.linalg.norm(x.astype(np.float64), axis=-1, keepdims=True)
    with np.errstate(all="ignore"):
        u = np.where(n > 0, x / np.where(n > 0, n, 1), 0)
    return u.astype(dtype)


@covers("vmf", "mean_resultant_length", "fit")
@fuzz_settings()
@given(data=st.data())
def test_vmf_fit(data):
    mode = data.draw(st.sampled_from(["unit", "junk", "raw"]))
    if mode == "unit":
        shape = data.draw(st.lists(st.integers(0, 4), min_size=1, max_size=3).map(tuple))
        X = _unit_rows(data.draw, shape, data.draw(st.sampled_from(["float32", "float64"])))
    elif mode == "raw":
        X = data.draw(arrays(REALS, values=vmf_values))
    else:
        X = data.draw(any_input())
    weights = data.draw(st.one_of(st.none(), any_input(REALS, values=vmf_values)))
    normalize = data.draw(st.sampled_from([False, True]))
    for fn in (vmf.mean_resultant_length, vmf.fit):
        ok, res = call(fn, X, weights, normalize, names=["X", "weights", "normalize"])
        if not ok:
            continue
        Xa = np.asarray(X, dtype=np.float64)
        assert Xa.ndim >= 2 and Xa.shape[-1] >= 2 and Xa.shape[-2] >= 1 and np.isfinite(Xa).all()
        if fn is vmf.mean_resultant_length:
            r = np.asarray(res)
            assert r.shape == Xa.shape[:-2]
            assert ((r >= 0) & (r <= 1)).all()
            if weights is None:
                u = Xa / np.linalg.norm(Xa, axis=-1, keepdims=True)
                np.testing.assert_allclose(r, np.linalg.norm(u.mean(-2), axis=-1), rtol=1e-5, atol=1e-6)
        else:
            assert res.batch_shape == Xa.shape[:-2]
            k = np.asarray(res.kappa, dtype=np.float64)
            assert (k >= 0).all() and not np.isnan(k).any()
            mu = np.asarray(res.mu, dtype=np.float64)
            np.testing.assert_allclose(np.linalg.norm(mu, axis=-1), 1.0, rtol=1e-5)


@covers("vmf", "VonMisesFisher")
@fuzz_settings()
@given(data=st.data())
def test_vmf_distribution(data):
    d = data.draw(st.integers(1, 5))
    good = data.draw(st.booleans())
    mu = _unit_rows(data.draw, data.draw(st.sampled_from([(d,), (2, d), (1, d)])),
                    data.draw(st.sampled_from(["float32", "float64"]))) if good else data.draw(any_input())
    kappa = data.draw(st.one_of(scalars(vmf_values), arrays(REALS, values=vmf_values, max_dims=1)))
    ok, dist = call(vmf.VonMisesFisher, mu, kappa, names=["mu", "kappa"])
    if not ok:
        return
    k = np.asarray(dist.kappa, dtype=np.float64)  # may overflow to inf in a float32 dist (kappa 1e308)
    assert dist.dim >= 2 and not np.isnan(k).any() and (k >= 0).all()
    X = data.draw(st.one_of(st.builds(lambda n: _unit_rows(data.draw, (n, dist.dim), "float64"),
                                      st.integers(0, 3)), any_input()))
    ok, lp = call(dist.logpdf, X, names=["X"])
    if ok:
        lp = np.asarray(lp, dtype=np.float64)
        assert not np.isnan(lp).any()
        assert (lp < np.inf).all()
    ent = np.asarray(dist.entropy(), dtype=np.float64)
    assert np.isfinite(ent).all() and ent.shape == dist.batch_shape
    m = np.asarray(dist.mean(), dtype=np.float64)
    assert (np.linalg.norm(m, axis=-1) <= 1 + 1e-6).all()
    n = data.draw(st.one_of(st.integers(-2, 5), st.sampled_from([2.0, "3", None, True])))
    seed = data.draw(st.one_of(st.none(), st.integers(-5, 2 ** 70), st.sampled_from([1.5, "s", True])))
    ok, s = call(dist.sample, n, seed, names=["n", "seed"])
    if ok:
        s = np.asarray(s, dtype=np.float64)
        assert s.shape == dist.batch_shape + (int(n), dist.dim)
        assert np.allclose(np.linalg.norm(s, axis=-1), 1.0, atol=1e-4)
    ok, pdf = call(dist.pdf, np.eye(dist.dim)[:1], names=["X"])
    assert ok and np.isfinite(np.asarray(pdf, dtype=np.float64)).all()
    other = data.draw(st.sampled_from(["self", "dim", "junk"]))
    o = dist if other == "self" else (vmf.VonMisesFisher(np.eye(dist.dim + 1)[0], 1.0) if other == "dim" else 3)
    ok, kl = call(dist.kl_divergence, o, names=["other"])
    if ok:
        np.testing.assert_allclose(np.asarray(kl, dtype=np.float64), 0.0, atol=1e-4)


@covers("vmf", "VMFMixture")
@fuzz_settings(0.5)
@given(data=st.data())
def test_vmf_mixture(data):
    args = {
        "n_components": data.draw(st.one_of(st.integers(-1, 3), st.sampled_from([1.5, "2", None, True]))),
        "max_iter": data.draw(st.one_of(st.integers(0, 5), st.sampled_from([2.0, None]))),
        "tol": data.draw(st.one_of(st.sampled_from([1e-6, 0.0, -1.0, math.nan, math.inf, "1", None]))),
        "n_init": data.draw(st.one_of(st.integers(0, 2), st.sampled_from([1.0, None]))),
        "seed": data.draw(st.integers(0, 5)),
    }
    ok, mix = call(vmf.VMFMixture, names=list(args), **args)
    if not ok:
        return
    with pytest.raises(RuntimeError, match="fit"):  # a state error, as sklearn's NotFittedError
        mix.predict(np.eye(3))
    X = data.draw(st.one_of(st.builds(lambda n: _unit_rows(data.draw, (n, 3), "float64"), st.integers(0, 8)),
                            any_input(REALS)))
    ok, fitted = call(mix.fit, X, names=["X", "n_components"])
    if not ok:
        return
    w = np.asarray(fitted.weights_)
    np.testing.assert_allclose(w.sum(), 1.0, rtol=1e-9)
    assert np.isfinite(np.asarray(fitted.kappas_)).all()
    p = np.asarray(fitted.predict_proba(X))
    np.testing.assert_allclose(p.sum(1), 1.0, rtol=1e-9)
    assert np.isfinite(fitted.score(X)) and np.isfinite(fitted.bic(X))
    lab = np.asarray(fitted.predict(X))
    assert ((lab >= 0) & (lab < mix.n_components)).all()
    assert np.isfinite(np.asarray(fitted.score_samples(X))).all()
    ok, s = call(fitted.sample, data.draw(st.one_of(st.integers(-1, 4), st.just(2.5))), names=["n"])
    if ok:
        assert np.asarray(s[0]).shape[1] == 3


# ==================================================================================================
# numkern.kde
# ==================================================================================================
from numkern import kde  # noqa: E402

bandwidths = st.one_of(st.sampled_from(["scott", "silverman", "loo", "Scott", "", "auto", None, True, 0, -1.0,
                                        math.nan, math.inf, 1e-300, 1e300, [1.0], 1 + 1j, np.float32(0.5)]),
                       st.floats(1e-3, 10.0))
kde_values = st.one_of(st.floats(-5, 5), st.sampled_from([0.0, 1.0, math.nan, math.inf, 1e300, -1e300, 5e-324]))


@covers("kde", "GaussianKDE", "KDEDiagnostics")
@fuzz_settings()
@given(data=st.data())
def test_kde(data):
    good = data.draw(st.booleans())
    if good:
        n, d = data.draw(st.integers(1, 12)), data.draw(st.integers(1, 4))
        Y = data.draw(arrays(["float32", "float64", "int16"], shape=(n, d), values=st.floats(-5, 5),
                             layouts=["c", "f", "neg", "huge"]))
    else:
        Y = data.draw(st.one_of(arrays(ALL_DTYPES, values=kde_values), any_input()))
    bw = data.draw(bandwidths)
    weights = data.draw(st.one_of(st.none(), any_input(REALS, values=kde_values)))
    cov = data.draw(st.sampled_from(["isotropic", "diagonal", "full", "Full", None, 3]))
    ok, k = call(kde.GaussianKDE, Y, bw, weights, cov, names=["data", "bandwidth", "weights", "covariance"])
    if not ok:
        return
    Ya = np.asarray(Y, dtype=np.float64)
    Ya = Ya.reshape(-1, 1) if Ya.ndim == 1 else Ya
    assert Ya.ndim == 2 and np.isfinite(Ya).all() and k.n == Ya.shape[0]
    assert math.isfinite(k.bandwidth) and k.bandwidth > 0
    P = data.draw(st.one_of(st.just(Ya[:3]), arrays(REALS, values=kde_values, max_dims=2), any_input()))
    ok, lp = call(k.logpdf, P, names=["points"])
    if ok:
        lp = np.asarray(lp, dtype=np.float64)
        Pa = np.asarray(P, dtype=np.float64).reshape(-1, k.d)
        assert lp.shape == (Pa.shape[0],) and not np.isnan(lp).any() and (lp < np.inf).all()
        if k.covariance == "isotropic" and Pa.shape[0] and k.dtype == np.float64:
            import scipy.special as sc

            h = k.bandwidth
            d2 = ((Pa[:, None, :] - Ya[None, :, :]) ** 2).sum(-1)
            ref = sc.logsumexp(-d2 / (2 * h * h) + np.log(k.weights)[None, :], axis=1) \
                - k.d / 2 * np.log(2 * np.pi * h * h)
            np.testing.assert_allclose(lp, ref, rtol=1e-7, atol=1e-7)
        with np.errstate(over="ignore"):  # the pdf may overflow the model dtype (float32)
            assert np.allclose(np.asarray(k.pdf(P), dtype=np.float64), np.exp(lp.astype(k.dtype)))
        if lp.size:
            assert math.isclose(k.score(P), float(lp.mean()), rel_tol=1e-6, abs_tol=1e-9)
        dg = k.diagnostics(P)
        assert isinstance(dg, kde.KDEDiagnostics)
        np.testing.assert_allclose(np.asarray(dg.logpdf, dtype=np.float64), lp, rtol=1e-6, atol=1e-6)
        pr = np.asarray(dg.participation_ratio, dtype=np.float64)
        assert ((pr >= 1 - 1e-6) & (pr <= k.n * (1 + 1e-6))).all()
    hs = data.draw(st.one_of(st.none(), st.lists(bandwidths, max_size=3)))
    call(k.diagnostics, Ya[:2], hs, names=["points", "bandwidths"])
    ok, lo = call(k.loo_logpdf, names=["data"])
    if ok:
        assert np.asarray(lo).shape == (k.n,)
    ok, s = call(k.resample, data.draw(st.one_of(st.integers(-1, 4), st.sampled_from([2.0, None]))),
                 data.draw(st.one_of(st.none(), st.integers(0, 9))), names=["n", "seed"])
    if ok:
        assert np.isfinite(np.asarray(s, dtype=np.float64)).all()
    if data.draw(st.booleans()):
        call(k, Ya[:1], names=["points"], expect_error=False)


@covers("kde", "select_bandwidth", "BandwidthSelection")
@fuzz_settings(0.5)
@given(data=st.data())
def test_kde_select_bandwidth(data):
    n, d = data.draw(st.integers(0, 10)), data.draw(st.integers(1, 3))
    Y = data.draw(arrays(["float64", "float32"], shape=(n, d), values=kde_values, layouts=["c", "neg"]))
    grid = data.draw(st.one_of(st.none(), st.lists(bandwidths, max_size=4), any_input()))
    method = data.draw(st.sampled_from(["loo", "LOO", None, 1]))
    cov = data.draw(st.sampled_from(["isotropic", "diagonal", "full"]))
    ok, sel = call(kde.select_bandwidth, Y, grid, method, covariance=cov, refine=data.draw(st.booleans()),
                   names=["data", "bandwidths", "method", "covariance", "weights"])
    if ok:
        assert isinstance(sel, kde.BandwidthSelection)
        assert math.isfinite(sel.bandwidth) and sel.bandwidth > 0
        assert sel.bandwidths.shape == sel.loo_loglik.shape


@covers("kde", "regimes", "Regimes")
@fuzz_settings()
@given(data=st.data())
def test_kde_regimes(data):
    num = st.one_of(st.sampled_from([None, "10", "abc", math.nan, math.inf, -1, 0, 1, 2, 1e308, True, [3], 1j]),
                    st.integers(2, 10 ** 6), st.floats(1e-3, 1e3))
    n, d, alpha = data.draw(num), data.draw(num), data.draw(num)
    kw = {"alpha": alpha} if data.draw(st.booleans()) else {}
    ok, r = call(kde.regimes, n, d, names=["n", "d", "alpha"], **kw)
    if not ok:
        return
    assert isinstance(r, kde.Regimes)
    for f in ("alpha", "w_star", "h_G", "h_CLT", "h_KL"):
        assert math.isfinite(getattr(r, f)) and getattr(r, f) > 0, r
    assert math.isclose(r.h_CLT, math.sqrt(2) * r.h_G, rel_tol=1e-12)
    h = data.draw(st.one_of(scalars(kde_values), arrays(REALS, values=kde_values, max_dims=1), any_input()))
    ok, kl = call(r.kl_per_dim, h, names=["h"])
    if ok:
        ha = np.asarray(h, dtype=np.float64)
        kla = np.asarray(kl)
        assert kla.shape == ha.shape
        good = np.isfinite(ha) & (ha > 0)
        assert (~np.isnan(kla[good]) & (kla[good] > -np.inf)).all()  # +inf: u/(2h^2) overflows at tiny h


# ==================================================================================================
# numkern.quant: OliVe
# ==================================================================================================
from numkern import quant  # noqa: E402

quant_values = st.one_of(st.floats(-4, 4), st.sampled_from([0.0, -0.0, 1e30, -1e30, 3.4e38, 1e-40, 100.0,
                                                            math.nan, math.inf]))
olive_bits = st.one_of(st.sampled_from([4, 8]), st.sampled_from([2, 16, 4.0, "4", None, True]))
olive_normal = st.sampled_from(["int", "flint", "auto", "INT", None, 0])


@covers("quant", "ovp_quantize", "ovp_dequantize", "ovp_fake_quantize", "OVPTensor")
@fuzz_settings()
@given(data=st.data())
def test_olive_quantize(data):
    w = data.draw(st.one_of(arrays(["float16", "float32", "float64"], values=quant_values, max_side=6),
                            any_input()))
    kw = dict(bits=data.draw(olive_bits), normal=data.draw(olive_normal),
              axis=data.draw(st.sampled_from(["row", None, 0, "col"])),
              both_outliers=data.draw(st.sampled_from(["larger", "left", "right", None])))
    if data.draw(st.booleans()):
        kw["alpha"] = data.draw(st.one_of(st.floats(-1, 10), st.sampled_from([math.nan, 0.0, [1.0, 2.0], "1"])))
    else:
        kw["search"] = data.draw(st.booleans())
    names = ["w", "bits", "normal", "axis", "both_outliers", "alpha", "search"]
    ok, q = call(quant.ovp_quantize, w, names=names, **kw)
    if not ok:
        return
    wa = np.asarray(w, dtype=np.float32)
    assert isinstance(q, quant.OVPTensor) and q.shape == wa.shape and np.isfinite(wa).all()
    deq = quant.ovp_dequantize(q)
    assert deq.shape == wa.shape and deq.dtype == np.float32
    assert np.isfinite(deq).all()
    fq = quant.ovp_fake_quantize(w, **kw)
    assert fq.dtype == np.asarray(w).dtype
    np.testing.assert_array_equal(np.asarray(fq, dtype=np.float32), deq.astype(np.asarray(w).dtype).astype(np.float32))
    # every decoded value is a grid value times the row's scale
    s = np.asarray(q.scales, dtype=np.float64)
    g = deq.reshape(q.rows, q.cols).astype(np.float64) / (s[:, None] if q.per_row else s[0])
    with np.errstate(all="ignore"):
        assert (np.abs(g[np.isfinite(g)]) <= 504 * (1 + 1e-5)).all()


@covers("quant", "ovp_dequantize")
@fuzz_settings()
@given(data=st.data())
def test_olive_decode_arbitrary_tensor(data):
    """An OVPTensor assembled from arbitrary parts: decoded in bounds, or a named error."""
    shape = data.draw(st.one_of(st.lists(st.integers(-1, 5), min_size=0, max_size=3).map(tuple),
                                st.sampled_from([(2 ** 40, 2 ** 40), (2 ** 62, 4), [2, 3], None, (2.0, 3)])))
    bits = data.draw(olive_bits)
    normal = data.draw(st.sampled_from(["int", "flint", "auto", None]))
    rows = data.draw(st.integers(0, 5))
    codes = data.draw(st.one_of(
        arrays(["uint8"], shape=(rows, data.draw(st.integers(0, 6))), values=st.floats(0, 255)),
        arrays(["int8", "float32", "uint16"], max_dims=2)))
    scales = data.draw(st.one_of(arrays(["float32"], shape=(data.draw(st.integers(0, 5)),), values=quant_values),
                                 arrays(["float64", "int32"], max_dims=2)))
    axis = data.draw(st.sampled_from(["row", None, "x"]))
    q = quant.OVPTensor(codes, scales, normal, shape, bits, axis)
    ok, out = call(quant.ovp_dequantize, q, names=["q", "q.shape", "q.codes", "q.scales", "q.axis", "bits",
                                                    "normal"])
    if ok:
        assert out.shape == tuple(shape) and out.dtype == np.float32
    x = data.draw(st.one_of(arrays(["float32", "float64", "int8"], max_dims=2, values=quant_values), any_input()))
    call(quant.ovp_matmul, x, q, names=["x", "q", "q.shape", "q.codes", "q.scales", "q.axis", "bits", "normal"])


@covers("quant", "ovp_matmul")
@fuzz_settings()
@given(data=st.data())
def test_olive_matmul(data):
    n, k = data.draw(st.integers(1, 5)), data.draw(st.integers(1, 7))
    W = data.draw(arrays(["float32"], shape=(n, k), values=st.floats(-3, 3), layouts=["c"]))
    q = quant.ovp_quantize(W, bits=data.draw(st.sampled_from([4, 8])), axis=data.draw(st.sampled_from(["row", None])))
    x = data.draw(st.one_of(arrays(NUMERIC_DTYPES, shape=data.draw(st.sampled_from([(k,), (2, k), (0, k), (2, 1, k)])),
                                   values=quant_values), any_input()))
    ok, y = call(quant.ovp_matmul, x, q, names=["x", "q"])
    if not ok:
        return
    xa = np.asarray(x, dtype=np.float32)
    assert y.shape == xa.shape[:-1] + (n,) and y.dtype == np.float32
    ref = xa.astype(np.float64) @ quant.ovp_dequantize(q).astype(np.float64).T
    fin = np.isfinite(ref) & (np.abs(ref) < 1e30)
    scale = np.abs(xa.astype(np.float64)) @ np.abs(quant.ovp_dequantize(q).astype(np.float64)).T
    assert (np.abs(y - ref)[fin] <= 1e-5 * scale[fin] + 1e-30).all()


@covers("quant", "ovp_normal_mse", "plain_fake_quantize")
@fuzz_settings()
@given(data=st.data())
def test_olive_baselines(data):
    w = data.draw(st.one_of(arrays(["float16", "float32", "float64"], values=quant_values, max_side=6),
                            any_input()))
    bits, normal = data.draw(olive_bits), data.draw(olive_normal)
    axis = data.draw(st.sampled_from(["row", None, "col"]))
    names = ["w", "bits", "normal", "axis"]
    ok, r = call(quant.plain_fake_quantize, w, bits, normal, axis, names=names)
    if ok:
        wa = np.asarray(w, dtype=np.float32)
        assert r.shape == wa.shape and np.isfinite(r).all() and np.isfinite(wa).all()
    ok, m = call(quant.ovp_normal_mse, w, bits, normal, axis, outliers=data.draw(st.booleans()), names=names)
    if ok:
        assert math.isfinite(m) and m >= 0


def _tiny_model(torch, kind="linear"):
    torch.manual_seed(0)
    if kind == "conv":
        return torch.nn.Sequential(torch.nn.Conv1d(2, 3, 2), torch.nn.Flatten(), torch.nn.Linear(9, 2))
    return torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.ReLU(), torch.nn.Linear(8, 4))


@covers("quant", "quantize_model", "OVPLinear")
@fuzz_settings(0.5)
@given(data=st.data())
def test_olive_model(data):
    torch = pytest.importorskip("torch")
    model = _tiny_model(torch)
    if data.draw(st.booleans()):
        model[0].weight.data[0, 0] = data.draw(st.sampled_from([math.nan, math.inf, 1e30, 0.0]))
    kw = dict(bits=data.draw(olive_bits), act_bits=data.draw(st.sampled_from([None, 4, 8, 3, "8"])),
              skip=data.draw(st.sampled_from([("lm_head",), ("2",), (), None, ("0", "2")])),
              normal=data.draw(olive_normal))
    ok, qm = call(quant.quantize_model, model, names=["w", "bits", "act_bits", "normal", "skip"], **kw)
    if not ok:
        return
    x = torch.randn(3, 6)
    y = qm(x)
    assert y.shape == (3, 4)
    assert torch.isfinite(y).all() or not torch.isfinite(model[0].weight).all()  # a skipped NaN layer
    lin = quant.OVPLinear.from_linear(torch.nn.Linear(6, 4), bits=4)
    xb = data.draw(st.one_of(arrays(["float32"], shape=data.draw(st.sampled_from([(6,), (2, 6), (2, 5)])),
                                    values=quant_values, layouts=["c"]).map(torch.from_numpy),
                             st.just(torch.ones(2, 6, dtype=torch.int64))))
    ok, yb = call(lin, xb, names=["x"])
    if ok:
        assert yb.shape == tuple(xb.shape[:-1]) + (4,)
    call(quant.OVPLinear.from_linear, data.draw(st.sampled_from([model, torch.nn.Linear(3, 2), "x"])),
         names=["linear", "bits"])


@covers("quant", "OVPConv1d", "OVPConv2d", "calibrate")
@fuzz_settings(0.3)
@given(data=st.data())
def test_olive_conv_and_calibrate(data):
    """OVP convolutions and calibrate() (issue #19): odd geometries, bad inputs and batches."""
    torch = pytest.importorskip("torch")
    dims = data.draw(st.sampled_from([1, 2]))
    conv_t = torch.nn.Conv1d if dims == 1 else torch.nn.Conv2d
    torch.manual_seed(0)
    stride, padding = data.draw(st.integers(1, 2)), data.draw(st.sampled_from([0, 1, "same", "valid"]))
    if padding == "same":
        stride = 1
    conv = conv_t(2, 4, data.draw(st.integers(1, 3)), stride=stride, padding=padding,
                  groups=data.draw(st.sampled_from([1, 2])))
    cls = quant.OVPConv1d if dims == 1 else quant.OVPConv2d
    ok, qc = call(cls.from_conv, conv, names=["conv", "bits"], bits=data.draw(olive_bits),
                  act_bits=data.draw(st.sampled_from([None, 8])))
    if not ok:
        return
    side = data.draw(st.integers(1, 5))
    x = torch.randn(data.draw(st.sampled_from([(2, 2), (2, 3), (1, 2, 2), (2,)])) + (side,) * dims)
    call(quant.calibrate, qc, data.draw(st.sampled_from([[x], [], "x", [x, x]])), names=["batches", "model", "x"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # uncalibrated
        ok, y = call(qc, x, names=["x"])
    if ok:
        ref = (torch.nn.functional.conv1d if dims == 1 else torch.nn.functional.conv2d)(
            x, qc.weight, conv.bias, conv.stride, conv.padding, conv.dilation)
        assert y.shape == ref.shape
        if qc.act_bits is None:
            torch.testing.assert_close(y, ref, rtol=1e-4, atol=1e-4)


# ==================================================================================================
# numkern.quant: SplitQuant
# ==================================================================================================
@covers("quant", "kmeans1d")
@fuzz_settings()
@given(data=st.data())
def test_kmeans1d(data):
    values = data.draw(st.one_of(arrays(ALL_DTYPES, values=quant_values, max_side=6), any_input()))
    k = data.draw(st.one_of(st.integers(-1, 6), st.sampled_from([2.0, "3", None, True, 2 ** 40])))
    method = data.draw(st.sampled_from(["optimal", "lloyd", "kmeans", None]))
    seed = data.draw(st.one_of(st.integers(-1, 3), st.just(1.5)))
    max_iter = data.draw(st.one_of(st.integers(0, 5), st.just(None)))
    ok, res = call(quant.kmeans1d, values, k, method, seed=seed, max_iter=max_iter,
                   names=["values", "k", "method", "seed", "max_iter"])
    if not ok:
        return
    centers, labels = res
    va = np.asarray(values, dtype=np.float64)
    assert np.isfinite(va).all() and va.size > 0
    assert labels.shape == va.shape and labels.dtype == np.int64
    assert 1 <= centers.size <= min(k, np.unique(va).size) and (np.diff(centers) > 0).all()
    assert ((labels >= 0) & (labels < centers.size)).all()
    if method == "optimal":  # exact: every point sits with its nearest centre
        dist = np.abs(va.reshape(-1, 1) - centers[None, :])
        assert (dist[np.arange(va.size), labels.reshape(-1)] <= dist.min(1) * (1 + 1e-9) + 1e-300).all()


@covers("quant", "quantize_weights", "QuantizedWeight")
@fuzz_settings()
@given(data=st.data())
def test_quantize_weights(data):
    w = data.draw(st.one_of(arrays(REALS + ["float16"], values=quant_values, max_side=6), any_input()))
    bits = data.draw(st.one_of(st.sampled_from([2, 4, 8]), st.sampled_from([3, 16, 4.0, None, True])))
    scheme = data.draw(st.sampled_from([None, "symmetric", "asymmetric", "minmax", "sym", 1]))
    gs = data.draw(st.one_of(st.none(), st.integers(-1, 7), st.sampled_from([2.0, "4"])))
    ok, q = call(quant.quantize_weights, w, bits, scheme, gs, names=["w", "bits", "scheme", "group_size"])
    if not ok:
        return
    assert isinstance(q, quant.QuantizedWeight)
    wa = np.asarray(w)
    deq = q.dequantize()
    assert deq.shape == wa.shape and np.isfinite(deq).all() and np.isfinite(wa.astype(np.float64)).all()
    rows = wa.astype(np.float64).reshape(wa.shape[0], -1) if wa.ndim > 1 else wa.astype(np.float64).reshape(1, -1)
    g = q.scale.shape[1]
    err = np.abs(deq.astype(np.float64).reshape(rows.shape) - rows).reshape(rows.shape[0], g, -1)
    tiny = 100 * np.finfo(q.scale.dtype).smallest_normal  # subnormal ranges: scale underflows to 0
    bound = 0.5 * q.scale.astype(np.float64)[:, :, None] * (1 + 1e-3) + 1e-6 * np.abs(rows).max() + tiny
    assert (err <= bound).all(), (err.max(), q.scale)
    assert np.isfinite(q.zero_value()).all()


@covers("quant", "cluster_labels")
@fuzz_settings()
@given(data=st.data())
def test_cluster_labels(data):
    rows = data.draw(st.one_of(arrays(REALS, values=quant_values, max_side=6), any_input()))
    k = data.draw(st.one_of(st.integers(-1, 5), st.sampled_from([2.0, None])))
    method = data.draw(st.sampled_from(["optimal", "lloyd", "tails", "x"]))
    tail = data.draw(st.sampled_from([0.15, 0.0, 0.49, 0.5, -1.0, math.nan, "a"]))
    ok, lab = call(quant.cluster_labels, rows, k, method, 0, tail, names=["rows", "k", "method", "seed", "tail"])
    if ok:
        ra = np.asarray(rows)
        assert lab.shape == ra.shape and ra.ndim == 2
        assert ((lab >= 0) & (lab < k)).all()


@covers("quant", "FusedSplitQuantWeight")
@fuzz_settings()
@given(data=st.data())
def test_fused_weight(data):
    out_f, in_f = data.draw(st.integers(1, 4)), data.draw(st.integers(1, 9))
    W = data.draw(arrays(["float32"], shape=(out_f, in_f), values=st.floats(-2, 2), layouts=["c"]))
    bits = data.draw(st.sampled_from([2, 4, 8]))
    k = data.draw(st.integers(1, 4))
    gs = data.draw(st.sampled_from([None, 1, in_f, 3]))
    labels = quant.cluster_labels(W, k)
    branches = [np.where(labels == j, W, 0) for j in range(k)]
    ok, qs = call(lambda: [quant.quantize_weights(b, bits, None, gs) for b in branches], names=["group_size"])
    if not ok:
        return
    if data.draw(st.booleans()):
        fused = quant.FusedSplitQuantWeight.from_branches(qs, labels)
        dense = fused.dequantize()
        np.testing.assert_allclose(dense, sum(q.dequantize() for q in qs), rtol=1e-5, atol=1e-5)
    else:  # arbitrary parts: a named error or a result of the declared shape, never a crash
        parts = dict(codes=data.draw(arrays(["uint8", "float32"], max_dims=2, max_side=5, values=st.floats(0, 255))),
                     clusters=data.draw(arrays(["uint8"], max_dims=2, max_side=5, values=st.floats(0, 255))),
                     scales=data.draw(arrays(["float32"], max_dims=3, max_side=4, values=quant_values)),
                     offsets=data.draw(arrays(["float32"], max_dims=3, max_side=4, values=quant_values)),
                     in_features=data.draw(st.integers(-1, 9)), group_size=data.draw(st.integers(-1, 9)),
                     bits=data.draw(st.sampled_from([1, 2, 4, 8, 3])))
        fused = quant.FusedSplitQuantWeight(**parts)
        ok, dense = call(fused.dequantize, names=list(parts) + ["k"])
        if ok:
            assert dense.shape == (fused.out_features, fused.in_features)
    x = data.draw(st.one_of(arrays(["float32", "float64", "int8"], shape=data.draw(
        st.sampled_from([(in_f,), (2, in_f), (0, in_f), (2, in_f + 1), ()])), values=quant_values), any_input()))
    bias = data.draw(st.one_of(st.none(), arrays(["float32"], shape=(data.draw(st.integers(0, 5)),))))
    ok, y = call(fused.matmul, x, bias, names=["x", "bias"] + ["codes", "clusters", "scales", "offsets",
                                                                 "group_size", "bits", "k", "in_features"])
    if ok:
        xa = np.asarray(x, dtype=np.float32)
        assert y.shape == xa.shape[:-1] + (fused.out_features,)
        ref = xa.astype(np.float64) @ fused.dequantize().astype(np.float64).T
        if bias is not None:
            ref = ref + bias
        fin = np.isfinite(ref) & (np.abs(ref) < 1e30)
        mag = np.abs(xa.astype(np.float64)) @ np.abs(fused.dequantize().astype(np.float64)).T + 1
        assert (np.abs(y - ref)[fin] <= 1e-5 * mag[fin]).all()


@covers("quant", "split_model", "splitquant", "quantize_model_plain", "fuse_splitquant", "SplitLayer",
        "SplitQuantLinear")
@fuzz_settings(0.5)
@given(data=st.data())
def test_splitquant_models(data):
    torch = pytest.importorskip("torch")
    model = _tiny_model(torch, data.draw(st.sampled_from(["linear", "conv"])))
    if data.draw(st.booleans()):
        model[0].weight.data.view(-1)[0] = data.draw(st.sampled_from([math.nan, math.inf, 1e30, 0.0]))
    k = data.draw(st.one_of(st.integers(-1, 5), st.sampled_from([2.0, None])))
    bits = data.draw(st.one_of(st.sampled_from([2, 4, 8]), st.sampled_from([3, None])))
    gs = data.draw(st.sampled_from([None, 1, 2, 4, 5, 0, "2"]))
    method = data.draw(st.sampled_from(["optimal", "lloyd", "tails", "x"]))
    scheme = data.draw(st.sampled_from([None, "symmetric", "minmax", "support", "support", "bad"]))
    table_dtype = data.draw(st.sampled_from(["float32", "float16", "float16", "int8"]))
    fused = data.draw(st.booleans())
    names = ["model", "k", "bits", "group_size", "method", "scheme", "fused", "seed", "tail", "table_dtype"]
    x = torch.randn(2, 2, 4) if isinstance(model[0], torch.nn.Conv1d) else torch.randn(2, 6)
    which = data.draw(st.sampled_from(["split", "splitquant", "plain"]))
    if which == "split":
        ok, m = call(quant.split_model, model, k, method, names=names)
    elif which == "splitquant":
        ok, m = call(quant.splitquant, model, bits, k, gs, method, scheme=scheme, fused=fused,
                     table_dtype=table_dtype, names=names)
    else:
        ok, m = call(quant.quantize_model_plain, model, bits, gs, scheme=scheme, names=names)
    if not ok:
        return
    assert torch.isfinite(model[0].weight).all()
    with torch.no_grad():
        y, y0 = m(x), model(x)
    assert y.shape == y0.shape and torch.isfinite(y).all()
    if which == "split":
        torch.testing.assert_close(y, y0, rtol=1e-4, atol=1e-5)
        layers = [mod for mod in m.modules() if isinstance(mod, quant.SplitLayer)]
        assert layers
        ok, fm = call(quant.fuse_splitquant, m, names=["model", "layer"])
    elif which == "splitquant" and not fused:
        ok, fm = call(quant.fuse_splitquant, m, names=["model", "layer"])
        if ok and not isinstance(model[0], torch.nn.Conv1d):
            assert any(isinstance(mod, quant.SplitQuantLinear) for mod in fm.modules())
            with torch.no_grad():
                torch.testing.assert_close(fm(x), y, rtol=1e-4, atol=1e-4)
    call(quant.fuse_splitquant, data.draw(st.sampled_from([model, "m", None])), names=["model"])


# ==================================================================================================
# numkern.hessian
# ==================================================================================================
from numkern import hessian  # noqa: E402


@covers("hessian", "trace", "diagonal", "TraceEstimate", "DiagonalEstimate")
@fuzz_settings()
@given(data=st.data())
def test_hessian_estimators(data):
    kind = data.draw(st.sampled_from(["matrix", "callable", "batched", "junk", "badshape"]))
    n = data.draw(st.integers(1, 6))
    A = data.draw(arrays(["float64", "float32", "int32"], shape=(n, n), values=st.floats(-3, 3), layouts=["c", "f"]))
    A = (A + A.T) / 2 if A.dtype.kind == "f" else A + A.T
    A64 = A.astype(np.float64)
    dim = data.draw(st.one_of(st.none(), st.just(n), st.integers(-1, 8), st.sampled_from([2.0, "3"])))
    if kind == "matrix":
        op = A
    elif kind == "callable":
        op = lambda v: A64 @ v  # noqa: E731
    elif kind == "batched":
        op = lambda V: V @ A64  # noqa: E731
    elif kind == "badshape":
        op = data.draw(st.sampled_from([lambda v: np.zeros(3), lambda v: "x", lambda v: None]))
    else:
        op = data.draw(any_input())
    kw = dict(method=data.draw(st.sampled_from(["hutchinson", "hutch++", "xtrace", "xdiag", "exact", None])),
              num_matvecs=data.draw(st.one_of(st.integers(-1, 40), st.sampled_from([10.0, "10", None]))),
              probe=data.draw(st.sampled_from(["rademacher", "gaussian", "normal", None])),
              seed=data.draw(st.one_of(st.none(), st.integers(0, 3), st.just(-1))),
              rtol=data.draw(st.sampled_from([None, 0.1, 0.0, -1.0, math.nan, "0.1"])),
              confidence=data.draw(st.sampled_from([0.95, 0.5, 0.0, 1.0, 2.0, math.nan])),
              batched=kind == "batched",
              block_size=data.draw(st.sampled_from([None, 1, 7, 0, 2.5])))
    names = ["matvec", "dim", "method", "num_matvecs", "probe", "seed", "rtol", "confidence", "block_size"]
    for fn, exact in ((hessian.trace, float(np.trace(A64))), (hessian.diagonal, np.diag(A64))):
        ok, est = call(fn, op, dim, names=names, **kw)
        if not ok:
            continue
        e = np.asarray(est.estimate, dtype=np.float64)
        # (stderr: inf where one probe leaves the spread unknown, never NaN for a finite estimate)
        assert np.isfinite(e).all() and not np.isnan(np.asarray(est.stderr, dtype=np.float64)).any()
        assert e.shape == np.shape(exact)
        assert est.num_matvecs <= kw["num_matvecs"]
        tol = np.abs(A64).sum() * 4 + 1e-9  # loose: estimators are random, but not garbage
        assert (np.abs(e - exact) <= tol).all()
        if fn is hessian.trace:
            lo, hi = est.interval(0.9)
            assert lo <= float(est) <= hi


@covers("hessian", "SoftmaxHeadHessian")
@fuzz_settings()
@given(data=st.data())
def test_softmax_head(data):
    n, d, C = data.draw(st.integers(0, 5)), data.draw(st.integers(0, 4)), data.draw(st.integers(0, 4))
    good = data.draw(st.booleans())
    pick = st.one_of(arrays(REALS, values=st.floats(-5, 5), max_dims=2), any_input())
    Z = data.draw(arrays(["float32", "float64"], shape=(n, d), values=st.floats(-5, 5))) if good else data.draw(pick)
    W = data.draw(arrays(["float32", "float64"], shape=(C, d), values=st.floats(-5, 5))) if good else data.draw(pick)
    b = data.draw(st.one_of(st.none(), arrays(["float64"], shape=(C,), values=st.floats(-5, 5)), pick))
    y = data.draw(st.one_of(st.none(), arrays(["int64", "int8", "uint8"], shape=(n,), values=st.floats(0, 3)),
                            arrays(["int64"], shape=(n,)), pick))
    ok, H = call(hessian.SoftmaxHeadHessian, Z, W, b, y, names=["features", "weight", "bias", "labels"])
    if not ok:
        return
    Za, Wa = np.asarray(Z, dtype=np.float64), np.asarray(W, dtype=np.float64)
    logits = Za @ Wa.T + (0 if b is None else np.asarray(b, dtype=np.float64))
    with np.errstate(all="ignore"):
        p = np.exp(logits - logits.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
    x2 = (Za * Za).sum(1) + (1 if b is not None else 0)
    ref = float(((1 - (p * p).sum(1)) * x2).mean())
    tr = H.trace()
    if np.isfinite(Za).all() and np.isfinite(Wa).all() and np.isfinite(np.asarray(0 if b is None else b, float)).all():
        assert math.isclose(tr, ref, rel_tol=1e-4, abs_tol=1e-4 * (1 + x2.max())), (tr, ref)
        dg = np.asarray(H.diagonal(), dtype=np.float64)
        assert dg.shape == (H.num_classes, H.num_features + H.has_bias)
        assert math.isclose(dg.sum(), tr, rel_tol=1e-4, abs_tol=1e-4 * (1 + x2.max()))
    V = data.draw(st.one_of(arrays(["float64", "float32"], shape=data.draw(st.sampled_from(
        [(H.dim,), (2, H.dim), (H.num_classes, H.num_features + H.has_bias), (3,)])), values=st.floats(-2, 2)),
        any_input()))
    ok, HV = call(H.matvec, V, names=["V"])
    if ok:
        assert tuple(HV.shape) == np.shape(V)
    ok, g = call(H.gradient, names=["labels"])
    if ok:
        assert np.asarray(g).shape == (H.num_classes, H.num_features + H.has_bias)
        assert y is not None
        lv = H.loss()
        assert lv >= 0 or not np.isfinite(Za).all()


@covers("hessian", "HessianMatvec", "hessian_matvec", "hessian_trace", "hessian_diagonal")
@fuzz_settings(0.3)
@given(data=st.data())
def test_hessian_torch_models(data):
    torch = pytest.importorskip("torch")
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2)).double()
    x = torch.randn(5, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    t = torch.tensor([0, 1, 1, 0, 1])
    loss = data.draw(st.sampled_from([torch.nn.functional.cross_entropy, "ce",
                                      lambda o, t: torch.nn.functional.cross_entropy(o, t, reduction="none")]))
    kw = dict(mode=data.draw(st.sampled_from(["auto", "vmap", "double_backward", "x"])),
              chunk_size=data.draw(st.sampled_from([None, 1, 3])))
    params = data.draw(st.sampled_from(["none", "first", "foreign"]))
    kw["params"] = None if params == "none" else (
        [model[0].weight] if params == "first" else [torch.nn.Parameter(torch.zeros(2))])
    which = data.draw(st.sampled_from(["matvec", "trace", "diagonal"]))
    names = ["model", "loss_fn", "mode", "params", "method", "num_matvecs"]
    m = data.draw(st.sampled_from(["hutchinson", "hutch++", "xtrace", "xdiag", "z"]))
    if which == "matvec":
        ok, H = call(hessian.hessian_matvec, model, loss, x, t, names=names, **kw)
        if ok:
            assert isinstance(H, hessian.HessianMatvec)
            v = torch.ones(H.dim, dtype=torch.float64)
            hv = H(v)
            assert hv.shape == (H.dim,) and torch.isfinite(hv).all()
    elif which == "trace":
        ok, est = call(hessian.hessian_trace, model, loss, x, t, m, 6, names=names, **kw)
        if ok:
            assert math.isfinite(est.estimate)
    else:
        ok, est = call(hessian.hessian_diagonal, model, loss, x, t, m, 6, names=names, **kw)
        if ok:
            assert torch.isfinite(est.estimate).all()


@covers("hessian", "hgp_penalty", "hutchinson_penalty")
@fuzz_settings(0.5)
@given(data=st.data())
def test_hessian_penalties(data):
    torch = pytest.importorskip("torch")
    head = torch.nn.Linear(3, 4).double()
    gen = torch.Generator().manual_seed(1)
    E = data.draw(st.integers(0, 3))
    feats = [torch.randn(data.draw(st.integers(0, 4)), 3, dtype=torch.float64, generator=gen) for _ in range(E)]
    labels = [torch.randint(0, data.draw(st.sampled_from([4, 5])), (f.shape[0],), generator=gen) for f in feats]
    if data.draw(st.booleans()) and feats:
        feats[0] = data.draw(st.sampled_from([torch.randn(2, 5, dtype=torch.float64), "x",
                                              torch.full((2, 3), math.nan, dtype=torch.float64)]))
    alpha = data.draw(st.sampled_from([1e-4, 0.0, -1.0, math.nan, "a"]))
    names = ["head", "features", "labels", "alpha", "beta", "num_probes", "loss_fn", "generator"]
    ok, p = call(hessian.hgp_penalty, head, feats, labels, alpha, names=names)
    if ok:
        assert p.dim() == 0
    nprobes = data.draw(st.sampled_from([None, 1, 10, 0, -1, 2.5]))
    ok, p = call(hessian.hutchinson_penalty, head, feats, labels, alpha, 5e-3, nprobes, names=names)
    if ok:
        assert p.dim() == 0


# ==================================================================================================
# coverage
# ==================================================================================================
def _public_names(modname):
    import importlib

    mod = importlib.import_module(f"numkern.{modname}")
    names = set(getattr(mod, "__all__", ()))
    for n in dir(mod):
        obj = getattr(mod, n)
        if not n.startswith("_") and callable(obj) and getattr(obj, "__module__", None) == mod.__name__:
            names.add(n)
    if modname == "quant":
        names |= set(mod._olive._LAZY) | set(mod._splitquant.LAZY_TORCH_NAMES)
    return names


@pytest.mark.parametrize("modname", ["special", "vmf", "kde", "quant", "hessian"])
def test_coverage(modname):
    missing = _public_names(modname) - COVERED.get(modname, set())
    assert not missing, f"numkern.{modname}: public names without a fuzz test: {sorted(missing)}"


# ==================================================================================================
# regressions: each bug the fuzzer found, pinned by a named test
# ==================================================================================================
def test_regression_bessel_at_smallest_subnormal(mp):
    x = 5e-324  # x/2 rounds to 0: log(x/2) was -inf, and 0 * -inf gave NaN
    assert nks.log_iv(0.0, x) == 0.0 and nks.iv(0.0, x) == 1.0 and nks.ive(0.0, x) == 1.0
    for v in (0.5, 1.0, 2.5):
        want = float(mp.log(mp.besseli(v, mp.mpf(x))))
        assert math.isclose(nks.log_iv(v, x), want, rel_tol=1e-14)
    assert math.isclose(nks.iv(0.5, x), float(mp.besseli(0.5, mp.mpf(x))), rel_tol=1e-13)
    k0 = float(mp.besselk(0, mp.mpf(x)))  # 744.556...: k0 returned inf, kv(0, x) NaN
    for got in (nks.k0(x), nks.k0e(x), nks.kv(0.0, x), nks.kve(0.0, x)):
        assert math.isclose(got, k0, rel_tol=1e-13), got
    assert math.isclose(nks.log_kv(0.0, x), math.log(k0), rel_tol=1e-14)
    assert nks.k1(x) == math.inf and nks.k1e(x) == math.inf  # overflows: was NaN


def test_regression_log_kv_recurrence_overflow(mp):
    # 1e-100 <= x < ~1e-90 at orders ~7: one recurrence step overflowed before the rescale
    for v, x in ((7.5, 1e-90), (7.5, 3.68e-98), (9.25, 1e-99)):
        want = float(mp.log(mp.besselk(v, mp.mpf(x))))
        assert math.isclose(nks.log_kv(v, x), want, rel_tol=1e-14)
        assert nks.kv(v, x) == math.inf  # K overflows; it was NaN


def test_regression_olive_encoder_nan_scale_does_not_crash():
    # a NaN q indexed the flint table with INT_MIN (segfault); float64 input beyond the float32
    # range reached it through ovp_quantize
    from numkern import _core

    x = np.full((3, 6), np.nan, np.float32)
    for normal in (0, 1):
        codes, scales = np.empty((3, 3), np.uint8), np.empty(3, np.float32)
        _core.olive.encode(x, codes, scales, np.zeros(3), np.empty(3), 4, normal, False, True, 0)
        assert codes.shape == (3, 3)
    with pytest.raises(ValueError, match="^w: "):
        quant.ovp_quantize(np.array([[1e308, 1.0]]))
    with pytest.raises(ValueError, match="^alpha: "):
        quant.ovp_quantize(np.ones((2, 4), np.float32), alpha=1e-45)


def test_regression_vmf_weights_near_float_max():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((20, 3))
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    ref = vmf.fit(X)
    big = vmf.fit(X, weights=np.full(20, 1e308))  # sum of weights overflowed: NaN mu and kappa
    np.testing.assert_allclose(big.kappa, ref.kappa, rtol=1e-12)
    np.testing.assert_allclose(big.mu, ref.mu, rtol=1e-12)
    assert math.isclose(vmf.mean_resultant_length(X, np.full(20, 1e308)), vmf.mean_resultant_length(X),
                        rel_tol=1e-12)


def test_regression_kde_regimes_extreme_alpha():
    r = kde.regimes(alpha=1e-300)  # w* ~ sqrt(4 alpha / 3): the closed form cancelled to 0
    assert math.isclose(r.w_star, math.sqrt(4e-300 / 3), rel_tol=1e-9)
    r = kde.regimes(alpha=178.0)  # w* = inf, h_KL = NaN before
    assert all(math.isfinite(getattr(r, f)) and getattr(r, f) > 0 for f in ("w_star", "h_G", "h_KL"))
    assert math.isclose(kde.regimes(alpha=0.5).h_G, 0.652, abs_tol=5e-4)  # the documented example
    with pytest.raises(TypeError, match="^n: "):
        kde.regimes("abc", 3)
    with pytest.raises(ValueError, match="alpha"):
        kde.regimes(alpha=1e308)
    with pytest.raises(TypeError, match="^h: "):
        kde.regimes(alpha=0.5).kl_per_dim("x")


def test_regression_kde_tiny_bandwidth():
    Y = np.random.default_rng(1).standard_normal((10, 2))
    with pytest.raises(ValueError, match="^bandwidth: "):
        kde.GaussianKDE(Y, 1e-300)  # 1/(2 h^2) raised ZeroDivisionError deep inside
    k = kde.GaussianKDE(Y, 0.5)
    with pytest.raises(ValueError, match="^bandwidths: "):
        k.diagnostics(Y[:2], [1e-300])


def test_regression_quantize_weights_range_overflow():
    w = np.array([[3.4e38, -3.4e38, 0.0, 1.0]], np.float32)
    for scheme in ("asymmetric", "minmax"):  # dequantized to NaN before
        with pytest.raises(ValueError, match="^w: "):
            quant.quantize_weights(w, 4, scheme, None)
    assert np.isfinite(quant.quantize_weights(w, 4, "symmetric").dequantize()).all()


def test_regression_named_errors():
    with pytest.raises(TypeError, match="^x: "):
        nks.k0(1j)  # SciPy's k0 has no complex loop: its message named no argument
    with pytest.raises(TypeError, match="^v: "):
        nks.iv(1j, 1.0)
    with pytest.raises(TypeError, match="^out: "):
        nks.iv(1.0, 1j, out=np.empty(()))
    with pytest.raises(TypeError, match="^x: "):
        nks.i0([[1.0], [2.0, 3.0]])  # ragged: numpy's "inhomogeneous shape" ValueError before
    with pytest.raises(TypeError, match="^X: "):
        vmf.VonMisesFisher([1.0, 0.0], 1.0).logpdf(np.array(["a", "b"]))
    with pytest.raises(ValueError, match="^rows: "):
        quant.cluster_labels(np.zeros((2, 0)), 3)
    with pytest.raises(TypeError, match="^rows: "):
        quant.cluster_labels(np.array([["a"]]), 3)
    with pytest.raises(ValueError, match="^x: "):  # AttributeError before
        quant.ovp_matmul(2.5, quant.ovp_quantize(np.ones((2, 2), np.float32)))
    with pytest.raises(TypeError, match="^w: "):
        quant.plain_fake_quantize("abc")


def test_regression_vmf_float64_scalars_are_not_weak():
    # np.float64 subclasses float: it was taken for a weak scalar, rounded to float32 with a
    # float32 d, and kappa = -1e-207 became -0.0 (accepted); an empty batch crashed logpdf
    with pytest.raises(ValueError, match="^kappa: "):
        vmf.log_normalizer(np.float32(2.0), np.float64(-1e-207))
    with pytest.raises(ValueError, match="^kappa: "):
        vmf.log_normalizer(np.float32(2.0), -1e-207)
    with pytest.raises(ValueError, match="^rbar: "):
        vmf.kappa_mle(np.float64(-5e-324), np.float32(2.0))
    assert vmf.log_normalizer(np.float32(3.0), np.float64(2.0)).dtype == np.float64
    empty = vmf.VonMisesFisher([0.0, 1.0], np.zeros(0))
    assert empty.logpdf(np.zeros((0, 2))).shape == (0, 0)


def test_regression_vmf_sample_huge_kappa():
    for kappa in (1e308, 1.7e308, 1e300):  # 2 kappa overflowed: every sample was NaN
        s = vmf.VonMisesFisher(np.array([0.0, 0.0, 1.0]), kappa).sample(5, seed=3)
        assert np.isfinite(s).all()
        np.testing.assert_allclose(s, np.tile([0.0, 0.0, 1.0], (5, 1)), atol=1e-100)


def test_regression_unaligned_input():
    buf = np.zeros(8 * 4 + 1, np.uint8)
    x = np.ndarray((4,), np.float64, buf, offset=1)
    x[...] = [0.5, 1.0, 2.0, 4.0]
    np.testing.assert_array_equal(nks.log_kv(1.5, x), nks.log_kv(1.5, np.array(x)))
