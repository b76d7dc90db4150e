"""Benchmarks for numkern.hessian (pytest-benchmark), also runnable as a script for a summary.

  pytest bench/bench_hessian.py --benchmark-only        # timings
  python bench/bench_hessian.py                          # ratios + estimator error table

Sizes: NK_HESSIAN_N, NK_HESSIAN_D, NK_HESSIAN_C (default n=1024, d=512, C=100: the issue's
n=4096, d=2048, C=1000 takes minutes per autograd Hutchinson run on 2 cores).  The anchor is
torch autograd Hutchinson on the same nn.Linear head: double backward, NK_HESSIAN_PROBES probes
(default 30), float64.
"""
import os
import time

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import numkern  # noqa: E402
from numkern import hessian as nh  # noqa: E402

N = int(os.environ.get("NK_HESSIAN_N", 1024))
D = int(os.environ.get("NK_HESSIAN_D", 512))
C = int(os.environ.get("NK_HESSIAN_C", 100))
PROBES = int(os.environ.get("NK_HESSIAN_PROBES", 30))


def head_data(n=N, d=D, c=C, seed=0):
    rng = np.random.default_rng(seed)
    Z = rng.standard_normal((n, d))
    W = rng.standard_normal((c, d)) / np.sqrt(d)
    b = rng.standard_normal(c)
    y = rng.integers(0, c, n)
    return Z, W, b, y


def autograd_hutchinson(Z, W, b, y, probes, diagonal=False):
    """The anchor: Hutchinson with torch double-backward HVPs on nn.Linear + cross-entropy."""
    Zt, yt = torch.from_numpy(Z), torch.from_numpy(y)
    Wt = torch.tensor(W, requires_grad=True)
    bt = torch.tensor(b, requires_grad=True)
    loss = torch.nn.functional.cross_entropy(Zt @ Wt.T + bt, yt)
    gW, gb = torch.autograd.grad(loss, (Wt, bt), create_graph=True)
    gen = torch.Generator().manual_seed(0)
    acc = 0.0
    for _ in range(probes):
        vW = (2 * torch.randint(0, 2, Wt.shape, generator=gen) - 1).double()
        vb = (2 * torch.randint(0, 2, bt.shape, generator=gen) - 1).double()
        hW, hb = torch.autograd.grad((gW * vW).sum() + (gb * vb).sum(), (Wt, bt), retain_graph=True)
        acc = acc + (torch.cat([(vW * hW).flatten(), vb * hb]) if diagonal else (vW * hW).sum() + (vb * hb).sum())
    return acc / probes


@pytest.fixture(scope="module")
def data():
    return head_data()


def test_head_trace_closed_form(benchmark, data):
    benchmark(lambda: nh.SoftmaxHeadHessian(*data).trace())


def test_head_diagonal_closed_form(benchmark, data):
    benchmark(lambda: nh.SoftmaxHeadHessian(*data).diagonal())


def test_head_trace_autograd_hutchinson(benchmark, data):
    benchmark.pedantic(autograd_hutchinson, args=(*data, PROBES), rounds=3, iterations=1)


def test_head_diagonal_autograd_hutchinson(benchmark, data):
    benchmark.pedantic(autograd_hutchinson, args=(*data, PROBES, True), rounds=3, iterations=1)


def mlp_problem(seed=0):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.Tanh(), torch.nn.Linear(64, 10))
    x, y = torch.randn(256, 32), torch.randint(0, 10, (256,))
    return model, torch.nn.functional.cross_entropy, x, y


def loop_double_backward(model, loss_fn, x, y, V):
    params = list(model.parameters())
    g = torch.autograd.grad(loss_fn(model(x), y), params, create_graph=True)
    g = torch.cat([t.flatten() for t in g])
    return torch.stack([torch.cat([h.flatten() for h in torch.autograd.grad(g, params, v, retain_graph=True)])
                        for v in V])


def test_hvp_vmap(benchmark):
    model, loss_fn, x, y = mlp_problem()
    op = nh.hessian_matvec(model, loss_fn, x, y)
    V = torch.randn(64, op.dim)
    benchmark(op, V)


def test_hvp_python_loop(benchmark):
    model, loss_fn, x, y = mlp_problem()
    V = torch.randn(64, sum(p.numel() for p in model.parameters()))
    benchmark(loop_double_backward, model, loss_fn, x, y, V)


def median_time(fn, rounds=5, clock=time.perf_counter):
    ts = []
    for _ in range(rounds):
        t = clock()
        fn()
        ts.append(clock() - t)
    return float(np.median(ts))


def estimator_error_table(dim=1000, decay=2.0, budgets=(30, 90, 300), seeds=10):
    rng = np.random.default_rng(0)
    Q, _ = np.linalg.qr(rng.standard_normal((dim, dim)))
    lam = np.arange(1, dim + 1, dtype=float) ** -decay
    A = (Q * lam) @ Q.T
    rows = []
    for m in budgets:
        row = [m]
        for method in ("hutchinson", "hutch++", "xtrace"):
            err = [abs(nh.trace(A, method=method, num_matvecs=m, seed=s).estimate - lam.sum()) / lam.sum()
                   for s in range(seeds)]
            row.append(float(np.mean(err)))
        rows.append(row)
    return rows


