"""numkern.vmf: normaliser, kappa solver, fit, densities (references: mpmath at 40 digits, SciPy)."""
import math
import warnings

import mpmath as mp
import numpy as np
import pytest

import numkern
from numkern import special, vmf

mp.mp.dps = 40


def mp_ratio(v, x, terms=None):
    """I_v(x)/I_{v-1}(x) from the backward recurrence r_k = 1/(2k/x + r_{k+1}) (Gauss's continued
    fraction), started deep enough that the start error is damped below 1e-40."""
    v, x = mp.mpf(v), mp.mpf(x)
    # the start error is damped by ~exp(-n^2 / x) (x >> v), faster for v >> x
    n = terms or 60 + int(12 * math.sqrt(float(x)))
    big = v + n
    r = x / (big - mp.mpf(1) / 2 + mp.sqrt((big + mp.mpf(1) / 2) ** 2 + x * x))  # Amos-type start
    for k in range(n, 0, -1):
        r = 1 / (2 * (v + k - 1) / x + r)
    return r


def mp_kappa_root(rbar, d, kappa0, steps=3):
    """Newton in 40-digit arithmetic from numkern's kappa: A_d(kappa) = rbar."""
    k = mp.mpf(kappa0)
    r = mp.mpf(rbar)
    for _ in range(steps):
        a = mp_ratio(mp.mpf(d) / 2, k)
        da = 1 - a * a - (d - 1) * a / k
        k = k - (a - r) / da
    return k


def mp_log_normalizer(d, kappa):
    d, k = mp.mpf(d), mp.mpf(kappa)
    if k == 0:
        return -(mp.log(2) + d / 2 * mp.log(mp.pi) - mp.loggamma(d / 2))
    return (d / 2 - 1) * mp.log(k) - d / 2 * mp.log(2 * mp.pi) - mp.log(mp.besseli(d / 2 - 1, k))


def unit_rows(rng, n, d, dtype=np.float64):
    x = rng.standard_normal((n, d))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(dtype)


# ---- log normaliser -----------------------------------------------------------------------------
@pytest.mark.parametrize("d", [2, 3, 5, 10, 64, 256, 1000, 3001])
@pytest.mark.parametrize("kappa", [0.0, 1e-8, 0.3, 1.0, 7.5, 60.0, 400.0, 5e3])
def test_log_normalizer_vs_mpmath(d, kappa):
    got = vmf.log_normalizer(d, kappa)
    ref = mp_log_normalizer(d, kappa)
    assert abs(got - float(ref)) <= 2e-15 * max(1.0, abs(float(ref))), (got, ref)


def test_log_normalizer_kappa_zero_limit_and_continuity():
    for d in [2, 3, 7, 2048, 131072]:
        area = math.log(2) + d / 2 * math.log(math.pi) - math.lgamma(d / 2)
        assert vmf.log_normalizer(d, 0.0) == pytest.approx(-area, rel=1e-15)
        # series / Bessel switch at kappa^2/4 = d/8: both sides agree
        k = math.sqrt(d / 2.0)
        lo, hi = vmf.log_normalizer(d, k * (1 - 1e-12)), vmf.log_normalizer(d, k * (1 + 1e-12))
        assert abs(hi - lo) <= 1e-13 * max(1.0, abs(lo)) + 2 * k * 1e-12


def test_log_normalizer_huge_kappa_and_d():
    # log I_v(kappa) for kappa >> v: kappa - log(2 pi kappa)/2 + log(1 - (4v^2-1)/(8 kappa) + ...)
    for d, k in [(131072, 1e12), (8192, 1e9), (3, 1e15)]:
        v = d / 2 - 1
        mu = 4 * v * v
        s = 1 - (mu - 1) / (8 * k) + (mu - 1) * (mu - 9) / (2 * (8 * k) ** 2)
        ref = v * math.log(k) - d / 2 * math.log(2 * math.pi) - (k - 0.5 * math.log(2 * math.pi * k) + math.log(s))
        assert vmf.log_normalizer(d, k) == pytest.approx(ref, rel=1e-15)


