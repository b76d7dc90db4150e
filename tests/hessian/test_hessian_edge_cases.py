"""Edge cases of numkern.hessian found by an audit (each test failed before its fix).

Estimators: zero and rank-deficient sketches in XTrace/XDiag (checked against the definition with
explicit leave-one-out projectors), exact results once the sketch spans R^dim, stderr with fewer
than two samples, ``confidence`` validation, NaN input, scipy.sparse input.  Torch models: unused
parameters, losses linear in the parameters, writes through ``.data``, duplicated ``params``,
torch.inference_mode(); the alignment penalties with an empty domain.  Exact Hessians come from
torch.autograd.functional.hessian in float64 (conftest.exact_hessian).
"""
from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from numkern import hessian as nh  # noqa: E402
from numkern.hessian import Operator  # noqa: E402
from numkern.hessian import _estimators as est  # noqa: E402

F64 = torch.float64
CE = torch.nn.functional.cross_entropy


def sym(n, seed, rank=None):
    """A random symmetric indefinite n x n matrix (of the given rank)."""
    rng = np.random.default_rng(seed)
    r = n if rank is None else rank
    B = rng.standard_normal((n, r))
    return B @ np.diag(rng.standard_normal(r)) @ B.T


def tanh_mlp(seed):
    g = torch.Generator().manual_seed(seed)
    m = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2)).to(F64)
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=F64))
    return m


def batch(seed, n=20, d=3, classes=2):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=F64), torch.randint(0, classes, (n,), generator=g)


def dense(op):
    """The operator's matrix from products with the identity."""
    return op(torch.eye(op.dim, dtype=F64))


# ---- XTrace / XDiag: zero and rank-deficient sketches (defect 3) --------------------------------
def _projector(Y):
    """Orthogonal projector onto the span of the rows of Y (numerical rank, numpy's rule)."""
    if Y.shape[0] == 0:
        return np.zeros((Y.shape[1],) * 2)
    U, sig, _ = np.linalg.svd(Y.T, full_matrices=False)
    r = int((sig > max(Y.shape) * np.finfo(float).eps * (sig[0] if sig.size else 0.0)).sum())
    return U[:, :r] @ U[:, :r].T


def _definition(A, Om):
    """XTrace's t_i and XDiag's d_i by their definition: Q_(i) Q_(i)^T the projector onto
    span(A Omega without probe i), for any rank."""
    Y = Om @ A
    t, d = [], []
    for i, w in enumerate(Om):
        P = _projector(np.delete(Y, i, 0))
        R = np.eye(A.shape[0]) - P
        t.append(np.trace(P @ A @ P) + w @ R @ A @ R @ w)
        d.append(np.diag(P @ A) + w * (R @ A @ w))
    return np.array(t), np.array(d)


def test_xtrace_xdiag_of_zero_matrix():
    """A = 0 (rank 0 sketch; the QR factor of A Omega is 0): estimate 0, stderr 0, no products
    beyond A Omega; numpy and torch; with rtol converged at once."""
    for A in (np.zeros((5, 5)), torch.zeros(5, 5, dtype=F64)):
        t = nh.trace(A, method="xtrace", num_matvecs=8, seed=0)
        assert (t.estimate, t.stderr, t.num_matvecs, t.converged) == (0.0, 0.0, 4, True)
        d = nh.diagonal(A, method="xdiag", num_matvecs=8, seed=0)
        assert not np.any(np.asarray(d.estimate)) and not np.any(np.asarray(d.stderr))
        t = nh.trace(A, method="xtrace", num_matvecs=8, seed=0, rtol=0.1)
        assert t.estimate == 0.0 and t.converged
        d = nh.diagonal(A, method="xdiag", num_matvecs=8, seed=0, rtol=0.1)
        assert not np.any(np.asarray(d.estimate)) and d.converged


