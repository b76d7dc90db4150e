"""GPU check for numkern.hessian: every CUDA entry (SoftmaxHeadHessian kernels, estimators on
device, torch HVPs on device) against the CPU results, plus throughput.

Called by bench/gpu_check.py as run(report); report(name, ok, detail).  Standalone:
    python bench/gpu_hessian.py
"""
import time

import numpy as np


def _head(n, d, C, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((n, d)), rng.standard_normal((C, d)) / np.sqrt(d), rng.standard_normal(C),
            rng.integers(0, C, n))


def _compare(report, name, got, ref, tol):
    got = np.asarray(got)
    err = float(np.max(np.abs(got - ref)) / max(1e-300, float(np.max(np.abs(ref)))))
    report(name, bool(err <= tol), f"max rel err {err:.2e} (tol {tol:.0e})")


def _check_head(report, lib, to_dev, to_host, label):
    from numkern.hessian import SoftmaxHeadHessian

    Z, W, b, y = _head(300, 24, 13)
    ref = SoftmaxHeadHessian(Z, W, b, y)
    V = np.random.default_rng(1).standard_normal((4, ref.dim))
    for dt, tol in ((np.float64, 1e-12), (np.float32, 2e-5)):
        h = SoftmaxHeadHessian(to_dev(Z.astype(dt)), to_dev(W.astype(dt)), to_dev(b.astype(dt)), to_dev(y))
        tag = f"hessian.{label}.{np.dtype(dt).name}"
        _compare(report, tag + ".trace", h.trace(), ref.trace(), tol)
        _compare(report, tag + ".diagonal", to_host(h.diagonal()), ref.diagonal(), tol)
        _compare(report, tag + ".gradient", to_host(h.gradient()), ref.gradient(), tol * 10)
        _compare(report, tag + ".loss", h.loss(), ref.loss(), tol)
        _compare(report, tag + ".matvec", to_host(h.matvec(to_dev(V.astype(dt)))), ref.matvec(V), tol * 10)
    # confident rows keep precision on the device too
    hb = SoftmaxHeadHessian(to_dev(np.zeros((1, 2))), to_dev(np.zeros((2, 2))), to_dev(np.array([0.0, -40.0])))
    exact = 2 * np.exp(-40) / (1 + np.exp(-40)) ** 2
    _compare(report, f"hessian.{label}.confident_row", hb.trace(), exact, 1e-13)


def run(report):
    import numkern

    if not numkern.cuda_available():
        report("hessian.cuda", False, "numkern CUDA module or device not available")
        return
    import torch

    from numkern import hessian as nh

    _check_head(report, torch, lambda a: torch.tensor(a, device="cuda"), lambda t: t.cpu().numpy(), "torch")
    try:
        import cupy
    except ImportError:
        cupy = None
    if cupy is not None:
        _check_head(report, cupy, cupy.asarray, cupy.asnumpy, "cupy")

    # estimators with probes drawn on the device
    rng = np.random.default_rng(0)
    G = rng.standard_normal((200, 200))
    A = (G + G.T) / 2
    At = torch.tensor(A, device="cuda")
    for method in ("hutchinson", "hutch++", "xtrace"):
        r = nh.trace(At, method=method, num_matvecs=150, seed=0)
        ok = abs(r.estimate - np.trace(A)) < 5 * r.stderr + 1e-9
        report(f"hessian.trace.{method}.cuda", ok, f"{r.estimate:.4f} +- {r.stderr:.4f} vs {np.trace(A):.4f}")
    d = nh.diagonal(At, method="xdiag", num_matvecs=400, seed=0)
    report("hessian.diagonal.xdiag.cuda", bool(abs(d.estimate.cpu().numpy() - np.diag(A)).max() < 1e-8),
           "400 products span R^200: exact")

    # torch HVPs on the device against the CPU
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3)).double()
    x, y = torch.randn(64, 8, dtype=torch.float64), torch.randint(0, 3, (64,))
    ce = torch.nn.functional.cross_entropy
    op_cpu = nh.hessian_matvec(model, ce, x, y)
    V = torch.randn(5, op_cpu.dim, dtype=torch.float64)
    ref = op_cpu(V).numpy()
    op_gpu = nh.hessian_matvec(model.cuda(), ce, x.cuda(), y.cuda())
    _compare(report, f"hessian.hessian_matvec.cuda.{op_gpu.mode}", op_gpu(V.cuda()).cpu().numpy(), ref, 1e-10)

    # throughput: the size, closed form vs autograd Hutchinson (torch, CUDA, float32)
    n, dd, C = 4096, 2048, 1000
    g = torch.Generator(device="cuda").manual_seed(0)
    Z = torch.randn(n, dd, device="cuda", generator=g)
    W = torch.randn(C, dd, device="cuda", generator=g) / dd ** 0.5
    b = torch.randn(C, device="cuda", generator=g)
    yy = torch.randint(0, C, (n,), device="cuda", generator=g)

    def timed(fn, reps=5):
        fn()
        torch.cuda.synchronize()
        t = time.perf_counter()
        for _ in range(reps):
            fn()
        torch.cuda.synchronize()
        return (time.perf_counter() - t) / reps

    t_tr = timed(lambda: nh.SoftmaxHeadHessian(Z, W, b, yy).trace())
    t_dg = timed(lambda: nh.SoftmaxHeadHessian(Z, W, b, yy).diagonal())

    def hutch(probes=100):
        Wt, bt = W.clone().requires_grad_(), b.clone().requires_grad_()
        loss = ce(Z @ Wt.T + bt, yy)
        gW, gb = torch.autograd.grad(loss, (Wt, bt), create_graph=True)
        acc = 0.0
        for _ in range(probes):
            vW = torch.randint(0, 2, Wt.shape, device="cuda").float() * 2 - 1
            vb = torch.randint(0, 2, bt.shape, device="cuda").float() * 2 - 1
            hW, hb = torch.autograd.grad((gW * vW).sum() + (gb * vb).sum(), (Wt, bt), retain_graph=True)
            acc = acc + (vW * hW).sum() + (vb * hb).sum()
        return acc / probes

    t_hu = timed(hutch, reps=2)
    report("hessian.throughput", True,
           f"n={n} d={dd} C={C} f32: closed-form trace {t_tr * 1e3:.2f} ms, diagonal {t_dg * 1e3:.2f} ms, "
           f"autograd Hutchinson 100 probes {t_hu * 1e3:.0f} ms -> {t_hu / t_tr:.0f}x (trace), "
           f"{t_hu / t_dg:.0f}x (diagonal)")


if __name__ == "__main__":
    def _print(name, ok, detail):
        print(f"{'PASS' if ok else 'FAIL'} {name}: {detail}")

    run(_print)
