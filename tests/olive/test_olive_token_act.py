"""Activations quantized per token (OVPLinear(..., act_bits=8, act_granularity="token"), issue #15):
each row of the GEMM operand on its own symmetric integer grid at every call, no calibration, and on
CPU without gradient the product in integers (numkern._core.olive.matmul_int8act(per_token=True),
csrc/cpu/olive/int8act.hpp).

Contract: codes a_bk = round_half_even(x_bk * (qmax / m_b)) in float64, m_b = max_k |x_bk|,
qmax = 2^(act_bits-1) - 1, scale s_b = m_b / qmax (float64); out = the exact product
sum_k (a_bk s_b)(g_rk s_r) up to (2^-24 + 2^-51)|exact| (plus float32 underflow; s_b = m_b / qmax
itself rounded in float64, the reason for 2^-51 where the per-tensor contract has 2^-52).  The exact value is
formed here in float64 from codes computed with numpy (grid values of W recovered from
ovp_dequantize are multiples of 1/4 below 504, so the float64 sums of integer codes times them are
exact); the torch float path's codes are checked against the same numpy codes."""
import warnings

import numpy as np
import pytest

from numkern._core import olive as C
from numkern.quant import olive as O
from olive_testutil import exact_grid

WEIGHT = [(4, "int"), (4, "flint"), (8, "int")]
REL = 2.0 ** -24 + 2.0 ** -50  # the contract's 2^-24 + 2^-51, plus the float64 reference's own scaling
TINY = 2.0 ** -149


def _codes(x, act_bits):
    """numpy's per-token codes and scales of x (float32 [rows, k])."""
    qmax = float(2 ** (act_bits - 1) - 1)
    m = np.abs(x).max(axis=1).astype(np.float64)
    inv = np.divide(qmax, m, out=np.zeros_like(m), where=m > 0)
    a = np.clip(np.rint(x.astype(np.float64) * inv[:, None]), -qmax, qmax)
    return a, m / qmax


def _exact(x, act_bits, qw):
    a, sa = _codes(x, act_bits)
    g, sw = exact_grid(qw)
    return (a @ g.T) * sa[:, None] * sw[None, :]


def _pack(q):
    return C.prepack(q.codes, q.scales, q.per_row, q.shape[1], q.bits, O._NORMAL_CODE[q.normal])


def _operands(rng, batch, n, k, bits, normal):
    w = (rng.standard_t(2.5, size=(n, k)) * 0.1).astype(np.float32)
    w[:, :2] *= 50.0  # weight outliers (sparse terms, or folded into the int8 rows)
    qw = O.ovp_quantize(w, bits=bits, normal=normal, axis="row", search=False)
    x = rng.standard_t(2.5, size=(batch, k)).astype(np.float32)
    x *= np.logspace(-30, 30, batch, dtype=np.float64).astype(np.float32)[:, None]  # a scale per row
    if batch > 2:
        x[1] = 0.0  # a row of zeros: codes 0, output 0
    if batch > 3 and k >= 4:
        x[2, :4] = [254.0, 1.0, 3.0, -5.0]  # ties: 0.5 -> 0, 1.5 -> 2, -2.5 -> -2 (half to even, act_bits 8)
        x[2, 4:] = 0.0
    if batch > 4:
        x[3] *= np.float32(2.0 ** -140)  # row max subnormal
    return x, qw


@pytest.mark.parametrize("act_bits", [4, 8])
@pytest.mark.parametrize("bits,normal", WEIGHT)
@pytest.mark.parametrize("batch,n,k", [(1, 9, 384), (5, 5, 67), (9, 6, 200), (4, 3, 1), (17, 33, 70),
                                         (40, 40, 129), (50, 9, 384)])
