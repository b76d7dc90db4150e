"""The OVP threshold search with histogram lower bounds (csrc/cpu/olive/search.cpp, lower_bounds): rows of
at least 128 elements, where candidates are ordered and dropped by a lower bound of their error instead of
being summed in full.  A bound above a candidate's true error would drop the reference's winner and change
the codes, so every case here compares codes, scales, thresholds and errors bit for bit with the scalar
reference search (numkern._core.olive.encode_reference), on every dispatcher tier, for rows whose errors
are smooth, heavy-tailed, on the grids, tied, sparse, tiny, huge or all outliers."""
import numpy as np
import pytest

import numkern
from numkern._core import olive as C
from numkern.quant import olive as O

FORMATS = [(4, 0), (4, 1), (8, 0)]


def _encode(fn, x, bits, normal, keep_left, per_row):
    rows, cols = x.shape
    groups = rows if per_row else 1
    codes = np.empty((rows, O._bytes_per_row(cols, bits)), np.uint8)
    scales, alphas, errors = np.empty(groups, np.float32), np.zeros(groups), np.empty(groups)
    fn(x, codes, scales, alphas, errors, bits, normal, keep_left, per_row, 0)
    return codes, scales, alphas, errors


def _assert_same(x, bits, normal, keep_left=False, per_row=True):
    new = _encode(C.encode, x, bits, normal, keep_left, per_row)
    old = _encode(C.encode_reference, x, bits, normal, keep_left, per_row)
    for name, a, b in zip(("codes", "scales", "alphas", "errors"), new, old):
        if a.tobytes() != b.tobytes():
            bad = np.flatnonzero((a != b).reshape(len(a), -1).any(axis=1))[:5]
            raise AssertionError(f"{name} differ (rows {bad}) for {x.shape} bits={bits} normal={normal} "
                                 f"keep_left={keep_left} per_row={per_row}")


def _rows(rng, cols):
    """Rows of varied shape (each one float32 row of cols elements)."""
    g = rng.standard_normal(cols)
    spiky = g * 0.04
    spikes = rng.random(cols) < 0.004
    spiky[spikes] *= rng.uniform(4, 12, spikes.sum())
    sparse = np.where(rng.random(cols) < 0.9, 0.0, g)
    step = np.abs(g).max() / 7
    rows = {
        "gauss": g, "spiky": spiky, "t1.5": rng.standard_t(1.5, cols), "t3": rng.standard_t(3, cols),
        "uniform": rng.uniform(-1, 1, cols), "laplace": rng.laplace(size=cols), "sparse": sparse,
        "bimodal": np.sign(g) * (1 + 0.01 * g),  # nearly every pair is an outlier pair for small thresholds
        "integers": rng.integers(-8, 9, cols) * 0.5,  # many exact ties between candidates and midpoints
        "on_grid": np.round(g / step) * step,
        "two_valued": np.tile([1.0, -1.0], cols // 2 + 1)[:cols],
        "constant": np.full(cols, 0.3),
        "one_spike": np.r_[np.full(cols - 1, 1e-3), 50.0],
        "tiny": g * 1e-30, "huge": g * 1e30,
        "ramp": np.linspace(-1, 1, cols),
    }
    return rows


@pytest.mark.parametrize("bits,normal", FORMATS)
def test_bounded_search_matches_reference_varied_rows(isa, bits, normal):
    rng = np.random.default_rng(31 + 10 * bits + normal)
    for cols in (130, 512, 1537, 4096):
        rows = _rows(rng, cols)
        x = np.stack(list(rows.values())).astype(np.float32)
        _assert_same(x, bits, normal)
        _assert_same(np.ascontiguousarray(x[::3]), bits, normal, keep_left=True)


@pytest.mark.parametrize("bits,normal", FORMATS)
def test_bounded_search_matches_reference_weight_like(isa, bits, normal):
    # the benchmark's weight model (Gaussian bulk, 0.4 % spikes) at several scales and a long row
    rng = np.random.default_rng(7 + bits + normal)
    x = rng.standard_normal((12, 11008)) * 0.04
    spikes = rng.random(x.shape) < 0.004
    x[spikes] *= rng.uniform(4, 12, spikes.sum())
    x *= np.geomspace(1e-3, 1e3, 12)[:, None]
    _assert_same(x.astype(np.float32), bits, normal)


@pytest.mark.parametrize("bits,normal", FORMATS)
def test_bounded_search_matches_reference_one_group(restore_threads, bits, normal):
    # axis=None on one thread: one search over the whole matrix (np = 8192 pairs), bounds included
    numkern.set_num_threads(1)
    rng = np.random.default_rng(3 + bits + normal)
    x = (rng.standard_t(4, size=(8, 2048)) * 0.05).astype(np.float32)
    _assert_same(x, bits, normal, per_row=False)


def test_auto_grid_matches_reference_search():
    # ovp_quantize's default (normal="auto": the int and flint searches, the lower total error wins) gives the
    # codes of the reference search's winner
    rng = np.random.default_rng(11)
    x = (rng.standard_t(5, size=(16, 1024)) * 0.05).astype(np.float32)
    q = O.ovp_quantize(x)
    nt = {"int": 0, "flint": 1}[q.normal]
    ref = {n: _encode(C.encode_reference, x, 4, n, False, True) for n in (0, 1)}
    assert q.normal == ("flint" if ref[1][3].sum() < ref[0][3].sum() else "int")
    assert np.asarray(q.codes).tobytes() == ref[nt][0].tobytes()
    assert np.asarray(q.scales).tobytes() == ref[nt][1].tobytes()


def _chunked_seq_sum(rows):
    # the encoder's order: each 4096-column chunk of each row summed left to right in float64 (np.cumsum is
    # sequential), then the chunk sums in order, row after row
    total = 0.0
    for row in rows:
        for c in range(0, row.size, 4096):
            total += float(np.cumsum(row[c:c + 4096])[-1])
    return total


@pytest.mark.parametrize("cols", [4097, 8192, 9000, 20485])
def test_sigma_bound_chunk_order(cols):
    # the 3-sigma threshold (search=False) sums the chunks of a row side by side; it must equal the
    # chunk-ordered sequential sums bit for bit, per row and for the whole matrix
    rng = np.random.default_rng(cols)
    x = (rng.standard_normal((3, cols)) * 0.05 + 0.01).astype(np.float32)
    for per_row in (True, False):
        groups = [x[r:r + 1].astype(np.float64) for r in range(3)] if per_row else [x.astype(np.float64)]
        want = []
        for g in groups:
            n = g.size
            mu = _chunked_seq_sum(g) / n
            sd = np.sqrt(_chunked_seq_sum((g - mu) ** 2) / (n - 1))
            want.append(max(abs(mu + 3 * sd), abs(mu - 3 * sd)))
        q = O.ovp_quantize(x, normal="int", axis="row" if per_row else None, search=False)
        assert np.asarray(q.alphas).tolist() == want
