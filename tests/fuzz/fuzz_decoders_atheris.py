"""Coverage-guided fuzzing of numkern's public packed-format decoders with atheris (libFuzzer).

    pip install atheris            # a binary wheel for CPython 3.11 on x86-64 Linux
    python tests/fuzz/fuzz_decoders_atheris.py -max_total_time=300 [corpus_dir]

Calls the public API, as a user with a corrupt or hand-made tensor would: ovp_dequantize /
ovp_matmul on an OVPTensor, FusedSplitQuantWeight.dequantize / matmul, kmeans1d, with fuzzed
formats, shapes (consistent or not), code bytes, scales and cluster ids.  Each call must either
raise TypeError / ValueError or return an array of the documented shape and dtype, and:
  OliVe: finite scales -> finite values, every value a grid value times its row's scale;
  SplitQuant: NaN exactly where a cluster id is >= k (with finite tables), finite elsewhere.
A crash, a hang, or any other exception is a finding (libFuzzer saves the input).

Python branches are coverage-instrumented (atheris.instrument_imports); the C++ kernels are
not (that needs a clang build of the extension), their memory safety is the job of the native
targets under ASan (tests/fuzz/run_fuzz.sh) and of tests/sanitize.sh.
"""
from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports(include=["numkern"]):
    import numpy as np

    from numkern import quant

# grid values in q units (numkern/olive.hpp); a decoded value is one of these times the scale
_GRID4 = {0.0} | {4.0 * i for i in range(-7, 8)} | {s * v for s in (1, -1) for v in (2, 4, 6, 8, 12, 16, 32)}
_GRID4 |= {s * (32 << e) * (1.5 if m else 1.0) for s in (1, -1) for e in range(4) for m in (0, 1)}
_GRID8 = {i / 4 for i in range(-128, 128)} | {s * (32 + j) * 2.0 ** i for s in (1, -1)
                                               for i in range(4) for j in range(32)}


def _bytes(fdp, n):
    raw = fdp.ConsumeBytes(n)
    return np.frombuffer(raw.ljust(n, b"\0"), np.uint8).copy()


def _olive(fdp, matmul):
    bits = fdp.PickValueInList([4, 8, 4, 8, 3])
    normal = fdp.PickValueInList(["int", "flint", "int", "auto"])
    axis = fdp.PickValueInList(["row", None])
    rows, cols = fdp.ConsumeIntInRange(1, 6), fdp.ConsumeIntInRange(1, 80)
    bpr = ((cols + 1) // 2) * (2 if bits == 8 else 1)
    code_shape = (rows + fdp.ConsumeIntInRange(-1, 1) * fdp.ConsumeBool(),
                  max(0, bpr + fdp.ConsumeIntInRange(-1, 1) * fdp.ConsumeBool()))
    codes = _bytes(fdp, code_shape[0] * code_shape[1]).reshape(code_shape)
    groups = rows if axis == "row" else 1
    scales = np.array([fdp.ConsumeFloat() if fdp.ConsumeBool() else fdp.ConsumeFloatInRange(1e-3, 10)
                       for _ in range(groups + fdp.ConsumeIntInRange(0, 1) * fdp.ConsumeBool())],
                      np.float32)
    q = quant.OVPTensor(codes=codes, scales=scales, normal=normal, shape=(rows, cols), bits=bits, axis=axis)
    try:
        if matmul:
            x = np.array([fdp.ConsumeFloatInRange(-4, 4) for _ in range(3 * cols)], np.float32).reshape(3, cols)
            y = quant.ovp_matmul(x, q)
            assert y.shape == (3, rows) and y.dtype == np.float32
            return
        d = quant.ovp_dequantize(q)
    except (TypeError, ValueError):
        return
    assert d.shape == (rows, cols) and d.dtype == np.float32, (d.shape, d.dtype)
    s = scales if axis == "row" else np.repeat(scales, rows)
    for r in range(rows):
        if not (np.isfinite(s[r]) and s[r] != 0):
            continue
        assert np.all(np.isfinite(d[r])), d[r]
        grid = _GRID8 if bits == 8 else _GRID4
        g = d[r].astype(np.float64) / np.float64(s[r])
        ok = [any(abs(v - t) <= 1e-6 * max(1.0, abs(t)) for t in grid) for v in g]
        assert all(ok), (g, s[r])


def _splitquant(fdp, matmul):
    bits = fdp.PickValueInList([2, 4, 8, 2, 4, 8, 3])
    k = fdp.ConsumeIntInRange(0, 5)
    gs = fdp.ConsumeIntInRange(1, 24)
    groups = fdp.ConsumeIntInRange(0, 4)
    n_in = gs * groups + fdp.ConsumeIntInRange(0, 2) * fdp.ConsumeBool()
    out = fdp.ConsumeIntInRange(0, 6)
    per = 8 // bits if bits in (2, 4, 8) else 1
    code_cols, cluster_cols = -(-n_in // per), -(-n_in // 4)
    codes = _bytes(fdp, out * code_cols).reshape(out, code_cols)
    clusters = _bytes(fdp, out * cluster_cols).reshape(out, cluster_cols)
    tab = (out, groups + fdp.ConsumeIntInRange(0, 1) * fdp.ConsumeBool(), k)
    scales = np.array([fdp.ConsumeFloatInRange(-2, 2) for _ in range(int(np.prod(tab)))], np.float32).reshape(tab)
    offsets = np.array([fdp.ConsumeFloatInRange(-2, 2) for _ in range(int(np.prod(tab)))], np.float32).reshape(tab)
    f = quant.FusedSplitQuantWeight(codes, clusters, scales, offsets, n_in, gs, bits)
    try:
        if matmul:
            x = np.array([fdp.ConsumeFloatInRange(-4, 4) for _ in range(2 * n_in)], np.float32).reshape(2, n_in)
            y = f.matmul(x)
            assert y.shape == (2, out) and y.dtype == np.float32
            return
        w = f.dequantize()
    except (TypeError, ValueError):
        return
    assert w.shape == (out, n_in) and w.dtype == np.float32
    i = np.arange(n_in)
    ids = (clusters[:, i // 4] >> (2 * (i % 4)).astype(np.uint8)) & 3
    np.testing.assert_array_equal(np.isnan(w), ids >= k)


def _kmeans(fdp):
    n = fdp.ConsumeIntInRange(0, 200)
    values = np.array([fdp.ConsumeFloat() for _ in range(n)])
    k = fdp.ConsumeIntInRange(-1, 7)
    try:
        centers, labels = quant.kmeans1d(values, k=k)
    except (TypeError, ValueError):
        return
    assert labels.shape == values.shape
    c = np.asarray(centers)
    c = c[~np.isnan(c)]
    assert np.all(np.diff(c) >= 0), c


def TestOneInput(data):
    fdp = atheris.FuzzedDataProvider(data)
    op = fdp.ConsumeIntInRange(0, 4)
    if op < 2:
        _olive(fdp, op == 1)
    elif op < 4:
        _splitquant(fdp, op == 3)
    else:
        _kmeans(fdp)


if __name__ == "__main__":
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()
