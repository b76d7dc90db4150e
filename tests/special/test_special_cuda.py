"""numkern.special on CUDA: torch CUDA tensors and CuPy arrays against the CPU results.

The GPU tests skip without a CUDA build and device.  The device kernels run the header functions
(numkern/special/*.hpp), the CPU's one-element path; the CPU default for log_iv, log_kv, iv, ive,
kv, kve is the block path (bessel_block.hpp, within 16 eps of the header path), and CUDA's
exp/log/sqrt differ from glibc's by an ulp, so values are compared with a tolerance (scaled by
max(1, |f|) for the logarithms), not bit for bit.  The tests at the top run everywhere: they check the errors a user gets when
numkern cannot process CUDA arrays.
"""
from __future__ import annotations

import numpy as np
import pytest

import numkern
from numkern._backend import native
from numkern import special as nks

BINARY = ["log_iv", "log_kv", "iv", "ive", "kv", "kve", "iv_ratio", "iv_ratio_c"]
UNARY = ["i0", "i0e", "i1", "i1e", "k0", "k0e", "k1", "k1e"]
ALL = BINARY + UNARY
LOGS = {"log_iv", "log_kv"}

needs_cuda = pytest.mark.skipif(not numkern.cuda_available(),
                                reason="numkern built without CUDA, or no CUDA device")


def call(name, v, x, **kw):
    f = getattr(nks, name)
    return f(x, **kw) if name in UNARY else f(v, x, **kw)


def assert_close_to_cpu(name, got, ref, dtype_is_f32):
    got = np.asarray(got, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    assert got.shape == ref.shape
    same = (got == ref) | (np.isnan(got) & np.isnan(ref))
    if dtype_is_f32:
        tol = 2.5e-7 * np.abs(ref)  # 2 float32 ulp
    elif name in LOGS:
        tol = 2e-14 * np.maximum(1.0, np.abs(ref))
    else:
        tol = 5e-14 * np.abs(ref)  # exp of a log of size ~700 costs ~1e-13 / 700 ... plus rounding
    with np.errstate(invalid="ignore"):
        ok = same | (np.abs(got - ref) <= tol)
    bad = np.argwhere(~ok)
    assert bad.size == 0, (name, [(tuple(i), got[tuple(i)], ref[tuple(i)]) for i in bad[:5]])


# ---- without CUDA: clear errors ---------------------------------------------------------------
def test_require_cuda_message_without_cuda_module(monkeypatch):
    monkeypatch.setattr(native, "_cuda", None)
    with pytest.raises(RuntimeError) as e:
        native.require_cuda()
    msg = str(e.value)
    assert "without CUDA" in msg and "NUMKERN_CUDA" in msg
    assert numkern.cuda_available() is False


def test_require_cuda_message_without_device(monkeypatch):
    class FakeCudaModule:
        architectures = "80;90"

        @staticmethod
        def device_count():
            return 0

    monkeypatch.setattr(native, "_cuda", FakeCudaModule())
    with pytest.raises(RuntimeError, match="no CUDA device"):
        native.require_cuda()
    assert numkern.cuda_available() is False


def test_cuda_built_flag_matches_module():
    cfg = numkern.show_config(file=__import__("io").StringIO())
    assert cfg["cuda_built"] == (native._cuda is not None)
    assert cfg["cuda_devices"] == (native._cuda.device_count() if native._cuda is not None else 0)


def test_non_cpu_tensor_without_cuda_raises_cleanly(monkeypatch):
    torch = pytest.importorskip("torch")
    monkeypatch.setattr(native, "_cuda", None)
    # a tensor on a non-CPU device (meta: no data) must raise, not crash or return garbage
    t = torch.ones(3, dtype=torch.float64, device="meta")
    with pytest.raises((RuntimeError, ValueError, TypeError)):
        nks.log_iv(2.0, t)


# ---- torch CUDA -------------------------------------------------------------------------------
V_CASES = np.array([0.0, 1e-3, 0.5, 1.0, 2.5, 10.0, 100.0, 1e4, 1e7])[:, None]
X_CASES = np.array([0.0, 1e-300, 1e-10, 0.3, 1.0, 7.0, 60.0, 1e3, 1e10, 1e300, np.inf, np.nan])


@needs_cuda
@pytest.mark.cuda
@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("dt", ["float32", "float64"])
def test_torch_cuda_matches_cpu(name, dt):
    torch = pytest.importorskip("torch")
    tdt = getattr(torch, dt)
    v = V_CASES + (0.5 if name.startswith("iv_ratio") else 0.0)
    x = X_CASES
    if dt == "float32":
        x = x[(x == 0) | (np.abs(x) > 1e-30) & (np.abs(x) < 1e30) | ~np.isfinite(x)]
    vt = torch.tensor(v, dtype=tdt, device="cuda")
    xt = torch.tensor(x, dtype=tdt, device="cuda")
    got = call(name, vt, xt)
    assert isinstance(got, torch.Tensor) and got.is_cuda and got.dtype == tdt
    ref = call(name, v.astype(dt), x.astype(dt))
    assert_close_to_cpu(name, got.cpu().numpy(), ref, dt == "float32")


@needs_cuda
@pytest.mark.cuda
def test_torch_cuda_negative_arguments_and_orders():
    torch = pytest.importorskip("torch")
    v = np.array([-2.5, -2.0, -0.3, 0.0, 1.0, 3.0])[:, None]
    x = np.array([-30.0, -2.0, -0.1, 0.1, 2.0, 30.0])
    for name in BINARY:
        got = call(name, torch.tensor(v, device="cuda"), torch.tensor(x, device="cuda"))
        assert_close_to_cpu(name, got.cpu().numpy(), call(name, v, x), False)


@needs_cuda
@pytest.mark.cuda
def test_torch_cuda_layouts_out_and_empty():
    torch = pytest.importorskip("torch")
    base = torch.linspace(0.05, 80.0, 120, dtype=torch.float64, device="cuda")
    m = base.reshape(12, 10)
    for view in (base[::3], m.T, m[::2, 1::3], base[:10].expand(4, 10)):
        got = nks.log_kv(2.5, view)
        assert tuple(got.shape) == tuple(view.shape) and got.is_cuda
        assert_close_to_cpu("log_kv", got.cpu().numpy(), nks.log_kv(2.5, view.cpu().numpy()), False)
    out = torch.full((120,), -7.0, dtype=torch.float64, device="cuda")
    assert nks.log_iv(3.0, base, out=out) is out
    assert_close_to_cpu("log_iv", out.cpu().numpy(), nks.log_iv(3.0, base.cpu().numpy()), False)
    bad = torch.full((7,), -7.0, dtype=torch.float64, device="cuda")
    with pytest.raises(ValueError):
        nks.log_iv(3.0, base, out=bad)
    assert (bad == -7.0).all()
    e = nks.log_iv(2.0, torch.empty(0, 3, device="cuda"))
    assert tuple(e.shape) == (0, 3) and e.is_cuda and e.dtype == torch.float32


@needs_cuda
@pytest.mark.cuda
def test_torch_cuda_on_side_stream():
    torch = pytest.importorskip("torch")
    x = torch.exp(torch.linspace(-10, 10, 1 << 20, dtype=torch.float64, device="cuda"))
    s = torch.cuda.Stream()
    with torch.cuda.stream(s):
        y = nks.log_iv(5.0, x)
    s.synchronize()
    ref = nks.log_iv(5.0, x.cpu().numpy())
    assert_close_to_cpu("log_iv", y.cpu().numpy(), ref, False)


@needs_cuda
@pytest.mark.cuda
def test_torch_cuda_autograd_matches_cpu():
    torch = pytest.importorskip("torch")
    v = torch.tensor([[0.5], [3.0], [5000.0]], dtype=torch.float64)
    x = torch.tensor([0.2, 4.0, 3000.0], dtype=torch.float64)
    grads = {}
    for dev in ("cpu", "cuda"):
        vv = v.to(dev).requires_grad_(True)
        xx = x.to(dev).requires_grad_(True)
        (nks.log_iv(vv, xx).sum() + nks.log_kv(vv, xx).sum()).backward()
        grads[dev] = (vv.grad.cpu().numpy(), xx.grad.cpu().numpy())
    np.testing.assert_allclose(grads["cuda"][1], grads["cpu"][1], rtol=1e-12)
    np.testing.assert_allclose(grads["cuda"][0], grads["cpu"][0], rtol=1e-6)
    xx = x.to("cuda").requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t: nks.log_kv(v.to("cuda"), t), (xx,))


