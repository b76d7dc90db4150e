"""The 4-bit panel pack (numkern._core.olive.prepack(layout="panels4"): the codes at half a byte a
weight, decoded in registers by a 16-entry table) and the one-row GEMV over several panels at once
(csrc/cpu/olive/packed.inc, gemv_group), on every dispatcher tier (the `isa` fixture).

Bound (the float path's contract, _kernels.py): |out - (x @ ovp_dequantize(W).T + b)| <= 1e-5 *
(|x| @ |ovp_dequantize(W)|.T + |b|) elementwise.  Panel counts 1, 2, 5, 7, 8 cover GEMV groups
with all 4 (AVX-512) / 2 (AVX2) streams and with leftover panels; column counts not a multiple of 8
a partial last block; batches 1..8 and 33 the GEMV, the register-decoded tiles (below 32 rows)
and the float-buffer path (from 32 rows on)."""
import numpy as np
import pytest

from numkern._core import olive as C
from numkern.quant import olive as O
from olive_testutil import check_product, heavy_tailed_q


_q, _check = heavy_tailed_q, check_product


def _pack(q, layout):
    return C.prepack(q.codes, q.scales, True, q.shape[1], q.bits, O._NORMAL_CODE[q.normal], layout=layout)


def _outliers(pk):
    return int(np.frombuffer(pk[:64].tobytes(), np.int64)[3])  # PackHeader.n_outliers


@pytest.mark.parametrize("normal", ["int", "flint"])
@pytest.mark.parametrize("n,k", [(70, 129), (33, 1), (5, 300), (200, 77), (256, 40), (150, 64)])
def test_panels4_match_decode(isa, normal, n, k):
    q = _q(n, k, 4, normal, n * 7 + k)
    pk = _pack(q, "panels4")
    assert _outliers(pk) > 0 or k == 1
    rng = np.random.default_rng(k)
    bias = rng.standard_normal(n).astype(np.float32)
    for batch in (1, 2, 3, 4, 5, 8, 33):
        x = rng.standard_normal((batch, k)).astype(np.float32)
        out = np.full((batch, n), np.nan, np.float32)
        C.matmul_packed(x, pk, q.scales, out, True)
        _check(out, x, q)
        _check(C.linear_packed(x, pk, q.scales, True, bias), x, q, bias)


@pytest.mark.parametrize("n,k", [(200, 77), (70, 129), (256, 40)])
def test_one_row_gemv_int8_panels(isa, n, k):
    """The one-row GEMV on the int8 panel pack (8-bit and 4-bit codes)."""
    for bits in (8, 4):
        q = _q(n, k, bits, "int", n + k + bits)
        pk = _pack(q, "panels")
        assert _outliers(pk) > 0
        x = np.random.default_rng(bits).standard_normal((1, k)).astype(np.float32)
        bias = np.linspace(-1, 1, n, dtype=np.float32)
        _check(C.linear_packed(x, pk, q.scales, True), x, q)
        _check(C.linear_packed(x, pk, q.scales, True, bias), x, q, bias)


def test_panels4_layouts_and_tiers_agree():
    """panels4, panels and rows give the same product on every tier (up to summation order)."""
    from numkern._core import isa, set_isa

    q = _q(150, 333, 4, "flint", 4)
    x = np.random.default_rng(5).standard_normal((9, 333)).astype(np.float32)
    ref = C.linear_packed(x, _pack(q, "rows"), q.scales, True)
    before = isa()
    try:
        for tier in ("portable", "avx2", "avx512"):
            set_isa(tier)  # clamps to what the CPU has
            for layout in ("panels4", "panels"):
                for batch in (1, 4, 9):
                    got = C.linear_packed(x[:batch], _pack(q, layout), q.scales, True)
                    np.testing.assert_allclose(got, ref[:batch], rtol=1e-5, atol=1e-5)
    finally:
        set_isa(before)


def test_panels4_size_and_zero_pair():
    """Half a byte a weight for the normals; the never-produced byte 0x88 decodes to two zeros."""
    n, k = 40, 100
    q = _q(n, k, 4, "int", 6)
    p4, p8 = _pack(q, "panels4"), _pack(q, "panels")
    # 2 panels x k columns: 32 bytes a column (int8) against 16 a column padded to blocks of 8 (nibbles)
    assert p8.size - p4.size == 2 * (32 * k - 16 * 104)
    q.codes[3, :5] = 0x88
    q.codes[17, 10] = 0x88
    x = np.random.default_rng(7).standard_normal((3, k)).astype(np.float32)
    deq = np.asarray(O.ovp_dequantize(q))
    assert not deq[3, :10].any() and not deq[17, 20:22].any()
    for batch in (1, 3):
        _check(C.linear_packed(x[:batch], _pack(q, "panels4"), q.scales, True), x[:batch], q)


