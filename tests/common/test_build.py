"""Build and packaging properties (docs/wheels.md):
- the default build is portable: it imports and gives the native numbers on an emulated older
  x86-64 CPU (qemu-user, tools/emulated_cpu_smoke.py; skipped where qemu-x86_64 is absent);
- a build without OpenMP compiles (configure + the objects that use OpenMP; slow);
- the version has one source (python/numkern/_version.py)."""
import os
import platform
import re
import shutil
import subprocess
import sys

import pytest

import numkern

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SMOKE = os.path.join(ROOT, "tools", "emulated_cpu_smoke.py")


def test_default_build_is_portable():
    cfg = numkern.show_config(file=open(os.devnull, "w"))
    if cfg["march_native"]:
        pytest.skip("built with NUMKERN_NATIVE=ON (not portable by request)")
    if platform.machine() in ("x86_64", "AMD64"):
        assert cfg["cpu_baseline"] == "x86-64-v2"
    assert cfg["isa"] in ("portable", "avx2", "avx512")


@pytest.mark.skipif(shutil.which("qemu-x86_64") is None or platform.machine() != "x86_64",
                    reason="qemu-x86_64 not installed (Debian: apt-get install qemu-user) or not x86-64")
def test_emulated_x86_64_v2_cpu_runs_and_matches():
    """Nehalem (x86-64-v2, no AVX): import without SIGILL, the portable tier, the native numbers."""
    if numkern.show_config(file=open(os.devnull, "w"))["march_native"]:
        pytest.skip("NUMKERN_NATIVE=ON builds are not meant to run on other CPUs")
    p = subprocess.run([sys.executable, SMOKE, "--cpus", "Nehalem"], capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "Nehalem: isa=portable" in p.stdout and "same numbers" in p.stdout, p.stdout


def test_smoke_compare_detects_a_difference():
    """The smoke script's comparison fails on a wrong value (so the test above can fail)."""
    sys.path.insert(0, os.path.dirname(SMOKE))
    try:
        import emulated_cpu_smoke as smoke
    finally:
        sys.path.pop(0)
    ref = {"isa": "avx512", "special.log_iv": [1.0, 2.0], "olive.matmul": [10.0, 0.001]}
    assert smoke.compare(ref, dict(ref)) == []
    assert smoke.compare(ref, {**ref, "special.log_iv": [1.0, 2.0 * (1 + 1e-8)]})
    assert smoke.compare(ref, {**ref, "olive.matmul": [10.0, 0.0011]}) == []  # normwise float32
    assert smoke.compare(ref, {**ref, "special.log_iv": [1.0, float("nan")]})


def test_version_has_one_source():
    with open(os.path.join(ROOT, "python", "numkern", "_version.py")) as f:
        m = re.search(r'__version__ = "([^"]+)"', f.read())
    assert m and numkern.__version__ == m.group(1)
    with open(os.path.join(ROOT, "pyproject.toml")) as f:
        text = f.read()
    assert 'dynamic = ["version"]' in text and not re.search(r'^version\s*=', text, re.M)


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("ninja") is None and not os.environ.get("NUMKERN_TEST_BUILD"),
                    reason="needs cmake and ninja")
def test_build_without_openmp_compiles(tmp_path):
    """CMake with OpenMP hidden: NK_HAVE_OPENMP=0; threads.cpp and an OpenMP-parallel family
    compile (the full module builds too: docs/wheels.md, 'Without OpenMP')."""
    pybind11 = pytest.importorskip("pybind11")
    cmake = shutil.which("cmake")
    if cmake is None:
        pytest.skip("cmake not found")
    build = tmp_path / "noomp"
    cfg = subprocess.run([cmake, "-S", ROOT, "-B", str(build), "-G", "Ninja", "-DNUMKERN_CUDA=OFF",
                          "-DCMAKE_BUILD_TYPE=Release", "-DCMAKE_DISABLE_FIND_PACKAGE_OpenMP=ON",
                          f"-Dpybind11_DIR={pybind11.get_cmake_dir()}", f"-DPython_EXECUTABLE={sys.executable}"],
                         capture_output=True, text=True, timeout=300)
    assert cfg.returncode == 0, cfg.stdout + cfg.stderr
    assert "OpenMP not found, the CPU kernels run single-threaded" in cfg.stdout
    objs = ["CMakeFiles/_core.dir/csrc/cpu/common/threads.cpp.o", "CMakeFiles/_core.dir/csrc/cpu/vmf/vmf.cpp.o"]
    b = subprocess.run([cmake, "--build", str(build), "--target", *objs], capture_output=True, text=True, timeout=600)
    assert b.returncode == 0, b.stdout[-3000:] + b.stderr[-3000:]
