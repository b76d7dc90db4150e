"""numkern.special.ufuncs: real numpy ufuncs (csrc/python/special_ufunc.cpp), and the public
functions that call them for numpy input.

Contracts checked here (docs/special.md, "numpy ufuncs"):
- the ufuncs return the same bits as the numpy path they replace (numkern._backend.elementwise
  over numkern._core.special), on random and edge inputs, float32 and float64, strided, transposed,
  reversed and broadcast layouts, and across thread counts;
- numkern's dtype rule picks the loop (integers and bool in float64, float16 in float32 for (v, x),
  in float64 for i0 ... k1e; Python scalars weak);
- ufunc options and methods (out tuples, where=, dtype=, casting=, .outer, .at, .reduce,
  .accumulate) and __array_ufunc__ dispatch behave as for any numpy ufunc;
- the GIL is released in the loop, and no floating-point warning leaks out of it.
"""
from __future__ import annotations

import pickle
import warnings

import numpy as np
import pytest

import numkern
import numkern.special as nks
from numkern import _core
from numkern._backend import elementwise
from numkern.special import ufuncs

BINARY = ["log_iv", "log_kv", "iv", "ive", "kv", "kve", "iv_ratio", "iv_ratio_c"]
UNARY = {"i0": 0, "i0e": 0, "i1": 1, "i1e": 1, "k0": 0, "k0e": 0, "k1": 1, "k1e": 1}
ALL = BINARY + list(UNARY)
SECOND = {n: ("z" if n in ("iv", "ive", "kv", "kve") else "x") for n in BINARY}

EDGE = np.array([0.0, -0.0, 0.5, 1.0, 2.0, -1.0, -2.5, 1e-300, 5e-324, 1e-8, 30.0, 700.0, 1e4, 1e20,
                 1e154, 1e300, np.finfo(np.float64).max, np.inf, -np.inf, np.nan])


def old_path(name, *args):
    """The numpy path the ufuncs replace: elementwise() over numkern._core.special."""
    if name in UNARY:
        (x,) = args
        if getattr(x, "dtype", None) == np.float16:
            x = np.asarray(x, dtype=np.float64)
        return elementwise("special", name, (UNARY[name], x), ("order", "x"))
    return elementwise("special", name, args, ("v", SECOND[name]))


def same_bits(a, b):
    a, b = np.asarray(a), np.asarray(b)
    assert a.dtype == b.dtype and a.shape == b.shape, (a.dtype, b.dtype, a.shape, b.shape)
    ui = {4: np.uint32, 8: np.uint64}[a.dtype.itemsize]
    bad = np.flatnonzero(np.ascontiguousarray(a).view(ui) != np.ascontiguousarray(b).view(ui))
    assert bad.size == 0, f"{bad.size} differ, first at {bad[:5]}: {a.ravel()[bad[:5]]} vs {b.ravel()[bad[:5]]}"


def random_pairs(rng, n):
    """v, x over the regions of the Bessel algorithms, with the edge values mixed in."""
    v = np.concatenate([rng.uniform(-5, 5, n), 10 ** rng.uniform(-3, 4, n), rng.integers(-20, 20, n),
                        np.repeat(EDGE, 8)])
    x = np.concatenate([10 ** rng.uniform(-5, 3.5, n), rng.uniform(-30, 30, n), 10 ** rng.uniform(-2, 5, n),
                        np.tile(EDGE, 8)])
    return v, x


def test_real_ufuncs_with_the_public_names():
    for name in ALL:
        uf = getattr(ufuncs, name)
        assert isinstance(uf, np.ufunc) and uf.__name__ == name
        assert (uf.nin, uf.nout) == ((1, 1) if name in UNARY else (2, 1))
        assert uf.types == (["d->d", "f->f"] if name in UNARY else ["ff->f", "dd->d"])
        f = getattr(nks, name)
        assert f.ufunc is uf and f.types == uf.types and f.nin == uf.nin
        for meth in ("outer", "at", "reduce", "accumulate", "reduceat"):
            assert getattr(f, meth) == getattr(uf, meth)
        assert pickle.loads(pickle.dumps(uf)) is uf
    assert sorted(ufuncs.__all__) == sorted(nks.__all__)


