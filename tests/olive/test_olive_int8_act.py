"""The integer matmul of activation-quantized OVP layers (numkern._core.olive.matmul_int8act,
csrc/cpu/olive/int8act.hpp) and OVPLinear's use of it, on every dispatcher tier.

Bound (int8act.hpp): out = the exact product of the quantized operands, sum_k (g_a s_a)(g_w s_r),
up to one double and one float32 rounding: |out - exact| <= (2^-24 + 2^-52)|exact| (plus float32
underflow).  The exact value is formed here in float64 from the grid values recovered from
ovp_dequantize (grid values are multiples of 1/4 below 504 in magnitude, so the float64 sums of
their products are exact)."""
import numpy as np
import pytest

from numkern._core import olive as C
from numkern.quant import olive as O
from olive_testutil import exact_grid

ACT = [(4, "int"), (4, "flint"), (8, "int")]
WEIGHT = [(4, "int"), (4, "flint"), (8, "int")]
REL = 2.0 ** -24 + 2.0 ** -50  # the contract's 2^-24 + 2^-52, plus the float64 reference's own scaling
TINY = 2.0 ** -149


def _exact(x, alpha, act_bits, act_normal, keep, qw):
    qa = O.ovp_quantize(x, bits=act_bits, normal=act_normal, axis=None, alpha=alpha,
                        both_outliers="left" if keep else "larger")
    ga, sa = exact_grid(qa)
    gw, sw = exact_grid(qw)
    return (ga @ gw.T) * sa[0] * sw[None, :], qa


def _pack(q):
    return C.prepack(q.codes, q.scales, q.per_row, q.shape[1], q.bits, O._NORMAL_CODE[q.normal])


def _heavy(rng, shape, scale=1.0):
    return (rng.standard_t(2.5, size=shape) * scale).astype(np.float32)  # many outliers


@pytest.mark.parametrize("act_bits,act_normal", ACT)
@pytest.mark.parametrize("bits,normal", WEIGHT)
@pytest.mark.parametrize("batch,n,k", [(1, 9, 384), (3, 5, 67), (9, 6, 200), (4, 3, 1), (16, 33, 70),
                                         (47, 9, 129)])
def test_int8act_exact(isa, act_bits, act_normal, bits, normal, batch, n, k):
    rng = np.random.default_rng(batch * 100 + n * 10 + k + act_bits + bits)
    w = _heavy(rng, (n, k), 0.1)
    x = _heavy(rng, (batch, k))
    x[0, :2] = [40.0, 45.0][:k]  # a pair of two outliers (both rules), overlapping weight outliers
    w[:, :2] *= 50.0
    qw = O.ovp_quantize(w, bits=bits, normal=normal, axis="row", search=False)
    alpha = float(np.std(x)) * 3.0
    for keep in (False, True):
        exact, _ = _exact(x, alpha, act_bits, act_normal, keep, qw)
        out = np.full((batch, n), np.nan, np.float32)
        assert C.matmul_int8act(x, _pack(qw), qw.scales, out, True, alpha, act_bits,
                                O._NORMAL_CODE[act_normal], keep)
        err = np.abs(out.astype(np.float64) - exact)
        assert np.all(err <= REL * np.abs(exact) + TINY), err.max()


def test_int8act_long_rows_and_extremes(isa):
    # k beyond the 32768-column int32 block, every code at its extreme: no overflow
    rng = np.random.default_rng(7)
    k = 33000
    w = np.where(rng.random((5, k)) < 0.5, -1.0, 1.0).astype(np.float32)
    x = np.where(rng.random((2, k)) < 0.5, -1.0, 1.0).astype(np.float32)
    qw = O.ovp_quantize(w, bits=8, axis="row", alpha=1.0)
    exact, _ = _exact(x, 1.0, 8, "int", False, qw)
    out = np.empty((2, 5), np.float32)
    assert C.matmul_int8act(x, _pack(qw), qw.scales, out, True, 1.0, 8, 0, False)
    assert np.all(np.abs(out - exact) <= REL * np.abs(exact) + TINY)
    same = np.ones((1, k), np.float32)  # sum of k products 127 * 127 (units of 1/4): > 2^29
    exact, _ = _exact(same, 1.0, 8, "int", False, O.ovp_quantize(same, bits=8, axis="row", alpha=1.0))
    out = np.empty((1, 1), np.float32)
    qs = O.ovp_quantize(same, bits=8, axis="row", alpha=1.0)
    assert C.matmul_int8act(same, _pack(qs), qs.scales, out, True, 1.0, 8, 0, False)
    assert abs(out[0, 0] - exact[0, 0]) <= REL * abs(exact[0, 0])


