"""The hand-over of arrays to the kernels (numkern._backend.Context.call / kernel_ready) and the
conversion of torch inputs (Context.input).

- An array the native view cannot read in place (data or strides not multiples of the item size,
  big-endian) is copied before it reaches C++; an aligned one is handed over as it is (no copy).
  Unaligned arrays come e.g. from pickle protocol 5 out-of-band buffers, as dask.distributed ships
  model attributes between processes (tests/distributed/test_pickle_unaligned.py).
- A copy the kernel wrote to (an output) is written back to the caller's array.
- bfloat16 torch tensors (no numpy counterpart) are widened to float32, as float16 is.
"""
from __future__ import annotations

import types

import numpy as np
import pytest

from numkern import _backend as B
from numkern import _core
from numkern._backend import kernel_ready


def _at_offset(a, offset):
    """A copy of `a` whose data start `offset` bytes into a fresh buffer (unaligned for offset % item)."""
    a = np.array(a, order="C")  # (ascontiguousarray would make a 0-d array 1-d)
    store = np.zeros(a.nbytes + 16, np.uint8)
    base = (-store.ctypes.data) % 16  # a 16-aligned start, then the offset
    view = store[base + offset:base + offset + a.nbytes].view(a.dtype).reshape(a.shape)
    view[...] = a
    return view


def _readable_in_place(a):
    try:
        _core._view_info(a, "a")
        return True
    except (TypeError, ValueError):
        return False


@pytest.mark.parametrize("a", [
    np.arange(12.0).reshape(3, 4),
    np.arange(12.0).reshape(3, 4)[:, ::2],           # strided view
    np.arange(12.0, dtype=np.float32).reshape(4, 3).T,
    np.broadcast_to(np.arange(3.0), (4, 3)),           # stride 0, read-only
    np.array(2.5),                                     # 0-d
    np.empty((0, 3)),
    np.arange(5, dtype=np.int64),
    np.ones(7, dtype=bool),
    np.arange(7, dtype=np.uint8)[1:],                  # 1-byte items are always aligned
])
def test_aligned_arrays_are_handed_over_as_they_are(a):
    assert kernel_ready(a) is a
    assert _readable_in_place(a)


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.int64, np.int32])
@pytest.mark.parametrize("offset", [1, 2, 4])
def test_unaligned_arrays_are_copied(dtype, offset):
    rng = np.random.default_rng(0)
    a = (rng.standard_normal((5, 3)) * 100).astype(dtype)
    u = _at_offset(a, offset)
    if offset % np.dtype(dtype).itemsize == 0:  # e.g. float32 at 4 bytes: aligned, no copy
        assert kernel_ready(u) is u
        return
    assert not _readable_in_place(u)
    r = kernel_ready(u)
    assert r is not u and r.dtype == a.dtype and r.flags.c_contiguous and _readable_in_place(r)
    np.testing.assert_array_equal(r, a)


def test_unaligned_empty_and_zero_d_arrays_are_copied():
    store = bytearray(17)
    empty = np.frombuffer(memoryview(store)[1:1], dtype=np.float64).reshape(0, 3)  # an empty unpickled attribute
    zero_d = _at_offset(np.array(3.5), 3)
    for u in (empty, zero_d):
        assert u.__array_interface__["data"][0] % 8 and not _readable_in_place(u)
        r = kernel_ready(u)
        assert r is not u and r.shape == u.shape and _readable_in_place(r)
        np.testing.assert_array_equal(r, u)


def test_stride_not_a_multiple_of_the_item_size_is_copied():
    buf = np.arange(40, dtype=np.uint8)
    a = np.lib.stride_tricks.as_strided(buf.view(np.float64), shape=(3,), strides=(12,))
    assert not _readable_in_place(a)
    r = kernel_ready(a)
    assert r is not a and r.strides == (8,)
    np.testing.assert_array_equal(r, a)


def test_big_endian_arrays_are_copied_in_native_order():
    a = np.arange(6.0).reshape(2, 3).astype(">f8")
    r = kernel_ready(a)
    assert r.dtype == np.float64 and r.dtype.isnative and _readable_in_place(r)
    np.testing.assert_array_equal(r, a)


def _recording_context(monkeypatch, ctx):
    seen = []

    def fn(*args, **kwargs):
        seen.append((args, kwargs))
        for a in list(args) + list(kwargs.values()):
            if isinstance(a, np.ndarray) and a.dtype == np.int64:  # the "output": written by the kernel
                a[...] = 7
        return "done"

    monkeypatch.setattr(ctx, "module", lambda family: types.SimpleNamespace(fn=fn))
    return seen


