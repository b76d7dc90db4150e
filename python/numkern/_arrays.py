"""Transitional shim: the names other families still import from here, re-exported from
numkern._backend (the one array/device layer).  numkern.special no longer uses this module;
delete it once no family imports it."""
from __future__ import annotations

from ._backend import CUPY, NUMPY, TORCH, array_kind, is_cuda
from ._backend.native import require_cuda as _require_cuda

__all__ = ["CUPY", "NUMPY", "TORCH", "array_kind", "is_cuda", "_require_cuda"]
