"""Unusual array inputs at the public numpy / torch entry points (audit 21).

Each test compares a call on an unusual array (a torch tensor with a lazy negation, a masked
array, a numpy argument next to a torch tensor requiring grad, an out= tensor that cannot take a
result) with the same call on a plain C-contiguous copy, or checks the refusal names the argument.
"""
import numpy as np
import pytest

import numkern.kde as kde
import numkern.special as sp
import numkern.vmf as vmf
from numkern._backend import Context, TORCH
from numkern._backend.ops import TorchOps

torch = pytest.importorskip("torch")


def _unit_rows(n, d, seed):
    x = np.random.default_rng(seed).standard_normal((n, d))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _neg_bit(a):
    """A float64 tensor equal to `a` whose storage holds -a (the neg bit set), as the imaginary
    part of a conjugated complex tensor is."""
    z = torch.complex(torch.zeros_like(torch.as_tensor(a)), -torch.as_tensor(a)).conj()
    t = z.imag
    assert t.is_neg() and torch.equal(t.resolve_neg(), torch.as_tensor(a))
    return t


# ---- torch tensors with the neg bit (z.conj().imag) ----------------------------------------------
def test_neg_bit_tensor_vmf_fit_and_logpdf():
    X = _unit_rows(40, 3, 0)
    Xn = _neg_bit(X)
    ref = vmf.fit(torch.from_numpy(X))
    got = vmf.fit(Xn)  # was RuntimeError: Can't call numpy() on Tensor that has negative bit set
    np.testing.assert_allclose(got.kappa.numpy(), ref.kappa.numpy(), rtol=1e-12)
    np.testing.assert_allclose(got.mu.numpy(), ref.mu.numpy(), rtol=1e-12, atol=1e-15)
    d = vmf.VonMisesFisher(np.array([0.0, 0.6, 0.8]), 3.0)
    np.testing.assert_allclose(np.asarray(d.logpdf(Xn)), d.logpdf(X), rtol=1e-12)
    rb = np.array([0.2, 0.5, 0.9])
    np.testing.assert_allclose(vmf.kappa_mle(_neg_bit(rb), 3).numpy(), vmf.kappa_mle(rb, 3), rtol=1e-12)


def test_neg_bit_tensor_kde():
    rng = np.random.default_rng(1)
    D, P, w = rng.standard_normal((30, 2)), rng.standard_normal((5, 2)), rng.uniform(0.1, 1.0, 30)
    ref = kde.GaussianKDE(D, bandwidth=0.5, weights=w).logpdf(P)
    got = kde.GaussianKDE(_neg_bit(D), bandwidth=0.5, weights=_neg_bit(w)).logpdf(_neg_bit(P))
    np.testing.assert_allclose(np.asarray(got), ref, rtol=1e-12)  # was TypeError "cannot convert"
    k = kde.GaussianKDE(D, bandwidth=0.5)
    np.testing.assert_allclose(np.asarray(k.logpdf(_neg_bit(P))), k.logpdf(P), rtol=1e-12)


def test_neg_bit_tensor_backend_reads_values_not_storage():
    a = np.array([[1.0, -2.0], [3.5, 4.0]])
    t = _neg_bit(a)
    ctx = Context(t, names=("t",))
    assert ctx.kind == TORCH
    np.testing.assert_array_equal(ctx.input(t, np.float64, "t"), a)
    np.testing.assert_array_equal(Context.native(t), a)
    # the torch (CUDA) ops: the tensor handed to the kernels holds the values, no lazy negation
    r = TorchOps(torch.device("cpu")).asarray(t, np.float64)
    assert not r.is_neg()
    np.testing.assert_array_equal(r.numpy(), a)
    np.testing.assert_array_equal(TorchOps(torch.device("cpu")).to_host(t), a)


def test_neg_bit_tensor_special_matches_plain():
    x = np.array([0.5, 1.0, 2.5, 7.0])
    np.testing.assert_allclose(sp.i0(_neg_bit(x)).numpy(), sp.i0(x), rtol=1e-15)
    np.testing.assert_allclose(sp.iv(1.5, _neg_bit(x)).numpy(), sp.iv(1.5, x), rtol=1e-15)


