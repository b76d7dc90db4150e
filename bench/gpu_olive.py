"""GPU section for bench/gpu_check.py: OliVe OVP quantization on CUDA against numkern's CPU results.

Checks, on torch CUDA tensors (and CuPy when importable):
  * the CUDA encoder writes the same bytes, scales and thresholds as the CPU encoder (full
    search, per row and per tensor, 4-bit int / flint and 8-bit, odd last dimension, a row longer
    than one 4096-column summation chunk);
  * ovp_dequantize on the GPU equals the CPU decode bit for bit;
  * ovp_matmul on the GPU equals x @ dequantize(q).T (float64 on the CPU) to float tolerance,
    batch 1 and 64;
and prints throughput: encode (M weights/s) and fused GEMV / GEMM (GB/s of codes + activations).
Budget: well under a minute.
"""
from __future__ import annotations

import time

import numpy as np


def _sync():
    import torch
    torch.cuda.synchronize()


def _time(fn, rounds=10):
    fn()
    _sync()
    t = time.perf_counter()
    for _ in range(rounds):
        fn()
    _sync()
    return (time.perf_counter() - t) / rounds


def run(report):
    import torch

    import numkern
    from numkern import quant as Q

    if not numkern.cuda_available():
        report("olive: skipped", True, "no usable CUDA device (numkern.cuda_available() is False)")
        return
    rng = np.random.default_rng(5)
    for bits, normal in ((4, "int"), (4, "flint"), (8, "int")):
        for axis in ("row", None):
            w = rng.standard_t(3, size=(67, 4103)).astype(np.float32)
            qc = Q.ovp_quantize(w, bits=bits, normal=normal, axis=axis)
            qg = Q.ovp_quantize(torch.from_numpy(w).cuda(), bits=bits, normal=normal, axis=axis)
            same = (np.array_equal(qg.codes.cpu().numpy(), qc.codes)
                    and np.array_equal(qg.scales.cpu().numpy(), qc.scales)
                    and np.array_equal(qg.alphas, qc.alphas))
            mism = int((qg.codes.cpu().numpy() != qc.codes).sum())
            report(f"olive encode {bits}-bit {normal} axis={axis}", same, f"{mism} differing bytes")
            dg = Q.ovp_dequantize(qg).cpu().numpy()
            report(f"olive decode {bits}-bit {normal} axis={axis}",
                   np.array_equal(dg.view(np.uint32), Q.ovp_dequantize(qc).view(np.uint32)), "bitwise")
            if axis != "row":
                continue
            wd = Q.ovp_dequantize(qc).astype(np.float64)
            for batch in (1, 64):
                x = rng.standard_normal((batch, w.shape[1])).astype(np.float32)
                got = Q.ovp_matmul(torch.from_numpy(x).cuda(), qg).cpu().numpy().astype(np.float64)
                ref = x.astype(np.float64) @ wd.T
                scale = np.abs(x).astype(np.float64) @ np.abs(wd).T
                err = float(np.max(np.abs(got - ref) / (scale + 1e-30)))
                report(f"olive matmul {bits}-bit {normal} batch {batch}", err < 1e-5, f"max rel err {err:.2e}")
    try:
        import cupy
        w = rng.standard_normal((32, 515)).astype(np.float32)
        qc = Q.ovp_quantize(w, bits=4, normal="int")
        qg = Q.ovp_quantize(cupy.asarray(w), bits=4, normal="int")
        ok = np.array_equal(cupy.asnumpy(qg.codes), qc.codes) and np.array_equal(
            cupy.asnumpy(Q.ovp_dequantize(qg)), Q.ovp_dequantize(qc))
        report("olive CuPy encode/decode", ok, "bitwise vs CPU")
    except ImportError:
        pass

    # throughput
    n = k = 4096
    w = torch.from_numpy(rng.standard_t(3, size=(n, k)).astype(np.float32)).cuda()
    t = _time(lambda: Q.ovp_quantize(w, bits=4, normal="int"), rounds=2)
    report("olive encode 4096x4096 full search (int4)", True, f"{t * 1e3:.1f} ms, {n * k / t / 1e6:.0f} M weights/s")
    t = _time(lambda: Q.ovp_quantize(w, bits=4, normal="int", search=False), rounds=3)
    report("olive encode 4096x4096 no search (int4)", True, f"{t * 1e3:.2f} ms")
    for bits in (4, 8):
        q = Q.ovp_quantize(w, bits=bits, normal="int", search=False)
        for batch in (1, 64):
            x = torch.randn(batch, k, device="cuda")
            t = _time(lambda: Q.ovp_matmul(x, q))
            tf = _time(lambda: x @ w.T)
            moved = q.codes.numel() + 4 * (x.numel() + batch * n)
            report(f"olive matmul {bits}-bit batch {batch}", True,
                   f"{t * 1e6:.1f} us, {moved / t / 1e9:.0f} GB/s; float32 torch {tf * 1e6:.1f} us "
                   f"({tf / t:.2f}x)")


if __name__ == "__main__":
    def _report(name, ok, detail=""):
        print(f"[{'PASS' if ok else 'FAIL'}] {name}: {detail}")
    run(_report)
