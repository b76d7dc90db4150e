"""``python -m numkern`` section for numkern.kde: embedded cases where SciPy/sklearn fail or drift."""
from __future__ import annotations

import time


def report(out):
    """Print the kde section to the text stream ``out`` (a few seconds)."""
    import numpy as np
    from scipy.special import logsumexp

    from . import GaussianKDE, regimes, select_bandwidth

    def say(s=""):
        print(s, file=out)

    def direct(Y, X, h):
        d2 = ((X[:, None, :] - Y[None, :, :]) ** 2).sum(-1)
        return logsumexp(-d2 / (2 * h * h), axis=1) - np.log(len(Y)) - 0.5 * Y.shape[1] * np.log(2 * np.pi * h * h)

    say("Gaussian KDE (numkern.kde), exact log-densities in high dimension:")
    # Each case draws from its own seeded generator, so no line depends on whether an optional
    # comparison (sklearn) ran before it.
    rng = np.random.default_rng(0)
    Y, X = rng.standard_normal((200, 1000)), rng.standard_normal((3, 1000))
    ours = GaussianKDE(Y).logpdf(X)
    try:
        import scipy.stats

        scipy.stats.gaussian_kde(Y.T)
        sp = "works"
    except Exception as e:  # SciPy needs d < n
        sp = f"raises {type(e).__name__}"
    say(f"d = 1000 > n = 200: scipy.stats.gaussian_kde {sp}; numkern (isotropic, Scott) logpdf = "
        f"{np.array2string(ours, precision=2)}")

    rng = np.random.default_rng(1)
    Y, X = rng.standard_normal((300, 64)), rng.standard_normal((3, 64))
    h = 1e-3
    ours = GaussianKDE(Y, bandwidth=h).logpdf(X)
    ref = direct(Y, X, h)
    say(f"d = 64, h = 1e-3: pdf underflows to {np.exp(ref[0])}; numkern logpdf {ours[0]:.6e}, "
        f"relative error vs a float64 direct sum {abs(ours[0] - ref[0]) / abs(ref[0]):.1e}")

    try:
        from sklearn.neighbors import KernelDensity

        rng = np.random.default_rng(2)
        Y, X = rng.standard_normal((2000, 16)), rng.standard_normal((5, 16))
        ref = direct(Y, X, 0.3)
        sk = KernelDensity(bandwidth=0.3, rtol=0, atol=0).fit(Y).score_samples(X)
        ours = GaussianKDE(Y, bandwidth=0.3).logpdf(X)
        say(f"d = 16, h = 0.3, n = 2000: max |error| of log-density vs a direct sum: sklearn KernelDensity "
            f"(rtol=atol=0, i.e. asked for the exact sum) {np.max(np.abs(sk - ref)):.2e}, numkern {np.max(np.abs(ours - ref)):.2e}")
    except ImportError:
        say("sklearn not installed: comparison skipped")

    Y = np.random.default_rng(3).standard_normal((500, 4))
    t = time.perf_counter()
    sel = select_bandwidth(Y)
    say(f"LOO bandwidth, n = 500, d = 4: h = {sel.bandwidth:.4f} ({sel.n_passes} passes over the "
        f"distance blocks, {len(sel.bandwidths)} grid bandwidths in the first, {time.perf_counter() - t:.2f} s)")

    r = regimes(alpha=0.5)
    say(f"regimes(alpha = 0.5): h_G = {r.h_G:.4f}, h_CLT = {r.h_CLT:.4f}, KL-optimal h_KL = {r.h_KL:.4f} "
        f"(< h_G: the optimum is in the extreme-value regime)")
