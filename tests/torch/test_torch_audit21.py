"""Audit of the eager fast path of numkern.special on torch, the quant ops' vmap rules and the
Hankel-series derivative's eager shortcut: the profiler still records the public special
functions' operators; kve / k0e / k1e derivatives work on tensors without host data (meta);
vmap of the per-sample quant ops over an empty batch."""
from __future__ import annotations

import importlib
import math

import pytest

torch = pytest.importorskip("torch")

import numkern.quant as nq  # noqa: E402
import numkern.special as nks  # noqa: E402
from numkern._torch_ops import quant as tq, special as ts, splitquant as tsq  # noqa: E402,F401

o = torch.ops.numkern
F64 = torch.float64


def _x(n=6, seed=5):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, generator=g, dtype=F64) * 20 + 0.1


@pytest.mark.parametrize("profiler", ["torch.profiler", "torch.autograd.profiler"])
def test_profiler_records_the_public_special_functions(profiler):
    """Under a profiler the public functions go through torch.ops.numkern.<name> (the profiler
    records ops in the dispatcher; the direct CPU call was missing from its trace), with the
    operator's values bitwise."""
    x = _x()
    ctx = torch.profiler.profile() if profiler == "torch.profiler" else torch.autograd.profiler.profile()
    with ctx as p:
        a, b, c = nks.i0e(x), nks.iv(1.5, x), nks.kve(torch.full_like(x, 0.7), x)
    keys = {e.key for e in p.key_averages()}
    assert {"numkern::i0e", "numkern::iv", "numkern::kve"} <= keys
    assert torch.equal(a, o.i0e(x))
    assert torch.equal(b, o.iv(torch.tensor(1.5, dtype=F64), x))
    assert torch.equal(c, o.kve(torch.full_like(x, 0.7), x))
    # outside the profiler: the direct path, the same bits
    assert torch.equal(nks.i0e(x), a)


@pytest.mark.parametrize("name", ["kve", "k0e", "k1e"])
def test_kve_derivatives_on_meta_tensors(name):
    """d/dx of kve / k0e / k1e on tensors without host data: the eager shortcut of the Hankel form
    read its mask with bool() (on meta: 'Tensor.item() cannot be called on meta tensors'; on CUDA a
    device sync); reverse, double backward and forward mode give meta results of the input's shape."""
    x = torch.empty(3, 4, dtype=F64, device="meta", requires_grad=True)
    args = (torch.empty(4, dtype=F64, device="meta"), x) if name == "kve" else (x,)
    y = getattr(o, name)(*args)
    g, = torch.autograd.grad(y.sum(), x, create_graph=True)
    assert g.device.type == "meta" and g.shape == x.shape and g.dtype == F64
    g2, = torch.autograd.grad(g.sum(), x)
    assert g2.device.type == "meta" and g2.shape == x.shape
    import torch.autograd.forward_ad as fwad
    with fwad.dual_level():
        d = fwad.make_dual(x.detach(), torch.ones_like(x.detach()))
        t = fwad.unpack_dual(getattr(o, name)(*args[:-1], d)).tangent
    assert t.device.type == "meta" and t.shape == x.shape


@pytest.mark.parametrize("name", ["kve", "k0e", "k1e"])
def test_kve_derivative_cpu_shortcut_is_the_full_form(name):
    """On CPU, the shortcut (no element past x_0) equals the full torch.where form bitwise, in
    first and second derivatives (the full form forced through a torch.func wrapper)."""
    x = torch.linspace(0.5, 20.0, 9, dtype=F64)
    v = torch.full_like(x, 0.3)

    def f(t):
        return (getattr(o, name)(v, t) if name == "kve" else getattr(o, name)(t)).sum()

    xe = x.clone().requires_grad_()
    g1, = torch.autograd.grad(f(xe), xe, create_graph=True)
    g2, = torch.autograd.grad(g1.sum(), xe)
    assert torch.equal(torch.func.grad(f)(x), g1.detach())
    assert torch.equal(torch.func.grad(lambda t: torch.func.grad(f)(t).sum())(x), g2)


