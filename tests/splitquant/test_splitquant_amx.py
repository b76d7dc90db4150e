"""The AMX path of the fused SplitQuant matmul (csrc/cpu/splitquant/splitquant.cpp,
fused_linear_amx; csrc/cpu/common/amx.hpp): from 32 batch rows, where AMX is available, x and the
decoded weights W are each split exactly into three bfloat16 pieces and the six piece products
(i, j), i + j <= 2, summed in float32 by the tiles.

Contract (docs/splitquant.md): the float path's bound |y - (x W^T + b)| <= 1e-5 (|x| |W|^T + |b|)
elementwise (tests/splitquant/test_splitquant_fast_path.py), and a single product within 2^-20 of
the exact value (the three dropped piece products are below 2^-21 |x w|; two pieces of either
operand would leave ~2^-15).  A non-finite x or a corrupt cluster id (a NaN weight) gives what the
float path gives.  Every test runs on any CPU: where AMX is missing or turned off the float path
answers and the same assertions hold; the assertions that the tiles ran apply only where
amx_available()."""
import numpy as np
import pytest
import torch

from numkern import _core
from numkern._core import splitquant as C
from numkern.quant import splitquant


@pytest.fixture
def amx_restore():
    yield
    _core.set_amx(True)


def _layer(k, n, bits, gs, seed, kk=3):
    torch.manual_seed(seed)
    lin = torch.nn.Linear(k, n)
    return splitquant(torch.nn.Sequential(lin), bits=bits, k=kk, fused=True, group_size=gs)[0]


def _parts(m):
    return [t.numpy() for t in (m.codes, m.clusters, m.scales, m.offsets)]


def _run(x, m, parts=None, bias=True):
    """fused_linear, and whether the tiles ran (None where AMX is not available)."""
    parts = _parts(m) if parts is None else parts
    y = np.empty((x.shape[0], parts[2].shape[0]), np.float32)
    before = _core._amx_products()
    C.fused_linear(x, *parts, m.bias.numpy() if bias else None, y, m.group_size, m.bits)
    return y, (_core._amx_products() > before) if _core.amx_available() else None


def _check(y, x, m, bias=True):
    w = m.dequantized_weight().double().numpy()
    b = m.bias.double().numpy() if bias else np.zeros(w.shape[0])
    xd = x.astype(np.float64)
    ref = xd @ w.T + b
    bound = 1e-5 * (np.abs(xd) @ np.abs(w).T + np.abs(b)) + 1e-30
    assert np.all(np.abs(y - ref) <= bound)


@pytest.mark.parametrize("bits", [2, 4, 8])
@pytest.mark.parametrize("k,n,gs", [(384, 70, 128), (1536, 40, 64), (456, 33, 24), (48, 9, 16)])
def test_amx_matches_reference(amx_restore, bits, k, n, gs):
    """Batches below and above the 32-row switch, across the 32-row blocks, the 1024-row batch
    chunks and several k chunks (1536 columns at 208+ rows: three; groups of 24: chunks of 96
    columns' multiples and a last partial step), output widths not a multiple of 32."""
    m = _layer(k, n, bits, gs, k + n + bits)
    rng = np.random.default_rng(k + n)
    for rows in (16, 31, 32, 33, 64, 208, 300) + ((1100,) if k == 384 else ()):
        x = (rng.standard_normal((rows, k)) * np.exp(rng.uniform(-8, 8, (rows, 1)))).astype(np.float32)
        got, tiles = _run(x, m)
        _check(got, x, m)
        assert tiles is None or tiles == (rows >= 32)
        _core.set_amx(False)
        plain, tiles = _run(x, m)
        _core.set_amx(True)
        assert tiles in (None, False)
        _check(plain, x, m)


def test_amx_single_product_keeps_every_bit(amx_restore):
    """One nonzero input column: y = x w, a single product.  Both operands carry 24 significant
    bits; the six piece products leave < 2^-21 |x w|, the float32 sums a few 2^-24 more.  Three
    pieces of x against a bfloat16 w (OVP's tiles) would err by up to 2^-8, two pieces of either by
    2^-15."""
    m = _layer(32, 50, 4, 16, 7)
    w = m.dequantized_weight().double().numpy()
    rng = np.random.default_rng(3)
    x = np.zeros((48, 32), np.float32)
    x[:, 5] = rng.uniform(1, 2, 48).astype(np.float32) * np.float32(1 + 2.0 ** -23)  # full significands
    got, tiles = _run(x, m, bias=False)
    assert tiles is None or tiles
    exact = x[:, 5:6].astype(np.float64) * w[:, 5][None, :]  # exact in float64 (24 + 24 bits)
    assert np.all(np.abs(got - exact) <= 2.0 ** -20 * np.abs(exact))


@pytest.mark.parametrize("rows,bad_row", [(40, 5), (1100, 1050)])
def test_amx_nonfinite_x_takes_the_float_path(amx_restore, rows, bad_row):
    """An infinity in x: that row's outputs are what the float path gives (inf / nan), bitwise, for
    the rows of its 1024-row batch chunk and after; earlier chunks keep the tiles' result."""
    m = _layer(384, 70, 4, 128, 1)
    rng = np.random.default_rng(rows)
    x = rng.standard_normal((rows, 384)).astype(np.float32)
    x[bad_row, 3] = np.inf
    got, _ = _run(x, m)
    _core.set_amx(False)
    plain, _ = _run(x, m)
    _core.set_amx(True)
    first = bad_row // 1024 * 1024
    assert np.array_equal(got[first:].view(np.uint32), plain[first:].view(np.uint32))
    assert not np.isfinite(got[bad_row]).any() and np.isfinite(np.delete(got, bad_row, axis=0)).all()
    _check(got[:first], x[:first], m)


def test_amx_corrupt_id_gives_nan_in_its_output_only(amx_restore):
    """Cluster id 3 in a k = 3 layer decodes to NaN: the tiles' path leaves the float path the
    call, so that output column is NaN and the others are finite and within the bound."""
    m = _layer(256, 70, 4, 128, 2)
    parts = _parts(m)
    ids = parts[1].copy()
    ids[2, 1] |= 0b11 << 4  # weight (2, 6): id 3
    x = np.random.default_rng(0).standard_normal((64, 256)).astype(np.float32)
    got, _ = _run(x, m, [parts[0], ids, parts[2], parts[3]])
    _core.set_amx(False)
    plain, _ = _run(x, m, [parts[0], ids, parts[2], parts[3]])
    _core.set_amx(True)
    assert np.array_equal(got.view(np.uint32), plain.view(np.uint32))
    assert np.isnan(got[:, 2]).all() and np.isfinite(np.delete(got, 2, axis=1)).all()


def test_amx_threads_give_the_same_bits(amx_restore):
    """Units of panels over threads: each unit's sums do not depend on the thread count."""
    import numkern

    m = _layer(1536, 200, 4, 64, 4)
    x = np.random.default_rng(5).standard_normal((130, 1536)).astype(np.float32)
    before = numkern.get_num_threads()
    try:
        numkern.set_num_threads(1)
        one, _ = _run(x, m)
        numkern.set_num_threads(2)
        two, _ = _run(x, m)
    finally:
        numkern.set_num_threads(before)
    assert np.array_equal(one.view(np.uint32), two.view(np.uint32))
    _check(two, x, m)
