"""numkern.quant's torch modules under torch.inference_mode().

A model quantized inside inference mode holds inference tensors (no version counter), which the
layers' caches (prepacked weights, the eager fast path's state) key on: the first call replaces
those buffers by normal tensors with the same values (numkern/quant/_torch_module.py,
plain_buffers).  Checked: quantizing and calling inside inference mode gives bitwise what the
same module made and called outside it gives, for every row count the kernels switch on; a
state_dict loaded in place inside inference mode is followed by the next call; ``.half()``
inside inference mode keeps working."""
import pytest

torch = pytest.importorskip("torch")

from numkern.quant import olive as O  # noqa: E402
from numkern.quant.splitquant import splitquant  # noqa: E402


def _linear(seed, k=96, n=80):
    g = torch.Generator().manual_seed(seed)
    lin = torch.nn.Linear(k, n)
    with torch.no_grad():
        lin.weight.copy_(torch.randn(n, k, generator=g) / k**0.5)
        lin.bias.copy_(torch.randn(n, generator=g))
    return lin


def _calib(k):
    return [torch.randn(64, k, generator=torch.Generator().manual_seed(7))]


MAKERS = {
    "ovp_w4": lambda lin: O.OVPLinear.from_linear(lin, bits=4),
    "ovp_w8": lambda lin: O.OVPLinear.from_linear(lin, bits=8),
    "ovp_w4a8": lambda lin: O.calibrate(O.OVPLinear.from_linear(lin, bits=4, act_bits=8), _calib(lin.in_features)),
    "quantize_model": lambda lin: O.quantize_model(torch.nn.Sequential(lin), bits=4),
    "splitquant_int4": lambda lin: splitquant(torch.nn.Sequential(lin), bits=4, k=3, group_size=32, fused=True)[0],
    "splitquant_int2": lambda lin: splitquant(torch.nn.Sequential(lin), bits=2, k=3, group_size=32, fused=True)[0],
}
ROWS = (1, 3, 9, 40)


def _x(rows, k=96, seed=11):
    return torch.randn(rows, k, generator=torch.Generator().manual_seed(seed + rows))


@pytest.mark.parametrize("kind", sorted(MAKERS))
def test_quantized_and_called_in_inference_mode(kind):
    lin = _linear(0)
    with torch.no_grad():
        ref = MAKERS[kind](lin)
        want = [ref(_x(r)) for r in ROWS]
    with torch.inference_mode():
        q = MAKERS[kind](lin)
        got = [q(_x(r)) for r in ROWS]
        got2 = [q(_x(r)) for r in ROWS]  # the cached state
    for r, a, b, c in zip(ROWS, want, got, got2):
        assert torch.equal(a, b) and torch.equal(a, c), (kind, r)
    assert not any(t.is_inference() for t in q.buffers())


@pytest.mark.parametrize("kind", sorted(MAKERS))
def test_state_dict_loaded_in_inference_mode_is_followed(kind):
    a_lin, b_lin = _linear(1), _linear(2)
    with torch.no_grad():
        b = MAKERS[kind](b_lin)
        want = [b(_x(r)) for r in ROWS]
    with torch.inference_mode():
        q = MAKERS[kind](a_lin)
        before = [q(_x(r)) for r in ROWS]  # caches made from a's weights
        q.load_state_dict(b.state_dict())  # written in place
        got = [q(_x(r)) for r in ROWS]
    for r, w, g, p in zip(ROWS, want, got, before):
        assert torch.equal(w, g), (kind, r)
        assert not torch.equal(w, p), (kind, r)  # the check can fail: a's output differs


@pytest.mark.parametrize("kind", ["ovp_w4", "splitquant_int4"])
def test_half_in_inference_mode(kind):
    lin = _linear(3)
    with torch.no_grad():
        ref = MAKERS[kind](lin)
        want = ref(_x(9))
    with torch.inference_mode():
        q = MAKERS[kind](lin)
        q(_x(9))
        h = q.half()
        y = h(_x(9).half())
    assert y.dtype == torch.float16
    # float16 bias and input: the float32 result within float16 rounding of x, b and the output
    torch.testing.assert_close(y.float(), want, rtol=2e-2, atol=2e-2)