def _weight(rows, cols, seed):
    return torch.randn(rows, cols, generator=torch.Generator().manual_seed(seed))


def test_vmap_of_per_sample_quant_ops_over_an_empty_batch():
    """ovp_quantize / ovp_dequantize / splitquant_decode (one call a sample) under vmap with an
    empty batch: empty results of the per-sample shapes and dtypes (was 'stack expects a non-empty
    TensorList', and a malformed out_dims error for ovp_quantize), as for the folded matmuls; a
    batch of one equals the single call bitwise."""
    a0 = torch.zeros(7, dtype=F64)
    w = _weight(7, 12, 3)[None]

    def quant(t):
        return o.ovp_quantize(t, a0, 4, 0, False, True, 0)

    one = torch.func.vmap(quant)(w)
    zero = torch.func.vmap(quant)(w[:0])
    for z, r, s in zip(zero, one, quant(w[0])):
        assert z.shape == (0, *s.shape) and z.dtype == s.dtype
        assert torch.equal(r[0], s)
    codes, scales = one[0], one[1]
    dq = torch.func.vmap(lambda c, s: o.ovp_dequantize(c, s, 12, 4, 0, True))
    assert dq(codes[:0], scales[:0]).shape == (0, 7, 12) and dq(codes[:0], scales[:0]).dtype == torch.float32
    assert torch.equal(dq(codes, scales)[0], o.ovp_dequantize(codes[0], scales[0], 12, 4, 0, True))
    # a mismatched per-sample argument still raises with an empty batch (the fake kernel's checks)
    with pytest.raises(ValueError, match="scales"):
        dq(codes[:0], scales[:0, :3])

    sq = importlib.import_module("numkern.quant.splitquant")
    torch.manual_seed(0)
    m = sq.splitquant(torch.nn.Linear(20, 6), bits=4, k=3, group_size=8, fused=True)
    dec = torch.func.vmap(lambda s: o.splitquant_decode(m.codes, m.clusters, s, m.offsets, 20, 8, 4))
    e = dec(m.scales[None][:0])
    assert e.shape == (0, 6, 20) and e.dtype == torch.float32
    assert torch.equal(dec(m.scales[None])[0], o.splitquant_decode(m.codes, m.clusters, m.scales, m.offsets, 20, 8, 4))


@pytest.mark.parametrize("name", ["kv", "kve", "log_kv", "k0", "k1", "k0e", "k1e"])
def test_k_derivatives_at_the_ends_of_the_domain(name):
    """d/dx at x = 0 and x = +inf: the limits (-inf at 0+; at +inf 0 for kv / kve / k0 ... k1e and
    -1 for log_kv), where g_K = K'/K was inf / inf or 0 / 0 there (NaN before); dlog_kv_dx itself
    gives -inf and -1 there."""
    import numpy as np

    x = torch.tensor([0.0, math.inf], dtype=torch.float64, requires_grad=True)
    for v in ((0.0, 0.7, -2.0) if name in ("kv", "kve", "log_kv") else (None,)):
        f = (lambda t: getattr(nks, name)(v, t)) if v is not None else getattr(nks, name)
        (g,) = torch.autograd.grad(f(x).sum(), x)
        assert g[0].item() == -math.inf
        assert g[1].item() == (-1.0 if name == "log_kv" else 0.0)
    np.testing.assert_array_equal(torch.ops.numkern.dlog_kv_dx(torch.tensor([0.5, 3.0], dtype=torch.float64),
                                                               torch.tensor([0.0, math.inf], dtype=torch.float64)),
                                  [-math.inf, -1.0])
    assert math.isnan(torch.ops.numkern.dlog_kv_dx(torch.tensor([math.nan], dtype=torch.float64),
                                                   torch.tensor([0.0], dtype=torch.float64)).item())
