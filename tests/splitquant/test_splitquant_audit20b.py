"""Audit of SplitQuantLinear's state dict and of the AMX split of tiny operands.

Contracts (docs/splitquant.md, docs/olive.md):
* load_state_dict refuses, before it changes the layer, codes / ids that are not uint8 (TypeError
  naming them: a cast would wrap values >= 256 into other codes), an ``out_features`` other than
  the tables' output rows and an ``id_coding`` that cannot hold the layer's k clusters' ids
  (ValueError naming them); every call path refuses non-uint8 codes set by hand.
* The ids of a partial last group's padding columns never change a result (they are 0 in the
  dense form the kernels read).
* The AMX tiles (SplitQuant from 32 rows, OVP from 2 rows of 4-bit panels and from 10 rows) keep
  the float path's bound |y - x W^T| <= 1e-5 |x| |W|^T for tiny operands: a batch chunk whose x
  holds a nonzero entry below 2^-60 (SplitQuant: 2^-40), or a SplitQuant layer with a nonzero
  decoded weight below 2^-60, goes to the float path.
"""
import io

import numpy as np
import pytest
import torch

import numkern
import numkern.quant as Q
from numkern import _core
from numkern.quant import splitquant
from numkern.quant.splitquant._format import FusedSplitQuantWeight, _pack, _unpack, encode_ids
from numkern.quant.splitquant._torch import SplitQuantLinear


@pytest.fixture(autouse=True)
def _restore():
    yield
    _core.set_amx(True)


def _layer(in_f, out_f, bits=4, k=3, gs=32, bias=True, seed=0):
    torch.manual_seed(seed)
    return splitquant(torch.nn.Linear(in_f, out_f, bias=bias), bits=bits, k=k, group_size=gs, fused=True)


def _outputs(layer, x):
    """The fast path, the general path (non-contiguous x) and the gradient path (torch operator)."""
    with torch.no_grad():
        fast = layer(x).numpy()
        general = layer(torch.repeat_interleave(x, 2, dim=1)[:, ::2]).numpy()
    grad = layer(x.clone().requires_grad_(True)).detach().numpy()
    return fast, general, grad


def _x(n, in_f, seed=0):
    return torch.from_numpy(np.random.default_rng(seed).standard_normal((n, in_f)).astype(np.float32))


# ---- 1: codes / ids must be uint8 --------------------------------------------------------------
@pytest.mark.parametrize("key", ["codes", "ids"])
def test_wide_integer_codes_refused_at_load(key):
    """int64 codes (values >= 256) or ids in a state dict: TypeError naming them at load, and the
    layer keeps computing what it computed (nothing was loaded); before, the gradient path cast
    them to uint8, wrapping 256 + c to c: a silent wrong answer."""
    layer = _layer(64, 40)
    x = _x(9, 64)
    before = _outputs(layer, x)
    sd = layer.state_dict()
    sd[key] = sd[key].to(torch.int64) + 256
    with pytest.raises(TypeError, match=rf"^{key}: expected dtype uint8, got int64"):
        layer.load_state_dict(sd)
    assert layer.codes.dtype == torch.uint8 and layer.ids.dtype == torch.uint8
    for y, y0 in zip(_outputs(layer, x), before):
        assert np.array_equal(y, y0)


def test_wide_integer_codes_refused_on_every_path():
    """codes set by hand to int64 (values >= 256): every path raises TypeError naming codes (the fast
    path did; the gradient path and FusedSplitQuantWeight.matmul / dequantize wrapped them)."""
    layer = _layer(64, 40)
    fw = layer.fused()
    layer.codes = layer.codes.to(torch.int64) + 256
    for n in (1, 9, 40):
        x = _x(n, 64)
        for grad in (False, True):
            with pytest.raises(TypeError, match=r"^codes: expected dtype uint8, got int64"):
                layer(x.clone().requires_grad_(grad))
    wide = FusedSplitQuantWeight(fw.codes.astype(np.int64) + 256, fw.clusters, fw.scales, fw.offsets,
                                 fw.in_features, fw.group_size, fw.bits)
    for call in (lambda: wide.matmul(_x(3, 64).numpy()), lambda: wide.matmul(_x(3, 64)), wide.dequantize):
        with pytest.raises(TypeError, match=r"^codes: expected dtype uint8, got int64"):
            call()
    clusters16 = FusedSplitQuantWeight(fw.codes, fw.clusters.astype(np.uint16), fw.scales, fw.offsets,
                                       fw.in_features, fw.group_size, fw.bits)
    with pytest.raises(TypeError, match=r"^clusters: expected dtype uint8, got uint16"):
        clusters16.matmul(_x(3, 64))


