"""Whole-model workflows of numkern.quant (second audit): transformers built from
nn.TransformerEncoderLayer / nn.MultiheadAttention and a small CNN through quantize_model /
splitquant against the float64 model, state dicts of unfused SplitQuant models loaded into a
skeleton (the branches' quantization travels with them), the skipped-layer report of weight
matrices that are not layers (MultiheadAttention's in_proj_weight, LSTM), re-quantizing, dtype
conversions, torch.autocast, torch.compile, train mode with backward, and tiny layers."""
import copy
import io
import logging
import warnings

import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

import numkern.quant as Q  # noqa: E402


def _transformer(seed=0, batch_first=True, norm_first=False, dropout=0.0):
    torch.manual_seed(seed)
    layer = nn.TransformerEncoderLayer(32, 4, 64, dropout=dropout, batch_first=batch_first,
                                       norm_first=norm_first)
    return nn.TransformerEncoder(layer, 2, enable_nested_tensor=False).eval()


def _rel(y, ref):
    return float((y.double() - ref).norm() / ref.norm())


def _cos(y, ref):
    return float(nn.functional.cosine_similarity(y.double().flatten(), ref.flatten(), dim=0))


# ---- accuracy of whole transformers against the float64 model --------------------------------
@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("norm_first", [True, False])
def test_transformer_quantized_close_to_float64(batch_first, norm_first):
    m = _transformer(batch_first=batch_first, norm_first=norm_first)
    x = torch.randn(3, 5, 32, generator=torch.Generator().manual_seed(1))
    ref = copy.deepcopy(m).double()(x.double()).detach()
    w8 = Q.quantize_model(m, bits=8)
    w8a8 = Q.quantize_model(m, bits=8, act_bits=8)
    with pytest.warns(UserWarning, match="out_proj"):  # MHA reads out_proj.weight: named
        Q.calibrate(w8a8, [torch.randn(4, 5, 32, generator=torch.Generator().manual_seed(s)) for s in (2, 3)])
    sq = Q.splitquant(m, bits=8, fused=True)
    with torch.no_grad():
        # weight-only 8 bits: the docs' MiniLM cosine is 0.9997 (OVP W8); activations at 8
        # bits too add their rounding (measured 0.99975 / 2.2 % here): a looser bound
        for name, qm, cos, rel in (("w8", w8, 0.9997, 0.01), ("w8a8", w8a8, 0.999, 0.04), ("sq8", sq, 0.9997, 0.01)):
            y = qm(x)
            assert y.dtype == torch.float32 and y.shape == ref.shape
            assert _cos(y, ref) > cos and _rel(y, ref) < rel, (name, _cos(y, ref), _rel(y, ref))


def test_mha_alone_quantized():
    torch.manual_seed(0)
    mha = nn.MultiheadAttention(16, 2, batch_first=True).eval()
    x = torch.randn(2, 4, 16)
    ref = copy.deepcopy(mha).double()(*(x.double(),) * 3)[0].detach()
    for qm in (Q.quantize_model(mha, bits=8), Q.splitquant(mha, bits=8, fused=True),
               Q.splitquant(mha, bits=8), Q.quantize_model_plain(mha, 8)):
        assert type(qm) is nn.MultiheadAttention
        with torch.no_grad():
            assert _rel(qm(x, x, x)[0], ref) < 0.02


# ---- the report names weight matrices that are not layers ----------------------------------
TRANSFORMS = {
    "ovp": lambda m: Q.quantize_model(m, bits=8, return_report=True),
    "splitquant": lambda m: Q.splitquant(m, bits=8, fused=True, return_report=True),
    "plain": lambda m: Q.quantize_model_plain(m, 8, return_report=True),
}


@pytest.mark.parametrize("kind", sorted(TRANSFORMS))
def test_report_names_mha_in_proj_and_lstm(kind, caplog):
    """Before: the report was [] for a transformer although every MultiheadAttention's
    in_proj_weight (3/4 of its weights) stays float, and [] for an nn.LSTM."""
    m = nn.ModuleDict({"enc": _transformer(), "rnn": nn.LSTM(4, 8), "head": nn.Linear(32, 4)})
    with caplog.at_level(logging.WARNING, logger="numkern.quant"):
        _, report = TRANSFORMS[kind](m)
    got = {r[0]: r for r in report}
    assert set(got) == {"enc.layers.0.self_attn", "enc.layers.1.self_attn", "rnn"}, report
    assert got["rnn"][1] == "LSTM" and "weight_ih_l0" in got["rnn"][2]
    assert got["enc.layers.0.self_attn"][1] == "MultiheadAttention"
    assert "in_proj_weight" in got["enc.layers.0.self_attn"][2]
    assert any("in_proj_weight" in r.message for r in caplog.records)


