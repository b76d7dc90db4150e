"""The panel-layout pack and its register-blocked GEMM (numkern._core.olive.prepack(layout="panels"),
matmul_packed / linear_packed, csrc/cpu/olive/packed.inc), and OVPLinear's eager fast path
(one C++ call on per-layer cached views, bias fused) with its cache invalidation, hooks, copies.

Bound: |out - (x @ ovp_dequantize(W).T + b)| <= 1e-5 * (|x| @ |ovp_dequantize(W)|.T + |b|)
elementwise, on every dispatcher tier (the `isa` fixture), for batches on both sides of the
register-widening / panel-buffer switch (32 rows) and across the 256-row batch blocks."""
import copy
import pickle

import numpy as np
import pytest

from numkern._core import olive as C
from numkern.quant import olive as O
from olive_testutil import check_product, heavy_tailed_q


_q, _check = heavy_tailed_q, check_product


def _panels(q):
    return C.prepack(q.codes, q.scales, True, q.shape[1], q.bits, O._NORMAL_CODE[q.normal], layout="panels")


@pytest.mark.parametrize("bits,normal", [(4, "int"), (4, "flint"), (8, "int")])
@pytest.mark.parametrize("n,k", [(70, 129), (32, 1), (5, 300)])
def test_panels_match_decode(isa, bits, normal, n, k):
    q = _q(n, k, bits, normal, n + k)
    pk = _panels(q)
    rng = np.random.default_rng(k)
    bias = rng.standard_normal(n).astype(np.float32)
    for batch in (1, 2, 3, 5, 9, 31, 32, 45, 300):
        x = rng.standard_normal((batch, k)).astype(np.float32)
        out = np.full((batch, n), np.nan, np.float32)
        C.matmul_packed(x, pk, q.scales, out, True)
        _check(out, x, q)
        _check(C.linear_packed(x, pk, q.scales, True, bias), x, q, bias)


def test_panels_equal_rows_layout_and_tiers():
    """The two layouts and every tier compute the same product (up to summation order)."""
    from numkern._core import isa, set_isa

    q = _q(40, 200, 4, "int", 1)
    rows = C.prepack(q.codes, q.scales, True, 200, 4, 0)
    x = np.random.default_rng(2).standard_normal((40, 200)).astype(np.float32)
    ref = np.empty((40, 40), np.float32)
    C.matmul_packed(x, rows, q.scales, ref, True)
    before = isa()
    try:
        for tier in ("portable", "avx2", "avx512"):
            set_isa(tier)  # clamps to what the CPU has
            for batch in (3, 40):
                got = C.linear_packed(x[:batch], _panels(q), q.scales, True)
                np.testing.assert_allclose(got, ref[:batch], rtol=1e-5, atol=1e-5)
    finally:
        set_isa(before)


def test_linear_packed_shapes_and_bad_input():
    q = _q(6, 16, 4, "int", 3)
    pk = _panels(q)
    x = np.random.default_rng(0).standard_normal((2, 3, 16)).astype(np.float32)
    y = C.linear_packed(x, pk, q.scales, True)
    assert y.shape == (2, 3, 6) and y.dtype == np.float32
    _check(y, x, q)
    assert C.linear_packed(np.ones((0, 16), np.float32), pk, q.scales, True).shape == (0, 6)
    with pytest.raises(ValueError, match="x"):
        C.linear_packed(np.ones((2, 15), np.float32), pk, q.scales, True)
    with pytest.raises(ValueError, match="bias"):
        C.linear_packed(x, pk, q.scales, True, np.ones(5, np.float32))
    with pytest.raises(ValueError, match="scales"):
        C.linear_packed(x, pk, q.scales[:1], True)
    with pytest.raises(ValueError, match="layout"):
        C.prepack(q.codes, q.scales, True, 16, 4, 0, layout="cols")
    with pytest.raises(ValueError, match="rows"):  # the integer kernel reads the row layout only
        C.matmul_int8act(x[0], pk, q.scales, np.empty((3, 6), np.float32), True, 1.0, 8, 0, False)
    bad = pk.copy()
    bad[56] = 7  # the header's layout field
    with pytest.raises(ValueError, match="format"):
        C.linear_packed(x, bad, q.scales, True)


torch = pytest.importorskip("torch")


def _layer(bits=4, n=40, k=48, bias=True, seed=0):
    torch.manual_seed(seed)
    return O.OVPLinear.from_linear(torch.nn.Linear(k, n, bias=bias), bits=bits)


def _ref(layer, x):
    y = x.double() @ layer.dequantized_weight().double().T
    return y if layer.bias is None else y + layer.bias.double()