# ---- 2: out_features must match the buffers ----------------------------------------------------
@pytest.mark.parametrize("out_f", [30, 41, 80])
def test_out_features_mismatch_refused_at_load(out_f):
    """_extra_state out_features other than the buffers' output rows: ValueError naming
    out_features at load, the layer unchanged (before: the fast path returned the buffers' 40
    columns, the general path raised a bare reshape RuntimeError)."""
    layer = _layer(64, 40)
    x = _x(9, 64)
    before = _outputs(layer, x)
    sd = layer.state_dict()
    sd["_extra_state"] = {**sd["_extra_state"], "out_features": out_f}
    with pytest.raises(ValueError, match=rf"out_features={out_f}.*scales.* 40 output rows"):
        layer.load_state_dict(sd)
    assert layer.out_features == 40
    for y, y0 in zip(_outputs(layer, x), before):
        assert np.array_equal(y, y0)


def test_out_features_set_by_hand_is_a_named_error():
    layer = _layer(64, 40)
    layer.out_features = 30
    for n in (1, 9, 40):
        for grad in (False, True):
            with pytest.raises(ValueError, match=r"^out_features: 30.*40 output rows"):
                layer(_x(n, 64).requires_grad_(grad))


# ---- 3: id_coding must fit k -------------------------------------------------------------------
CODINGS = {1: "none", 2: "bits1", 3: "prefix3"}


@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_id_coding_must_fit_k(k):
    """A valid stream: none <=> k = 1, bits1 <=> k = 2, prefix3 <=> k = 3; dense2 holds any k (k = 4's
    coding).  Any other pairing (e.g. bits1 for k = 3, whose ids never name cluster 2) is refused at
    load with a ValueError naming id_coding and both k, the layer unchanged; a dense2 stream of the
    same ids loads and gives the same output bitwise."""
    layer = _layer(64, 40, k=k, seed=k)
    assert layer.scales.shape[2] == k and layer.id_coding == CODINGS.get(k, "dense2")
    x = _x(9, 64)
    before = _outputs(layer, x)
    sd = layer.state_dict()
    ids = _unpack(layer.clusters.numpy(), 2, 64)
    for need, coding in CODINGS.items():
        if need == k:
            continue
        order = [0, 1, 2] if coding == "prefix3" else []
        bad = {**sd, "ids": torch.from_numpy(encode_ids(np.minimum(ids, need - 1), coding, order)),
               "_extra_state": {**sd["_extra_state"], "id_coding": coding, "id_order": order}}
        with pytest.raises(ValueError, match=rf"^id_coding: '{coding}' stores the ids of k = {need} clusters.*k = {k}"):
            layer.load_state_dict(bad)
        assert layer.id_coding == CODINGS.get(k, "dense2")
        for y, y0 in zip(_outputs(layer, x), before):
            assert np.array_equal(y, y0)
        with pytest.raises(ValueError, match=r"^id_coding"):
            FusedSplitQuantWeight.from_compact(layer.codes, bad["ids"].numpy(), coding, order, layer.scales,
                                               layer.offsets, 64, 32, 4)
    dense = {**sd, "ids": torch.from_numpy(encode_ids(ids, "dense2")),
             "_extra_state": {**sd["_extra_state"], "id_coding": "dense2", "id_order": []}}
    layer.load_state_dict(dense)
    for y, y0 in zip(_outputs(layer, x), before):
        assert np.array_equal(y, y0)


