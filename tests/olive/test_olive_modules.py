"""OVP torch modules as torch code uses them (issues #19, #14 point 5, #17): state_dict with the
format metadata, torch.save / pickle / deepcopy, the dtype rule, the nn.Linear attributes torch
reads (TransformerEncoderLayer, MultiheadAttention), convolutions, calibrate(), jit.trace /
jit.trace refusal, torch.export, torch.compile, short reprs."""
import copy
import io
import logging
import re
import subprocess
import sys
import warnings

import numpy as np
import pytest

from numkern import quant as Q

torch = pytest.importorskip("torch")
nn = torch.nn
F = torch.nn.functional


def small_model(seed=0, bias=True):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=bias), nn.ReLU(), nn.Flatten(),
                         nn.Linear(8 * 5 * 5, 16, bias=bias), nn.ReLU(), nn.Linear(16, 6, bias=bias))


def batches(n=4, seed=3):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(2, 3, 5, 5, generator=g) for _ in range(n)]


def quantized(bits, normal, act_bits, seed=0, bias=True):
    qm = Q.quantize_model(small_model(seed, bias), bits=bits, normal=normal, act_bits=act_bits)
    if act_bits is not None:
        Q.calibrate(qm, batches())
    return qm


FORMATS = [(4, "int", None), (4, "flint", None), (8, "int", None), (4, "int", 8), (4, "flint", 8)]


@pytest.mark.parametrize("bits,normal,act_bits", FORMATS)
def test_state_dict_into_skeleton_with_other_defaults_is_bitwise(bits, normal, act_bits):
    src = quantized(bits, normal, act_bits)
    x = torch.randn(3, 3, 5, 5, generator=torch.Generator().manual_seed(9))
    want = src(x)
    # the skeleton differs in every setting: bits, grid, activation quantization, weights
    other = (8, "int", 4) if bits == 4 else (4, "flint", None)
    skel = Q.quantize_model(small_model(seed=5), bits=other[0], normal=other[1], act_bits=other[2])
    skel.load_state_dict(src.state_dict())
    assert torch.equal(skel(x), want)
    assert skel[3].normal == src[3].normal and skel[3].act_bits == act_bits


def test_flint_state_into_int_skeleton_regression():
    """Issue #19: flint weights loaded into an int skeleton computed outputs off by more than
    their own size, with load_state_dict(strict=True) succeeding."""
    torch.manual_seed(0)
    lin = nn.Linear(64, 32)
    src = Q.OVPLinear.from_linear(lin, bits=4, normal="flint")
    skel = Q.OVPLinear.from_linear(lin, bits=4, normal="int")
    buf = io.BytesIO()
    torch.save(src.state_dict(), buf)
    buf.seek(0)
    skel.load_state_dict(torch.load(buf, weights_only=True), strict=True)  # plain data only
    x = torch.randn(5, 64)
    assert skel.normal == "flint" and torch.equal(skel(x), src(x))


def test_state_dict_bias_presence_follows_the_saved_module():
    x = torch.randn(2, 3, 5, 5)
    for src_bias in (True, False):
        src = quantized(4, "int", None, bias=src_bias)
        skel = Q.quantize_model(small_model(seed=1, bias=not src_bias))
        skel.load_state_dict(src.state_dict())
        assert torch.equal(skel(x), src(x))


def test_state_dict_refusals():
    src = Q.OVPLinear.from_linear(nn.Linear(8, 4), bits=4)
    sd = src.state_dict()
    no_meta = {k: v for k, v in sd.items() if k != "_extra_state"}
    for strict in (True, False):
        with pytest.raises(ValueError, match="format metadata"):
            Q.OVPLinear.from_linear(nn.Linear(8, 4)).load_state_dict(no_meta, strict=strict)
    newer = dict(sd, _extra_state=dict(sd["_extra_state"], version=99))
    with pytest.raises(ValueError, match="version 99"):
        Q.OVPLinear.from_linear(nn.Linear(8, 4)).load_state_dict(newer)
    conv = Q.OVPConv2d.from_conv(nn.Conv2d(2, 4, 2))  # 2 * 2 * 2 = 8 inputs too
    with pytest.raises(ValueError, match="numkern.ovp_conv2d"):
        conv.load_state_dict(sd)
    bad = dict(sd, _extra_state=dict(sd["_extra_state"], normal="flint", bits=8))
    with pytest.raises(ValueError, match="invalid OVPLinear settings"):
        Q.OVPLinear.from_linear(nn.Linear(8, 4)).load_state_dict(bad)


