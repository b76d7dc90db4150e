"""SplitQuant's stored size (issue #15 point 4): compact cluster-id streams, state_dict format
version 2 (version 1 still loads, to the same output bit for bit), and ``bits_per_weight`` on
every quantized module (SplitQuantLinear, SplitLayer, QuantizedWeight, OVPLinear / OVPConv*)."""
import importlib

import numpy as np
import pytest

from numkern import quant as q

torch = pytest.importorskip("torch")
nn = torch.nn
sqf = importlib.import_module("numkern.quant.splitquant._format")


@pytest.mark.parametrize("k", [1, 2, 3, 4])
@pytest.mark.parametrize("n", [1, 3, 8, 37, 128])
def test_id_stream_roundtrip(k, n):
    rng = np.random.default_rng(10 * k + n)
    for p in ([1.0 / k] * k, [0.9] + [0.1 / (k - 1)] * (k - 1) if k > 1 else [1.0]):
        ids = rng.choice(k, size=(5, n), p=p).astype(np.uint8)
        coding, order = sqf._id_coding(ids, k)
        stream = sqf.encode_ids(ids, coding, order)
        assert np.array_equal(sqf.decode_ids(stream, coding, order, 5, n), ids)
        total = 5 * n
        expected = {"none": 0, "bits1": -(-total // 8), "dense2": -(-total // 4),
                    "prefix3": -(-(total + int((ids != (order[0] if order else 0)).sum())) // 8)}
        assert stream.size == expected[coding]
        assert coding == {1: "none", 2: "bits1", 3: "prefix3", 4: "dense2"}[k]


def test_prefix_stream_edge_cases():
    # runs of 1s of odd and even length, a stream ending in "10", ids >= k stored densely
    ids = np.array([[2, 2, 2, 1, 0, 1, 1, 2, 2, 1]], np.uint8)
    order = (0, 1, 2)
    s = sqf.encode_ids(ids, "prefix3", order)
    assert np.array_equal(sqf.decode_ids(s, "prefix3", order, 1, 10), ids)
    assert sqf._id_coding(np.array([[0, 3]], np.uint8), 3) == ("dense2", ())
    with pytest.raises(ValueError, match="ids"):
        sqf.decode_ids(s[:1], "prefix3", order, 1, 10)
    with pytest.raises(ValueError, match="ids"):
        sqf.decode_ids(np.zeros(1, np.uint8), "bits1", (), 1, 10)


def _fused_pair(k=3, bits=2, in_f=200, out_f=24, gs=128, seed=0):
    torch.manual_seed(seed)
    lin = nn.Linear(in_f, out_f)
    sq = q.splitquant(lin, bits=bits, k=k, group_size=gs)
    f = q.FusedSplitQuantWeight.from_branches(sq.quantized, sq.weight_labels.numpy())
    return lin, f, q.SplitQuantLinear.from_split(sq)


@pytest.mark.parametrize("k,bits,gs", [(1, 4, 64), (2, 2, 128), (3, 2, 128), (3, 4, 64), (4, 8, 32)])
def test_module_equals_dense_fused_matmul_bitwise(k, bits, gs):
    lin, f, mod = _fused_pair(k, bits, gs=gs)
    x = torch.randn(7, 200)
    ref = f.matmul(x.numpy(), lin.bias.detach().numpy())  # today's dense-id fused kernel call
    assert np.array_equal(mod.clusters.numpy(), f.clusters)
    skel = q.splitquant(nn.Linear(200, 24), bits=8, k=2, group_size=16, fused=True)
    skel.load_state_dict(mod.state_dict())  # only the compact stream travels
    assert "clusters" not in mod.state_dict()
    for m in (mod, skel):
        with torch.no_grad():
            assert np.array_equal(m(x).numpy(), ref)
    assert np.array_equal(skel.clusters.numpy(), f.clusters)


def _v1_state_dict(mod, f):
    """What numkern saved before the compact ids: dense 2-bit clusters, format version 1."""
    sd = {k: v for k, v in mod.state_dict().items() if k not in ("ids", "_extra_state")}
    sd["clusters"] = torch.from_numpy(f.clusters.copy())
    extra = {k: v for k, v in mod.get_extra_state().items() if k not in ("id_coding", "id_order")}
    sd["_extra_state"] = {**extra, "version": 1}
    return sd


def test_version1_state_dict_loads_bitwise():
    lin, f, mod = _fused_pair(3, 2)
    x = torch.randn(5, 200)
    ref = f.matmul(x.numpy(), lin.bias.detach().numpy())
    skel = q.splitquant(nn.Linear(200, 24), bits=4, fused=True)
    skel.load_state_dict(_v1_state_dict(mod, f), strict=True)
    with torch.no_grad():
        assert np.array_equal(skel(x).numpy(), ref)
    assert skel.get_extra_state()["version"] == 2 and "clusters" not in skel.state_dict()
    assert skel.bits_per_weight == mod.bits_per_weight


def test_bad_state_dicts_are_refused():
    _, f, mod = _fused_pair(3, 2)
    bad = _v1_state_dict(mod, f)
    bad["clusters"] = bad["clusters"][:3]  # too few rows for out_features
    with pytest.raises(ValueError, match="version-1"):
        q.splitquant(nn.Linear(200, 24), fused=True).load_state_dict(bad)
    sd = mod.state_dict()
    for change, match in [({"id_coding": "zip"}, "id_coding"), ({"id_order": [0, 0, 1]}, "id_coding"),
                          ({"version": 3}, "version")]:
        bad = dict(sd)
        bad["_extra_state"] = {**sd["_extra_state"], **change}
        with pytest.raises(ValueError, match=match):
            q.splitquant(nn.Linear(200, 24), fused=True).load_state_dict(bad)
    bad = dict(sd)
    bad["ids"] = sd["ids"][:10]  # truncated stream
    with pytest.raises(ValueError, match="ids"):
        q.splitquant(nn.Linear(200, 24), fused=True).load_state_dict(bad)


def test_bits_per_weight_splitquant():
    # k = 2, INT2, 256 inputs in groups of 128: 2 (codes) + 1 (ids) + 4 * 32 / 128 (tables) = 4
    _, f, mod = _fused_pair(2, 2, in_f=256, gs=128)
    assert mod.bits_per_weight == 4.0 == f.bits_per_weight
    assert f.nbytes() == 24 * 256 * 4 // 8
    # k = 3: the prefix code costs 1 bit per id plus 1 per id outside the most frequent cluster
    _, f, mod = _fused_pair(3, 2, in_f=256, gs=128)
    ids = sqf._unpack(f.clusters, 2, 256)
    extra = int((ids != np.bincount(ids.reshape(-1)).argmax()).sum())
    expect = 8 * (24 * 64 + -(-(24 * 256 + extra) // 8) + 24 * 2 * 6 * 4) / (24 * 256)
    assert mod.bits_per_weight == pytest.approx(expect, rel=1e-12) and 2 + 1.5 < expect < 2 + 1.5 + 2
    # the split (unfused) layer: k full branches of codes and tables
    lin = nn.Linear(256, 24)
    sq = q.splitquant(lin, bits=2, k=3, group_size=128)
    assert sq.bits_per_weight == pytest.approx(3 * (2 + 64 / 128))
    assert q.split_model(lin, k=3).bits_per_weight == 96.0
    # plain quantized weights: codes + scale (+ offset unless symmetric) per group
    w = torch.randn(8, 100)
    assert q.quantize_weights(w, 4, group_size=32).bits_per_weight == pytest.approx(
        (8 * 50 * 8 + 8 * 4 * 2 * 32) / 800)  # 4 groups per row (32, 32, 32, 4)
    assert q.quantize_weights(w, 8).bits_per_weight == pytest.approx(8 + 32 / 100)


def test_bits_per_weight_ovp():
    torch.manual_seed(3)
    lin = nn.Linear(96, 16)
    for bits in (4, 8):
        m = q.OVPLinear.from_linear(lin, bits=bits)
        assert m.bits_per_weight == pytest.approx(bits + 32 / 96)
        assert m.bits_per_weight == 8 * m.quantized_weight().nbytes() / (16 * 96)
    conv = nn.Conv2d(3, 8, 3)
    m = q.OVPConv2d.from_conv(conv, bits=4)
    assert m.bits_per_weight == pytest.approx(8 * (8 * 14 + 8 * 4) / (8 * 27))  # 27 cols -> 14 bytes
    m1 = q.OVPConv1d.from_conv(nn.Conv1d(4, 6, 2), bits=8)
    assert m1.bits_per_weight == pytest.approx(8 + 32 / 8)