@pytest.mark.parametrize("probe", ["rademacher", "gaussian"])
def test_exchangeable_samples_equal_the_definition_for_any_rank(probe):
    """XTrace's leave-one-out values and XDiag's per-probe diagonals equal their definition
    (explicit projectors) for the identity (Rademacher probes then coincide often in these small
    dimensions: rank-deficient sketches with columns that are and are not in the span of the
    others), the zero matrix, low-rank and full-rank matrices; s < dim probes."""
    rng = np.random.default_rng(7)
    deficient = 0
    for trial in range(80):
        n = int(rng.integers(3, 10))
        kind = trial % 4
        A = (np.eye(n), np.zeros((n, n)), sym(n, trial, rank=int(rng.integers(1, n))), sym(n, trial))[kind]
        s = int(rng.integers(2, n))
        op = Operator(A)
        Om = op.probes(rng, (s, n), probe)
        Y = op(Om)
        deficient += np.linalg.matrix_rank(Y) < s
        t_ref, d_ref = _definition(A, Om)
        scale = np.abs(A).sum() + 1.0
        t = est._xtrace_round(op, Om, Y).samples
        d = est._xdiag_round(op, Om, Y).samples
        np.testing.assert_allclose(t, t_ref, rtol=0, atol=1e-12 * scale, err_msg=f"trial {trial}")
        np.testing.assert_allclose(d, d_ref, rtol=0, atol=1e-12 * scale, err_msg=f"trial {trial}")
    assert deficient >= 25   # the rank-deficient path was exercised (20 of them zero matrices)


def test_coinciding_probes():
    """A = I_5 with probes 0 and 2 equal and probe 3 their negative: the sketch has rank 2 of 4;
    leaving out probe 0, 2 or 3 keeps its span (s_i = 0), leaving out probe 1 lowers it.  Before the
    fix: LinAlgError (exactly singular R) or, when roundoff hid the singularity, tr(Q^T A Q) over a
    spurious basis direction."""
    A = np.eye(5)
    w = np.array([1.0, -1.0, 1.0, 1.0, -1.0])
    Om = np.array([w, [1.0, 1.0, -1.0, 1.0, 1.0], w, -w])
    op = Operator(A)
    t_ref, d_ref = _definition(A, Om)
    # without probe 0, 2 or 3: span(w, omega_1), t = 2 + 0; without probe 1: span(w), t = 1 +
    # ||(I - w w^T / 5) omega_1||^2 = 1 + 5 - (w . omega_1)^2 / 5 = 5.8
    np.testing.assert_allclose(t_ref, [2.0, 5.8, 2.0, 2.0])
    np.testing.assert_allclose(est._xtrace_round(op, Om, op(Om)).samples, t_ref, rtol=0, atol=1e-13)
    np.testing.assert_allclose(est._xdiag_round(op, Om, op(Om)).samples, d_ref, rtol=0, atol=1e-13)


def test_low_rank_matrix_gaussian_probes_give_the_exact_trace():
    """A of rank 3 < 6 probes, Gaussian: every left-out sketch still spans range(A), so every
    t_i = tr(A) and diag(A) exactly (the documented "rank-deficient sketches give the exact tr(A)")."""
    A = sym(12, 3, rank=3)
    for seed in range(5):
        t = nh.trace(A, method="xtrace", num_matvecs=12, probe="gaussian", seed=seed)
        assert t.estimate == pytest.approx(np.trace(A), rel=1e-12, abs=1e-12)
        assert t.stderr < 1e-10 * np.abs(A).sum()
        d = nh.diagonal(A, method="xdiag", num_matvecs=12, probe="gaussian", seed=seed)
        np.testing.assert_allclose(d.estimate, np.diag(A), rtol=0, atol=1e-11 * np.abs(A).max())


