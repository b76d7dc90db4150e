"""Quantized inference and quantization speed (issue #15): a markdown report.

Per layer (all-MiniLM-L6-v2's shapes 384->384, 384->1536, 1536->384, and 4096x4096, 4096x11008), batch
1, 4, 16 and 64, one thread (or --threads): time of each quantized layer relative to fp32 torch.nn.Linear in the same
run (lower is better): OVPLinear W4 / W8, SplitQuantLinear INT4 / INT2 (k = 3, group size 128, fused) and INT2 3.5b (sq_compact), W4A8 / W8A8 (activations OVP-quantized per tensor at 8 bits,
calibrated on 64 Gaussian rows; the integer kernel csrc/cpu/olive/int8act.cpp), W4A8 token (activations quantized per
row to int8 at every call, act_granularity="token": no calibration; the same kernel), torch dynamic int8 (torch.ao.quantization.quantize_dynamic),
bitsandbytes Linear4bit NF4 on the CPU when it runs.  Then the whole-model MiniLM encode of 16 fixed
sentences under torch.no_grad() (fp32 vs OVP W4 / W8 / W4A8 / W4A8 and W8A8 per token, SplitQuant INT4 / INT2) and the quantization time per method (whole MiniLM, one 4096x11008).

Times are CPU seconds of the calling thread (time.thread_time; the machine may be shared), wall time
with --threads above 1, medians of interleaved rounds.  Usage:
python bench/quant/bench_quant_speed.py [--quick] [--out FILE] [--gemv] [--rounds N] [--threads N|all] [--no-amx]
    [--layers-only] [--batches 1,2,3,...] [--real-weights]
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import time

import numpy as np
import torch

import numkern
from numkern._core import isa
from numkern.quant import olive as O
from numkern.quant import splitquant as sq

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def cpu_model():
    return numkern._cpu_model() or platform.processor() or "unknown"


def vnni():
    """The CPU's VNNI (the integer kernel's vpdpbusd): AVX-512 VNNI (avx512 tier) and AVX-VNNI
    (avx2 tier), from /proc/cpuinfo's flags."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read().split()
    except OSError:
        return "unknown"
    return f"{'yes' if 'avx512_vnni' in flags else 'no'}; AVX-VNNI: {'yes' if 'avx_vnni' in flags else 'no'}"


# CPU time of the calling thread with one thread (the machine may be shared); wall time with more
# (--threads: the other threads' work is not the caller's CPU time)
CLOCK = time.thread_time


def timed(fns, rounds, reps):
    """Median seconds per call of each fn, rounds interleaved."""
    for f in fns.values():
        f()
    ts = {k: [] for k in fns}
    for _ in range(rounds):
        for k, f in fns.items():
            t = CLOCK()
            for _ in range(reps):
                f()
            ts[k].append((CLOCK() - t) / reps)
    return {k: float(np.median(v)) for k, v in ts.items()}


def bnb_layer(lin):
    try:
        import bitsandbytes as bnb

        q = bnb.nn.Linear4bit(lin.in_features, lin.out_features, bias=lin.bias is not None, quant_type="nf4")
        q.load_state_dict(lin.state_dict())
        q = q.to("cpu")
        q(torch.randn(1, lin.in_features))
        return q
    except Exception:  # not installed, or no CPU backend in this version
        return None


def gemv_table(shapes, batches, rounds):
    """fp32, OVP W4 / W8 and torch dynamic int8 only (the issue #15 b=1 target), interleaved."""
    rows = ["| layer | batch | fp32 (us) | OVP W4 | OVP W8 | torch dyn int8 |", "|---|---|---|---|---|---|"]
    for k, n in shapes:
        torch.manual_seed(0)
        lin = torch.nn.Linear(k, n).eval()
        w4, w8 = O.OVPLinear.from_linear(lin, bits=4), O.OVPLinear.from_linear(lin, bits=8)
        dyn = torch.ao.quantization.quantize_dynamic(torch.nn.Sequential(lin), {torch.nn.Linear}, dtype=torch.qint8)
        for b in batches:
            x = torch.randn(b, k)
            reps = max(1, int(2e7 / (b * k * n)))  # 1 at these shapes: weights cold (not in L3) each call
            fns = {"fp32": lambda: lin(x), "w4": lambda: w4(x), "w8": lambda: w8(x), "dyn": lambda: dyn(x)}
            with torch.no_grad():
                t = timed(fns, rounds, reps)
            r = {key: f"{t[key] / t['fp32']:.3f}x" for key in t}
            rows.append(f"| {k}->{n} | {b} | {t['fp32'] * 1e6:.1f} | {r['w4']} | {r['w8']} | {r['dyn']} |")
    return "\n".join(rows)


LAYER_METHODS = ["OVP W4", "OVP W8", "OVP W4A8", "OVP W8A8", "OVP W4A8 token", "SplitQuant INT4", "SplitQuant INT2",
                 "SplitQuant INT2 3.5b", "torch dyn int8", "bnb NF4"]


