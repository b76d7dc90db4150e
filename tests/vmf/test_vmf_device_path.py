"""The CUDA-side Python path of numkern.vmf run without a GPU.

torch CPU tensors are made to look like CUDA tensors to numkern._backend's Context (TorchOps array
operations, ``cuda = True``), and numkern._cuda is replaced by a stand-in whose entries take the
CUDA signature (the CPU arguments plus ``stream=``), check that they run inside the Context's
device guard, and call the CPU kernels.  This checks the argument order and shapes of every device
entry and that every launch goes through ``Context.call`` under the device guard (the bug of
issue #12: a tensor on cuda:1 was launched on the current device)."""
import contextlib
import types

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import numkern  # noqa: E402
from numkern import _core, vmf  # noqa: E402
from numkern._backend import TORCH, Ops, context as backend_context, native  # noqa: E402
from numkern._backend.ops import TorchOps  # noqa: E402

ENTRIES = ("map", "row_norm2", "weighted_sum", "logpdf", "estep", "sample")


class _FakeCuda:
    """numkern._cuda stand-in: vmf.<fn>(*cpu_args, stream=) -> numkern._core.vmf.<fn>(*cpu_args)."""

    def __init__(self):
        self.guard_devices = []  # the device of each guard currently entered
        self.calls = {fn: 0 for fn in ENTRIES}
        self.vmf = types.SimpleNamespace(**{fn: self._entry(fn) for fn in ENTRIES})

    def _entry(self, fn):
        def call(*args, stream):
            assert self.guard_devices, f"vmf.{fn} launched outside Context.guard()"
            assert stream == 1234
            self.calls[fn] += 1
            return getattr(_core.vmf, fn)(*args)

        return call

    @staticmethod
    def device_count():
        return 1


@pytest.fixture
def fake_cuda(monkeypatch):
    fake = _FakeCuda()
    monkeypatch.setattr(native, "require_cuda", lambda: fake)
    orig_init = backend_context.Context.__init__

    def init(self, *arrays, names=()):
        orig_init(self, *arrays, names=names)
        if self.kind == TORCH:  # torch CPU tensors play the CUDA tensors
            self.cuda = True
            self.ops = TorchOps(self.device)

    @contextlib.contextmanager
    def guard(self):
        fake.guard_devices.append(self.device)
        try:
            yield
        finally:
            fake.guard_devices.pop()

    monkeypatch.setattr(backend_context.Context, "__init__", init)
    monkeypatch.setattr(backend_context.Context, "guard", guard)
    monkeypatch.setattr(backend_context.Context, "stream", lambda self: 1234)
    return fake


def _data():
    rng = np.random.default_rng(0)
    mus = rng.standard_normal((5, 64))
    mus /= np.linalg.norm(mus, axis=1, keepdims=True)
    kap = np.array([0.5, 10.0, 100.0, 1e3, 1e5])
    x = np.stack([vmf.VonMisesFisher(mus[i], kap[i]).sample(50, seed=i) for i in range(5)])
    return rng, mus, kap, x


def test_device_path_matches_cpu(fake_cuda):
    """The device path against the numpy path.  Both run numkern kernels, but the array operations
    around them are torch's on one side and numpy's on the other (e.g. mu / |mu|), whose rounding
    may differ by an ulp between CPU models: results are compared with bounds, stated per line."""
    rng, mus, kap, x = _data()
    rb = np.linspace(0.01, 0.99, 99)
    kt = vmf.kappa_mle(torch.tensor(rb), 64.0)
    assert isinstance(kt, torch.Tensor)
    # the same kernel on the same float64 inputs: the same bytes
    np.testing.assert_array_equal(kt.numpy(), vmf.kappa_mle(rb, 64.0))
    for dt in (torch.float64, torch.float32):
        ft = vmf.fit(torch.tensor(x, dtype=dt))
        fc = vmf.fit(x.astype(np.float64 if dt == torch.float64 else np.float32))
        assert ft.kappa.dtype == dt and ft.mu.shape == (5, 64)
        # kappa from rbar: |S| / n from torch vs numpy norms, amplified by dkappa/drbar ~ kappa / (1 - rbar)
        np.testing.assert_allclose(ft.kappa.numpy(), fc.kappa, rtol=1e-9 if dt == torch.float64 else 1e-6)
    w = rng.uniform(0.5, 1, (5, 50))
    np.testing.assert_allclose(vmf.fit(torch.tensor(x), weights=torch.tensor(w)).kappa.numpy(),
                               vmf.fit(x, weights=w).kappa, rtol=1e-9)
    dt_ = vmf.VonMisesFisher(torch.tensor(mus), torch.tensor(kap))
    dc = vmf.VonMisesFisher(mus, kap)
    # logpdf = shifted - kappa (1 - mu.x): mu differs by ~1 ulp, times kappa up to 1e5
    np.testing.assert_allclose(dt_.logpdf(torch.tensor(x)).numpy(), dc.logpdf(x), rtol=1e-13, atol=1e-10)
    np.testing.assert_allclose(dt_.logpdf(torch.tensor(x[0])).numpy(), dc.logpdf(x[0]), rtol=1e-13, atol=1e-10)
    np.testing.assert_allclose(dt_.entropy().numpy(), dc.entropy(), rtol=1e-14)
    np.testing.assert_allclose(dt_.mean().numpy(), dc.mean(), rtol=1e-14, atol=1e-16)
    other_t = vmf.VonMisesFisher(torch.tensor(mus[::-1].copy()), torch.tensor(kap[::-1].copy()))
    other_c = vmf.VonMisesFisher(mus[::-1].copy(), kap[::-1].copy())
    np.testing.assert_allclose(dt_.kl_divergence(other_t).numpy(), dc.kl_divergence(other_c), rtol=1e-12, atol=1e-10)
    # samples: |x_j| <= 1, a 1-ulp change of mu moves a coordinate by a few ulp of 1
    np.testing.assert_allclose(dt_.sample(7, seed=3).numpy(), dc.sample(7, seed=3), rtol=0, atol=2e-15)
    # with mu exactly unit (basis vectors) both sides hand the kernel the same bytes: same sample
    e = np.eye(64)[:5]
    np.testing.assert_array_equal(vmf.VonMisesFisher(torch.tensor(e), torch.tensor(kap)).sample(7, seed=3).numpy(),
                                  vmf.VonMisesFisher(e, kap).sample(7, seed=3))
    with pytest.raises(ValueError, match="rows are not unit"):
        dt_.logpdf(torch.tensor(2 * x))
    xm = x[1:4].reshape(150, 64)
    mt = vmf.VMFMixture(3, seed=0).fit(torch.tensor(xm))
    mc = vmf.VMFMixture(3, seed=0).fit(xm)
    np.testing.assert_allclose(mt.kappas_.numpy(), mc.kappas_, rtol=1e-8)
    np.testing.assert_array_equal(mt.predict(torch.tensor(xm)).numpy(), mc.predict(xm))
    xs, ys = mt.sample(20, seed=1)
    assert xs.shape == (20, 64) and ys.dtype == torch.int64
    # every CUDA entry was reached, each inside the device guard (checked by the stand-in)
    assert all(fake_cuda.calls[fn] > 0 for fn in ENTRIES), fake_cuda.calls


