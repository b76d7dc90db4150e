"""Memory leaks (issue #8): many calls of every entry point keep the resident set flat.

Resident memory is read from /proc/self/statm after a warm-up (allocator pools, caches and
lazily imported modules settle there); the growth over the loop must stay under LEAK_TOL_MIB.
A leak of 100 bytes per call shows at 10^5 calls (10 MB); CI runs fewer calls
(NUMKERN_LEAK_CALLS, default 20000, fewer for the slow entries), which catches leaks of
~0.5-4 KiB per call and up: every leaked result array or Python object graph.  Run ``NUMKERN_LEAK_CALLS=100000 pytest tests/common/test_leaks.py
-s`` before a release: it prints the growth per entry.
"""
from __future__ import annotations

import gc
import os
import sys

import numpy as np
import pytest

from numkern import hessian, kde, quant, vmf
from numkern import special as nks

CALLS = int(os.environ.get("NUMKERN_LEAK_CALLS", "20000"))
LEAK_TOL_MIB = 8.0

pytestmark = pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs /proc (Linux)")


def _rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


_rng = np.random.default_rng(5)
_v = _rng.uniform(0, 40, 64)
_x = np.exp(_rng.uniform(-4, 5, 64))
_out = np.empty(64)
_X = _rng.standard_normal((50, 8))
_X /= np.linalg.norm(_X, axis=1, keepdims=True)
_dist = vmf.VonMisesFisher(_X[0], 10.0)
_Y = _rng.standard_normal((60, 3))
_kde = kde.GaussianKDE(_Y)
_W = _rng.standard_normal((16, 32)).astype(np.float32)
_q = quant.ovp_quantize(_W, bits=4)
_xq = _rng.standard_normal((4, 32)).astype(np.float32)
_lab = quant.cluster_labels(_W, 3)
_fused = quant.FusedSplitQuantWeight.from_branches(
    [quant.quantize_weights(np.where(_lab == j, _W, 0), 4, None, 16) for j in range(3)], _lab)
_Z = _rng.standard_normal((40, 6))
_Wh = _rng.standard_normal((5, 6))
_yh = _rng.integers(0, 5, 40)
_A = np.diag(np.arange(1.0, 9.0))


def _bad_call(f, *a):
    """Error paths must not leak either (the exception and its partial results are freed)."""
    try:
        f(*a)
    except (TypeError, ValueError):
        return
    raise AssertionError("expected an error")


ENTRIES = {
    "special.log_iv": lambda: nks.log_iv(_v, _x),
    "special.iv_out": lambda: nks.iv(_v, _x, out=_out),
    "special.kve": lambda: nks.kve(_v, _x),
    "special.iv_ratio_c": lambda: nks.iv_ratio_c(_v + 0.5, _x),
    "special.i0e_scalar": lambda: nks.i0e(1.5),
    "special.error_path": lambda: _bad_call(nks.log_iv, _v, _x[:3]),
    "vmf.log_normalizer": lambda: vmf.log_normalizer(10.0, _x),
    "vmf.kappa_mle": lambda: vmf.kappa_mle(0.5, 10.0),
    "vmf.fit": lambda: vmf.fit(_X),
    "vmf.logpdf": lambda: _dist.logpdf(_X),
    "vmf.sample": lambda: _dist.sample(8, seed=1),
    "vmf.error_path": lambda: _bad_call(vmf.fit, _X * 2),
    "kde.logpdf": lambda: _kde.logpdf(_Y[:10]),
    "kde.construct": lambda: kde.GaussianKDE(_Y, 0.5),
    "kde.diagnostics": lambda: _kde.diagnostics(_Y[:5], [0.3, 0.6]),
    "olive.quantize": lambda: quant.ovp_quantize(_W, bits=4, search=False),
    "olive.dequantize": lambda: quant.ovp_dequantize(_q),
    "olive.matmul": lambda: quant.ovp_matmul(_xq, _q),
    "olive.error_path": lambda: _bad_call(quant.ovp_quantize, _W[:, :0]),
    "splitquant.kmeans1d": lambda: quant.kmeans1d(_W, 3),
    "splitquant.quantize_weights": lambda: quant.quantize_weights(_W, 4, None, 16),
    "splitquant.fused_matmul": lambda: _fused.matmul(_xq),
    "splitquant.fused_decode": lambda: _fused.dequantize(),
    "hessian.head": lambda: hessian.SoftmaxHeadHessian(_Z, _Wh, None, _yh).trace(),
    "hessian.head_grad": lambda: hessian.SoftmaxHeadHessian(_Z, _Wh, None, _yh).gradient(),
    "hessian.trace": lambda: hessian.trace(_A, method="hutch++", num_matvecs=9, seed=0),
}
# expensive entries run fewer times (the per-call tolerance scales accordingly)
SCALE = {"vmf.fit": 0.25, "kde.construct": 0.25, "olive.quantize": 0.1, "splitquant.kmeans1d": 0.5,
         "hessian.trace": 0.25, "vmf.error_path": 0.5, "olive.matmul": 0.1, "olive.dequantize": 0.1,
         "kde.diagnostics": 0.25}
RESULTS = {}


@pytest.fixture(autouse=True)
def _one_thread(restore_threads):
    # leaks do not depend on the thread count, and on a loaded CI machine a parallel region over
    # a tiny input can wait milliseconds for its second thread (see bench/results/fuzz.md)
    import numkern

    numkern.set_num_threads(1)


@pytest.mark.parametrize("name", sorted(ENTRIES))
def test_rss_flat(name):
    f = ENTRIES[name]
    # an explicit NUMKERN_LEAK_CALLS (the release run) gives every entry the full count
    n = CALLS if "NUMKERN_LEAK_CALLS" in os.environ else max(200, int(CALLS * SCALE.get(name, 1.0)))
    for _ in range(max(50, n // 10)):  # warm-up
        f()
    gc.collect()
    before = _rss_bytes()
    for _ in range(n):
        f()
    gc.collect()
    growth = _rss_bytes() - before
    RESULTS[name] = (n, growth)
    print(f"\n{name}: {n} calls, RSS growth {growth / 2**20:.3f} MiB ({growth / n:.1f} B/call)",
          file=sys.stderr)
    assert growth < LEAK_TOL_MIB * 2**20, f"{name}: RSS grew {growth / 2**20:.1f} MiB over {n} calls"