@pytest.mark.parametrize("bits", [4, 8])
@pytest.mark.parametrize("bias", [True, False])
def test_fast_path_matches_reference_and_slow_path(isa, bits, bias):
    layer = _layer(bits, bias=bias)
    for shape in [(1, 48), (7, 48), (2, 20, 48), (40, 48)]:
        x = torch.randn(*shape)
        y = layer(x)  # x needs no gradient: the fast path
        assert y.dtype == torch.float32 and y.shape == (*shape[:-1], 40)
        torch.testing.assert_close(y.double(), _ref(layer, x), rtol=1e-5, atol=1e-5)
        xg = x.clone().requires_grad_(True)  # the autograd path (torch.ops.numkern.ovp_matmul)
        yg = layer(xg)
        torch.testing.assert_close(yg.detach(), y, rtol=1e-5, atol=1e-5)
        yg.sum().backward()
        torch.testing.assert_close(xg.grad, layer.dequantized_weight().sum(0).expand_as(x), rtol=1e-5,
                                   atol=1e-5)
    assert "_nk_fast" in layer.__dict__


def test_fast_path_follows_weight_changes():
    layer, other = _layer(seed=0), _layer(seed=1)
    x = torch.randn(5, 48)
    layer(x)
    layer.load_state_dict(other.state_dict())  # codes / scales / bias copied in place
    torch.testing.assert_close(layer(x), other(x), rtol=0, atol=0)
    with torch.no_grad():
        layer.bias.add_(1.0)  # in place
    torch.testing.assert_close(layer(x), other(x) + 1.0, rtol=1e-6, atol=1e-6)
    layer.bias = None  # replaced
    torch.testing.assert_close(layer(x), other(x) - other.bias, rtol=1e-5, atol=1e-5)
    half = _layer(seed=1).half()  # float16 bias: the fast path adds it in float32
    torch.testing.assert_close(half(x).double(), _ref(half, x), rtol=1e-5, atol=1e-5)


def test_fast_path_copies_and_dtypes():
    layer = _layer()
    x = torch.randn(3, 48)
    y = layer(x)
    for c in (copy.deepcopy(layer), pickle.loads(pickle.dumps(layer))):
        assert "_nk_fast" not in c.__dict__  # the cache stays out of copies
        torch.testing.assert_close(c(x), y, rtol=0, atol=0)
    for dt in (torch.float64, torch.bfloat16):  # other dtypes take the general path
        yd = layer(x.to(dt))
        assert yd.dtype == dt
        torch.testing.assert_close(yd.float(), y, rtol=1e-2, atol=1e-2)
    xt = torch.randn(48, 3).T  # non-contiguous
    torch.testing.assert_close(layer(xt), layer(xt.contiguous()), rtol=1e-6, atol=1e-6)  # bias added apart
    with pytest.raises(ValueError, match="in_features"):
        layer(torch.randn(3, 47))


def test_call_keeps_hooks():
    """QuantModule.__call__ skips nn.Module's hook loop only while the fast-path guard is the
    one hook: user hooks (module or global) still run."""
    layer = _layer()
    x = torch.randn(2, 48)
    seen = []
    h = layer.register_forward_hook(lambda m, a, out: seen.append(out.shape))
    layer(x)
    h.remove()
    h = layer.register_forward_pre_hook(lambda m, a: (a[0] * 0,))
    torch.testing.assert_close(layer(x), layer.bias.expand(2, 40), rtol=1e-6, atol=1e-6)
    h.remove()
    g = torch.nn.modules.module.register_module_forward_hook(lambda m, a, out: seen.append("global"))
    try:
        layer(x)
    finally:
        g.remove()
    assert seen == [(2, 40), "global"]


class _Sub(torch.Tensor):
    pass


def test_call_runner_takes_only_what_it_can(runner_hook_checks):
    """OVPLinear.__call__ hands x to the layer's LayerRunner (C++, numkern._core.olive) once
    forward has made the layer's state; run() returns None -- the general call then decides --
    for anything but an exact, float32, contiguous, strided CPU torch.Tensor needing no gradient
    whose last dimension is in_features, while hooks are set, under torch.jit.trace, and once the
    layer's buffers changed; otherwise it returns what forward's fast path returns, bitwise."""
    layer = _layer()
    g = torch.Generator().manual_seed(5)
    x = torch.randn(6, 48, generator=g)
    y = layer(x)  # makes the state
    st = layer.__dict__["_nk_fast"]
    for xx in (x, x[:0], x.reshape(2, 3, 48), x[1]):
        r = st.run(layer, xx)
        assert r is not None and type(r) is torch.Tensor and r.dtype == torch.float32
        assert torch.equal(r, layer.forward(xx)) and r.shape == (*xx.shape[:-1], 40)
    assert torch.equal(st.run(layer, x), y)
    neg = torch._neg_view(x)
    refused = [x.double(), x.clone().requires_grad_(True), torch.randn(48, 6, generator=g).T, x[:, :47].contiguous(),
               x.as_subclass(_Sub), torch.randn(2, 48, generator=g).to_sparse(), neg, x.numpy(), None,
               torch.tensor(1.0)]
    for xx in refused:
        assert st.run(layer, xx) is None
    torch.testing.assert_close(layer(neg).double(), _ref(layer, -x), rtol=1e-5, atol=1e-5)  # general path
    runner_hook_checks(layer, st.run, x)
    with torch.no_grad():
        layer.codes[0, 0] ^= 1  # in place: the version counter moves
    assert st.run(layer, x) is None
    torch.testing.assert_close(layer(x).double(), _ref(layer, x), rtol=1e-5, atol=1e-5)  # a new state
    assert layer.__dict__["_nk_fast"] is not st and layer.__dict__["_nk_fast"].run(layer, x) is not None