def test_log_normalizer_gradient_torch():
    torch = pytest.importorskip("torch")
    k = torch.tensor([0.0, 0.5, 30.0, 4e4], dtype=torch.float64, requires_grad=True)
    y = vmf.log_normalizer(2048, k)
    y.sum().backward()
    expect = -special.iv_ratio(1024, k.detach().numpy())
    np.testing.assert_allclose(k.grad.numpy(), expect, rtol=1e-14, atol=0)
    # against a central difference of the function itself
    for kv in [0.5, 30.0, 4e4]:
        h = 1e-2 * max(kv, 1.0) if kv < 100 else 1e-5 * kv
        fd = (vmf.log_normalizer(2048, kv + h) - vmf.log_normalizer(2048, kv - h)) / (2 * h)
        assert fd == pytest.approx(-special.iv_ratio(1024, kv), rel=1e-6)


# ---- kappa solver ---------------------------------------------------------------------------------
DIMS = [2, 3, 4, 10, 100, 2048, 8192, 32768, 131072]


def test_kappa_mle_inverts_A_on_grid():
    rb = np.concatenate([np.linspace(1e-6, 0.999, 400), 1 - np.logspace(-3, -15, 60), [1e-300, 1e-12]])
    for d in DIMS:
        k = vmf.kappa_mle(rb, d)
        assert np.all(np.isfinite(k)) and np.all(k > 0)
        a = special.iv_ratio(d / 2, k)
        c = special.iv_ratio_c(d / 2, k)
        # relative accuracy of A = rbar, and of 1 - A = 1 - rbar where rbar is near 1
        err_a = np.abs(a - rb) / rb
        err_c = np.abs(c - (1 - rb)) / (1 - rb)
        assert err_a.max() <= 1e-13, (d, err_a.max())
        hi = rb > 0.5
        assert err_c[hi].max() <= 1e-13, (d, err_c[hi].max())
        assert np.all(np.diff(k) > 0) or True  # grid is not sorted at the joins; monotonicity below
        srt = np.argsort(rb)
        assert np.all(np.diff(k[srt]) >= 0)


@pytest.mark.parametrize("d", [2, 3, 10, 256, 2048, 32768, 131072])
def test_kappa_mle_vs_mpmath_root(d):
    for rbar in [0.01, 0.4, 0.8, 0.99]:
        k = float(vmf.kappa_mle(rbar, d))
        ref = mp_kappa_root(rbar, d, k, steps=2)
        assert abs(k - float(ref)) <= 1e-13 * float(ref), (d, rbar, k, ref)


def test_kappa_mle_edges():
    assert vmf.kappa_mle(0.0, 5) == 0.0
    for d in [2, 10, 131072]:
        k = vmf.kappa_mle(1 - 2.0 ** -53, d)
        assert np.isfinite(k) and k == pytest.approx((d - 1) / 2 * 2.0 ** 53, rel=1e-6)
    k32 = vmf.kappa_mle(np.float32(1 - 2.0 ** -24), np.float32(512))
    assert k32.dtype == np.float32 and np.isfinite(k32)
    # small rbar: A ~ kappa/d (1 - kappa^2/(d(d+2)))
    assert vmf.kappa_mle(1e-9, 1000) == pytest.approx(1e-6, rel=1e-12)


def test_kappa_mle_dtypes_and_kinds():
    rb = np.array([0.1, 0.5, 0.9])
    k64 = vmf.kappa_mle(rb, 300)
    k32 = vmf.kappa_mle(rb.astype(np.float32), np.float32(300))
    assert k32.dtype == np.float32
    np.testing.assert_allclose(k32, k64, rtol=1e-6)
    torch = pytest.importorskip("torch")
    kt = vmf.kappa_mle(torch.tensor(rb), 300)
    assert isinstance(kt, torch.Tensor) and kt.dtype == torch.float64
    np.testing.assert_array_equal(kt.numpy(), k64)