# ---- exact once the sketch spans R^dim (defect 7) --------------------------------------------------
def test_sketch_spanning_the_space_is_exact():
    A = sym(10, 1)
    for m in (20, 40):
        t = nh.trace(A, method="xtrace", num_matvecs=m, seed=0)
        assert t.estimate == pytest.approx(np.trace(A), rel=1e-12) and t.stderr == 0.0
        assert t.num_matvecs == 20 and t.interval() == (t.estimate, t.estimate)
        d = nh.diagonal(A, method="xdiag", num_matvecs=m, seed=0)
        np.testing.assert_allclose(d.estimate, np.diag(A), rtol=0, atol=1e-12 * np.abs(A).max())
        assert not np.any(d.stderr) and d.num_matvecs == 20
    # adaptive: grows the probe set to dim and stops there, converged
    t = nh.trace(A, method="xtrace", num_matvecs=400, rtol=1e-3, seed=0)
    assert t.converged and t.stderr == 0.0 and t.estimate == pytest.approx(np.trace(A), rel=1e-12)
    d = nh.diagonal(A, method="xdiag", num_matvecs=400, rtol=1e-3, seed=0)
    assert d.converged and not np.any(d.stderr)
    # Hutch++ with a sketch of dim probes: exact, no residual probes (2 dim products)
    h = nh.trace(A, method="hutch++", num_matvecs=30, seed=0)
    assert h.estimate == pytest.approx(np.trace(A), rel=1e-12) and h.stderr == 0.0 and h.num_matvecs == 20


def test_model_xtrace_with_dim_probes_is_exact(one_torch_thread, exact_hessian):
    m = tanh_mlp(0)
    x, y = batch(1)
    H = exact_hessian(m, CE, x, y)
    dim = H.shape[0]
    t = nh.hessian_trace(m, CE, x, y, method="xtrace", num_matvecs=2 * dim, seed=0)
    assert t.estimate == pytest.approx(float(H.trace()), rel=1e-10) and t.stderr == 0.0 and t.converged
    d = nh.hessian_diagonal(m, CE, x, y, method="xdiag", num_matvecs=2 * dim, seed=0)
    torch.testing.assert_close(d.estimate, H.diagonal(), rtol=0, atol=1e-10)
    assert not d.stderr.any()


# ---- stderr with fewer than two samples (defect 9) -------------------------------------------------
def test_single_sample_stderr_is_infinite():
    A = sym(6, 2)        # not diagonal: one Rademacher probe is not exact
    t = nh.trace(A, num_matvecs=1, seed=0)
    assert math.isfinite(t.estimate) and t.stderr == math.inf
    assert t.interval() == (-math.inf, math.inf)
    d = nh.diagonal(A, num_matvecs=1, seed=0)
    assert np.all(np.isinf(d.stderr))
    h = nh.trace(A, method="hutch++", num_matvecs=3, seed=0)   # one residual probe
    assert h.stderr == math.inf
    # exact cases keep stderr 0: a 1 x 1 matrix (Hutch++'s sketch spans it), and two or more
    # Rademacher probes of a diagonal matrix (v^T A v = tr(A) for every probe)
    assert nh.trace(np.array([[3.0]]), method="hutch++", num_matvecs=3, seed=0).stderr == 0.0
    assert nh.trace(np.diag([1.0, 2.0, 3.0]), num_matvecs=2, seed=0).stderr == 0.0
    # torch operators alike
    At = torch.tensor(A)
    assert nh.trace(At, num_matvecs=1, seed=0).stderr == math.inf
    assert torch.isinf(nh.diagonal(At, num_matvecs=1, seed=0).stderr).all()


# ---- confidence (defect 8) -------------------------------------------------------------------------
@pytest.mark.parametrize("confidence", [2.0, 0.0, 1.0, -0.5, math.nan, True, "0.9", None])
def test_confidence_must_be_in_open_unit_interval(confidence):
    A = sym(5, 3)
    for fn, kw in ((nh.trace, {}), (nh.trace, {"rtol": 0.1}), (nh.diagonal, {"rtol": 0.1}),
                   (nh.trace, {"method": "xtrace"})):
        with pytest.raises(ValueError, match=r"confidence: must be in \(0, 1\)"):
            fn(A, num_matvecs=20, seed=0, confidence=confidence, **kw)
    with pytest.raises(ValueError, match="confidence"):
        nh.trace(A, num_matvecs=20, seed=0).interval(confidence)


