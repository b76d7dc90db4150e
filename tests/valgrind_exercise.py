"""Calls every numkern family once on small inputs, for tests/valgrind_check.sh.

Small sizes (valgrind runs ~30x slower), no torch (its import alone takes minutes under
valgrind), and every native entry point once, including calls the bindings reject: an
exception thrown from C++ must not leak what the call had allocated.  Not a pytest module.
"""
from __future__ import annotations

import numpy as np

import numkern
from numkern import _core, hessian, kde, quant, special, vmf

rng = np.random.default_rng(0)
numkern.set_num_threads(2)  # the OpenMP loops too


def expect_error(fn, *args):
    try:
        fn(*args)
    except (ValueError, TypeError):
        return
    raise AssertionError(f"{fn} accepted bad input")


# ---- special ------------------------------------------------------------------------------------
x = np.linspace(0.05, 60.0, 41)
v = np.linspace(0.0, 30.0, 41)
for name in ("log_iv", "log_kv", "iv", "ive", "kv", "kve", "iv_ratio", "iv_ratio_c"):
    r = getattr(special, name)(v, x)
    r32 = getattr(special, name)(v.astype(np.float32), x.astype(np.float32))
    assert r.shape == x.shape and r32.shape == x.shape
for name in ("i0", "i0e", "i1", "i1e", "k0", "k0e", "k1", "k1e"):
    out = np.empty_like(x)
    getattr(special, name)(x, out=out)
special.log_iv(v[:, None], x[None, ::3])  # broadcasting
special.log_iv(v[::2], x[::2])  # strided

# ---- vmf ------------------------------------------------------------------------------------------
X = rng.normal(size=(60, 5)) + np.array([3.0, 0, 0, 0, 0])
X /= np.linalg.norm(X, axis=1, keepdims=True)
vmf.log_normalizer(5, np.array([0.0, 1e-3, 1.0, 50.0, 1e4]))
vmf.kappa_mle(np.array([0.1, 0.5, 0.99]), 5)
vmf.mean_resultant_length(X)
d = vmf.fit(X)
dist = vmf.VonMisesFisher(np.array([1.0, 0, 0, 0, 0]), 4.0)
dist.logpdf(X)
dist.entropy()
dist.kl_divergence(vmf.VonMisesFisher(np.array([0, 1.0, 0, 0, 0]), 2.0))
dist.sample(20, seed=1)
mix = vmf.VMFMixture(2, max_iter=5, seed=0).fit(X)
mix.score(X)
mix.sample(10, seed=2)
expect_error(vmf.log_normalizer, 5, np.array([-1.0]))

# ---- kde ------------------------------------------------------------------------------------------
data = rng.normal(size=(80, 2))
pts = rng.normal(size=(30, 2))
for cov in ("isotropic", "diagonal", "full"):
    k = kde.GaussianKDE(data, covariance=cov)
    k.logpdf(pts)
    k.pdf(pts)
k = kde.GaussianKDE(data, bandwidth="loo")
k.loo_logpdf()
k.resample(10, seed=0)
kde.GaussianKDE(rng.normal(size=(50, 12))).logpdf(rng.normal(size=(7, 12)))  # Gram path (d > 8)
expect_error(kde.GaussianKDE, np.array([[np.nan, 1.0]]))

# ---- quant: OliVe ---------------------------------------------------------------------------------
w = rng.standard_t(3, size=(9, 37)).astype(np.float32)
xq = rng.normal(size=(5, 37)).astype(np.float32)
for bits, normal in ((4, "int"), (4, "flint"), (8, "int")):
    for axis in ("row", None):
        q = quant.ovp_quantize(w, bits=bits, normal=normal, axis=axis)
        quant.ovp_dequantize(q)
        quant.ovp_matmul(xq, q)
        quant.ovp_matmul(xq[:2], q)  # the GEMV path
quant.ovp_quantize(w, bits=4, search=False)
quant.ovp_quantize(w, bits=4, alpha=1.0)
big = quant.ovp_quantize(rng.normal(size=(6, 2100)).astype(np.float32), bits=4)  # > one tile
quant.ovp_matmul(rng.normal(size=(6, 2100)).astype(np.float32), big)
codes = np.zeros((2, 3), np.uint8)
expect_error(_core.olive.decode, codes, np.ones(2, np.float32), np.empty((2, 9), np.float32), True, 4, 0)  # wrong shape

# ---- quant: SplitQuant ----------------------------------------------------------------------------
vals = rng.normal(size=300)
quant.kmeans1d(vals, k=3)
quant.kmeans1d(vals.astype(np.float32), k=5)
quant.kmeans1d(vals, k=3, method="lloyd")
W = rng.normal(size=(8, 64)).astype(np.float32)
for bits in (2, 4, 8):
    qw = quant.quantize_weights(W, bits, group_size=16)
    qw.dequantize()
for bits in (2, 4, 8):
    per = 8 // bits
    f = quant.FusedSplitQuantWeight(
        rng.integers(0, 256, size=(8, 64 // per), dtype=np.uint8),
        rng.integers(0, 256, size=(8, 16), dtype=np.uint8),
        rng.uniform(0.5, 1.5, size=(8, 4, 3)).astype(np.float32),
        rng.uniform(-1, 1, size=(8, 4, 3)).astype(np.float32), 64, 16, bits)
    f.dequantize()
    f.matmul(rng.normal(size=(5, 64)).astype(np.float32))
    f.matmul(rng.normal(size=(5, 64)).astype(np.float32), bias=np.ones(8, np.float32))
expect_error(_core.splitquant.fused_decode, f.codes, f.clusters, f.scales, f.offsets, np.empty((8, 64), np.float32),
             7, 8)

# ---- hessian --------------------------------------------------------------------------------------
feats = rng.normal(size=(40, 6))
Wh = rng.normal(size=(4, 6))
bh = rng.normal(size=4)
labels = rng.integers(0, 4, size=40)
for dt in (np.float64, np.float32):
    h = hessian.SoftmaxHeadHessian(feats.astype(dt), Wh.astype(dt), bh.astype(dt), labels)
    h.trace()
    h.diagonal()
    h.matvec(rng.normal(size=(4, 7)).astype(dt))
    h.gradient()
    h.loss()
A = rng.normal(size=(20, 20))
A = A + A.T
hessian.trace(lambda V: A @ V, dim=20, num_matvecs=30, seed=0)
hessian.trace(lambda V: A @ V, dim=20, method="hutch++", num_matvecs=30, seed=0)
hessian.diagonal(lambda V: A @ V, dim=20, num_matvecs=30, seed=0)

print("valgrind_exercise: every family called")
