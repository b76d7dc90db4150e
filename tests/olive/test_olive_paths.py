"""Every CPU kernel of ovp_matmul (portable loops, AVX2 + FMA, AVX-512) against the float64 product
with the reference decoder, and against each other.  Kernels are forced with
numkern._core.set_isa (the one CPU dispatcher); those the CPU lacks are skipped (the portable one
always runs).  Every loop of csrc/cpu/olive/olive.cpp is compiled per tier and picked by the
dispatcher, so a forced tier runs no wider instruction.  The decoders' contract is "the same
values as the reference decoder (numkern/olive/olive.hpp)": checked bitwise through unit vectors;
the encoder writes the same bytes on every tier."""
import os
import subprocess
import sys

import numpy as np
import pytest

from numkern import _core
from numkern import quant as Q

ISAS = ["portable", "avx2", "avx512"]  # the tiers of numkern._core.set_isa


# the `isa` fixture (each tier in turn) is in tests/conftest.py


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
            if _core.isa_supported(name):
                _core.set_isa(name)
                out[name] = {nt: Q.ovp_matmul(x, Q.ovp_quantize(w, bits=4, normal=nt, search=False))
                             for nt in ("int", "flint")}
    finally:
        _core.set_isa("auto")
    for name, res in out.items():
        for nt, y in res.items():
            base = out["portable"][nt]
            # different summation orders only: float32 rounding of sums of 4096 products
            assert np.max(np.abs(y - base)) <= 2e-5 * np.max(np.abs(base)), (name, nt)


def test_set_isa_rejects_unknown_names():
    with pytest.raises(ValueError, match="isa"):
        _core.set_isa("neon")
    assert _core.isa() in ISAS
    assert not hasattr(_core.olive, "set_isa")  # one dispatcher: numkern._core.set_isa


def _every_byte_tensor(normal, bits):
    """All 256 byte values in every position of a 64-byte block (0x88 / victim pairs included),
    plus a tail that is not a whole vector block; the reference decoder defines each value."""
    codes = np.stack([np.roll(np.arange(256, dtype=np.uint8), s) for s in range(0, 256, 37)])
    codes = np.concatenate([codes, codes[:, :19]], axis=1)  # 275 bytes (274 at 8 bits: whole pairs)
    if bits == 8:
        codes = codes[:, :274]
    cols = 2 * codes.shape[1] if bits == 4 else codes.shape[1]
    return Q.OVPTensor(codes=codes, scales=np.linspace(0.5, 2.0, codes.shape[0]).astype(np.float32),
                       normal=normal, shape=(codes.shape[0], cols), bits=bits)


@pytest.mark.parametrize("bits,normal", [(4, "int"), (4, "flint"), (8, "int")])
def test_each_decoder_is_bitwise_the_reference(isa, bits, normal):
    """x = unit vectors: every product but one is an exact 0, the grid values and their power-of-2
    units are exact in float32, so each kernel must return the reference decode bit for bit:
    the tiled decoders (batch >= 4) and the fused GEMV kernels (batch 1)."""
    q = _every_byte_tensor(normal, bits)
    ref = Q.ovp_dequantize(q)  # the header's decode_byte4 / decode_pair8, times the scale
    k = q.shape[1]
    eye = np.eye(k, dtype=np.float32)
    np.testing.assert_array_equal(Q.ovp_matmul(eye, q), ref.T)
    for j in list(range(0, 130)) + list(range(k - 40, k)):
        np.testing.assert_array_equal(Q.ovp_matmul(eye[j:j + 1], q)[0], ref[:, j])


@pytest.mark.parametrize("bits,normal", [(4, "int"), (4, "flint"), (8, "int")])
def test_encoder_writes_the_same_bytes_on_every_tier(bits, normal):
    rng = np.random.default_rng(21 + bits)
    w = rng.standard_t(2, size=(7, 1001)).astype(np.float32)
    res = {}
    try:
        for name in ISAS:
            if _core.isa_supported(name):
                _core.set_isa(name)
                res[name] = [Q.ovp_quantize(w, bits=bits, normal=normal, axis=axis) for axis in ("row", None)]
    finally:
        _core.set_isa("auto")
    for name, qs in res.items():
        for q, b in zip(qs, res["portable"]):
            np.testing.assert_array_equal(q.codes, b.codes)
            np.testing.assert_array_equal(q.scales, b.scales)
            np.testing.assert_array_equal(q.alphas, b.alphas)


def test_numkern_isa_environment_variable_selects_the_tier():
    """NUMKERN_ISA (read at load) replaces the old NUMKERN_OLIVE_* variables."""
    code = "from numkern import _core; print(_core.isa())"
    env = dict(os.environ, NUMKERN_ISA="portable")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "portable"