def test_report_skip_names_mha():
    _, report = Q.quantize_model(_transformer(), bits=8, skip="self_attn", return_report=True)
    assert {r[0] for r in report} == {f"layers.{i}.self_attn{s}" for i in (0, 1) for s in ("", ".out_proj")}
    assert all(r[2].startswith("skipped on request") for r in report)


# ---- unfused SplitQuant: the state dict carries the branches' quantization ------------------
def _mlp(seed):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(4 * 4 * 4, 16), nn.ReLU(), nn.Linear(16, 5))


@pytest.mark.parametrize("kw", [{"bits": 2, "group_size": 16}, {"bits": 8},
                                {"bits": 2, "group_size": None, "method": "tails", "scheme": "support",
                                 "table_dtype": "float16"}])
def test_split_state_dict_into_skeleton_then_fuse(kw):
    """Before: SplitLayer.quantized (the branches' QuantizedWeights) was not in the state dict,
    so a skeleton that loaded it kept its own: fuse_splitquant fused the skeleton's weights
    (outputs 0.4 off) and bits_per_weight counted the skeleton's bits."""
    saved = Q.splitquant(_mlp(0), **kw)
    buf = io.BytesIO()
    torch.save(saved.state_dict(), buf)
    buf.seek(0)
    skeleton = Q.splitquant(_mlp(1), bits=4, group_size=8)
    skeleton.load_state_dict(torch.load(buf, weights_only=True))
    x = torch.randn(2, 3, 6, 6, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert torch.equal(skeleton(x), saved(x))
        for i in (0, 2, 4):
            assert skeleton[i].bits_per_weight == saved[i].bits_per_weight
        y_saved = Q.fuse_splitquant(copy.deepcopy(saved))(x)
        y_loaded = Q.fuse_splitquant(copy.deepcopy(skeleton))(x)
    assert torch.equal(y_loaded, y_saved)
    torch.testing.assert_close(y_saved, saved(x).detach(), rtol=1e-5, atol=1e-5)


def test_split_state_dict_without_quantization():
    saved = Q.splitquant(_mlp(0), bits=2, group_size=16)
    # a split_model skeleton receives the quantization too and can be fused
    skeleton = Q.split_model(_mlp(1))
    skeleton.load_state_dict(saved.state_dict())
    assert skeleton[2].quantized is not None
    assert type(Q.fuse_splitquant(copy.deepcopy(skeleton))[2]).__name__ == "SplitQuantLinear"
    # a float split (no quantization) loaded into a quantized skeleton clears its quantization
    plain_split = Q.split_model(_mlp(0))
    q_skeleton = Q.splitquant(_mlp(1), bits=2, group_size=16)
    q_skeleton.load_state_dict(plain_split.state_dict())
    assert q_skeleton[2].quantized is None and q_skeleton[2].bits_per_weight == 96.0
    # state dicts saved before the quantization travelled with them still load (strict); the
    # skeleton's own quantization no longer describes the values and is dropped
    old = {k: v for k, v in saved.state_dict().items() if not k.endswith("_extra_state")}
    q_skeleton = Q.splitquant(_mlp(1), bits=2, group_size=16)
    q_skeleton.load_state_dict(old)
    assert q_skeleton[2].quantized is None
    with pytest.warns(UserWarning, match="nothing fused"):
        Q.fuse_splitquant(q_skeleton)
    bad = saved.state_dict()
    q0 = bad["2._extra_state"]["quantized"][0]
    bad["2._extra_state"] = {"format": "numkern.split_layer", "version": 1,
                             "quantized": [{**q0, "codes": None}] * 3}
    with pytest.raises(ValueError, match="SplitLayer quantization"):
        Q.split_model(_mlp(1)).load_state_dict(bad)
    bad["2._extra_state"] = {"format": "numkern.split_layer", "version": 9, "quantized": None}
    with pytest.raises(ValueError, match="version 9"):
        Q.split_model(_mlp(1)).load_state_dict(bad)


def test_whole_model_save_load_and_skeleton_round_trips():
    m = _transformer()
    x = torch.randn(3, 5, 32, generator=torch.Generator().manual_seed(1))
    made = {"ovp_w4a8": lambda mm: Q.quantize_model(mm, bits=4, act_bits=8),
            "splitquant_fused": lambda mm: Q.splitquant(mm, bits=2, fused=True),
            "splitquant_split": lambda mm: Q.splitquant(mm, bits=2)}
    for name, make in made.items():
        qm = make(m)
        if name == "ovp_w4a8":
            with pytest.warns(UserWarning, match="out_proj"):
                Q.calibrate(qm, [x])
        with torch.no_grad():
            y0 = qm(x)
            buf = io.BytesIO()
            torch.save(qm, buf)
            buf.seek(0)
            assert torch.equal(torch.load(buf, weights_only=False)(x), y0), name
            assert torch.equal(copy.deepcopy(qm)(x), y0), name
            skeleton = make(_transformer(seed=5))
            skeleton.load_state_dict(qm.state_dict())
            assert torch.equal(skeleton(x), y0), name


# ---- re-quantizing a quantized model ---------------------------------------------------------
def test_requantize_quantized_model():
    m = _transformer()
    x = torch.randn(2, 3, 32, generator=torch.Generator().manual_seed(1))
    ovp = Q.quantize_model(m, bits=4)
    sq = Q.splitquant(m, bits=2, fused=True)
    with torch.no_grad():
        # quantize_model leaves quantized layers as they are (OVP and SplitQuant alike)
        assert torch.equal(Q.quantize_model(ovp, bits=8)(x), ovp(x))
        assert torch.equal(Q.quantize_model(sq, bits=8)(x), sq(x))
    # splitquant / quantize_model_plain of a model with nothing left in float: the error says why
    for fn in (lambda mm: Q.splitquant(mm, bits=2), lambda mm: Q.quantize_model_plain(mm, 4)):
        with pytest.raises(ValueError, match="OVPLinear, are left as they are"):
            fn(ovp)
        with pytest.raises(ValueError, match="SplitQuantLinear, are left as they are"):
            fn(sq)
    # a model mixing float and OVP layers: splitquant splits the float ones only
    mixed = nn.Sequential(Q.quantize_model(nn.Linear(8, 8), bits=4), nn.ReLU(), nn.Linear(8, 3))
    out = Q.splitquant(mixed, bits=4, fused=True)
    assert type(out[0]) is Q.OVPLinear and type(out[2]) is Q.SplitQuantLinear


# ---- dtype conversions, autocast ------------------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16])
def test_model_dtype_conversions(dtype):
    m = _transformer()
    x = torch.randn(3, 5, 32, generator=torch.Generator().manual_seed(1))
    ref = copy.deepcopy(m).double()(x.double()).detach()
    tol = {torch.float64: 0.01, torch.float16: 0.01, torch.bfloat16: 0.03}[dtype]
    for qm in (Q.quantize_model(m, bits=8), Q.splitquant(m, bits=8, fused=True)):
        qm = qm.to(dtype)
        with torch.no_grad():
            y = qm(x.to(dtype))
        assert y.dtype == dtype and _rel(y, ref) < tol, (dtype, _rel(y, ref))


def test_autocast_quantized_layers_keep_the_input_dtype():
    """Documented choice: the quantized layers are not autocast ops.  They compute in float32
    and return their input's dtype under torch.autocast (as torch ops without an autocast rule
    do), where nn.Linear would return bfloat16; a whole model still runs and stays close."""
    m = _transformer()
    x = torch.randn(3, 5, 32, generator=torch.Generator().manual_seed(1))
    ref = copy.deepcopy(m).double()(x.double()).detach()
    for qm in (Q.quantize_model(m, bits=8), Q.splitquant(m, bits=8, fused=True)):
        layer = qm.layers[0].linear1
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            assert layer(x).dtype == torch.float32
            assert layer(x.bfloat16()).dtype == torch.bfloat16
            y = qm(x)
        assert _rel(y, ref) < 0.05


# ---- torch.compile of whole models ------------------------------------------------------------
def test_compile_whole_models_equal_eager():
    torch._dynamo.reset()
    m = _transformer()
    x = torch.randn(3, 5, 32, generator=torch.Generator().manual_seed(1))
    cnn = _cnn()
    xc = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    ovp = Q.quantize_model(m, bits=4, act_bits=8)
    cq = Q.quantize_model(cnn, bits=8, act_bits=8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        Q.calibrate(ovp, [x])
        Q.calibrate(cq, [xc])
    with torch.no_grad():
        for qm, inp in ((ovp, x), (Q.splitquant(m, bits=2, fused=True), x), (cq, xc)):
            y = qm(inp)
            assert torch.equal(torch.compile(qm, backend="eager")(inp), y)
            torch.testing.assert_close(torch.compile(qm, fullgraph=False)(inp), y, rtol=1e-5, atol=1e-5)


# ---- CNN with activation quantization ------------------------------------------------------
def _cnn(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, stride=2), nn.ReLU(),
                         nn.Flatten(), nn.Linear(8 * 3 * 3, 10)).eval()


def test_cnn_w8a8_calibrated_and_splitquant():
    cnn = _cnn()
    x = torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    ref = copy.deepcopy(cnn).double()(x.double()).detach()
    qm = Q.quantize_model(cnn, bits=8, act_bits=8)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # every layer is called: calibrate warns about none
        Q.calibrate(qm, [torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(s)) for s in (2, 3, 4)])
    assert all(mm.calibrated for mm in qm.modules() if isinstance(mm, (Q.OVPLinear, Q.OVPConv2d)))
    with torch.no_grad():
        assert _rel(qm(x), ref) < 0.05
        assert _rel(Q.splitquant(cnn, bits=8)(x), ref) < 0.02
        assert _rel(Q.splitquant(cnn, bits=8, fused=True)(x), ref) < 0.02


