"""numkern.vmf's log_normalizer and kappa_mle as torch operators: exact first and second
derivatives up to d = 131072 (gradcheck, gradgradcheck, mpmath), HVPs, and what raises."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from numkern import special, vmf  # noqa: E402

F64 = torch.float64
DIMS = [2, 3, 64, 2048, 131072]
KAPPAS = [1e-3, 0.5, 30.0, 1e3, 1e5]


@pytest.mark.parametrize("d", DIMS)
def test_log_normalizer_gradcheck_gradgradcheck(d):
    for k in KAPPAS:
        kappa = torch.tensor([k], dtype=F64, requires_grad=True)
        f = lambda kk: vmf.log_normalizer(d, kk)  # noqa: E731
        # central differences of a function of size |log C_d| carry ~1e-10 |log C_d| of rounding
        atol = max(1e-5, 1e-9 * abs(float(f(kappa.detach()))))
        assert torch.autograd.gradcheck(f, (kappa,), atol=atol), (d, k)
        assert torch.autograd.gradgradcheck(f, (kappa,)), (d, k)


@pytest.mark.parametrize("d", DIMS)
def test_log_normalizer_derivatives_are_the_ratio_and_its_derivative(mp, d):
    kappa = torch.tensor(KAPPAS, dtype=F64, requires_grad=True)
    (g,) = torch.autograd.grad(vmf.log_normalizer(d, kappa).sum(), kappa, create_graph=True)
    (h,) = torch.autograd.grad(g.sum(), kappa)
    np.testing.assert_array_equal(g.detach().numpy(), -special.iv_ratio(d / 2, np.array(KAPPAS)))
    if d > 2048:
        return  # mpmath's besseli does not converge there; gradgradcheck above covers d = 131072
    # d^2/dkappa^2 log C_d = -A_d'(kappa); for kappa >> d the derivative is ~d/kappa^2 from terms
    # ~d/kappa, and the relative error grows like eps kappa (docs/torch.md)
    for k, hk in zip(KAPPAS, h.numpy()):
        ratio = lambda t: mp.besseli(mp.mpf(d) / 2, t) / mp.besseli(mp.mpf(d) / 2 - 1, t)  # noqa: E731
        ref = -float(mp.diff(ratio, k))
        assert abs(hk - ref) <= 1e-14 * max(100.0, k) * abs(ref), (k, hk, ref)


def test_log_normalizer_hvp_regression(mp):
    # an HVP through log_normalizer was off by 2.5 % (the gradient was a constant to double backward)
    d, ks = 64, [0.5, 30.0, 200.0]
    kappa = torch.tensor(ks, dtype=F64)
    u = torch.tensor([1.0, -2.0, 0.5], dtype=F64)
    _, hvp = torch.autograd.functional.hvp(lambda kk: vmf.log_normalizer(d, kk).sum(), kappa, u)
    for i, k in enumerate(ks):
        ratio = lambda t: mp.besseli(d / 2, t) / mp.besseli(d / 2 - 1, t)  # noqa: E731
        ref = -float(mp.diff(ratio, k)) * float(u[i])
        assert abs(float(hvp[i]) - ref) <= 1e-12 * abs(ref), (k, float(hvp[i]), ref)
    # forward-over-reverse gives the same
    hf = torch.func.jvp(torch.func.grad(lambda kk: vmf.log_normalizer(d, kk).sum()), (kappa,), (u,))[1]
    np.testing.assert_allclose(hf.numpy(), hvp.numpy(), rtol=1e-14)


@pytest.mark.parametrize("d", DIMS)
def test_kappa_mle_derivatives(d):
    for r in [1e-3, 0.2, 0.7, 0.99]:
        rbar = torch.tensor([r], dtype=F64, requires_grad=True)
        f = lambda rr: vmf.kappa_mle(rr, d)  # noqa: E731
        assert torch.autograd.gradcheck(f, (rbar,), rtol=1e-5), (d, r)
        # the second derivative needs A''(kappa), whose relative error grows like eps kappa^2 for
        # kappa >> d (docs/torch.md): checked where kappa <= 1e6 (d = 131072, rbar = 0.99 gives 6.5e6)
        if float(f(rbar.detach())) <= 1e6:
            assert torch.autograd.gradgradcheck(f, (rbar,), rtol=1e-4), (d, r)
    # the implicit derivative inverts A': dkappa/drbar * A'(kappa) = 1
    rbar = torch.tensor([0.3, 0.9], dtype=F64, requires_grad=True)
    k = vmf.kappa_mle(rbar, d)
    (g,) = torch.autograd.grad(k.sum(), rbar)
    kk = k.detach().numpy()
    a, c = special.iv_ratio(d / 2, kk), special.iv_ratio_c(d / 2, kk)
    np.testing.assert_allclose(g.numpy() * (c * (1 + a) - (d - 1) * a / kk), 1.0, rtol=1e-9)


def test_kappa_mle_at_zero():
    rbar = torch.zeros(1, dtype=F64, requires_grad=True)
    (g,) = torch.autograd.grad(vmf.kappa_mle(rbar, 10).sum(), rbar)
    assert float(g) == 10.0  # A ~ kappa/d near 0


def test_not_differentiable_in_d():
    d = torch.tensor(64.0, dtype=F64, requires_grad=True)
    kappa = torch.tensor([3.0], dtype=F64, requires_grad=True)
    with pytest.raises(RuntimeError, match="not differentiable in d"):
        vmf.log_normalizer(d, kappa).sum().backward()
    with pytest.raises(RuntimeError, match="not differentiable in d"):
        vmf.kappa_mle(torch.tensor([0.5], dtype=F64), d).sum().backward()


def test_validation_errors_name_the_argument():
    with pytest.raises(ValueError, match="kappa"):
        vmf.log_normalizer(64, torch.tensor([-1.0], dtype=F64, requires_grad=True))
    with pytest.raises(ValueError, match="d"):
        vmf.log_normalizer(torch.tensor([1.0]), torch.tensor([1.0]))
    with pytest.raises(ValueError, match="rbar"):
        vmf.kappa_mle(torch.tensor([1.0]), 5)
    with pytest.raises(ValueError, match="broadcast"):
        vmf.log_normalizer(torch.ones(2) * 3, torch.ones(3))
    # a weak float kappa rounded to float32 is checked as given
    with pytest.raises(ValueError, match="kappa"):
        vmf.log_normalizer(torch.tensor([3.0]), -1e-50)
