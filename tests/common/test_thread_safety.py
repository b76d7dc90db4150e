"""Thread safety of every family (issue #8): the main entry points called from 8 Python threads
at once on SHARED inputs (the GIL is released inside the kernels) give bitwise the serial
results, and numkern.set_num_threads called in a loop while other threads compute neither
crashes nor changes a result (every element is computed independently of the thread count).
"""
from __future__ import annotations

import dataclasses
import random
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import numkern
from numkern import hessian, kde, quant, vmf
from numkern import special as nks

N_THREADS = 8
REPEATS = 3  # each job runs REPEATS times per thread pool, interleaved with the others


def _fingerprint(r):
    """Bytes that are equal iff two results are bitwise equal (arrays, floats, dataclasses)."""
    if isinstance(r, np.ndarray):
        return (r.dtype.str, r.shape, r.tobytes())
    if isinstance(r, (float, np.floating)):
        return np.float64(r).tobytes()
    if isinstance(r, (tuple, list)):
        return tuple(_fingerprint(x) for x in r)
    if dataclasses.is_dataclass(r):
        return tuple(_fingerprint(getattr(r, f.name)) for f in dataclasses.fields(r))
    if hasattr(r, "numpy"):  # torch tensors
        return _fingerprint(r.detach().numpy())
    return r


@pytest.fixture(scope="module")
def shared():
    rng = np.random.default_rng(2024)
    d = {}
    d["v"] = rng.uniform(0, 80, 20_000)
    d["x"] = np.exp(rng.uniform(-6, 7, 20_000))
    X = rng.standard_normal((3000, 16))
    d["X"] = X / np.linalg.norm(X, axis=1, keepdims=True)
    d["dist"] = vmf.VonMisesFisher(d["X"][0], 25.0)
    d["Y"] = rng.standard_normal((1500, 6))
    d["kde"] = kde.GaussianKDE(d["Y"], "scott")
    d["W"] = rng.standard_normal((96, 128)).astype(np.float32)
    d["q"] = quant.ovp_quantize(d["W"], bits=4)
    d["xq"] = rng.standard_normal((32, 128)).astype(np.float32)
    labels = quant.cluster_labels(d["W"], 3)
    qs = [quant.quantize_weights(np.where(labels == j, d["W"], 0), 4, None, 32) for j in range(3)]
    d["fused"] = quant.FusedSplitQuantWeight.from_branches(qs, labels)
    d["Z"] = rng.standard_normal((800, 24))
    d["Wh"] = rng.standard_normal((10, 24))
    d["bh"] = rng.standard_normal(10)
    d["yh"] = rng.integers(0, 10, 800)
    d["H"] = hessian.SoftmaxHeadHessian(d["Z"], d["Wh"], d["bh"], d["yh"])
    return d


def _jobs(s):
    v, x = s["v"], s["x"]
    return {
        "special.log_iv": lambda: nks.log_iv(v, x),
        "special.iv": lambda: nks.iv(v, x),
        "special.ive": lambda: nks.ive(v, x),
        "special.log_kv": lambda: nks.log_kv(v, x),
        "special.kv": lambda: nks.kv(v, x),
        "special.kve": lambda: nks.kve(v, x),
        "special.iv_ratio": lambda: nks.iv_ratio(v + 0.5, x),
        "special.iv_ratio_c": lambda: nks.iv_ratio_c(v + 0.5, x),
        "special.k1e": lambda: nks.k1e(x),
        "vmf.log_normalizer": lambda: vmf.log_normalizer(v + 2, x),
        "vmf.kappa_mle": lambda: vmf.kappa_mle(np.minimum(x / (1 + x), 0.999), v + 2),
        "vmf.fit": lambda: (lambda f: (f.mu, f.kappa))(vmf.fit(s["X"])),
        "vmf.logpdf": lambda: s["dist"].logpdf(s["X"]),
        "kde.logpdf": lambda: s["kde"].logpdf(s["Y"][:400]),
        "kde.loo_logpdf": lambda: s["kde"].loo_logpdf(),
        "olive.quantize": lambda: (lambda q: (q.codes, q.scales))(quant.ovp_quantize(s["W"], bits=4)),
        "olive.dequantize": lambda: quant.ovp_dequantize(s["q"]),
        "olive.matmul": lambda: quant.ovp_matmul(s["xq"], s["q"]),
        "splitquant.kmeans1d": lambda: quant.kmeans1d(s["W"], 3),
        "splitquant.quantize": lambda: quant.quantize_weights(s["W"], 4, None, 32).dequantize(),
        "splitquant.fused_matmul": lambda: s["fused"].matmul(s["xq"]),
        "hessian.head_trace": lambda: hessian.SoftmaxHeadHessian(s["Z"], s["Wh"], s["bh"], s["yh"]).trace(),
        "hessian.head_diagonal": lambda: hessian.SoftmaxHeadHessian(s["Z"], s["Wh"], s["bh"]).diagonal(),
        "hessian.shared_head": lambda: (s["H"].trace(), s["H"].gradient(), s["H"].matvec(s["H"].gradient())),
    }


def test_eight_threads_match_serial(shared, restore_threads):
    numkern.set_num_threads(2)
    jobs = _jobs(shared)
    serial = {k: _fingerprint(f()) for k, f in jobs.items()}
    order = [k for k in jobs for _ in range(REPEATS)]
    random.Random(7).shuffle(order)
    with ThreadPoolExecutor(max_workers=N_THREADS) as ex:
        futures = [(k, ex.submit(jobs[k])) for k in order]
        got = [(k, _fingerprint(f.result())) for k, f in futures]
    bad = sorted({k for k, r in got if r != serial[k]})
    assert not bad, f"results differ from the serial call under {N_THREADS} threads: {bad}"


def test_same_function_from_eight_threads_at_once(shared, restore_threads):
    """All 8 threads enter the same kernel together (a barrier lines them up)."""
    numkern.set_num_threads(1)
    jobs = _jobs(shared)
    for name in ("special.log_iv", "olive.matmul", "kde.logpdf", "hessian.shared_head", "vmf.logpdf"):
        want = _fingerprint(jobs[name]())
        barrier = threading.Barrier(N_THREADS)

        def run(f=jobs[name]):
            barrier.wait()
            return _fingerprint(f())

        with ThreadPoolExecutor(max_workers=N_THREADS) as ex:
            results = list(ex.map(lambda _: run(), range(N_THREADS)))
        assert all(r == want for r in results), name


def test_set_num_threads_while_computing(shared, restore_threads):
    jobs = _jobs(shared)
    names = ["special.log_kv", "special.ive", "vmf.log_normalizer", "kde.logpdf", "olive.quantize",
             "olive.matmul", "splitquant.fused_matmul", "hessian.head_trace"]
    serial = {k: _fingerprint(jobs[k]()) for k in names}
    stop = threading.Event()
    counts = {"set": 0}

    def flip():
        i = 0
        while not stop.is_set():
            numkern.set_num_threads(1 + i % 4)
            i += 1
        counts["set"] = i

    flipper = threading.Thread(target=flip)
    flipper.start()
    try:
        with ThreadPoolExecutor(max_workers=4) as ex:
            futures = [(k, ex.submit(jobs[k])) for k in names * 2]
            got = [(k, _fingerprint(f.result())) for k, f in futures]
    finally:
        stop.set()
        flipper.join()
    assert counts["set"] > 10  # the setter really ran concurrently
    bad = sorted({k for k, r in got if r != serial[k]})
    assert not bad, f"results changed while set_num_threads was called: {bad}"
    assert 1 <= numkern.get_num_threads() <= 4
