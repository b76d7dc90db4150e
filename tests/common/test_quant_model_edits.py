"""numkern.quant's model transforms and modules under the edits users make to models:
shared (tied) layers, ``skip`` given as one name, state dicts missing a key, buffers replaced
through ``.data`` and settings changed after the first call.  Each check compares with what a
freshly built module computes, so a stale cache (old weights) fails it."""
import copy

import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

import numkern.quant as Q  # noqa: E402
from numkern.quant import olive as O  # noqa: E402


class Tied(nn.Module):
    """One Linear reached under two names (a and b), as tied layers are."""

    def __init__(self):
        super().__init__()
        self.a = nn.Linear(16, 16)
        self.b = self.a
        self.c = nn.Linear(16, 8)

    def forward(self, x):
        return self.c(self.b(torch.relu(self.a(x))))


TRANSFORMS = {
    "ovp": lambda m: Q.quantize_model(m, bits=4, return_report=True),
    "ovp_w8a8": lambda m: Q.quantize_model(m, bits=8, act_bits=8, return_report=True),
    "splitquant_fused": lambda m: Q.splitquant(m, bits=4, group_size=16, fused=True, return_report=True),
    "splitquant_split": lambda m: Q.splitquant(m, bits=4, group_size=16, fused=False, return_report=True),
    "plain": lambda m: (Q.quantize_model_plain(m, bits=4), []),
}


@pytest.mark.parametrize("kind", sorted(TRANSFORMS))
def test_tied_layers_quantized_once_and_still_tied(kind):
    torch.manual_seed(0)
    m = Tied()
    q, report = TRANSFORMS[kind](m)
    assert q.a is q.b, kind
    assert report == [], (kind, report)
    if kind != "plain":  # (plain quantizes the weights in place and keeps nn.Linear)
        assert type(q.a) is type(q.c) and not isinstance(q.a, nn.Linear), kind
    assert m.a is m.b and isinstance(m.a, nn.Linear)  # the input model is left as it was


def test_skip_as_one_name():
    m = nn.Sequential()
    m.add_module("a", nn.Linear(4, 4))
    m.add_module("lm_head", nn.Linear(4, 4))
    q, report = Q.quantize_model(m, bits=4, skip="lm_head", return_report=True)
    assert isinstance(q.a, O.OVPLinear) and type(q.lm_head) is nn.Linear
    assert [r[0] for r in report] == ["lm_head"]
    with pytest.raises(TypeError, match="skip"):
        Q.quantize_model(m, bits=4, skip=[3])


def _sq_layer(bias=True):
    return Q.splitquant(nn.Sequential(nn.Linear(32, 8, bias=bias)), bits=4, group_size=16, fused=True)[0]


LAYERS = {
    "ovp_w4": lambda bias=True: O.OVPLinear.from_linear(nn.Linear(32, 8, bias=bias), bits=4),
    "ovp_w4a8": lambda bias=True: O.calibrate(O.OVPLinear.from_linear(nn.Linear(32, 8, bias=bias), bits=4, act_bits=8),
                                              [torch.randn(16, 32, generator=torch.Generator().manual_seed(3))]),
    "splitquant": _sq_layer,
}


@pytest.mark.parametrize("kind", sorted(LAYERS))
def test_state_dict_missing_bias_is_reported(kind):
    torch.manual_seed(1)
    layer = LAYERS[kind]()
    sd = layer.state_dict()
    del sd["bias"]
    other = copy.deepcopy(layer)
    with pytest.raises(RuntimeError, match='Missing key.*"bias"'):
        other.load_state_dict(sd)  # strict
    res = other.load_state_dict(sd, strict=False)
    assert res.missing_keys == ["bias"] and other.bias is not None
    # a module saved without a bias loads as one without
    nobias = LAYERS[kind](bias=False)
    other.load_state_dict(nobias.state_dict())
    assert other.bias is None
    x = torch.randn(3, 32)
    assert torch.equal(other(x), nobias(x))


@pytest.mark.parametrize("kind", sorted(LAYERS))
@pytest.mark.parametrize("name", ["codes", "scales", "bias"])
def test_buffer_replaced_through_data_is_followed(kind, name):
    torch.manual_seed(2)
    layer = LAYERS[kind]()
    x = torch.randn(3, 32)
    before = layer(x)  # caches made
    t = getattr(layer, name)
    t.data = t * 2 if t.is_floating_point() else t ^ 1  # same tensor object and version, new storage
    fresh = copy.deepcopy(layer)  # (no caches: built from the new values)
    got = layer(x)
    assert torch.equal(got, fresh(x)), (kind, name)
    assert not torch.equal(got, before)


@pytest.mark.parametrize("kind", ["ovp_w4", "ovp_w4a8"])
def test_grid_setting_changed_after_first_call_is_followed(kind):
    torch.manual_seed(4)
    layer = LAYERS[kind]()
    x = torch.randn(3, 32)
    before = layer(x)
    layer.normal = "int" if layer.normal == "flint" else "flint"
    fresh = copy.deepcopy(layer)
    got = layer(x)
    assert torch.equal(got, fresh(x)) and not torch.equal(got, before)
    assert torch.allclose(layer(x.double()).float(), got, rtol=1e-5, atol=1e-5)  # the general path agrees
