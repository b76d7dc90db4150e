"""Native fuzzing of the packed-format decoders, and regressions for what it found.

- test_standalone_fuzzers: compiles tests/fuzz's targets (OliVe codes; SplitQuant fused format
  and 1-D k-means) with g++ -fsanitize=address,undefined and runs each for a few seconds, corpus
  (past crashes) first.  Skipped where g++ or its sanitizer runtime is missing.  Longer runs:
  tests/fuzz/run_fuzz.sh [seconds] (docs/reliability.md).
- regressions: bugs the fuzzers found, reproduced through the public Python API.
"""
from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import pytest

from numkern import quant

ROOT = pathlib.Path(__file__).resolve().parents[2]
FUZZ = ROOT / "tests" / "fuzz"
FUZZ_SECONDS = float(os.environ.get("NUMKERN_FUZZ_SECONDS", "6"))


# ---- regressions -----------------------------------------------------------------------------
def _fused(bits, k, group_size, in_features, out_features, cluster_byte):
    """A FusedSplitQuantWeight whose every 2-bit cluster id is taken from cluster_byte."""
    per = 8 // bits
    rng = np.random.default_rng(bits * 100 + k)
    groups = in_features // group_size
    codes = rng.integers(0, 256, size=(out_features, -(-in_features // per)), dtype=np.uint8)
    clusters = np.full((out_features, -(-in_features // 4)), cluster_byte, dtype=np.uint8)
    scales = rng.uniform(0.5, 1.5, size=(out_features, groups, k)).astype(np.float32)
    offsets = rng.uniform(-1, 1, size=(out_features, groups, k)).astype(np.float32)
    return quant.FusedSplitQuantWeight(codes, clusters, scales, offsets, in_features, group_size, bits)


def _expected_dense(f):
    """offset[c] + u * scale[c] per weight, NaN where the id c >= k (numpy reference)."""
    out, n = f.scales.shape[0], f.in_features
    per = 8 // f.bits
    i = np.arange(n)
    u = (f.codes[:, i // per] >> (f.bits * (i % per)).astype(np.uint8)) & ((1 << f.bits) - 1)
    c = (f.clusters[:, i // 4] >> (2 * (i % 4)).astype(np.uint8)) & 3
    g = np.broadcast_to(i // f.group_size, (out, n))
    k = f.scales.shape[2]
    cc = np.minimum(c, k - 1)
    o = np.arange(out)[:, None]
    w = f.offsets[o, g, cc] + u.astype(np.float32) * f.scales[o, g, cc]
    return np.where(c < k, w, np.float32(np.nan)).astype(np.float32)


@pytest.mark.parametrize("bits", [2, 4, 8])
@pytest.mark.parametrize("group_size", [4, 3])  # the unrolled and the generic decoder
def test_fused_cluster_id_beyond_k_is_nan_not_out_of_bounds(bits, group_size):
    # Found by tests/fuzz/fuzz_splitquant.cpp: a 2-bit id can name cluster 3 of a k = 1 or 2
    # layer; the 8-bit decoder read past the k table entries (heap overflow on the last row),
    # the 2/4-bit ones read an uninitialised table slot.  Such ids now decode to NaN.
    for k in (1, 2, 3):
        # ids 0, 1, 2, 3 in the four slots of every cluster byte: some valid, some not
        f = _fused(bits, k, group_size, in_features=12, out_features=3, cluster_byte=0b11100100)
        w = f.dequantize()
        want = _expected_dense(f)
        np.testing.assert_array_equal(np.isnan(w), np.isnan(want))
        np.testing.assert_array_equal(w[~np.isnan(w)], want[~np.isnan(want)])
        assert np.isnan(w).any() and not np.isnan(w).all()
        y = f.matmul(np.ones((2, 12), np.float32))
        assert np.isnan(y).all()  # every output row holds a corrupt id


@pytest.mark.parametrize("bits, top", [(4, 384.0), (8, 504.0)])
def test_ovp_tiny_threshold_saturates_to_largest_outlier(bits, top):
    # Found by tests/fuzz/fuzz_olive.cpp (UBSan float-cast-overflow): with a given threshold
    # below ~1e-37 the inverse scale is capped at FLT_MAX and x * inv overflows to inf; the
    # rounding converted inf to int (undefined; INT_MIN on x86), so the byte written was 256
    # while the encoder's own error used the saturated value.
    w = np.array([[1e30, 0.0, -1e30, 0.0]], np.float32)
    q = quant.ovp_quantize(w, bits=bits, normal="int", alpha=1e-8)
    d = quant.ovp_dequantize(q)
    s = q.scales[0]
    np.testing.assert_array_equal(d, np.array([[top * s, 0.0, -top * s, 0.0]], np.float32))


def test_kmeans1d_huge_k_allocates_nothing_extra():
    # Seen while writing the k-means fuzz target: the binding allocated and NaN-filled a
    # (rows, k) centre table, 16 GiB for k = 2^31 - 1 (an out-of-memory kill, not an error).
    # At most min(k, n) centres exist, and the table now has that many columns.
    centers, labels = quant.kmeans1d([1.0, 2.0, 2.0], k=2**31 - 1)
    np.testing.assert_array_equal(centers, [1.0, 2.0])
    np.testing.assert_array_equal(labels, [0, 1, 1])
    lab = quant.cluster_labels(np.array([[3.0, -1.0, 0.5]]), k=2**31 - 1)
    np.testing.assert_array_equal(lab, [[2, 0, 1]])


def _misaligned(a):
    """A copy of a whose data starts one byte past an aligned address (not aligned for a.dtype)."""
    buf = np.zeros(a.nbytes + 1, np.uint8)
    v = np.ndarray(a.shape, a.dtype, buffer=buf.data, offset=1)
    v[...] = a
    assert not v.flags.aligned or a.dtype.itemsize == 1
    return v


def test_misaligned_views_give_the_aligned_results():
    # Found by tests/sanitize.sh (UBSan: load of misaligned address in the elementwise loop):
    # numpy views need not be aligned.  The loop now loads through memcpy, and the OliVe /
    # SplitQuant bindings ask numpy for an aligned copy.  In a normal build this checks the
    # results; under the sanitizer build, the absence of undefined behaviour.
    from numkern import special

    v, x = np.linspace(0, 5, 7), np.linspace(0.1, 30, 7)
    np.testing.assert_array_equal(special.log_iv(_misaligned(v), _misaligned(x)), special.log_iv(v, x))
    w = np.random.default_rng(3).normal(size=(5, 9)).astype(np.float32)
    q = quant.ovp_quantize(w, bits=4)
    bad = quant.OVPTensor(codes=_misaligned(q.codes), scales=_misaligned(q.scales), normal=q.normal,
                          shape=q.shape, bits=q.bits, axis=q.axis)
    np.testing.assert_array_equal(quant.ovp_dequantize(bad), quant.ovp_dequantize(q))
    xs = np.ones((2, 9), np.float32)
    np.testing.assert_array_equal(quant.ovp_matmul(_misaligned(xs), bad), quant.ovp_matmul(xs, q))
    f = _fused(4, 3, 4, in_features=12, out_features=3, cluster_byte=0b10010010)
    g = quant.FusedSplitQuantWeight(f.codes, f.clusters, _misaligned(f.scales), _misaligned(f.offsets),
                                    f.in_features, f.group_size, f.bits)
    np.testing.assert_array_equal(g.dequantize(), f.dequantize())
    np.testing.assert_array_equal(g.matmul(_misaligned(np.ones((2, 12), np.float32))),
                                  f.matmul(np.ones((2, 12), np.float32)))


# ---- the fuzzers themselves ---------------------------------------------------------------------
def _compiler():
    cxx = os.environ.get("CXX", "g++")
    return shutil.which(cxx)


def _clean_env():
    # under tests/sanitize.sh the ASan runtime is preloaded into pytest: keep it out of the
    # compiler and give the fuzz binaries their own options
    env = {k: v for k, v in os.environ.items()
           if k not in ("LD_PRELOAD", "ASAN_OPTIONS", "UBSAN_OPTIONS")}
    env["ASAN_OPTIONS"] = "halt_on_error=1:abort_on_error=1:detect_leaks=1"
    env["UBSAN_OPTIONS"] = "halt_on_error=1:abort_on_error=1:print_stacktrace=1"
    return env


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="sanitizer build: Linux only")
@pytest.mark.skipif(not (ROOT / "csrc").is_dir(), reason="needs csrc/ from the source tree: tests run from an installed wheel")
def test_standalone_fuzzers(tmp_path):
    cxx = _compiler()
    if cxx is None:
        pytest.skip("no C++ compiler")
    env = _clean_env()
    probe = subprocess.run([cxx, "-fsanitize=address,undefined", "-x", "c++", "-", "-o",
                            str(tmp_path / "probe")], input="int main(){}", text=True,
                           capture_output=True, env=env)
    if probe.returncode != 0:
        pytest.skip(f"{cxx} has no ASan/UBSan runtime: {probe.stderr.strip()[:200]}")
    flags = ["-std=c++17", "-O1", "-g", "-fno-omit-frame-pointer", "-fno-math-errno",
             "-ffp-contract=off", "-fsanitize=address,undefined,float-cast-overflow",
             "-fno-sanitize-recover=all", "-fopenmp", "-DNK_HAVE_OPENMP=1",
             f"-I{ROOT / 'csrc' / 'include'}", f"-I{ROOT / 'csrc'}", f"-I{FUZZ}"]
    sources = {"olive": ["csrc/cpu/olive/olive.cpp", "csrc/cpu/olive/search.cpp", "csrc/cpu/common/dispatch.cpp"], "splitquant": ["csrc/cpu/splitquant/splitquant.cpp", "csrc/cpu/common/dispatch.cpp", "csrc/cpu/common/amx.cpp"]}
    builds = {}
    for name, extra in sources.items():  # both targets compile at once (2 processes)
        cmd = [cxx, *flags, str(FUZZ / f"fuzz_{name}.cpp"), str(FUZZ / "standalone_main.cpp"),
               *(str(ROOT / s) for s in extra), str(ROOT / "csrc/cpu/common/threads.cpp"),
               "-o", str(tmp_path / f"fuzz_{name}")]
        builds[name] = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                        text=True, env=env)
    for name, p in builds.items():
        out, _ = p.communicate(timeout=600)
        assert p.returncode == 0, f"fuzz_{name} did not compile:\n{out[-3000:]}"
    runs = {}
    for name in sources:
        cmd = [str(tmp_path / f"fuzz_{name}"), f"-seconds={FUZZ_SECONDS}", "-seed=12345",
               f"-artifact_prefix={tmp_path}/{name}-", str(FUZZ / "corpus" / name)]
        runs[name] = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                      text=True, env=env)
    for name, p in runs.items():
        out, _ = p.communicate(timeout=FUZZ_SECONDS + 300)
        assert p.returncode == 0, f"fuzz_{name} failed:\n{out[-6000:]}"
        line = [ln for ln in out.splitlines() if ln.startswith("executions:")]
        assert line, out[-2000:]
        executions = int(line[0].split()[1])
        corpus = len(list((FUZZ / "corpus" / name).iterdir()))
        assert executions > corpus + 100, out[-2000:]  # it fuzzed, not only replayed the corpus