@pytest.mark.parametrize("dt", [np.float64, np.float32])
@pytest.mark.parametrize("name", ALL)
def test_same_bits_as_the_numpy_path(name, dt):
    rng = np.random.default_rng(22)
    v, x = random_pairs(rng, 700)
    with np.errstate(over="ignore"):
        v, x = v.astype(dt), x.astype(dt)
    uf = getattr(ufuncs, name)
    if name in UNARY:
        want = old_path(name, x)
        same_bits(uf(x), want)
        same_bits(getattr(nks, name)(x), want)
        # strided, reversed
        same_bits(uf(x[::-3]), old_path(name, x[::-3]))
        return
    want = old_path(name, v, x)
    same_bits(uf(v, x), want)
    same_bits(getattr(nks, name)(v, x), want)
    # strided and reversed views, a transposed 2-D layout, broadcasting (stride 0), a scalar
    same_bits(uf(v[::2], x[::-2]), old_path(name, v[::2], x[::-2]))
    m = len(v) // 4 * 4
    v2, x2 = v[:m].reshape(4, -1).T, x[:m].reshape(-1, 4)
    same_bits(uf(v2, x2), old_path(name, v2, x2))
    vb, xb = v[:40, None], x[None, :50]
    same_bits(uf(vb, xb), old_path(name, vb, xb))
    same_bits(uf(dt(2.5), x), old_path(name, dt(2.5), x))


@pytest.mark.parametrize("name", ["iv", "log_kv", "iv_ratio", "k1e"])
def test_same_bits_large_arrays_across_threads(name, restore_threads):
    # > kChunk elements: the loop splits into chunks that run on the thread pool
    rng = np.random.default_rng(7)
    v, x = random_pairs(rng, 6000)
    uf = getattr(ufuncs, name)
    args = (x,) if name in UNARY else (v, x)
    want = old_path(name, *args)
    for n in (1, 2):
        numkern.set_num_threads(n)
        same_bits(uf(*args), want)
        same_bits(uf(*[a.reshape(16, -1).T for a in args]), want.reshape(16, -1).T)


def test_unaligned_and_byteswapped_inputs():
    rng = np.random.default_rng(3)
    v, x = random_pairs(rng, 100)
    buf = np.zeros(len(x) * 8 + 1, dtype=np.uint8)
    xu = buf[1:].view(np.float64)  # odd byte offset: not aligned
    xu[:] = x
    assert not xu.flags.aligned
    same_bits(ufuncs.kv(v, xu), old_path("kv", v, x))
    same_bits(ufuncs.i0e(xu), old_path("i0e", x))
    same_bits(ufuncs.log_iv(v.astype(">f8"), x), old_path("log_iv", v, x))
    rec = np.zeros(len(x), dtype=[("a", "u1"), ("x", "f8")])  # packed record field: stride 9
    rec["x"] = x
    same_bits(ufuncs.ive(v, rec["x"]), old_path("ive", v, x))


# ---- the dtype rule ------------------------------------------------------------------------
DT_CASES = [
    # (v, x) -> result dtype, as numkern._backend.result_dtype (integers and bool in float64)
    (np.float32, np.float32, np.float32), (np.float16, np.float16, np.float32),
    (np.float16, np.float32, np.float32), (np.float32, np.float64, np.float64),
    (np.int8, np.int8, np.float64), (np.uint16, np.float32, np.float64), (np.bool_, np.float32, np.float64),
    (np.int64, np.int64, np.float64), (np.int8, np.float16, np.float64), (np.longdouble, np.float32, np.float64),
]


@pytest.mark.parametrize("dv,dx,want", DT_CASES)
def test_dtype_rule_binary(dv, dx, want):
    v = np.array([0, 1, 3], dtype=dv)
    x = np.array([1, 2, 1], dtype=dx)
    for name in ("iv", "log_kv", "iv_ratio_c"):
        res = getattr(ufuncs, name)(v, x)
        assert res.dtype == want, (name, res.dtype)
        same_bits(res, old_path(name, v, x))
        same_bits(getattr(nks, name)(v, x), res)


@pytest.mark.parametrize("dx,want", [(np.float32, np.float32), (np.float16, np.float64), (np.int8, np.float64),
                                     (np.uint8, np.float64), (np.int64, np.float64), (np.bool_, np.float64)])
def test_dtype_rule_unary(dx, want):
    x = np.array([0, 1, 2], dtype=dx)
    for name in ("i0", "k1e"):
        res = getattr(ufuncs, name)(x)
        assert res.dtype == want
        same_bits(res, old_path(name, x))


def test_python_scalars_are_weak():
    x32 = np.array([0.5, 2.0], dtype=np.float32)
    assert ufuncs.iv(3, x32).dtype == np.float32
    assert ufuncs.iv(2.5, x32).dtype == np.float32
    assert nks.iv(True, x32).dtype == np.float32  # numkern: bool is a weak Python scalar too
    assert ufuncs.iv(np.float64(2.5), x32).dtype == np.float64  # numpy scalars are not weak
    assert ufuncs.iv(np.int8(2), x32).dtype == np.float64
    assert type(ufuncs.iv(1, 2.0)) is np.float64 and type(nks.kv(1, 2)) is np.float64
    assert ufuncs.k0(np.float32(2)).dtype == np.float32


