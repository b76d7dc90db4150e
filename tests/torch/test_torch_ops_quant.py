"""torch.ops.numkern.ovp_quantize / ovp_dequantize / ovp_matmul and splitquant_matmul /
splitquant_decode (issue #14, quantization): values bitwise equal to the numpy path (the same C++
kernels), the public functions routed to the ops, gradients in x (and the bias), double backward,
jvp, torch.compile(fullgraph) without graph breaks, FakeTensor, opcheck, and what raises."""
from __future__ import annotations

import importlib

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import numkern.quant as nq  # noqa: E402
from numkern._torch_ops import quant as tq, splitquant as tsq  # noqa: E402,F401  (registration)
from numkern.quant.olive import OVPTensor  # noqa: E402
from torch_testutil import compiled_fullgraph  # noqa: E402

sqpkg = importlib.import_module("numkern.quant.splitquant")
o = torch.ops.numkern
F32, F64 = torch.float32, torch.float64


def weight(rows=6, cols=13, seed=0):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(rows, cols, generator=g)
    w[0, 3] = 9.0  # an outlier (victim pairs)
    w[2, cols - 2] = -7.0
    return w


def xs(shape, seed=1, dtype=F32):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def assert_same_q(a, b):
    assert a.normal == b.normal and a.shape == b.shape and a.bits == b.bits
    np.testing.assert_array_equal(np.asarray(a.codes), np.asarray(b.codes))
    np.testing.assert_array_equal(np.asarray(a.scales), np.asarray(b.scales))
    np.testing.assert_array_equal(a.alphas, b.alphas)


@pytest.mark.parametrize("bits,normal,axis,kw", [
    (4, "auto", "row", {}), (4, "flint", None, {"search": False}), (8, "int", "row", {"alpha": 1.5}),
    (4, "int", "row", {"both_outliers": "left"})])
def test_ovp_quantize_dequantize_op_equals_numpy_path(bits, normal, axis, kw):
    w = weight()
    qt = nq.ovp_quantize(w, bits, normal, axis, **kw)   # routed to numkern::ovp_quantize
    qn = nq.ovp_quantize(w.numpy(), bits, normal, axis, **kw)
    assert isinstance(qt.codes, torch.Tensor) and isinstance(qt.alphas, np.ndarray)
    assert_same_q(qt, qn)
    # the op itself, on a 3-d float64 tensor (rows = leading dims flattened)
    w3 = w.double().reshape(2, 3, 13)
    per_row = axis == "row"
    mode = 2 if "alpha" in kw else (1 if kw.get("search") is False else 0)
    alphas = torch.full((6 if per_row else 1,), kw.get("alpha", 0.0), dtype=F64)
    c, s, a, e = o.ovp_quantize(w3, alphas, bits, 1 if qn.normal == "flint" else 0,
                                kw.get("both_outliers") == "left", per_row, mode)
    np.testing.assert_array_equal(c.numpy(), qn.codes)
    np.testing.assert_array_equal(s.numpy(), qn.scales)
    np.testing.assert_array_equal(a.numpy(), qn.alphas)
    assert e.shape == a.shape and e.dtype == F64 and bool((e >= 0).all())
    # dequantize: op, public torch path, numpy path
    dn = nq.ovp_dequantize(qn)
    dt = nq.ovp_dequantize(qt)
    assert isinstance(dt, torch.Tensor) and dt.dtype == F32 and tuple(dt.shape) == (6, 13)
    np.testing.assert_array_equal(dt.numpy(), dn)
    d2 = o.ovp_dequantize(c, s, 13, bits, 1 if qn.normal == "flint" else 0, per_row)
    np.testing.assert_array_equal(d2.numpy(), dn)


