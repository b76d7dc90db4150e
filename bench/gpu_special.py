"""GPU section for numkern.special, run by bench/gpu_check.py: ``run(report)``.

Every CUDA entry point (the 10 ops of csrc/cuda/special/special.cu, reached through the public functions
and, for dlog_*_dx, through torch autograd) is run on torch CUDA tensors, and on CuPy arrays when
CuPy is importable, and compared elementwise with numkern's CPU result on the same inputs:

- float64 logarithms (log_iv, log_kv, gradients): |gpu - cpu| / max(1, |cpu|) <= 1e-14
- float64 values (iv, ive, kv, kve, iv_ratio, iv_ratio_c, i0 ... k1e): <= 64 ulp (~1.4e-14 rel.)
- float32 (everything): <= 4 ulp
- NaN and +-inf must appear in the same places.

GPU and CPU run the same header code; the differences come only from the device's libm (log, exp,
sqrt are <= 2 ulp in CUDA's double math), which the pair-of-doubles logarithms absorb.
Throughput: 10^7 elements per op, torch.cuda.Event timing after a warm-up.
"""
from __future__ import annotations

import time

import numpy as np

import numkern.special as nks

N_CHECK = 200_000
N_SPEED = 10_000_000

VX_OPS = ("log_iv", "log_kv", "iv", "ive", "kv", "kve", "iv_ratio", "iv_ratio_c")
X_OPS = ("i0", "i0e", "i1", "i1e", "k0", "k0e", "k1", "k1e")
LOG_OPS = {"log_iv", "log_kv"}


def _inputs(n, seed=7):
    """(v, x) covering every region of bessel.hpp, plus special values."""
    rng = np.random.default_rng(seed)
    k = n // 6
    logu = lambda lo, hi, m: np.exp(rng.uniform(np.log(lo), np.log(hi), m))  # noqa: E731
    v = np.concatenate([rng.uniform(0, 20, k), rng.uniform(20, 1000, k), logu(1e3, 1e6, k),
                        rng.uniform(0.5, 50, k), rng.uniform(0, 100, k), rng.uniform(-30, 30, k)])
    x = np.concatenate([rng.uniform(0, 50, k), v[k:2 * k] * rng.uniform(0.1, 10, k),
                        v[2 * k:3 * k] * logu(1e-2, 1e2, k), logu(1e2, 1e7, k), logu(1e-300, 1, k),
                        rng.uniform(-50, 50, k)])
    special_v = np.array([0, 0, 1, 0.5, 2.5, 3, np.nan, 1, np.inf, 1e300, 5000, 16383, 1e4, -0.5, -3])
    special_x = np.array([0, np.inf, 0, np.inf, -1, -2, 1, np.nan, 1, 1, 10, 100, 1e4, 1e-300, 1e3])
    return np.concatenate([v, special_v]), np.concatenate([x, special_x])


def _ulp_dist(a, b):
    """|a - b| in units in the last place of the dtype (0 where both are the same NaN/inf)."""
    a = np.asarray(a)
    b = np.asarray(b)
    it = np.int64 if a.dtype == np.float64 else np.int32
    ia = a.view(it).astype(np.int64)
    ib = b.view(it).astype(np.int64)
    # map the sign-magnitude bit patterns onto a monotone integer line
    top = np.int64(np.iinfo(it).min)
    ia = np.where(ia < 0, top - ia, ia)
    ib = np.where(ib < 0, top - ib, ib)
    same = (ia < 0) == (ib < 0)  # a difference across zero could overflow int64
    near = np.abs(np.where(same, ia - ib, 0)).astype(np.float64)
    return np.where(same, near, np.abs(ia.astype(np.float64)) + np.abs(ib.astype(np.float64)))


def compare(op, gpu, cpu):
    """(ok, detail) for one op's device result against the CPU result."""
    gpu = np.asarray(gpu)
    cpu = np.asarray(cpu)
    if gpu.dtype != cpu.dtype or gpu.shape != cpu.shape:
        return False, f"dtype/shape {gpu.dtype}{gpu.shape} != {cpu.dtype}{cpu.shape}"
    nan_g, nan_c = np.isnan(gpu), np.isnan(cpu)
    if not np.array_equal(nan_g, nan_c):
        i = int(np.flatnonzero(nan_g != nan_c)[0])
        return False, f"NaN pattern differs ({int((nan_g != nan_c).sum())} places, first at index {i})"
    fin = np.isfinite(cpu)
    if not np.array_equal(gpu[~fin & ~nan_c], cpu[~fin & ~nan_c]):
        return False, "+-inf pattern differs"
    if not np.array_equal(np.isfinite(gpu), fin):
        return False, "finite/inf pattern differs"
    g, c = gpu[fin], cpu[fin]
    if cpu.dtype == np.float64 and (op in LOG_OPS or op.startswith("grad")):
        err = np.abs(g - c) / np.maximum(1.0, np.abs(c))
        worst, tol, unit = (float(err.max()) if err.size else 0.0), 1e-14, "rel(max(1,|cpu|))"
    else:
        err = _ulp_dist(g, c)
        worst, tol, unit = (float(err.max()) if err.size else 0.0), (64 if cpu.dtype == np.float64 else 4), "ulp"
    ok = worst <= tol
    detail = f"max err {worst:.3g} {unit} (tol {tol:g}) on {fin.sum()} finite values"
    if not ok:
        i = int(np.argmax(err))
        detail += f"; worst gpu={g[i]!r} cpu={c[i]!r}"
    return ok, detail


def _call(op, v, x):
    f = getattr(nks, op)
    return f(x) if op in X_OPS else f(v, x)


