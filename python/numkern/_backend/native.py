"""The compiled modules: numkern._core (always) and numkern._cuda (CUDA builds only)."""
from __future__ import annotations

from .. import _core  # noqa: F401  (re-exported for the families)

try:  # the CUDA module exists only in CUDA builds
    from .. import _cuda  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - depends on the build
    _cuda = None


def cuda_module():
    """numkern._cuda, or None in a build without CUDA."""
    return _cuda


def require_cuda():
    """numkern._cuda with a usable device, else a RuntimeError saying what is missing."""
    if _cuda is None:
        raise RuntimeError(
            "numkern was built without CUDA support, so it cannot process CUDA arrays; "
            "reinstall on a machine with a CUDA compiler (NUMKERN_CUDA=ON) or move the data to the CPU")
    if _cuda.device_count() == 0:
        raise RuntimeError("numkern's CUDA module is built, but no CUDA device or driver is available")
    return _cuda