def test_int8act_bad_input():
    rng = np.random.default_rng(1)
    qw = O.ovp_quantize(rng.standard_normal((4, 16)).astype(np.float32), search=False)
    pk = _pack(qw)
    x = rng.standard_normal((2, 16)).astype(np.float32)
    out = np.full((2, 4), 7.0, np.float32)
    for bad in (np.nan, np.inf, 2e37):
        xb = x.copy()
        xb[1, 3] = bad
        assert not C.matmul_int8act(xb, pk, qw.scales, out, True, 1.0, 8, 0, False)
        assert np.all(out == 7.0)  # nothing written
    with pytest.raises(ValueError, match="act_alpha"):
        C.matmul_int8act(x, pk, qw.scales, out, True, 0.0, 8, 0, False)
    with pytest.raises(ValueError, match="normal"):
        C.matmul_int8act(x, pk, qw.scales, out, True, 1.0, 8, 1, False)
    with pytest.raises(ValueError, match="x"):
        C.matmul_int8act(x[:, :15].copy(), pk, qw.scales, out, True, 1.0, 8, 0, False)
    with pytest.raises(ValueError, match="packed"):
        C.matmul_int8act(x, pk[:-1], qw.scales, out, True, 1.0, 8, 0, False)


@pytest.mark.parametrize("act_bits", [4, 8])
@pytest.mark.parametrize("bits", [4, 8])
def test_ovplinear_takes_integer_path(torch, isa, monkeypatch, act_bits, bits):
    from numkern.quant.olive import _torch as T

    rng = np.random.default_rng(act_bits * 10 + bits)
    lin = torch.nn.Linear(48, 20, bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.from_numpy(_heavy(rng, (20, 48), 0.1)))
    layer = O.OVPLinear.from_linear(lin, bits=bits, act_bits=act_bits)
    x = torch.from_numpy(_heavy(rng, (2, 5, 48)))
    O.calibrate(layer, [x])
    fake = layer._quantize_act(x.reshape(-1, 48), fake=True)  # the float path's operand
    float_path = (fake.double() @ layer.dequantized_weight().double().T).reshape(2, 5, 20)
    with torch.no_grad():
        ref_exact, _ = _exact(x.reshape(-1, 48).numpy(), float(layer.act_alpha), act_bits, layer.act_normal,
                              False, layer.quantized_weight())

    def no_fake(*a, **kw):
        raise AssertionError("fake quantization ran on the integer path")

    monkeypatch.setattr(T, "ovp_quantize", no_fake)
    with torch.no_grad():
        y = layer(x)
    ref = torch.from_numpy(ref_exact).reshape(2, 5, 20)
    err = (y.double() - ref).abs()
    assert torch.all(err <= REL * ref.abs() + TINY)
    # the float path (fake-quantized x in float32 @ dequantized W) differs by float32 roundings only
    mag = fake.double().abs() @ layer.dequantized_weight().double().abs().T
    assert torch.all((y.double() - float_path).abs() <= 1e-6 * mag.reshape(2, 5, 20) + 1e-6)


def test_ovplinear_nonfinite_input_raises(torch):
    layer = O.OVPLinear.from_linear(torch.nn.Linear(8, 3), bits=4, act_bits=8)
    O.calibrate(layer, [torch.randn(4, 8)])
    x = torch.randn(2, 8)
    x[1, 2] = float("nan")
    with pytest.raises(ValueError, match="NaN or infinite"):
        layer(x)


def test_ovplinear_grad_keeps_fake_quant(torch):
    layer = O.OVPLinear.from_linear(torch.nn.Linear(8, 3), bits=4, act_bits=8)
    O.calibrate(layer, [torch.randn(4, 8)])
    x = torch.randn(2, 8, requires_grad=True)
    layer(x).sum().backward()  # straight-through estimator on the float path
    assert x.grad is not None and torch.isfinite(x.grad).all()


@pytest.mark.parametrize("normal,folded", [("int", (48, 64, 96, 128, 192, 256, 384)),
                                           ("flint", (48, 64, 96, 128, 192))])