def test_panels4_bad_input():
    q8 = _q(6, 16, 8, "int", 8)
    with pytest.raises(ValueError, match="layout"):
        C.prepack(q8.codes, q8.scales, True, 16, 8, 0, layout="panels4")
    q = _q(6, 16, 4, "int", 9)
    pk = _pack(q, "panels4")
    x = np.ones((1, 16), np.float32)
    with pytest.raises(ValueError, match="rows"):  # the integer kernel reads the row layout only
        C.linear_int8act(x, pk, q.scales, True, 1.0, 8, 0, False)
    bad = pk.copy()
    bad[32] = 8  # the header's bits field: a 4-bit layout claiming 8-bit codes
    with pytest.raises(ValueError, match="format"):
        C.linear_packed(x, bad, q.scales, True)


torch = pytest.importorskip("torch")


@pytest.mark.parametrize("bits", [4, 8])
@pytest.mark.parametrize("bias", [True, False])
def test_layer_uses_its_layout(isa, bits, bias):
    """OVPLinear's float path packs 4-bit weights as panels4 on the AVX-512 tier, else (and 8-bit
    ones) as panels; b = 1..5."""
    from numkern._core import isa as active
    from numkern.quant.olive import _kernels

    layout = "panels4" if bits == 4 and active() == "avx512" else "panels"

    torch.manual_seed(bits)
    lin = torch.nn.Linear(77, 200, bias=bias)
    with torch.no_grad():
        lin.weight.copy_(torch.distributions.StudentT(2.5).sample(lin.weight.shape) * 0.05)  # outliers
    layer = O.OVPLinear.from_linear(lin, bits=bits)
    w = layer.dequantized_weight().double()
    for b in range(1, 6):
        x = torch.randn(b, 77)
        ref = x.double() @ w.T + (layer.bias.double() if bias else 0)
        bound = 1e-5 * (x.double().abs() @ w.abs().T + (layer.bias.double().abs() if bias else 0))
        assert bool(((layer(x).double() - ref).abs() <= bound + 1e-30).all())
    packs = _kernels._PREPARED[layer].packs
    assert set(packs) == {layout} and _outliers(packs[layout][1]) > 0


def test_one_row_gemv_threads_give_the_same_bytes(restore_threads):
    """Threads split the GEMV's panel groups; each output element is computed the same way."""
    import numkern

    q = _q(512, 600, 4, "flint", 10)  # 16 panels: 4 groups of 4 (AVX-512)
    x = np.random.default_rng(11).standard_normal((1, 600)).astype(np.float32)
    outs = []
    for threads in (1, 2):
        numkern.set_num_threads(threads)
        for layout in ("panels4", "panels"):
            outs.append(C.linear_packed(x, _pack(q, layout), q.scales, True))
    _check(outs[0], x, q)
    np.testing.assert_array_equal(outs[0], outs[2])
    np.testing.assert_array_equal(outs[1], outs[3])


@pytest.mark.parametrize("bits,layout", [(4, "panels4"), (4, "panels"), (8, "panels")])
@pytest.mark.parametrize("with_bias", [True, False])
def test_buffered_panels_direct_write_is_the_epilogue(isa, bits, layout, with_bias):
    """From 32 rows the float path sums each panel over chunks of 256 columns; on a full panel's
    last chunk its tiles write out = sum * unit * scale + bias themselves, a partial last panel
    through the sums and finish().  The same weight rows give the same bits either way: rows
    64..69 of a 70-row weight (partial panel) against the same rows in a 96-row weight (full
    panel), over 300 batch rows (two 256-row blocks) and 300 columns (two chunks); and every entry
    within the float path's bound."""
    from numkern import _core

    q = _q(96, 300, bits, "int", 3 + bits)
    pk96, rng = _pack(q, layout), np.random.default_rng(11)
    q70 = type(q)(**{**q.__dict__, "codes": q.codes[:70], "scales": q.scales[:70], "shape": (70, 300)})
    pk70 = _pack(q70, layout)
    x = rng.standard_normal((300, 300)).astype(np.float32)
    bias = rng.standard_normal(96).astype(np.float32) if with_bias else None
    try:
        _core.set_amx(False)  # (the float path, not the AMX tiles)
        y96 = C.linear_packed(x, pk96, q.scales, True, bias)
        y70 = C.linear_packed(x, pk70, q.scales[:70], True, None if bias is None else bias[:70])
    finally:
        _core.set_amx(True)
    assert np.array_equal(y70.view(np.uint32), y96[:, :70].view(np.uint32))
    _check(y96, x, q, bias)
