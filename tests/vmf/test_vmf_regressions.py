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


def test_requires_grad_parameters_propagate_gradients(torch):
    """#17: mu/kappa requiring grad gave results with requires_grad False (then a warning); now the
    results carry gradients through numkern's torch operators (tests/torch/test_torch_ops_vmf_dist.py
    checks their values), with no warning."""
    kappa = torch.tensor(5.0, dtype=torch.float64, requires_grad=True)
    mu = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        d = vmf.VonMisesFisher(mu, kappa)
        h = d.entropy()
        with torch.no_grad():
            assert not vmf.VonMisesFisher(mu, kappa).entropy().requires_grad
    assert h.requires_grad
    h.backward()
    # dH/dkappa = -kappa A'(kappa), A' = 1 - A^2 - (d-1) A/kappa (d = 3)
    a = float(vmf.VonMisesFisher(mu, 5.0).mean()[0])
    assert float(kappa.grad) == pytest.approx(-5.0 * (1 - a * a - 2 * a / 5.0), rel=1e-12)


def test_empty_inputs():
    """Empty arrays reach the kernels with stride 0 (numpy's choice); they are still contiguous."""
    assert vmf.kappa_mle(np.array([]), 3.0).shape == (0,)
    assert vmf.log_normalizer(np.zeros((0, 2)) + 3.0, 1.0).shape == (0, 2)
    d = vmf.VonMisesFisher(np.eye(3)[:1], [2.0])
    assert d.logpdf(np.zeros((0, 3))).shape == (1, 0)
    assert d.sample(0, seed=1).shape == (1, 0, 3)
