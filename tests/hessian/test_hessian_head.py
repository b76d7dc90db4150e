"""SoftmaxHeadHessian against the exact autograd Hessian of a linear softmax cross-entropy head."""
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import numkern  # noqa: E402
from numkern.hessian import SoftmaxHeadHessian  # noqa: E402

TOL = 1e-10


def make_head(n, d, C, seed, bias=True, scale=1.0):
    rng = np.random.default_rng(seed)
    Z = rng.standard_normal((n, d))
    W = scale * rng.standard_normal((C, d))
    b = rng.standard_normal(C) if bias else None
    y = rng.integers(0, C, n)
    return Z, W, b, y


def exact(Z, W, b, y):
    """Hessian and gradient of the mean cross-entropy w.r.t. [W.ravel(), b] by autograd."""
    C, d = W.shape
    Zt, yt = torch.tensor(Z), torch.tensor(y)
    theta = torch.tensor(np.concatenate([W.ravel()] + ([b] if b is not None else [])), requires_grad=True)

    def loss(t):
        logits = Zt @ t[:C * d].view(C, d).T
        if b is not None:
            logits = logits + t[C * d:]
        return torch.nn.functional.cross_entropy(logits, yt)

    H = torch.autograd.functional.hessian(loss, theta).numpy()
    g = torch.autograd.grad(loss(theta), theta)[0].numpy()
    return H, g, loss(theta).item()


@pytest.mark.parametrize("n,d,C,bias", [(9, 5, 4, True), (17, 3, 7, False), (1, 6, 2, True), (30, 8, 1, True)])
def test_exact_against_autograd(n, d, C, bias):
    Z, W, b, y = make_head(n, d, C, seed=n + d + C, bias=bias)
    H, g, loss = exact(Z, W, b, y)
    h = SoftmaxHeadHessian(Z, W, b, y)
    assert h.dim == H.shape[0]
    assert abs(h.trace() - np.trace(H)) <= TOL * max(1, abs(np.trace(H)))
    D = h.diagonal()
    assert D.shape == (C, d + (1 if bias else 0))
    np.testing.assert_allclose(h.flatten(D), np.diag(H), rtol=0, atol=TOL)
    np.testing.assert_allclose(h.flatten(h.gradient()), g, rtol=0, atol=TOL)
    assert abs(h.loss() - loss) <= TOL
    V = np.random.default_rng(1).standard_normal((4, h.dim))
    np.testing.assert_allclose(h.matvec(V), V @ H, rtol=0, atol=TOL)            # flat batch
    np.testing.assert_allclose(h.matvec(V[0]), H @ V[0], rtol=0, atol=TOL)      # flat single
    Vm = h.unflatten(V)
    np.testing.assert_allclose(h.flatten(h.matvec(Vm)), V @ H, rtol=0, atol=TOL)  # (k, C, d+1)
    np.testing.assert_allclose(h.flatten(h.matvec(Vm[1])), H @ V[1], rtol=0, atol=TOL)


def test_hgp_identity():
    """H g = grad(1/2 ||g||^2), with g the head gradient (the identity behind HGP)."""
    Z, W, b, y = make_head(12, 4, 3, seed=3)
    C, d = W.shape
    Zt, yt = torch.tensor(Z), torch.tensor(y)
    theta = torch.tensor(np.concatenate([W.ravel(), b]), requires_grad=True)
    loss = torch.nn.functional.cross_entropy(Zt @ theta[:C * d].view(C, d).T + theta[C * d:], yt)
    g = torch.autograd.grad(loss, theta, create_graph=True)[0]
    rhs = torch.autograd.grad(0.5 * (g * g).sum(), theta)[0].numpy()
    h = SoftmaxHeadHessian(Z, W, b, y)
    np.testing.assert_allclose(h.flatten(h.matvec(h.gradient())), rhs, rtol=0, atol=TOL)


def test_torch_inputs_return_torch():
    Z, W, b, y = make_head(10, 4, 3, seed=5)
    h = SoftmaxHeadHessian(torch.tensor(Z), torch.tensor(W), torch.tensor(b), torch.tensor(y))
    ref = SoftmaxHeadHessian(Z, W, b, y)
    D = h.diagonal()
    assert isinstance(D, torch.Tensor) and D.dtype == torch.float64
    np.testing.assert_allclose(D.numpy(), ref.diagonal(), rtol=0, atol=1e-15)
    assert abs(h.trace() - ref.trace()) < 1e-14
    V = torch.randn(3, h.dim, dtype=torch.float64)
    np.testing.assert_allclose(h.matvec(V).numpy(), ref.matvec(V.numpy()), rtol=0, atol=1e-14)


