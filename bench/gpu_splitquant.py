"""GPU check of numkern.quant's SplitQuant part: the CUDA fused kernel against the CPU kernel,
then throughput against the three-branch form and one float32 GEMM.

Imported by bench/gpu_check.py, which calls run(report) with report(name, ok, detail).
Also runnable alone: python bench/gpu_splitquant.py
"""
from __future__ import annotations

import time

import numpy as np


def _rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-30))


# (batch, in, out, bits, k, group_size, scheme): tile edges, groups not multiple of 32, k = 4
CASES = [(1, 384, 1536, 2, 3, 128, None), (128, 384, 1536, 4, 3, 128, None),
         (33, 200, 70, 2, 4, 40, "minmax"), (5, 96, 33, 8, 3, None, None),
         (300, 1536, 384, 2, 2, 64, None)]


def _check(report):
    import torch

    from numkern import quant as q

    for batch, fin, fout, bits, k, gs, scheme in CASES:
        tag = f"splitquant fused b={batch} {fin}->{fout} INT{bits} k={k}"
        try:
            torch.manual_seed(0)
            lin = torch.nn.Linear(fin, fout)
            sq = q.splitquant(lin, bits=bits, k=k, group_size=gs, scheme=scheme)
            fused = q.fuse_splitquant(sq)
            x = torch.randn(batch, fin)
            with torch.no_grad():
                cpu = fused(x)
                three = sq(x)
                gpu = fused.cuda()(x.cuda()).cpu()
            e = _rel(gpu, cpu)
            report(f"{tag} torch CUDA vs CPU", e < 1e-5, f"max rel diff {e:.1e}")
            e = _rel(gpu, three)
            report(f"{tag} CUDA vs three-branch", e < 2e-5, f"max rel diff {e:.1e}")
            f = fused.fused()
            e = _rel(f.matmul(x.cuda(), lin.bias.detach().cuda()).cpu(), f.matmul(x.numpy(), lin.bias.detach().numpy()))
            report(f"{tag} FusedSplitQuantWeight.matmul torch CUDA", e < 1e-5, f"max rel diff {e:.1e}")
            try:
                import cupy
            except ImportError:
                continue
            xc = cupy.asarray(x.numpy())
            e = _rel(cupy.asnumpy(f.matmul(xc)), f.matmul(x.numpy()))
            report(f"{tag} FusedSplitQuantWeight.matmul CuPy", e < 1e-5, f"max rel diff {e:.1e}")
        except Exception as exc:  # report, never stop the whole GPU check
            report(tag, False, f"{type(exc).__name__}: {exc}")


def _throughput(report):
    import torch

    from numkern import quant as q

    torch.manual_seed(0)
    for fin, fout in ((4096, 4096), (4096, 11008)):
        lin = torch.nn.Linear(fin, fout)
        sq = q.splitquant(lin, bits=2, group_size=128)
        fused = q.fuse_splitquant(sq).cuda()
        sq, lin = sq.cuda(), lin.cuda()
        for batch in (1, 16, 256):
            x = torch.randn(batch, fin, device="cuda")
            times = {}
            for name, f in (("fused", fused), ("three_branch", sq), ("float32", lin)):
                with torch.no_grad():
                    for _ in range(3):
                        f(x)
                    torch.cuda.synchronize()
                    t = time.perf_counter()
                    for _ in range(20):
                        f(x)
                    torch.cuda.synchronize()
                times[name] = (time.perf_counter() - t) / 20 * 1e3
            report(f"splitquant throughput {fin}->{fout} batch {batch}", True,
                   ", ".join(f"{k} {v:.3f} ms" for k, v in times.items()))


def run(report):
    import numkern

    if not numkern.cuda_available():
        report("splitquant CUDA", False, "no CUDA device or numkern built without CUDA")
        return
    _check(report)
    _throughput(report)


if __name__ == "__main__":
    def _print(name, ok, detail):
        print(f"{'ok  ' if ok else 'FAIL'} {name}: {detail}")

    run(_print)
