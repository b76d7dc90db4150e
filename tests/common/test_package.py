"""Package-level contracts: the star import, lazy families, public import paths, show_config."""
import importlib
import io
import subprocess
import sys

import numpy as np
import pytest


def test_star_import_and_hasattr():
    # Regression: __all__ named a submodule "torch" that does not exist, so both raised
    # ModuleNotFoundError.
    ns = {}
    exec("from numkern import *", ns)
    for name in ("special", "vmf", "kde", "quant", "hessian", "set_num_threads", "show_config"):
        assert name in ns, name
    import numkern

    assert not hasattr(numkern, "torch")
    assert set(numkern.__all__) <= set(dir(numkern)) | {"vmf", "kde", "quant", "hessian"}


@pytest.mark.parametrize("path", [
    "numkern.special.log_iv", "numkern.special.kve", "numkern.special.iv_ratio",
    "numkern.vmf.VonMisesFisher", "numkern.kde.GaussianKDE", "numkern.kde.select_bandwidth",
    "numkern.quant.ovp_quantize", "numkern.quant.ovp_matmul", "numkern.quant.kmeans1d",
    "numkern.quant.splitquant", "numkern.quant_olive.ovp_quantize", "numkern.quant_splitquant.kmeans1d",
    "numkern.hessian.trace", "numkern.hessian.hessian_trace", "numkern.hessian.SoftmaxHeadHessian",
])
def test_public_paths(path):
    mod, _, name = path.rpartition(".")
    assert callable(getattr(importlib.import_module(mod), name))


def test_old_module_names_are_the_packages():
    import numkern.quant_olive
    import numkern.quant_splitquant

    assert numkern.quant_olive is importlib.import_module("numkern.quant.olive")
    assert numkern.quant_splitquant is importlib.import_module("numkern.quant.splitquant")


def test_families_import_lazily_without_torch():
    code = ("import sys, numkern; numkern.vmf; numkern.kde; numkern.quant; numkern.hessian; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_show_config_reports_cpu_and_isa():
    import numkern

    cfg = numkern.show_config(file=io.StringIO())
    assert cfg["isa"] in ("portable", "avx2", "avx512")
    assert cfg["best_isa"] in ("portable", "avx2", "avx512")
    assert isinstance(cfg["cpu"], str) and cfg["cpu"]
    assert np.isfinite(cfg["num_threads"])
