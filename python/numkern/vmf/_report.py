"""`python -m numkern` section for numkern.vmf: fitting a vMF where SciPy cannot (d = 8192)."""
from __future__ import annotations

import time
import warnings


def report(out):
    import numpy as np

    from .. import vmf

    print("von Mises-Fisher fit at d = 8192 (200 points drawn with numkern's sampler, seed 0):", file=out)
    d, n = 8192, 200
    mu = np.zeros(d)
    mu[0] = 1.0
    for rbar in (0.3, 0.9):
        kappa = float(vmf.kappa_mle(rbar, d))
        x = vmf.VonMisesFisher(mu, kappa).sample(n, seed=0)
        t = time.perf_counter()
        f = vmf.fit(x)
        dt = time.perf_counter() - t
        try:
            from scipy.stats import vonmises_fisher

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                k_scipy = f"{float(vonmises_fisher.fit(x)[1]):.6g}"
        except Exception as e:  # noqa: BLE001 - only reported
            k_scipy = f"fails ({type(e).__name__})"
        # the MLE's known high-d bias: E rbar^2 = A^2 + (1 - A^2)/n
        print(f"  true kappa {kappa:10.6g} | numkern fit {float(f.kappa):10.6g} ({dt * 1e3:.1f} ms) "
              f"| scipy.stats.vonmises_fisher.fit {k_scipy}", file=out)
    print("  (numkern's value is the exact MLE of the sample; in high d the MLE itself sits above the true "
          "kappa because E rbar^2 = A^2 + (1 - A^2)/n)", file=out)
    rb = np.array([0.05, 0.5, 0.99, 1 - 1e-12])
    print("  kappa_mle(rbar, d=131072) for rbar = 0.05, 0.5, 0.99, 1-1e-12: "
          + ", ".join(f"{k:.6g}" for k in vmf.kappa_mle(rb, 131072)), file=out)
    print(f"  log C_d(kappa=0) at d=131072 (-log |S^(d-1)|): {float(vmf.log_normalizer(131072, 0.0)):.12g}",
          file=out)


if __name__ == "__main__":  # pragma: no cover
    import sys

    report(sys.stdout)