@pytest.mark.parametrize("bits", [4, 8])
@pytest.mark.parametrize("batch", [(1,), (5,), (2, 3)])
def test_ovp_matmul_op_equals_numpy_path(bits, batch):
    w = weight(7, 12)
    qt = nq.ovp_quantize(w, bits, "int")
    qn = nq.ovp_quantize(w.numpy(), bits, "int")
    x = xs((*batch, 12))
    ref = nq.ovp_matmul(x.numpy(), qn)
    for dt in (F32, F64):
        y = nq.ovp_matmul(x.to(dt), qt)  # routed to numkern::ovp_matmul (no pack: the fused kernel)
        assert y.dtype == dt and tuple(y.shape) == (*batch, 7)
        np.testing.assert_array_equal(y.float().numpy(), ref)
    # with a prepack (OVPLinear's path): the same product up to float32 summation order
    pack = torch.from_numpy(tq_prepack(qt))
    yp = o.ovp_matmul(x, qt.codes, qt.scales, pack, bits, 0, True)
    wd = nq.ovp_dequantize(qn).astype(np.float64)
    bound = np.abs(x.numpy().astype(np.float64)) @ np.abs(wd).T
    assert np.all(np.abs(yp.numpy() - x.numpy().astype(np.float64) @ wd.T) <= 1e-5 * bound + 1e-30)


def tq_prepack(q):
    from numkern.quant.olive import _kernels

    return _kernels.prepack(q.codes, q.scales, True, q.shape[1], q.bits, 0)