def sq_compact(model):
    """SplitQuant INT2 at <= 3.5 bits a weight on MiniLM (docs/splitquant.md): outer clusters of 15 %
    each, a grid per cluster over its own entries, a group per row, float16 tables."""
    return sq(model, bits=2, k=3, group_size=None, method="tails", scheme="support", table_dtype="float16",
              fused=True)


def layer_modules(lin):
    """fp32 and every quantized form of one nn.Linear (the anchor first; bnb NF4 only where it runs)."""
    k = lin.in_features
    a4, a8 = O.OVPLinear.from_linear(lin, bits=4, act_bits=8), O.OVPLinear.from_linear(lin, bits=8, act_bits=8)
    for m in (a4, a8):
        O.calibrate(m, [torch.randn(64, k)])
    mods = {"fp32": lin, "OVP W4": O.OVPLinear.from_linear(lin, bits=4), "OVP W8": O.OVPLinear.from_linear(lin, bits=8),
            "OVP W4A8": a4, "OVP W8A8": a8,
            "OVP W4A8 token": O.OVPLinear.from_linear(lin, bits=4, act_bits=8, act_granularity="token"),
            "SplitQuant INT4": sq(torch.nn.Sequential(lin), bits=4, k=3, fused=True)[0],
            "SplitQuant INT2": sq(torch.nn.Sequential(lin), bits=2, k=3, fused=True)[0],
            "SplitQuant INT2 3.5b": sq_compact(torch.nn.Sequential(lin))[0],
            "torch dyn int8": torch.ao.quantization.quantize_dynamic(torch.nn.Sequential(lin), {torch.nn.Linear},
                                                                     dtype=torch.qint8)}
    bnb = bnb_layer(lin)
    if bnb is not None:
        mods["bnb NF4"] = bnb
    return mods


def minilm_linear(model, k, n):
    """The first nn.Linear of `model` (all-MiniLM-L6-v2) with in_features k and out_features n."""
    return next(m for m in model.modules() if isinstance(m, torch.nn.Linear) and (m.in_features, m.out_features) == (k, n))


def layer_table(shapes, batches, rounds, real=False):
    """real: MiniLM's own weights for its shapes (their outliers take the OVP kernels' sparse
    correction), else nn.Linear's random initialisation (seed 0)."""
    rows = ["| layer | batch | fp32 (us) | " + " | ".join(LAYER_METHODS) + " |", "|---|---|---|" + "---|" * len(LAYER_METHODS)]
    model = minilm()[0] if real else None  # (loaded once)
    for k, n in shapes:
        torch.manual_seed(0)
        real_here = real and (k, n) in ((384, 384), (384, 1536), (1536, 384))
        mods = layer_modules(minilm_linear(model, k, n) if real_here else torch.nn.Linear(k, n).eval())
        for b in batches:
            x = torch.randn(b, k)
            reps = max(1, int(2e7 / (b * k * n)))
            fns = {key: (lambda m=m: m(x)) for key, m in mods.items()}
            with torch.no_grad():
                t = timed(fns, rounds, reps)
            r = [f"{t[key] / t['fp32']:.2f}x" if key in t else "n/a" for key in LAYER_METHODS]
            rows.append(f"| {k}->{n} | {b} | {t['fp32'] * 1e6:.1f} | " + " | ".join(r) + " |")
    return "\n".join(rows)


