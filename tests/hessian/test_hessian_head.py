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
    V = torch.randn(3, h.dim, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
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


# ---- the per-row kernel itself (numkern._core.hessian, the header CUDA compiles too) -------------
def _native_rows(logits, features, labels, has_bias=True):
    n, C = logits.shape
    out = {"probs": np.full((n, C), -7.0), "curvature": np.full((n, C), -7.0),
           "residual": np.full((n, C), -7.0), "trace_terms": np.full(n, -7.0), "loss": np.full(n, -7.0)}
    numkern._core.hessian.head_rows(logits, features, labels, has_bias, **out)
    return out


def _reference_rows(L, Z, y, has_bias=True):
    """The same outputs from their definitions (numpy, float64)."""
    P = np.exp(L - L.max(1, keepdims=True))
    P /= P.sum(1, keepdims=True)
    R = P.copy()
    R[np.arange(len(y)), y] -= 1
    return {"probs": P, "curvature": P * (1 - P), "residual": R,
            "trace_terms": (1 - (P * P).sum(1)) * ((Z * Z).sum(1) + has_bias),
            "loss": -np.log(P[np.arange(len(y)), y])}


@pytest.mark.parametrize("where", [[0], [3], [6], [0, 6], [2, 4], [1, 2, 3, 4, 5, 6, 0]])
@pytest.mark.parametrize("other", [0.0, np.inf, -np.inf])
def test_nan_rule_in_row_scan(where, other):
    """The one NaN rule of hessian.hpp (the CUDA kernel calls the same functions): a NaN logit
    anywhere in a row makes every output of that row NaN, whatever else the row holds (+-inf
    included); the other rows are computed as without it."""
    rng = np.random.default_rng(17)
    n, C, d = 5, 7, 3
    L = 3 * rng.standard_normal((n, C))
    Z = rng.standard_normal((n, d))
    y = rng.integers(0, C, n)
    ref = _reference_rows(L, Z, y)
    bad = 2
    L[bad, where] = np.nan
    if other != 0.0:
        L[bad, (where[0] + 1) % C] = other
    out = _native_rows(L, Z, y)
    ok = np.arange(n) != bad
    for k, v in out.items():
        assert np.isnan(v[bad]).all(), k
        np.testing.assert_allclose(v[ok], ref[k][ok], rtol=1e-13, atol=1e-15, err_msg=k)


def test_row_scan_ties_and_single_class():
    """Tied maxima (the first is the argmax) and C = 1 (p = 1, no curvature, loss 0)."""
    L = np.array([[1.0, 3.0, 3.0, -2.0], [5.0, 5.0, 5.0, 5.0]])
    Z = np.ones((2, 2))
    y = np.array([1, 3])
    out, ref = _native_rows(L, Z, y), _reference_rows(L, Z, y)
    for k in out:
        np.testing.assert_allclose(out[k], ref[k], rtol=1e-15, atol=1e-16, err_msg=k)
    one = _native_rows(np.array([[2.5], [-1.0]]), Z, np.array([0, 0]))
    assert (one["probs"] == 1).all() and (one["curvature"] == 0).all() and (one["loss"] == 0).all()


def test_native_bindings_check_arrays():
    """The bindings read validated array views: errors name the argument, nothing is written."""
    hs = numkern._core.hessian
    L, Z, y = np.zeros((3, 4)), np.zeros((3, 2)), np.array([0, 1, 3])
    P = np.full((3, 4), -1.0)
    with pytest.raises(TypeError, match="features: expected dtype float64"):
        hs.head_rows(L, Z.astype(np.float32), y, True, probs=P)
    with pytest.raises(TypeError, match="labels: expected dtype int64"):
        hs.head_rows(L, Z, y.astype(np.int32), True, probs=P)
    with pytest.raises(ValueError, match="labels: value 4 out of range"):
        hs.head_rows(L, Z, np.array([0, 1, 4]), True, probs=P)
    with pytest.raises(ValueError, match="probs: dimension 1 must have extent 4"):
        hs.head_rows(L, Z, y, True, probs=np.zeros((3, 5)))
    with pytest.raises(ValueError, match="logits: must be C-contiguous"):
        hs.head_rows(np.zeros((4, 3)).T, Z, y, True, probs=P)
    ro = np.zeros(3)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="loss: array is read-only"):
        hs.head_rows(L, Z, y, True, loss=ro)
    with pytest.raises(ValueError, match="labels: required"):
        hs.head_rows(L, Z, None, True, loss=np.zeros(3))
    with pytest.raises(TypeError, match="logits: dtype must be float32 or float64"):
        hs.head_rows(L.astype(np.int64), Z, y, True)
    assert (P == -1.0).all()
    U = np.zeros((2, 3, 4))
    with pytest.raises(ValueError, match="u: dimension 2 must have extent 4"):
        hs.head_apply_jacobian(P, np.zeros((2, 3, 5)), U)
    with pytest.raises(ValueError, match="out: shape differs from u"):
        hs.head_apply_jacobian(P, U, np.zeros((1, 3, 4)))


@pytest.mark.skipif(not numkern.cuda_available(), reason="needs a CUDA device and the _cuda module")
def test_cuda_row_kernel_same_rule():
    """numkern._cuda.hessian takes the CPU arguments plus stream; the same NaN rule and the
    documented bound (sums of non-negative terms: 2 (C - 1) 2^-53 relative) hold."""
    rng = np.random.default_rng(23)
    n, C, d = 70, 45, 6
    L, Z, y = 4 * rng.standard_normal((n, C)), rng.standard_normal((n, d)), rng.integers(0, C, n)
    L[3, [0, 40]] = np.nan
    L[5, 7], L[5, 9] = np.nan, np.inf
    cpu = _native_rows(L, Z, y)
    dev = lambda a: torch.tensor(a, device="cuda")  # noqa: E731
    out = {k: dev(np.full_like(v, -7.0)) for k, v in cpu.items()}
    numkern._cuda.hessian.head_rows(dev(L), dev(Z), dev(y), True, **out,
                                    stream=torch.cuda.current_stream().cuda_stream)
    torch.cuda.synchronize()
    bound = 2 * (C - 1) * 2.0 ** -53 * 4  # a few roundings on top of the sums
    for k, v in out.items():
        v = v.cpu().numpy()
        assert np.array_equal(np.isnan(v), np.isnan(cpu[k])), k
        np.testing.assert_allclose(v, cpu[k], rtol=bound, atol=1e-300, err_msg=k)