def test_ovp_matmul_gradients():
    w = weight(5, 8)
    q = nq.ovp_quantize(w, 4, "int")
    W = nq.ovp_dequantize(q).double()
    x = xs((3, 8), dtype=F64).requires_grad_(True)
    y = nq.ovp_matmul(x, q)
    assert y.requires_grad and y.dtype == F64
    g = xs((3, 5), seed=2, dtype=F64)
    (gx,) = torch.autograd.grad(y, x, g, create_graph=True)
    torch.testing.assert_close(gx, g @ W, rtol=0, atol=0)
    # the backward map g -> g @ W is float64 and linear: gradcheck / gradgradcheck in float64
    gg = g.clone().requires_grad_(True)
    torch.autograd.gradcheck(lambda t: torch.autograd.grad(nq.ovp_matmul(x, q), x, t, create_graph=True)[0],
                             (gg,))
    # second derivatives: the Hessian of sum(y^2) is 2 W^T W (double backward through the op)
    H = torch.autograd.functional.hessian(lambda t: (nq.ovp_matmul(t, q) ** 2).sum(), x.detach()[0])
    torch.testing.assert_close(H, 2 * W.T @ W, rtol=1e-12, atol=1e-12)
    # float32 finite differences (the op computes in float32; linear, so central differences are exact
    # up to rounding)
    x32, d = xs((2, 8)), xs((2, 8), seed=3)
    fd = (nq.ovp_matmul(x32 + d, q) - nq.ovp_matmul(x32 - d, q)) / 2
    _, jv = torch.func.jvp(lambda t: nq.ovp_matmul(t, q), (x32,), (d,))
    torch.testing.assert_close(jv, fd, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(jv, d @ W.float().T, rtol=1e-5, atol=1e-5)
    # torch.func.grad and vjp agree with autograd
    gf = torch.func.grad(lambda t: (nq.ovp_matmul(t, q) * g.float()[:2]).sum())(x32)
    torch.testing.assert_close(gf, g.float()[:2] @ W.float(), rtol=1e-6, atol=1e-6)


def test_not_differentiable_parts_raise():
    w = weight(4, 6).requires_grad_(True)
    c, s, a, e = o.ovp_quantize(w, torch.zeros(4, dtype=F64), 4, 0, False, True, 0)
    with pytest.raises(RuntimeError, match="not differentiable"):
        s.sum().backward()
    q = nq.ovp_quantize(w.detach(), 4, "int")
    sg = q.scales.clone().requires_grad_(True)
    with pytest.raises(RuntimeError, match="not differentiable"):
        o.ovp_dequantize(q.codes, sg, 6, 4, 0, True).sum().backward()
    with pytest.raises(RuntimeError, match="quantization parameters"):
        o.ovp_matmul(xs((2, 6)), q.codes, sg, torch.empty(0, dtype=torch.uint8), 4, 0, True).sum().backward()
    # straight-through fake quantization keeps working
    fq = nq.ovp_fake_quantize(w, 4, "int")
    fq.sum().backward()
    torch.testing.assert_close(w.grad, torch.ones_like(w))


def test_op_errors_name_the_argument():
    q = nq.ovp_quantize(weight(4, 6), 4, "int")
    bad = torch.full((2, 6), float("nan"))
    with pytest.raises(ValueError, match="w: 12 value"):
        o.ovp_quantize(bad, torch.zeros(2, dtype=F64), 4, 0, False, True, 0)
    with pytest.raises(ValueError, match="alphas"):
        o.ovp_quantize(weight(4, 6), torch.ones(3, dtype=F64), 4, 0, False, True, 2)
    with pytest.raises(ValueError, match="normal"):
        o.ovp_quantize(weight(4, 6), torch.zeros(4, dtype=F64), 8, 1, False, True, 0)
    with pytest.raises(ValueError, match="codes"):
        o.ovp_matmul(xs((2, 9)), q.codes, q.scales, torch.empty(0, dtype=torch.uint8), 4, 0, True)
    with pytest.raises(ValueError, match="scales"):
        o.ovp_dequantize(q.codes, q.scales[:2], 6, 4, 0, True)
    with pytest.raises(ValueError, match="inner dimension"):
        nq.ovp_matmul(xs((2, 5)), q)


def fused_layer(in_features=20, group_size=8, bias=True, seed=0):
    torch.manual_seed(seed)
    lin = torch.nn.Linear(in_features, 6, bias=bias)
    return sqpkg.splitquant(lin, bits=4, k=3, group_size=group_size, fused=True)


def parts(m):
    return m.codes, m.clusters, m.scales, m.offsets


@pytest.mark.parametrize("in_features,group_size", [(20, 8), (16, 8)])  # partial last group / whole
def test_splitquant_op_equals_numpy_path(in_features, group_size):
    m = fused_layer(in_features, group_size)
    fw_np = m.fused()  # numpy parts: the numpy path
    x = xs((2, 3, in_features))
    b = m.bias.float()
    ref = fw_np.matmul(x.numpy(), b.numpy())
    y = o.splitquant_matmul(x, *parts(m), b, in_features, group_size, 4)
    assert y.dtype == F32 and tuple(y.shape) == (2, 3, 6)
    np.testing.assert_array_equal(y.numpy(), ref)
    # the public paths: FusedSplitQuantWeight.matmul on torch (numpy or tensor parts), the module
    np.testing.assert_array_equal(fw_np.matmul(x, b).numpy(), ref)
    fw_t = sqpkg.FusedSplitQuantWeight(*parts(m), in_features, group_size, 4)
    np.testing.assert_array_equal(fw_t.matmul(x.double(), b).numpy(), ref)
    np.testing.assert_array_equal(m(x).numpy(), ref)
    np.testing.assert_array_equal(o.splitquant_decode(*parts(m), in_features, group_size, 4).numpy(),
                                  fw_np.dequantize())


def test_splitquant_gradients():
    m = fused_layer()
    W = torch.from_numpy(m.fused().dequantize()).double()
    x = xs((4, 20), dtype=F64).requires_grad_(True)
    b = m.bias.float().clone().requires_grad_(True)
    y = o.splitquant_matmul(x, *parts(m), b, 20, 8, 4)
    g = xs((4, 6), seed=5)
    gx, gb = torch.autograd.grad(y, (x, b), g, create_graph=True)
    torch.testing.assert_close(gx, g.double() @ W, rtol=1e-6, atol=1e-6)  # g float32 @ W float32
    torch.testing.assert_close(gb, g.sum(0), rtol=0, atol=0)
    # double backward: the backward map g -> g @ W differentiates to v -> v @ W.T (the output is
    # float32, so no float64 gradcheck); float32 central differences of the op (linear)
    gg = g.clone().requires_grad_(True)
    fw = sqpkg.FusedSplitQuantWeight(*parts(m), 20, 8, 4)
    (gx2,) = torch.autograd.grad(fw.matmul(x), x, gg, create_graph=True)
    v = xs((4, 20), seed=8, dtype=F64)
    (ggv,) = torch.autograd.grad(gx2, gg, v)
    torch.testing.assert_close(ggv.double(), v @ W.T, rtol=1e-5, atol=1e-5)
    x32, d = xs((3, 20)), xs((3, 20), seed=6)
    fd = (fw.matmul(x32 + d) - fw.matmul(x32 - d)) / 2
    _, jv = torch.func.jvp(lambda t: fw.matmul(t), (x32,), (d,))
    torch.testing.assert_close(jv, fd, rtol=1e-4, atol=1e-4)
    sg = m.scales.clone().requires_grad_(True)
    with pytest.raises(RuntimeError, match="quantization parameters"):
        o.splitquant_matmul(x.detach(), m.codes, m.clusters, sg, m.offsets, None, 20, 8, 4).sum().backward()
    with pytest.raises(ValueError, match="x: last dimension"):
        o.splitquant_matmul(xs((2, 19)), *parts(m), None, 20, 8, 4)
    with pytest.raises(ValueError, match="bias"):
        o.splitquant_matmul(xs((2, 20)), *parts(m), torch.zeros(5), 20, 8, 4)


def test_compile_fake_opcheck():
    q = nq.ovp_quantize(weight(7, 12), 4, "int")
    m = fused_layer()
    fw = sqpkg.FusedSplitQuantWeight(*parts(m), 20, 8, 4)
    b = m.bias.float()

    def f(x, x2):
        return (nq.ovp_matmul(x, q).sum() + nq.ovp_dequantize(q).sum() + fw.matmul(x2, b).sum()
                + o.ovp_quantize(x2, torch.zeros(x2.shape[0], dtype=F64), 4, 0, False, True, 0)[1].sum())

    x, x2 = xs((3, 12)), xs((3, 20), seed=7)
    cf = compiled_fullgraph(f, x, x2)
    xa, xb = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    (g1,), (g2,) = torch.autograd.grad(cf(xa, x2), xa), torch.autograd.grad(f(xb, x2), xb)
    torch.testing.assert_close(g1, g2, rtol=0, atol=0)
    torch._dynamo.reset()
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode():
        fx = torch.empty(2, 5, 12, dtype=torch.bfloat16)
        r = o.ovp_matmul(fx, torch.empty(7, 6, dtype=torch.uint8), torch.empty(7), torch.empty(0, dtype=torch.uint8),
                         4, 0, True)
        assert r.shape == (2, 5, 7) and r.dtype == torch.bfloat16
        c, s, a, err = o.ovp_quantize(torch.empty(3, 4, 9, dtype=F64), torch.empty(1, dtype=F64), 8, 0, False,
                                      False, 0)
        assert (c.shape, c.dtype, s.shape, s.dtype, a.dtype, err.shape) == ((12, 10), torch.uint8, (1,), F32,
                                                                            F64, (1,))
        d = o.ovp_dequantize(torch.empty(7, 6, dtype=torch.uint8), torch.empty(7), 11, 4, 1, True)
        assert d.shape == (7, 11) and d.dtype == F32
        y = o.splitquant_matmul(torch.empty(4, 20, dtype=F64), torch.empty(6, 12, dtype=torch.uint8),
                                torch.empty(6, 6, dtype=torch.uint8), torch.empty(6, 3, 3), torch.empty(6, 3, 3),
                                None, 20, 8, 4)
        assert y.shape == (4, 6) and y.dtype == F32
    pk = torch.empty(0, dtype=torch.uint8)
    torch.library.opcheck(o.ovp_matmul.default, (x.clone().requires_grad_(True), q.codes, q.scales, pk, 4, 0, True))
    torch.library.opcheck(o.ovp_quantize.default, (x, torch.zeros(3, dtype=F64), 4, 0, False, True, 0))
    torch.library.opcheck(o.ovp_dequantize.default, (q.codes, q.scales, 12, 4, 0, True))
    torch.library.opcheck(o.splitquant_matmul.default, (x2.clone().requires_grad_(True), *parts(m),
                                                        b.clone().requires_grad_(True), 20, 8, 4))
    torch.library.opcheck(o.splitquant_decode.default, (*parts(m), 20, 8, 4))


def test_vmap_rules_of_the_quant_ops():
    """vmap rules (no per-sample fallback: torch's fallback is turned off here, so an op without a
    rule raises): a batched x of ovp_matmul / splitquant_matmul becomes more rows of one call,
    within float32 rounding of each sample alone (|y - y_i| <= 1e-6 |x| @ |W|.T: the row count
    picks the kernel); batched weights, ovp_quantize, ovp_dequantize and splitquant_decode run
    one call per sample, bitwise each sample alone; per-sample gradients (vmap of grad)."""
    q = nq.ovp_quantize(weight(7, 12), 4, "int")
    codes, scales = torch.as_tensor(q.codes), torch.as_tensor(q.scales)
    nm = 1 if q.normal == "flint" else 0
    empty = torch.empty(0, dtype=torch.uint8)
    W = nq.ovp_dequantize(q)
    x = xs((5, 3, 12), seed=11)
    m = fused_layer()
    Ws = torch.from_numpy(m.fused().dequantize())
    x2 = xs((4, 3, 20), seed=12)
    was = torch._C._functorch._is_vmap_fallback_enabled()
    torch._C._functorch._set_vmap_fallback_enabled(False)
    try:
        y = torch.func.vmap(lambda t: o.ovp_matmul(t, codes, scales, empty, 4, nm, True), in_dims=1)(x)
        ref = torch.stack([o.ovp_matmul(x[:, i], codes, scales, empty, 4, nm, True) for i in range(3)])
        assert torch.all((y - ref).abs() <= 1e-6 * (x.abs().movedim(1, 0) @ W.abs().T) + 1e-30)
        y2 = torch.func.vmap(lambda t: o.splitquant_matmul(t, *parts(m), None, 20, 8, 4))(x2)
        ref2 = torch.stack([o.splitquant_matmul(x2[i], *parts(m), None, 20, 8, 4) for i in range(4)])
        assert torch.all((y2 - ref2).abs() <= 1e-6 * (x2.abs() @ Ws.abs().T) + 1e-30)
        # batched weights: one call a sample
        qs = [nq.ovp_quantize(weight(7, 12, seed=s), 4, "int") for s in range(3)]
        cb = torch.stack([torch.as_tensor(a.codes) for a in qs])
        sb = torch.stack([torch.as_tensor(a.scales) for a in qs])
        yb = torch.func.vmap(lambda c, s: o.ovp_matmul(x[0], c, s, empty, 4, 0, True))(cb, sb)
        assert torch.equal(yb, torch.stack([o.ovp_matmul(x[0], cb[i], sb[i], empty, 4, 0, True) for i in range(3)]))
        db = torch.func.vmap(lambda c, s: o.ovp_dequantize(c, s, 12, 4, 0, True))(cb, sb)
        assert torch.equal(db, torch.stack([o.ovp_dequantize(cb[i], sb[i], 12, 4, 0, True) for i in range(3)]))
        w3 = torch.stack([weight(7, 12, seed=s) for s in range(3)])
        a0 = torch.zeros(7, dtype=F64)
        qv = torch.func.vmap(lambda w: o.ovp_quantize(w, a0, 4, 0, False, True, 0))(w3)
        for i in range(3):
            for got, want in zip(qv, o.ovp_quantize(w3[i], a0, 4, 0, False, True, 0)):
                assert torch.equal(got[i], want)
        dd = torch.func.vmap(lambda t: o.splitquant_decode(*parts(m), 20, 8, 4) * t)(torch.ones(2))
        assert torch.equal(dd[1], Ws)
        # per-sample gradients of a squared output: 2 (x W^T) W, each sample's own
        g = torch.func.vmap(torch.func.grad(lambda t: o.ovp_matmul(t, codes, scales, empty, 4, nm, True)
                                            .square().sum()))(x[:, 0])
        gref = 2.0 * (x[:, 0].double() @ W.double().T) @ W.double()
        torch.testing.assert_close(g.double(), gref, rtol=1e-5, atol=1e-5)
    finally:
        torch._C._functorch._set_vmap_fallback_enabled(was)