# ---- against SciPy where SciPy works --------------------------------------------------------------
@pytest.mark.parametrize("d", [3, 10, 64, 256])
@pytest.mark.parametrize("kappa", [0.5, 5.0, 80.0])
def test_against_scipy(d, kappa):
    from scipy.stats import vonmises_fisher

    rng = np.random.default_rng(d)
    mu = unit_rows(rng, 1, d)[0]
    ref = vonmises_fisher(mu, kappa)
    x = ref.rvs(300, random_state=rng)
    dist = vmf.VonMisesFisher(mu, kappa)
    lp, lq = dist.logpdf(x), ref.logpdf(x)
    np.testing.assert_allclose(lp, lq, rtol=1e-10, atol=1e-10)
    assert dist.entropy() == pytest.approx(ref.entropy(), rel=1e-10, abs=1e-10)
    f = vmf.fit(x)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        mu_s, k_s = vonmises_fisher.fit(x)
    np.testing.assert_allclose(f.mu, mu_s, rtol=0, atol=1e-12)
    rbar = float(vmf.mean_resultant_length(x))
    exact = float(mp_kappa_root(rbar, d, f.kappa))
    assert f.kappa == pytest.approx(exact, rel=1e-13)
    if d < 256:
        assert f.kappa == pytest.approx(k_s, rel=1e-10)
    else:
        # SciPy's brentq starts its bracket at kappa = 1e-8, where ive(127, 1e-8) underflows to 0:
        # 0/0 there, and SciPy returns the bracket end 1e-8 (stated here so a fix is noticed).
        assert k_s == pytest.approx(1e-8), k_s


def test_fit_matches_exact_mle_and_weights():
    rng = np.random.default_rng(1)
    x = vmf.VonMisesFisher(unit_rows(rng, 1, 50)[0], 40.0).sample(500, seed=3)
    w = rng.uniform(0, 2, 500)
    f = vmf.fit(x, weights=w)
    s = (w[:, None] * x).sum(0)
    rbar = np.linalg.norm(s) / w.sum()
    assert vmf.mean_resultant_length(x, weights=w) == pytest.approx(rbar, rel=1e-14)
    assert f.kappa == pytest.approx(float(mp_kappa_root(rbar, 50, f.kappa)), rel=1e-13)
    np.testing.assert_allclose(f.mu, s / np.linalg.norm(s), atol=1e-15)
    # integer weights = repeated rows
    wi = rng.integers(0, 3, 500)
    np.testing.assert_allclose(vmf.fit(x, weights=wi).kappa, vmf.fit(np.repeat(x, wi, axis=0)).kappa, rtol=1e-12)


def test_fit_batched_equals_loop():
    rng = np.random.default_rng(2)
    x = np.stack([vmf.VonMisesFisher(unit_rows(rng, 1, 20)[0], k).sample(100, seed=i)
                  for i, k in enumerate([0.5, 10.0, 100.0, 1e4])]).reshape(2, 2, 100, 20)
    f = vmf.fit(x)
    assert f.kappa.shape == (2, 2) and f.mu.shape == (2, 2, 20)
    for i in range(2):
        for j in range(2):
            g = vmf.fit(x[i, j])
            assert f.kappa[i, j] == g.kappa
            np.testing.assert_array_equal(f.mu[i, j], g.mu)
    lp = f.logpdf(x)
    assert lp.shape == (2, 2, 100)
    assert lp[1, 0, 7] == pytest.approx(vmf.VonMisesFisher(f.mu[1, 0], f.kappa[1, 0]).logpdf(x[1, 0, 7]), rel=1e-14)
    shared = f.logpdf(x[0, 0])
    assert shared.shape == (2, 2, 100)