def test_call_copies_only_what_the_kernel_cannot_read(monkeypatch):
    ctx = B.Context(np.ones(2))
    seen = _recording_context(monkeypatch, ctx)
    aligned, unaligned = np.arange(4.0), _at_offset(np.arange(4.0), 1)
    swapped = np.arange(3.0).astype(">f8")
    assert ctx.call("fam", "fn", aligned, unaligned, [aligned, unaligned, 3], 2.0, w=swapped, none=None) == "done"
    (args, kwargs), = seen
    assert args[0] is aligned  # no copy of an aligned array
    assert args[1] is not unaligned and _readable_in_place(args[1])
    assert args[2][0] is aligned and args[2][1] is not unaligned and args[2][2] == 3 and args[3] == 2.0
    assert kwargs["w"].dtype.isnative and kwargs["none"] is None
    np.testing.assert_array_equal(args[1], np.arange(4.0))
    np.testing.assert_array_equal(kwargs["w"], np.arange(3.0))


def test_call_writes_copied_outputs_back(monkeypatch):
    ctx = B.Context(np.ones(2))
    _recording_context(monkeypatch, ctx)
    out_unaligned = _at_offset(np.zeros(5, np.int64), 3)
    out_swapped = np.zeros(4, ">i8")
    inp = _at_offset(np.arange(3.0), 5)
    inp.flags.writeable = False
    ctx.call("fam", "fn", inp, out_unaligned, out=out_swapped)
    np.testing.assert_array_equal(out_unaligned, 7)
    np.testing.assert_array_equal(out_swapped, 7)
    np.testing.assert_array_equal(inp, np.arange(3.0))


def test_real_kernel_on_unaligned_input_and_output():
    """vmf.row_norm2 through Context.call: an unaligned x and an unaligned out (written back)."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((6, 4))
    ctx = B.Context(x)
    ref = np.empty(6)
    ctx.call("vmf", "row_norm2", x, ref)
    xu, out = _at_offset(x, 1), _at_offset(np.zeros(6), 3)
    ctx.call("vmf", "row_norm2", xu, out)
    np.testing.assert_array_equal(out, ref)
    np.testing.assert_allclose(ref, (x * x).sum(1), rtol=1e-14)


def test_special_numpy_path_unaligned_and_big_endian():
    from numkern import special as sp

    rng = np.random.default_rng(2)
    v, x = rng.uniform(0.5, 5, 7), rng.uniform(0.1, 20, 7)
    ref = sp.log_iv(v, x)
    np.testing.assert_array_equal(sp.log_iv(_at_offset(v, 1), _at_offset(x, 3)), ref)
    np.testing.assert_array_equal(sp.log_iv(v.astype(">f8"), x), ref)
    out = _at_offset(np.zeros(7), 5)
    sp.log_iv(v, x, out=out)
    np.testing.assert_array_equal(out, ref)


# ---- bfloat16 torch tensors ---------------------------------------------------------------------
def test_input_widens_bfloat16_to_float32(torch):
    t = torch.tensor([1.0, -2.5, 3.0], dtype=torch.bfloat16)
    ctx = B.Context(t)
    assert ctx.result_dtype(t) == np.float32
    a = ctx.input(t, np.float32, "x")
    assert isinstance(a, np.ndarray) and a.dtype == np.float32
    np.testing.assert_array_equal(a, [1.0, -2.5, 3.0])
    assert ctx.input(t, np.float64, "x").dtype == np.float64


def test_vmf_fit_bfloat16_equals_float32(torch):
    from numkern import vmf

    g = torch.Generator().manual_seed(3)
    x = torch.nn.functional.normalize(torch.randn(20, 3, generator=g), dim=1).bfloat16()
    got, ref = vmf.fit(x, normalize=True), vmf.fit(x.float(), normalize=True)
    assert got.mu.dtype == torch.float32 and got.kappa.dtype == torch.float32  # float16/bfloat16 -> float32
    assert torch.equal(got.mu, ref.mu) and torch.equal(got.kappa, ref.kappa)


def test_vmf_logpdf_bfloat16_equals_float32(torch):
    from numkern import vmf

    # rows that are unit vectors exactly in bfloat16 (the unit check is the float32 one, 1e-4)
    x = torch.tensor([[1.0, 0, 0, 0], [0, -1.0, 0, 0], [0.5, 0.5, 0.5, 0.5], [0, 0.5, -0.5, 0.5 ** 0.5]])
    x = x.bfloat16()
    d = vmf.VonMisesFisher(torch.tensor([1.0, 0, 0, 0]), torch.tensor(2.0))
    got, ref = d.logpdf(x), d.logpdf(x.float())
    assert got.dtype == torch.float32 and torch.equal(got, ref)
    d16 = vmf.VonMisesFisher(torch.tensor([1.0, 0, 0, 0]).bfloat16(), torch.tensor(2.0).bfloat16())
    assert torch.equal(d16.logpdf(x), ref)
    assert torch.equal(vmf.log_normalizer(4, torch.tensor([2.0]).bfloat16()),
                       vmf.log_normalizer(4, torch.tensor([2.0])))