def cpu_median(fn, rounds):
    """Median process CPU time (all threads of this process; other jobs' load does not count)."""
    ts = []
    for _ in range(rounds):
        t = time.process_time()
        fn()
        ts.append(time.process_time() - t)
    return float(np.median(ts))


def issue_size_report(probes=100, rounds=5):
    """The issue's size n=4096, d=2048, C=1000, float64, process CPU time.  The machine is shared,
    so the closed forms (numpy and torch inputs) and the anchor (autograd Hutchinson at 5 and 15
    probes: setup + per-probe cost) are measured interleaved, `rounds` times, medians taken; the
    anchor at `probes` probes is that model, checked by one direct diagonal run."""
    n, d, c = 4096, 2048, 1000
    data = head_data(n, d, c)
    tdata = tuple(torch.from_numpy(a) for a in data)
    runs = {"trace numpy": lambda: nh.SoftmaxHeadHessian(*data).trace(),
            "trace torch": lambda: nh.SoftmaxHeadHessian(*tdata).trace(),
            "diagonal numpy": lambda: nh.SoftmaxHeadHessian(*data).diagonal(),
            "diagonal torch": lambda: nh.SoftmaxHeadHessian(*tdata).diagonal(),
            "anchor 5": lambda: autograd_hutchinson(*data, 5, True),
            "anchor 15": lambda: autograd_hutchinson(*data, 15, True)}
    times = {k: [] for k in runs}
    for _ in range(rounds):
        for k, fn in runs.items():
            times[k].append(cpu_median(fn, 1))
    out = {k: float(np.median(v)) for k, v in times.items()}
    per_probe = (out["anchor 15"] - out["anchor 5"]) / 10
    setup = out["anchor 5"] - 5 * per_probe
    anchor = setup + probes * per_probe
    direct = cpu_median(lambda: autograd_hutchinson(*data, probes, True), 1)
    print(f"n={n} d={d} C={c} float64, CPU seconds (process_time), numkern/torch threads "
          f"{numkern.get_num_threads()}/{torch.get_num_threads()}, median of {rounds} interleaved rounds")
    for k, v in out.items():
        print(f"  {k:16s} {v:8.3f} s   (rounds: {', '.join(f'{t:.3f}' for t in times[k])})")
    print(f"  anchor: setup {setup:.3f} s + {per_probe:.3f} s per probe -> {probes} probes {anchor:.1f} s "
          f"(one direct run of the diagonal: {direct:.1f} s)")
    for q in ("trace", "diagonal"):
        for name in ("numpy", "torch"):
            print(f"  {q} ({name} inputs): autograd Hutchinson {probes} probes / closed form = "
                  f"{anchor / out[f'{q} {name}']:.0f}x  (direct run: {direct / out[f'{q} {name}']:.0f}x)")
    return out


def hutchinson_diag_error(probes=100, n=1024, d=512, c=100):
    """Median and 90th-percentile relative error per entry of the autograd Hutchinson diagonal."""
    data = head_data(n, d, c)
    exact = nh.SoftmaxHeadHessian(*data).diagonal()
    exact = np.concatenate([exact[:, :d].ravel(), exact[:, d]])
    est = autograd_hutchinson(*data, probes, True).detach().numpy()
    rel = np.abs(est - exact) / exact
    return float(np.median(rel)), float(np.quantile(rel, 0.9))



