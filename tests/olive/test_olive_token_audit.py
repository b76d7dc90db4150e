"""Audit of activations quantized per token (act_granularity="token", docs/olive.md "Activations
per token"): edge inputs against the float64 exact product of the quantized operands (the
contract: (2^-24 + 2^-51) relative on the CPU integer path), settings changed on a live layer
(the cached fast path must notice them), act_granularity="token" without act_bits, serialization,
threads and calibrate() on a model mixing token and per-tensor layers.

The exact value: codes a_bk = round_half_even(x_bk * qmax / m_b) and s_b = m_b / qmax from numpy
in float64; W's grid values recovered from ovp_dequantize (multiples of 1/4 below 504, checked
to reproduce it), so the float64 sums of codes times grid values are exact."""
import copy
import io
import pickle
import threading
import warnings

import numpy as np
import pytest

from numkern.quant import olive as O

REL = 2.0 ** -24 + 2.0 ** -50  # the contract's 2^-24 + 2^-51, plus the float64 reference's scaling
TINY = 2.0 ** -149


def _exact(layer, x):
    """float64 exact product of the per-token quantized x (float32 [rows, k]) and the layer's
    quantized weight, without bias."""
    x = np.asarray(x, np.float32)
    qmax = float(2 ** (layer.act_bits - 1) - 1)
    m = np.abs(x).max(axis=1).astype(np.float64)
    inv = np.divide(qmax, m, out=np.zeros_like(m), where=m > 0)
    a = np.clip(np.rint(x.astype(np.float64) * inv[:, None]), -qmax, qmax)
    q = layer.quantized_weight()
    deq = np.asarray(O.ovp_dequantize(q), np.float64)
    s = np.asarray(q.scales, np.float64).reshape(-1, 1)
    g = np.round(deq / s * 4.0) / 4.0
    assert np.array_equal((g * s).astype(np.float32), deq.astype(np.float32))
    return (a @ g.T) * (m / qmax)[:, None] * s[:, 0][None, :]


def _layer(torch, k=24, n=10, act_bits=8, bias=False, seed=0, gran="token"):
    rng = np.random.default_rng(seed)
    lin = torch.nn.Linear(k, n, bias=bias)
    with torch.no_grad():
        lin.weight.copy_(torch.from_numpy((rng.standard_t(2.5, size=(n, k)) * 0.1).astype(np.float32)))
        if bias:
            lin.bias.copy_(torch.from_numpy(rng.standard_normal(n).astype(np.float32)))
    return lin, O.OVPLinear.from_linear(lin, bits=4, act_bits=act_bits, act_granularity=gran)


