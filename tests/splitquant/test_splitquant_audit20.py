"""Audit of the fused SplitQuant matmul as a user calls it (SplitQuantLinear, FusedSplitQuantWeight
.matmul) across its CPU paths: 1-7 rows (few-row kernels, with and without the lane index), 8+ rows
(panel GEMM, with and without the panel pack), AMX on / off, every tier the CPU supports.

Contracts (docs/splitquant.md): y = x W^T + b with W = dequantize() bitwise the decoded weight;
every path within 1e-5 (|x| |W|^T + |b|) of the float64 product (rows of the lengths tested here;
the worst case for long rows is about (in + 1) 2^-24 of it), the layer's fast path bitwise its
general path; a non-finite x gives the IEEE NaN / inf pattern of x @ W^T + b; the result does not
depend on the thread count; with AMX, x with entries the tiles would flush takes the float path
(amx.hpp split32), so the bound holds there too."""
import itertools

import numpy as np
import pytest
import torch

import numkern
from numkern import _core
from numkern.quant import splitquant
from numkern.quant.splitquant._format import FusedSplitQuantWeight

TIERS = [t for t in ("avx512", "avx2", "portable") if _core.isa_supported(t)]
CONFIGS = [(t, amx) for t in TIERS for amx in ((True, False) if t == "avx512" else (False,))]


@pytest.fixture(autouse=True)
def _restore():
    isa, threads = _core.isa(), _core.get_num_threads()
    yield
    _core.set_isa(isa)
    _core.set_amx(True)
    _core.set_num_threads(threads)


def _layer(in_f, out_f, bits, k, gs, bias=True, seed=0, positive=False):
    torch.manual_seed(seed)
    lin = torch.nn.Linear(in_f, out_f, bias=bias)
    if positive:
        with torch.no_grad():
            lin.weight.uniform_(0.5, 1.0)
    return splitquant(lin, bits=bits, k=k, group_size=gs, fused=True)


def _weight(layer):
    fw = FusedSplitQuantWeight(layer.codes.numpy(), layer.clusters.numpy(), layer.scales.numpy(),
                               layer.offsets.numpy(), layer.in_features, layer.group_size, layer.bits)
    b = None if layer.bias is None else layer.bias.detach().numpy()
    return fw, fw.dequantize(), b


def _ref(x, w, b):
    with np.errstate(all="ignore"):
        y = x.astype(np.float64) @ w.astype(np.float64).T
        return y if b is None else y + b.astype(np.float64)


def _bound(x, w, b, rel=1e-5):
    xa = np.abs(np.nan_to_num(x.astype(np.float64), posinf=0, neginf=0))
    return rel * (xa @ np.abs(w.astype(np.float64)).T + (0 if b is None else np.abs(b.astype(np.float64))))


def _assert_ieee(y, x, w, b, tag):
    """NaN where the float64 product is NaN, inf of its sign where it is inf, elsewhere the bound."""
    y = np.asarray(y, np.float64)
    r = _ref(x, w, b)
    assert np.array_equal(np.isnan(y), np.isnan(r)), tag
    inf = np.isinf(r)
    assert np.array_equal(np.isinf(y), inf) and np.array_equal(np.sign(y[inf]), np.sign(r[inf])), tag
    fin = np.isfinite(r)
    with np.errstate(invalid="ignore"):  # (inf - inf outside fin)
        err = np.abs(y - r)
    assert np.all(err[fin] <= _bound(x, w, b)[fin] + 1e-30), tag


def _paths(layer, fw, x, b):
    """(name, output) of every way a user reaches the kernel for this x."""
    xt = torch.from_numpy(x)
    with torch.no_grad():
        first = layer(xt).numpy()   # the fast path (builds the lane index / panel pack where they apply)
        second = layer(xt).numpy()  # the fast path with them
        strided = layer(torch.from_numpy(np.repeat(x, 2, axis=1))[:, ::2]).numpy()  # general path
    grad = layer(xt.clone().requires_grad_(True)).detach().numpy()  # the torch operator
    return [("fast", first), ("fast2", second), ("strided", strided), ("grad", grad), ("numpy", fw.matmul(x, b))]


NF_LAYERS = [(64, 40, 2, 3, 16), (96, 33, 4, 4, 32), (96, 33, 8, 2, 24), (100, 35, 4, 1, None), (256, 70, 2, 3, 128)]


