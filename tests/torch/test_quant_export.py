"""torch.export of models holding numkern's weight-only quantized layers (OVPLinear, OVPConv2d,
SplitQuantLinear): the layers are traced through their torch operators
(torch.ops.numkern.ovp_matmul / splitquant_matmul) into the exported graph; the exported program
computes what the eager model does within the float path's bound (another summation order),
with a dynamic batch dimension, after torch.export.save / load, strict and non-strict.  An
activation-quantized layer refuses export with a RuntimeError naming act_bits."""
import pytest

torch = pytest.importorskip("torch")

from numkern.quant import quantize_model, splitquant  # noqa: E402


class _Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.c = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.a = torch.nn.Linear(8 * 6 * 6, 40)
        self.b = torch.nn.Linear(40, 16)

    def forward(self, x):
        return self.b(torch.nn.functional.gelu(self.a(self.c(x).flatten(1))))


def _mlp():
    return torch.nn.Sequential(torch.nn.Linear(64, 48), torch.nn.ReLU(), torch.nn.Linear(48, 16))


def _ops(ep):
    return sorted({str(n.target) for n in ep.graph.nodes if "numkern" in str(n.target)})


def _bound(y, ref):
    # the float path's bound, 1e-5 relative to the output scale, as the layers' docs state
    torch.testing.assert_close(y, ref, rtol=1e-5, atol=1e-5 * float(ref.abs().max()))


@pytest.mark.parametrize("strict", [False, True])
@pytest.mark.parametrize("kind", ["ovp4", "ovp8", "splitquant"])
def test_export_weight_only_quantized_models(kind, strict, tmp_path):
    torch.manual_seed(0)
    if kind == "splitquant":
        model, x, x2, op = splitquant(_mlp(), bits=4, fused=True), torch.randn(7, 64), torch.randn(33, 64), \
            "splitquant_matmul"
    else:
        model = quantize_model(_Net().eval(), bits=4 if kind == "ovp4" else 8)
        x, x2, op = torch.randn(5, 3, 6, 6), torch.randn(9, 3, 6, 6), "ovp_matmul"
    with torch.no_grad():
        model(x)  # eager calls first: the fast paths' caches exist when export traces
        ref, ref2 = model(x), model(x2)
    ep = torch.export.export(model, (x,), strict=strict, dynamic_shapes=({0: torch.export.Dim("batch")},))
    assert _ops(ep) == [f"numkern.{op}.default"]
    with torch.no_grad():
        _bound(ep.module()(x), ref)
        _bound(ep.module()(x2), ref2)  # another batch size through the same program
    torch.export.save(ep, tmp_path / "q.pt2")
    with torch.no_grad():
        _bound(torch.export.load(tmp_path / "q.pt2").module()(x2), ref2)


def test_export_follows_the_layer_weights():
    """The exported program holds the quantized buffers it was exported with (codes, scales)."""
    torch.manual_seed(1)
    m = quantize_model(_mlp(), bits=4)
    x = torch.randn(4, 64)
    ep = torch.export.export(m, (x,))
    state = ep.state_dict
    assert any(k.endswith("codes") for k in state) and any(k.endswith("scales") for k in state)
    with torch.no_grad():
        _bound(ep.module()(x), m(x))


def test_export_activation_quantized_layer_refuses_naming_act_bits():
    torch.manual_seed(2)
    m = quantize_model(_mlp(), bits=4, act_bits=8)
    x = torch.randn(4, 64)
    with pytest.warns(UserWarning):
        m(x)  # (sets the uncalibrated thresholds from this batch)
    with pytest.raises(RuntimeError, match="act_bits=8"):
        torch.export.export(m, (x,))