@pytest.mark.parametrize("amx", [True, False])
def test_token_exact(isa, act_bits, bits, normal, batch, n, k, amx):
    """Every tier and kernel (4 x 4 blocks, VNNI / AVX-VNNI / vpmaddubsw panels, AMX tiles from 16
    rows where the CPU has them): within the contract of the exact product."""
    from numkern import _core

    rng = np.random.default_rng(batch * 100 + n * 10 + k + act_bits + bits)
    x, qw = _operands(rng, batch, n, k, bits, normal)
    exact = _exact(x, act_bits, qw)
    out = np.full((batch, n), np.nan, np.float32)
    try:
        _core.set_amx(amx)
        assert C.matmul_int8act(x, _pack(qw), qw.scales, out, True, 0.0, act_bits, 0, False, per_token=True)
    finally:
        _core.set_amx(True)
    err = np.abs(out.astype(np.float64) - exact)
    assert np.all(err <= REL * np.abs(exact) + TINY), err.max()
    if batch > 2:
        assert np.all(out[1] == 0.0)


def test_token_ties_round_half_even():
    """Row [254, 1, 3, -5] at 8 bits: scale 2, codes 127, rint(0.5) = 0, rint(1.5) = 2,
    rint(-2.5) = -2; an identity-like weight reads them back."""
    w = np.eye(4, dtype=np.float32)
    qw = O.ovp_quantize(w, bits=8, normal="int", axis="row", search=False)
    x = np.array([[254.0, 1.0, 3.0, -5.0]], np.float32)
    out = np.zeros((1, 4), np.float32)
    assert C.matmul_int8act(x, _pack(qw), qw.scales, out, True, 0.0, 8, 0, False, per_token=True)
    g, sw = exact_grid(qw)
    codes = out[0] / (2.0 * g.diagonal() * sw)  # (one float32 rounding apart)
    np.testing.assert_allclose(codes, [127.0, 0.0, 2.0, -2.0], rtol=1e-6, atol=0)


@pytest.mark.parametrize("bits,normal,act_bits", [(4, "int", 8), (4, "flint", 4), (8, "int", 8)])
@pytest.mark.parametrize("batch,n,k", [(33, 33, 67), (40, 70, 384), (45, 5, 1), (13, 9, 20), (8, 40, 33),
                                         (20, 17, 35)])
def test_token_same_bits_on_every_tier(bits, normal, act_bits, batch, n, k):
    """The integer dot products of every tier, and AMX tiles, are the same exact integers: the
    outputs are bitwise equal."""
    from numkern import _core

    rng = np.random.default_rng(batch * 7 + n + k + bits)
    x, qw = _operands(rng, batch, n, k, bits, normal)
    outs = []
    try:
        for tier, avxvnni, amx in (("portable", True, False), ("avx2", True, False), ("avx2", False, False),
                                   ("avx512", True, False), ("avx512", True, True)):
            if not _core.isa_supported(tier):
                continue
            _core.set_isa(tier)
            _core.set_amx(amx)
            C._set_avxvnni(avxvnni)
            out = np.full((batch, n), np.nan, np.float32)
            assert C.matmul_int8act(x, _pack(qw), qw.scales, out, True, 0.0, act_bits, 0, False, per_token=True)
            outs.append(out)
    finally:
        C._set_avxvnni(True)
        _core.set_amx(True)
        _core.set_isa("auto")
    for out in outs[1:]:
        np.testing.assert_array_equal(out, outs[0])


def test_token_nonfinite_and_bad_arguments():
    rng = np.random.default_rng(3)
    x, qw = _operands(rng, 6, 5, 16, 4, "int")
    pk = _pack(qw)
    for bad in (np.nan, np.inf, -np.inf):
        xb = x.copy()
        xb[4, 7] = bad
        out = np.full((6, 5), 7.0, np.float32)
        assert not C.matmul_int8act(xb, pk, qw.scales, out, True, 0.0, 8, 0, False, per_token=True)
        assert np.all(out == 7.0)  # untouched
        assert C.linear_int8act(xb, pk, qw.scales, True, 0.0, 8, 0, False, None, True) is None
    big = x.copy()
    big[0] = 3e38  # finite and huge: per token there is no threshold to exceed
    out = np.zeros((6, 5), np.float32)
    assert C.matmul_int8act(big * np.float32(1e-3), pk, qw.scales, out, True, 0.0, 8, 0, False, per_token=True)
    with pytest.raises(ValueError, match="act_bits"):
        C.matmul_int8act(x, pk, qw.scales, out, True, 0.0, 6, 0, False, per_token=True)