def test_valid_confidence_still_works():
    A = sym(5, 3) + 20 * np.eye(5)
    r = nh.trace(A, num_matvecs=200, seed=0, rtol=0.1, confidence=np.float64(0.9))
    assert r.converged
    lo, hi = r.interval(0.5)
    assert lo < r.estimate < hi


# ---- NaN input and scipy.sparse input (defect 12) ---------------------------------------------------
@pytest.mark.parametrize("lib", ["numpy", "torch"])
def test_nan_input_propagates_to_nan(lib):
    A = sym(4, 5)
    A[1, 2] = A[2, 1] = np.nan
    A = torch.tensor(A) if lib == "torch" else A
    for method, m in (("hutchinson", 8), ("hutch++", 9), ("xtrace", 8)):
        r = nh.trace(A, method=method, num_matvecs=m, seed=0)
        assert math.isnan(r.estimate) and math.isnan(r.stderr), method
        r = nh.trace(A, method=method, num_matvecs=400, seed=0, rtol=0.1)
        assert math.isnan(r.estimate) and not r.converged and r.num_matvecs < 100, method
    d = nh.diagonal(A, num_matvecs=8, seed=0)
    isnan = torch.isnan if lib == "torch" else np.isnan
    assert bool(isnan(d.estimate[1])) and bool(isnan(d.estimate[2])) and not bool(isnan(d.estimate[0]))
    d = nh.diagonal(A, method="xdiag", num_matvecs=8, seed=0)
    assert bool(isnan(d.estimate).all()) and bool(isnan(d.stderr).all())
    d = nh.diagonal(A, method="xdiag", num_matvecs=400, seed=0, rtol=0.1)
    assert not d.converged and d.num_matvecs < 100


def test_scipy_sparse_and_linear_operator_inputs():
    sps = pytest.importorskip("scipy.sparse")
    spl = pytest.importorskip("scipy.sparse.linalg")
    A = sym(30, 4)
    A[np.abs(A) < 1.0] = 0.0
    for make in (sps.csr_matrix, sps.csc_array, sps.coo_matrix, spl.aslinearoperator):
        S = make(A)
        for method, m in (("hutchinson", 20), ("hutch++", 21), ("xtrace", 20)):
            got = nh.trace(S, method=method, num_matvecs=m, seed=3)
            ref = nh.trace(A, method=method, num_matvecs=m, seed=3)
            assert got.estimate == pytest.approx(ref.estimate, rel=1e-12, abs=1e-12), (make, method)
            assert got.stderr == pytest.approx(ref.stderr, rel=1e-9, abs=1e-12)
        for method in ("hutchinson", "xdiag"):
            got = nh.diagonal(S, method=method, num_matvecs=20, seed=3)
            ref = nh.diagonal(A, method=method, num_matvecs=20, seed=3)
            np.testing.assert_allclose(got.estimate, ref.estimate, rtol=1e-12, atol=1e-12)
    # probes in another library (like=): the products still run on the host
    At = nh.trace(sps.csr_matrix(A), num_matvecs=20, seed=3, like=torch.zeros(1, dtype=F64))
    assert At.estimate == pytest.approx(nh.trace(torch.tensor(A), num_matvecs=20, seed=3).estimate, rel=1e-12)
    with pytest.raises(ValueError, match="matvec: a matrix operand must be square"):
        nh.trace(sps.csr_matrix(np.ones((3, 4))))
    with pytest.raises(ValueError, match="dim"):
        nh.trace(sps.csr_matrix(A), dim=5)


