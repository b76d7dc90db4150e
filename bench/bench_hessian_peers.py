"""Hessian trace against PyHessian and curvlinops at an equal number of Hessian-vector products
(issue #23).  Run: ``python bench/bench_hessian_peers.py`` (CPU, one thread, a few minutes).

Three small float64 models trained briefly on scikit-learn's digits (an MLP, a two-conv CNN on the
8x8 images, a one-block transformer over the 8 image rows as tokens).  The exact trace comes from
the full Hessian (numkern's hessian_matvec on the identity, checked against
torch.autograd.functional.hessian for the MLP).  Each estimator then gets the same number of
products (M); per model and method the table gives the relative error |est - exact| / |exact|
(mean over SEEDS seeds), the CPU time per estimate (time.process_time, mean over the seeds,
building the operator included: PyHessian's constructor computes the gradient graph), and the peak
CPU memory torch allocated and had not freed while one estimate ran (torch.profiler allocation
events, seed 0, measured in a separate run so that the profiler does not inflate the times).

PyHessian: ``hessian(model, loss, data=(x, y), cuda=False).trace(maxIter=M, tol=-inf)``
(tol=-inf: its running-mean stopping rule never fires, so exactly M products).  curvlinops 3.x:
``HessianLinearOperator(model, loss, params, [(x, y)], check_deterministic=False)`` with
``hutchinson_trace`` / ``hutchpp_trace`` / ``xtrace``.  numkern: ``hessian_trace`` (default
mode="auto", which times vmap against double backward on its first product).
"""
import io
import math
import os
import subprocess
import sys
import time
import warnings

import numpy as np
import torch
from torch import nn

import numkern
from numkern import hessian as nh
from numkern.hessian._torch import peak_allocated_bytes

M = 96          # products per estimate (divisible by 3 for Hutch++ and by 2 for XTrace)
SEEDS = 5
N_HESS = 512    # samples in the Hessian's batch

torch.set_num_threads(1)
torch.set_default_dtype(torch.float64)


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(64, 24), nn.Tanh(), nn.Linear(24, 10))

    def forward(self, x):
        return self.net(x)


class CNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, 6, 3, padding=1), nn.Tanh(), nn.MaxPool2d(2),      # 6x4x4
            nn.Conv2d(6, 8, 3, padding=1), nn.Tanh(), nn.AvgPool2d(2),      # 8x2x2
            nn.Flatten(), nn.Linear(32, 10))

    def forward(self, x):
        return self.net(x)