def test_torch_func_transforms():
    """Under torch.func.vmap the weight-only layer takes torch.ops.numkern.ovp_matmul (the wrapper
    tensors have no data for the C++ fast path): each sample as the layer computes it alone, within
    the float path's bound; grad and jacrev give the dequantized weight's sums and the weight; an
    activation-quantized layer refuses the transforms with a clear error."""
    layer = _layer()
    g = torch.Generator().manual_seed(8)
    x = torch.randn(3, 5, 48, generator=g)
    with torch.no_grad():
        ref = torch.stack([layer(x[i]) for i in range(3)])
        y = torch.func.vmap(layer)(x)
    torch.testing.assert_close(y, ref, rtol=1e-5, atol=1e-5)
    w = layer.dequantized_weight()
    gr = torch.func.grad(lambda t: layer(t).sum())(x[0])
    torch.testing.assert_close(gr, w.sum(0).expand_as(x[0]), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(torch.func.jacrev(layer)(x[0, 0]), w, rtol=1e-6, atol=1e-6)
    torch.manual_seed(0)
    act = O.calibrate(O.OVPLinear.from_linear(torch.nn.Linear(48, 40), bits=4, act_bits=8), [torch.randn(16, 48)])
    with pytest.raises(NotImplementedError, match="^x: OVPLinear with act_bits does not run under torch.func"):
        torch.func.vmap(act)(x)
    with pytest.raises(NotImplementedError, match="torch.func"):
        torch.func.grad(lambda t: act(t).sum())(x[0])


@pytest.mark.parametrize("layout,bits", [("rows", 4), ("rows", 8), ("panels", 4), ("panels", 8), ("panels4", 4)])
@pytest.mark.parametrize("amx", [True, False])
def test_infinite_x_at_outlier_gives_inf_not_nan(isa, layout, bits, amx):
    """An infinite x element that meets an outlier weight: +-inf as in x @ dequantize(W).T, not
    NaN (the direct paths hold 0 at an outlier's place and add it afterwards: inf * 0 was NaN).
    Every batch size on both sides of the direct / buffered switch; NaN / inf pattern and signs
    equal to the float64 elementwise reference, finite rows within the usual bound."""
    from numkern import _core

    n, k = 70, 129
    q = _q(n, k, bits, "int", 5)
    deq = O.ovp_dequantize(q).astype(np.float64)
    pk = C.prepack(q.codes, q.scales, True, k, bits, O._NORMAL_CODE[q.normal], layout=layout)
    # the column of the largest outlier (an outlier: 0 in the packed normals)
    col = int(np.argmax(np.abs(deq).max(axis=0)))
    rng = np.random.default_rng(11)
    _core.set_amx(amx)
    try:
        for batch in (1, 2, 3, 5, 9, 12, 31, 32, 40):
            x = rng.standard_normal((batch, k)).astype(np.float32)
            x[0, col] = np.inf
            if batch > 2:
                x[2, col] = -np.inf
                x[batch - 1, 3] = np.nan
            out = np.full((batch, n), 7.0, np.float32)
            C.matmul_packed(x, pk, q.scales, out, True)
            with np.errstate(invalid="ignore"):
                ref = (x.astype(np.float64)[:, None, :] * deq[None, :, :]).sum(axis=2)
            bad = ~np.isfinite(x).all(axis=1)
            np.testing.assert_array_equal(np.isnan(out[bad]), np.isnan(ref[bad]))
            np.testing.assert_array_equal(out[bad][~np.isnan(ref[bad])], ref[bad][~np.isnan(ref[bad])])
            assert np.isinf(out[0]).sum() >= 1  # the outlier row's output is +-inf
            if (~bad).any():
                _check(out[~bad], x[~bad], q)
    finally:
        _core.set_amx(True)
