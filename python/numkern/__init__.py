"""numkern: compiled numerics kernels (C++ and CUDA) with a thin Python API.

Families (submodules): ``special`` (log-domain Bessel functions, SciPy drop-ins), ``vmf``
(von Mises-Fisher distributions), ``kde`` (kernel density estimation), ``quant``
(OliVe and SplitQuant quantization), ``hessian`` (Hessian traces and diagonals).
Submodules other than ``special`` are imported on first use.
"""
from __future__ import annotations

import importlib
from . import _core
from . import special

from ._version import __version__

_LAZY_SUBMODULES = ("vmf", "kde", "quant", "hessian")

__all__ = ["special", "set_num_threads", "get_num_threads", "show_config", "cuda_available",
           "__version__", *_LAZY_SUBMODULES]


def __getattr__(name):
    if name in _LAZY_SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'numkern' has no attribute {name!r}")


def set_num_threads(n: int) -> None:
    """Set the number of CPU threads numkern's kernels use (>= 1).

    The default is every core, or the environment variable NUMKERN_NUM_THREADS read at import.
    In a process made by fork() from one whose kernels had run on more than one thread (e.g.
    multiprocessing's and DataLoader's fork workers), the kernels run on one thread whatever this
    says: GNU OpenMP's thread pool does not survive fork, and a parallel region there would wait
    forever.  Use the "spawn" or "forkserver" start method for threaded kernels in workers.
    """
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"n: expected an int, got {type(n).__name__}")
    _core.set_num_threads(n)


def get_num_threads() -> int:
    """Number of CPU threads numkern's kernels use (1 in a fork()ed child, see set_num_threads)."""
    return _core.get_num_threads()


def cuda_available() -> bool:
    """True when the CUDA module was built and a CUDA device is usable."""
    from ._backend.native import cuda_status

    return cuda_status().state == "ok"


def _check_environment() -> None:
    """Warn (RuntimeWarning, at import) about a numkern environment variable whose value the
    C++ side does not understand and so ignores or reads differently from what it says."""
    import os
    import re
    import warnings

    isa = os.environ.get("NUMKERN_ISA")
    if isa is not None and isa not in ("portable", "avx2", "avx512"):
        warnings.warn(f"NUMKERN_ISA={isa!r} is not one of portable, avx2, avx512: ignored (the widest "
                      f"tier this CPU has, {_core.best_isa()}, is used)", RuntimeWarning, stacklevel=3)
    n = os.environ.get("NUMKERN_NUM_THREADS")
    if n is not None and not re.fullmatch(r"\s*\+?0*[1-9]\d{0,8}\s*", n):
        lead = re.match(r"\s*[+-]?\d+", n)  # (what the C++ side reads: strtoll, 1 .. 2^31 - 1)
        read = int(lead.group()) if lead else 0
        what = (f"read as {read}" if 1 <= read < 2**31 else f"ignored (every core: {_core.max_threads()})")
        warnings.warn(f"NUMKERN_NUM_THREADS={n!r} is not a whole number >= 1: {what}", RuntimeWarning,
                      stacklevel=3)
    amx = os.environ.get("NUMKERN_AMX")
    if amx is not None and amx not in ("0", "1"):
        warnings.warn(f"NUMKERN_AMX={amx!r} is not 0 or 1: read as 1 (AMX tiles used where the CPU has "
                      "them); NUMKERN_AMX=0 turns them off", RuntimeWarning, stacklevel=3)
    index = os.environ.get("NUMKERN_SPLITQUANT_INDEX")
    if index is not None and index not in ("0", "1"):
        warnings.warn(f"NUMKERN_SPLITQUANT_INDEX={index!r} is not 0 or 1: read as 1 (the SplitQuant lane "
                      "index and panel pack are made); NUMKERN_SPLITQUANT_INDEX=0 turns them off",
                      RuntimeWarning, stacklevel=3)


_check_environment()


def _cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def show_config(file=None) -> dict:
    """Print and return the build configuration (compiler, OpenMP, CUDA, threads, CPU model,
    ``cpu_baseline``: the -march of the portable code, and the SIMD tier the CPU kernels run:
    ``isa``, chosen by NUMKERN_ISA or the widest available; ``amx``: whether the quantized layers'
    float GEMM uses AMX tiles, on the avx512 tier of CPUs that have them, NUMKERN_AMX=0 turns them off).  ``cuda`` says whether CUDA arrays
    can be processed, and if not why: built without CUDA, driver too old, no device."""
    import platform
    import sys

    from ._backend.native import cuda_module, cuda_status

    _cuda = cuda_module()
    status = cuda_status()
    cfg = dict(_core.build_config)
    cfg["version"] = __version__
    cfg["num_threads"] = get_num_threads()
    cfg["max_threads"] = _core.max_threads()
    cfg["cpu"] = _cpu_model() or platform.processor() or platform.machine()
    cfg["isa"] = _core.isa()
    cfg["best_isa"] = _core.best_isa()
    cfg["amx"] = _core.amx_available()
    cfg["cuda_architectures"] = _cuda.architectures if _cuda is not None else None
    cfg["cuda_devices"] = status.devices
    cfg["cuda"] = status.message
    out = file if file is not None else sys.stdout
    for k, v in cfg.items():
        print(f"{k:20s}: {v}", file=out)
    return cfg