def test_logpdf_float32_and_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(4)
    mu = unit_rows(rng, 1, 128)[0]
    x = vmf.VonMisesFisher(mu, 200.0).sample(50, seed=1)
    ref = vmf.VonMisesFisher(mu, 200.0).logpdf(x)
    d32 = vmf.VonMisesFisher(mu.astype(np.float32), np.float32(200.0))
    lp32 = d32.logpdf(x.astype(np.float32))
    assert lp32.dtype == np.float32
    np.testing.assert_allclose(lp32, ref, rtol=1e-5)
    dt = vmf.VonMisesFisher(torch.from_numpy(mu), 200.0)
    lt = dt.logpdf(torch.from_numpy(x))
    assert isinstance(lt, torch.Tensor)
    np.testing.assert_allclose(lt.numpy(), ref, rtol=1e-15)
    st = dt.sample(5, seed=9)
    assert isinstance(st, torch.Tensor) and st.shape == (5, 128)
    np.testing.assert_array_equal(st.numpy(), vmf.VonMisesFisher(mu, 200.0).sample(5, seed=9))


def test_logpdf_accurate_near_mu_for_huge_kappa():
    # x at angle theta from mu: logpdf - log C = kappa cos(theta); 1 - cos from |x - mu|^2/2 exactly
    # d = 3: log C + kappa = log kappa - log 2 pi - log(1 - e^{-2 kappa}) exactly
    kappa, theta = 1e12, 1e-7
    x = np.array([math.cos(theta), math.sin(theta), 0.0])
    dist = vmf.VonMisesFisher(np.array([1.0, 0, 0]), kappa)
    ref = float(mp.log(kappa) - mp.log(2 * mp.pi) - kappa * (1 - mp.cos(theta)))
    assert dist.logpdf(x) == pytest.approx(ref, rel=1e-14)


def test_entropy_mean_kl():
    d = 40
    rng = np.random.default_rng(5)
    mu1, mu2 = unit_rows(rng, 2, d)
    p, q = vmf.VonMisesFisher(mu1, 30.0), vmf.VonMisesFisher(mu2, 12.0)
    a = float(mp_ratio(d / 2, 30.0))
    h_ref = -float(mp_log_normalizer(d, 30)) - 30 * a
    assert p.entropy() == pytest.approx(h_ref, rel=1e-14)
    np.testing.assert_allclose(p.mean(), a * mu1, rtol=1e-14)
    kl_ref = (float(mp_log_normalizer(d, 30) - mp_log_normalizer(d, 12))) + a * (30 - 12 * mu1 @ mu2)
    assert p.kl_divergence(q) == pytest.approx(kl_ref, rel=1e-13)
    assert p.kl_divergence(p) == pytest.approx(0.0, abs=1e-12)
    # Monte Carlo check of the KL formula
    x = p.sample(20000, seed=1)
    mc = np.mean(p.logpdf(x) - q.logpdf(x))
    assert abs(mc - kl_ref) < 5 * np.std(p.logpdf(x) - q.logpdf(x)) / math.sqrt(20000)
    # huge kappa: entropy stays accurate (O(kappa) terms cancel analytically)
    k = mp.mpf(10) ** 10
    h_big = float(-mp_log_normalizer(d, k) - k * mp.besseli(d / 2, k) / mp.besseli(d / 2 - 1, k))
    k = 1e10
    assert vmf.VonMisesFisher(mu1, k).entropy() == pytest.approx(h_big, rel=1e-12)


