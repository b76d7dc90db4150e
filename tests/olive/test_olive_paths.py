"""Every CPU kernel of ovp_matmul (portable loops, AVX2 + FMA, AVX-512) against the float64 product
with the reference decoder, and against each other.  Kernels are forced with
numkern._core.olive.set_isa; those the CPU lacks are skipped (the portable one always runs).
On an AVX-512 machine the AVX2 kernel runs its own instructions, but the surrounding compiler-
cloned loops may still use AVX-512: these tests check each kernel's arithmetic, not the absence of
wider instructions."""
import os
import subprocess
import sys

import numpy as np
import pytest

from numkern import _core
from numkern import quant as Q

ISAS = ["portable", "avx2", "avx512"]


@pytest.fixture(params=ISAS)
def isa(request):
    if not _core.olive.isa_supported(request.param):
        pytest.skip(f"{request.param} not available on this CPU")
    _core.olive.set_isa(request.param)
    assert _core.olive.isa() == request.param
    yield request.param
    _core.olive.set_isa("auto")


def _relative_error(x, q):
    """max |ovp_matmul - x @ D.T| / (|x| @ |D|.T), D = the reference decode, in float64."""
    d = Q.ovp_dequantize(q).astype(np.float64)
    ref = x.astype(np.float64) @ d.T
    scale = np.abs(x).astype(np.float64) @ np.abs(d).T + 1e-30
    return float(np.max(np.abs(Q.ovp_matmul(x, q).astype(np.float64) - ref) / scale))


# k around the 32- and 64-byte blocks of the vector kernels (bytes per row = ceil(k / 2) at 4
# bits), odd k (padding element), batch 1-3 (fused GEMV) and 5 (tiled decode + dot products).
@pytest.mark.parametrize("bits,normal", [(4, "int"), (4, "flint"), (8, "int")])
@pytest.mark.parametrize("k", [1, 63, 64, 127, 128, 129, 255, 1000])
def test_each_kernel_matches_reference_decode(isa, bits, normal, k):
    rng = np.random.default_rng(k * 10 + bits)
    w = rng.standard_t(2, size=(11, k)).astype(np.float32)  # nu = 2: many outliers and victims
    for axis in ("row", None):
        q = Q.ovp_quantize(w, bits=bits, normal=normal, axis=axis, search=False)
        for batch in (1, 3, 5):
            x = rng.standard_normal((batch, k)).astype(np.float32)
            assert _relative_error(x, q) < 2e-6, (axis, batch)


@pytest.mark.parametrize("normal", ["int", "flint"])
def test_each_kernel_decodes_every_byte(isa, normal):
    # all 256 byte values in every position of a 64-byte block, 0x88 (never produced) included:
    # the reference decoder defines the value of each
    codes = np.stack([np.roll(np.arange(256, dtype=np.uint8), s) for s in range(0, 256, 37)])
    codes = np.concatenate([codes, codes[:, :19]], axis=1)  # 275 bytes: full blocks plus a tail
    q = Q.OVPTensor(codes=codes, scales=np.linspace(0.5, 2.0, codes.shape[0]).astype(np.float32),
                    normal=normal, shape=(codes.shape[0], 2 * codes.shape[1]), bits=4)
    for batch in (1, 5):  # the fused GEMV and the tiled decoder
        x = np.random.default_rng(7).standard_normal((batch, q.shape[1])).astype(np.float32)
        assert _relative_error(x, q) < 2e-6


def test_kernels_agree_with_each_other():
    rng = np.random.default_rng(11)
    w = rng.standard_t(3, size=(64, 4096)).astype(np.float32)
    x = rng.standard_normal((1, 4096)).astype(np.float32)
    out = {}
    try:
        for name in ISAS:
            if _core.olive.isa_supported(name):
                _core.olive.set_isa(name)
                out[name] = {nt: Q.ovp_matmul(x, Q.ovp_quantize(w, bits=4, normal=nt, search=False))
                             for nt in ("int", "flint")}
    finally:
        _core.olive.set_isa("auto")
    for name, res in out.items():
        for nt, y in res.items():
            base = out["portable"][nt]
            # different summation orders only: float32 rounding of sums of 4096 products
            assert np.max(np.abs(y - base)) <= 2e-5 * np.max(np.abs(base)), (name, nt)


def test_avx512f_only_gemv_matches(tmp_path):
    """The AVX-512F GEMV without byte instructions (CPUs with F but no BW) runs only when
    NUMKERN_OLIVE_NO_AVX512BW is set at start-up: check it in a child process."""
    if not _core.olive.isa_supported("avx512"):
        pytest.skip("no AVX-512 on this CPU")
    code = (
        "import numpy as np; from numkern import quant as Q\n"
        "rng = np.random.default_rng(5); worst = 0.0\n"
        "for normal in ('int', 'flint'):\n"
        "    for k in (129, 1030):\n"
        "        w = rng.standard_t(2, size=(9, k)).astype(np.float32)\n"
        "        q = Q.ovp_quantize(w, bits=4, normal=normal, search=False)\n"
        "        x = rng.standard_normal((1, k)).astype(np.float32)\n"
        "        d = Q.ovp_dequantize(q).astype(np.float64)\n"
        "        ref = x.astype(np.float64) @ d.T; scale = np.abs(x).astype(np.float64) @ np.abs(d).T\n"
        "        worst = max(worst, float(np.max(np.abs(Q.ovp_matmul(x, q) - ref) / scale)))\n"
        "print(worst)\n")
    env = dict(os.environ, NUMKERN_OLIVE_NO_AVX512BW="1")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert float(out.stdout.strip()) < 2e-6


def test_set_isa_rejects_unknown_names():
    with pytest.raises(ValueError, match="isa"):
        _core.olive.set_isa("neon")
    assert _core.olive.isa() in ISAS