def test_float32():
    Z, W, b, y = make_head(50, 6, 5, seed=6)
    H, g, _ = exact(Z, W, b, y)
    h = SoftmaxHeadHessian(Z.astype(np.float32), W.astype(np.float32), b.astype(np.float32), y)
    D = h.diagonal()
    assert D.dtype == np.float32
    np.testing.assert_allclose(h.flatten(D), np.diag(H), rtol=2e-5, atol=1e-7)
    assert abs(h.trace() - np.trace(H)) < 2e-5 * np.trace(H)


def test_confident_rows_keep_precision():
    """1 - ||p||^2 for a margin of 40: exactly 2 e^-40 / (1 + e^-40)^2, where 1 - ||p||^2 in
    floating point is 0.  With z = 0 and a bias the trace is that factor."""
    Z = np.zeros((1, 3))
    W = np.zeros((2, 3))
    b = np.array([0.0, -40.0])
    h = SoftmaxHeadHessian(Z, W, b, np.array([0]))
    ref = 2 * math.exp(-40) / (1 + math.exp(-40)) ** 2
    assert abs(h.trace() - ref) <= 1e-14 * ref
    p = np.exp(b) / np.exp(b).sum()
    assert 1 - (p ** 2).sum() == 0.0  # the direct formula loses everything
    assert abs(h.diagonal()[1, 3] - math.exp(-40) / (1 + math.exp(-40)) ** 2) <= 1e-14 * ref
    assert abs(h.loss() - math.log1p(math.exp(-40))) <= 1e-14 * math.exp(-40)


def test_nan_propagates():
    Z, W, b, y = make_head(4, 3, 3, seed=7)
    Z[2, 1] = np.nan
    h = SoftmaxHeadHessian(Z, W, b, y)
    assert math.isnan(h.trace())
    D = h.diagonal()
    assert np.isnan(D).any()


@pytest.mark.parametrize("args,match", [
    (dict(features=np.zeros((4, 3)), weight=np.zeros((2, 5))), "weight"),
    (dict(features=np.zeros(4), weight=np.zeros((2, 4))), "features"),
    (dict(features=np.zeros((4, 3)), weight=np.zeros((2, 3)), bias=np.zeros(3)), "bias"),
    (dict(features=np.zeros((4, 3)), weight=np.zeros((2, 3)), labels=np.array([0, 1, 2, 0])), "labels"),
    (dict(features=np.zeros((4, 3)), weight=np.zeros((2, 3)), labels=np.array([0, 1, -1, 0])), "labels"),
    (dict(features=np.zeros((4, 3)), weight=np.zeros((2, 3)), labels=np.array([0, 1])), "labels"),
    (dict(features=np.zeros((0, 3)), weight=np.zeros((2, 3))), "features"),
])
def test_bad_input_names_argument(args, match):
    with pytest.raises(ValueError, match=match):
        SoftmaxHeadHessian(**args)


def test_bad_types_and_missing_labels():
    with pytest.raises(TypeError, match="labels"):
        SoftmaxHeadHessian(np.zeros((2, 3)), np.zeros((2, 3)), None, np.array([0.0, 1.0]))
    h = SoftmaxHeadHessian(np.zeros((2, 3)), np.zeros((2, 3)))
    with pytest.raises(ValueError, match="labels"):
        h.gradient()
    with pytest.raises(ValueError, match="V"):
        h.matvec(np.zeros(5))


@pytest.mark.skipif(not numkern.cuda_available(), reason="needs a CUDA device and the _cuda module")
def test_cuda_matches_cpu():
    Z, W, b, y = make_head(200, 16, 11, seed=8)
    ref = SoftmaxHeadHessian(Z, W, b, y)
    dev = lambda a: torch.tensor(a, device="cuda")  # noqa: E731
    h = SoftmaxHeadHessian(dev(Z), dev(W), dev(b), dev(y))
    assert abs(h.trace() - ref.trace()) < 1e-12
    np.testing.assert_allclose(h.diagonal().cpu().numpy(), ref.diagonal(), atol=1e-13)
    np.testing.assert_allclose(h.gradient().cpu().numpy(), ref.gradient(), atol=1e-13)
    V = np.random.default_rng(0).standard_normal((3, ref.dim))
    np.testing.assert_allclose(h.matvec(dev(V)).cpu().numpy(), ref.matvec(V), atol=1e-12)
