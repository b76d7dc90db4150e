"""GPU section for numkern.vmf, run by bench/gpu_check.py: ``run(report)``.

Every CUDA entry of csrc/cuda/vmf/vmf.cu is reached through the public API on torch CUDA tensors (and
CuPy arrays when importable) and compared with numkern's CPU result on the same inputs:

- map ops (kappa_mle, log_normalizer, log_normalizer_shifted, entropy, mean_length, kl):
  float64 |gpu - cpu| / max(1, |cpu|) <= 1e-13, float32 <= 8 ulp-ish (2e-6 relative);
- row_norm2 + weighted_sum (fit, batched 1000 x 20 x 2048 float32): kappa and mu to 1e-10;
- logpdf (10^4 x 8192): 1e-12 relative (float64);
- estep (VMFMixture.fit with the same seed): kappas to 1e-8, predictions identical;
- sample: same seed gives the same points up to the device libm (>= 99.9 % of rows within 1e-9),
  and the mean of mu.x matches A_d(kappa);
- autograd of log_normalizer on CUDA: -A_d(kappa).
Throughput: kappa solves/s, logpdf points/s, samples/s (torch.cuda.synchronize timing).
"""
from __future__ import annotations

import time

import numpy as np

from numkern import vmf


def _rel(a, b):
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    return float(np.max(np.abs(a - b) / np.maximum(1.0, np.abs(b)))) if a.size else 0.0


def _timed(torch, fn, reps=5):
    fn()
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(reps):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - t) / reps


def _check_maps(report, to_dev, from_dev, tag):
    rng = np.random.default_rng(0)
    rb = np.concatenate([rng.uniform(0, 0.999, 100_000), 1 - np.logspace(-3, -15, 1000)])
    d = rng.choice([2.0, 3.0, 10.0, 256.0, 2048.0, 131072.0], rb.size)
    for dt, tol in ((np.float64, 1e-13), (np.float32, 2e-6)):
        r = np.minimum(rb, 1 - 2.0 ** -23).astype(dt)  # float32 cannot hold 1 - 1e-15 (< 1)
        cpu = vmf.kappa_mle(r, d.astype(dt))
        gpu = from_dev(vmf.kappa_mle(to_dev(r), to_dev(d.astype(dt))))
        e = _rel(gpu / np.maximum(cpu, 1e-300), np.ones_like(cpu))
        report(f"{tag} kappa_mle {np.dtype(dt).name}", e <= tol and gpu.dtype == dt, f"max rel diff {e:.2e}")
    kap = np.exp(rng.uniform(np.log(1e-3), np.log(1e9), rb.size))
    cpu = vmf.log_normalizer(d, kap)
    gpu = from_dev(vmf.log_normalizer(to_dev(d), to_dev(kap)))
    e = _rel(gpu, cpu)
    report(f"{tag} log_normalizer f64", e <= 1e-13, f"max rel diff {e:.2e}")


