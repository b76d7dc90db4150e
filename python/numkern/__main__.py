"""``python -m numkern``: a short report (under ~30 s) of what this build of numkern does.

Prints a header (version, build configuration, threads), then one section per family: each family
may provide ``numkern/_report_<family>.py`` with ``report(out)``, printing to the text stream
``out`` a few lines computed on embedded inputs (e.g. values where SciPy fails, against a
reference).  Sections that do not exist are skipped silently; a section that raises is reported
and the others still run.  ``--strict`` makes the exit status 1 when a section raised.
"""
from __future__ import annotations

import argparse
import importlib
import io
import pkgutil
import sys
import time
import traceback

# Known families first, in this order; any other _report_* module found is appended.
SECTION_ORDER = ("special", "vmf", "kde", "quant", "olive", "splitquant", "hessian")


def _sections():
    import numkern

    found = {m.name[len("_report_"):] for m in pkgutil.iter_modules(numkern.__path__)
             if m.name.startswith("_report_")}
    return [s for s in SECTION_ORDER if s in found] + sorted(found - set(SECTION_ORDER))


def _header(out):
    import numkern

    cfg = numkern.show_config(file=io.StringIO())
    cuda = (f"CUDA built for {cfg['cuda_architectures']}, {cfg['cuda_devices']} device(s)"
            if cfg.get("cuda_built") else "CPU only (no CUDA module)")
    print(f"numkern {numkern.__version__} — {cfg.get('compiler')}, {cfg.get('build_type')}, "
          f"OpenMP {cfg.get('openmp')}, {cuda}", file=out)
    print(f"threads: {numkern.get_num_threads()} of {cfg.get('max_threads')} "
          "(numkern.set_num_threads or NUMKERN_NUM_THREADS)", file=out)


def run(out=sys.stdout) -> int:
    """Print the report; return the number of sections that raised."""
    _header(out)
    failed = 0
    for name in _sections():
        print(f"\n== {name} ==", file=out)
        t0 = time.perf_counter()
        try:
            mod = importlib.import_module(f"numkern._report_{name}")
            mod.report(out)
        except Exception as e:  # noqa: BLE001 - one broken section must not hide the others
            failed += 1
            last = traceback.format_exception_only(type(e), e)[-1].strip()
            print(f"[section {name} failed: {last}]", file=out)
        print(f"({name}: {time.perf_counter() - t0:.1f} s)", file=out)
        out.flush()
    return failed


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m numkern", description=__doc__.splitlines()[0])
    p.add_argument("--strict", action="store_true", help="exit with status 1 if a section raised")
    args = p.parse_args(argv)
    failed = run()
    return 1 if (failed and args.strict) else 0


if __name__ == "__main__":
    sys.exit(main())
