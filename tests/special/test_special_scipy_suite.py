"""SciPy's own tests for the ratio I_v/I_{v-1}, run with numkern's functions patched in.

SciPy's installed ``scipy/special/tests/test_iv_ratio.py`` tests its private ufuncs
``scipy.special._ufuncs._iv_ratio`` and ``_iv_ratio_c`` (reference values to 4e-16, x = +-0,
inf and NaN cases, v and x up to DBL_MAX).  This test runs that file, unmodified, in a
subprocess whose pytest plugin replaces the two ufuncs by ``numkern.special.iv_ratio`` and
``iv_ratio_c`` before the file is imported, and requires every test to pass.  The plugin also
records which functions the collected module bound, so a patch that did not take fails here.
Skipped when SciPy's tests are not installed (some distributions strip them).

Intended differences: none (numkern returns the same special values as SciPy here: -0.0 at
x = -0.0, NaN at v = x = inf).
"""
from __future__ import annotations

import importlib.util
import json
import os
import pathlib
import subprocess
import sys

import pytest

pytest.importorskip("scipy.special")
pytest.importorskip("numkern.special")

PLUGIN = '''
import json, os
import scipy.special._ufuncs as _ufuncs
import numkern.special as _nks

_ufuncs._iv_ratio = _nks.iv_ratio
_ufuncs._iv_ratio_c = _nks.iv_ratio_c


def pytest_collection_finish(session):
    bound = {}
    for item in session.items:
        mod = item.module
        bound[mod.__name__] = [getattr(mod, "iv_ratio", None) is _nks.iv_ratio,
                               getattr(mod, "iv_ratio_c", None) is _nks.iv_ratio_c]
    with open(os.environ["NK_PATCH_REPORT"], "w") as f:
        json.dump(bound, f)
'''


def scipy_test_file(name):
    spec = importlib.util.find_spec("scipy.special.tests")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = pathlib.Path(list(spec.submodule_search_locations)[0]) / name
    return path if path.is_file() else None


def test_scipy_test_iv_ratio_passes_with_numkern(tmp_path):
    path = scipy_test_file("test_iv_ratio.py")
    if path is None:
        pytest.skip("SciPy's test_iv_ratio.py is not installed")
    (tmp_path / "nk_scipy_patch.py").write_text(PLUGIN)
    report = tmp_path / "bound.json"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]),
               NK_PATCH_REPORT=str(report))
    cmd = [sys.executable, "-m", "pytest", str(path), "-q", "-p", "nk_scipy_patch", "--noconftest",
           "-p", "no:cacheprovider", "--import-mode=importlib", "--rootdir", str(tmp_path), "-W",
           "ignore::DeprecationWarning"]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    out = proc.stdout + proc.stderr
    bound = json.loads(report.read_text())
    assert bound and all(all(flags) for flags in bound.values()), f"patch did not take: {bound}"
    assert proc.returncode == 0, out[-6000:]
    # SciPy 1.17.1: 116 tests in the file; require that a plausible number ran (not an empty collection)
    summary = [line for line in out.splitlines() if " passed" in line]
    assert summary, out[-3000:]
    passed = int(summary[-1].split(" passed")[0].split()[-1])
    assert passed >= 100, summary[-1]
    assert "failed" not in summary[-1]
