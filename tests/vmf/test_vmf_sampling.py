"""numkern.vmf sampler and high-dimensional fits: distribution of mu.x against its exact density
(normalised with numkern's own log C_d), resultant lengths, and kappa at d = 2048 ... 131072."""
import math
import warnings

import numpy as np
import pytest
from scipy import stats

from numkern import special, vmf

from test_vmf import mp_kappa_root


def t_values(x, mu):
    """t = 1 - mu.x = |x - mu|^2 / 2, accurate for x next to mu."""
    return 0.5 * np.sum((x - mu) ** 2, axis=1)


def exact_cdf_of_log_t(d, kappa, s_lo):
    """CDF of s = log(1 - mu.x) on a grid, from the exact density of t = 1 - mu.x:
    f(t) = C_d(kappa) |S^{d-2}| e^{kappa (1 - t)} (t (2 - t))^{(d-3)/2}, 0 < t < 2."""
    s = np.linspace(s_lo, math.log(2.0), 400001)
    t = np.exp(s)
    log_area = math.log(2) + (d - 1) / 2 * math.log(math.pi) - math.lgamma((d - 1) / 2)
    logc_plus_kappa = float(vmf.log_normalizer(d, kappa)) + kappa
    with np.errstate(divide="ignore"):
        shape = (d - 3) / 2 * (s + np.log(2.0 - t)) if d != 3 else 0.0
    logf = logc_plus_kappa + log_area - kappa * t + shape + s
    f = np.exp(logf)
    cdf = np.concatenate([[0.0], np.cumsum(0.5 * (f[1:] + f[:-1]) * np.diff(s))])
    return s, cdf


CASES = [(3, 0.0, 4000), (3, 5.0, 4000), (5, 1e8, 4000), (50, 0.3, 4000), (1000, 1e3, 2000),
         (2048, 1e7, 1000), (131072, 2e4, 120), (131072, 1e9, 120)]


@pytest.mark.parametrize("d,kappa,n", CASES)
def test_sampler_matches_exact_density(d, kappa, n):
    rng = np.random.default_rng(d)
    mu = rng.standard_normal(d)
    mu /= np.linalg.norm(mu)
    x = vmf.VonMisesFisher(mu, kappa).sample(n, seed=17)
    assert x.shape == (n, d)
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-14)
    t = t_values(x, mu)
    s_grid, cdf = exact_cdf_of_log_t(d, kappa, math.log(t.min()) - 30)
    # the density integrates to 1 with numkern's normaliser (kappa is added back in float64)
    assert abs(cdf[-1] - 1.0) < 1e-5 + 3e-16 * kappa, cdf[-1]
    p = stats.kstest(np.log(t), lambda q: np.interp(q, s_grid, cdf)).pvalue
    assert p > 1e-3, p
    # mean resultant: E[mu.x] = A_d(kappa), Var(mu.x) = A'(kappa)
    a = special.iv_ratio(d / 2, kappa)
    w = 1.0 - t
    assert abs(w.mean() - a) <= 5 * w.std() / math.sqrt(n) + 1e-15, (w.mean(), a)


def test_sampler_d2_is_von_mises():
    mu = np.array([0.6, -0.8])
    for kappa in [0.0, 2.0, 300.0]:
        x = vmf.VonMisesFisher(mu, kappa).sample(5000, seed=3)
        ang = np.arctan2(x[:, 1], x[:, 0]) - math.atan2(mu[1], mu[0])
        ang = (ang + np.pi) % (2 * np.pi) - np.pi
        cdf = (lambda q: (q + np.pi) / (2 * np.pi)) if kappa == 0 else stats.vonmises(kappa).cdf
        assert stats.kstest(ang, cdf).pvalue > 1e-3


def test_sampler_batched_float32_and_seeds():
    rng = np.random.default_rng(0)
    mu = rng.standard_normal((2, 3, 16))
    mu /= np.linalg.norm(mu, axis=-1, keepdims=True)
    kap = np.array([1.0, 50.0, 1e5])
    dist = vmf.VonMisesFisher(mu.astype(np.float32), kap.astype(np.float32))
    x = dist.sample(400, seed=1)
    assert x.shape == (2, 3, 400, 16) and x.dtype == np.float32
    w = np.einsum("bcnd,bcd->bcn", x.astype(np.float64), mu).mean(-1)
    np.testing.assert_allclose(w, np.broadcast_to(special.iv_ratio(8, kap), (2, 3)), atol=0.05)
    np.testing.assert_array_equal(x, dist.sample(400, seed=1))
    assert not np.array_equal(x, dist.sample(400, seed=2))


# ---- high-dimensional fits -------------------------------------------------------------------------
HIGH = [(2048, 0.05, 4000), (2048, 0.5, 400), (2048, 0.99, 400), (8192, 0.05, 2000), (8192, 0.6, 300),
        (8192, 0.99, 300), (32768, 0.3, 300), (32768, 0.95, 200), (131072, 0.5, 150),
        (131072, 0.97, 150)]
