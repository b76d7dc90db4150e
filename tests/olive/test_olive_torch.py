"""OliVe OVP quantization with torch tensors: dtypes, straight-through gradient, OVPLinear,
quantize_model; CUDA parity when a device exists."""
import numpy as np
import pytest

import numkern
from numkern import quant as Q

torch = pytest.importorskip("torch")


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32", "float64"])
def test_torch_dtypes_match_numpy(dtype):
    g = torch.Generator().manual_seed(0)
    w = (torch.randn(6, 21, generator=g) * 2).to(getattr(torch, dtype))
    q = Q.ovp_quantize(w, bits=4)
    ref = Q.ovp_quantize(w.to(torch.float32).numpy(), bits=4)
    assert isinstance(q.codes, torch.Tensor) and q.codes.dtype == torch.uint8
    np.testing.assert_array_equal(q.codes.numpy(), ref.codes)
    np.testing.assert_array_equal(q.scales.numpy(), ref.scales)
    d = Q.ovp_dequantize(q)
    assert d.dtype == torch.float32 and tuple(d.shape) == (6, 21)
    fq = Q.ovp_fake_quantize(w, bits=4)
    assert fq.dtype == w.dtype
    np.testing.assert_array_equal(fq.to(torch.float32).numpy(), d.to(w.dtype).to(torch.float32).numpy())


def test_straight_through_gradient():
    w = torch.randn(4, 10, dtype=torch.float64, requires_grad=True)
    y = Q.ovp_fake_quantize(w, bits=4)
    (y * torch.arange(40.0, dtype=torch.float64).view(4, 10)).sum().backward()
    np.testing.assert_array_equal(w.grad.numpy(), np.arange(40.0).reshape(4, 10))


def test_matmul_autograd_in_x():
    w = torch.randn(5, 12)
    q = Q.ovp_quantize(w, bits=8)
    x = torch.randn(3, 12, dtype=torch.float64, requires_grad=True)
    y = Q.ovp_matmul(x, q)
    assert y.dtype == torch.float64
    y.sum().backward()
    wd = Q.ovp_dequantize(q).double()
    torch.testing.assert_close(x.grad, torch.ones(3, 5, dtype=torch.float64) @ wd)


def test_ovp_linear_and_quantize_model():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 8))
    model.lm_head = torch.nn.Linear(8, 3)
    x = torch.randn(10, 16)
    qm = Q.quantize_model(model, bits=4)
    assert isinstance(qm[0], Q.OVPLinear) and isinstance(qm[2], Q.OVPLinear)
    assert type(qm.lm_head) is torch.nn.Linear and type(model[0]) is torch.nn.Linear  # skip; original kept
    lin = qm[0]
    ref = x @ Q.ovp_dequantize(lin.quantized_weight()).T + model[0].bias
    torch.testing.assert_close(lin(x), ref, rtol=1e-5, atol=1e-5)
    with pytest.raises(TypeError):
        Q.OVPLinear.from_linear(torch.nn.ReLU())


def test_activation_calibration_on_first_batch():
    torch.manual_seed(1)
    lin = torch.nn.Linear(24, 6)
    ql = Q.OVPLinear.from_linear(lin, bits=8, act_bits=8)
    x1, x2 = torch.randn(4, 24), 5 * torch.randn(4, 24)
    with pytest.warns(UserWarning, match="calibrate"):  # uncalibrated: warns (issue #19)
        y1 = ql(x1)
    alpha = float(ql.act_alpha)
    qa = Q.ovp_quantize(x1, bits=8, axis=None)
    assert alpha == float(qa.alphas[0])
    ref1 = Q.ovp_dequantize(qa) @ Q.ovp_dequantize(ql.quantized_weight()).T + lin.bias
    torch.testing.assert_close(y1, ref1.detach(), rtol=1e-5, atol=1e-5)
    ql(x2)
    assert float(ql.act_alpha) == alpha  # later batches reuse the calibrated threshold
    xq = Q.ovp_dequantize(Q.ovp_quantize(x2, bits=8, axis=None, alpha=alpha))
    torch.testing.assert_close(ql(x2), xq @ Q.ovp_dequantize(ql.quantized_weight()).T + lin.bias.detach(),
                               rtol=1e-5, atol=1e-5)


def test_mixed_kinds_rejected():
    q = Q.ovp_quantize(torch.randn(3, 4))
    with pytest.raises(ValueError):
        Q.ovp_matmul(np.ones((2, 4), np.float32), q)
    with pytest.raises(ValueError, match="NaN"):
        Q.ovp_quantize(torch.tensor([[1.0, float("nan")]]))


@pytest.mark.skipif(not numkern.cuda_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("bits,normal", [(4, "int"), (4, "flint"), (8, "int")])
@pytest.mark.parametrize("axis", ["row", None])
def test_cuda_matches_cpu(bits, normal, axis):
    g = torch.Generator().manual_seed(2)
    w = torch.distributions.StudentT(3.0).sample((33, 4099))
    qc = Q.ovp_quantize(w, bits=bits, normal=normal, axis=axis)
    qg = Q.ovp_quantize(w.cuda(), bits=bits, normal=normal, axis=axis)
    np.testing.assert_array_equal(qg.codes.cpu().numpy(), qc.codes.numpy())
    np.testing.assert_array_equal(qg.scales.cpu().numpy(), qc.scales.numpy())
    np.testing.assert_array_equal(Q.ovp_dequantize(qg).cpu().numpy(), Q.ovp_dequantize(qc).numpy())
    x = torch.randn(17, 4099, generator=g)
    torch.testing.assert_close(Q.ovp_matmul(x.cuda(), qg).cpu(), Q.ovp_matmul(x, qc), rtol=1e-4, atol=1e-3)
