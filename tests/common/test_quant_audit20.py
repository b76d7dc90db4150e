"""Audit of numkern.quant as a user (twentieth session): OVP's quantize_model on SplitQuant models
(unfused SplitLayers were quantized again branch by branch), splitquant on models holding
quantized SplitLayers (re-quantized with the new call's settings), errors that name the layer or
argument, complex operands of FusedSplitQuantWeight.matmul, quantize_weights' dtype rule, and
checks of bits_per_weight (against the state_dict's bytes), state_dict round trips and the
layers against their dequantized weight in float64."""
import copy
import io
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

import numkern.quant as Q  # noqa: E402


def _mlp(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(24, 16), nn.ReLU(), nn.Linear(16, 8))


def _x(shape, seed=1):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


# ---- task 1: quantize_model on SplitQuant models -----------------------------------------------
def test_quantize_model_leaves_quantized_split_layers_as_they_are():
    """Before: every branch of an unfused SplitQuant model (SplitLayer of nn.Linear) became an
    OVPLinear, quantizing the already quantized branches again (output changed, SplitLayer's
    ``quantized`` no longer described its branches).  Now they are left as they are, as OVP layers
    and SplitQuantLinear are, and are not in the report (they are not float)."""
    sq = Q.splitquant(_mlp(), bits=4)
    x = _x((5, 24))
    out, report = Q.quantize_model(sq, bits=4, return_report=True)
    assert report == []
    for i in (0, 2):
        assert type(out[i]) is Q.SplitLayer
        assert all(type(b) is nn.Linear for b in out[i].branches)
        assert out[i].bits_per_weight == sq[i].bits_per_weight
    with torch.no_grad():
        assert torch.equal(out(x), sq(x))
    # the model itself a SplitLayer (splitquant of one layer)
    one = Q.splitquant(nn.Linear(24, 16), bits=2)
    got, report = Q.quantize_model(one, bits=8, return_report=True)
    assert type(got) is Q.SplitLayer and report == []
    assert all(type(b) is nn.Linear for b in got.branches)
    with torch.no_grad():
        assert torch.equal(got(x), one(x))


def test_quantize_model_quantizes_float_layers_beside_split_layers():
    torch.manual_seed(3)
    mixed = nn.Sequential(Q.splitquant(nn.Linear(24, 16), bits=4), nn.ReLU(), nn.Linear(16, 8))
    out = Q.quantize_model(mixed, bits=8)
    assert type(out[0]) is Q.SplitLayer and all(type(b) is nn.Linear for b in out[0].branches)
    assert type(out[2]) is Q.OVPLinear


def test_quantize_model_reports_unquantized_split_layers():
    """A SplitLayer of float branches (split_model) is left as it is and reported (warning, with
    what to do), not quantized branch by branch; a skip name is reported as skipped on request."""
    split = Q.split_model(_mlp())
    x = _x((5, 24))
    out, report = Q.quantize_model(split, bits=4, return_report=True)
    assert [(n, t) for n, t, _ in report] == [("0", "SplitLayer"), ("2", "SplitLayer")]
    assert all("splitquant" in why for _, _, why in report)
    assert all(type(b) is nn.Linear for i in (0, 2) for b in out[i].branches)
    with torch.no_grad():
        assert torch.equal(out(x), split(x))
    _, report = Q.quantize_model(split, bits=4, skip="2", return_report=True)
    assert report[1] == ("2", "SplitLayer", "skipped on request (skip=...)")


def test_splitquant_keeps_quantized_split_layers():
    """Before: splitquant of a model holding a quantized SplitLayer quantized it again with the
    new call's bits (here 4 -> 2 bits), although the docs say quantized layers are left as they
    are.  Now only float layers and split_model's unquantized SplitLayers are quantized."""
    x = _x((5, 24))
    torch.manual_seed(4)
    a = Q.splitquant(nn.Linear(24, 24), bits=4)
    s = Q.split_model(nn.Linear(24, 24))
    mixed = nn.Sequential(a, nn.ReLU(), nn.Linear(24, 8))
    out = Q.splitquant(mixed, bits=2)
    assert out[0].quantized[0].bits == 4 and out[2].quantized[0].bits == 2
    with torch.no_grad():
        assert torch.equal(out[0](x), a(x))
    # split_model's SplitLayer quantized (without re-clustering), the quantized one kept
    out = Q.splitquant(nn.Sequential(a, s), bits=2)
    assert out[0].quantized[0].bits == 4 and out[1].quantized[0].bits == 2
    assert torch.equal(out[1].weight_labels, s.weight_labels)
    # nothing left to quantize: the error names what is left as it is
    with pytest.raises(ValueError, match="SplitLayer, are left as they are"):
        Q.splitquant(nn.Sequential(a), bits=2)


