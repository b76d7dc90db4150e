"""Outputs on failure (issue #8): a call that raises leaves a user-provided ``out=`` array
bit-for-bit untouched.  ``out=`` exists on the 16 functions of numkern.special (numpy and
torch, with and without autograd); every way such a call can fail is tried with a sentinel-
filled out, and a valid call is checked to write it (so the sentinel check can fail).
"""
from __future__ import annotations

import numpy as np
import pytest

import numkern
from numkern import special as nks

TWO_ARG = ["log_iv", "log_kv", "iv", "ive", "kv", "kve", "iv_ratio", "iv_ratio_c"]
ONE_ARG = ["i0", "i0e", "i1", "i1e", "k0", "k0e", "k1", "k1e"]
SENTINEL = -12345.5


def _call(name, a, b, out):
    f = getattr(nks, name)
    return f(b, out=out) if name in ONE_ARG else f(a, b, out=out)


def _sentinel(shape=(3,), dtype=np.float64):
    o = np.empty(shape, dtype=dtype)
    o[...] = SENTINEL if np.dtype(dtype).kind in "fc" else 7
    return o


def _numpy_failures(name):
    """(description, a, b, out, expected exception type) for calls that must raise."""
    ok = np.array([1.0, 2.0, 3.0])
    cases = [
        ("out shape", ok, ok, _sentinel((4,)), ValueError),
        ("out 0-d", ok, ok, _sentinel(()), ValueError),
        ("out int dtype", ok, ok, _sentinel((3,), np.int64), TypeError),
        ("out bool dtype", ok, ok, _sentinel((3,), np.bool_), TypeError),
        ("string input", ok, np.array(["a", "b", "c"]), _sentinel((3,)), TypeError),
        ("object input", ok, np.array([1.0, None, 2.0], dtype=object), _sentinel((3,)), TypeError),
        ("ragged list input", ok, [[1.0], [2.0, 3.0]], _sentinel((3,)), TypeError),
    ]
    ro = _sentinel((3,))
    ro.flags.writeable = False
    cases.append(("read-only out", ok, ok, ro, ValueError))
    if name in ("log_iv", "log_kv", "iv_ratio", "iv_ratio_c") or name in ONE_ARG:
        cases.append(("complex input", ok, ok + 1j, _sentinel((3,), np.complex128), TypeError))
    else:  # delegated to SciPy: a complex result cannot go into a float out
        cases.append(("complex result, float out", ok, ok + 1j, _sentinel((3,)), TypeError))
        cases.append(("complex, out shape", ok, ok + 1j, _sentinel((2,), np.complex128), ValueError))
    if name not in ONE_ARG:
        cases.append(("inputs do not broadcast", np.ones(2), ok, _sentinel((3,)), ValueError))
        # the broadcast shape is (2, 3): an out of (3,) is too small, of (2, 3, 1) wrong
        cases.append(("out smaller than broadcast", np.ones((2, 1)), ok, _sentinel((3,)), ValueError))
    return cases


@pytest.mark.parametrize("name", TWO_ARG + ONE_ARG)
def test_numpy_out_untouched_on_error(name):
    for desc, a, b, out, exc in _numpy_failures(name):
        before = out.tobytes()
        with pytest.raises(exc):
            _call(name, a, b, out)
        assert out.tobytes() == before, f"{name}: {desc}: out was written by a call that raised"


@pytest.mark.parametrize("name", TWO_ARG + ONE_ARG)
def test_numpy_out_written_on_success(name):
    a, b = np.array([1.0, 2.0, 3.0]), np.array([0.5, 2.0, 7.0])
    for dtype in (np.float64, np.float32, np.complex128):
        out = _sentinel((3,), dtype)
        res = _call(name, a, b, out)
        assert res is out
        want = _call(name, a, b, None)
        np.testing.assert_allclose(out, want, rtol=1e-6)
        assert not (out == SENTINEL).any()


@pytest.mark.parametrize("name", TWO_ARG + ONE_ARG)
@pytest.mark.parametrize("grad", [False, True])
def test_torch_out_untouched_on_error(name, grad, torch):
    t = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64, requires_grad=grad)
    u = torch.tensor([0.5, 2.0, 7.0], dtype=torch.float64)

    def sent(shape=(3,), dtype=torch.float64):
        return torch.full(shape, SENTINEL if dtype.is_floating_point else 7, dtype=dtype)

    cases = [
        ("out shape", sent((4,)), ValueError),
        ("out int dtype", sent((3,), torch.int32), TypeError),
        ("out bool dtype", sent((3,), torch.bool), TypeError),
        ("numpy out for torch inputs", _sentinel((3,)), TypeError),
    ]
    for desc, out, exc in cases:
        before = out.clone() if hasattr(out, "clone") else out.copy()
        with pytest.raises(exc):
            _call(name, t, u, out)
        same = torch.equal(out, before) if hasattr(out, "clone") else out.tobytes() == before.tobytes()
        assert same, f"{name}: {desc}: out was written by a call that raised"
    with pytest.raises(ValueError):  # inputs that do not broadcast
        out = sent((3,))
        _call(name, torch.ones(2, dtype=torch.float64), u, out) if name not in ONE_ARG else \
            _call(name, None, torch.ones(2), sent((3,)))
    assert torch.equal(out, sent((3,)))
    out = sent((3,))
    res = _call(name, t, u, out)
    assert res is out and not (out == SENTINEL).any()


@pytest.mark.parametrize("name", ["log_iv", "kv", "i1"])
def test_torch_out_with_numpy_inputs(name, torch):
    """A tensor out= with numpy inputs is rejected (it raised StopIteration before)."""
    out = torch.full((3,), SENTINEL, dtype=torch.float64)
    with pytest.raises(TypeError, match="out"):
        _call(name, np.ones(3), np.ones(3), out)
    assert (out == SENTINEL).all()


@pytest.mark.skipif(not numkern.cuda_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name", ["log_iv", "kve"])
def test_cuda_out_wrong_device_untouched(name, torch):
    t = torch.ones(3, device="cuda", dtype=torch.float64)
    for out in (np.full(3, SENTINEL), torch.full((4,), SENTINEL, device="cuda", dtype=torch.float64)):
        before = out.copy() if isinstance(out, np.ndarray) else out.clone()
        with pytest.raises((TypeError, ValueError)):
            _call(name, t, t, out)
        assert (out == before).all()
    with pytest.raises((TypeError, ValueError)):  # a CPU numpy array mixed with CUDA inputs
        _call(name, np.ones(3), t, torch.full((3,), SENTINEL, device="cuda", dtype=torch.float64))