def test_every_launch_is_guarded_on_the_arrays_device(fake_cuda):
    """Regression (issue #12): every vmf launch runs under Context.guard() of the arrays' device."""
    seen = []
    inner = fake_cuda._entry

    def entry(fn):
        f = inner(fn)

        def call(*args, stream):
            seen.append((fn, fake_cuda.guard_devices[-1] if fake_cuda.guard_devices else None))
            return f(*args, stream=stream)

        return call

    fake_cuda.vmf = types.SimpleNamespace(**{fn: entry(fn) for fn in ENTRIES})
    _, mus, kap, x = _data()
    d = vmf.VonMisesFisher(torch.tensor(mus), torch.tensor(kap))
    d.logpdf(torch.tensor(x))
    d.sample(3, seed=0)
    vmf.fit(torch.tensor(x))
    vmf.VMFMixture(2, seed=0, max_iter=3, tol=1e9).fit(torch.tensor(x[1:3].reshape(100, 64)))
    assert {fn for fn, _ in seen} == set(ENTRIES)
    assert all(dev == torch.device("cpu") for _, dev in seen), seen


@pytest.mark.skipif(not numkern.cuda_available(), reason="needs a CUDA device and numkern's CUDA module")
def test_cuda_kernels_match_cpu_bitwise():
    """rows.hpp: row sums in the one documented order on both devices (no contraction on either):
    row_norm2 and logpdf (given the same shifted) are the same bytes on CPU and GPU."""
    from numkern._backend import cuda_module

    cu = cuda_module().vmf
    rng = np.random.default_rng(7)
    for d in (2, 3, 31, 32, 33, 64, 257, 4097):
        x = rng.standard_normal((40, d))
        out_c = np.empty(40)
        _core.vmf.row_norm2(x, out_c)
        xg = torch.tensor(x, device="cuda")
        out_g = torch.empty(40, dtype=torch.float64, device="cuda")
        cu.row_norm2(xg, out_g, stream=torch.cuda.current_stream().cuda_stream)
        np.testing.assert_array_equal(out_g.cpu().numpy(), out_c)
        mu = rng.standard_normal((3, d))
        mu /= np.linalg.norm(mu, axis=1, keepdims=True)
        sh, ka = rng.uniform(-5, 5, 3), rng.uniform(0, 1e4, 3)
        xs = x[None, :, :]
        lc, nc = np.empty((3, 40)), np.empty((3, 40))
        _core.vmf.logpdf(xs, mu, sh, ka, lc, nc)
        lg = torch.empty((3, 40), dtype=torch.float64, device="cuda")
        ng = torch.empty((3, 40), dtype=torch.float64, device="cuda")
        t = [torch.tensor(a, device="cuda") for a in (xs, mu, sh, ka)]
        cu.logpdf(*t, lg, ng, stream=torch.cuda.current_stream().cuda_stream)
        np.testing.assert_array_equal(lg.cpu().numpy(), lc)
        np.testing.assert_array_equal(ng.cpu().numpy(), nc)


@pytest.mark.skipif(not numkern.cuda_available() or numkern._backend.cuda_module().device_count() < 2,
                    reason="needs two CUDA devices")
def test_tensor_on_second_device_runs_there():
    """Regression (issue #12): a tensor on cuda:1 used to launch on the current device (cuda:0)."""
    _, mus, kap, x = _data()
    with torch.cuda.device(0):
        dg = vmf.VonMisesFisher(torch.tensor(mus, device="cuda:1"), torch.tensor(kap, device="cuda:1"))
        lp = dg.logpdf(torch.tensor(x, device="cuda:1"))
        torch.cuda.synchronize(1)
    assert lp.device == torch.device("cuda:1")
    np.testing.assert_allclose(lp.cpu().numpy(), vmf.VonMisesFisher(mus, kap).logpdf(x), rtol=1e-12, atol=1e-9)


def test_ops_for_numpy_context_is_numpy():
    assert type(vmf.VonMisesFisher(np.eye(3)[0], 1.0)._ctx.ops) is Ops
