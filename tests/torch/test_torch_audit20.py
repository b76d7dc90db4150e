"""Composability audit of numkern's torch operators and quantized modules with torch 2.x:
torch.compile with dynamic shapes (recompilation counts), quantized modules under torch.compile
(bitwise equal to eager, one graph break per module), torch.export, torch.func in the order
argument, and determinism across thread counts."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import numkern  # noqa: E402
import numkern._torch_ops  # noqa: E402,F401  (registers torch.ops.numkern)
import numkern.quant as nq  # noqa: E402
from numkern import special as nks, vmf  # noqa: E402
from numkern._torch_ops import vmf_dist  # noqa: E402
from numkern.kde import GaussianKDE  # noqa: E402
from torch._dynamo.testing import CompileCounter  # noqa: E402
from torch._dynamo.utils import counters  # noqa: E402

F64 = torch.float64


def _unit_rows(g, d, seed):
    m = torch.randn(g, d, dtype=F64, generator=torch.Generator().manual_seed(seed))
    return m / m.norm(dim=1, keepdim=True)


# ---- vmf_sample's sample count is a SymInt ----------------------------------------------------
def test_vmf_sample_count_does_not_recompile_per_value():
    """`int n` in the schema made dynamo specialise on every sample count: a new graph per n, and
    after 8 values fullgraph=True raised FailOnRecompileLimitHit.  With SymInt n it stays one
    (dynamic=True) or two (automatic dynamic) graphs, values equal to eager."""
    mu = _unit_rows(3, 5, 0)
    kappa = torch.tensor([1.0, 5.0, 20.0], dtype=F64)
    seed = vmf_dist.seed_arg(7)
    for dynamic, most in ((None, 2), (True, 1)):
        torch._dynamo.reset()
        cc = CompileCounter()
        f = torch.compile(lambda m, k, n, s: torch.ops.numkern.vmf_sample(m, k, n, s),
                          fullgraph=True, dynamic=dynamic, backend=cc)
        for n in range(2, 14):
            out = f(mu, kappa, n, seed)
            assert out.shape == (3, n, 5)
            assert torch.equal(out, torch.ops.numkern.vmf_sample(mu, kappa, n, seed))
        assert cc.frame_count <= most, (dynamic, cc.frame_count)
    with pytest.raises(ValueError, match="n: must be >= 0"):
        torch.ops.numkern.vmf_sample(mu, kappa, -1, seed)


# ---- quantized modules under torch.compile ------------------------------------------------------
class _Two(torch.nn.Module):
    def __init__(self, bias=True):
        super().__init__()
        self.a = torch.nn.Linear(16, 32, bias=bias)
        self.b = torch.nn.Linear(32, 8, bias=bias)

    def forward(self, x):
        return torch.tanh(self.b(torch.tanh(self.a(x * 2.0))))


def _quantized_models():
    torch.manual_seed(0)
    out = []
    for bias in (True, False):
        m = _Two(bias)
        out += [nq.quantize_model(m, bits=4), nq.quantize_model(m, bits=8),
                nq.splitquant(m, bits=2, fused=True)]
    return out


@pytest.mark.parametrize("rows", [1, 3, 40])
def test_compiled_quantized_layers_equal_eager_bitwise(rows):
    """A compiled model runs each quantized layer's whole eager forward: weight-only OVPLinear
    with a bias differed from eager in the last bits (1.2e-7) because the compiled call skipped
    its fused-bias fast path (docs/olive.md promises bit for bit with backend="eager")."""
    x = torch.randn(rows, 16, generator=torch.Generator().manual_seed(rows))
    with torch.no_grad():
        for qm in _quantized_models():
            y = qm(x)
            torch._dynamo.reset()
            assert torch.equal(torch.compile(qm, backend="eager")(x), y), qm
            assert torch.equal(torch.compile(qm, backend="aot_eager", dynamic=True)(x), y), qm


def test_quantized_layers_break_the_graph_only_at_the_disabled_kernel_call():
    """One graph break per quantized module, at its torch.compiler.disable'd eager call; OVPLinear
    and SplitQuantLinear also broke at torch.jit's `_is_tracing()` in their fast-path check
    (`torch.* op returned non-Tensor`), which cost extra graphs and recompilations."""
    from numkern.quant import _torch_module

    _torch_module._run_disabled()  # (made on first use; its creation is not what is tested)
    x = torch.randn(3, 16)
    for qm in _quantized_models():
        torch._dynamo.reset()
        counters.clear()
        torch.compile(qm, backend="eager")(x)
        reasons = list(counters["graph_break"])
        assert reasons, "expected the documented graph break at each quantized module"
        assert all(r.startswith("Skip calling `torch.compiler.disable()`d function") for r in reasons), reasons


def test_compiled_quantized_model_batch_change_recompiles_boundedly():
    """dynamic=True: changing only the batch size compiles nothing new (3 graphs around the 2
    graph breaks); with mark_dynamic on the input each graph after a break is recompiled at
    most once (automatic dynamic), and results stay bitwise equal to eager."""
    qm = _quantized_models()[0]
    for how, most in (("dynamic", 3), ("mark", 6)):
        torch._dynamo.reset()
        cc = CompileCounter()
        cm = torch.compile(qm, backend=cc, dynamic=True if how == "dynamic" else None)
        with torch.no_grad():
            for b in (7, 9, 13, 17, 19):
                x = torch.randn(b, 16, generator=torch.Generator().manual_seed(b))
                if how == "mark":
                    torch._dynamo.mark_dynamic(x, 0)
                assert torch.equal(cm(x), qm(x))
        assert cc.frame_count <= most, (how, cc.frame_count)


def test_quantized_module_fullgraph_and_jit_trace_refuse_clearly():
    qm = _quantized_models()[0]
    x = torch.randn(3, 16)
    torch._dynamo.reset()
    with pytest.raises(Exception, match="torch.compiler.disable"):
        torch.compile(qm, fullgraph=True)(x)
    with pytest.raises(RuntimeError, match="torch.jit.trace is not supported"):
        torch.jit.trace(qm, (x,))


# ---- checks that found nothing (kept as regression guards) ------------------------------------
class _Special(torch.nn.Module):
    def forward(self, x):
        return (nks.log_iv(2.5, x) + nks.i1e(x) + nks.kve(torch.tensor(1.5, dtype=x.dtype), x)
                + vmf.log_normalizer(8, x) + vmf.kappa_mle(torch.sigmoid(x) * 0.9, 8))


@pytest.mark.parametrize("how", ["dynamic", "mark"])
def test_special_ops_batch_change_compiles_once(how):
    m = _Special()
    torch._dynamo.reset()
    cc = CompileCounter()
    cm = torch.compile(m, fullgraph=True, dynamic=True if how == "dynamic" else None, backend=cc)
    for b in (7, 9, 13, 17):
        x = torch.rand(b, 4, dtype=F64, generator=torch.Generator().manual_seed(b)) * 5 + 0.1
        if how == "mark":
            torch._dynamo.mark_dynamic(x, 0)
        assert torch.equal(cm(x), m(x))
    assert cc.frame_count == 1


def test_vmf_logpdf_and_kde_batch_change_compiles_once():
    mu, kappa = _unit_rows(3, 5, 1), torch.tensor([1.0, 5.0, 20.0], dtype=F64)
    kde = GaussianKDE(np.random.default_rng(0).normal(size=(50, 3)))
    fns = ((lambda x: torch.ops.numkern.vmf_logpdf(x[None], mu, kappa), 5),
           (lambda x: kde.logpdf(x), 3))
    for fn, d in fns:
        torch._dynamo.reset()
        cc = CompileCounter()
        cf = torch.compile(fn, fullgraph=True, dynamic=True, backend=cc)
        for b in (7, 9, 13):
            x = torch.randn(b, d, dtype=F64, generator=torch.Generator().manual_seed(b))
            x = (x / x.norm(dim=1, keepdim=True)).requires_grad_()
            y, r = cf(x), fn(x)
            assert torch.equal(y, r)
            (g1,) = torch.autograd.grad(y.sum(), x)
            (g2,) = torch.autograd.grad(r.sum(), x)
            np.testing.assert_allclose(g1.numpy(), g2.numpy(), rtol=1e-14, atol=1e-14)
        assert cc.frame_count == 1


def test_export_special_ops_dynamic_batch_and_reload(tmp_path):
    m = _Special()
    x = torch.rand(6, 4, dtype=F64, generator=torch.Generator().manual_seed(0)) + 0.1
    ep = torch.export.export(m, (x,), dynamic_shapes={"x": {0: torch.export.Dim("batch")}})
    x2 = torch.rand(9, 4, dtype=F64, generator=torch.Generator().manual_seed(1)) + 0.1
    assert torch.equal(ep.module()(x2), m(x2))
    torch.export.save(ep, tmp_path / "m.pt2")
    assert torch.equal(torch.export.load(tmp_path / "m.pt2").module()(x2), m(x2))


@pytest.mark.parametrize("name", ["log_iv", "iv", "kve", "iv_ratio"])
def test_vmap_in_dims_on_the_order(name):
    f = getattr(nks, name)
    g = torch.Generator().manual_seed(3)
    v = torch.rand(4, dtype=F64, generator=g) * 3 + 0.6
    x = torch.rand(4, 3, dtype=F64, generator=g) * 5 + 0.2
    assert torch.equal(torch.func.vmap(f, in_dims=(0, None))(v, x[0]), torch.stack([f(v[i], x[0]) for i in range(4)]))
    assert torch.equal(torch.func.vmap(f, in_dims=(None, 1))(v, x), torch.stack([f(v, x[:, j]) for j in range(3)]))
    # the Jacobian in the order (central difference inside) against an outer finite difference
    jv = torch.func.jacrev(lambda t: f(t, x[:, 0]))(v)
    e = torch.eye(4, dtype=F64)
    fd = torch.stack([(f(v + 1e-6 * e[i], x[:, 0]) - f(v - 1e-6 * e[i], x[:, 0])) / 2e-6 for i in range(4)], 1)
    np.testing.assert_allclose(jv.numpy(), fd.numpy(), rtol=1e-6, atol=1e-9)


def test_results_do_not_depend_on_thread_counts():
    x = torch.rand(300_000, dtype=F64, generator=torch.Generator().manual_seed(0)) * 50
    kde = GaussianKDE(np.random.default_rng(0).normal(size=(1000, 3)))
    p = torch.randn(700, 3, dtype=F64, generator=torch.Generator().manual_seed(1), requires_grad=True)
    torch.manual_seed(0)
    m = torch.nn.Sequential(torch.nn.Linear(256, 256))
    qo, qs = nq.quantize_model(m, bits=4), nq.splitquant(m, bits=4, fused=True)
    xq = torch.randn(64, 256, generator=torch.Generator().manual_seed(2))

    def run():
        lp = kde.logpdf(p)
        (g,) = torch.autograd.grad(lp.sum(), p)
        return [nks.iv(2.5, x), vmf.log_normalizer(64, x + 0.1), lp.detach(), g, qo(xq), qs(xq)]

    nk0, t0 = numkern.get_num_threads(), torch.get_num_threads()
    try:
        res = []
        for nt in (1, 2):
            numkern.set_num_threads(nt)
            torch.set_num_threads(nt)
            res.append(run())
            assert all(torch.equal(a, b) for a, b in zip(res[-1], run()))
    finally:
        numkern.set_num_threads(nk0)
        torch.set_num_threads(t0)
    assert all(torch.equal(a, b) for a, b in zip(*res))


@pytest.mark.parametrize("name", ["log_iv", "iv", "kve", "iv_ratio"])
def test_jacrev_in_the_order_leaks_no_graph(name):
    """jacrev's vjp_fn runs (under vmap) after its grad level has exited; the order derivative's
    Python Function recorded on those dead wrappers, so the Jacobian in v came out of the
    transform requiring grad (grad_fn set, .numpy() refused).  Second derivatives in v still
    raise."""
    f = getattr(nks, name)
    v = torch.tensor([0.7, 1.5], dtype=F64)
    x = torch.tensor([1.0, 2.0], dtype=F64)
    j = torch.func.jacrev(lambda t: f(t, x))(v)
    assert not j.requires_grad and j.grad_fn is None
    jf = torch.func.jacfwd(lambda t: f(t, x))(v)
    np.testing.assert_allclose(j.numpy(), jf.numpy(), rtol=1e-12, atol=0)
    for second in (torch.func.hessian, lambda g: torch.func.jacrev(torch.func.jacrev(g))):
        with pytest.raises(RuntimeError, match="first derivative only"):
            second(lambda t: f(t, x).sum())(v)
