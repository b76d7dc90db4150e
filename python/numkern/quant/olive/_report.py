"""``python -m numkern`` section for OliVe OVP quantization (numkern.quant): the format on the
issue's golden pairs, MSE against plain int4 on heavy-tailed weights, and fused-GEMV speed.
All inputs are embedded or drawn from a fixed seed; runs in about a second.
"""
from __future__ import annotations

import time

import numpy as np

# (pair in int4 code units q/4, expected decoded pair, expected byte)
_GOLDEN = [((2.6, 4.2), (3, 4), 0x43), ((-98, 1.5), (-96, 0), 0x8F), ((1, 50), (0, 48), 0x58),
           ((-8, 7), (-7, 7), 0x79)]


def report(out) -> None:
    import importlib

    Q = importlib.import_module(__package__)

    print("OliVe outlier-victim pairs (numkern.quant.ovp_*):", file=out)
    for pair, want, byte in _GOLDEN:
        q = Q.ovp_quantize(4 * np.array([pair], np.float32), bits=4, normal="int", alpha=28.0)
        got = tuple(float(v) / 4 for v in Q.ovp_dequantize(q)[0])
        ok = got == tuple(map(float, want)) and int(q.codes[0, 0]) == byte
        print(f"  int4 pair {pair!s:>12} -> {got!s:>12} byte 0x{int(q.codes[0, 0]):02X} "
              f"{'= expected' if ok else 'MISMATCH with the expected decoded pair / byte'}", file=out)
    w = np.random.default_rng(0).standard_t(3, size=(128, 512)).astype(np.float32)
    ovp = Q.ovp_normal_mse(w, 4, "int", outliers=True)
    plain = Q.ovp_normal_mse(w, 4, "int", outliers=False)
    print(f"  Student-t(3) 128x512, per-row search: MSE OVP int4 {ovp:.4g} vs plain int4 {plain:.4g} "
          f"({plain / ovp:.2f}x lower)", file=out)
    wb = np.random.default_rng(1).standard_t(3, size=(2048, 2048)).astype(np.float32)
    q = Q.ovp_quantize(wb, bits=4, normal="int", search=False)
    x = np.random.default_rng(2).standard_normal((1, 2048)).astype(np.float32)

    t_ovp, t_np, note = _cpu_times([lambda: Q.ovp_matmul(x, q), lambda: x @ wb.T])
    print(f"  GEMV 2048x2048 batch 1, 1 thread, CPU time: ovp_matmul 4-bit {t_ovp * 1e3:.3f} ms, "
          f"numpy float32 {t_np * 1e3:.3f} ms (numpy / ovp_matmul = {t_np / t_ovp:.2f}){note}", file=out)


def _cpu_times(fns, rounds=7, min_round_s=0.02):
    """Median over ``rounds`` of the CPU time (time.process_time) per call of each function,
    after a warm-up; each round repeats a call until it has used min_round_s of CPU.  The rounds
    of the functions are interleaved, and numkern and (through threadpoolctl, when installed)
    the BLAS run on one thread, so the ratio does not depend on what else the machine runs."""
    import contextlib

    import numkern

    try:
        from threadpoolctl import threadpool_limits
        limit, note = threadpool_limits(limits=1), ""
    except ImportError:
        limit, note = contextlib.nullcontext(), " (BLAS threads not limited: no threadpoolctl)"
    old = numkern.get_num_threads()
    numkern.set_num_threads(1)
    try:
        with limit:
            for fn in fns:
                for _ in range(3):
                    fn()
            per_call = [[] for _ in fns]
            for _ in range(rounds):
                for fn, times in zip(fns, per_call):
                    n, t0 = 0, time.process_time()
                    while True:
                        fn()
                        n += 1
                        dt = time.process_time() - t0
                        if dt >= min_round_s:
                            break
                    times.append(dt / n)
    finally:
        numkern.set_num_threads(old)
    return (*(float(np.median(t)) for t in per_call), note)


if __name__ == "__main__":
    import sys
    report(sys.stdout)