def test_whole_model_torch_save_pickle_deepcopy(module_copies):
    src = quantized(4, "flint", 8)
    x = torch.randn(2, 3, 5, 5)
    want = src(x)
    for m in module_copies(src):
        assert type(m[0]) is Q.OVPConv2d and type(m[3]) is Q.OVPLinear
        assert torch.equal(m(x), want)
    assert Q.OVPLinear.__module__ == "numkern.quant.olive._torch"


def test_import_numkern_quant_without_torch():
    code = ("import sys; sys.modules['torch'] = None\n"
            "import numpy as np, numkern, numkern.quant as Q\n"
            "q = Q.ovp_quantize(np.ones((2, 4), np.float32)); print(q.bits)\n"
            "assert 'numkern.quant.olive._torch' not in sys.modules\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "4"


@pytest.mark.parametrize("cast,dtype,tol", [("half", torch.float16, 4e-3),
                                            ("bfloat16", torch.bfloat16, 3e-2),
                                            ("double", torch.float64, 0.0)])
def test_dtype_rule(cast, dtype, tol):
    src = quantized(4, "int", 8)
    x = torch.randn(3, 3, 5, 5, generator=torch.Generator().manual_seed(4))
    ref = src(x)
    m = copy.deepcopy(src)
    m = m.half() if cast == "half" else m.double() if cast == "double" else m.to(torch.bfloat16)
    for layer in (m[0], m[3], m[5]):
        assert layer.codes.dtype == torch.uint8  # codes stay
        assert layer.scales.dtype == torch.float32 and layer.act_alpha.dtype == torch.float64
        assert torch.equal(layer.scales, src[3].scales) if layer is m[3] else True
        assert layer.bias.dtype == dtype and layer.weight.dtype == dtype
    y = m(x.to(dtype))
    assert y.dtype == dtype
    err = (y.double() - ref.double()).abs().max().item()
    assert err <= tol * ref.abs().max().item()
    # back to float32 gives the float32 module's output again (scales were never rounded)
    if cast == "double":
        assert torch.equal(m.float()(x), ref)


def test_weight_bias_and_features_of_linear_and_conv():
    torch.manual_seed(2)
    lin = nn.Linear(20, 7)
    q = Q.OVPLinear.from_linear(lin, bits=4)
    assert (q.in_features, q.out_features) == (20, 7)
    assert torch.equal(q.weight, Q.ovp_dequantize(q.quantized_weight()))
    assert torch.equal(q.bias, lin.bias.detach())
    q.weight.zero_()  # a materialised copy: the module is unchanged
    assert torch.equal(q.weight, Q.ovp_dequantize(q.quantized_weight()))
    conv = nn.Conv2d(3, 16, 3)
    qc = Q.OVPConv2d.from_conv(conv)
    assert qc.weight.shape == conv.weight.shape


@pytest.mark.parametrize("act_bits", [None, 4])
def test_transformer_encoder_layer_eval_and_train(act_bits):
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(16, 2, dim_feedforward=32, dropout=0.0, batch_first=True)
    x = torch.randn(3, 5, 16)
    qm = Q.quantize_model(layer, bits=8, act_bits=act_bits)
    assert type(qm.linear1) is Q.OVPLinear and type(qm.self_attn.out_proj) is Q.OVPLinear
    if act_bits:
        with pytest.warns(UserWarning, match="self_attn.out_proj"):  # MHA reads its .weight
            Q.calibrate(qm, [x])
    qm.train()
    y_train = qm(x)
    qm.eval()
    with torch.no_grad():
        y_eval = qm(x)  # the fused fast path must not bypass the quantized forward
    torch.testing.assert_close(y_eval, y_train.detach(), rtol=1e-5, atol=1e-5)
    with torch.no_grad():
        ref = layer.eval()(x)
    assert (y_eval - ref).abs().max() < (0.3 if act_bits else 0.05)
    mha = nn.MultiheadAttention(16, 2, batch_first=True)
    qa = Q.quantize_model(mha, bits=8)
    out, _ = qa(x, x, x)
    assert out.shape == x.shape


@pytest.mark.parametrize("conv,shape", [
    (lambda: nn.Conv2d(3, 16, 3), (2, 3, 9, 7)),
    (lambda: nn.Conv2d(4, 6, (3, 2), stride=(2, 1), padding=(1, 2), dilation=(1, 2)), (2, 4, 8, 9)),
    (lambda: nn.Conv2d(4, 6, 3, padding="same", bias=False), (4, 7, 6)),  # unbatched
    (lambda: nn.Conv1d(5, 8, 4, stride=2, padding=1), (3, 5, 17)),
    (lambda: nn.Conv1d(5, 8, 3, padding="same", dilation=2), (3, 5, 11)),
])
def test_conv_equals_conv_with_dequantized_weight(conv, shape):
    torch.manual_seed(1)
    c = conv()
    q = Q.quantize_model(c)
    assert type(q).__name__ == "OVP" + type(c).__name__
    x = torch.randn(*shape)
    f = F.conv2d if isinstance(c, nn.Conv2d) else F.conv1d
    ref = f(x, q.weight, c.bias, c.stride, c.padding, c.dilation)
    torch.testing.assert_close(q(x), ref, rtol=1e-5, atol=1e-5)


def test_conv2d_3_16_3_default_arguments_and_skip_report(caplog):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 16, 3), nn.Conv2d(16, 16, 3, groups=4), nn.Flatten(),
                          nn.Linear(16 * 3 * 3, 4))
    model.add_module("lm_head", nn.Embedding(5, 4))  # owns a 2-d weight; not called below
    model.forward = lambda x: model[3](model[2](model[1](model[0](x))))
    x = torch.randn(2, 3, 7, 7)
    with caplog.at_level(logging.INFO, logger="numkern.quant"):
        qm, report = Q.quantize_model(model, return_report=True)
    qm.forward = lambda x: qm[3](qm[2](qm[1](qm[0](x))))
    assert type(qm[0]) is Q.OVPConv2d and type(qm[3]) is Q.OVPLinear
    names = {r[0]: r[2] for r in report}
    assert set(names) == {"1", "lm_head"}
    assert "groups=4" in names["1"] and "skip" in names["lm_head"]
    assert any("'1'" in r.message and r.levelno == logging.WARNING for r in caplog.records)
    ref = qm[3](qm[2](qm[1](F.conv2d(x, qm[0].weight, model[0].bias))))
    torch.testing.assert_close(qm(x), ref, rtol=1e-4, atol=1e-4)


