"""`python -m numkern` section for numkern.hessian: where the usual approaches go wrong."""
from __future__ import annotations

import math

import numpy as np


def _two_consecutive_means_rule(samples, tol=1e-3):
    """The stopping rule PyHessian's trace() uses: stop when two successive running means agree
    to relative tol.  Returns the number of probes at which it stops."""
    prev = 0.0
    for k in range(1, len(samples) + 1):
        mean = float(np.mean(samples[:k]))
        if abs(mean - prev) / (abs(prev) + 1e-6) < tol:
            return k
        prev = mean
    return len(samples)


def report(out):
    from .. import hessian as nh

    print("numkern.hessian", file=out)
    # 1. a confident softmax row: 1 - ||p||^2 cancels to 0 in floating point
    b = np.array([0.0, -40.0])
    h = nh.SoftmaxHeadHessian(np.zeros((1, 2)), np.zeros((2, 2)), b)
    p = np.exp(b) / np.exp(b).sum()
    exact = 2 * math.exp(-40) / (1 + math.exp(-40)) ** 2
    print(f"  head trace, logit margin 40: numkern {h.trace():.6e}, direct (1-|p|^2)(|z|^2+1) "
          f"{(1 - (p ** 2).sum()):.1e}, exact {exact:.6e}", file=out)

    # 2. stopping rules on a fixed indefinite 300 x 300 matrix
    rng = np.random.default_rng(2023)
    G = rng.standard_normal((300, 300))
    A = (G + G.T) / 2 + 4 * np.eye(300) + np.diag(rng.standard_normal(300))
    tr = float(np.trace(A))
    V = 2.0 * rng.integers(0, 2, (400, 300)) - 1
    samples = np.einsum("ij,jk,ik->i", V, A, V)
    k = _two_consecutive_means_rule(samples)
    est = float(samples[:k].mean())
    r = nh.trace(A, rtol=0.02, num_matvecs=5000, seed=0)
    print(f"  trace {tr:.1f}: 'two consecutive means within 1e-3' rule stops after {k} probes at "
          f"{est:.1f} ({abs(est - tr) / tr:.1%} off, no error bar);", file=out)
    print(f"    numkern rtol=0.02: {r.estimate:.1f} +- {r.stderr:.1f} after {r.num_matvecs} probes "
          f"({abs(r.estimate - tr) / tr:.1%} off)", file=out)

    # 3. error per product on a PSD matrix with a decaying spectrum
    Q, _ = np.linalg.qr(rng.standard_normal((300, 300)))
    lam = np.arange(1, 301, dtype=float) ** -2.0
    B = (Q * lam) @ Q.T
    errs = []
    for method in ("hutchinson", "hutch++", "xtrace"):
        e = np.mean([abs(nh.trace(B, method=method, num_matvecs=60, seed=s).estimate - lam.sum())
                     for s in range(5)]) / lam.sum()
        errs.append(f"{method} {e:.1e}")
    print("  relative trace error, 60 products, eigenvalues k^-2: " + ", ".join(errs), file=out)