def _layer(torch, k=48, n=20, bits=4, act_bits=8, bias=True, seed=0):
    rng = np.random.default_rng(seed)
    lin = torch.nn.Linear(k, n, bias=bias)
    with torch.no_grad():
        lin.weight.copy_(torch.from_numpy((rng.standard_t(2.5, size=(n, k)) * 0.1).astype(np.float32)))
    return lin, O.OVPLinear.from_linear(lin, bits=bits, act_bits=act_bits, act_granularity="token")


@pytest.mark.parametrize("act_bits", [4, 8])
@pytest.mark.parametrize("bits", [4, 8])
def test_ovplinear_token_integer_path(torch, monkeypatch, act_bits, bits):
    """No calibration (no warning, calibrated); the eager call, forward and the general path all take
    the integer kernel (fake quantization never runs) and agree bitwise; within the contract of the
    exact product; the float path (gradient) uses the same codes."""
    from numkern.quant.olive import _torch as T

    _, layer = _layer(torch, bits=bits, act_bits=act_bits, bias=False, seed=act_bits + bits)
    assert layer.calibrated
    x = torch.from_numpy(np.random.default_rng(1).standard_t(2.5, size=(3, 7, 48)).astype(np.float32))
    exact = torch.from_numpy(_exact(x.reshape(-1, 48).numpy(), act_bits, layer.quantized_weight())).reshape(3, 7, 20)
    fake = T._token_fake_quantize(x.reshape(-1, 48), act_bits)  # the float path's operand
    a, sa = _codes(x.reshape(-1, 48).numpy(), act_bits)
    np.testing.assert_array_equal(np.rint(fake.double().numpy() / np.where(sa > 0, sa, 1.0)[:, None]), a)

    def no_fake(*args, **kw):
        raise AssertionError("fake quantization ran on the integer path")

    monkeypatch.setattr(T, "_token_fake_quantize", no_fake)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("error")
        ys = [layer(x), layer(x), layer.forward(x), layer._forward(x), layer(x.double()).float()]
    for y in ys[1:]:
        assert torch.equal(y, ys[0])
    assert torch.all((ys[0].double() - exact).abs() <= REL * exact.abs() + TINY)
    monkeypatch.undo()
    xg = x.clone().requires_grad_()
    yg = layer(xg)  # float path: fake-quantized x @ dequantized W, float32 roundings apart
    mag = fake.double().abs() @ layer.dequantized_weight().double().abs().T
    assert torch.all((yg.detach().double() - exact).abs() <= 1e-6 * mag.reshape(3, 7, 20) + 1e-30)
    yg.backward(torch.ones_like(yg))  # straight through: grad = 1 @ W_deq
    torch.testing.assert_close(xg.grad, torch.ones(3, 7, 20) @ layer.dequantized_weight(), rtol=1e-6, atol=1e-6)


def test_ovplinear_token_nonfinite_raises(torch):
    _, layer = _layer(torch)
    for grad in (False, True):
        x = torch.randn(2, 48, requires_grad=grad)
        with torch.no_grad():
            x[1, 5] = float("inf")
        with pytest.raises(ValueError, match="x: .*NaN or an infinity"):
            layer(x)


def test_token_settings_state_dict_and_errors(torch):
    lin, layer = _layer(torch)
    assert "act_granularity='token'" in repr(layer)
    x = torch.randn(5, 48)
    with torch.no_grad():
        y = layer(x)
    plain = O.OVPLinear.from_linear(lin, bits=4)  # a skeleton with other settings
    plain.load_state_dict(layer.state_dict())
    assert plain.act_granularity == "token" and plain.act_bits == 8
    with torch.no_grad():
        assert torch.equal(plain(x), y)
    # a state dict from before the setting existed loads as per tensor
    sd = layer.state_dict()
    extra = dict(sd["_extra_state"])
    del extra["act_granularity"]
    sd["_extra_state"] = extra
    old = O.OVPLinear.from_linear(lin, bits=4)
    old.load_state_dict(sd)
    assert old.act_granularity == "tensor" and not old.calibrated
    extra["act_granularity"] = "channel"
    with pytest.raises(ValueError, match="act_granularity"):
        old.load_state_dict(sd)
    for make in (lambda: O.OVPLinear.from_linear(lin, act_bits=8, act_granularity="row"),
                 lambda: O.quantize_model(torch.nn.Sequential(lin), act_bits=8, act_granularity=None),
                 lambda: O.OVPConv2d.from_conv(torch.nn.Conv2d(3, 4, 3), act_bits=8, act_granularity="x")):
        with pytest.raises(ValueError, match="act_granularity"):
            make()


