"""The eager fast path of activation-quantized OVPLinear (W4A8 / W8A8): one C++ call
(numkern._core.olive.linear_int8act: per-tensor activation quantization, integer matmul, bias
added in float32) on per-layer cached views.  It returns bitwise what the general path
(QuantModule.forward -> _gemm: act_matmul, then the bias added by torch) returns, and it follows
weight, bias, threshold and calibration changes."""
import copy
import pickle

import numpy as np
import pytest
import torch

from numkern._core import olive as C
from numkern.quant import olive as O


def _layer(k, n, bits, bias=True, both_outliers="larger", seed=0):
    torch.manual_seed(seed)
    m = O.OVPLinear.from_linear(torch.nn.Linear(k, n, bias=bias), bits=bits, act_bits=8,
                                both_outliers=both_outliers)
    return O.calibrate(m, [torch.randn(64, k)])


def _general(m, x):
    return super(O.OVPLinear, m).forward(x)


@pytest.mark.parametrize("bits", [4, 8])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("both_outliers", ["larger", "left"])
def test_fast_path_is_bitwise_the_general_path(isa, bits, bias, both_outliers):
    m = _layer(96, 40, bits, bias, both_outliers)
    g = torch.Generator().manual_seed(2)
    for shape in [(1, 96), (5, 96), (3, 7, 96), (0, 96), (96,)]:
        x = torch.randn(shape, generator=g) * 2.5  # beyond the threshold: activation outliers
        with torch.no_grad():
            y = m(x)
            assert type(m.__dict__["_nk_fast"]).__name__ == "_ActFast"
            r = _general(m, x)
        assert y.shape == (*shape[:-1], 40) and y.dtype == torch.float32
        assert torch.equal(y, r)


def test_fast_path_follows_changes():
    m = _layer(64, 24, 4)
    x = torch.randn(6, 64) * 2
    y0 = m(x)
    m.act_alpha.fill_(float(m.act_alpha) * 2)  # threshold changed in place
    y1 = m(x)
    assert torch.equal(y1, _general(m, x)) and not torch.equal(y0, y1)
    m.bias = torch.ones(24)
    assert torch.equal(m(x), _general(m, x))
    O.calibrate(m, [torch.randn(64, 64) * 3])  # calibration runs the general path, then re-arms
    assert torch.equal(m(x), _general(m, x))


def test_uncalibrated_and_non_finite_input_take_the_general_path():
    torch.manual_seed(0)
    m = O.OVPLinear.from_linear(torch.nn.Linear(32, 8), bits=4, act_bits=8)
    x = torch.randn(4, 32)
    with pytest.warns(UserWarning, match="before calibration"):
        y = m(x)
    assert m.calibrated and torch.equal(y, m(x)) and torch.equal(m(x), _general(m, x))
    bad = x.clone()
    bad[1, 3] = float("nan")
    with pytest.raises(ValueError):
        m(bad)


def test_linear_int8act_binding():
    m = _layer(32, 8, 4)
    m(torch.randn(2, 32))
    st = m.__dict__["_nk_fast"]
    pk, scales = st.args[0], st.args[1]
    x = np.random.default_rng(0).standard_normal((3, 32)).astype(np.float32)
    ref = np.empty((3, 8), np.float32)
    assert C.matmul_int8act(x, pk, scales, ref, True, st.args[3], 8, 0, False)
    assert np.array_equal(C.linear_int8act(x, pk, scales, True, st.args[3], 8, 0, False), ref)
    bias = np.arange(8, dtype=np.float32)
    assert np.array_equal(C.linear_int8act(x, pk, scales, True, st.args[3], 8, 0, False, bias), ref + bias)
    x[0, 0] = np.inf
    assert C.linear_int8act(x, pk, scales, True, st.args[3], 8, 0, False) is None
    with pytest.raises(ValueError, match="x: last dimension"):
        C.linear_int8act(np.zeros((2, 31), np.float32), pk, scales, True, 1.0, 8, 0, False)
    with pytest.raises(ValueError, match="act_alpha"):
        C.linear_int8act(x, pk, scales, True, 0.0, 8, 0, False)
    with pytest.raises(ValueError, match="layout 'rows'"):
        C.linear_int8act(x, C.prepack(m.codes.numpy(), m.scales.numpy(), True, 32, 4, 0, "panels"), scales,
                         True, 1.0, 8, 0, False)


def test_cache_stays_out_of_copies():
    m = _layer(32, 8, 8)
    x = torch.randn(5, 32)
    y = m(x)
    for c in (copy.deepcopy(m), pickle.loads(pickle.dumps(m))):
        assert "_nk_fast" not in c.__dict__
        assert torch.equal(c(x), y)


def test_call_runner_follows_settings_and_refuses_bad_input():
    """The LayerRunner of an activation-quantized layer (OVPLinear.__call__): bitwise the general
    path; None (the general call decides) once an activation setting changes, a calibration
    starts, or x holds a non-finite value; bad arguments to its constructor are clear errors."""
    m = _layer(64, 24, 4)
    g = torch.Generator().manual_seed(3)
    x = torch.randn(5, 64, generator=g) * 2
    m(x)
    st = m.__dict__["_nk_fast"]
    with torch.no_grad():
        assert torch.equal(st.run(m, x), _general(m, x))
    bad = x.clone()
    bad[2, 1] = float("inf")
    assert st.run(m, bad) is None
    with pytest.raises(ValueError):
        m(bad)
    m.both_outliers = "left"  # a setting the kernel reads
    assert st.run(m, x) is None
    m.both_outliers = "larger"
    assert st.run(m, x) is not None
    m._calib = []  # calibrate() records through the general path
    assert st.run(m, x) is None
    m._calib = None
    m.act_granularity = "token"  # per token: another quantization of x
    assert st.run(m, x) is None
    m.act_granularity = "tensor"
    assert st.run(m, x) is not None
    pk, scales = st.args[0], st.args[1]
    args = (pk, scales, True, None, (), (1.0, 8, 0, False), torch.Tensor, torch.float32, torch.strided, torch.from_numpy)
    with pytest.raises(ValueError, match="act_alpha"):
        C.LayerRunner(*args[:5], (0.0, 8, 0, False), *args[6:])
    with pytest.raises(ValueError, match="layout 'rows'"):
        C.LayerRunner(C.prepack(m.codes.numpy(), m.scales.numpy(), True, 64, 4, 0, "panels"), *args[1:])
    with pytest.raises(ValueError, match="bias"):
        C.LayerRunner(pk, scales, True, np.zeros(3, np.float32), *args[4:])
    with pytest.raises(ValueError, match="watch"):
        C.LayerRunner(*args[:4], ((m.__dict__, "x", None, -5),), *args[5:])
    r = C.LayerRunner(*args)  # no call checks set: never runs
    assert r.run(m, x) is None
