"""Quantized inference speed (issue #15) under pytest-benchmark: the MiniLM layer shapes, the whole
MiniLM encode and the quantization time, each group against its fp32 anchor in the same run.

  pytest bench/quant/bench_quant_layers.py                       # one thread (the default)
  NUMKERN_BENCH_THREADS=all pytest bench/quant/bench_quant_layers.py   # every core (wall time)
  NUMKERN_AMX=0 pytest bench/quant/bench_quant_layers.py         # the OVP / SplitQuant kernels off the AMX tiles

Groups: "layer KxN batch B" (B = 1, 4, 16, 64, 208; anchor fp32 nn.Linear; OVP W4, W8, W4A8,
SplitQuant INT4 fused, torch dynamic int8; "OVP W4A8 token": activations per token), "MiniLM encode, 16 sentences" (anchor the fp32 model;
the same methods through quantize_model / splitquant / quantize_dynamic) and "quantize MiniLM"
(anchor torch dynamic int8; OVP W4 auto and W8).  pytest-benchmark's statistics are wall time of
each round (median of the rounds); the table printed at the end (bench/conftest.py) has the
ratios to the anchor, the CPU model, the ISA path and whether the AMX tiles ran.  The layer and
model builders are bench_quant_speed.py's (the markdown script of the same cases with interleaved
rounds and thread CPU time).
"""
from __future__ import annotations

import importlib.util
import os
import statistics
import sys

import torch

import numkern
from numkern import _core
from numkern.quant import olive as O

_spec = importlib.util.spec_from_file_location(
    "_bench_quant_speed", os.path.join(os.path.dirname(os.path.abspath(__file__)), "bench_quant_speed.py"))
_speed = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_speed)

_env = os.environ.get("NUMKERN_BENCH_THREADS", "1")
THREADS = (os.cpu_count() or 1) if _env == "all" else int(_env)
SHAPES = [(384, 384), (384, 1536), (1536, 384)]
BATCHES = (1, 4, 16, 64, 208)  # 208: the token rows of the MiniLM encode below
_RESULTS: dict = {}


def _setup_threads():
    torch.set_num_threads(THREADS)
    numkern.set_num_threads(THREADS)


# the cases of each group (bench_quant_speed's names; the first is the anchor)
LAYER_CASES = ("fp32", "OVP W4", "OVP W8", "OVP W4A8", "OVP W4A8 token", "SplitQuant INT4", "torch dyn int8")
MODEL_CASES = ("fp32", "OVP W4", "OVP W8", "OVP W4A8", "OVP W4A8 token", "SplitQuant INT4", "torch dyn int8")


def _layer_cases():
    out = []
    for k, n in SHAPES:
        torch.manual_seed(0)
        mods = _speed.layer_modules(torch.nn.Linear(k, n).eval())
        for b in BATCHES:
            x = torch.randn(b, k)
            reps = max(1, int(2e6 / (b * k * n)))  # calls a round: rounds of ~0.1 ms and more
            for name in LAYER_CASES:
                def fn(m=mods[name], x=x, reps=reps):
                    for _ in range(reps):
                        m(x)
                out.append((f"layer {k}x{n} batch {b}", name, fn, 30, reps))
    return out


def _model_cases():
    model, ids, mask = _speed.minilm()
    mods = _speed.model_variants(model, ids, mask)
    out = [("MiniLM encode, 16 sentences", name, (lambda m=mods[name]: m(ids, mask)), 15, 1) for name in MODEL_CASES]
    out += [("quantize MiniLM", "torch dyn int8",
             lambda: torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8), 3, 1),
            ("quantize MiniLM", "OVP W4 auto", lambda: O.quantize_model(model, bits=4), 3, 1),
            ("quantize MiniLM", "OVP W8", lambda: O.quantize_model(model, bits=8), 3, 1)]
    return out


def cases():
    """(group, name, fn, rounds, calls a round); the first case of a group is its anchor."""
    _setup_threads()
    with torch.no_grad():
        return _layer_cases() + _model_cases()


def record(group, name, seconds):
    _RESULTS.setdefault(group, {})[name] = seconds


def markdown_report() -> str:
    if not _RESULTS:
        return ""
    lines = [f"CPU: {_speed.cpu_model()}; ISA path {_core.isa()}; AMX tiles {_core.amx_available()}; "
             f"threads {THREADS}; wall time, median of the rounds; ratio = time / anchor time (lower is better)", "",
             "| group | case | time per call | vs anchor |", "|---|---|---:|---:|"]
    for group, res in _RESULTS.items():
        anchor = next(iter(res.values()))
        for name, t in res.items():
            unit = f"{t * 1e6:.1f} us" if t < 1e-3 else (f"{t * 1e3:.2f} ms" if t < 1 else f"{t:.2f} s")
            lines.append(f"| {group} | {name} | {unit} | {t / anchor:.2f}x |")
    return "\n".join(lines)


# ---- pytest-benchmark -----------------------------------------------------------------------
try:
    import pytest

    _CASES = cases() if "pytest" in sys.modules else []

    @pytest.mark.parametrize("group,name,fn,rounds,calls", _CASES, ids=[f"{c[0]}-{c[1]}" for c in _CASES])
    def test_quant_speed(benchmark, group, name, fn, rounds, calls):
        benchmark.group = group
        benchmark.extra_info.update(threads=THREADS, isa=_core.isa(), amx=_core.amx_available(),
                                    calls_per_round=calls)
        with torch.no_grad():
            benchmark.pedantic(fn, rounds=rounds, warmup_rounds=1, iterations=1)
        if benchmark.stats is not None:
            record(group, name, benchmark.stats.stats.median / calls)
except ImportError:  # pragma: no cover
    pass


if __name__ == "__main__":
    import time

    for group, name, fn, rounds, calls in cases():
        with torch.no_grad():
            fn()
            ts = []
            for _ in range(rounds):
                t = time.perf_counter()
                fn()
                ts.append((time.perf_counter() - t) / calls)
        record(group, name, statistics.median(ts))
    print(markdown_report())
