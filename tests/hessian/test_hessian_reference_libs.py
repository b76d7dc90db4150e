"""Side by side with PyHessian and curvlinops (skipped when they are not installed).

Both are installable next to torch 2.13 CPU only with ``pip install --no-deps pyhessian
curvlinops-for-pytorch einops opt-einsum einconv unfoldNd backpack-for-pytorch linear_operator``
(their declared dependencies pull torchvision and a CUDA torch).
"""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
from numkern import hessian as nh  # noqa: E402


@pytest.fixture(scope="module")
def problem():
    torch.manual_seed(1)
    model = torch.nn.Sequential(torch.nn.Linear(5, 12), torch.nn.Tanh(), torch.nn.Linear(12, 3)).double()
    x = torch.randn(30, 5, dtype=torch.float64)
    y = torch.randint(0, 3, (30,))
    loss_fn = torch.nn.CrossEntropyLoss()
    op = nh.hessian_matvec(model, loss_fn, x, y)
    H = op(torch.eye(op.dim, dtype=torch.float64)).numpy()
    return model, loss_fn, x, y, H


def test_pyhessian_same_trace(problem):
    pyh = pytest.importorskip("pyhessian", reason="pyhessian not installed")
    model, loss_fn, x, y, H = problem
    torch.manual_seed(0)
    ph = pyh.hessian(model, loss_fn, data=(x, y), cuda=False)
    samples = np.array(ph.trace(maxIter=300, tol=0.0))   # tol=0: no early stop, 300 probes
    ours = nh.trace(nh.hessian_matvec(model, loss_fn, x, y), num_matvecs=300, seed=0)
    se_ph = samples.std(ddof=1) / np.sqrt(len(samples))
    exact = np.trace(H)
    assert abs(samples.mean() - exact) < 4 * se_ph
    assert abs(ours.estimate - exact) < 4 * ours.stderr
    assert abs(samples.mean() - ours.estimate) < 4 * np.hypot(se_ph, ours.stderr)
    # same per-probe variance (both Rademacher Hutchinson)
    assert 0.75 < samples.var(ddof=1) / (ours.stderr ** 2 * 300) < 1.33


def test_curvlinops_same_estimates(problem):
    cl = pytest.importorskip("curvlinops", reason="curvlinops-for-pytorch not installed")
    model, loss_fn, x, y, H = problem
    A = cl.HessianLinearOperator(model, loss_fn, list(model.parameters()), [(x, y)])
    exact = np.trace(H)
    for fn, method, m in ((cl.hutchinson_trace, "hutchinson", 60), (cl.hutchpp_trace, "hutch++", 60),
                          (cl.xtrace, "xtrace", 60)):
        torch.manual_seed(0)
        theirs = np.array([float(fn(A, m)) for _ in range(15)])
        ours = np.array([nh.trace(H, method=method, num_matvecs=m, seed=s).estimate for s in range(15)])
        se = np.hypot(theirs.std(ddof=1), ours.std(ddof=1)) / np.sqrt(15)
        assert abs(theirs.mean() - ours.mean()) < 4 * se + 1e-9 * abs(exact), method
        assert abs(ours.mean() - exact) < 4 * ours.std(ddof=1) / np.sqrt(15) + 1e-9 * abs(exact), method