def check_torch(report, torch, dev):
    """Also runs with dev = cpu (torch CPU tensors), which is how it is smoke-tested without a GPU."""
    v64, x64 = _inputs(N_CHECK)
    for dt_np, dt_t in ((np.float64, torch.float64), (np.float32, torch.float32)):
        with np.errstate(over="ignore"):
            v, x = v64.astype(dt_np), x64.astype(dt_np)
        vt, xt = torch.from_numpy(v).to(dev), torch.from_numpy(x).to(dev)
        for op in VX_OPS + X_OPS:
            name = f"special.{op} torch {dt_t}".replace("torch.", "")
            try:
                res = _call(op, vt, xt)
                if not (res.device == dev and res.dtype == dt_t):
                    report(name, False, f"result on {res.device} {res.dtype}, expected {dev} {dt_t}")
                    continue
                ok, detail = compare(op, res.cpu().numpy(), _call(op, v, x))
            except Exception as e:  # noqa: BLE001 - one op failing must not hide the others
                ok, detail = False, f"{type(e).__name__}: {e}"
            report(name, ok, detail)
    # dlog_iv_dx / dlog_kv_dx run on the device through autograd
    v, x = v64[:N_CHECK // 6], np.abs(x64[:N_CHECK // 6]) + 0.1
    for op in ("log_iv", "log_kv"):
        grads = []
        for d in (dev, "cpu"):
            xt = torch.tensor(x, device=d, requires_grad=True)
            getattr(nks, op)(torch.tensor(v, device=d), xt).sum().backward()
            grads.append(xt.grad.cpu().numpy())
        ok, detail = compare(f"grad_{op}", grads[0], grads[1])
        report(f"special.{op} torch autograd d/dx (dlog_{op[4:]}_dx kernel)", ok, detail)
    # broadcasting, non-contiguous input, out=, scalar order on the device
    xt = torch.linspace(0.1, 100, 1001, dtype=torch.float64, device=dev)[::2]
    vt = torch.arange(5, dtype=torch.float64, device=dev)[:, None]
    out = torch.empty((5, xt.shape[0]), dtype=torch.float64, device=dev)
    r = nks.log_kv(vt, xt, out=out)
    ok, detail = compare("log_kv", r.cpu().numpy(), nks.log_kv(vt.cpu().numpy(), xt.cpu().numpy()))
    report("special.log_kv torch broadcast + strided + out=", ok and r is out, detail)


def check_cupy(report, cupy):
    v64, x64 = _inputs(N_CHECK, seed=8)
    for dt in (np.float64, np.float32):
        with np.errstate(over="ignore"):
            v, x = v64.astype(dt), x64.astype(dt)
        vc, xc = cupy.asarray(v), cupy.asarray(x)
        for op in VX_OPS + X_OPS:
            name = f"special.{op} cupy {np.dtype(dt).name}"
            try:
                res = _call(op, vc, xc)
                if not isinstance(res, cupy.ndarray):
                    report(name, False, f"returned {type(res).__name__}, expected cupy.ndarray")
                    continue
                ok, detail = compare(op, cupy.asnumpy(res), _call(op, v, x))
            except Exception as e:  # noqa: BLE001
                ok, detail = False, f"{type(e).__name__}: {e}"
            report(name, ok, detail)


def throughput(report, torch, dev):
    """Elements/s and GB/s (2 inputs + 1 output) per op on 10^7 elements; vMF-like orders."""
    rng = np.random.default_rng(9)
    d = np.floor(np.exp(rng.uniform(np.log(64), np.log(131072), N_SPEED)))
    v_vmf = d / 2 - 1
    x_vmf = v_vmf * np.exp(rng.uniform(np.log(0.1), np.log(10), N_SPEED))
    v_small = rng.uniform(0, 20, N_SPEED)
    x_small = rng.uniform(0, 50, N_SPEED)
    print(f"\n  throughput on {N_SPEED:.0e} elements (median of 5 after warm-up):")
    print(f"  {'op':12s} {'dtype':8s} {'inputs':24s} {'Gelem/s':>9s} {'GB/s':>8s} {'ms':>8s}")
    for label, v, x in (("v,x ~ vMF (d=64..131072)", v_vmf, x_vmf), ("v<20, x<50", v_small, x_small)):
        for dt in (torch.float64, torch.float32):
            vt = torch.tensor(v, dtype=dt, device=dev)
            xt = torch.tensor(x, dtype=dt, device=dev)
            for op in VX_OPS:
                f = getattr(nks, op)
                f(vt, xt)  # warm-up (module load, kernel JIT-free first launch)
                times = []
                for _ in range(5):
                    a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                    a.record()
                    f(vt, xt)
                    b.record()
                    b.synchronize()
                    times.append(a.elapsed_time(b) / 1e3)
                t = float(np.median(times))
                nbytes = 3 * N_SPEED * vt.element_size()
                print(f"  {op:12s} {str(dt)[6:]:8s} {label:24s} {N_SPEED / t / 1e9:9.2f} "
                      f"{nbytes / t / 1e9:8.1f} {t * 1e3:8.2f}")
            del vt, xt
    report("special throughput (10^7 elements, all ops)", True, "see table above")


def run(report):
    import torch

    if not torch.cuda.is_available():
        report("special: torch sees a CUDA device", False, "torch.cuda.is_available() is False")
        return
    dev = torch.device("cuda", torch.cuda.current_device())
    t0 = time.perf_counter()
    check_torch(report, torch, dev)
    try:
        import cupy
    except ImportError:
        print("  (CuPy not importable: CuPy checks skipped)")
    else:
        check_cupy(report, cupy)
    throughput(report, torch, dev)
    print(f"  special section: {time.perf_counter() - t0:.1f} s")
