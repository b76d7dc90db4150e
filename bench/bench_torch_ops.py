"""Per-call cost of numkern's torch operators on CPU tensors (python bench/bench_torch_ops.py).

For i0e, i1e (which torch has) and log_iv (which it has not), on float64 CPU tensors of 1 and
10^6 elements:
  numkern op     numkern.special.<f>(x)           public function -> torch.ops.numkern.<f>
  op direct      torch.ops.numkern.<f>(x)          the registered operator alone
  numpy trip     _backend.elementwise(...)         the torch path before the operators (Context,
                                                   numpy views, kernel, torch.from_numpy)
  torch.special  torch.special.<f>(x)              torch's own kernel (i0e, i1e only)
Times: median over ROUNDS rounds of the mean per call, as CPU time of the process
(time.process_time, all threads) and as wall time; the machine is shared, CPU time is the
steadier.  Ratios are against the numpy round trip of the same run.
"""
from __future__ import annotations

import os
import platform
import statistics
import time

import torch

import numkern._torch_ops  # noqa: F401  (registers torch.ops.numkern)
import numkern.special as nks
from numkern import _core
from numkern._backend import elementwise

ROUNDS = 7
SEED = 20261204


def _time(fn, calls):
    cpu, wall = [], []
    for _ in range(ROUNDS):
        c0, w0 = time.process_time(), time.perf_counter()
        for _ in range(calls):
            fn()
        cpu.append((time.process_time() - c0) / calls)
        wall.append((time.perf_counter() - w0) / calls)
    return statistics.median(cpu), statistics.median(wall)


def _cases(name, x):
    fixed = name != "log_iv"
    op = getattr(torch.ops.numkern, name)
    if fixed:
        order = 0 if name == "i0e" else 1
        cases = {"numkern op": lambda: getattr(nks, name)(x),
                 "op direct": lambda: op(x),
                 "numpy trip": lambda: elementwise("special", name, (order, x), ("order", "x")),
                 "torch.special": lambda: getattr(torch.special, name)(x)}
    else:
        v = torch.tensor(2.5, dtype=x.dtype)
        cases = {"numkern op": lambda: nks.log_iv(2.5, x),
                 "op direct": lambda: op(v, x),
                 "numpy trip": lambda: elementwise("special", "log_iv", (2.5, x), ("v", "x"))}
    return cases


def main():
    torch.manual_seed(SEED)
    cpu_model = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")),
                     platform.processor()) if os.path.exists("/proc/cpuinfo") else platform.processor()
    print(f"# numkern torch ops per-call cost — {cpu_model}, ISA path {_core.isa()}, "
          f"torch {torch.__version__}, torch threads {torch.get_num_threads()}")
    print("| function | n | path | CPU us/call | wall us/call | CPU vs numpy trip |")
    print("|---|---|---|---|---|---|")
    for n, calls in ((1, 2000), (10**6, 5)):
        x = torch.rand(n, dtype=torch.float64) * 50 + 0.01
        for name in ("i0e", "i1e", "log_iv"):
            cases = _cases(name, x)
            res = {k: _time(f, calls) for k, f in cases.items()}
            base = res["numpy trip"][0]
            for k, (c, w) in res.items():
                print(f"| {name} | {n} | {k} | {c * 1e6:.1f} | {w * 1e6:.1f} | {base / c:.2f}x |")


if __name__ == "__main__":
    main()
