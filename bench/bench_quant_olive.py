"""Speed of numkern's OliVe OVP quantization (CPU).

  pytest bench/bench_quant_olive.py     # pytest-benchmark; ratio table printed at the end
  python bench/bench_quant_olive.py     # same cases, own timer, prints the markdown table

Cases (4096 x 4096 float32 weights, Student-t nu = 3):
  encode: ovp_quantize with the full 88-point threshold search (int4, and normal="auto" which
          runs int4 and flint4) and without it (search=False: alpha = 3-sigma bound);
  GEMV:   ovp_matmul, batch 1, 4-bit (int / flint) and 8-bit, against float32 x @ W.T in numpy
          and torch (the anchors; they read 64 MiB of weights, the 4-bit kernel 8 MiB);
  GEMM:   batch 64, same anchors.
Ratio = anchor median / numkern median (> 1: numkern faster), wall time, same run and thread
count (numkern.set_num_threads = torch.set_num_threads = BLAS threads).

  python bench/bench_quant_olive.py --cpu-time   # one thread everywhere, time.thread_time (CPU
      time of the calling thread: insensitive to other tenants of a shared machine); run with
      OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1.  Also times the GEMV with each CPU kernel forced
      (numkern._core.set_isa: the AVX2 one is what a CPU without AVX-512 runs).
"""
from __future__ import annotations

import statistics
import sys
import time

import numpy as np

import numkern
from numkern import quant as Q

N = K = 4096
CPU_TIME = "--cpu-time" in sys.argv
ROUNDS = 15 if CPU_TIME else 7
if CPU_TIME:
    numkern.set_num_threads(1)
SEED = 20261128
_RESULTS: dict = {}


def _threads():
    return numkern.get_num_threads()


def _weights():
    return np.random.default_rng(SEED).standard_t(3, size=(N, K)).astype(np.float32)


_CACHE: dict = {}


def _quantized(bits, normal):
    key = (bits, normal)
    if key not in _CACHE:
        _CACHE[key] = Q.ovp_quantize(_weights(), bits=bits, normal=normal, search=False)
    return _CACHE[key]


def cases():
    """(group, name, fn, rounds); the first case of a group is its anchor."""
    w = _weights()
    out = []
    try:
        import torch
        torch.set_num_threads(_threads())
        wt = torch.from_numpy(w)
    except ImportError:  # pragma: no cover
        torch = None
    for batch in (1, 64):
        x = np.random.default_rng(batch).standard_normal((batch, K)).astype(np.float32)
        g = f"matmul batch {batch}"
        out.append((g, "numpy float32 x @ W.T", lambda x=x: x @ w.T, ROUNDS))
        if torch is not None:
            xt = torch.from_numpy(x)
            out.append((g, "torch float32 x @ W.T", lambda xt=xt: xt @ wt.T, ROUNDS))
        for bits, normal in ((4, "int"), (4, "flint"), (8, "int")):
            q = _quantized(bits, normal)
            out.append((g, f"ovp_matmul {bits}-bit {normal}", lambda x=x, q=q: Q.ovp_matmul(x, q), ROUNDS))
        if CPU_TIME:
            from numkern import _core

            for isa in ("avx2", "portable"):
                if not _core.isa_supported(isa) or (isa == "portable" and batch > 1):
                    continue
                for normal in ("int", "flint"):
                    q = _quantized(4, normal)

                    def forced(x=x, q=q, isa=isa):
                        _core.set_isa(isa)
                        try:
                            return Q.ovp_matmul(x, q)
                        finally:
                            _core.set_isa("auto")

                    out.append((g, f"ovp_matmul 4-bit {normal}, {isa} kernel forced", forced, ROUNDS))
    g = "encode 4096x4096"
    out.append((g, "search=False int4", lambda: Q.ovp_quantize(w, bits=4, normal="int", search=False), 3))
    out.append((g, "search=False 8-bit", lambda: Q.ovp_quantize(w, bits=8, search=False), 3))
    out.append((g, "full search int4", lambda: Q.ovp_quantize(w, bits=4, normal="int"), 1))
    out.append((g, "full search auto (int4+flint4)", lambda: Q.ovp_quantize(w, bits=4, normal="auto"), 1))
    return out


_CLOCK = time.thread_time if CPU_TIME else time.perf_counter


def _time(fn, rounds):
    fn()
    ts = []
    for _ in range(rounds):
        t = _CLOCK()
        fn()
        ts.append(_CLOCK() - t)
    return statistics.median(ts)


def record(group, name, seconds):
    _RESULTS.setdefault(group, {})[name] = seconds


def markdown_report() -> str:
    if not _RESULTS:
        return ""
    clock = "CPU time of the calling thread" if CPU_TIME else "wall time"
    lines = [f"threads: {_threads()}, {clock}, median of {ROUNDS} rounds (encode: 3, full search: 1)", "",
             "| case | median | vs anchor |", "|---|---:|---:|"]
    for group, res in _RESULTS.items():
        items = list(res.items())
        anchors = {k: v for k, v in items if "x @ W.T" in k}
        for name, t in items:
            if group.startswith("encode"):
                extra = f"{N * K / t / 1e6:.1f} M weights/s"
            elif "x @ W.T" in name:
                extra = "anchor"
            else:
                extra = ", ".join(f"{v / t:.2f}x {k.split()[0]}" for k, v in anchors.items())
            unit = f"{t * 1e3:.2f} ms" if t < 1 else f"{t:.2f} s"
            lines.append(f"| {group}: {name} | {unit} | {extra} |")
    return "\n".join(lines)


# ---- pytest-benchmark -----------------------------------------------------------------------
try:
    import pytest

    _CASES = cases() if "pytest" in sys.modules else []

    @pytest.mark.parametrize("group,name,fn,rounds", _CASES, ids=[f"{c[0]}-{c[1]}" for c in _CASES])
    def test_olive(benchmark, group, name, fn, rounds):
        benchmark.group = group
        benchmark.extra_info.update(threads=_threads())
        benchmark.pedantic(fn, rounds=rounds, warmup_rounds=1 if rounds > 1 else 0, iterations=1)
        if benchmark.stats is not None:
            record(group, name, benchmark.stats.stats.median)
except ImportError:  # pragma: no cover
    pass


if __name__ == "__main__":
    for group, name, fn, rounds in cases():
        record(group, name, _time(fn, rounds))
        print(f"{group}: {name}: {_RESULTS[group][name]:.4g} s", flush=True)
    print()
    print(markdown_report())
