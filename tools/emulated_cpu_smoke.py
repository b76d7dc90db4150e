"""Smoke test of a numkern build on older or different x86-64 CPUs, emulated by qemu-user.

    python tools/emulated_cpu_smoke.py                  # native run, then qemu-x86_64 -cpu Nehalem
                                                       # (x86-64-v2) and -cpu Haswell (AVX2 + FMA)
    python tools/emulated_cpu_smoke.py --cpus Nehalem   # only these CPU models
    python tools/emulated_cpu_smoke.py --emit           # print this interpreter's values (JSON)

Each run computes a few values of every family (special, vmf, kde, quant.olive,
quant.splitquant, hessian) on fixed inputs and prints them with the ISA tier it ran
(numkern._core.isa()).  The emulated runs must import numkern (no SIGILL: the default build
assumes x86-64-v2 only, wider code runs behind the dispatcher) and give the native numbers
within RTOL: the tiers agree within 16 eps on the Bessel block path (tests/special/
test_special_block.py) and within each family's documented bound elsewhere.  Exit status 0 when
every run matched, 1 otherwise; 2 when qemu-x86_64 is missing (Debian: apt-get install qemu-user).
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import shutil
import subprocess
import sys

RTOL = 1e-9  # well above the tiers' differences (<= 16 eps special, ~1e-12 kde), far below any bug
# float32 GEMV: each tier sums in its own order (fp-contract=fast in the AVX kernels); measured
# 8e-6 of the largest output between the AVX-512 and the portable kernel, compared normwise
NORMWISE_RTOL = {"olive.matmul": 1e-4}
DEFAULT_CPUS = ("Nehalem", "Haswell")


def compute() -> dict:
    """Values of each family on fixed, seeded inputs (small: qemu runs them ~30x slower)."""
    import numpy as np

    import numkern
    from numkern import hessian, kde, special, vmf
    olive = importlib.import_module("numkern.quant.olive")
    splitquant = importlib.import_module("numkern.quant.splitquant")  # (numkern.quant.splitquant is also a function)

    rng = np.random.default_rng(20261204)
    out = {"isa": numkern._core.isa(), "best_isa": numkern._core.best_isa()}
    # special: every region of the block path (series, Debye, near the exponent's zero, Hankel)
    v = np.array([0.3, 5.0, 19.5, 20.0, 150.0, 1e3, 1e3, 1e4, 2.0, 40.0] * 8)
    x = np.array([0.01, 3.0, 24.0, 13.0, 99.4, 662.7, 5e3, 1e2, 3e3, 1e6] * 8) * (1 + 1e-3 * np.arange(80) / 80)
    for name in ("log_iv", "log_kv", "iv", "ive", "kv", "kve", "i0", "k1e", "iv_ratio"):
        out[f"special.{name}"] = getattr(special, name)(v, x).tolist()
    # vmf
    out["vmf.log_normalizer"] = vmf.log_normalizer(64, np.array([0.1, 10.0, 300.0, 1e5])).tolist()
    out["vmf.kappa_mle"] = vmf.kappa_mle(np.array([0.1, 0.5, 0.9, 0.999]), 32).tolist()
    # kde: every tier has its own row kernel
    data = rng.normal(size=(400, 3))
    out["kde.logpdf"] = kde.GaussianKDE(data, bandwidth=0.5).logpdf(rng.normal(size=(40, 3))).tolist()
    # quant.olive: AVX-512 / AVX2 decoders and GEMV
    w = rng.normal(size=(32, 128)).astype(np.float32)
    q = olive.ovp_quantize(w, bits=4)
    out["olive.dequantize"] = np.asarray(olive.ovp_dequantize(q), dtype=np.float64).ravel()[:256].tolist()
    out["olive.matmul"] = np.asarray(olive.ovp_matmul(rng.normal(size=(2, 128)).astype(np.float32), q),
                                     dtype=np.float64).ravel().tolist()
    # quant.splitquant: optimal 1-D k-means
    centers, labels = splitquant.kmeans1d(rng.normal(size=2000), k=3)
    out["splitquant.kmeans1d"] = np.asarray(centers, dtype=np.float64).tolist() + [float(np.sum(labels))]
    # hessian: Hutchinson trace of a fixed SPD matrix, seeded probes
    a = rng.normal(size=(30, 30))
    a = a @ a.T
    est = hessian.trace(lambda z: a @ z, dim=30, num_matvecs=20, seed=3)
    out["hessian.trace"] = [float(est.estimate), float(est.stderr)]
    return out


def _run(cmd: list[str], timeout: float) -> dict:
    env = dict(os.environ, NUMKERN_NUM_THREADS="1")
    p = subprocess.run(cmd + [os.path.abspath(__file__), "--emit"], capture_output=True, text=True,
                       timeout=timeout, env=env)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: exit status {p.returncode}\n{p.stderr[-2000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def compare(ref: dict, got: dict, rtol: float = RTOL) -> list[str]:
    """Names of the values (with the worst relative difference) that do not match."""
    import numpy as np

    bad = []
    for key, want in ref.items():
        if key in ("isa", "best_isa"):
            continue
        a, b = np.asarray(want, dtype=float), np.asarray(got.get(key, []), dtype=float)
        if a.shape != b.shape:
            bad.append(f"{key}: shape {b.shape} != {a.shape}")
            continue
        same_special = np.array_equal(np.isnan(a), np.isnan(b)) and np.array_equal(np.isinf(a), np.isinf(b))
        fin = np.isfinite(a) & np.isfinite(b)
        tol = NORMWISE_RTOL.get(key, rtol)
        scale = np.max(np.abs(a[fin])) if key in NORMWISE_RTOL and fin.any() else np.abs(a[fin])
        err = np.abs(a[fin] - b[fin]) / np.maximum(scale, 1e-300)
        worst = float(err.max()) if err.size else 0.0
        if not same_special or worst > tol:
            bad.append(f"{key}: max relative difference {worst:.3g}")
    return bad


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--emit", action="store_true", help="print this interpreter's values as JSON")
    ap.add_argument("--cpus", nargs="*", default=list(DEFAULT_CPUS), help="qemu -cpu models")
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds per emulated run")
    args = ap.parse_args(argv)
    if args.emit:
        print(json.dumps(compute()))
        return 0
    qemu = shutil.which("qemu-x86_64")
    if qemu is None:
        print("qemu-x86_64 not found (Debian: apt-get install qemu-user)", file=sys.stderr)
        return 2
    ref = _run([sys.executable], args.timeout)
    print(f"native: isa={ref['isa']}")
    status = 0
    for cpu in args.cpus:
        try:
            got = _run([qemu, "-cpu", cpu, sys.executable], args.timeout)
        except (RuntimeError, subprocess.TimeoutExpired) as e:
            print(f"{cpu}: FAILED to run: {e}")
            status = 1
            continue
        bad = compare(ref, got)
        print(f"{cpu}: isa={got['isa']} (best {got['best_isa']}): "
              + ("same numbers (rtol %g; float32 GEMV %g normwise)" % (RTOL, NORMWISE_RTOL["olive.matmul"]) if not bad else "MISMATCH " + "; ".join(bad)))
        status |= bool(bad)
    return status


if __name__ == "__main__":
    sys.exit(main())