def test_quantize_model_token_and_calibrate(torch):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.Flatten(),
                                torch.nn.Linear(8 * 6 * 6, 10))
    q = O.quantize_model(model, bits=4, act_bits=8, act_granularity="token")
    layers = [m for m in q.modules() if isinstance(m, (O.OVPLinear, O.OVPConv2d))]
    assert len(layers) == 2 and all(m.act_granularity == "token" and m.calibrated for m in layers)
    with pytest.raises(ValueError, match="no activation-quantized OVP layer with a per-tensor threshold"):
        O.calibrate(q, [torch.randn(2, 3, 6, 6)])
    x = torch.randn(2, 3, 6, 6)
    with torch.no_grad():
        y = q(x)
        # the convolution's operand rows (unfolded patches) are the tokens
        conv = layers[0]
        cols = torch.nn.functional.unfold(torch.nn.functional.pad(x, (1, 1, 1, 1)), 3).transpose(1, 2).reshape(-1, 27)
        exact = _exact(cols.numpy(), 8, conv.quantized_weight()) + conv.bias.double().numpy()
        got = conv(x).permute(0, 2, 3, 1).reshape(-1, 8).double().numpy()
    mag = np.abs(_codes(cols.numpy(), 8)[0] * _codes(cols.numpy(), 8)[1][:, None]) @ np.abs(
        conv.dequantized_weight().reshape(8, -1).double().numpy()).T + np.abs(conv.bias.double().numpy())
    assert np.all(np.abs(got - exact) <= 1e-6 * mag)
    ref = model(x)
    assert torch.nn.functional.cosine_similarity(y, ref, dim=-1).min() > 0.97


def test_token_compile_export_vmap(torch):
    """Traced forms (torch.compile, torch.export, vmap) compute the float path or the eager one:
    within float32 rounding of the eager integer result; torch.export keeps the per-token
    quantization as torch operations."""
    _, layer = _layer(torch, seed=5)
    x = torch.randn(4, 6, 48)
    with torch.no_grad():
        ye = layer(x)
        yc = torch.compile(layer)(x)
    fake = layer._quantize_act(x.reshape(-1, 48), fake=True)
    mag = (fake.double().abs() @ layer.dequantized_weight().double().abs().T).reshape(4, 6, 20)
    mag = mag + layer.bias.double().abs()
    tol = 1e-6 * mag
    assert torch.all((yc.double() - ye.double()).abs() <= tol)
    ep = torch.export.export(layer, (x,), dynamic_shapes=({0: torch.export.Dim("b")},))
    assert torch.all((ep.module()(x).double() - ye.double()).abs() <= tol)
    x2 = torch.randn(2, 6, 48)
    assert torch.all((ep.module()(x2) - layer(x2)).abs() <= 1e-5 * (x2.abs().sum(-1, keepdim=True) + 1))
    yv = torch.vmap(layer)(x)
    assert torch.all((yv.double() - ye.double()).abs() <= tol)


def test_token_layer_on_cuda(torch, cuda_device):
    """On CUDA the per-token layer takes the float path (torch operations for the codes, the CUDA
    ovp_matmul): the same codes as on the CPU, so within float32 rounding of the CPU integer
    result."""
    _, layer = _layer(torch, seed=9)
    x = torch.randn(6, 48, generator=torch.Generator().manual_seed(10))
    with torch.no_grad():
        ref = layer(x)
        got = layer.to(cuda_device)(x.to(cuda_device)).cpu()
    fake = layer.cpu()._quantize_act(x, fake=True)
    mag = fake.double().abs() @ layer.dequantized_weight().double().abs().T + layer.bias.double().abs()
    assert torch.all((got.double() - ref.double()).abs() <= 1e-6 * mag)