def test_root_module_is_quantized():
    """Issue #17: quantize_model(nn.Linear(8, 8)) returned the module unchanged."""
    q = Q.quantize_model(nn.Linear(8, 8))
    assert type(q) is Q.OVPLinear
    assert type(Q.quantize_model(nn.Conv1d(2, 3, 2))) is Q.OVPConv1d


def test_calibrate_pools_many_batches_and_uncalibrated_warns():
    torch.manual_seed(0)
    lin = nn.Linear(12, 5)
    data = [torch.randn(4, 12) * s for s in (0.1, 1.0, 3.0)]
    q = Q.OVPLinear.from_linear(lin, bits=4, act_bits=8)
    assert not q.calibrated and "uncalibrated" in repr(q)
    Q.calibrate(q, data)
    pooled = Q.ovp_quantize(torch.cat(data), bits=8, axis=None)
    assert float(q.act_alpha) == float(pooled.alphas[0]) and q.calibrated
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        y = q(data[0])
    xq = Q.ovp_dequantize(Q.ovp_quantize(data[0], bits=8, axis=None, alpha=float(q.act_alpha)))
    torch.testing.assert_close(y, xq @ q.weight.T + lin.bias.detach(), rtol=1e-5, atol=1e-5)
    fresh = Q.OVPLinear.from_linear(lin, bits=4, act_bits=8)
    with pytest.warns(UserWarning, match="calibrate"):
        fresh(data[1])
    model = Q.quantize_model(nn.Sequential(nn.Linear(12, 12), nn.Linear(12, 12), nn.Linear(12, 5)),
                             act_bits=8)
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("default")
        model(data[0])
        model(data[1])
    assert len([w for w in rec if "calibrate" in str(w.message)]) == 1  # once per model run
    with pytest.raises(ValueError, match="no activation-quantized"):
        Q.calibrate(Q.quantize_model(lin), data)
    with pytest.raises(ValueError, match="empty"):
        Q.calibrate(Q.OVPLinear.from_linear(lin, act_bits=8), [])


def test_jit_trace_refuses_clearly_export_traces_the_operator():
    q = quantized(4, "int", None)
    x = torch.randn(2, 3, 5, 5)
    with pytest.raises(RuntimeError, match="torch.jit.trace is not supported"):
        torch.jit.trace(q, x)
    with pytest.raises(TypeError, match="float16, bfloat16, float32 or float64"):
        q(torch.ones(2, 3, 5, 5, dtype=torch.int64))
    ep = torch.export.export(q, (x,))  # through torch.ops.numkern.ovp_matmul
    assert any("ovp_matmul" in str(n.target) for n in ep.graph.nodes)
    torch.testing.assert_close(ep.module()(x), q(x), rtol=1e-5, atol=1e-5)


def test_torch_compile_equals_eager():
    q = quantized(4, "flint", 8)
    x = torch.randn(2, 3, 5, 5)
    torch._dynamo.reset()
    assert torch.equal(torch.compile(q)(x), q(x))


