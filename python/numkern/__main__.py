"""``python -m numkern``: a short report (under ~30 s) of what this build of numkern does.

Prints a header (version, build configuration, threads, SIMD tier), then one section per family:
each family package has a ``_report`` module with ``report(out)``, printing to the text stream
``out`` a few lines computed on embedded inputs (e.g. values where SciPy fails, against a
reference).  A section that raises is reported and the others still run.  ``--strict`` makes the
exit status 1 when a section raised.
"""
from __future__ import annotations

import argparse
import importlib
import io
import sys
import time
import traceback

# (section title, the family package whose _report module prints it), in report order.
SECTIONS = (("special", "numkern.special"), ("vmf", "numkern.vmf"), ("kde", "numkern.kde"),
            ("olive", "numkern.quant.olive"), ("splitquant", "numkern.quant.splitquant"),
            ("hessian", "numkern.hessian"))


def _header(out):
    import numkern

    cfg = numkern.show_config(file=io.StringIO())
    cuda = (f"CUDA built for {cfg['cuda_architectures']}, {cfg['cuda_devices']} device(s)"
            if cfg.get("cuda_built") else "CPU only (no CUDA module)")
    print(f"numkern {numkern.__version__} — {cfg.get('compiler')}, {cfg.get('build_type')}, "
          f"OpenMP {'yes' if cfg.get('openmp') else 'no'}, {cuda}", file=out)
    print(f"threads: {numkern.get_num_threads()} of {cfg.get('max_threads')} "
          "(numkern.set_num_threads or NUMKERN_NUM_THREADS)", file=out)
    print(f"cpu: {cfg.get('cpu')}, SIMD tier {cfg.get('isa')} (NUMKERN_ISA)", file=out)


def run(out=sys.stdout) -> int:
    """Print the report; return the number of sections that raised."""
    _header(out)
    failed = 0
    for name, package in SECTIONS:
        print(f"\n== {name} ==", file=out)
        t0 = time.perf_counter()
        try:
            mod = importlib.import_module(f"{package}._report")
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