# ---- errors that name the layer / argument ---------------------------------------------------------
@pytest.mark.parametrize("value, what", [(float("nan"), "NaN or infinite"), (1e38, r"\|w\| > 1e\+37")])
def test_quantize_model_names_the_layer_with_bad_weights(value, what):
    """Before: ovp_quantize's 'w: ...' error, without saying which layer of the model."""
    m = _mlp()
    with torch.no_grad():
        m[2].weight[1, 3] = value
    with pytest.raises(ValueError, match=rf"^model: layer '2' \(Linear\): w: 1 .*{what}"):
        Q.quantize_model(m, bits=4)


def test_quantize_model_skip_not_iterable():
    """Before: TypeError "'int' object is not iterable", not naming skip."""
    with pytest.raises(TypeError, match=r"^skip: expected a layer name or an iterable of names, got 5$"):
        Q.quantize_model(_mlp(), skip=5)


def test_fused_matmul_refuses_complex_operands():
    """Before: a complex numpy x or bias was cast to float32 with a ComplexWarning only (the
    imaginary part silently dropped); a torch complex bias likewise."""
    f = Q.splitquant(nn.Linear(16, 8), bits=4, fused=True).fused()
    x = np.random.default_rng(0).normal(size=(2, 16))
    with pytest.raises(TypeError, match="^x: expected a real array, got complex64"):
        f.matmul(x.astype(np.complex64))
    with pytest.raises(TypeError, match="^x: expected a real array, got object"):
        f.matmul(x.astype(object))
    with pytest.raises(TypeError, match="^bias: expected a real array, got complex128"):
        f.matmul(x, np.ones(8, complex))
    with pytest.raises(TypeError, match="^bias: expected a real tensor"):
        f.matmul(torch.from_numpy(x).float(), torch.ones(8, dtype=torch.complex64))
    # real operands still work (integer x is converted, as before)
    ref = x @ f.dequantize().astype(np.float64).T
    assert np.abs(f.matmul(x) - ref).max() <= 1e-5 * (np.abs(x) @ np.abs(f.dequantize()).T).max()


