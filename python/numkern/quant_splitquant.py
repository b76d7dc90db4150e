"""Former location of numkern.quant.splitquant, kept so that ``import numkern.quant_splitquant`` keeps working:
this name is the very same module object as the package numkern.quant.splitquant."""
import importlib as _importlib
import sys as _sys

_sys.modules[__name__] = _importlib.import_module("numkern.quant.splitquant")