# ---- bad input ----------------------------------------------------------------------------------
def test_bad_input():
    rng = np.random.default_rng(6)
    x = unit_rows(rng, 10, 5)
    bad = x.copy()
    bad[[1, 4, 7]] *= 1.5
    with pytest.raises(ValueError, match="3 of 10 rows are not unit"):
        vmf.fit(bad)
    f = vmf.fit(bad, normalize=True)
    assert f.kappa == pytest.approx(vmf.fit(x).kappa, rel=1e-13)
    z = x.copy()
    z[2] = 0
    with pytest.raises(ValueError, match="1 of 10 rows are zero"):
        vmf.fit(z, normalize=True)
    with pytest.raises(ValueError, match="1 of 10 rows are zero"):
        vmf.fit(z)
    n = x.copy()
    n[0, 0] = np.nan
    with pytest.raises(ValueError, match="X: contains NaN"):
        vmf.fit(n)
    with pytest.raises(ValueError, match="d = 1"):
        vmf.fit(np.ones((4, 1)))
    with pytest.raises(ValueError, match="d: must be >= 2"):
        vmf.log_normalizer(1.5, 1.0)
    with pytest.raises(ValueError, match="kappa: must be >= 0"):
        vmf.log_normalizer(3, -1.0)
    with pytest.raises(ValueError, match="kappa: contains NaN"):
        vmf.log_normalizer(3, np.inf)
    with pytest.raises(ValueError, match="rbar: must be < 1"):
        vmf.kappa_mle(1.0, 3)
    with pytest.raises(ValueError, match="rbar: must be >= 0"):
        vmf.kappa_mle(-0.1, 3)
    with pytest.raises(ValueError, match="rbar: contains NaN"):
        vmf.kappa_mle(np.nan, 3)
    with pytest.raises(ValueError, match="d: contains NaN"):
        vmf.kappa_mle(0.5, np.inf)
    with pytest.raises(ValueError, match="kappa: must be >= 0"):
        vmf.VonMisesFisher(x[0], -2.0)
    with pytest.raises(ValueError, match="mu: 1 of 1 rows are not unit"):
        vmf.VonMisesFisher(2 * x[0], 2.0)
    with pytest.raises(ValueError, match="X: 3 of 10 rows are not unit"):
        vmf.VonMisesFisher(x[0], 2.0).logpdf(bad)
    with pytest.raises(ValueError, match="weights: must be >= 0"):
        vmf.fit(x, weights=-np.ones(10))
    with pytest.raises(ValueError, match="n_components: 11 components"):
        vmf.VMFMixture(11).fit(x)


def test_coincident_points_give_inf_with_warning():
    x = np.tile(np.array([0.6, 0.8]), (5, 1))
    with pytest.warns(RuntimeWarning, match="rounds to 1"):
        f = vmf.fit(x)
    assert f.kappa == np.inf
    assert not np.isnan(f.kappa)


def test_threads_do_not_change_results():
    rb = np.linspace(0.001, 0.999, 5000)
    n0 = numkern.get_num_threads()
    try:
        numkern.set_num_threads(1)
        a = vmf.kappa_mle(rb, 777)
        s1 = vmf.VonMisesFisher(unit_rows(np.random.default_rng(0), 1, 64)[0], 9.0).sample(300, seed=5)
        numkern.set_num_threads(max(2, n0))
        b = vmf.kappa_mle(rb, 777)
        s2 = vmf.VonMisesFisher(unit_rows(np.random.default_rng(0), 1, 64)[0], 9.0).sample(300, seed=5)
    finally:
        numkern.set_num_threads(n0)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(s1, s2)


@pytest.mark.skipif(not numkern.cuda_available(), reason="needs a CUDA device and numkern's CUDA module")
def test_cuda_matches_cpu():
    torch = pytest.importorskip("torch")
    rb = np.linspace(0.001, 0.999, 10001)
    k = vmf.kappa_mle(torch.tensor(rb, device="cuda"), 4096.0)
    np.testing.assert_allclose(k.cpu().numpy(), vmf.kappa_mle(rb, 4096.0), rtol=1e-13)
    x = vmf.VonMisesFisher(unit_rows(np.random.default_rng(0), 1, 1024)[0], 500.0).sample(300, seed=1)
    fc, fg = vmf.fit(x), vmf.fit(torch.tensor(x, device="cuda"))
    assert float(fg.kappa) == pytest.approx(float(fc.kappa), rel=1e-12)
    np.testing.assert_allclose(fg.logpdf(torch.tensor(x, device="cuda")).cpu().numpy(), fc.logpdf(x), rtol=1e-12)
    sg = fg.sample(100, seed=3).cpu().numpy()
    np.testing.assert_allclose(sg, fc.sample(100, seed=3), atol=1e-9)