def penalty_report(seeds=20):
    """Issue #23: Hutchinson-penalty Hessian term, exact head diagonals vs probes (plug-in and
    unbiased), bias ratio over seeds and CPU time per call; peak extra memory of a 32-probe HVP on
    a small CNN, default chunks vs all probes in one vmap."""
    from numkern.hessian._torch import peak_allocated_bytes

    def median_cpu(fn, rounds=5):
        return median_time(fn, rounds, time.process_time)

    threads = torch.get_num_threads()
    torch.set_num_threads(1)   # tiny problems: a second intra-op thread only spins (CPU time)
    g = torch.Generator().manual_seed(0)
    head = torch.nn.Linear(64, 10)
    feats = [torch.randn(256, 64, generator=g) * s for s in (1.0, 1.1)]
    labels = [torch.randint(0, 10, (256,), generator=g) for _ in feats]
    exact = nh.hutchinson_penalty(head, feats, labels, alpha=1.0, beta=0.0).item()
    t_exact = median_cpu(lambda: nh.hutchinson_penalty(head, feats, labels).backward())
    print(f"Hutchinson penalty (nn.Linear 64->10, 2 domains x 256): exact diagonals {t_exact * 1e3:.2f} ms CPU "
          "per penalty + backward")
    print("| probes | plug-in mean / exact | unbiased mean / exact (+- 2 se) | ms CPU per call |")
    for S in (10, 100):
        plug = [nh.hutchinson_penalty(head, feats, labels, alpha=1.0, beta=0.0, num_probes=S, estimator="plugin",
                                      generator=torch.Generator().manual_seed(k)).item() for k in range(seeds)]
        unb = np.array([nh.hutchinson_penalty(head, feats, labels, alpha=1.0, beta=0.0, num_probes=S,
                                              generator=torch.Generator().manual_seed(k)).item()
                        for k in range(seeds)])
        t = median_cpu(lambda: nh.hutchinson_penalty(head, feats, labels, num_probes=S).backward())
        print(f"| {S} | {np.mean(plug) / exact:.2f} | {unb.mean() / exact:.2f} +- "
              f"{2 * unb.std(ddof=1) / np.sqrt(seeds) / exact:.2f} | {t * 1e3:.2f} |")

    def peak(fn):
        return peak_allocated_bytes(fn)[0]

    torch.manual_seed(0)
    cnn = torch.nn.Sequential(torch.nn.Conv2d(3, 16, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(16, 16, 3, padding=1),
                              torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(4), torch.nn.Flatten(), torch.nn.Linear(256, 10))
    x = torch.randn(128, 3, 32, 32)
    y = torch.randint(0, 10, (128,))
    ce = torch.nn.functional.cross_entropy
    V = torch.randn(32, sum(p.numel() for p in cnn.parameters()))
    res = V.numel() * 4
    for label, kw in (("default chunks (256 MiB budget)", {}), ("64 MiB budget", {"memory_budget": 64 * 2 ** 20}),
                      ("all 32 probes in one vmap", {"chunk_size": 32})):
        op = nh.hessian_matvec(cnn, ce, x, y, mode="vmap", **kw)
        t = median_cpu(lambda: op(V), rounds=3)
        print(f"CNN HVP, 32 probes, {label}: chunk {op.chunk_size}, peak extra {(peak(lambda: op(V)) - res) / 2 ** 20:.0f} "
              f"MiB beyond the result, {t:.2f} s CPU")
    db = nh.hessian_matvec(cnn, ce, x, y, mode="double_backward")
    print(f"CNN HVP, 32 probes, double backward: peak extra {(peak(lambda: db(V)) - res) / 2 ** 20:.0f} MiB, "
          f"{median_cpu(lambda: db(V), rounds=3):.2f} s CPU")
    torch.set_num_threads(threads)


if __name__ == "__main__" and os.environ.get("NK_HESSIAN_ISSUE_SIZE"):
    print("Hutchinson diagonal, 100 probes, n=1024 d=512 C=100: relative error per entry median "
          "%.3f, 90th percentile %.3f" % hutchinson_diag_error())
    issue_size_report(int(os.environ.get("NK_HESSIAN_PROBES", 100)))
elif __name__ == "__main__":
    print(f"threads: numkern {numkern.get_num_threads()}, torch {torch.get_num_threads()}; "
          f"head n={N} d={D} C={C}, anchor probes={PROBES}")
    data = head_data()
    t_tr = median_time(lambda: nh.SoftmaxHeadHessian(*data).trace())
    t_dg = median_time(lambda: nh.SoftmaxHeadHessian(*data).diagonal())
    t_hu = median_time(lambda: autograd_hutchinson(*data, PROBES), rounds=3)
    t_hd = median_time(lambda: autograd_hutchinson(*data, PROBES, True), rounds=3)
    print(f"trace    closed form {t_tr * 1e3:8.1f} ms   autograd Hutchinson ({PROBES} probes) "
          f"{t_hu * 1e3:8.1f} ms   ratio {t_hu / t_tr:6.1f}x")
    print(f"diagonal closed form {t_dg * 1e3:8.1f} ms   autograd Hutchinson ({PROBES} probes) "
          f"{t_hd * 1e3:8.1f} ms   ratio {t_hd / t_dg:6.1f}x")
    model, loss_fn, x, y = mlp_problem()
    op = nh.hessian_matvec(model, loss_fn, x, y, mode="vmap")
    V = torch.randn(64, op.dim)
    t_v = median_time(lambda: op(V))
    t_l = median_time(lambda: loop_double_backward(model, loss_fn, x, y, V))
    print(f"HVP, MLP {op.dim} params, 64 probes: vmap {t_v * 1e3:.1f} ms ({64 / t_v:.0f}/s), "
          f"loop of double backward {t_l * 1e3:.1f} ms ({64 / t_l:.0f}/s), ratio {t_l / t_v:.2f}x")
    penalty_report()
    print("mean relative trace error, PSD dim 1000, eigenvalues k^-2, 10 seeds")
    print("| matvecs | Hutchinson | Hutch++ | XTrace |")
    for m, *e in estimator_error_table():
        print(f"| {m} | " + " | ".join(f"{v:.2e}" for v in e) + " |")
