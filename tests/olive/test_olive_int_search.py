"""The vectorised OVP threshold search (csrc/cpu/olive/search.cpp) against the scalar reference
search it replaced (numkern._core.olive.encode_reference): identical codes, scales, thresholds and
summed errors on every dispatcher tier, on random and MiniLM-shaped matrices and on near-ties."""
import numpy as np
import pytest

import numkern
from numkern._core import olive as C
from numkern.quant import olive as O


def _encode(fn, x, bits, normal, keep_left, per_row, mode=0):
    rows, cols = x.shape
    groups = rows if per_row else 1
    codes = np.empty((rows, O._bytes_per_row(cols, bits)), np.uint8)
    scales, alphas, errors = np.empty(groups, np.float32), np.zeros(groups), np.empty(groups)
    fn(x, codes, scales, alphas, errors, bits, normal, keep_left, per_row, mode)
    return codes, scales, alphas, errors


def _assert_same(x, bits, normal, keep_left, per_row, mode=0):
    new = _encode(C.encode, x, bits, normal, keep_left, per_row, mode)
    old = _encode(C.encode_reference, x, bits, normal, keep_left, per_row, mode)
    for name, a, b in zip(("codes", "scales", "alphas", "errors"), new, old):
        assert a.tobytes() == b.tobytes(), (name, x.shape, bits, normal, keep_left, per_row)


FORMATS = [(4, 0), (4, 1), (8, 0)]


@pytest.mark.parametrize("bits,normal", FORMATS)
def test_search_matches_reference_random(isa, bits, normal):
    rng = np.random.default_rng(100 + 10 * bits + normal)
    for shape in [(6, 33), (4, 384), (2, 4099), (3, 17)]:
        for dist in ("t", "normal"):
            x = rng.standard_t(2.5, size=shape) if dist == "t" else rng.standard_normal(shape)
            x = (x * 0.04).astype(np.float32)
            for keep_left in (False, True):
                _assert_same(x, bits, normal, keep_left, per_row=True)
            _assert_same(x, bits, normal, False, per_row=False)


@pytest.mark.parametrize("shape", [(384, 384), (96, 1536)])
def test_search_matches_reference_minilm_shapes(shape):
    # weight-like rows: Gaussian bulk, a few large outliers per row, as in all-MiniLM-L6-v2
    rng = np.random.default_rng(shape[1])
    x = rng.standard_normal(shape) * 0.04
    spikes = rng.random(shape) < 0.004
    x[spikes] *= rng.uniform(4, 12, spikes.sum())
    x = x.astype(np.float32)
    for bits, normal in FORMATS:
        _assert_same(x, bits, normal, False, per_row=True)


def test_search_near_ties_and_degenerate_rows(isa):
    # rows whose candidate errors tie exactly or nearly (constant, two-valued, on-grid, tiny and huge
    # magnitudes): the fast sums cannot separate them and the reference order must decide
    rows = [np.full(64, 0.5), np.tile([1.0, -1.0], 32), np.zeros(64), np.arange(64) % 8 * 4.0,
            np.linspace(-1, 1, 64) * 1e-30, np.linspace(-1, 1, 64) * 1e30, np.r_[np.zeros(63), 3.0]]
    x = np.stack(rows).astype(np.float32)
    for bits, normal in FORMATS:
        for keep_left in (False, True):
            _assert_same(x, bits, normal, keep_left, per_row=True)


def test_search_threads_agree_with_reference():
    rng = np.random.default_rng(5)
    x = (rng.standard_t(3, size=(40, 700)) * 0.1).astype(np.float32)
    old = numkern.get_num_threads()
    try:
        for nt in (1, 2):
            numkern.set_num_threads(nt)
            _assert_same(x, 4, 0, False, per_row=True)
            _assert_same(x, 4, 1, False, per_row=False)
    finally:
        numkern.set_num_threads(old)


@pytest.mark.parametrize("bits,normal", FORMATS)
def test_vector_encode_matches_scalar_without_search(isa, bits, normal):
    # the 3-sigma threshold (mode 1) skips the search: only the vectorised row encoder differs from the
    # reference's scalar loop.  Rows with ties on every grid midpoint, huge and tiny values, odd lengths.
    rng = np.random.default_rng(7 + bits + normal)
    for shape in [(5, 16), (3, 47), (4, 1000)]:
        x = rng.standard_t(2.0, size=shape) * 0.05
        x[0, : min(shape[1], 16)] = np.linspace(-40, 40, min(shape[1], 16)) / 28 * np.abs(x[0]).max()
        for keep_left in (False, True):
            _assert_same(x.astype(np.float32), bits, normal, keep_left, per_row=True, mode=1)
    ties = np.arange(-96, 97, dtype=np.float32) / 2.0  # a half-integer ramp across the normal and outlier grids
    x = np.stack([ties[:192], ties[1:193]])
    for keep_left in (False, True):
        _assert_same(x, bits, normal, keep_left, per_row=True, mode=1)