MC_REPS = 2000
SCIPY_SEEN = {}


def wood_cosines(rng, d, kappa, size):
    """t = mu.x of a vMF(d, kappa) by Wood's (1994) rejection step, in plain numpy: an independent
    reference for numkern's sampler.  b is written as (d-1)/(2 kappa + sqrt(...)) (no cancellation)."""
    m1 = d - 1.0
    b = m1 / (2 * kappa + math.sqrt(4 * kappa * kappa + m1 * m1))
    x0 = (1 - b) / (1 + b)
    c = kappa * x0 + m1 * math.log1p(-x0 * x0)
    out = np.empty(size)
    todo = np.arange(size)
    while todo.size:
        z = rng.beta(m1 / 2, m1 / 2, todo.size)
        w = (1 - (1 + b) * z) / (1 - (1 - b) * z)
        ok = kappa * w + m1 * np.log1p(-x0 * w) - c >= np.log(rng.random(todo.size))
        out[todo[ok]] = w[ok]
        todo = todo[~ok]
    return out


def simulated_rbar(d, kappa, n, reps, seed):
    """Exact draws of the sufficient statistic rbar = ||sum_i x_i|| / n of n samples of vMF(d, kappa)
    without drawing d-vectors: x_i = t_i mu + sqrt(1 - t_i^2) u_i with u_i uniform on the unit sphere
    of mu's (d-1)-dimensional complement.  The orthogonal sum is a random walk whose squared length
    grows by s^2 + 2 s |S| cos(theta), cos(theta) being one coordinate of a uniform point of S^{d-2}:
    (1 + cos) / 2 ~ Beta((d-2)/2, (d-2)/2)."""
    rng = np.random.default_rng(seed)
    t = wood_cosines(rng, d, kappa, reps * n).reshape(reps, n)
    s = np.sqrt((1 - t) * (1 + t))
    r2 = np.zeros(reps)
    for i in range(n):
        cos = 2 * rng.beta((d - 2) / 2, (d - 2) / 2, reps) - 1
        r2 = r2 + s[:, i] ** 2 + 2 * s[:, i] * np.sqrt(r2) * cos
    return np.sqrt(t.sum(1) ** 2 + np.maximum(r2, 0)) / n


@pytest.mark.parametrize("d,rbar,n", HIGH)
def test_high_dim_fit(d, rbar, n):
    from scipy.stats import vonmises_fisher

    kappa = float(vmf.kappa_mle(rbar, d))
    rng = np.random.default_rng(d + int(rbar * 100))
    mu = rng.standard_normal(d)
    mu /= np.linalg.norm(mu)
    x = vmf.VonMisesFisher(mu, kappa).sample(n, seed=d)
    f = vmf.fit(x)
    rb = float(np.linalg.norm(x.sum(0)) / n)
    # (1) the fit is the exact MLE of this sample: kappa_mle of its rbar, and the 40-digit root
    assert float(vmf.mean_resultant_length(x)) == pytest.approx(rb, rel=1e-13)
    assert f.kappa == pytest.approx(float(vmf.kappa_mle(rb, d)), rel=1e-12)
    assert f.kappa == pytest.approx(float(mp_kappa_root(rb, d, f.kappa, steps=2)), rel=1e-12)
    # (2) the statistical error of the MLE is its sampling distribution under the true kappa, bias
    # included (in high dimension E rbar^2 = A^2 + (1 - A^2)/n: the n - 1 orthogonal noise terms
    # push the MLE up).  That distribution is simulated exactly through the sufficient statistic.
    sim = simulated_rbar(d, kappa, n, MC_REPS, seed=d + 7)
    e_r2 = rbar ** 2 + (1 - rbar ** 2) / n                 # exact moment: checks the simulator
    assert abs(np.mean(sim ** 2) - e_r2) <= 5 * np.std(sim ** 2) / math.sqrt(MC_REPS)
    k_sim = vmf.kappa_mle(sim, d)
    k_mean, k_sd = float(np.mean(k_sim)), float(np.std(k_sim))
    assert abs(f.kappa - k_mean) <= 5 * k_sd, (f.kappa, k_mean, k_sd)
    assert float(np.dot(f.mu, mu)) > 0.9 * rbar
    # SciPy on the same data: returns the bracket end 1e-8 (ive underflows; 0/0 in its residual)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            k_scipy = float(vonmises_fisher.fit(x)[1])
        except Exception as e:  # noqa: BLE001 - stated, not relied on
            k_scipy = repr(e)
    SCIPY_SEEN[(d, rbar)] = (k_scipy, f.kappa, kappa)
    print(f"d={d} rbar={rbar} n={n}: true kappa {kappa:.6g}; MLE sampling distribution mean "
          f"{k_mean:.6g} (bias {k_mean / kappa - 1:+.2%}), sd {k_sd:.3g}; numkern fit {f.kappa:.10g} "
          f"({(f.kappa - k_mean) / k_sd:+.2f} sd); scipy fit {k_scipy}")