def minilm():
    spec = importlib.util.spec_from_file_location("_minilm", os.path.join(ROOT, "tests", "olive", "test_olive_minilm.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    from safetensors.torch import load_file

    w = load_file(os.path.join(mod.MODEL_DIR, "model.safetensors"))
    model = mod.MiniLM(w).eval()
    ids, mask = mod.WordPiece(os.path.join(mod.MODEL_DIR, "vocab.txt"))(mod.sentences()[:16])
    return model, ids, mask


def model_variants(model, ids, mask):
    """The fp32 MiniLM (first) and its quantized forms."""
    return {"fp32": model, "OVP W4": O.quantize_model(model, bits=4), "OVP W8": O.quantize_model(model, bits=8),
            "OVP W4A8": O.calibrate(O.quantize_model(model, bits=4, act_bits=8), [(ids, mask)]),
            "OVP W4A8 token": O.quantize_model(model, bits=4, act_bits=8, act_granularity="token"),
            "OVP W8A8 token": O.quantize_model(model, bits=8, act_bits=8, act_granularity="token"),
            "SplitQuant INT4": sq(model, bits=4, k=3, fused=True), "SplitQuant INT2": sq(model, bits=2, k=3, fused=True),
            "SplitQuant INT2 3.5b": sq_compact(model),
            "torch dyn int8": torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)}


def model_table(rounds):
    model, ids, mask = minilm()
    rows = ["| MiniLM, 16 sentences | time (ms) | vs fp32 | mean cosine to fp32 |", "|---|---|---|---|"]
    ref = model(ids, mask)
    qs = model_variants(model, ids, mask)
    with torch.no_grad():  # inference: no autograd graph (the eager fast paths need no gradient)
        t = timed({k: (lambda m=m: m(ids, mask)) for k, m in qs.items()}, rounds, 1)
    for k, m in qs.items():
        cos = float(torch.nn.functional.cosine_similarity(m(ids, mask), ref, dim=-1).mean())
        rows.append(f"| {k} | {t[k] * 1e3:.1f} | {t[k] / t['fp32']:.2f}x | {cos:.4f} |")
    return "\n".join(rows)


def quant_table(big):
    model, _, _ = minilm()
    rows = ["| quantization | CPU time (s) |", "|---|---|"]
    for name, f in [("MiniLM (37 linear layers), OVP W4 auto", lambda: O.quantize_model(model, bits=4)),
                    ("MiniLM, OVP W8", lambda: O.quantize_model(model, bits=8)),
                    ("MiniLM, SplitQuant INT2 (k = 3, groups of 128)", lambda: sq(model, bits=2, k=3, fused=True)),
                    ("MiniLM, SplitQuant INT2 3.5b", lambda: sq_compact(model)),
                    ("MiniLM, torch dynamic int8", lambda: torch.ao.quantization.quantize_dynamic(
                        model, {torch.nn.Linear}, dtype=torch.qint8))]:
        t = time.process_time()
        f()
        rows.append(f"| {name} | {time.process_time() - t:.2f} |")
    if big:
        w = (np.random.default_rng(0).standard_normal((4096, 11008)) * 0.02).astype(np.float32)
        for normal in ("int", "auto"):
            t = time.process_time()
            O.ovp_quantize(w, bits=4, normal=normal)
            rows.append(f"| 4096x11008 Gaussian, OVP W4 {normal} | {time.process_time() - t:.2f} |")
    return "\n".join(rows)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="MiniLM shapes only, fewer rounds")
    ap.add_argument("--out", default=None)
    ap.add_argument("--model-only", action="store_true", help="only the whole-model table")
    ap.add_argument("--gemv", action="store_true",
                    help="only 4096x4096 and 4096x11008 at batch 1 and 4: fp32, OVP W4 / W8, torch dynamic int8")
    ap.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 5, 3 with --quick)")
    ap.add_argument("--no-amx", action="store_true",
                    help="keep the OVP and SplitQuant kernels off the AMX tiles (numkern._core.set_amx(False))")
    ap.add_argument("--threads", default="1",
                    help="threads of torch and numkern: a number or 'all' (os.cpu_count()); with more than one "
                         "the times are wall time")
    ap.add_argument("--batches", default=None, help="batch sizes of the layer table, comma-separated (default 1,4,16,64)")
    ap.add_argument("--real-weights", action="store_true",
                    help="the layer table on all-MiniLM-L6-v2's own weights (its first layer of each shape)")
    ap.add_argument("--layers-only", action="store_true", help="only the layer table")
    a = ap.parse_args()
    if a.no_amx:
        from numkern import _core

        _core.set_amx(False)
    global CLOCK
    nthreads = (os.cpu_count() or 1) if a.threads == "all" else int(a.threads)
    torch.set_num_threads(nthreads)
    numkern.set_num_threads(nthreads)
    if nthreads > 1:
        CLOCK = time.perf_counter
    shapes = [(384, 384), (384, 1536), (1536, 384)] + ([] if a.quick else [(4096, 4096), (4096, 11008)])
    rounds = a.rounds or (3 if a.quick else 5)
    from numkern._core import amx_available

    header = (f"CPU: {cpu_model()}; numkern ISA path: {isa()} (AVX-512 VNNI: {vnni()}; AMX tiles, OVP float GEMM from 10 rows (4-bit: from 2), "
              f"integer products from 16, SplitQuant from 32: {amx_available()}); torch {torch.__version__}; "
              f"{nthreads} thread(s) (torch.set_num_threads, numkern.set_num_threads); times: "
              f"{'thread CPU time' if nthreads == 1 else 'wall time'}, medians "
              f"of {rounds} interleaved rounds; ratios are time / fp32 time (lower is better).")
    if a.gemv:
        print(header + "\n\n" + gemv_table([(4096, 4096), (4096, 11008)], (1, 4), rounds))
        return
    if a.model_only:
        print(model_table(rounds))
        return
    batches = tuple(int(b) for b in a.batches.split(",")) if a.batches else (1, 4, 16, 64)
    layers = layer_table(shapes, batches, rounds, a.real_weights)
    if a.layers_only:
        print(header + ("; MiniLM's own weights" if a.real_weights else "") + "\n\n" + layers)
        return
    parts = [header, "", layers, "", model_table(rounds), "", quant_table(not a.quick)]
    text = "\n".join(parts)
    print(text)
    if a.out:
        with open(a.out, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