# ---- masked arrays: refused where the mask would be ignored, propagated by the ufuncs -------------
def _masked(a, where):
    m = np.zeros(a.shape, bool)
    m[where] = True
    return np.ma.masked_array(a, mask=m)


def test_masked_entries_refused_by_vmf():
    X = _unit_rows(10, 3, 2)
    X[0] = [5.0, 0.0, 0.0]  # a non-unit row under the mask: its value must not be used silently
    with pytest.raises(TypeError, match=r"^X: a masked array with masked entries \(3 of 30\)"):
        vmf.fit(_masked(X, (0,)))
    with pytest.raises(TypeError, match="^X: a masked array"):
        vmf.mean_resultant_length(_masked(X, (0,)))
    with pytest.raises(TypeError, match="^weights: a masked array"):
        vmf.fit(X[1:], weights=_masked(np.ones(9), (3,)))
    with pytest.raises(TypeError, match="^kappa: a masked array"):
        vmf.log_normalizer(3, np.ma.masked_array([2.0, -1.0], mask=[False, True]))
    with pytest.raises(TypeError, match="^rbar: a masked array"):
        vmf.kappa_mle(np.ma.masked_array([0.5, 1.5], mask=[False, True]), 3)
    d = vmf.VonMisesFisher(np.array([1.0, 0.0, 0.0]), 2.0)
    with pytest.raises(TypeError, match="^X: a masked array"):
        d.logpdf(_masked(X, (0,)))
    with pytest.raises(TypeError, match="^X: a masked array"):
        vmf.VMFMixture(2, seed=0).fit(_masked(X, (0,)))


def test_masked_entries_refused_by_kde():
    rng = np.random.default_rng(3)
    D, P = rng.standard_normal((20, 2)), rng.standard_normal((4, 2))
    with pytest.raises(TypeError, match="^data: a masked array"):
        kde.GaussianKDE(_masked(D, (0, 1)), bandwidth=0.5)
    k = kde.GaussianKDE(D, bandwidth=0.5)
    with pytest.raises(TypeError, match=r"^points: a masked array with masked entries \(1 of 8\)"):
        k.logpdf(_masked(P, (0, 0)))
    with pytest.raises(TypeError, match="^weights: a masked array"):
        kde.GaussianKDE(D, bandwidth=0.5, weights=_masked(np.ones(20), (0,)))


def test_masked_array_without_masked_entries_is_its_data():
    X = _unit_rows(10, 3, 4)
    m = np.ma.masked_array(X, mask=np.zeros(X.shape, bool))
    np.testing.assert_allclose(vmf.fit(m).kappa, vmf.fit(X).kappa, rtol=1e-15)
    D = np.random.default_rng(5).standard_normal((20, 2))
    np.testing.assert_allclose(kde.GaussianKDE(np.ma.masked_array(D), bandwidth=0.5).logpdf(D[:3]),
                               kde.GaussianKDE(D, bandwidth=0.5).logpdf(D[:3]), rtol=1e-15)


def test_special_ufunc_propagates_the_mask():
    x = np.array([0.5, 1.0, 2.0])
    r = sp.iv(1.0, np.ma.masked_array(x, mask=[True, False, False]))
    assert isinstance(r, np.ma.MaskedArray)
    np.testing.assert_array_equal(np.ma.getmaskarray(r), [True, False, False])
    np.testing.assert_allclose(r.data[1:], sp.iv(1.0, x[1:]), rtol=1e-15)


# ---- a numpy argument next to a torch tensor requiring grad ------------------------------------
def test_vmf_numpy_X_with_torch_weights_requiring_grad():
    X = _unit_rows(25, 3, 6)
    w0 = np.random.default_rng(7).uniform(0.2, 1.0, 25)
    for Xa in (X, X.astype(">f8"), X.tolist()):
        w = torch.tensor(w0, requires_grad=True)
        r = vmf.mean_resultant_length(Xa, weights=w)  # was AttributeError: 'numpy.ndarray' ... 'to'
        np.testing.assert_allclose(r.item(), vmf.mean_resultant_length(X, weights=w0), rtol=1e-13)
        r.backward()
        # d rbar / d w_i = (x_i . S/|S| - rbar) / sum w  (S = sum_j w_j x_j)
        S = (w0[:, None] * X).sum(0)
        want = (X @ (S / np.linalg.norm(S)) - np.linalg.norm(S) / w0.sum()) / w0.sum()
        np.testing.assert_allclose(w.grad.numpy(), want, rtol=1e-10, atol=1e-14)
    w = torch.tensor(w0, requires_grad=True)
    dist = vmf.fit(X, weights=w)
    ref = vmf.fit(X, weights=w0)
    np.testing.assert_allclose(dist.kappa.detach().numpy(), ref.kappa, rtol=1e-12)
    dist.kappa.backward()
    assert w.grad is not None and torch.isfinite(w.grad).all()


