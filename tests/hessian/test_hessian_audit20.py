"""Audit 20 (numkern.hessian): real operators only, rtol types, a clear error for mode="vmap"."""
import numpy as np
import pytest

from numkern import hessian as nh

torch = pytest.importorskip("torch")
F64 = torch.float64


def _sym(seed=0, n=6):
    a = np.random.default_rng(seed).standard_normal((n, n))
    return a + a.T


@pytest.mark.parametrize("method", ["hutchinson", "xtrace"])
def test_complex_matrix_refused_naming_matvec(method):
    """A complex matrix was cast to float64 with only numpy's ComplexWarning: the estimate was that
    of the real part, silently (torch: an error naming `like`, an argument not given)."""
    A = _sym()
    with pytest.raises(TypeError, match="matvec: unsupported dtype complex128"):
        nh.trace(A + 1j * A, method=method, num_matvecs=12, seed=0)
    with pytest.raises(TypeError, match="matvec: unsupported dtype complex128"):
        nh.diagonal(A + 1j * A, num_matvecs=12, seed=0)
    with pytest.raises(TypeError, match=r"matvec: unsupported dtype torch\.complex128"):
        nh.trace(torch.tensor(A + 1j * A), method=method, num_matvecs=12, seed=0)
    with pytest.raises(TypeError, match="matvec: unsupported dtype object"):
        nh.trace(np.array([[None, None], [None, None]]), method=method, num_matvecs=12, seed=0)


def test_complex_products_refused_naming_matvec():
    """Callables and LinearOperators returning complex products (imaginary part dropped before)."""
    import scipy.sparse.linalg as spla

    A = _sym(1)
    C = A + 1j * np.eye(6)
    with pytest.raises(TypeError, match="matvec: returned an array of dtype complex128"):
        nh.trace(lambda v: C @ v, dim=6, num_matvecs=8, seed=0)
    with pytest.raises(TypeError, match="matvec: returned an array of dtype complex128"):
        nh.diagonal(lambda V: V @ C, dim=6, num_matvecs=8, seed=0, batched=True)
    with pytest.raises(TypeError, match="matvec: returned an array of dtype complex128"):
        nh.trace(spla.aslinearoperator(C), num_matvecs=8, seed=0)
    # real operators in every form are unchanged: exact trace with a spanning XTrace sketch
    for op in (A, torch.tensor(A), spla.aslinearoperator(A), lambda v: A @ v):
        r = nh.trace(op, dim=6, method="xtrace", num_matvecs=12, seed=0)
        assert r.stderr == 0.0 and abs(r.estimate - np.trace(A)) <= 1e-12 * np.abs(A).sum()


def test_rtol_accepts_numpy_scalars_refuses_bool():
    A = _sym(2)
    ref = nh.trace(A, rtol=0.5, seed=3)
    for rtol in (np.float32(0.5), np.float64(0.5)):
        r = nh.trace(A, rtol=rtol, seed=3)
        assert (r.estimate, r.stderr, r.num_matvecs, r.converged) == \
            (ref.estimate, ref.stderr, ref.num_matvecs, ref.converged)
    with pytest.raises(ValueError, match="rtol"):
        nh.trace(A, rtol=True, seed=3)


class _Square(torch.autograd.Function):
    """Old-style autograd.Function (no setup_context / jvp): torch.func transforms refuse it, while
    double backward differentiates its (differentiable) backward."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * x

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return 2 * x * g


class _FunclessModel(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(3, 2)

    def forward(self, x):
        return _Square.apply(self.lin(x))


def test_mode_vmap_unsupported_model_names_mode(one_torch_thread, exact_hessian):
    """mode="vmap" where torch.func cannot run the model: a RuntimeError naming `mode` and the way
    out (before: torch's own message, e.g. about setup_context, or "ZeroTensors are immutable" for
    F.mse_loss under torch 2.13, with no hint that mode="auto" works)."""
    torch.manual_seed(0)
    m = _FunclessModel().double()
    x, y = torch.randn(9, 3, dtype=F64), torch.randn(9, 2, dtype=F64)

    def loss(o, t):
        return ((o - t) ** 2).mean()

    with pytest.raises(RuntimeError, match=r"mode: 'vmap' was requested but torch\.func cannot"):
        nh.hessian_matvec(m, loss, x, y, mode="vmap")
    op = nh.hessian_matvec(m, loss, x, y)              # auto: falls back to double backward
    assert op.mode == "double_backward"
    V = torch.randn(3, op.dim, dtype=F64)
    torch.testing.assert_close(op(V), V @ exact_hessian(m, loss, x, y), rtol=0, atol=1e-12)