# ---- train mode: dropout, backward to the float layers before -----------------------------
@pytest.mark.parametrize("kind", ["ovp", "ovp_w8a8", "splitquant_fused", "splitquant_split"])
def test_train_mode_backward_reaches_float_layers(kind):
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(16, 32), nn.TransformerEncoderLayer(32, 4, 64, dropout=0.1, batch_first=True),
                      nn.Linear(32, 4))
    x = torch.randn(3, 5, 16, generator=torch.Generator().manual_seed(1))
    make = {"ovp": lambda: Q.quantize_model(m, bits=8, skip="0"),
            "ovp_w8a8": lambda: Q.quantize_model(m, bits=8, act_bits=8, skip="0"),
            "splitquant_fused": lambda: Q.splitquant(m, bits=8, fused=True),
            "splitquant_split": lambda: Q.splitquant(m, bits=8)}[kind]
    qm = make()
    if kind == "ovp_w8a8":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            Q.calibrate(qm, [x])
    qm.train()
    torch.manual_seed(7)
    y = qm(x)
    y.sum().backward()
    ref = copy.deepcopy(m).train()
    torch.manual_seed(7)
    yr = ref(x)
    yr.sum().backward()
    assert _rel(y, yr.detach().double()) < 0.05
    for p in qm.parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all()
    if kind.startswith("ovp"):  # the first layer stays float: its gradient is close to the float model's
        g, gr = qm[0].weight.grad, ref[0].weight.grad
        assert float((g - gr).norm() / gr.norm()) < 0.05


# ---- tiny layers --------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(1, 1), (1, 5), (5, 1), (3, 2)])
def test_tiny_layers(shape):
    i, o = shape
    torch.manual_seed(0)
    lin = nn.Linear(i, o)
    x = torch.randn(4, i, generator=torch.Generator().manual_seed(1))
    for qm in (Q.quantize_model(lin, bits=4), Q.quantize_model(lin, bits=8, act_bits=8),
               Q.splitquant(lin, bits=2, fused=True), Q.splitquant(lin, bits=8, fused=True),
               Q.splitquant(lin, bits=2, method="tails", scheme="support", fused=True, table_dtype="float16")):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            y = qm(x)
        assert y.shape == (4, o) and torch.isfinite(y).all()
        if getattr(qm, "act_bits", None) is None:  # (weight-only: the decoded weight's product)
            torch.testing.assert_close(y, nn.functional.linear(x, qm.weight, qm.bias), rtol=1e-5, atol=1e-5)
        assert qm(x[0]).shape == (o,)
        assert qm(x.double()).dtype == torch.float64
        assert qm.bits_per_weight > 0 and f"in_features={i}" in repr(qm)