def test_complex_and_non_numeric_rejected():
    for bad in (np.array([1 + 1j]), np.array(["a"]), np.array([None], dtype=object)):
        with pytest.raises(TypeError, match="not supported for the input types"):
            ufuncs.iv(1.0, bad)
        with pytest.raises(TypeError):
            ufuncs.k0(bad)
    # the public drop-ins still delegate complex input to SciPy
    sc = pytest.importorskip("scipy.special")
    np.testing.assert_array_equal(nks.iv(1.0, np.array([1 + 1j])), sc.iv(1.0, np.array([1 + 1j])))


# ---- ufunc options and methods --------------------------------------------------------------
@pytest.mark.parametrize("f", [ufuncs.kv, nks.kv])
def test_out_where_dtype_casting(f):
    v = np.array([0.5, 1.0, 2.0, 3.0])
    x = np.array([0.1, 1.0, 5.0, 50.0])
    ref = ufuncs.kv(v, x)
    out = np.full(4, -7.0)
    assert f(v, x, out=(out,)) is out
    same_bits(out, ref)
    out = np.full(4, -7.0)
    mask = np.array([True, False, True, False])
    f(v, x, out=out, where=mask)
    np.testing.assert_array_equal(out, np.where(mask, ref, -7.0))
    # dtype=float32 computes in the float32 loop
    r32 = f(v, x, dtype=np.float32)
    assert r32.dtype == np.float32
    same_bits(r32, ufuncs.kv(v.astype(np.float32), x.astype(np.float32)))
    # float32 out of a float64 computation: same_kind cast, as numpy
    o32 = np.empty(4, dtype=np.float32)
    f(v, x, out=o32)
    same_bits(o32, ref.astype(np.float32))
    with pytest.raises(TypeError):
        f(v, x, out=o32, casting="safe")
    with pytest.raises(TypeError):
        f(np.arange(4), x, casting="no")
    # out of a larger shape: the ufunc broadcasts the inputs to it; the public function wants out
    # of the broadcast shape (as before, and as for torch and CuPy)
    big = np.full((2, 4), -7.0)
    if f is ufuncs.kv:
        f(v, x, out=big)
        same_bits(big, np.broadcast_to(ref, (2, 4)))
    else:
        with pytest.raises(ValueError, match="out: shape"):
            f(v, x, out=big)
        assert (big == -7.0).all()


def test_public_out_errors_name_out_and_write_nothing():
    x = np.ones(3)
    for out, exc in ((np.full(4, -7.0), ValueError), (np.full(3, -7, dtype=np.int64), TypeError)):
        with pytest.raises(exc, match="out"):
            nks.iv(1.0, x, out=out)
        assert (out == -7).all()
    with pytest.raises(TypeError, match="out"):
        nks.iv(1.0, x, out=(np.empty(3), np.empty(3)))
    with pytest.raises(TypeError, match="out"):
        nks.i0(x, out=np.empty(3, dtype=np.int32))


def test_methods_outer_at_reduce_accumulate():
    v = np.array([0.0, 0.5, 2.0])
    x = np.array([0.25, 1.0, 3.0, 10.0])
    for name in ("iv", "log_kv", "iv_ratio"):
        uf, f = getattr(ufuncs, name), getattr(nks, name)
        same_bits(uf.outer(v, x), uf(v[:, None], x[None, :]))
        same_bits(f.outer(v, x), uf(v[:, None], x[None, :]))
    a = np.array([1.0, 2.0, 3.0, 4.0])
    b = a.copy()
    ufuncs.kv.at(b, [0, 2, 2], 1.5)
    np.testing.assert_array_equal(b, [ufuncs.kv(1.0, 1.5), 2.0, ufuncs.kv(ufuncs.kv(3.0, 1.5), 1.5), 4.0])
    c = np.array([0.1, 0.2, 0.3])
    ufuncs.k0.at(c, [1])
    np.testing.assert_array_equal(c, [0.1, ufuncs.k0(0.2), 0.3])
    w = np.array([0.5, 1.5, 2.0, 3.0])
    assert ufuncs.iv.reduce(w) == ufuncs.iv(ufuncs.iv(ufuncs.iv(0.5, 1.5), 2.0), 3.0)
    np.testing.assert_array_equal(ufuncs.kv.reduceat(w, [0, 2]), [ufuncs.kv(0.5, 1.5), ufuncs.kv(2.0, 3.0)])
    acc = ufuncs.kve.accumulate(w)
    assert acc[0] == 0.5 and acc[2] == ufuncs.kve(ufuncs.kve(0.5, 1.5), 2.0)
    # reductions over either axis of a 2-D array (accumulator at stride 0, or row by row in place)
    W = np.random.default_rng(1).uniform(0.5, 3.0, (5, 3000))
    for axis in (0, 1):
        Wm = np.moveaxis(W, axis, 0)
        want = Wm[0]
        for row in Wm[1:]:
            want = ufuncs.iv_ratio(want, row)
        same_bits(ufuncs.iv_ratio.reduce(W, axis=axis), want)


