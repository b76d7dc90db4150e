"""Helpers shared by the OVP tests (pack kernels: test_olive_fast_path.py, test_olive_gemv4.py, test_olive_amx.py;
integer kernels: test_olive_int8_act.py, test_olive_token_act.py)."""
import numpy as np

from numkern.quant import olive as O


def heavy_tailed_q(n, k, bits, normal, seed):
    """OVP quantization (no threshold search) of an n x k Student-t (2.5) matrix: many outliers."""
    rng = np.random.default_rng(seed)
    w = (rng.standard_t(2.5, size=(n, k)) * 0.1).astype(np.float32)
    return O.ovp_quantize(w, bits=bits, normal=normal, search=False)


def check_product(got, x, q, bias=None):
    """|got - (x @ ovp_dequantize(q).T + b)| <= 1e-5 (|x| @ |dequantize(q)|.T + |b|) elementwise."""
    deq = np.asarray(O.ovp_dequantize(q), np.float64)
    x = np.asarray(x, np.float64).reshape(-1, deq.shape[1])
    b = np.zeros(deq.shape[0]) if bias is None else np.asarray(bias, np.float64)
    ref = x @ deq.T + b
    bound = 1e-5 * (np.abs(x) @ np.abs(deq).T + np.abs(b)) + 1e-30
    got = np.asarray(got, np.float64).reshape(ref.shape)
    assert np.all(np.abs(got - ref) <= bound), float(np.max(np.abs(got - ref) / bound))


def exact_grid(q):
    """Exact grid values (float64, q units) and scales (float64, one per row) of an OVPTensor, recovered
    from ovp_dequantize (grid values are multiples of 1/4, so the float64 products are exact)."""
    deq = np.asarray(O.ovp_dequantize(q), np.float64)
    s = np.asarray(q.scales, np.float64).reshape(-1, 1)
    g = np.round(deq / s * 4.0) / 4.0
    assert np.array_equal((g * s).astype(np.float32), deq.astype(np.float32))
    return g, s[:, 0]
