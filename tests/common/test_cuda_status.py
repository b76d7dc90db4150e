"""What numkern says when it cannot use CUDA (python/numkern/_backend/native.py, classify_cuda):
built without CUDA, a driver too old for the CUDA runtime linked into numkern._cuda
(cudaErrorInsufficientDriver), no device, or another CUDA error are four different messages, in
show_config() and in the RuntimeError a CUDA array gets.  The device query is faked: no GPU needed."""
import importlib.util
import io
import os
import sys
import types

import numpy as np
import pytest

import numkern
import numkern.special as nks
from numkern._backend import native

from test_backend import FakeCuda


class FakeCupyArray(FakeCuda):
    """A CuPy-like array on device 0 (never dereferenced)."""

    dtype = np.dtype(np.float64)

    class device:  # noqa: N801 - CuPy's attribute name
        id = 0

    def __init__(self, shape):
        super().__init__(shape)
        self.shape = tuple(shape)
        self.ndim = len(self.shape)


FakeCupyArray.__module__ = "cupy.fake"  # array_kind() treats it as a CuPy array

HERE = os.path.dirname(os.path.abspath(__file__))


class FakeCudaModule:
    """numkern._cuda with a scripted device_status(): (cudaError_t, name, message, count,
    driver version, runtime version)."""
    architectures = "80-real,90"

    def __init__(self, rc, count=0, driver=13000, runtime=13000):
        names = {0: "cudaSuccess", 35: "cudaErrorInsufficientDriver", 100: "cudaErrorNoDevice",
                 3: "cudaErrorInitializationError"}
        self._status = (rc, names[rc], f"text of {names[rc]}", count, driver, runtime)

    def device_status(self):
        return self._status

    def device_count(self):
        return self._status[3]


CASES = {  # state -> fake module (None: built without CUDA)
    "not_built": None,
    "driver_too_old": FakeCudaModule(35, driver=12040, runtime=13000),
    "no_device": FakeCudaModule(100),
    "error": FakeCudaModule(3),
}


@pytest.mark.parametrize("state", list(CASES))
def test_each_failure_has_its_own_message(state):
    st = native.classify_cuda(CASES[state])
    assert st.state == state and st.devices == 0
    others = [native.classify_cuda(m).message for s, m in CASES.items() if s != state]
    assert st.message not in others


def test_message_contents():
    assert "without CUDA" in native.classify_cuda(None).message
    old = native.classify_cuda(CASES["driver_too_old"]).message
    assert "driver is too old" in old and "12.4" in old and "13.0" in old and "cudaErrorInsufficientDriver" in old
    assert "no CUDA device" in native.classify_cuda(CASES["no_device"]).message
    assert "no CUDA device" in native.classify_cuda(FakeCudaModule(0, count=0)).message  # success, 0 devices
    # no driver at all: the runtime says cudaErrorInsufficientDriver too, with driver version 0
    none = native.classify_cuda(FakeCudaModule(35, driver=0))
    assert none.state == "no_device" and "no NVIDIA driver" in none.message
    assert "cudaErrorInitializationError" in native.classify_cuda(CASES["error"]).message
    ok = native.classify_cuda(FakeCudaModule(0, count=2, driver=12080, runtime=12060))
    assert ok.state == "ok" and ok.devices == 2


@pytest.mark.parametrize("state", list(CASES))
def test_cuda_array_error_and_show_config_say_why(monkeypatch, state):
    monkeypatch.setattr(native, "_cuda", CASES[state])
    monkeypatch.setitem(sys.modules, "cupy", sys.modules.get("cupy") or types.ModuleType("cupy"))
    want = native.classify_cuda(CASES[state]).message
    with pytest.raises(RuntimeError) as e:
        nks.log_iv(1.0, FakeCupyArray((3,)))
    assert str(e.value) == want
    with pytest.raises(RuntimeError) as e:
        native.require_cuda()
    assert str(e.value) == want
    assert numkern.cuda_available() is False
    cfg = numkern.show_config(file=io.StringIO())
    assert cfg["cuda"] == want and cfg["cuda_devices"] == 0


def test_usable_device(monkeypatch):
    fake = FakeCudaModule(0, count=1)
    monkeypatch.setattr(native, "_cuda", fake)
    assert numkern.cuda_available() is True
    assert native.require_cuda() is fake
    assert numkern.show_config(file=io.StringIO())["cuda_devices"] == 1


def _gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", os.path.join(HERE, "..", "..", "bench", "gpu_check.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.skipif(not os.path.isfile(os.path.join(HERE, "..", "..", "bench", "gpu_check.py")),
                    reason="needs bench/gpu_check.py from the source tree: tests run from an installed wheel")
@pytest.mark.parametrize("state", list(CASES))
def test_gpu_check_fails_when_torch_sees_a_gpu_numkern_cannot_use(state):
    gc = _gpu_check()
    st = native.classify_cuda(CASES[state])
    assert gc.decide(gpu_present=True, status=st) == "fail"
    assert gc.decide(gpu_present=False, status=st) == "skip"
    ok = native.classify_cuda(FakeCudaModule(0, count=1))
    assert gc.decide(gpu_present=True, status=ok) == "run"