def test_rows_pack_folds_whole_unit_outliers(normal, folded):
    """The rows-layout pack (the integer kernel's) holds a 4-bit outlier in its int8 rows when its
    grid value is a whole number of units within +-127 (packed.hpp folds(): every abfloat4
    outlier with int4 normals, all but 256 and 384 with flint4 normals); its sparse list keeps the
    rest.  The panel layouts keep every outlier sparse.  Checked through the packs' headers
    (n_outliers, the fourth int64) against the outliers' grid values."""
    rng = np.random.default_rng(7)
    w = _heavy(rng, (24, 160), 0.05)
    w[:, :8] *= 40.0
    qw = O.ovp_quantize(w, bits=4, normal=normal, axis="row", alpha=0.15)  # (a low threshold:
    g, _ = exact_grid(qw)                                                       # every outlier value)
    out = np.abs(g) > 32.0
    assert set(np.unique(np.abs(g[out]))) == {48.0, 64.0, 96.0, 128.0, 192.0, 256.0, 384.0}
    sparse = int((out & ~np.isin(np.abs(g), folded)).sum())
    n_out = lambda layout: int(np.frombuffer(  # noqa: E731
        C.prepack(qw.codes, qw.scales, True, 160, 4, O._NORMAL_CODE[normal], layout)[:32].tobytes(),
        np.int64)[3])
    assert n_out("panels") == out.sum()
    assert n_out("rows") == sparse
    assert (sparse == 0) == (normal == "int")
    # the integer kernel on the folded pack: still the exact product up to the contract's rounding
    x = _heavy(rng, (5, 160))
    alpha = float(np.std(x)) * 3.0
    exact, _ = _exact(x, alpha, 8, "int", False, qw)
    o = np.full((5, 24), np.nan, np.float32)
    assert C.matmul_int8act(x, _pack(qw), qw.scales, o, True, alpha, 8, 0, False)
    assert np.all(np.abs(o - exact) <= REL * np.abs(exact) + TINY)


@pytest.mark.parametrize("bits,normal,act_bits,act_normal", [(4, "int", 8, "int"), (4, "flint", 4, "flint"),
                                                             (8, "int", 8, "int")])
@pytest.mark.parametrize("batch,n,k", [(33, 33, 67), (40, 70, 384), (32, 32, 129), (45, 5, 1), (50, 64, 2),
                                         (13, 9, 20), (8, 40, 33), (5, 9, 20), (20, 17, 35)])
def test_int8act_same_bits_on_every_tier(bits, normal, act_bits, act_normal, batch, n, k):
    """Without AMX, the integer dot products of each tier (AVX-512 VNNI panels of 32 weight rows
    and 12 batch rows; on the avx2 tier AVX-VNNI panels where the CPU has it and vpmaddubsw panels,
    both run here; the portable loop) are the same exact integers, so the outputs are bitwise
    equal; batch, n and k not multiples of the panel sizes or of 4 (the panels from 8 batch rows on
    AVX-512 VNNI, 16 with AVX-VNNI, 32 with vpmaddubsw; below them 4 x 4 blocks)."""
    from numkern import _core

    rng = np.random.default_rng(batch * 7 + n + k + bits)
    w = _heavy(rng, (n, k), 0.1)
    w[:, :2] *= 50.0
    x = _heavy(rng, (batch, k))
    x[0, :2] = [40.0, 45.0][:k]
    qw = O.ovp_quantize(w, bits=bits, normal=normal, axis="row", search=False)
    alpha = float(np.std(x)) * 3.0
    exact, _ = _exact(x, alpha, act_bits, act_normal, False, qw)
    outs = {}
    try:
        _core.set_amx(False)
        for tier, avxvnni in (("portable", True), ("avx2", True), ("avx2", False), ("avx512", True)):
            if not _core.isa_supported(tier):
                continue
            _core.set_isa(tier)
            has = C._set_avxvnni(avxvnni)
            out = np.full((batch, n), np.nan, np.float32)
            assert C.matmul_int8act(x, _pack(qw), qw.scales, out, True, alpha, act_bits,
                                    O._NORMAL_CODE[act_normal], False)
            outs[(tier, avxvnni and has)] = out
    finally:
        C._set_avxvnni(True)
        _core.set_amx(True)
        _core.set_isa("auto")
    ref = outs[("portable", False)] if ("portable", False) in outs else outs[("portable", True)]
    for out in outs.values():
        np.testing.assert_array_equal(out, ref)
    err = np.abs(ref.astype(np.float64) - exact)
    assert np.all(err <= REL * np.abs(exact) + TINY), err.max()