class Duck:
    """A minimal duck array: records the ufunc calls numpy hands to it (dask, xarray, pint do the same)."""

    calls = []

    def __init__(self, a):
        self.a = np.asarray(a)

    @property
    def dtype(self):
        return self.a.dtype

    @property
    def shape(self):
        return self.a.shape

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        Duck.calls.append((ufunc, method))
        unwrap = [i.a if isinstance(i, Duck) else i for i in inputs]
        return Duck(getattr(ufunc, method)(*unwrap, **kwargs))


@pytest.mark.parametrize("name", ["iv", "kve", "iv_ratio", "i1"])
def test_array_ufunc_dispatch(name):
    Duck.calls.clear()
    x = np.array([0.5, 2.0, 8.0])
    args = (x,) if name in UNARY else (1.5, x)
    duck_args = (Duck(x),) if name in UNARY else (1.5, Duck(x))
    for f in (getattr(ufuncs, name), getattr(nks, name)):
        res = f(*duck_args)
        assert isinstance(res, Duck)
        same_bits(res.a, getattr(ufuncs, name)(*args))
    assert Duck.calls == [(getattr(ufuncs, name), "__call__")] * 2


def test_dask_arrays_stay_lazy():
    da = pytest.importorskip("dask.array")
    rng = np.random.default_rng(5)
    x = 10 ** rng.uniform(-2, 3, 1000)
    dx = da.from_array(x, chunks=250)
    res = nks.kv(2.5, dx)
    assert isinstance(res, da.Array)
    same_bits(res.compute(scheduler="synchronous"), ufuncs.kv(2.5, x))
    res = ufuncs.log_iv(da.from_array(x[:, None], chunks=(250, 1)), dx)
    same_bits(res.compute(scheduler="synchronous"), ufuncs.log_iv(x[:, None], x))


def test_gil_released_in_large_loops():
    # numpy releases the GIL for loops over more than ~500 elements; the loop records what it saw
    x = np.linspace(0.0, 100.0, 20_000)
    ufuncs.iv(1.5, x)
    assert _core.special_ufunc._loop_held_gil() == 0
    ufuncs.i0e(x)
    assert _core.special_ufunc._loop_held_gil() == 0
    ufuncs.iv(1.5, x[:3])  # small loops keep it (numpy's threshold): the probe can tell the two apart
    assert _core.special_ufunc._loop_held_gil() == 1


def test_no_floating_point_warnings():
    # inf, 0 and NaN results come from the kernels' internal overflow / invalid operations; numpy
    # would turn leftover FP flags into RuntimeWarnings (SciPy's ufuncs raise none either)
    v = np.array([0.0, 0.5, 1e300, 5.0, 1.0])
    x = np.array([1000.0, -1.0, 1e-300, 0.0, np.inf])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(all="raise"):
            for name in ALL:
                uf = getattr(ufuncs, name)
                res = uf(x) if name in UNARY else uf(v, x)
                same_bits(res, old_path(name, x) if name in UNARY else old_path(name, v, x))


def test_torch_rejects_ufunc_options():
    torch = pytest.importorskip("torch")
    t = torch.tensor([1.0, 2.0], dtype=torch.float64)
    with pytest.raises(TypeError, match="where"):
        nks.iv(1.0, t, where=np.array([True, False]))
    with pytest.raises(TypeError, match="dtype"):
        nks.k0(t, dtype=np.float32)
    np.testing.assert_array_equal(nks.iv(1.0, t).numpy(), ufuncs.iv(1.0, t.numpy()))


def test_patching_scipy_with_numkern_keeps_complex_delegation(monkeypatch):
    # scipy.special.iv = numkern.special.iv, the drop-in use: complex input used to recurse forever
    sc = pytest.importorskip("scipy.special")
    orig = sc.iv
    monkeypatch.setattr(nks, "_SCIPY_UFUNCS", {})
    monkeypatch.setattr(sc, "iv", nks.iv)
    with pytest.raises(TypeError, match="z: complex arguments are delegated to scipy.special.iv"):
        nks.iv(1.0, 1j)
    monkeypatch.setattr(sc, "iv", orig)
    want = nks.iv(1.0, 1j + 0.5)  # the first complex call keeps SciPy's ufunc
    monkeypatch.setattr(sc, "iv", nks.iv)
    assert nks.iv(1.0, 1j + 0.5) == want == orig(1.0, 1j + 0.5)
