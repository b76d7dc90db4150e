"""The AMX paths of the OVP float GEMM (csrc/cpu/common/amx.hpp; packed.cpp matmul_panels_amx from
10 rows, matmul_few_amx for 2 .. 9 rows of 4-bit panels):
x split exactly into three bfloat16 planes, the panels' grid values (exact in bfloat16) as tiles,
float32 sums.  Contract: the same bound as the float path (|out - ref| <= 1e-5 (|x| @ |W|.T + |b|),
tests/olive/test_olive_fast_path.py), and a single product within 2^-22 of the exact value (the
split loses no bit of x; two pieces would leave 2^-16).  Every test runs on any CPU: where AMX is missing (or turned off) the float path answers and
the same assertions hold; the assertions that the tiles ran apply only where amx_available()."""
import os
import subprocess
import sys

import numpy as np
import pytest

from numkern import _core
from numkern._core import olive as C
from numkern.quant import olive as O
from olive_testutil import check_product, heavy_tailed_q


def _pack(q, layout):
    return C.prepack(q.codes, q.scales, True, q.shape[1], q.bits, O._NORMAL_CODE[q.normal], layout=layout)


@pytest.fixture
def amx_restore():
    yield
    _core.set_amx(True)
    _core.set_isa("auto")


def _run(x, pk, q, bias=None):
    """linear_packed, and whether the tiles ran (None where AMX is not available)."""
    before = _core._amx_products()
    out = C.linear_packed(x, pk, q.scales, True, bias)
    return out, (_core._amx_products() > before) if _core.amx_available() else None


def test_amx_switches(amx_restore):
    if _core.amx_available():
        assert _core.isa() == "avx512" and _core.amx_allowed()
    _core.set_amx(False)
    assert not _core.amx_available() and not _core.amx_allowed()
    _core.set_amx(True)
    assert _core.amx_allowed()
    _core.set_isa("avx2")  # a lower tier never runs tile instructions
    assert not _core.amx_available()


def test_amx_env_turns_off():
    code = "from numkern import _core; print(_core.amx_allowed(), _core.amx_available())"
    env = dict(os.environ, NUMKERN_AMX="0")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


@pytest.mark.parametrize("bits,normal,layout", [(4, "int", "panels4"), (4, "flint", "panels4"), (4, "flint", "panels"), (8, "int", "panels")])
@pytest.mark.parametrize("n,k", [(70, 129), (33, 31), (96, 384)])
def test_amx_matches_reference(amx_restore, bits, normal, layout, n, k):
    if layout == "panels4" and _core.isa() != "avx512":
        layout = "panels"
    q = heavy_tailed_q(n, k, bits, normal, n * k)
    pk = _pack(q, layout)
    rng = np.random.default_rng(k + n)
    bias = rng.standard_normal(n).astype(np.float32)
    for batch in (1, 2, 3, 5, 6, 8, 9, 10, 11, 12, 13, 16, 31, 32, 33, 47, 64, 250):
        x = (rng.standard_normal((batch, k)) * np.exp(rng.uniform(-8, 8, (batch, 1)))).astype(np.float32)
        got, tiles = _run(x, pk, q, bias)
        check_product(got, x, q, bias)
        # the float GEMM's tiles from 10 rows; the 4-bit panels' few-row tiles from 2 rows
        assert tiles is None or tiles == (batch >= 10 or (layout == "panels4" and batch >= 2))
        _core.set_amx(False)
        plain, tiles = _run(x, pk, q, bias)
        _core.set_amx(True)
        assert tiles in (None, False)
        check_product(plain, x, q, bias)


def test_amx_single_product_keeps_every_bit(amx_restore):
    """k = 1: out = (x g) (unit s), one product then the scale: two float32 roundings, and the
    reference's dequantized weight one more, so |err| <= 2^-22 |x w|; that needs all 24
    significand bits of x: bfloat16 x alone would err by up to 2^-8, two pieces by 2^-16."""
    q = heavy_tailed_q(40, 1, 4, "int", 3)
    deq = np.asarray(O.ovp_dequantize(q), np.float64)
    rng = np.random.default_rng(5)
    # significands with all 24 bits set at random, exponents over a wide range
    mant = rng.integers(2**23, 2**24, size=(64, 1)).astype(np.float64) / 2**23
    x = (mant * 2.0 ** rng.integers(-60, 60, size=(64, 1)) * rng.choice([-1, 1], (64, 1))).astype(np.float32)
    got, tiles = _run(x, _pack(q, "panels"), q)
    assert tiles in (None, True)
    ref = x.astype(np.float64) @ deq.T
    assert np.all(np.abs(got - ref) <= 2.0**-22 * np.abs(ref)), float(np.max(np.abs(got - ref) / np.abs(ref)))