def test_quantize_weights_float16_numpy_as_torch():
    """Before: a numpy float16 weight was quantized in float64 and dequantized to float64, a
    torch float16 one in float32 (and the docstring claimed the caller's dtype).  Now both in
    float32, with the same codes and tables."""
    w = np.random.default_rng(2).normal(size=(6, 40)).astype(np.float16)
    qn = Q.quantize_weights(w, 4, group_size=16)
    qt = Q.quantize_weights(torch.from_numpy(w), 4, group_size=16)
    assert qn.scale.dtype == np.float32 and qn.dequantize().dtype == np.float32
    assert np.array_equal(qn.codes, qt.codes) and np.array_equal(qn.scale, qt.scale)
    assert np.array_equal(qn.dequantize(), qt.dequantize().numpy())
    # within half a step of the float16 values (the quantizer's bound)
    err = np.abs(qn.dequantize().astype(np.float64) - w)
    assert np.all(err <= 0.5 * qn.scale[:, np.arange(40) // 16] * (1 + 1e-5))


def test_quantize_weights_overflow_raises_without_runtime_warnings():
    """Before: numpy's overflow / invalid RuntimeWarnings were printed before the ValueError."""
    w = np.random.default_rng(0).normal(size=(2, 8)).astype(np.float32)
    w[0, 0], w[0, 1] = 3e38, -3e38
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match="^w: the range of a quantization group overflows float32"):
            Q.quantize_weights(w, 4)


# ---- checks: storage, state dicts, accuracy --------------------------------------------------------
def _layers():
    torch.manual_seed(5)
    lin, conv1, conv2 = nn.Linear(37, 11), nn.Conv1d(3, 5, 3, padding=1), nn.Conv2d(3, 5, (3, 2), stride=2)
    return {
        "ovp_linear4": (Q.OVPLinear.from_linear(lin, bits=4), (7, 37)),
        "ovp_linear8": (Q.OVPLinear.from_linear(lin, bits=8), (7, 37)),
        "ovp_conv1d": (Q.OVPConv1d.from_conv(conv1, bits=4), (2, 3, 9)),
        "ovp_conv2d": (Q.OVPConv2d.from_conv(conv2, bits=8), (2, 3, 9, 8)),
        "sq_int2": (Q.splitquant(lin, bits=2, fused=True), (7, 37)),
        "sq_int4_g16": (Q.splitquant(lin, bits=4, group_size=16, fused=True), (20, 37)),
        "sq_k2": (Q.splitquant(lin, bits=2, k=2, fused=True), (7, 37)),
        "sq_support_f16": (Q.splitquant(lin, bits=2, group_size=None, method="tails", scheme="support",
                                        table_dtype="float16", fused=True), (7, 37)),
    }


@pytest.mark.parametrize("name", list(_layers()))
def test_bits_per_weight_is_the_state_dicts_bytes(name):
    """bits_per_weight = 8 * (bytes of the state_dict's weight buffers) / weights, counted here
    from the saved tensors (bias, act_alpha and the metadata not counted, as documented)."""
    m, _ = _layers()[name]
    sd = m.state_dict()
    nbytes = sum(v.numel() * v.element_size() for k, v in sd.items()
                 if k in ("codes", "scales", "ids", "offsets"))
    assert m.bits_per_weight == pytest.approx(8 * nbytes / (m.out_features * m.in_features), rel=1e-15)


@pytest.mark.parametrize("name", list(_layers()))
def test_state_dict_round_trip_through_bytes(name):
    """torch.save(state_dict) to a BytesIO, torch.load(weights_only=True) into a module built with
    other settings: bit for bit the same outputs and the same bits_per_weight."""
    m, xs = _layers()[name]
    x = _x(xs)
    with torch.no_grad():
        y = m(x)
    buf = io.BytesIO()
    torch.save(m.state_dict(), buf)
    buf.seek(0)
    torch.manual_seed(9)
    if name.startswith("ovp_conv1d"):
        fresh = Q.OVPConv1d.from_conv(nn.Conv1d(3, 5, 2), bits=8)
    elif name.startswith("ovp_conv2d"):
        fresh = Q.OVPConv2d.from_conv(nn.Conv2d(3, 5, 3), bits=4)
    elif name.startswith("ovp"):
        fresh = Q.OVPLinear.from_linear(nn.Linear(5, 3, bias=False), bits=8 if "4" in name else 4)
    else:
        fresh = Q.splitquant(nn.Linear(5, 3, bias=False), bits=8, k=4, fused=True)
    fresh.load_state_dict(torch.load(buf, weights_only=True))
    with torch.no_grad():
        assert torch.equal(fresh(x), y)
    assert fresh.bits_per_weight == m.bits_per_weight


def test_split_layer_state_dict_round_trip_and_bits():
    """The unfused form: outputs and bits_per_weight (k * (b-bit codes + float32 scale and offset
    per group), counted here) survive a BytesIO round trip into another splitquant skeleton."""
    torch.manual_seed(6)
    lin = nn.Linear(37, 11)
    m = Q.splitquant(lin, bits=4, group_size=16)
    groups = -(-37 // 16)
    assert m.bits_per_weight == pytest.approx(3 * (11 * -(-37 * 4 // 8) + 11 * groups * 8) * 8 / (11 * 37))
    buf = io.BytesIO()
    torch.save(m.state_dict(), buf)
    buf.seek(0)
    fresh = Q.splitquant(nn.Linear(37, 11), bits=2, group_size=8)
    fresh.load_state_dict(torch.load(buf, weights_only=True))
    x = _x((4, 37))
    with torch.no_grad():
        assert torch.equal(fresh(x), m(x))
    assert fresh.bits_per_weight == m.bits_per_weight


@pytest.mark.parametrize("name", list(_layers()))
def test_layers_match_their_dequantized_weight_in_float64(name):
    """The module call (fast path for float32 contiguous input; the general path for a
    non-contiguous view) against x @ dequantized_weight().T + b in float64, within the float32
    summation bound the docs give (|err| <= 1e-5 (|x| |W|^T + |b|))."""
    m, xs = _layers()[name]
    x = _x(xs)
    w = m.dequantized_weight().double()
    b = m.bias.double()
    if w.dim() == 2:
        ref = x.double() @ w.T + b
        den = x.double().abs() @ w.abs().T + b.abs()
    else:
        conv = F.conv1d if w.dim() == 3 else F.conv2d
        kw = dict(stride=m.stride, padding=m.padding, dilation=m.dilation)
        ref = conv(x.double(), w, b, **kw)
        den = conv(x.double().abs(), w.abs(), b.abs(), **kw)
    with torch.no_grad():
        for xin in (x, x.transpose(0, -1).contiguous().transpose(0, -1)):
            y = m(xin)
            assert y.dtype == torch.float32
            assert torch.all((y.double() - ref).abs() <= 1e-5 * den), name
        # computed in float32 (another path than the float32 fast path: summation order) and
        # returned in dt: within the float32 bound plus dt's rounding of the result
        for dt, eps in ((torch.float16, 2.0 ** -11), (torch.bfloat16, 2.0 ** -8), (torch.float64, 0.0)):
            xd = x.to(dt)
            y, y32 = m(xd), m(xd.float())
            assert y.dtype == dt
            den_d = (xd.double().abs() @ w.abs().T + b.abs()) if w.dim() == 2 else den
            assert torch.all((y.double() - y32.double()).abs()
                             <= 2e-5 * den_d + eps * y32.double().abs()), (name, dt)


def test_quantize_model_copy_of_ovp_model_deepcopies():
    """A quantized model passed again is copied, not changed in place (OVP and SplitLayer)."""
    sq = Q.splitquant(_mlp(), bits=4)
    out = Q.quantize_model(sq, bits=4)
    assert out[0] is not sq[0] and out[0].branches[0].weight is not sq[0].branches[0].weight
    ovp = Q.quantize_model(_mlp(), bits=4)
    again = Q.quantize_model(ovp, bits=8)
    assert again[0] is not ovp[0] and again[0].bits == 4
    assert copy.deepcopy(again)[0].bits == 4


def test_activation_beyond_float32_range_error_names_x():
    """An activation-quantized layer's input beyond 1e37 is reported about x, not |w|."""
    import warnings

    import torch

    from numkern.quant import OVPLinear

    torch.manual_seed(3)
    q = OVPLinear.from_linear(torch.nn.Linear(8, 4), act_bits=8)
    x = torch.randn(3, 8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        q(x)  # (first batch: threshold)
    x[0, 0] = 3e38
    with pytest.raises(ValueError, match=r"^x: 1 value\(s\) with \|x\| > 1e\+37"):
        q(x)


@pytest.mark.parametrize("change", [{"out_features": 20}, {"in_features": 9}, {"bits": 8, "normal": "int"}])
def test_ovp_state_dict_settings_must_match_buffers(change):
    """A state dict whose settings disagree with its buffers is refused at load (the fast path
    read the buffers as they were: out_features 20 over 19 rows returned 19 columns)."""
    import torch

    from numkern.quant import OVPLinear

    torch.manual_seed(4)
    q = OVPLinear.from_linear(torch.nn.Linear(8, 19))
    sd = q.state_dict()
    sd["_extra_state"] = dict(sd["_extra_state"], **change)
    fresh = OVPLinear.from_linear(torch.nn.Linear(8, 19))
    with pytest.raises(ValueError, match="does not match its settings"):
        fresh.load_state_dict(sd)


def test_ovp_state_dict_bias_shape_must_match():
    import torch

    from numkern.quant import OVPLinear

    q = OVPLinear.from_linear(torch.nn.Linear(8, 19))
    sd = q.state_dict()
    sd["bias"] = torch.zeros(18)
    with pytest.raises(ValueError, match="bias: shape"):
        OVPLinear.from_linear(torch.nn.Linear(8, 19)).load_state_dict(sd)