def _check_distribution(report, torch, to_dev, from_dev, tag):
    rng = np.random.default_rng(1)
    classes, n, d = 1000, 20, 2048
    mus = rng.standard_normal((classes, d))
    mus /= np.linalg.norm(mus, axis=1, keepdims=True)
    kap = rng.uniform(500, 5000, classes)
    x = vmf.VonMisesFisher(mus.astype(np.float32), kap.astype(np.float32)).sample(n, seed=2)
    fc = vmf.fit(x)
    fg = vmf.fit(to_dev(x))
    e_k = _rel(from_dev(fg.kappa) / fc.kappa, np.ones(classes))
    e_m = float(np.max(np.abs(from_dev(fg.mu).astype(np.float64) - fc.mu)))
    report(f"{tag} fit batched 1000x20x2048 f32", e_k <= 1e-6 and e_m <= 1e-6, f"kappa {e_k:.1e}, mu {e_m:.1e}")
    x64 = x.astype(np.float64)
    fc64, fg64 = vmf.fit(x64), vmf.fit(to_dev(x64))
    e_k = _rel(from_dev(fg64.kappa) / fc64.kappa, np.ones(classes))
    report(f"{tag} fit batched f64", e_k <= 1e-10, f"kappa {e_k:.1e}")
    # entropy / mean / kl (map ops on the device)
    flip = lambda a: a.flip(0) if hasattr(a, "flip") else a[::-1].copy()  # noqa: E731
    other_c = vmf.VonMisesFisher(flip(fc64.mu), flip(fc64.kappa))
    other_g = vmf.VonMisesFisher(flip(fg64.mu), flip(fg64.kappa))
    for name, c, g in (("entropy", fc64.entropy(), fg64.entropy()), ("mean", fc64.mean(), fg64.mean()),
                       ("kl", fc64.kl_divergence(other_c), fg64.kl_divergence(other_g))):
        e = _rel(from_dev(g), c)
        report(f"{tag} {name}", e <= 1e-12, f"max rel diff {e:.2e}")
    # logpdf
    mu = mus[0]
    dist_c = vmf.VonMisesFisher(mu, 3000.0)
    dist_g = vmf.VonMisesFisher(to_dev(mu), 3000.0)
    pts = dist_c.sample(10_000, seed=4)
    big = vmf.VonMisesFisher(np.eye(8192)[0], 3000.0)
    pts8 = big.sample(10_000, seed=5)
    big_g = vmf.VonMisesFisher(to_dev(np.eye(8192)[0]), 3000.0)
    p8 = to_dev(pts8)
    e = _rel(from_dev(big_g.logpdf(p8)), big.logpdf(pts8))
    e2 = _rel(from_dev(dist_g.logpdf(to_dev(pts))), dist_c.logpdf(pts))
    report(f"{tag} logpdf f64 (d=8192, 2048)", max(e, e2) <= 1e-12, f"max rel diff {max(e, e2):.2e}")
    # sampling: same streams as the CPU
    sg = from_dev(big_g.sample(2000, seed=9))
    sc = big.sample(2000, seed=9)
    close = float(np.mean(np.max(np.abs(sg - sc), axis=1) <= 1e-9))
    a = float(vmf.kappa_mle(0.5, 8192))  # any kappa: check A_d on a second draw
    dk = vmf.VonMisesFisher(to_dev(np.eye(8192)[0]), a)
    w = from_dev(dk.sample(4000, seed=3))[:, 0]
    report(f"{tag} sample same streams as CPU", close >= 0.999, f"{close:.4f} of rows within 1e-9")
    report(f"{tag} sample mean resultant", abs(w.mean() - 0.5) <= 5 * w.std() / np.sqrt(4000),
           f"mean mu.x {w.mean():.5f} vs A_d = 0.5")
    # mixture
    xm = np.concatenate([vmf.VonMisesFisher(mus[i, :512] / np.linalg.norm(mus[i, :512]), 400.0).sample(300, seed=i)
                         for i in range(3)])
    mc = vmf.VMFMixture(3, seed=0).fit(xm)
    mg = vmf.VMFMixture(3, seed=0).fit(to_dev(xm))
    e = _rel(from_dev(mg.kappas_) / mc.kappas_, np.ones(3))
    same = bool(np.array_equal(from_dev(mg.predict(to_dev(xm))), mc.predict(xm)))
    report(f"{tag} VMFMixture fit/predict", e <= 1e-8 and same, f"kappa rel diff {e:.1e}, labels equal {same}")
    return pts8, p8, big_g


def run(report):
    import torch

    dev = torch.device("cuda")
    to_dev = lambda a: torch.as_tensor(a, device=dev)  # noqa: E731
    from_dev = lambda t: t.detach().cpu().numpy()  # noqa: E731
    _check_maps(report, to_dev, from_dev, "torch")
    pts8, p8, big_g = _check_distribution(report, torch, to_dev, from_dev, "torch")
    k = torch.tensor([0.0, 0.5, 30.0, 4e4], dtype=torch.float64, device=dev, requires_grad=True)
    vmf.log_normalizer(2048, k).sum().backward()
    from numkern import special
    e = _rel(from_dev(k.grad), -special.iv_ratio(1024, np.array([0.0, 0.5, 30.0, 4e4])))
    report("torch autograd log_normalizer", e <= 1e-13, f"max rel diff {e:.1e}")
    # throughput
    rb = torch.rand(1_000_000, dtype=torch.float64, device=dev) * 0.99
    t = _timed(torch, lambda: vmf.kappa_mle(rb, 2048.0))
    report("throughput kappa_mle", True, f"{1e6 / t / 1e6:.1f} M solves/s (d=2048, f64)")
    t = _timed(torch, lambda: big_g.logpdf(p8))
    report("throughput logpdf", True, f"{p8.shape[0] / t / 1e6:.2f} M points/s (d=8192, f64)")
    t = _timed(torch, lambda: big_g.sample(10_000, seed=1), reps=3)
    report("throughput sample", True, f"{10_000 / t / 1e3:.1f} k draws/s (d=8192, kappa=3000)")
    try:
        import cupy
    except ImportError:
        return
    _check_maps(report, cupy.asarray, cupy.asnumpy, "cupy")
    x = cupy.asarray(pts8)
    f = vmf.fit(x)
    fc = vmf.fit(pts8)
    e = _rel(cupy.asnumpy(f.kappa) / fc.kappa, 1.0)
    report("cupy fit", isinstance(f.kappa, cupy.ndarray) and e <= 1e-10, f"kappa rel diff {e:.1e}")