def _edge_rows(k):
    rng = np.random.default_rng(11)
    x = rng.standard_normal((9, k)).astype(np.float32)
    x[0] = 0.0
    x[0, k // 2] = -3.5  # a single nonzero: code -qmax, x' = x
    x[1] = -np.abs(x[1]) - 0.25  # all negative
    x[2] = rng.uniform(-1.0, 1.0, k).astype(np.float32) * np.float32(3.0e38)
    x[2, 0] = np.float32(3.4028235e38)  # float32 max in the row (the product stays finite)
    x[3] *= np.float32(2.0 ** -135)  # a subnormal row
    x[4] = 0.0
    x[4, -1] = np.float32(2.0 ** -149)  # the smallest subnormal alone
    x[5] = 0.0  # zeros
    return x


@pytest.mark.parametrize("act_bits", [4, 8])
def test_token_edge_rows_exact(torch, act_bits):
    """Rows with a single nonzero, all negative, near float32 max, subnormal, zeros: the eager
    integer path stays within the contract of the exact product (no NaN; ±inf exactly where the
    exact product is beyond float32)."""
    _, layer = _layer(torch, act_bits=act_bits, seed=act_bits)
    x = _edge_rows(24)
    exact = _exact(layer, x)
    assert np.all(np.isfinite(exact)) and np.abs(exact[2]).max() > 1e36
    with torch.no_grad():
        ys = [layer(torch.from_numpy(x)), layer._forward(torch.from_numpy(x))]
    over = np.abs(exact) >= 2.0 ** 128 * (1 - 2.0 ** -25)  # beyond float32: ±inf is the rounding
    assert over.any() or act_bits == 8
    for y in ys:
        y = y.double().numpy()
        assert np.array_equal(y[over], np.copysign(np.inf, exact[over]))
        err = np.abs(y[~over] - exact[~over])
        assert np.all(err <= REL * np.abs(exact[~over]) + TINY), err.max()
    assert torch.equal(ys[0], ys[1])
    assert np.all(ys[0][5].numpy() == 0.0)


@pytest.mark.parametrize("make", ["f16", "bf16", "f64", "noncontig", "3d", "4d", "neg"])
def test_token_input_layouts(torch, make):
    """float16 / bfloat16 / float64, non-contiguous, 3-d, 4-d and negative-bit views: the rows of
    x (converted to float32) quantized per token; x's dtype and leading shape returned; within the
    contract plus the rounding of the output to x's dtype."""
    _, layer = _layer(torch, seed=3)
    base = torch.from_numpy(np.random.default_rng(4).standard_normal((2, 3, 4, 24)).astype(np.float32))
    x, rel = {"f16": (base[0, 0].half(), 2.0 ** -11), "bf16": (base[0, 0].bfloat16(), 2.0 ** -8),
              "f64": (base[0, 0].double(), 0.0), "noncontig": (base.transpose(0, 2)[:, :, 0], 0.0),
              "3d": (base[0], 0.0), "4d": (base, 0.0), "neg": (base[1, 1].conj().neg()._neg_view(), 0.0)}[make]
    rows = x.reshape(-1, 24).float().resolve_neg().numpy()
    exact = _exact(layer, rows).reshape(*x.shape[:-1], 10)
    with torch.no_grad():
        y = layer(x)
    assert y.dtype == x.dtype and tuple(y.shape) == (*x.shape[:-1], 10)
    err = np.abs(y.double().numpy() - exact)
    assert np.all(err <= (REL + rel) * np.abs(exact) + 2.0 ** -24 * rel), err.max()


def test_token_empty_and_in_features_1(torch):
    _, layer = _layer(torch, bias=True)
    with torch.no_grad():
        for shape in ((0, 24), (0, 3, 24), (2, 0, 24)):
            y = layer(torch.zeros(shape))
            assert tuple(y.shape) == (*shape[:-1], 10)
    _, one = _layer(torch, k=1, n=3, seed=7)
    x = np.array([[2.5], [-1e-3], [0.0], [3e38]], np.float32)
    exact = _exact(one, x)
    with torch.no_grad():
        y = one(torch.from_numpy(x)).double().numpy()
    assert np.all(np.abs(y - exact) <= REL * np.abs(exact) + TINY)


def test_act_bits_set_on_live_weight_only_layer(torch):
    """Defect: a layer that ran weight-only kept its cached weight-only fast path when act_bits was
    set on it afterwards (the output stayed the unquantized-activation product)."""
    lin, tok = _layer(torch, seed=9)
    x = torch.from_numpy(np.random.default_rng(5).standard_normal((6, 24)).astype(np.float32))
    with torch.no_grad():
        y_tok = tok(x)
        w = O.OVPLinear.from_linear(lin, bits=4)
        y_w = w(x)
        w.act_bits, w.act_granularity = 8, "token"
        assert torch.equal(w(x), y_tok) and torch.equal(w.forward(x), y_tok)
        assert not torch.equal(y_w, y_tok)
        tok.act_bits = None  # token -> weight-only -> token again
        assert torch.equal(tok(x), y_w)
        tok.act_bits = 8
        assert torch.equal(tok(x), y_tok) and torch.equal(tok.forward(x), y_tok)
        tok.act_bits = 4
        fresh4 = O.OVPLinear.from_linear(lin, bits=4, act_bits=4, act_granularity="token")
        assert torch.equal(tok(x), fresh4(x))


def test_invalid_settings_on_live_layer_raise(torch):
    """Defect: act_granularity set to an unknown value on a live layer ran it per tensor (with
    the uncalibrated warning); act_bits set to 6 on a token layer quantized the gradient path on a
    6-bit grid.  Both raise ValueError naming the setting, on every path."""
    _, layer = _layer(torch, seed=2)
    x = torch.randn(3, 24, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        layer(x)
    layer.act_granularity = "Token"
    for f in (layer, layer.forward, layer._forward):
        with torch.no_grad(), pytest.raises(ValueError, match="act_granularity: must be 'tensor' or 'token'"):
            f(x)
    assert float(layer.act_alpha) == 0.0  # no threshold set from the batch
    layer.act_granularity = "token"
    layer.act_bits = 6
    for grad in (False, True):
        with pytest.raises(ValueError, match="act_bits: must be 4 or 8, got 6"):
            layer(x.clone().requires_grad_(grad))


def test_token_without_act_bits_raises(torch):
    """act_granularity="token" without act_bits: ValueError naming act_granularity (before, a
    weight-only layer came back, its activations not quantized at all)."""
    lin = torch.nn.Linear(8, 4)
    model = torch.nn.Sequential(lin, torch.nn.ReLU(), torch.nn.Conv1d(4, 2, 1))
    q = O.ovp_quantize(lin.weight.detach(), bits=4, axis="row")
    for make in (lambda: O.quantize_model(model, bits=4, act_granularity="token"),
                 lambda: O.OVPLinear.from_linear(lin, bits=4, act_granularity="token"),
                 lambda: O.OVPLinear(q, act_granularity="token"),
                 lambda: O.OVPConv1d.from_conv(torch.nn.Conv1d(4, 2, 3), act_granularity="token")):
        with pytest.raises(ValueError, match="act_granularity: 'token' .* needs act_bits"):
            make()
    assert O.quantize_model(model, bits=4)[0].act_bits is None  # (per tensor, the default: weight-only)
    for bad in (None, 1, "Token"):
        with pytest.raises(ValueError, match="act_granularity: must be 'tensor' or 'token'"):
            O.quantize_model(model, bits=4, act_bits=8, act_granularity=bad)


def _roundtrips(torch):
    def save(m):
        b = io.BytesIO()
        torch.save(m, b)
        b.seek(0)
        return torch.load(b, weights_only=False)
    return (lambda m: pickle.loads(pickle.dumps(m)), copy.deepcopy, save)


def test_token_serialization(torch):
    """pickle, deepcopy and torch.save / load of a token layer and a quantize_model'd model keep
    act_granularity and compute bitwise the same; .double() / .half() keep the layer's float32
    scales and compute the same product (rounded to the input's dtype; .half() rounds the bias)."""
    torch.manual_seed(0)
    _, layer = _layer(torch, bias=True, seed=4)
    model = torch.nn.Sequential(torch.nn.Linear(24, 16), torch.nn.GELU(), torch.nn.Conv1d(16, 4, 1))
    qm = O.quantize_model(torch.nn.Sequential(model[0], model[1]), bits=4, act_bits=8, act_granularity="token")
    x = torch.randn(5, 24)
    with torch.no_grad():
        y, ym = layer(x), qm(x)
        for rt in _roundtrips(torch):
            l2, m2 = rt(layer), rt(qm)
            assert l2.act_granularity == "token" and m2[0].act_granularity == "token"
            assert torch.equal(l2(x), y) and torch.equal(m2(x), ym)
        d = copy.deepcopy(layer).double()
        assert d.scales.dtype == torch.float32 and torch.equal(d(x.double()), y.double())
        h = copy.deepcopy(layer).half()  # (the bias follows the module's dtype: rounded to float16)
        same = copy.deepcopy(layer)
        same.bias.copy_(h.bias.float())
        assert h.scales.dtype == torch.float32 and torch.equal(h(x.half()), same(x.half()))


def test_token_threads(torch):
    """Two threads calling the same token layer (its first calls included) get what it computes
    alone."""
    _, layer = _layer(torch, seed=6)
    rng = np.random.default_rng(8)
    xs = [torch.from_numpy(rng.standard_normal((r, 24)).astype(np.float32)) for r in (1, 5, 17, 40)]
    ref = copy.deepcopy(layer)
    with torch.no_grad():
        want = [ref(x) for x in xs]
    bad = []

    def work(i):
        with torch.no_grad():
            for r in range(60):
                j = (i + r) % len(xs)
                if not torch.equal(layer(xs[j]), want[j]):
                    bad.append(j)
    ts = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not bad


def test_calibrate_mixed_token_and_tensor(torch):
    """calibrate() on a model mixing a token layer and a per-tensor one sets the per-tensor
    threshold only, warns about neither, and the token layer's output is unchanged."""
    torch.manual_seed(1)
    mix = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 8))
    mix[0] = O.OVPLinear.from_linear(mix[0], bits=4, act_bits=8, act_granularity="token")
    mix[2] = O.OVPLinear.from_linear(mix[2], bits=4, act_bits=8)
    x = torch.randn(4, 16)
    with torch.no_grad():
        y0 = mix[0](x)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        O.calibrate(mix, [torch.randn(4, 16) for _ in range(3)])
        with torch.no_grad():
            mix(x)
    assert float(mix[0].act_alpha) == 0.0 and float(mix[2].act_alpha) > 0.0
    assert mix[0].calibrated and mix[2].calibrated
    with torch.no_grad():
        assert torch.equal(mix[0](x), y0)
    assert "act_granularity='token'" in repr(mix[0]) and "act_granularity" not in repr(mix[2])
