"""Claims of docs/olive.md and docs/splitquant.md checked as stated (audit of the docs).

Each test names the doc passage it checks."""
import warnings
from fractions import Fraction

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import numkern.quant as Q  # noqa: E402
from numkern.quant.olive import OVPTensor, ovp_dequantize  # noqa: E402


def _token_layer(seed=0, k=48, n=20, bias=True, act_bits=8):
    torch.manual_seed(seed)
    lin = torch.nn.Linear(k, n, bias=bias)
    with torch.no_grad():
        lin.weight[:, ::7] *= 30.0  # weight outliers
    return Q.OVPLinear.from_linear(lin, bits=4, act_bits=act_bits, act_granularity="token")


def _float_path(layer, x):
    """The fake-quantized float path of a per-token layer (what gradients / export / vmap take)."""
    from numkern.quant.olive._torch import _token_fake_quantize

    y = Q.ovp_matmul(_token_fake_quantize(x, layer.act_bits), layer.quantized_weight())
    return y if layer.bias is None else y + layer.bias


def test_token_under_torch_compile_runs_eagerly():
    """olive.md, "Activations per token": under torch.compile the layer runs eagerly, so on CPU
    without gradient it computes the eager integer product bit for bit (not the float path)."""
    layer = _token_layer()
    x = torch.randn(5, 48) * torch.logspace(-2, 2, 5)[:, None]
    with torch.no_grad():
        ye = layer(x)
        yc = torch.compile(torch.nn.Sequential(layer, torch.nn.ReLU()))(x)
        yf = _float_path(layer, x)
    assert torch.equal(yc, torch.relu(ye))
    assert not torch.equal(ye, yf)  # (so the equality above is the integer path's, not the float one's)


def test_token_nonfinite_x_compile_raises_export_vmap_nan():
    """olive.md, "Activations per token": a NaN in x raises ValueError naming x in eager mode and
    under torch.compile; under torch.export and vmap that row comes out NaN."""
    layer = _token_layer()
    x = torch.randn(3, 48)
    x[1, 5] = float("nan")
    with torch.no_grad():
        with pytest.raises(ValueError, match=r"^x: "):
            layer(x)
        with pytest.raises(ValueError, match=r"^x: "):
            torch.compile(layer)(x)
        ep = torch.export.export(layer, (torch.randn(3, 48),))
        for y in (ep.module()(x), torch.vmap(layer)(x)):
            assert torch.isnan(y).any(-1).tolist() == [False, True, False]


@pytest.mark.parametrize("act_bits", [4, 8])
def test_token_integer_path_bound_exact_reference(act_bits):
    """olive.md, "Activations per token": out = sum_k (a_bk s_b)(g_rk s_r), s_b = m_b / qmax,
    a_bk = round_half_even(x_bk (qmax / m_b)) in float64, up to (2^-24 + 2^-51) of its magnitude;
    the exact value is formed in rational arithmetic."""
    layer = _token_layer(seed=act_bits, k=37, n=6, bias=False, act_bits=act_bits)
    rng = np.random.default_rng(act_bits)
    x = (rng.standard_t(2.5, size=(7, 37)) * np.logspace(-20, 20, 7)[:, None]).astype(np.float32)
    x[2, :4] = [254.0, 1.0, 3.0, -5.0]  # ties at 8 bits
    with torch.no_grad():
        out = layer(torch.from_numpy(x)).double().numpy()
    qw = layer.quantized_weight()
    g = ovp_dequantize(OVPTensor(qw.codes, torch.ones_like(qw.scales), qw.normal, qw.shape, qw.bits, "row"))
    g = g.double().numpy()  # grid values, exact
    s_r = layer.scales.double().numpy()
    qmax = 2 ** (act_bits - 1) - 1
    xd = x.astype(np.float64)
    m = np.abs(xd).max(axis=1)
    a = np.clip(np.rint(xd * (qmax / m)[:, None]), -qmax, qmax)
    bound = Fraction(2) ** -24 + Fraction(2) ** -51
    for b in range(x.shape[0]):
        for r in range(g.shape[0]):
            t = sum(Fraction(int(a[b, k])) * Fraction(g[r, k]) for k in range(x.shape[1]))
            exact = t * Fraction(m[b]) / qmax * Fraction(s_r[r])
            assert abs(Fraction(out[b, r]) - exact) <= bound * abs(exact) + Fraction(2) ** -149, (b, r)


def test_calibrate_token_only_model_raises():
    """olive.md: calibrate skips per-token layers, and a model with only such layers raises
    ValueError."""
    model = Q.quantize_model(torch.nn.Sequential(torch.nn.Linear(16, 8)), bits=4, act_bits=8,
                             act_granularity="token")
    with pytest.raises(ValueError, match="act_granularity='token' needs no calibration"):
        Q.calibrate(model, [torch.randn(4, 16)])


@pytest.mark.parametrize("alpha", [0.0, -1.0, 1e-31, 2e37])
def test_ovp_alpha_range(alpha):
    """olive.md, "Errors": an alpha outside [1e-30, 1e37] (non-positive included) raises
    ValueError naming alpha."""
    with pytest.raises(ValueError, match=r"^alpha: "):
        Q.ovp_quantize(np.ones((2, 4), np.float32), alpha=alpha)
    Q.ovp_quantize(np.ones((2, 4), np.float32), alpha=1e-30)  # the ends are accepted
    Q.ovp_quantize(np.ones((2, 4), np.float32), alpha=1e37)


def test_split_model_splits_mha_out_proj():
    """splitquant.md, API table and "Which layers": subclasses that keep their forward, e.g.
    nn.MultiheadAttention's out_proj, are split; the attention, which reads out_proj's weight and
    bias, still computes what it computed."""
    torch.manual_seed(0)
    model = torch.nn.Sequential()
    model.mha = torch.nn.MultiheadAttention(16, 2)
    x = torch.randn(5, 2, 16)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        split = Q.split_model(model)
    assert type(split.mha.out_proj).__name__ == "SplitLayer"
    with torch.no_grad():
        ref = model.mha(x, x, x)[0]
        got = split.mha(x, x, x)[0]
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-6)