def test_short_reprs():
    torch.manual_seed(0)
    q = Q.ovp_quantize(torch.randn(256, 512), bits=4)
    r = repr(q)
    assert len(r) < 200 and "256, 512" in r and "bits=4" in r and "nbytes=" in r
    assert len(repr(Q.ovp_quantize(np.ones((256, 512), np.float32)))) < 200


def test_report_section_times_cpu_on_one_thread_and_restores_threads(restore_threads):
    """Issue #17: the OliVe section's GEMV ratio swung 0.31x-1.00x between runs (wall time, all
    threads); it now reports single-thread CPU-time medians.  Checks the form, not a speed."""
    import numkern
    from numkern.quant.olive import _report

    numkern.set_num_threads(2)
    out = io.StringIO()
    _report.report(out)
    line = out.getvalue().strip().splitlines()[-1]
    assert "1 thread, CPU time" in line and re.search(r"\(numpy / ovp_matmul = \d+\.\d\d\)", line)
    assert numkern.get_num_threads() == 2


def test_float_bits_rejected_clearly():
    """Found by the fuzzer: bits=4.0 passed the check and failed inside the C++ binding."""
    with pytest.raises(ValueError, match="bits"):
        Q.ovp_quantize(np.ones((2, 4), np.float32), bits=4.0)


def _act_layer(calibrated=True):
    torch.manual_seed(5)
    layer = Q.OVPLinear.from_linear(nn.Linear(16, 4), bits=4, act_bits=8)
    if calibrated:
        Q.calibrate(layer, [torch.randn(8, 16, generator=torch.Generator().manual_seed(6))])
    return layer


def test_activation_errors_name_what_the_caller_passed():
    with pytest.raises(ValueError, match="^act_bits: must be 4 or 8, got 3"):
        Q.OVPLinear.from_linear(nn.Linear(16, 4), act_bits=3)
    with pytest.raises(ValueError, match="^act_bits: must be 4 or 8, got 16"):
        Q.quantize_model(nn.Sequential(nn.Linear(16, 4)), act_bits=16)
    x = torch.randn(3, 16)
    x[1, 2] = float("nan")
    for layer in (_act_layer(), _act_layer(calibrated=False)):
        for xx in (x, x.double(), x.clone().requires_grad_()):
            with pytest.raises(ValueError, match="^x: 1 NaN or infinite"):
                layer(xx)


def test_activation_quantized_layer_takes_zero_rows():
    for layer in (_act_layer(), _act_layer(calibrated=False)):
        for x in (torch.zeros(0, 16), torch.zeros(0, 16, requires_grad=True), torch.zeros(2, 0, 16)):
            y = layer(x)
            assert y.shape == (*x.shape[:-1], 4)
    fresh = _act_layer(calibrated=False)
    with pytest.warns(UserWarning, match="saw no input rows"):
        Q.calibrate(fresh, [torch.zeros(0, 16)])  # no rows: stays uncalibrated, said so
    assert not fresh.calibrated
    Q.calibrate(fresh, [torch.zeros(0, 16), torch.randn(4, 16)])  # empty batches among others: fine
    assert fresh.calibrated


@pytest.mark.parametrize("bits", [4, 8])
def test_forward_mode_jacobian_is_the_dequantized_weight(bits):
    torch.manual_seed(7)
    layer = Q.OVPLinear.from_linear(nn.Linear(32, 8), bits=bits)
    x = torch.randn(32)
    w = layer.dequantized_weight().double()
    torch.testing.assert_close(torch.func.jacfwd(layer)(x).double(), w, rtol=0, atol=0)
    torch.testing.assert_close(torch.func.jacrev(layer)(x).double(), w, rtol=0, atol=0)


def test_first_calls_from_threads_share_one_threshold():
    """An uncalibrated activation-quantized layer called from several threads at once sets its
    threshold from one batch, and every call uses that one (not a per-thread threshold)."""
    import threading

    for trial in range(4):
        layer = _act_layer(calibrated=False)
        g = torch.Generator().manual_seed(trial)
        xs = [torch.randn(8, 16, generator=g) * (1 + 10 * i) for i in range(4)]
        outs, start = {}, threading.Barrier(4)

        def run(i):
            start.wait()
            outs[i] = layer(xs[i])

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            ts = [threading.Thread(target=run, args=(i,)) for i in range(4)]
            [t.start() for t in ts]
            [t.join() for t in ts]
        assert layer.calibrated
        for i in range(4):  # recomputed with the final threshold: the same bits
            assert torch.equal(outs[i], layer(xs[i])), (trial, i)


def test_repr_says_whether_there_is_a_bias():
    assert "bias=True" in repr(Q.OVPLinear.from_linear(nn.Linear(8, 4)))
    assert "bias=False" in repr(Q.OVPLinear.from_linear(nn.Linear(8, 4, bias=False)))