def test_short_id_stream_refused_before_the_layer_changes():
    """An id stream too short for the weight: ValueError naming ids, and the layer's codes and
    settings are still the ones it had (the check runs before anything loads)."""
    layer = _layer(64, 40)
    x = _x(9, 64)
    before = _outputs(layer, x)
    sd = layer.state_dict()
    other = _layer(64, 40, seed=5).state_dict()
    sd["codes"] = other["codes"]
    sd["ids"] = sd["ids"][:3]
    with pytest.raises(ValueError, match=r"^ids: "):
        layer.load_state_dict(sd)
    for y, y0 in zip(_outputs(layer, x), before):
        assert np.array_equal(y, y0)


# ---- 4: padding ids of a partial last group ----------------------------------------------------
@pytest.mark.parametrize("in_f,gs", [(40, 32), (70, 24), (33, 16)])
def test_corrupt_padding_id_changes_nothing(in_f, gs):
    """k = 3, a partial last group: an id 3 (no such cluster: a NaN weight) in the padding columns
    (past in_features) of a loaded dense2 stream, or in the clusters of a FusedSplitQuantWeight a
    layer is built from, changes no output bit (before: every output row NaN) and no dequantized
    weight."""
    layer = _layer(in_f, 40, gs=gs)
    padded = layer.scales.shape[1] * gs
    assert padded > in_f
    xs = [_x(n, in_f, n) for n in (1, 9, 40)]
    before = [_outputs(layer, x) for x in xs]
    w0 = layer.dequantized_weight().numpy()
    dense = _unpack(layer.clusters.numpy(), 2, padded).copy()
    assert not dense[:, in_f:].any()
    dense[:, in_f:] = 3
    sd = layer.state_dict()
    sd["ids"] = torch.from_numpy(encode_ids(dense, "dense2"))
    sd["_extra_state"] = {**sd["_extra_state"], "id_coding": "dense2", "id_order": []}
    layer.load_state_dict(sd)
    assert np.array_equal(layer.dequantized_weight().numpy(), w0)
    fw = FusedSplitQuantWeight(layer.codes.numpy(), layer.clusters.numpy(), layer.scales.numpy(),
                               layer.offsets.numpy(), in_f, gs, 4)
    rebuilt = SplitQuantLinear(FusedSplitQuantWeight(fw.codes, _pack(dense, 2), fw.scales, fw.offsets, in_f, gs, 4),
                               layer.bias)
    for x, outs in zip(xs, before):
        b = layer.bias.numpy()
        got = (*_outputs(layer, x), *_outputs(rebuilt, x), fw.matmul(x.numpy(), b))
        for y, y0 in zip(got, (*outs, *outs, outs[0])):
            assert not np.isnan(y).any()
            assert np.array_equal(y, y0)


# ---- 5: AMX tiles and tiny operands ------------------------------------------------------------
def _amx_on():
    _core.set_amx(True)
    if not numkern.show_config(file=io.StringIO())["amx"]:
        pytest.skip("needs AMX (numkern.show_config()['amx'])")


def _within_bound(y, x, w, b=None):
    xd, wd = x.astype(np.float64), w.astype(np.float64)
    bd = np.zeros(w.shape[0]) if b is None else b.astype(np.float64)
    err = np.abs(np.asarray(y, np.float64) - (xd @ wd.T + bd))
    return err <= 1e-5 * (np.abs(xd) @ np.abs(wd).T + np.abs(bd))


def _tiny_inputs(n, in_f, w):
    """(name, x): rows scaled to 1e-33 / 1e-35 / subnormal 1e-39, and rows of 1 where output row 0's
    weights are 0 and 1e-35 where they are not (row 0's bound holds only the tiny terms)."""
    rng = np.random.default_rng(n + in_f)
    out = [(f"{s:g}", (rng.standard_normal((n, in_f)) * s).astype(np.float32)) for s in (1e-33, 1e-35, 1e-39)]
    zero = w[0] == 0
    assert zero.any() and (~zero).any()
    mixed = np.where(zero, 1.0, 1e-35 * rng.choice([-1.0, 1.0], (n, in_f))).astype(np.float32)
    return out + [("mixed", mixed)]


