"""`python -m numkern` runs, prints every expected section, and its special section's numbers
are finite and agree with the embedded mpmath references."""
import math
import os
import subprocess
import sys

from numkern.special import _report as _report_special


def _run_main():
    env = dict(os.environ, NUMKERN_NUM_THREADS="2")
    proc = subprocess.run([sys.executable, "-m", "numkern", "--strict"], capture_output=True,
                          text=True, timeout=300, env=env)
    return proc


def test_main_report():
    proc = _run_main()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    text = proc.stdout
    lines = text.splitlines()
    assert lines[0].startswith("numkern "), lines[0]
    assert any(ln.startswith("threads: 2 of ") for ln in lines), text
    assert "== special ==" in lines, text
    assert "failed:" not in text, text
    for label, *_, ref in _report_special._CASES:
        row = next((ln for ln in lines if ln.startswith("  " + label + " ")), None)
        assert row is not None, f"missing row {label!r}:\n{text}"
        fields = row[len(label) + 2:].split()
        value, err = float(fields[0]), float(fields[-1])
        assert math.isfinite(value), row
        assert abs(value - float(ref)) <= 1e-14 * max(1.0, abs(float(ref))), row
        assert err <= 1e-14, row  # the printed error column agrees
    speed = [ln for ln in lines if "numkern.special.log_iv (" in ln]
    # like with like (issue #17): one thread against SciPy in CPU time; threads against one thread in wall time
    assert len(speed) == 2, text
    assert "(1 thread, CPU time)" in speed[0] and "x SciPy (1 thread, CPU time)" in speed[0], text
    assert "wall" in speed[1] and "x numkern on 1 thread" in speed[1] and "SciPy" not in speed[1], text
    assert "SciPy log(ive(v, x)) + x" in text
    # read as a new user (issue #17 first-hour replay): ratios say which way they go, no raw
    # True/False in the header, one heading per section, the OliVe golden pairs say what they match
    assert "SciPy's time / numkern's" in speed[0] and "speed-up from threads" in speed[1], text
    assert " OpenMP yes," in lines[0] or " OpenMP no," in lines[0], lines[0]
    from numkern.__main__ import SECTIONS
    assert [ln for ln in lines if ln.startswith("==")] == [f"== {name} ==" for name, _ in SECTIONS], text
    assert sum(ln.endswith("byte 0x43 = expected") for ln in lines) == 1 and "MISMATCH" not in text, text
    assert "numpy / ovp_matmul = " in text, text


GPU_CHECK = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "bench", "gpu_check.py")


def test_gpu_check_skips_cleanly_without_device():
    import numkern
    import pytest

    if not os.path.exists(GPU_CHECK):
        pytest.skip("bench/gpu_check.py is not in this checkout")
    if numkern.cuda_available():
        pytest.skip("a CUDA device is present: run bench/gpu_check.py itself (minutes)")
    proc = subprocess.run([sys.executable, GPU_CHECK], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "[PASS] numkern imports" in proc.stdout
    assert "GPU checks skipped" in proc.stdout and "gpu_special" in proc.stdout
