"""Helpers shared by the dask tests of tests/distributed."""
import numpy as np


def rel(a, b):
    """The largest relative difference of a from b (elementwise, b = 0 counted against 1e-300)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-300)))
