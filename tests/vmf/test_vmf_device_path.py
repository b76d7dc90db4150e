"""The CUDA-side Python code of numkern.vmf (TorchCudaBackend: torch array operations plus the
pointer-based calls into numkern._cuda.vmf) run on CPU tensors, with a stand-in for
numkern._cuda.vmf that wraps the raw pointers as numpy arrays and calls the CPU kernels.  This
checks shapes, dtypes, contiguity and argument order of every device entry without a GPU."""
import ctypes
import types

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from numkern import _core, vmf  # noqa: E402
from numkern.vmf import _kernels as K  # noqa: E402

_DT = {0: np.float32, 1: np.float64}


def _view(ptr, n, dt):
    if n == 0:
        return np.empty(0, dt)
    c = {np.float64: ctypes.c_double, np.float32: ctypes.c_float}[dt]
    return np.ctypeslib.as_array(ctypes.cast(ptr, ctypes.POINTER(c)), shape=(n,))


class _FakeCudaVmf:
    def map(self, op, code, ins, out, n, stream):
        _core.vmf.map(op, [_view(p, n, _DT[code]) for p in ins], _view(out, n, _DT[code]))

    def row_norm2(self, code, x, m, d, out, stream):
        _core.vmf.row_norm2(_view(x, m * d, _DT[code]), m, d, _view(out, m, np.float64))

    def weighted_sum(self, code, x, w, g, n, d, out, stream):
        _core.vmf.weighted_sum(_view(x, g * n * d, _DT[code]), None if w == 0 else _view(w, g * n, np.float64),
                               g, n, d, _view(out, g * d, np.float64))

    def logpdf(self, code, x, shared, mu, sh, ka, g, n, d, out, n2, stream):
        _core.vmf.logpdf(_view(x, (1 if shared else g) * n * d, _DT[code]), shared, _view(mu, g * d, np.float64),
                         _view(sh, g, np.float64), _view(ka, g, np.float64), g, n, d,
                         _view(out, g * n, _DT[code]), _view(n2, g * n, np.float64))

    def estep(self, dots, b, ka, n, k, lr, lse, stream):
        _core.vmf.estep(_view(dots, n * k, np.float64), _view(b, k, np.float64), _view(ka, k, np.float64), n, k,
                        _view(lr, n * k, np.float64), _view(lse, n, np.float64))

    def sample(self, code, mu, ka, g, n, d, seed, out, stream):
        _core.vmf.sample(_view(mu, g * d, np.float64), _view(ka, g, np.float64), g, n, d, seed,
                         _view(out, g * n * d, _DT[code]))


@pytest.fixture
def device_path(monkeypatch):
    fake = types.SimpleNamespace(vmf=_FakeCudaVmf())
    monkeypatch.setattr(K, "_require_cuda", lambda: fake)
    monkeypatch.setattr(K.TorchCudaBackend, "_stream", lambda self: 0)
    orig = K.Context.__init__

    def init(self, *arrays):
        orig(self, *arrays)
        if self.kind == K.TORCH:
            self.be = K.TorchCudaBackend(self.device)

    def output(self, a, dtype=None):
        return a if dtype is None or self.be.dtype_name(a) == dtype else self.be.astype(a, dtype)

    monkeypatch.setattr(K.Context, "__init__", init)
    monkeypatch.setattr(K.Context, "output", output)
    monkeypatch.setattr(K.Context, "input", lambda self, a, dtype, name: self.be.asarray(a, dtype))


def test_device_path_matches_cpu(device_path):
    rng = np.random.default_rng(0)
    mus = rng.standard_normal((5, 64))
    mus /= np.linalg.norm(mus, axis=1, keepdims=True)
    kap = np.array([0.5, 10.0, 100.0, 1e3, 1e5])
    x = np.stack([vmf.VonMisesFisher(mus[i], kap[i]).sample(50, seed=i) for i in range(5)])
    rb = np.linspace(0.01, 0.99, 99)
    kt = vmf.kappa_mle(torch.tensor(rb), 64.0)
    assert isinstance(kt, torch.Tensor)
    # the CPU reference runs through the numpy backend (the fixture only reroutes torch inputs)
    np.testing.assert_array_equal(kt.numpy(), vmf.kappa_mle(rb, 64.0))
    for dt in (torch.float64, torch.float32):
        ft = vmf.fit(torch.tensor(x, dtype=dt))
        fc = vmf.fit(x.astype(np.float64 if dt == torch.float64 else np.float32))
        assert ft.kappa.dtype == dt and ft.mu.shape == (5, 64)
        np.testing.assert_allclose(ft.kappa.numpy(), fc.kappa, rtol=1e-12 if dt == torch.float64 else 1e-6)
    ft = vmf.fit(torch.tensor(x), weights=torch.tensor(rng.uniform(0.5, 1, (5, 50))))
    dt_ = vmf.VonMisesFisher(torch.tensor(mus), torch.tensor(kap))
    dc = vmf.VonMisesFisher(mus, kap)
    np.testing.assert_allclose(dt_.logpdf(torch.tensor(x)).numpy(), dc.logpdf(x), rtol=1e-13)
    np.testing.assert_allclose(dt_.logpdf(torch.tensor(x[0])).numpy(), dc.logpdf(x[0]), rtol=1e-13)
    np.testing.assert_allclose(dt_.entropy().numpy(), dc.entropy(), rtol=1e-14)
    np.testing.assert_allclose(dt_.mean().numpy(), dc.mean(), rtol=1e-14)
    other_t = vmf.VonMisesFisher(torch.tensor(mus[::-1].copy()), torch.tensor(kap[::-1].copy()))
    other_c = vmf.VonMisesFisher(mus[::-1].copy(), kap[::-1].copy())
    np.testing.assert_allclose(dt_.kl_divergence(other_t).numpy(), dc.kl_divergence(other_c), rtol=1e-12, atol=1e-10)
    np.testing.assert_array_equal(dt_.sample(7, seed=3).numpy(), dc.sample(7, seed=3))
    with pytest.raises(ValueError, match="rows are not unit"):
        dt_.logpdf(torch.tensor(2 * x))
    xm = x[1:4].reshape(150, 64)
    mt = vmf.VMFMixture(3, seed=0).fit(torch.tensor(xm))
    mc = vmf.VMFMixture(3, seed=0).fit(xm)
    np.testing.assert_allclose(mt.kappas_.numpy(), mc.kappas_, rtol=1e-10)
    np.testing.assert_array_equal(mt.predict(torch.tensor(xm)).numpy(), mc.predict(xm))
    xs, ys = mt.sample(20, seed=1)
    assert xs.shape == (20, 64) and ys.dtype == torch.int64
