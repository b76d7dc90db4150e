"""Shared pytest configuration for numkern's tests.

- hypothesis: a "ci" profile (few examples, no deadline: the 2-core CI machine is shared), the
  default; HYPOTHESIS_PROFILE=dev selects more examples.
- every test starts from fixed seeds of the global generators (numpy's legacy ``np.random``,
  Python's ``random``, torch's default generator when torch is loaded), so a draw a test makes
  without its own generator is still reproducible;
- fixtures: ``torch`` (skips when torch is not installed), ``cuda_device`` (skips without a usable
  CUDA build and device), ``mp`` (mpmath at 40 digits), ``restore_threads`` (numkern's thread
  count is global: tests that change it put it back).
"""
from __future__ import annotations

import importlib.util
import os
import sys

import pytest


class _NoTestsFolderAsTorch:
    """pytest puts tests/ on sys.path, so without PyTorch installed `import torch` would find
    tests/torch/ as an empty namespace package: make that import fail instead (importorskip skips)."""

    @staticmethod
    def find_spec(name, path=None, target=None):
        if name == "torch":
            raise ModuleNotFoundError("No module named 'torch'", name="torch")
        return None


_torch_spec = importlib.util.find_spec("torch")
if _torch_spec is not None and _torch_spec.origin is None:  # a namespace package: not PyTorch
    sys.meta_path.insert(0, _NoTestsFolderAsTorch)

try:
    from hypothesis import HealthCheck, settings

    settings.register_profile("ci", max_examples=40, deadline=None,
                              suppress_health_check=[HealthCheck.too_slow])
    settings.register_profile("dev", max_examples=400, deadline=None)
    settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
except ImportError:  # pragma: no cover - hypothesis is in the [test] extra
    pass


@pytest.fixture(autouse=True)
def _fixed_global_seeds():
    import random
    import sys

    import numpy as np

    random.seed(0)
    np.random.seed(0)
    if "torch" in sys.modules:
        sys.modules["torch"].manual_seed(0)
    yield


ISA_TIERS = ("portable", "avx2", "avx512")


@pytest.fixture(params=ISA_TIERS)
def isa(request):
    """Each SIMD tier of the one dispatcher in turn (numkern._core.set_isa); tiers this CPU lacks
    are skipped; the load-time choice is restored afterwards."""
    from numkern import _core

    if not _core.isa_supported(request.param):
        pytest.skip(f"{request.param} not available on this CPU")
    _core.set_isa(request.param)
    assert _core.isa() == request.param
    try:
        yield request.param
    finally:
        _core.set_isa("auto")


@pytest.fixture
def torch():
    return pytest.importorskip("torch")


@pytest.fixture
def cuda_device():
    import numkern

    if not numkern.cuda_available():
        pytest.skip("numkern built without CUDA, or no CUDA device")
    return 0


@pytest.fixture
def mp():
    mpmath = pytest.importorskip("mpmath")
    with mpmath.workdps(40):
        yield mpmath


@pytest.fixture
def restore_threads():
    import numkern

    n = numkern.get_num_threads()
    yield n
    numkern.set_num_threads(n)


def _log_kv_integral(v, x):
    """log K_v(x) to ~30 digits from K_v(x) = int_0^inf exp(-x cosh t) cosh(v t) dt (DLMF 10.32.9).

    An independent reference where mpmath.besselk is slow or does not converge (v ~ x ~ 1e4).
    The integrand is scaled by its peak at sinh t0 = v/x; tanh-sinh quadrature gets breakpoints
    at the Gaussian width of the peak and where x cosh t reaches 1 (the edge for tiny x).  Beyond
    t0 + 40 w the integrand is below e^-800 (log of it is concave with curvature >= 1/w^2).
    """
    import mpmath

    v, x = mpmath.mpf(abs(v)), mpmath.mpf(x)
    t0 = mpmath.asinh(v / x)
    f0 = -x * mpmath.cosh(t0) + v * t0
    w = min(1 / mpmath.sqrt(x * mpmath.cosh(t0)), mpmath.mpf(1))

    def g(t):
        return mpmath.exp(-x * mpmath.cosh(t) + v * t - f0) * (1 + mpmath.exp(-2 * v * t)) / 2

    t_edge = mpmath.log(2 / x) if x < 1 else mpmath.mpf(0)
    cand = [t0 + k * w for k in (-30, -10, -3, 0, 3, 10)] + [t_edge + k for k in (-3, 0, 3, 10)]
    end = max(t0 + 40 * w, t_edge + 60)
    pts = sorted({mpmath.mpf(0), end, *[t for t in cand if 0 < t < end]})
    return f0 + mpmath.log(mpmath.quad(g, pts))


@pytest.fixture
def mp_log_kv(mp):
    """log K_v(x) in mpmath (40 digits working precision) by quadrature; see _log_kv_integral."""
    return _log_kv_integral


@pytest.fixture
def module_copies():
    """The three ways a torch module leaves a process and comes back -- torch.save + torch.load of the
    whole module, pickle, deepcopy -- as a function of the module (quantized-module tests, issue #19)."""
    def copies(module):
        import copy
        import io
        import pickle

        import torch

        buf = io.BytesIO()
        torch.save(module, buf)
        buf.seek(0)
        return (torch.load(buf, weights_only=False), pickle.loads(pickle.dumps(module)), copy.deepcopy(module))
    return copies


@pytest.fixture
def runner_hook_checks():
    """check(layer, run, x): a quantized layer's LayerRunner (numkern._core.<family>.LayerRunner,
    run = its bound run) declines x while a module forward (pre-)hook or a global hook is set and
    takes it again once they are removed; torch.jit.trace of the layer is still refused."""
    def check(layer, run, x):
        import torch

        for register in (layer.register_forward_hook, layer.register_forward_pre_hook):
            h = register(lambda *a: None)
            assert run(layer, x) is None
            h.remove()
            assert run(layer, x) is not None
        mm = torch.nn.modules.module
        for register in (mm.register_module_forward_hook, mm.register_module_forward_pre_hook):
            g = register(lambda *a: None)
            try:
                assert run(layer, x) is None
            finally:
                g.remove()
        with pytest.raises(RuntimeError, match="torch.jit.trace is not supported"):
            torch.jit.trace(layer, x)
    return check