@pytest.mark.parametrize("isa,amx", CONFIGS)
def test_nonfinite_x_gives_ieee_pattern_on_every_path(isa, amx):
    """inf / -inf / NaN in some batch rows (one entry, and a whole row of inf meeting every cluster's
    weights, exact zeros included): every path gives the NaN pattern and inf signs of the float64
    x @ dequantize().T + b, the other entries within the bound; batches of every kernel (1-7, 8+,
    32+ rows, and 1100 rows: a NaN only in the second 1024-row AMX chunk)."""
    _core.set_isa(isa)
    _core.set_amx(amx)
    for in_f, out_f, bits, k, gs in NF_LAYERS:
        layer = _layer(in_f, out_f, bits, k, gs, seed=in_f + bits)
        fw, w, b = _weight(layer)
        assert (w == 0).any(axis=1).sum() >= 3  # zero weights for the inf rows to meet
        for n in (1, 3, 7, 8, 9, 33, 40, 1100):
            if n == 1100 and in_f != 256:
                continue
            x = np.random.default_rng(n).standard_normal((n, in_f)).astype(np.float32)
            x[0, 0] = np.inf
            if n > 1:
                x[n - 1, in_f - 1] = -np.inf
            if n > 2:
                x[1, 5] = np.nan
            if n > 3:
                x[2, :] = np.inf
                x[3, ::2], x[3, 1::2] = np.inf, -np.inf
            if n == 1100:
                x[:4] = np.random.default_rng(1).standard_normal((4, in_f))
                x[1050, 7] = -np.inf
            r = _ref(x, w, b)
            assert np.isnan(r).any() or n == 1
            for name, y in _paths(layer, fw, x, b):
                _assert_ieee(y, x, w, b, (isa, amx, in_f, bits, k, gs, n, name))


def test_nonfinite_x_batch_with_amx_is_the_float_path():
    """With AMX on, a batch holding a non-finite x is computed by the float panel GEMM (docs: from
    the 1024-row chunk with such a row on), so its finite rows are bitwise the AMX-off result."""
    if not _core.amx_available() or _core.isa() != "avx512":
        pytest.skip("needs AMX")
    layer = _layer(256, 64, 4, 3, 32)
    fw, w, b = _weight(layer)
    x = np.random.default_rng(0).standard_normal((40, 256)).astype(np.float32)
    tiles = fw.matmul(x, b)
    x[5, 3] = np.nan
    _core.set_amx(True)
    mixed = fw.matmul(x, b)
    _core.set_amx(False)
    flt = fw.matmul(x, b)
    keep = np.arange(40) != 5
    assert np.array_equal(mixed[keep], flt[keep])
    assert not np.array_equal(tiles[keep], flt[keep])  # (the tiles' result differs in the last bits)
    assert np.isnan(mixed[5]).all()


GROUPS = [8, 16, 32, 128, 24, 100, None]
SHAPES = [(200, 33), (48, 70), (100, 5)]
BATCHES = [0, 1, 7, 8, 9, 31, 32, 33, 257]


@pytest.fixture(scope="module")
def grid():
    """One layer per (bits, group size), k and shape cycling (k = 1..4 and every shape each
    occur with every bits and with several group sizes); bias on every other layer.  Group sizes
    larger than the row are the row (200 % 128, 48 % 32, 100 % 24 ...: partial last groups)."""
    out = []
    for j, (bits, gs) in enumerate(itertools.product([2, 4, 8], GROUPS)):
        in_f, out_f = SHAPES[j % 3]
        k = 1 + j % 4
        out.append((bits, gs, k, _layer(in_f, out_f, bits, k, gs, bias=j % 2 == 0, seed=j)))
    return out


@pytest.mark.parametrize("isa,amx", CONFIGS)
def test_every_path_within_bound_and_bitwise_general(grid, isa, amx):
    """bits 2/4/8, k 1..4, groups 8/16/32/128/24/100/None, in 200/48/100 and out 33/70/5, batches
    0..257: the fast path, the general path (non-contiguous x), the torch operator and numpy matmul
    give the same bits, within the bound of the float64 product; batch 0 gives an empty result."""
    _core.set_isa(isa)
    _core.set_amx(amx)
    for bits, gs, k, layer in grid:
        fw, w, b = _weight(layer)
        for n in BATCHES:
            x = np.random.default_rng(n + layer.in_features).standard_normal((n, layer.in_features))
            x = x.astype(np.float32)
            outs = _paths(layer, fw, x, b)
            for name, y in outs:
                assert y.shape == (n, layer.out_features), name
                assert np.array_equal(y, outs[0][1]), (isa, amx, bits, gs, k, n, name)
            if n:
                r = _ref(x, w, b)
                assert np.all(np.abs(outs[0][1] - r) <= _bound(x, w, b)), (isa, amx, bits, gs, k, n)


@pytest.mark.parametrize("isa,amx", CONFIGS)
def test_thread_count_does_not_change_bits(isa, amx):
    """numkern.set_num_threads(1) and (2): bitwise the same output on every kernel (each output
    element is summed by one thread in a fixed order)."""
    _core.set_isa(isa)
    _core.set_amx(amx)
    for bits, gs in [(2, 32), (4, 16), (8, 128), (4, 24)]:
        layer = _layer(512, 300, bits, 3, gs, seed=bits)
        fw, _, b = _weight(layer)
        for n in (1, 5, 8, 40, 300):
            x = np.random.default_rng(n).standard_normal((n, 512)).astype(np.float32)
            numkern.set_num_threads(1)
            one = [fw.matmul(x, b), layer(torch.from_numpy(x)).detach().numpy()]
            numkern.set_num_threads(2)
            two = [fw.matmul(x, b), layer(torch.from_numpy(x)).detach().numpy()]
            assert all(np.array_equal(p, q) for p, q in zip(one, two)), (isa, amx, bits, gs, n)