def _products_ran(fn):
    before = _core._amx_products()
    y = fn()
    return y, _core._amx_products() > before


@pytest.mark.parametrize("n", [32, 40, 300])
def test_splitquant_amx_tiny_x_within_bound(n):
    """SplitQuantLinear, 32+ rows with AMX on: x ~ 1e-33, 1e-35, 1e-39 and the mixed rows keep
    1e-5 (|x| |W|^T) on every path (before: 2.3x, 225x and more beyond it on the tiles); x of
    ordinary size, exact zeros included, and x down to 2^-40 still run on the tiles."""
    _amx_on()
    layer = _layer(256, 64, bias=False)
    w = layer.dequantized_weight().numpy()
    for name, x in _tiny_inputs(n, 256, w):
        for y in _outputs(layer, torch.from_numpy(x)):
            assert _within_bound(y, x, w).all(), name
    x = np.random.default_rng(1).standard_normal((n, 256)).astype(np.float32)
    x[:, ::3] = 0
    x[0, 1] = -0.0
    with torch.no_grad():
        y, ran = _products_ran(lambda: layer(torch.from_numpy(x)).numpy())
    assert ran and _within_bound(y, x, w).all()
    x = (np.random.default_rng(2).uniform(1, 2, (n, 256)) * 2.0 ** -40).astype(np.float32)  # x's limit, 2^-40
    with torch.no_grad():
        y, ran = _products_ran(lambda: layer(torch.from_numpy(x)).numpy())
    assert ran and _within_bound(y, x, w).all()


def test_splitquant_amx_tiny_weights_within_bound():
    """Decoded weights ~1e-20 (a layer scaled down) against x ~1e-16: each product ~1e-36, whose
    lower piece products the tiles would flush; the weights' split sends it to the float path."""
    _amx_on()
    torch.manual_seed(3)
    lin = torch.nn.Linear(256, 64, bias=False)
    with torch.no_grad():
        lin.weight.mul_(1e-19)
    layer = splitquant(lin, bits=4, k=3, group_size=32, fused=True)
    w = layer.dequantized_weight().numpy()
    assert 0 < np.abs(w[w != 0]).max() < 1e-19
    x = (np.random.default_rng(4).standard_normal((40, 256)) * 1e-16).astype(np.float32)
    for y in _outputs(layer, torch.from_numpy(x)):
        assert _within_bound(y, x, w).all()


@pytest.mark.parametrize("bits", [4, 8])
@pytest.mark.parametrize("n", [4, 12, 40])
def test_ovp_amx_tiny_x_within_bound(bits, n):
    """OVPLinear with AMX on, 4 rows (4-bit panels' few-row tiles), 12 and 40 rows (the tile GEMM):
    tiny x keeps 1e-5 (|x| |W|^T) (before: 15x at 1e-35 and more below); x of ordinary size and x
    down to 2^-60 still run on the tiles from 10 rows."""
    _amx_on()
    torch.manual_seed(bits)
    layer = Q.OVPLinear.from_linear(torch.nn.Linear(256, 64, bias=False), bits=bits)
    w = layer.dequantized_weight().double().numpy()
    for name, x in _tiny_inputs(n, 256, w):
        with torch.no_grad():
            y = layer(torch.from_numpy(x)).numpy()
        assert _within_bound(y, x, w).all(), (name, bits, n)
    rng = np.random.default_rng(5)
    for x in (rng.standard_normal((n, 256)).astype(np.float32),
              (rng.uniform(1, 2, (n, 256)) * 2.0 ** -60).astype(np.float32)):  # the limit, 2^-60
        with torch.no_grad():
            y, ran = _products_ran(lambda: layer(torch.from_numpy(x)).numpy())
        assert _within_bound(y, x, w).all()
        if n >= 10:
            assert ran
