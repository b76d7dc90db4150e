"""Regression tests of numkern.vmf bugs fixed with issue #12 / #17."""
import warnings

import numpy as np
import pytest

from numkern import vmf


def test_torch_float64_parameters_give_no_read_only_warning(torch):
    """#17: VonMisesFisher(torch float64).kappa warned "The given NumPy array is not writable"
    (a read-only broadcast view handed to torch.from_numpy), and aliased the caller's kappa."""
    kt = torch.tensor([2.0, 3.0], dtype=torch.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        d = vmf.VonMisesFisher(torch.tensor(np.eye(4)[:2]), kt)
        k = d.kappa
        d.mu, d.entropy(), d.mean()
    k += 1.0
    assert kt.tolist() == [2.0, 3.0]  # the caller's tensor is not the distribution's storage


def test_requires_grad_parameters_warn_instead_of_silently_dropping(torch):
    """#17: mu/kappa requiring grad gave results with requires_grad False and no word about it."""
    kappa = torch.tensor(5.0, dtype=torch.float64, requires_grad=True)
    mu = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)
    with pytest.warns(UserWarning, match="not differentiable"):
        d = vmf.VonMisesFisher(mu, kappa)
    assert not d.entropy().requires_grad
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        vmf.VonMisesFisher(mu, kappa.detach())
        with torch.no_grad():
            vmf.VonMisesFisher(mu, kappa)
    # log_normalizer stays differentiable
    vmf.log_normalizer(3, kappa).backward()
    assert kappa.grad is not None and float(kappa.grad) == pytest.approx(-float(vmf.VonMisesFisher(mu, 5.0).mean()[0]),
                                                                         rel=1e-13)


def test_empty_inputs():
    """Empty arrays reach the kernels with stride 0 (numpy's choice); they are still contiguous."""
    assert vmf.kappa_mle(np.array([]), 3.0).shape == (0,)
    assert vmf.log_normalizer(np.zeros((0, 2)) + 3.0, 1.0).shape == (0, 2)
    d = vmf.VonMisesFisher(np.eye(3)[:1], [2.0])
    assert d.logpdf(np.zeros((0, 3))).shape == (1, 0)
    assert d.sample(0, seed=1).shape == (1, 0, 3)