# ---- torch models: unused parameters (defect 2) -----------------------------------------------------
class WithUnused(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.a = torch.nn.Linear(3, 4)
        self.unused = torch.nn.Linear(4, 4)
        self.b = torch.nn.Linear(4, 2)

    def forward(self, x):
        return self.b(torch.tanh(self.a(x)))


@pytest.mark.parametrize("mode", ["auto", "vmap", "double_backward"])
def test_unused_parameters_have_zero_rows(one_torch_thread, exact_hessian, mode):
    torch.manual_seed(0)
    m = WithUnused().to(F64)
    x, y = batch(2)
    H = exact_hessian(m, CE, x, y)
    op = nh.hessian_matvec(m, CE, x, y, mode=mode)
    torch.testing.assert_close(dense(op), H, rtol=0, atol=1e-12)
    lo = m.a.weight.numel() + m.a.bias.numel()
    hi = lo + m.unused.weight.numel() + m.unused.bias.numel()
    assert not H[lo:hi].any()
    t = nh.hessian_trace(m, CE, x, y, method="xtrace", num_matvecs=2 * op.dim, seed=0, mode=mode)
    assert t.estimate == pytest.approx(float(H.trace()), rel=1e-10)
    d = nh.hessian_diagonal(m, CE, x, y, num_matvecs=10, seed=0, mode=mode)
    assert not d.estimate[lo:hi].any()


# ---- torch models: losses linear in (or independent of) the parameters (defect 4) -------------------
@pytest.mark.parametrize("mode", ["auto", "vmap", "double_backward"])
def test_loss_linear_in_parameters_has_zero_hessian(one_torch_thread, exact_hessian, mode):
    torch.manual_seed(0)
    m = torch.nn.Linear(3, 2).to(F64)
    x, y = batch(3)
    for loss in (lambda o, t: o.mean(), lambda o, t: (o * 0).sum() + t.to(F64).mean()):
        assert not exact_hessian(m, loss, x, y).any()
        op = nh.hessian_matvec(m, loss, x, y, mode=mode)
        assert not dense(op).any()
        for method, k in (("hutchinson", 12), ("hutch++", 12), ("xtrace", 12)):
            r = nh.hessian_trace(m, loss, x, y, method=method, num_matvecs=k, seed=0, mode=mode)
            assert (r.estimate, r.stderr) == (0.0, 0.0), method
        d = nh.hessian_diagonal(m, loss, x, y, method="xdiag", num_matvecs=12, seed=0, mode=mode)
        assert not d.estimate.any() and not d.stderr.any()


# ---- torch models: writes through .data (defect 5) ---------------------------------------------------
@pytest.mark.parametrize("mode", ["vmap", "double_backward"])
def test_products_follow_data_writes(one_torch_thread, exact_hessian, mode):
    """Manual SGD writes through .data (no version bump): the operator, used before and after,
    gives the Hessian at the current values (before the fix: vmap kept the old theta, double
    backward the graph of the first call)."""
    m = tanh_mlp(1)
    x, y = batch(4)
    op = nh.hessian_matvec(m, CE, x, y, mode=mode)
    torch.testing.assert_close(dense(op), exact_hessian(m, CE, x, y), rtol=0, atol=1e-12)
    with torch.no_grad():
        for p in m.parameters():
            p.data.mul_(2.0)
    H_new = exact_hessian(m, CE, x, y)
    torch.testing.assert_close(dense(op), H_new, rtol=0, atol=1e-12)
    # a data set (one pass per call) and a subset of the parameters alike
    op = nh.hessian_matvec(m, CE, [(x[:7], y[:7]), (x[7:], y[7:])], params=list(m[2].parameters()), mode=mode)
    k = sum(p.numel() for p in m[2].parameters())
    op(torch.ones(k, dtype=F64))
    with torch.no_grad():
        m[0].weight.data.mul_(0.5)      # a parameter outside params= (held fixed) changes too
        m[2].bias.data.add_(1.0)
    torch.testing.assert_close(dense(op), exact_hessian(m, CE, x, y)[-k:, -k:], rtol=0, atol=1e-12)


def test_in_place_update_and_replaced_parameter_still_refused(one_torch_thread):
    m = tanh_mlp(2)
    x, y = batch(5)
    for mode in ("vmap", "double_backward"):
        op = nh.hessian_matvec(m, CE, x, y, mode=mode)
        opt = torch.optim.SGD(m.parameters(), lr=0.1)
        CE(m(x), y).backward()
        opt.step()
        with pytest.raises(RuntimeError, match="modified in place"):
            op(torch.ones(op.dim, dtype=F64))
    op = nh.hessian_matvec(m, CE, x, y)
    m[0].bias = torch.nn.Parameter(m[0].bias.detach().clone())
    with pytest.raises(RuntimeError, match="replaced"):
        op(torch.ones(op.dim, dtype=F64))


# ---- torch models: duplicated params (defect 6) --------------------------------------------------------
def test_duplicate_params_refused(one_torch_thread):
    m = tanh_mlp(3)
    x, y = batch(6)
    w = m[0].weight
    with pytest.raises(ValueError, match=r"params: parameter '0.weight' appears twice"):
        nh.hessian_matvec(m, CE, x, y, params=[w, m[0].bias, w])
    with pytest.raises(ValueError, match="appears twice"):
        nh.hessian_trace(m, CE, x, y, params=[w, w], num_matvecs=4, seed=0)


# ---- torch models: inference mode (defect 12) ----------------------------------------------------------
def test_inference_mode_is_named(one_torch_thread):
    m = tanh_mlp(4)
    x, y = batch(7)
    with torch.inference_mode():
        with pytest.raises(RuntimeError, match=r"torch.inference_mode\(\)"):
            nh.hessian_trace(m, CE, x, y, num_matvecs=4, seed=0)
    op = nh.hessian_matvec(m, CE, x, y)
    with torch.inference_mode():
        with pytest.raises(RuntimeError, match=r"torch.inference_mode\(\)"):
            op(torch.ones(op.dim, dtype=F64))
    with torch.inference_mode():
        mi = tanh_mlp(4)
    with pytest.raises(ValueError, match=r"params: parameter '0.weight' is an inference tensor"):
        nh.hessian_matvec(mi, CE, x, y)
    with torch.no_grad():   # no_grad is fine
        assert math.isfinite(nh.hessian_trace(m, CE, x, y, num_matvecs=4, seed=0).estimate)


@pytest.mark.parametrize("mode", ["auto", "vmap", "double_backward"])
def test_inputs_created_in_inference_mode(one_torch_thread, exact_hessian, mode):
    """Data made under inference_mode (e.g. by a frozen feature extractor) used outside it: double
    backward could not save them for backward ("Inference tensors cannot be saved")."""
    m = tanh_mlp(5)
    x, y = batch(8)
    with torch.inference_mode():
        xi, yi = x.clone(), y.clone()
    H = exact_hessian(m, CE, x, y)
    torch.testing.assert_close(dense(nh.hessian_matvec(m, CE, xi, yi, mode=mode)), H, rtol=0, atol=1e-12)
    op = nh.hessian_matvec(m, CE, [(xi[:7], yi[:7]), (xi[7:], yi[7:])], mode=mode)
    torch.testing.assert_close(dense(op), H, rtol=0, atol=1e-12)


# ---- alignment penalties: empty domain (defect 12) -----------------------------------------------------
def test_empty_domain_refused_without_process_group():
    torch.manual_seed(0)
    head = torch.nn.Linear(5, 3).to(F64)
    z = [torch.randn(30, 5, dtype=F64), torch.randn(20, 5, dtype=F64)]
    y = [torch.randint(0, 3, (30,)), torch.randint(0, 3, (20,))]
    zs, ys = [z[0], z[1][:0]], [y[0], y[1][:0]]
    calls = [lambda: nh.hgp_penalty(head, zs, ys),
             lambda: nh.hgp_penalty(head, zs, ys, loss_fn=CE),
             lambda: nh.hutchinson_penalty(head, zs, ys),
             lambda: nh.hutchinson_penalty(head, zs, ys, num_probes=4),
             lambda: nh.hutchinson_penalty(head, zs, ys, num_probes=4, loss_fn=CE)]
    for call in calls:
        with pytest.raises(ValueError, match="features: domain 1 has no samples"):
            call()
    assert torch.isfinite(nh.hgp_penalty(head, z, y))