@pytest.mark.parametrize("layout", ["panels", "panels4"])
def test_amx_row_chunks_and_non_finite(amx_restore, layout):
    """Batch chunks of 1024 rows and k chunks (x's planes of a k chunk within 768 KiB: 128 columns
    at 1024 rows, the whole 1500 at the 76 rows left; the sums kept across k chunks, outliers in
    every chunk) and infinities / NaN in x: a batch chunk that is not finite, and everything after
    it, go through the float path, so the result is the float path's (inf / NaN where it has
    them, finite rows within the bound)."""
    if layout == "panels4" and _core.isa() != "avx512":
        layout = "panels"
    q = heavy_tailed_q(40, 1500, 4, "int", 9)
    pk = _pack(q, layout)
    rng = np.random.default_rng(11)
    x = rng.standard_normal((1100, 1500)).astype(np.float32)
    got, tiles = _run(x, pk, q)
    assert tiles in (None, True)
    check_product(got, x, q)
    for row in (0, 1050):
        xb = x.copy()
        xb[row, 17] = np.inf
        xb[row + 5, 3] = np.nan
        got, _ = _run(xb, pk, q)
        _core.set_amx(False)
        plain = C.linear_packed(xb, pk, q.scales, True)
        _core.set_amx(True)
        bad = ~np.isfinite(plain)
        assert bad[row].any() and bad[row + 5].all()
        np.testing.assert_array_equal(np.isnan(got), np.isnan(plain))
        np.testing.assert_array_equal(got[bad], plain[bad])
        finite = np.all(np.isfinite(xb), axis=1)
        check_product(got[finite], x[finite], q)
        first = row // 1024 * 1024  # the float path from the bad row's batch chunk on: its bits
        np.testing.assert_array_equal(got[first:].view(np.uint32), plain[first:].view(np.uint32))


@pytest.mark.parametrize("layout,batch,n,k", [("panels", 100, 300, 200), ("panels4", 7, 300, 1000)])
def test_amx_threads_agree(amx_restore, layout, batch, n, k):
    """Two threads split the panels into more units (panels4 at 7 rows: the few-row tiles with two
    A tiles); the sums of each output are the same."""
    import numkern

    if layout == "panels4" and _core.isa() != "avx512":
        pytest.skip("panels4 is the avx512 tier's layout")
    q = heavy_tailed_q(n, k, 4, "int", 21)
    pk = _pack(q, layout)
    x = np.random.default_rng(3).standard_normal((batch, k)).astype(np.float32)
    before = numkern.get_num_threads()
    try:
        numkern.set_num_threads(1)
        one, _ = _run(x, pk, q)
        numkern.set_num_threads(2)
        two, _ = _run(x, pk, q)
    finally:
        numkern.set_num_threads(before)
    np.testing.assert_array_equal(one, two)
    check_product(one, x, q)


@pytest.mark.parametrize("bits,normal,act_bits", [(4, "int", 8), (4, "flint", 4), (8, "int", 8)])
@pytest.mark.parametrize("batch,n,k", [(15, 40, 100), (16, 33, 64), (17, 70, 129), (100, 96, 384), (33, 5, 1)])
def test_amx_int8_products_bitwise(amx_restore, bits, normal, act_bits, batch, n, k):
    """The activation-quantized matmul's integer dot products on AMX tiles (TDPBSSD, from 16 rows)
    are the same exact integers as the VNNI / AVX2 / portable ones: the outputs are bitwise equal,
    outliers of both operands included."""
    rng = np.random.default_rng(batch + n + k + bits)
    w = (rng.standard_t(2.5, size=(n, k)) * 0.1).astype(np.float32)
    w[:, :2] *= 50.0
    x = rng.standard_t(2.5, size=(batch, k)).astype(np.float32)
    x[0, :2] = [40.0, 45.0][:k]
    qw = O.ovp_quantize(w, bits=bits, normal=normal, axis="row", search=False)
    pk = C.prepack(qw.codes, qw.scales, True, k, bits, O._NORMAL_CODE[normal])
    alpha = float(np.std(x)) * 3.0
    outs = []
    for amx in (True, False):
        _core.set_amx(amx)
        out = np.full((batch, n), np.nan, np.float32)
        before = _core._amx_products()
        assert C.matmul_int8act(x, pk, qw.scales, out, True, alpha, act_bits, 0, False)
        ran = _core._amx_products() > before
        assert ran == (amx and batch >= 16 and _core.amx_available() and _core.isa() == "avx512") or not amx and not ran
        outs.append(out)
    np.testing.assert_array_equal(outs[0], outs[1])