class Block(nn.Module):
    """One pre-norm transformer block with explicit softmax attention (8 row tokens of 8 pixels)."""

    def __init__(self, d=12, heads=2):
        super().__init__()
        self.d, self.h = d, heads
        self.embed = nn.Linear(8, d)
        self.pos = nn.Parameter(0.1 * torch.randn(8, d))
        self.ln1 = nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.ln2 = nn.LayerNorm(d)
        self.mlp = nn.Sequential(nn.Linear(d, 2 * d), nn.GELU(), nn.Linear(2 * d, d))
        self.head = nn.Linear(d, 10)

    def forward(self, x):
        b = x.shape[0]
        t = self.embed(x.reshape(b, 8, 8)) + self.pos
        q, k, v = self.qkv(self.ln1(t)).reshape(b, 8, 3, self.h, self.d // self.h).permute(2, 0, 3, 1, 4)
        a = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(self.d // self.h), dim=-1)
        t = t + self.proj((a @ v).transpose(1, 2).reshape(b, 8, self.d))
        t = t + self.mlp(self.ln2(t))
        return self.head(t.mean(dim=1))


def digits():
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    X = torch.tensor(X / 16.0).reshape(-1, 1, 8, 8)
    return X, torch.tensor(y)


def trained(cls, X, y, seed=0, epochs=15):
    torch.manual_seed(seed)
    model = cls()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    loss_fn = nn.CrossEntropyLoss()
    g = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        for idx in torch.randperm(len(X), generator=g).split(64):
            opt.zero_grad()
            loss_fn(model(X[idx]), y[idx]).backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        acc = (model(X).argmax(1) == y).double().mean().item()
    return model, acc


def exact_trace(model, loss_fn, x, y):
    op = nh.hessian_matvec(model, loss_fn, x, y)
    H = op(torch.eye(op.dim))
    return float(torch.trace(H)), float((H - H.T).abs().max() / H.abs().max()), op.dim


def methods(model, loss_fn, x, y):
    params = list(model.parameters())

    def numkern_(method):
        def run(seed):
            return nh.hessian_trace(model, loss_fn, x, y, method=method, num_matvecs=M, seed=seed).estimate
        return run

    def pyhessian_(seed):
        from pyhessian import hessian
        torch.manual_seed(seed)
        ph = hessian(model, loss_fn, data=(x, y), cuda=False)
        return float(np.mean(ph.trace(maxIter=M, tol=-math.inf)))

    def curvlinops_(fn_name):
        def run(seed):
            import curvlinops as cl
            torch.manual_seed(seed)
            A = cl.HessianLinearOperator(model, loss_fn, params, [(x, y)], check_deterministic=False)
            return float(getattr(cl, fn_name)(A, M))
        return run

    return [("numkern hutchinson", numkern_("hutchinson")), ("numkern hutch++", numkern_("hutch++")),
            ("numkern xtrace", numkern_("xtrace")), ("PyHessian hutchinson", pyhessian_),
            ("curvlinops hutchinson", curvlinops_("hutchinson_trace")),
            ("curvlinops hutch++", curvlinops_("hutchpp_trace")), ("curvlinops xtrace", curvlinops_("xtrace"))]


def header():
    try:
        cpu = next(ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name"))
    except (OSError, StopIteration):
        cpu = "?"
    cfg = numkern.show_config(file=io.StringIO())
    try:
        rev = subprocess.run(["git", "describe", "--always", "--dirty"], capture_output=True, text=True,
                             timeout=10, cwd=os.path.dirname(os.path.abspath(__file__))).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        rev = "?"
    from importlib.metadata import version
    return "\n".join([
        f"- date (UTC): {time.strftime('%Y-%m-%d %H:%M', time.gmtime())}; checkout {rev}",
        f"- CPU: {cpu}, torch.set_num_threads(1); numkern ISA path: {cfg.get('isa')}",
        f"- torch {torch.__version__}, PyHessian {version('pyhessian')}, curvlinops {version('curvlinops-for-pytorch')}, "
        f"Python {sys.version.split()[0]}",
        f"- {M} Hessian-vector products per estimate, {SEEDS} seeds, Hessian of the mean cross-entropy "
        f"on {N_HESS} digits images, float64",
    ])


def main():
    warnings.filterwarnings("ignore")
    t_start = time.perf_counter()
    X, y = digits()
    loss_fn = nn.CrossEntropyLoss()
    print(header())
    print()
    rows = []
    for name, cls in (("MLP", MLP), ("CNN", CNN), ("transformer", Block)):
        model, acc = trained(cls, X, y)
        x, t = X[:N_HESS], y[:N_HESS]
        tr, asym, dim = exact_trace(model, loss_fn, x, t)
        if name == "MLP":   # cross-check the exact trace with autograd's full Hessian
            from torch.func import functional_call
            ps = dict(model.named_parameters())
            shapes = {k: p.shape for k, p in ps.items()}

            def f(flat):
                out, i = {}, 0
                for k, s in shapes.items():
                    out[k] = flat[i:i + s.numel()].reshape(s)
                    i += s.numel()
                return loss_fn(functional_call(model, out, (x,)), t)
            Hf = torch.autograd.functional.hessian(f, torch.cat([p.detach().flatten() for p in ps.values()]))
            assert abs(float(torch.trace(Hf)) - tr) < 1e-8 * abs(tr), (float(torch.trace(Hf)), tr)
        print(f"{name}: {dim} parameters, train accuracy {acc:.3f}, exact tr(H) = {tr:.6g} "
              f"(relative asymmetry {asym:.1e})", flush=True)
        for mname, run in methods(model, loss_fn, x, t):
            errs, times = [], []
            for s in range(SEEDS):
                c0 = time.process_time()
                est = run(s)
                times.append(time.process_time() - c0)
                errs.append(abs(est - tr) / abs(tr))
            peak, _ = peak_allocated_bytes(lambda: run(0))
            rows.append((name, dim, mname, np.mean(errs), np.std(errs, ddof=1), np.mean(times), peak / 2 ** 20))
            print(f"  {mname:22s} rel. err {np.mean(errs):.4f}  CPU {np.mean(times):.3f} s  "
                  f"peak {peak / 2 ** 20:.1f} MiB", flush=True)
    print()
    print(f"| model (params) | method | rel. error (mean ± sd, {SEEDS} seeds) | CPU s / estimate | "
          f"peak torch MiB | products |")
    print("|---|---|---|---|---|---|")
    for name, dim, mname, e, sd, ti, pk in rows:
        print(f"| {name} ({dim}) | {mname} | {e:.4f} ± {sd:.4f} | {ti:.3f} | {pk:.1f} | {M} |")
    print(f"\ntotal wall time {time.perf_counter() - t_start:.0f} s")


if __name__ == "__main__":
    main()