# ---- torch out= that cannot take the result --------------------------------------------------
def test_torch_out_requiring_grad_refused_untouched():
    x = torch.tensor([0.5, 1.0, 2.0], dtype=torch.float64)
    out = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    with pytest.raises(RuntimeError, match="^out: requires grad"):
        sp.iv(1.0, x, out=out)
    assert torch.equal(out.detach(), torch.zeros(3, dtype=torch.float64))
    with torch.no_grad():  # allowed outside grad mode, as torch's out= functions
        sp.iv(1.0, x, out=out)
    np.testing.assert_allclose(out.detach().numpy(), sp.iv(1.0, x.numpy()), rtol=1e-15)


def test_torch_out_expanded_refused_naming_out():
    x = torch.tensor([0.5, 1.0, 2.0], dtype=torch.float64)
    base = torch.zeros(1, dtype=torch.float64)
    with pytest.raises(ValueError, match="^out: several elements share one memory location"):
        sp.iv(1.0, x, out=base.expand(3))
    assert base.item() == 0.0


def test_torch_out_neg_bit_gets_values():
    x = torch.tensor([0.5, 1.0, 2.0], dtype=torch.float64)
    out = _neg_bit(np.zeros(3))
    sp.i0(x, out=out)
    np.testing.assert_allclose(out.resolve_neg().numpy(), sp.i0(x.numpy()), rtol=1e-15)


def test_neg_bit_tensor_ovp_quantize_and_masked_ovp_matmul():
    """ovp_quantize reads a neg-bit view's values (it raised torch's numpy() error); ovp_matmul
    refuses a numpy x with masked entries naming x (the mask was dropped)."""
    from numkern.quant import olive as O

    w = torch.randn(8, 16, generator=torch.Generator().manual_seed(21))
    a, b = O.ovp_quantize(torch._neg_view(w), bits=4), O.ovp_quantize(-w, bits=4)
    np.testing.assert_array_equal(np.asarray(a.codes), np.asarray(b.codes))
    np.testing.assert_array_equal(np.asarray(a.scales), np.asarray(b.scales))
    q = O.ovp_quantize(w.numpy(), bits=4)
    xm = np.ma.masked_array(np.ones((2, 16), np.float32), mask=np.eye(2, 16, dtype=bool))
    with pytest.raises(TypeError, match="^x: a masked array"):
        O.ovp_matmul(xm, q)
    np.testing.assert_array_equal(O.ovp_matmul(np.ma.masked_array(np.ones((2, 16), np.float32)), q),
                                  O.ovp_matmul(np.ones((2, 16), np.float32), q))


def test_hessian_matrix_masked_and_half_precision_torch():
    """A masked matrix operand is refused naming matvec (np.asarray dropped the mask); a float16 /
    bfloat16 torch matrix is probed in float32 (it raised torch's dtype mismatch): the estimate equals
    the one of the same matrix widened to float32 by the caller."""
    import numkern.hessian as H

    rng = np.random.default_rng(22)
    A = rng.standard_normal((20, 20))
    A = A @ A.T
    m = np.ma.masked_array(A, mask=np.zeros_like(A, bool))
    m.mask[0, 0] = True
    with pytest.raises(TypeError, match="^matvec: a masked array"):
        H.trace(m, num_matvecs=40, seed=0)
    t = torch.tensor(A)
    for dt in (torch.float16, torch.bfloat16):
        half = t.to(dt)
        got = H.trace(half, num_matvecs=40, seed=0)
        want = H.trace(half.float(), num_matvecs=40, seed=0)
        assert got.estimate == want.estimate
