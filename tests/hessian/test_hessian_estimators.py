"""Trace/diagonal estimators: unbiasedness, Hutchinson variance, error rates, adaptive stopping."""
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from numkern import hessian as nh  # noqa: E402
from hessian_testutil import seeded_module  # noqa: E402


def randn(*shape, seed):
    return torch.randn(*shape, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))



@pytest.fixture(scope="module")
def mlp(exact_hessian):
    """A small MLP (~200 parameters), its data, and its exact loss Hessian."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 14), torch.nn.Tanh(), torch.nn.Linear(14, 4)).double()
    x = torch.randn(40, 6, dtype=torch.float64)
    y = torch.randint(0, 4, (40,))
    loss_fn = torch.nn.functional.cross_entropy
    H = exact_hessian(model, loss_fn, x, y).numpy()
    return model, loss_fn, x, y, H


def test_hessian_matvec_exact(mlp):
    model, loss_fn, x, y, H = mlp
    V = randn(5, H.shape[0], seed=11)
    for mode in ("vmap", "double_backward"):
        op = nh.hessian_matvec(model, loss_fn, x, y, mode=mode)
        assert op.mode == mode and op.dim == H.shape[0]
        np.testing.assert_allclose(op(V).numpy(), V.numpy() @ H, atol=1e-12)
        np.testing.assert_allclose(op(V[0]).numpy(), H @ V[0].numpy(), atol=1e-12)


def test_hessian_matvec_param_subset(mlp):
    model, loss_fn, x, y, H = mlp
    last = list(model[2].parameters())
    op = nh.hessian_matvec(model, loss_fn, x, y, params=last)
    k = sum(p.numel() for p in last)
    Hs = H[-k:, -k:]
    V = randn(3, k, seed=12)
    np.testing.assert_allclose(op(V).numpy(), V.numpy() @ Hs, atol=1e-12)


@pytest.mark.parametrize("method", ["hutchinson", "hutch++", "xtrace"])
def test_trace_unbiased(mlp, method):
    """Mean over 150 seeds within 3 standard errors of the exact trace (indefinite H)."""
    H = mlp[4]
    est = np.array([nh.trace(H, method=method, num_matvecs=12, seed=s).estimate for s in range(150)])
    se = est.std(ddof=1) / np.sqrt(len(est))
    assert abs(est.mean() - np.trace(H)) < 3 * se


def test_trace_on_model_unbiased(mlp):
    model, loss_fn, x, y, H = mlp
    r = nh.hessian_trace(model, loss_fn, x, y, num_matvecs=400, seed=0)
    assert r.num_matvecs == 400
    assert abs(r.estimate - np.trace(H)) < 3.5 * r.stderr


@pytest.mark.parametrize("method", ["hutchinson", "xdiag"])
def test_diagonal_unbiased(mlp, method):
    H = mlp[4]
    est = np.array([nh.diagonal(H, method=method, num_matvecs=16, seed=s).estimate for s in range(150)])
    z = (est.mean(0) - np.diag(H)) / (est.std(0, ddof=1) / np.sqrt(len(est)) + 1e-300)
    z = z[est.std(0) > 0]
    assert np.mean(z ** 2) < 1.5 and np.abs(z).max() < 5


def test_hutchinson_variance_matches_theory(mlp):
    """Per-probe variance 2(||H||_F^2 - sum H_ii^2) for Rademacher, 2 ||H||_F^2 for Gaussian."""
    H = mlp[4]
    fro2 = (H ** 2).sum()
    for probe, theory in (("rademacher", 2 * (fro2 - (np.diag(H) ** 2).sum())), ("gaussian", 2 * fro2)):
        r = nh.trace(H, num_matvecs=20000, probe=probe, seed=1)
        var = r.stderr ** 2 * r.num_matvecs
        assert abs(var / theory - 1) < 0.08, (probe, var, theory)


@pytest.fixture(scope="module")
def decaying_psd():
    rng = np.random.default_rng(42)
    n = 400
    Q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    lam = np.arange(1, n + 1, dtype=float) ** -2.0
    return (Q * lam) @ Q.T, lam.sum()


def _mean_rel_error(A, tr, method, m, seeds=12):
    return np.mean([abs(nh.trace(A, method=method, num_matvecs=m, seed=s).estimate - tr) / tr
                    for s in range(seeds)])


def test_error_rates_on_decaying_spectrum(decaying_psd):
    """Hutchinson error falls ~1/sqrt(m); Hutch++ and XTrace ~1/m or faster (m: 24 -> 192)."""
    A, tr = decaying_psd
    ratio = {}
    for method in ("hutchinson", "hutch++", "xtrace"):
        lo, hi = _mean_rel_error(A, tr, method, 24), _mean_rel_error(A, tr, method, 192)
        ratio[method] = (lo / hi, hi)
    assert 1.6 < ratio["hutchinson"][0] < 5.5          # sqrt(8) = 2.8
    assert ratio["hutch++"][0] > 6 and ratio["xtrace"][0] > 6   # >= 8 expected
    assert ratio["xtrace"][1] < ratio["hutchinson"][1] / 10
    assert ratio["hutch++"][1] < ratio["hutchinson"][1] / 5


def test_adaptive_rtol(decaying_psd):
    A, tr = decaying_psd
    # Hutchinson needs ~(1.96 * 1.47 / (rtol * 1.64))^2 probes here (per-probe std 1.47)
    for method, rtol in (("hutchinson", 0.1), ("hutch++", 0.02), ("xtrace", 0.02)):
        r = nh.trace(A, method=method, num_matvecs=3000, rtol=rtol, seed=3)
        assert r.converged and r.num_matvecs < 3000
        assert abs(r.estimate - tr) < 2.5 * rtol * tr
        assert 1.96 * r.stderr <= rtol * abs(r.estimate)
    r = nh.trace(A, num_matvecs=20, rtol=1e-6, seed=0)
    assert not r.converged and r.num_matvecs == 20
    for method, M in (("hutchinson", A + np.eye(400)), ("xdiag", A)):
        d = nh.diagonal(M, method=method, num_matvecs=2000, rtol=0.05, seed=0)
        assert d.converged and d.num_matvecs < 2000, method
        assert np.abs(d.estimate - np.diag(M)).max() < 0.1 * np.abs(np.diag(M)).max()


def test_callable_forms_agree(decaying_psd):
    A, _ = decaying_psd
    ref = nh.trace(A, num_matvecs=30, seed=7).estimate
    assert nh.trace(lambda v: A @ v, dim=400, num_matvecs=30, seed=7).estimate == pytest.approx(ref, rel=1e-12)
    assert nh.trace(lambda V: V @ A, dim=400, num_matvecs=30, seed=7, batched=True).estimate == \
        pytest.approx(ref, rel=1e-12)
    At = torch.tensor(A)
    rt = nh.trace(lambda v: At @ v, dim=400, like=At, num_matvecs=30, seed=7, method="xtrace")
    assert abs(rt.estimate - np.trace(A)) < 5 * rt.stderr + 1e-12


def test_softmax_head_as_operator():
    rng = np.random.default_rng(0)
    Z, W, b = rng.standard_normal((50, 8)), rng.standard_normal((5, 8)), rng.standard_normal(5)
    h = nh.SoftmaxHeadHessian(Z, W, b)
    # 45 probes span R^45: exact (H has rank (C-1)(d+1) = 36, so Y is rank deficient)
    r = nh.trace(h, method="xtrace", num_matvecs=90, seed=0)
    assert abs(r.estimate - h.trace()) < 1e-10 * h.trace()
    d = nh.diagonal(h, method="xdiag", num_matvecs=100, seed=0)
    np.testing.assert_allclose(d.estimate, h.flatten(h.diagonal()), atol=1e-10)


def test_bad_arguments(mlp):
    model, loss_fn, x, y, H = mlp
    with pytest.raises(ValueError, match="num_matvecs"):
        nh.trace(H, num_matvecs=0)
    with pytest.raises(ValueError, match="dim"):
        nh.trace(lambda v: v, dim=0)
    with pytest.raises(TypeError, match="dim"):
        nh.trace(lambda v: v)
    with pytest.raises(ValueError, match="method"):
        nh.trace(H, method="lanczos")
    with pytest.raises(ValueError, match="probe"):
        nh.diagonal(H, probe="uniform")
    with pytest.raises(ValueError, match="rtol"):
        nh.trace(H, rtol=-1.0)
    with pytest.raises(ValueError, match="matvec"):
        nh.trace(np.zeros((3, 4)))
    with pytest.warns(UserWarning, match="num_matvecs"):
        r = nh.trace(H, method="hutch++", num_matvecs=10, seed=0)
    assert r.num_matvecs == 9
    with pytest.raises(ValueError, match="loss_fn"):
        nh.hessian_matvec(model, lambda o, t: torch.nn.functional.cross_entropy(o, t, reduction="none"), x, y)
    frozen = seeded_module(1, lambda: torch.nn.Linear(6, 4).double().requires_grad_(False))
    with pytest.raises(ValueError, match="params"):
        nh.hessian_matvec(frozen, loss_fn, x, y)
    bn = seeded_module(2, lambda: torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.BatchNorm1d(5),
                                                      torch.nn.Linear(5, 4)).double())
    with pytest.raises(ValueError, match="BatchNorm"):
        nh.hessian_matvec(bn, loss_fn, x, y)
    bn.eval()
    assert nh.hessian_matvec(bn, loss_fn, x, y).dim == sum(p.numel() for p in bn.parameters())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        nh.trace(H, method="hutch++", num_matvecs=9, seed=0)


class _OldStyleTanh(torch.autograd.Function):
    """An autograd.Function without setup_context/jvp: torch.func transforms refuse it."""

    @staticmethod
    def forward(ctx, x):
        y = torch.tanh(x)
        ctx.save_for_backward(x)
        return y

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * (1 - torch.tanh(x) ** 2)


class _ItemGate(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(6, 4).double()

    def forward(self, x):
        return _OldStyleTanh.apply(self.lin(x))


def test_falls_back_to_double_backward(mlp):
    _, loss_fn, x, y, _ = mlp
    model = seeded_module(3, _ItemGate)
    op = nh.hessian_matvec(model, loss_fn, x, y)
    assert op.mode == "double_backward"
    theta = torch.cat([p.detach().flatten() for p in model.parameters()])

    def f(t):
        W, b = t[:24].view(4, 6), t[24:]
        return loss_fn(torch.tanh(x @ W.T + b), y)

    H = torch.autograd.functional.hessian(f, theta)
    V = randn(3, 28, seed=13)
    np.testing.assert_allclose(op(V).numpy(), (V @ H).numpy(), atol=1e-12)


def test_training_dropout_is_refused(mlp):
    """Regression (issue #17): Dropout in training mode drew a new mask per product (trace 14.6 in
    train mode vs 8.2 in eval); it is refused like BatchNorm, naming the layer."""
    _, loss_fn, x, y, _ = mlp
    model = seeded_module(4, lambda: torch.nn.Sequential(torch.nn.Linear(6, 14), torch.nn.Tanh(),
                                                         torch.nn.Dropout(0.5), torch.nn.Linear(14, 4)).double())
    with pytest.raises(ValueError, match=r"Dropout layer '2' is in training mode.*model.eval\(\)"):
        nh.hessian_matvec(model, loss_fn, x, y)
    with pytest.raises(ValueError, match="Dropout"):
        nh.hessian_trace(model, loss_fn, x, y, num_matvecs=4, seed=0)
    model.eval()  # Dropout is the identity: the Hessian of the model without it
    plain = seeded_module(4, lambda: torch.nn.Sequential(torch.nn.Linear(6, 14), torch.nn.Tanh(),
                                                         torch.nn.Linear(14, 4)).double())
    V = randn(2, nh.hessian_matvec(plain, loss_fn, x, y).dim, seed=14)
    np.testing.assert_allclose(nh.hessian_matvec(model, loss_fn, x, y)(V).numpy(),
                               nh.hessian_matvec(plain, loss_fn, x, y)(V).numpy(), rtol=0, atol=1e-14)
    p0 = seeded_module(5, lambda: torch.nn.Sequential(torch.nn.Linear(6, 4), torch.nn.Dropout(0.0)).double())
    assert nh.hessian_matvec(p0, loss_fn, x, y).dim == 28  # p = 0 is deterministic: accepted


@pytest.mark.parametrize("mode", ["vmap", "double_backward"])
def test_inplace_parameter_update_is_named(mlp, mode):
    """Regression (issue #17): after an in-place update of the parameters (optimizer.step()) the
    products raised autograd's "modified by an inplace operation" (double backward) or silently
    used the old parameters (vmap); now a RuntimeError names the parameter and the fix."""
    _, loss_fn, x, y, _ = mlp
    model = seeded_module(6, lambda: torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.Tanh(),
                                                         torch.nn.Linear(5, 4)).double())
    op = nh.hessian_matvec(model, loss_fn, x, y, mode=mode)
    V = randn(2, op.dim, seed=15)
    op(V)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    loss_fn(model(x), y).backward()
    opt.step()
    with pytest.raises(RuntimeError, match=r"parameter '0.weight' was modified in place.*hessian_matvec\(\) again"):
        op(V)
    with pytest.raises(RuntimeError, match="modified in place"):
        nh.trace(op, num_matvecs=2, seed=0)
    fresh = nh.hessian_matvec(model, loss_fn, x, y, mode=mode)
    assert fresh(V).shape == V.shape