def test_amx_int8_long_rows_extreme_codes(amx_restore):
    """k = 33000 with every code at +-127: int32 tile sums up to 33000 * 127^2 > 2^29, exact; 250
    rows are two chunks of A tiles under the 8 MiB budget (224 rows each)."""
    rng = np.random.default_rng(7)
    k = 33000
    w = np.where(rng.random((40, k)) < 0.5, -1.0, 1.0).astype(np.float32)
    x = np.where(rng.random((250, k)) < 0.5, -1.0, 1.0).astype(np.float32)
    x[0] = 1.0
    w[0] = 1.0
    qw = O.ovp_quantize(w, bits=8, axis="row", alpha=1.0)
    pk = C.prepack(qw.codes, qw.scales, True, k, 8, 0)
    outs = []
    for amx in (True, False):
        _core.set_amx(amx)
        out = np.empty((250, 40), np.float32)
        assert C.matmul_int8act(x, pk, qw.scales, out, True, 1.0, 8, 0, False)
        outs.append(out)
    np.testing.assert_array_equal(outs[0], outs[1])
    assert abs(outs[0][0, 0] - k) <= 1e-3 * k  # x = w = 1 (both exact on their grids): k


@pytest.mark.parametrize("normal", ["int", "flint"])
@pytest.mark.parametrize("n,k", [(33, 31), (70, 129), (64, 40), (96, 1536), (1, 8)])
def test_amx_few_rows(amx_restore, normal, n, k):
    """The few-row tiles of 4-bit panels (packed.cpp matmul_few_amx: x's three bfloat16 pieces as
    the rows of the A tiles, one up to 5 rows, two from 6; each 32-column step decoded into B tiles
    by vpermw; 2 .. 9 rows): within the float path's bound at every row count, with bias, columns past
    k (k not a multiple of 8 or 32), partial panels, outliers, and rows scaled over 17 binades; the
    pieces lose no bit of x (k = 1 below); a non-finite x gives the float path's result bitwise."""
    if _core.isa() != "avx512":
        pytest.skip("panels4 is the avx512 tier's layout")
    q = heavy_tailed_q(n, k, 4, normal, n * k + 1)
    pk = _pack(q, "panels4")
    rng = np.random.default_rng(n + k)
    bias = rng.standard_normal(n).astype(np.float32)
    for batch in range(1, 10):
        x = (rng.standard_normal((batch, k)) * np.exp(rng.uniform(-6, 6, (batch, 1)))).astype(np.float32)
        got, tiles = _run(x, pk, q, bias)
        assert tiles is None or tiles == (batch >= 2)
        check_product(got, x, q, bias)
        _core.set_amx(False)
        plain, _ = _run(x, pk, q, bias)
        _core.set_amx(True)
        check_product(plain, x, q, bias)
        xb = x.copy()
        xb[-1, k // 2] = np.inf if batch % 2 else np.nan
        got, tiles = _run(xb, pk, q, bias)
        assert tiles in (None, False)  # nothing on the tiles: the float path for the whole call
        _core.set_amx(False)
        plain, _ = _run(xb, pk, q, bias)
        _core.set_amx(True)
        np.testing.assert_array_equal(got.view(np.uint32), plain.view(np.uint32))


def test_amx_few_rows_keep_every_bit(amx_restore):
    """k = 1 through the few-row tiles: one exact product of a 24-bit x and a grid value, then the
    scale: within 2^-22 |x w| (two pieces of x would err by 2^-16)."""
    if _core.isa() != "avx512":
        pytest.skip("panels4 is the avx512 tier's layout")
    q = heavy_tailed_q(40, 1, 4, "int", 3)
    deq = np.asarray(O.ovp_dequantize(q), np.float64)
    rng = np.random.default_rng(8)
    for batch in (2, 5, 7, 9):
        mant = rng.integers(2**23, 2**24, size=(batch, 1)).astype(np.float64) / 2**23
        x = (mant * 2.0 ** rng.integers(-60, 60, size=(batch, 1)) * rng.choice([-1, 1], (batch, 1))).astype(np.float32)
        got, tiles = _run(x, _pack(q, "panels4"), q)
        assert tiles in (None, True)
        ref = x.astype(np.float64) @ deq.T
        assert np.all(np.abs(got - ref) <= 2.0**-22 * np.abs(ref)), float(np.max(np.abs(got - ref) / np.abs(ref)))

