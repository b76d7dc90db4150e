"""SplitQuant modules as torch code uses them (issues #19, #14 point 5, #17): partial last groups
(default group_size on every width), state_dict with format metadata, torch.save / pickle /
deepcopy, the dtype rule, nn.Linear attributes (TransformerEncoderLayer), Conv2d(3, 16, 3) with
defaults, skipped-layer reports, torch.compile, jit.trace refusal, short reprs."""
import copy
import logging

import numpy as np
import pytest

from numkern import quant as q

torch = pytest.importorskip("torch")
nn = torch.nn


def mlp(seed=0, width=40):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(width, 200), nn.ReLU(), nn.Linear(200, 6))


@pytest.mark.parametrize("cols", [7, 27, 64, 100, 200, 300])
@pytest.mark.parametrize("scheme", ["asymmetric", "minmax"])
def test_partial_last_group_gets_its_own_range(cols, scheme):
    w = np.random.default_rng(cols).normal(size=(5, cols))
    w[:, -1] += 7.0  # the last group's range differs from the others'
    qw = q.quantize_weights(w, 4, scheme=scheme)  # default group_size=128
    gs = min(128, cols)
    groups = -(-cols // gs)
    assert qw.group_size == gs and qw.scale.shape == (5, groups)
    for g in range(groups):  # each group, partial or not, is quantized on its own entries
        part = w[:, g * gs:(g + 1) * gs]
        ref = q.quantize_weights(part, 4, scheme=scheme, group_size=None)
        np.testing.assert_array_equal(qw.codes[:, g * gs:(g + 1) * gs], ref.codes)
        np.testing.assert_allclose(qw.dequantize()[:, g * gs:(g + 1) * gs], ref.dequantize(),
                                   rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("width", [7, 27, 64, 100, 200])
def test_default_group_size_on_every_width_fused_equals_unfused(width):
    """Issue #17: splitquant's default group_size=128 raised on widths 27, 64, 100, 7."""
    torch.manual_seed(width)
    lin = nn.Linear(width, 9)
    sq = q.splitquant(lin)
    fused = q.splitquant(lin, fused=True)
    x = torch.randn(5, width)
    ref = x.double() @ sq.merged_weight().detach().double().T + sum(b.bias for b in sq.branches).double()
    torch.testing.assert_close(fused(x).double(), ref.detach(), rtol=2e-5, atol=2e-5)
    torch.testing.assert_close(sq(x).double(), ref.detach(), rtol=2e-5, atol=2e-5)
    np.testing.assert_allclose(fused.weight.detach().numpy(), sq.merged_weight().detach().numpy(),
                               rtol=1e-6, atol=1e-6)
    plain = q.quantize_model_plain(lin, 4)
    assert plain(x).shape == (5, 9)


@pytest.mark.parametrize("fused", [False, True])
def test_state_dict_into_skeleton_with_other_defaults_is_bitwise(fused):
    src = q.splitquant(mlp(0), bits=2, fused=fused)
    x = torch.randn(4, 40, generator=torch.Generator().manual_seed(1))
    want = src(x)
    # the skeleton differs in bits, group size and weights (and k where the format allows)
    skel = q.splitquant(mlp(7), bits=4, group_size=32, k=2 if fused else 3, fused=fused)
    skel.load_state_dict(src.state_dict())
    assert torch.equal(skel(x), want)
    if fused:
        assert (skel[0].bits, skel[0].group_size) == (2, 40)  # 128 capped at the width
        assert src.state_dict()["0._extra_state"]["format"] == "numkern.splitquant_linear"


def test_state_dict_refusals():
    src = q.splitquant(nn.Linear(16, 4), fused=True)
    sd = src.state_dict()
    no_meta = {k: v for k, v in sd.items() if k != "_extra_state"}
    for strict in (True, False):
        with pytest.raises(ValueError, match="format metadata"):
            q.splitquant(nn.Linear(16, 4), fused=True).load_state_dict(no_meta, strict=strict)
    ovp = q.OVPLinear.from_linear(nn.Linear(16, 4))
    with pytest.raises(ValueError, match="numkern.splitquant_linear"):
        ovp.load_state_dict(sd)
    unfused = q.splitquant(nn.Linear(16, 4), k=3)
    with pytest.raises(RuntimeError, match="branches.2"):  # k differs: torch's key check
        q.splitquant(nn.Linear(16, 4), k=2).load_state_dict(unfused.state_dict())


@pytest.mark.parametrize("fused", [False, True])
def test_whole_model_torch_save_pickle_deepcopy(fused, module_copies):
    src = q.splitquant(mlp(0), bits=4, fused=fused)
    x = torch.randn(3, 40)
    want = src(x)
    for m in module_copies(src):
        assert torch.equal(m(x), want)


@pytest.mark.parametrize("cast,dtype,tol", [("half", torch.float16, 4e-3),
                                            ("bfloat16", torch.bfloat16, 3e-2),
                                            ("double", torch.float64, 1e-6)])
def test_dtype_rule_fused_and_unfused(cast, dtype, tol):
    for fused in (False, True):
        src = q.splitquant(mlp(0), bits=4, fused=fused)
        x = torch.randn(3, 40, generator=torch.Generator().manual_seed(2))
        ref = src(x).detach()
        m = copy.deepcopy(src)
        m = m.half() if cast == "half" else m.double() if cast == "double" else m.to(torch.bfloat16)
        if fused:
            assert m[0].codes.dtype == torch.uint8 and m[0].clusters.dtype == torch.uint8
            assert m[0].scales.dtype == torch.float32 and m[0].offsets.dtype == torch.float32
            assert torch.equal(m[0].scales, src[0].scales)  # not rounded to the new dtype
        y = m(x.to(dtype))
        assert y.dtype == dtype
        err = (y.double() - ref.double()).abs().max().item()
        assert err <= tol * ref.abs().max().item(), (fused, err)


@pytest.mark.parametrize("method", ["splitquant", "fused", "plain"])
def test_transformer_encoder_layer_eval_and_train(method):
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(16, 2, dim_feedforward=32, dropout=0.0, batch_first=True)
    x = torch.randn(3, 5, 16)
    if method == "plain":
        qm = q.quantize_model_plain(layer, 8)
    else:
        qm = q.splitquant(layer, bits=8, fused=method == "fused")
        assert type(qm.self_attn.out_proj).__name__ in ("SplitLayer", "SplitQuantLinear")
        lin = qm.linear1
        assert (lin.in_features, lin.out_features) == (16, 32)
        assert lin.weight.shape == (32, 16) and lin.bias.shape == (32,)
    y_train = qm.train()(x)
    with torch.no_grad():
        y_eval = qm.eval()(x)
        ref = layer.eval()(x)
    torch.testing.assert_close(y_eval, y_train.detach(), rtol=1e-5, atol=1e-5)
    assert (y_eval - ref).abs().max() < 0.05


@pytest.mark.parametrize("method", ["splitquant", "plain"])
def test_conv2d_3_16_3_with_default_arguments_and_report(method, caplog):
    """Issue #19: splitquant and quantize_model_plain raised on Conv2d(3, 16, 3) (27 inputs per
    output channel, group_size 128)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 16, 3), nn.ReLU(), nn.Conv3d(16, 2, 1))
    x = torch.randn(2, 3, 6, 6)
    fn = q.splitquant if method == "splitquant" else q.quantize_model_plain
    args = () if method == "splitquant" else (4,)
    with caplog.at_level(logging.WARNING, logger="numkern.quant"):
        qm, report = fn(model, *args, return_report=True)
    assert report == [("2", "Conv3d", "Conv3d is not supported")]
    assert any("Conv3d" in r.message for r in caplog.records)
    y = qm[0](x)
    ref = model[0](x)
    assert y.shape == ref.shape and (y - ref).abs().max() < 0.5 * ref.abs().max()


def test_compile_and_trace():
    for fused in (False, True):
        m = q.splitquant(mlp(0), bits=4, fused=fused)
        x = torch.randn(3, 40)
        torch._dynamo.reset()
        assert torch.equal(torch.compile(m, backend="eager")(x), m(x))
    with pytest.raises(RuntimeError, match="torch.jit.trace is not supported"):
        torch.jit.trace(m, x)
    # torch.export traces the fused layer through torch.ops.numkern.splitquant_matmul
    ep = torch.export.export(m, (x,))
    assert any("splitquant_matmul" in str(n.target) for n in ep.graph.nodes)
    torch.testing.assert_close(ep.module()(x), m(x), rtol=1e-6, atol=1e-6)


def test_short_reprs():
    w = np.random.default_rng(0).normal(size=(256, 512)).astype(np.float32)
    r = repr(q.quantize_weights(w, 4))
    assert len(r) < 200 and "(256, 512)" in r and "bits=4" in r
    sq = q.splitquant(nn.Linear(512, 256), bits=4)
    f = q.FusedSplitQuantWeight.from_branches(sq.quantized, sq.weight_labels.numpy())
    assert len(repr(f)) < 200 and "nbytes=" in repr(f)


def _fused_layer(seed=0):
    torch.manual_seed(seed)
    return q.splitquant(nn.Sequential(nn.Linear(32, 8)), bits=4, group_size=16, fused=True)[0]


def test_gradients_reach_the_input():
    """dy/dx = W (the decoded weight): backward, torch.func.jacrev / jacfwd, and through a layer
    before it (a residual model's gradient must not lose the quantized branch)."""
    layer = _fused_layer()
    w = layer.dequantized_weight().double()
    x = torch.randn(32, generator=torch.Generator().manual_seed(1))
    for jac in (torch.func.jacrev(layer)(x), torch.func.jacfwd(layer)(x)):
        torch.testing.assert_close(jac.double(), w, rtol=0, atol=0)
    pre = nn.Linear(16, 32)
    xx = torch.randn(4, 16, generator=torch.Generator().manual_seed(2))
    (layer(pre(xx)) + pre(xx)[:, :8]).sum().backward()
    got = pre.weight.grad.clone()
    pre.weight.grad = None
    ((pre(xx) @ w.float().T + layer.bias) + pre(xx)[:, :8]).sum().backward()
    torch.testing.assert_close(got, pre.weight.grad, rtol=1e-6, atol=1e-6)
    # float32 arithmetic inside: finite differences of a linear map with a large step are exact
    # up to float32 rounding of y
    xg = torch.randn(5, 32, dtype=torch.float64, generator=torch.Generator().manual_seed(3)).requires_grad_()
    assert torch.autograd.gradcheck(layer, (xg,), eps=1e-2, atol=1e-4, rtol=1e-3)


def test_meta_device_gives_meta_output():
    layer = _fused_layer().to("meta")
    y = layer(torch.randn(3, 32, device="meta"))
    assert y.device.type == "meta" and y.shape == (3, 8)