@pytest.mark.parametrize("isa,amx", CONFIGS)
def test_long_rows_within_the_worst_case_bound(isa, amx):
    """Same-sign x and W (the worst case for a float32 sum's rounding), 16384 inputs: every path
    within the documented worst case (in + 1) 2^-24 (|x| |W|^T) on the float paths, and within
    2e-5 (|x| |W|^T) measured on the tiles (1.4e-5 at this seed; the 1e-5 of short rows is not a
    bound here)."""
    _core.set_isa(isa)
    _core.set_amx(amx)
    in_f = 16384
    layer = _layer(in_f, 33, 8, 3, 128, bias=False, positive=True)
    fw, w, _ = _weight(layer)
    for n in (1, 5, 8, 40):
        x = np.random.default_rng(0).uniform(0.5, 1.0, (n, in_f)).astype(np.float32)
        err = np.abs(fw.matmul(x).astype(np.float64) - _ref(x, w, None)) / _bound(x, w, None, 1.0)
        tiles = amx and n >= 32 and _core.amx_available()
        assert err.max() <= (2e-5 if tiles else (in_f + 1) * 2.0 ** -24), (isa, amx, n)


def test_tiny_x_within_bound_with_and_without_amx():
    """x entries far below float32's normal range relative to 1 (|x| ~ 1e-35, subnormal 1e-39):
    within 1e-5 (|x| |W|^T) with AMX off and on (the tiles would flush pieces below 2^-126; x
    with a nonzero entry below 2^-40 is not split and takes the float path, amx.hpp split32)."""
    layer = _layer(256, 64, 4, 3, 32, bias=False)
    fw, w, _ = _weight(layer)
    try:
        for scale in (1e-35, 1e-39):
            x = (np.random.default_rng(0).standard_normal((40, 256)) * scale).astype(np.float32)
            for amx in (False, True):
                _core.set_amx(amx)
                y = fw.matmul(x).astype(np.float64)
                assert np.all(np.abs(y - _ref(x, w, None)) <= _bound(x, w, None) + 1e-300), (scale, amx)
    finally:
        _core.set_amx(True)


def test_corrupt_cluster_ids_decode_to_nan_on_every_path():
    """Cluster ids >= k (a corrupt dense2 stream loaded into a k = 3 layer): those weights decode to
    NaN (documented), and every path, AMX on or off, gives NaN exactly where x @ dequantize().T
    does; a stream of only such ids makes every output NaN, without a crash."""
    layer = _layer(64, 40, 4, 3, 32)
    sd = layer.state_dict()
    sd["ids"] = torch.full((64 * 40 // 4,), 0xFF, dtype=torch.uint8)
    sd["_extra_state"] = {**sd["_extra_state"], "id_coding": "dense2", "id_order": []}
    layer.load_state_dict(sd)
    fw, w, b = _weight(layer)
    assert np.isnan(w).all()
    for isa, amx in CONFIGS:
        _core.set_isa(isa)
        _core.set_amx(amx)
        for n in (1, 9, 40):
            x = np.random.default_rng(n).standard_normal((n, 64)).astype(np.float32)
            for name, y in _paths(layer, fw, x, b):
                assert np.isnan(y).all(), (isa, amx, n, name)


@pytest.mark.parametrize("key,value", [
    ("codes", lambda t: t[:-1]), ("codes", lambda t: t.reshape(-1)), ("scales", lambda t: t[:, :1]),
    ("scales", lambda t: torch.cat([t, t[..., :2]], 2)), ("offsets", lambda t: t[:-1]),
    ("bias", lambda t: t[:-1]), ("bias", lambda t: t[None]),
])
def test_wrong_buffer_shapes_raise_naming_the_buffer(key, value):
    """A state dict whose buffers do not fit the layer's settings: ValueError naming a buffer on
    the fast path (few and many rows) and on the general path, never a crash."""
    layer = _layer(64, 40, 4, 3, 32)
    sd = layer.state_dict()
    sd[key] = value(sd[key])
    layer.load_state_dict(sd)
    names = ("codes", "clusters", "scales", "offsets", "bias", "k:")
    for n in (1, 9, 40):
        x = torch.randn(n, 64)
        for grad in (False, True):
            with pytest.raises(ValueError) as e:
                layer(x.clone().requires_grad_(grad))
            assert str(e.value).startswith(names), str(e.value)
