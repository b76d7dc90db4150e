"""One-shot GPU check of an installed numkern: ``python bench/gpu_check.py`` from the repo root.

1. Prints numkern.show_config() and the torch/CuPy/device versions.
2. Checks the import story: numkern imported (without needing a CUDA driver); with every device
   hidden (CUDA_VISIBLE_DEVICES='') it still imports and computes on the CPU; if numkern was
   built without CUDA, or its CUDA cannot use the GPU torch sees (driver too old for numkern's
   CUDA runtime, ...), a CUDA tensor must raise a RuntimeError saying why, and the check FAILS.
3. Runs every family section bench/gpu_<family>.py (gpu_special.py first, then alphabetical):
   each defines ``run(report)`` and calls ``report(name, ok, detail)`` once per check, comparing
   the CUDA results with numkern's CPU results and printing throughput.  An exception inside a
   section is recorded as a FAIL with the last line of its traceback; the other sections still run.
4. Prints a summary; exits 1 if any check failed, 0 otherwise.

Without any GPU (torch sees none, or torch is absent) it says so and exits 0, so the script can
be smoke-tested anywhere; when torch sees a GPU that numkern cannot use it exits 1.  Budget: under 5 minutes on one GPU.
"""
from __future__ import annotations

import importlib.util
import os
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
FIRST = "gpu_special"

RESULTS: list = []  # (section, name, ok, detail)


def make_report(section):
    def report(name, ok, detail=""):
        ok = bool(ok)
        RESULTS.append((section, name, ok, detail))
        print(f"  [{'PASS' if ok else 'FAIL'}] {name}: {detail}", flush=True)
    return report


def section_files():
    names = sorted(f[:-3] for f in os.listdir(HERE)
                   if f.startswith("gpu_") and f.endswith(".py") and f != "gpu_check.py")
    return sorted(names, key=lambda n: (n != FIRST, n))


def run_section(name):
    report = make_report(name)
    t0 = time.perf_counter()
    print(f"\n=== {name} ===", flush=True)
    try:
        spec = importlib.util.spec_from_file_location(name, os.path.join(HERE, name + ".py"))
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod
        spec.loader.exec_module(mod)
        if not callable(getattr(mod, "run", None)):
            report(f"{name}: defines run(report)", False, "no run(report) function")
            return
        mod.run(report)
    except Exception as e:  # noqa: BLE001 - a broken section must not stop the others
        last = traceback.format_exception_only(type(e), e)[-1].strip()
        tb = traceback.extract_tb(e.__traceback__)
        where = f" (at {os.path.basename(tb[-1].filename)}:{tb[-1].lineno})" if tb else ""
        report(f"{name}: section raised", False, last + where)
    print(f"  ({name}: {time.perf_counter() - t0:.1f} s)", flush=True)


def header():
    import numkern

    print("=== numkern GPU check ===")
    numkern.show_config()
    try:
        import torch
        print(f"torch               : {torch.__version__} (CUDA {torch.version.cuda}, "
              f"available: {torch.cuda.is_available()})")
        if torch.cuda.is_available():
            p = torch.cuda.get_device_properties(torch.cuda.current_device())
            print(f"device              : {p.name}, {p.total_memory / 2**30:.0f} GiB, "
                  f"sm_{p.major}{p.minor}, {p.multi_processor_count} SMs")
    except ImportError:
        torch = None
        print("torch               : not installed")
    try:
        import cupy
        print(f"cupy                : {cupy.__version__}")
    except ImportError:
        print("cupy                : not installed (CuPy checks are skipped)")
    return numkern, torch


def check_unusable_gpu(torch, status):
    """torch sees a GPU that numkern cannot use (built without CUDA, driver too old for numkern's
    CUDA runtime, or another CUDA error): a CUDA tensor must raise the RuntimeError that says why,
    and the check fails, so that the exit status is non-zero."""
    import numkern.special as nks

    report = make_report("import")
    x = torch.ones(4, dtype=torch.float64, device="cuda")
    try:
        nks.log_iv(1.0, x)
    except RuntimeError as e:
        report("CUDA tensor on an unusable numkern CUDA raises RuntimeError", str(e) == status.message, str(e))
    except Exception as e:  # noqa: BLE001
        report("CUDA tensor on an unusable numkern CUDA raises RuntimeError", False,
               f"raised {type(e).__name__}: {e}")
    else:
        report("CUDA tensor on an unusable numkern CUDA raises RuntimeError", False, "no error raised")
    report("numkern can use the GPU that torch sees", False, f"[{status.state}] {status.message}")


def decide(gpu_present: bool, status) -> str:
    """'run' the GPU sections, 'fail' (torch sees a GPU, numkern cannot use it: exit 1) or 'skip'
    (no GPU anywhere: exit 0, so the script can be smoke-tested on any machine)."""
    if status.state == "ok" and gpu_present:
        return "run"
    if gpu_present:
        return "fail"
    return "skip"


_HIDDEN_DEVICE_PROBE = (
    "import numkern, numkern.special as s; assert not numkern.cuda_available(); "
    "v = float(s.log_iv(5000.0, 10.0)); assert abs(v + 29543.948947708563) < 1e-9, v; print('ok')")


def check_import_without_device():
    """With every device hidden, numkern must import, report no CUDA, and compute on the CPU."""
    import subprocess

    env = dict(os.environ, CUDA_VISIBLE_DEVICES="")
    p = subprocess.run([sys.executable, "-c", _HIDDEN_DEVICE_PROBE], capture_output=True, text=True,
                       timeout=120, env=env)
    detail = (p.stdout + p.stderr).strip().splitlines()
    make_report("import")("numkern with CUDA_VISIBLE_DEVICES='' imports and runs on the CPU",
                          p.returncode == 0, detail[-1] if detail else f"exit {p.returncode}")


def summary(t0):
    fails = [r for r in RESULTS if not r[2]]
    print(f"\n=== summary: {len(RESULTS) - len(fails)} passed, {len(fails)} failed, "
          f"{time.perf_counter() - t0:.0f} s ===")
    for section, name, _, detail in fails:
        print(f"FAIL [{section}] {name}: {detail}")
    return 1 if fails else 0


def main():
    t0 = time.perf_counter()
    sys.path.insert(0, HERE)
    numkern, torch = header()
    make_report("import")("numkern imports (no CUDA driver needed at import)", True,
                          f"numkern {numkern.__version__}")
    from numkern._backend.native import cuda_status

    status = cuda_status()
    gpu_present = torch is not None and torch.cuda.is_available()
    action = decide(gpu_present, status)
    if action == "fail":
        check_unusable_gpu(torch, status)
        return summary(t0)
    if action == "skip":
        why = status.message if status.state != "ok" else (
            "torch is not installed" if torch is None else "torch sees no CUDA device")
        print(f"\nNo usable CUDA device ({why}): GPU checks skipped.  Sections found: "
              f"{', '.join(section_files()) or 'none'}.")
        return 0
    check_import_without_device()
    for name in section_files():
        run_section(name)
    return summary(t0)


if __name__ == "__main__":
    sys.exit(main())