@needs_cuda
@pytest.mark.cuda
def test_mixed_devices_valueerror():
    torch = pytest.importorskip("torch")
    xc = torch.ones(3, dtype=torch.float64, device="cuda")
    with pytest.raises(ValueError):
        nks.log_iv(np.ones(3), xc)
    with pytest.raises(ValueError):
        nks.log_iv(torch.ones(3, dtype=torch.float64), xc)
    with pytest.raises(ValueError):
        nks.kv(xc, np.ones((2, 3)))
    # Python scalars and 0-d numpy scalars are fine next to a CUDA tensor
    assert nks.log_iv(2.0, xc).is_cuda
    assert nks.log_iv(np.float64(2.0), xc).is_cuda
    if torch.cuda.device_count() > 1:
        with pytest.raises(ValueError, match="different devices"):
            nks.log_iv(xc, torch.ones(3, dtype=torch.float64, device="cuda:1"))


# ---- CuPy -------------------------------------------------------------------------------------
@needs_cuda
@pytest.mark.cuda
@pytest.mark.parametrize("name", ALL)
def test_cupy_matches_cpu(name):
    cupy = pytest.importorskip("cupy")
    v = V_CASES + (0.5 if name.startswith("iv_ratio") else 0.0)
    got = call(name, cupy.asarray(v), cupy.asarray(X_CASES))
    assert isinstance(got, cupy.ndarray) and got.dtype == np.float64
    assert_close_to_cpu(name, cupy.asnumpy(got), call(name, v, X_CASES), False)
    g32 = call(name, cupy.asarray(v, dtype=np.float32), cupy.asarray(np.float32([0.5, 3.0, 40.0])))
    assert g32.dtype == np.float32


@needs_cuda
@pytest.mark.cuda
def test_cupy_out_layouts_and_mixing():
    cupy = pytest.importorskip("cupy")
    x = cupy.linspace(0.05, 80.0, 40)
    out = cupy.full(40, -7.0)
    assert nks.log_kv(1.5, x, out=out) is out
    assert_close_to_cpu("log_kv", cupy.asnumpy(out), nks.log_kv(1.5, cupy.asnumpy(x)), False)
    rev = x[::-2]
    assert_close_to_cpu("log_kv", cupy.asnumpy(nks.log_kv(1.5, rev)), nks.log_kv(1.5, cupy.asnumpy(rev)),
                        False)
    with pytest.raises(ValueError):
        nks.log_kv(np.ones(40), x)
    torch = pytest.importorskip("torch")
    with pytest.raises(ValueError):
        nks.log_kv(torch.ones(40, device="cuda"), x)
    with pytest.raises(TypeError):
        nks.log_kv(1.5, cupy.ones(3, dtype=cupy.complex128))
