"""The compiled modules: numkern._core (always) and numkern._cuda (CUDA builds only)."""
from __future__ import annotations

import os
from typing import NamedTuple

from .. import _core  # noqa: F401  (re-exported for the families)

try:  # the CUDA module exists only in CUDA builds
    from .. import _cuda  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - depends on the build
    _cuda = None

# cudaError_t values (driver_types.h) that get a message of their own
CUDA_SUCCESS = 0
CUDA_ERROR_INSUFFICIENT_DRIVER = 35
CUDA_ERROR_NO_DEVICE = 100


class CudaStatus(NamedTuple):
    """What numkern can do with CUDA: ``state`` is one of
    'ok', 'not_built', 'driver_too_old', 'no_device', 'error'; ``message`` says it in words."""
    state: str
    message: str
    devices: int = 0


def cuda_module():
    """numkern._cuda, or None in a build without CUDA."""
    return _cuda


def _version(v: int) -> str:
    return f"{v // 1000}.{(v % 1000) // 10}" if v else "none"


def classify_cuda(module) -> CudaStatus:
    """The CudaStatus of a CUDA module (None: a build without CUDA), from its device_status():
    (cudaError_t, name, message, device count, driver version, runtime version)."""
    if module is None:
        return CudaStatus(
            "not_built",
            "numkern was built without CUDA support, so it cannot process CUDA arrays; install a "
            "CUDA build (NUMKERN_CUDA=ON with a CUDA compiler, see docs/wheels.md) or move the data to the CPU")
    status = getattr(module, "device_status", None)
    if status is None:  # a module without the detailed query: the count alone
        n = module.device_count()
        return (CudaStatus("ok", f"{n} CUDA device(s)", n) if n > 0 else
                CudaStatus("no_device", "numkern's CUDA module is built, but no CUDA device or driver is available"))
    rc, name, text, n, driver, runtime = status()
    if rc == CUDA_ERROR_INSUFFICIENT_DRIVER and driver == 0:  # what the runtime says without any driver
        return CudaStatus("no_device", "numkern's CUDA module is built, but no CUDA device is available "
                                       "(no NVIDIA driver is installed)")
    if rc == CUDA_ERROR_INSUFFICIENT_DRIVER:
        return CudaStatus(
            "driver_too_old",
            f"the NVIDIA driver is too old for numkern's CUDA module ({name}): the driver supports "
            f"CUDA {_version(driver)}, numkern was built with CUDA runtime {_version(runtime)}; update the "
            f"driver or install the numkern build for your CUDA major version (docs/wheels.md)")
    if rc == CUDA_ERROR_NO_DEVICE or (rc == CUDA_SUCCESS and n == 0):
        hidden = os.environ.get("CUDA_VISIBLE_DEVICES")
        why = f" (CUDA_VISIBLE_DEVICES={hidden!r})" if hidden is not None else ""
        return CudaStatus("no_device", f"numkern's CUDA module is built, but no CUDA device is available{why}")
    if rc != CUDA_SUCCESS:
        return CudaStatus(
            "error", f"numkern's CUDA module cannot use the GPU: CUDA initialisation failed with {name} "
            f"({text}; driver CUDA {_version(driver)}, runtime {_version(runtime)})")
    return CudaStatus("ok", f"{n} CUDA device(s), driver CUDA {_version(driver)}, runtime {_version(runtime)}", n)


def cuda_status() -> CudaStatus:
    """The CudaStatus of this installation (queried each call: devices may come and go)."""
    return classify_cuda(_cuda)


def require_cuda():
    """numkern._cuda with a usable device, else a RuntimeError saying what is missing: a build
    without CUDA, a driver too old for the CUDA runtime linked in, no device, or another error."""
    st = cuda_status()
    if st.state != "ok":
        raise RuntimeError(st.message)
    return _cuda
