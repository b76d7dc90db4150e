"""The prepacked OVP matmul (numkern._core.olive.prepack / matmul_packed), OVPLinear's CPU fast
path and the torch operator numkern::ovp_matmul, against the reference decode.

Bound: |out - x @ ovp_dequantize(W).T| <= 1e-5 * (|x| @ |ovp_dequantize(W)|.T) elementwise (float32
sums of exact grid values in another order), on every dispatcher tier."""
import numpy as np
import pytest

from numkern._core import olive as C
from numkern.quant import olive as O

FORMATS = [(4, "int"), (4, "flint"), (8, "int")]


def _check_close(got, x, q):
    deq = np.asarray(O.ovp_dequantize(q), np.float64)
    x = np.asarray(x, np.float64)
    ref = x @ deq.T
    bound = 1e-5 * (np.abs(x) @ np.abs(deq).T) + 1e-30
    assert got.shape == ref.shape
    assert np.all(np.abs(np.asarray(got, np.float64) - ref) <= bound)


def _pack(q):
    if not isinstance(q.codes, np.ndarray):
        q = O.OVPTensor(q.codes.numpy(), q.scales.numpy(), q.normal, q.shape, q.bits, q.axis)
    return C.prepack(q.codes, q.scales, q.per_row, q.shape[1], q.bits, O._NORMAL_CODE[q.normal])


@pytest.mark.parametrize("bits,normal", FORMATS)
@pytest.mark.parametrize("batch,n,k", [(1, 37, 2050), (3, 8, 1), (64, 130, 257), (5, 4, 3000), (4, 6, 33)])
def test_packed_matches_decode(isa, bits, normal, batch, n, k):
    rng = np.random.default_rng(batch * 1000 + n + k)
    w = (rng.standard_t(2.5, size=(n, k)) * 0.1).astype(np.float32)  # heavy tails: many outliers
    for axis in ("row", None):
        q = O.ovp_quantize(w, bits=bits, normal=normal, axis=axis, search=False)
        x = rng.standard_normal((batch, k)).astype(np.float32)
        out = np.full((batch, n), np.nan, np.float32)
        C.matmul_packed(x, _pack(q), q.scales, out, q.per_row)
        _check_close(out, x, q)


def test_pack_bad_input():
    rng = np.random.default_rng(0)
    q = O.ovp_quantize(rng.standard_normal((4, 16)).astype(np.float32), search=False)
    pk = _pack(q)
    x, out = np.ones((2, 16), np.float32), np.empty((2, 4), np.float32)
    with pytest.raises(ValueError, match="packed"):
        C.matmul_packed(x, pk[:-1], q.scales, out, True)
    bad = pk.copy()
    bad[0] ^= 1
    with pytest.raises(ValueError, match="magic"):
        C.matmul_packed(x, bad, q.scales, out, True)
    with pytest.raises(ValueError, match="x"):
        C.matmul_packed(np.ones((2, 15), np.float32), pk, q.scales, out, True)
    with pytest.raises(ValueError, match="out"):
        C.matmul_packed(x, pk, q.scales, np.empty((2, 5), np.float32), True)
    with pytest.raises(ValueError, match="scales"):
        C.matmul_packed(x, pk, q.scales[:1], out, True)
    with pytest.raises(ValueError, match="codes"):
        C.prepack(q.codes, q.scales, True, 18, 4, 0)


torch = pytest.importorskip("torch")


@pytest.mark.parametrize("bits", [4, 8])
@pytest.mark.parametrize("shape", [(1, 48), (4, 48), (2, 3, 48), (70, 48)])
def test_ovplinear_fast_path(isa, bits, shape):
    torch.manual_seed(bits)
    lin = torch.nn.Linear(48, 20)
    layer = O.OVPLinear.from_linear(lin, bits=bits)
    x = torch.randn(*shape)
    with torch.no_grad():
        y = layer(x)
        ref = O.ovp_matmul(x, layer.quantized_weight()) + layer.bias
    assert y.shape == (*shape[:-1], 20) and y.dtype == torch.float32
    _check_close(y.reshape(-1, 20).numpy() - layer.bias.numpy(), x.reshape(-1, 48).numpy(),
                 layer.quantized_weight())
    torch.testing.assert_close(y, ref, rtol=1e-5, atol=1e-5)
    # bfloat16 input: the result in bfloat16
    assert layer(x.to(torch.bfloat16)).dtype == torch.bfloat16


def test_ovplinear_pack_follows_codes():
    torch.manual_seed(0)
    a, b = torch.nn.Linear(32, 8), torch.nn.Linear(32, 8)
    la, lb = O.OVPLinear.from_linear(a, bits=8), O.OVPLinear.from_linear(b, bits=8)
    x = torch.randn(5, 32)
    with torch.no_grad():
        la(x)  # builds and caches the pack of a's codes
        la.codes.copy_(lb.codes)
        la.scales.copy_(lb.scales)
        la.bias.copy_(lb.bias)
        torch.testing.assert_close(la(x), lb(x), rtol=0, atol=0)
    assert "pack" not in " ".join(la.state_dict())


def test_torch_op_and_fake():
    from numkern._torch_ops import quant  # noqa: F401

    torch.manual_seed(1)
    layer = O.OVPLinear.from_linear(torch.nn.Linear(40, 12, bias=False), bits=4)
    x = torch.randn(3, 5, 40)
    empty = torch.empty(0, dtype=torch.uint8)
    pk = torch.from_numpy(_pack(layer.quantized_weight()))
    ref = O.ovp_matmul(x, layer.quantized_weight())
    nc = O._NORMAL_CODE[layer.normal]
    for pack in (empty, pk):
        y = torch.ops.numkern.ovp_matmul(x, layer.codes, layer.scales, pack, 4, nc, True)
        torch.testing.assert_close(y, ref, rtol=1e-5, atol=1e-5)
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode() as mode:
        fx = mode.from_tensor(x)
        fy = torch.ops.numkern.ovp_matmul(fx, mode.from_tensor(layer.codes), mode.from_tensor(layer.scales),
                                          mode.from_tensor(empty), 4, nc, True)
        assert fy.shape == (3, 5, 12) and fy.dtype == torch.float32
    with pytest.raises(ValueError, match="codes"):
        torch.ops.numkern.ovp_matmul(x, layer.codes.float(), layer.scales, empty, 4, nc, True)
