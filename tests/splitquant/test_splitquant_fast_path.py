"""SplitQuantLinear's eager fast path (one C++ call on per-layer cached views, bias fused) and the
fused kernel's vectorised decode and panel GEMM (csrc/cpu/splitquant/splitquant.cpp,
splitquant_gemm.inc).

Bounds: the decode is bitwise the scalar decode on every tier (no fused multiply-add); the
product obeys |y - (x @ W.T + b)| <= 1e-5 * (|x| @ |W|.T + |b|) elementwise (W the decoded
weight, reference in float64) on every tier, below and above the 8-row GEMM switch; the fast path
returns bitwise what the general path (QuantModule.forward -> FusedSplitQuantWeight.matmul)
returns."""
import copy
import pickle

import numpy as np
import pytest
import torch

from numkern._core import splitquant as C
from numkern.quant import splitquant


def _layer(k, n, bits, group_size, seed, bias=True):
    torch.manual_seed(seed)
    lin = torch.nn.Linear(k, n, bias=bias)
    return splitquant(torch.nn.Sequential(lin), bits=bits, k=3, fused=True, group_size=group_size)[0]


def _general(m, x):
    return super(type(m), m).forward(x)


def _check(y, x, m):
    w = m.dequantized_weight().double()
    x = x.double().reshape(-1, w.shape[1])
    b = torch.zeros(w.shape[0], dtype=torch.float64) if m.bias is None else m.bias.double()
    ref = x @ w.T + b
    bound = 1e-5 * (x.abs() @ w.abs().T + b.abs()) + 1e-30
    assert torch.all((y.double().reshape(ref.shape) - ref).abs() <= bound)


@pytest.mark.parametrize("bits", [2, 4, 8])
@pytest.mark.parametrize("k,n,gs", [(256, 70, 128), (200, 33, 8), (96, 40, 32), (60, 9, 12)])
def test_decode_is_bitwise_the_scalar_decode(isa, bits, k, n, gs):
    from numkern._core import set_isa  # noqa: I001

    m = _layer(k, n, bits, gs, k + n)
    parts = [t.numpy() for t in (m.codes, m.clusters, m.scales, m.offsets)]
    ref = np.empty((n, k), np.float32)
    got = np.empty((n, k), np.float32)
    gs = m.group_size
    C.fused_decode(*parts, got, gs, bits)
    set_isa("portable")
    try:
        C.fused_decode(*parts, ref, gs, bits)
    finally:
        set_isa(isa)
    assert np.array_equal(got.view(np.uint32), ref.view(np.uint32))


@pytest.mark.parametrize("bits", [2, 4, 8])
@pytest.mark.parametrize("k,n,gs", [(600, 45, 40), (600, 33, 300), (640, 40, 128), (520, 9, 24), (250, 37, 5),
                                    (640, 70, 16), (512, 50, 64), (768, 40, 384), (1536, 24, 1536),
                                    (1024, 20, 512)])
def test_panel_gemm_over_decode_chunks(isa, bits, k, n, gs):
    """From 8 rows the panel GEMM decodes whole groups a chunk at a time (256 columns or the
    multiple of the group size below it; for a longer group the largest part of it that divides
    it, is a multiple of 16 and at most 256 -- 192 of 384, 256 of 1536 or 512 --, else the group;
    the whole row when a chunk would not start on a byte of the codes): several chunks, a partial
    last chunk, groups longer than a chunk, odd group sizes (group sizes of a multiple of 16: the
    avx512 tier decodes the panel in registers); every batch row within the bound, and each row
    the same as the row computed alone (below the GEMM switch) within the bound too."""
    from numkern import _core

    m = _layer(k, n, bits, gs, k + n + bits)
    g = torch.Generator().manual_seed(k + gs)
    x = torch.randn(40, k, generator=g)
    try:
        _core.set_amx(False)  # (40 rows would take the AMX tiles where the CPU has them)
        with torch.no_grad():
            y = m(x)
            _check(y, x, m)
            one = torch.cat([m(x[i:i + 1]) for i in range(0, 40, 13)])
    finally:
        _core.set_amx(True)
    _check(one, x[0:40:13], m)
    assert torch.allclose(y[0:40:13], one, rtol=0, atol=float((1e-5 * (x[0:40:13].abs() @ m.dequantized_weight().abs().T)).max()) * 2)


def test_corrupt_ids_decode_to_nan_on_the_vector_path():
    m = _layer(64, 8, 4, 16, 0)
    assert m.scales.shape[2] == 3
    clusters = m.clusters.numpy().copy()
    clusters[2, 1] |= 0b11 << 4  # weight (2, 6): id 3 of a k = 3 layer
    w = np.empty((8, 64), np.float32)
    C.fused_decode(m.codes.numpy(), clusters, m.scales.numpy(), m.offsets.numpy(), w, 16, 4)
    assert np.isnan(w[2, 6]) and np.isfinite(np.delete(w.ravel(), 2 * 64 + 6)).all()


@pytest.mark.parametrize("bits", [2, 4])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("gs", [8, 16])  # 16: the few-row kernel with the layer's lane index
def test_fast_path_matches_reference_and_general_path(isa, bits, bias, gs):
    m = _layer(208 if gs == 16 else 200, 70, bits, gs, 3, bias=bias)
    d = m.in_features
    g = torch.Generator().manual_seed(1)
    for shape in [(1, d), (7, d), (8, d), (15, d), (16, d), (3, 45, d), (130, d), (0, d), (d,)]:
        x = torch.randn(shape, generator=g)
        with torch.no_grad():
            y = m(x)
            assert m.__dict__["_nk_fast"].ok
            r = _general(m, x)
        assert y.shape == (*shape[:-1], 70) and y.dtype == torch.float32
        assert torch.equal(y, r)
        _check(y, x, m)


def test_fast_path_follows_changes_and_skips_what_it_does_not_handle():
    m = _layer(64, 16, 4, 16, 5)
    x = torch.randn(4, 64)
    y0 = m(x)
    with torch.no_grad():
        m.offsets.add_(0.5)  # in place: the version counter invalidates the cache
    y1 = m(x)
    assert torch.equal(y1, _general(m, x)) and not torch.equal(y0, y1)
    m.bias = torch.zeros(16)  # replaced buffer
    assert torch.equal(m(x), _general(m, x))
    xg = x.clone().requires_grad_()  # needs a gradient: the general path (inference only: detached)
    assert torch.equal(m(xg), m(x))
    xt = torch.randn(64, 4).T  # non-contiguous, float64: the general path
    assert torch.equal(m(xt), _general(m, xt.contiguous()))
    assert m(x.double()).dtype == torch.float64
    with pytest.raises(ValueError, match="x: last dimension"):
        m(torch.randn(3, 63))



@pytest.mark.parametrize("rows", [3, 9, 40])
def test_ids_written_in_place_or_replaced_are_followed(rows):
    """``clusters`` (what the kernels read) is derived from the stored stream ``ids``: a write to
    ids, in place or by replacement, is followed by the next call (fast path and general path)."""
    from numkern.quant.splitquant._format import FusedSplitQuantWeight

    m = _layer(96, 40, 4, 32, 8)
    x = torch.randn(rows, 96, generator=torch.Generator().manual_seed(rows))
    y0 = m(x)  # the fast state made from the original ids
    orig = m.ids.clone()
    zero = torch.zeros_like(orig)  # every id the coding's first symbol
    ref = FusedSplitQuantWeight.from_compact(m.codes, zero.numpy(), m.id_coding, m.id_order, m.scales, m.offsets,
                                             m.in_features, m.group_size, m.bits)
    w = torch.from_numpy(ref.dequantize()).double()
    with torch.no_grad():
        m.ids.copy_(zero)  # in place
    y1 = m(x)
    want = x.double() @ w.T + m.bias.double()
    torch.testing.assert_close(y1.double(), want, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(y0, y1, rtol=1e-3, atol=1e-3)  # the change matters
    assert torch.equal(_general(m, x), y1)
    m.ids = orig.clone()  # replaced: back to the original weight
    assert torch.equal(m(x), y0)
    with torch.no_grad():
        m.ids.fill_(255)  # a stream of the wrong length: load's error, not the old ids
    with pytest.raises(ValueError, match="ids"):
        m(x)

def test_partial_last_group_takes_the_general_path():
    m = _layer(100, 6, 4, 64, 2)  # 100 = 64 + 36: padded packed rows
    x = torch.randn(5, 100)
    y = m(x)
    assert not m.__dict__["_nk_fast"].ok
    _check(y, x, m)


def test_cache_stays_out_of_copies():
    m = _layer(64, 16, 4, 16, 6)
    x = torch.randn(9, 64)
    y = m(x)
    assert "_nk_fast" in m.__dict__
    for c in (copy.deepcopy(m), pickle.loads(pickle.dumps(m))):
        assert "_nk_fast" not in c.__dict__
        assert torch.equal(c(x), y)


def _lane_pos(col, n_in):
    """The byte of column col in a lane-index row (splitquant.hpp lane_pos): in each whole block of
    64 columns, column 64 b + 16 s + j at byte 64 b + 4 j + s; past the last whole block, in order."""
    b, r = col // 64 * 64, col % 64
    return b + 4 * (r % 16) + r // 16 if b + 64 <= n_in else col


def _lane_index_reference(codes, clusters, out, n_in, bits):
    """id << bits | code of every weight, from the packed bytes by numpy (little-endian fields),
    at its byte of the interleaved rows."""
    per = 8 // bits
    cb = np.unpackbits(codes[:, :, None], axis=2, bitorder="little").reshape(out, -1, per, bits)
    code = (cb * (1 << np.arange(bits))).sum(-1).reshape(out, -1)[:, :n_in]
    ib = np.unpackbits(clusters[:, :, None], axis=2, bitorder="little").reshape(out, -1, 4, 2)
    ids = (ib * np.array([1, 2])).sum(-1).reshape(out, -1)[:, :n_in]
    plain = ((ids << bits) | code).astype(np.uint8)
    index = np.empty_like(plain)
    index[:, [_lane_pos(c, n_in) for c in range(n_in)]] = plain
    return index


@pytest.mark.parametrize("bits", [2, 4])
@pytest.mark.parametrize("k_clusters", [1, 3, 4])
@pytest.mark.parametrize("n_in,out,gs", [(256, 70, 128), (96, 40, 16), (480, 23, 32), (64, 5, 64), (208, 9, 16),
                                        (144, 17, 48), (112, 6, 112)])
def test_few_rows_kernel_with_and_without_the_lane_index(isa, bits, k_clusters, n_in, out, gs):
    """1 to 15 batch rows with 2- / 4-bit codes and groups of a multiple of 16 take the few-row
    kernel on the AVX-512 tier (weights in registers; with the lane index, looked up in per-group
    tables): bitwise the same result with and without the index on every tier (elsewhere the index
    is ignored), within the documented bound of the float64 product, and a corrupt id (3 of a
    k = 3 layer) gives NaN in its row only."""
    torch.manual_seed(n_in + out + bits)
    lin = torch.nn.Linear(n_in, out)
    m = splitquant(torch.nn.Sequential(lin), bits=bits, k=k_clusters, fused=True, group_size=gs)[0]
    parts = [t.numpy() for t in (m.codes, m.clusters, m.scales, m.offsets)]
    index = np.empty((out, n_in), np.uint8)
    C.lane_index(parts[0], parts[1], index, bits)
    assert np.array_equal(index, _lane_index_reference(parts[0], parts[1], out, n_in, bits))
    w = m.dequantized_weight().double()
    b = m.bias.numpy()
    g = np.random.default_rng(out)
    for rows in (1, 2, 3, 5, 7, 8, 11, 15, 16):
        x = g.standard_normal((rows, n_in)).astype(np.float32)
        y0 = np.empty((rows, out), np.float32)
        y1 = np.empty((rows, out), np.float32)
        C.fused_linear(x, *parts, b, y0, gs, bits)
        C.fused_linear(x, *parts, b, y1, gs, bits, index)
        assert np.array_equal(y0.view(np.uint32), y1.view(np.uint32)), rows
        ref = torch.from_numpy(x).double() @ w.T + m.bias.double()
        bound = 1e-5 * (torch.from_numpy(x).double().abs() @ w.abs().T + m.bias.double().abs())
        assert torch.all((torch.from_numpy(y1).double() - ref).abs() <= bound), rows
    if k_clusters == 3:
        bad_ids = parts[1].copy()
        bad_ids[2, 1] |= 0b11 << 4  # weight (2, 6): id 3
        bad_index = index.copy()
        pos = _lane_pos(6, n_in)
        bad_index[2, pos] = (3 << bits) | (bad_index[2, pos] & ((1 << bits) - 1))
        x = g.standard_normal((3, n_in)).astype(np.float32)
        cases = [(None, bad_ids)] + ([(bad_index, parts[1])] if C.index_applies(3, gs, bits) else [])
        for idx, ids in cases:
            y = np.empty((3, out), np.float32)
            C.fused_linear(x, parts[0], ids, parts[2], parts[3], b, y, gs, bits, idx)
            assert np.isnan(y[:, 2]).all() and np.isfinite(np.delete(y, 2, axis=1)).all()


def test_lane_index_arguments():
    m = _layer(64, 8, 4, 16, 0)
    parts = [t.numpy() for t in (m.codes, m.clusters, m.scales, m.offsets)]
    x = np.ones((2, 64), np.float32)
    y = np.empty((2, 8), np.float32)
    with pytest.raises(ValueError, match="^index: "):
        C.fused_linear(x, *parts, None, y, 16, 4, np.zeros((8, 63), np.uint8))
    with pytest.raises(TypeError, match="^index: "):
        C.fused_linear(x, *parts, None, y, 16, 4, np.zeros((8, 64), np.int32))
    with pytest.raises(ValueError, match="^bits: "):
        C.lane_index(parts[0], parts[1], np.zeros((8, 64), np.uint8), 8)
    with pytest.raises(ValueError, match="^codes: "):
        C.lane_index(parts[0], parts[1], np.zeros((8, 66), np.uint8), 4)
    m8 = _layer(64, 8, 8, 16, 0)
    p8 = [t.numpy() for t in (m8.codes, m8.clusters, m8.scales, m8.offsets)]
    with pytest.raises(ValueError, match="^index: "):
        C.fused_linear(x, *p8, None, y, m8.group_size, 8, np.zeros((8, 64), np.uint8))


def test_fast_path_makes_the_lane_index_on_first_few_row_call():
    """The layer's lane index (a byte a weight) is made by the first call the few-row kernel takes,
    not before (a layer only ever called on many rows never holds it), and stays out of copies."""
    m = _layer(64, 8, 4, 16, 0)
    g = torch.Generator().manual_seed(4)
    with torch.no_grad():
        big = m(torch.randn(40, 64, generator=g))
        assert not m.__dict__["_nk_fast"].runner.has_index
        x = torch.randn(3, 64, generator=g)
        y = m(x)
    assert m.__dict__["_nk_fast"].runner.has_index == C.index_applies(3, 16, 4)
    assert torch.equal(y, _general(m, x)) and big.shape == (40, 8)
    assert "_nk_fast" not in copy.deepcopy(m).__dict__


class _Sub(torch.Tensor):
    pass


def test_call_runner_takes_only_what_it_can(runner_hook_checks):
    """SplitQuantLinear.__call__ hands x to the layer's LayerRunner (C++) once forward has made the
    layer's state: bitwise what forward returns for what it takes; None -- the general call then
    decides -- for anything but an exact float32 contiguous strided CPU torch.Tensor without
    gradient or negative bit whose last dimension is in_features, while hooks are set, under
    torch.jit.trace, and once a buffer changed."""
    m = _layer(64, 24, 4, 16, 9)
    g = torch.Generator().manual_seed(6)
    x = torch.randn(5, 64, generator=g)
    with torch.no_grad():
        y = m(x)
    st = m.__dict__["_nk_fast"]
    for xx in (x, x[:0], x.reshape(5, 1, 64), x[1], torch.randn(40, 64, generator=g)):
        r = st.run(m, xx)
        assert r is not None and r.dtype == torch.float32 and r.shape == (*xx.shape[:-1], 24)
        assert torch.equal(r, _general(m, xx))
    assert torch.equal(st.run(m, x), y)
    neg = torch._neg_view(x)
    refused = [x.double(), x.clone().requires_grad_(True), torch.randn(64, 5, generator=g).T, x[:, :63].contiguous(),
               x.as_subclass(_Sub), neg, x.numpy(), None, torch.tensor(1.0)]
    for xx in refused:
        assert st.run(m, xx) is None
    torch.testing.assert_close(m(neg), _general(m, -x), rtol=0, atol=0)
    runner_hook_checks(m, st.run, x)
    with torch.no_grad():
        m.scales.mul_(2.0)  # in place: the version counter moves
    assert st.run(m, x) is None
    y2 = m(x)  # a new state
    assert torch.equal(y2, _general(m, x)) and not torch.equal(y2, y)
    assert m.__dict__["_nk_fast"] is not st and m.__dict__["_nk_fast"].run(m, x) is not None


def test_vmap_takes_the_operator():
    """Under torch.func.vmap (wrapper tensors without data for the C++ fast path) the layer takes
    torch.ops.numkern.splitquant_matmul, whose vmap rule makes the samples more rows of one call:
    each sample within float32 rounding of the layer alone (the row count picks the kernel)."""
    m = _layer(64, 8, 4, 16, 2)
    x = torch.randn(3, 5, 64, generator=torch.Generator().manual_seed(9))
    with torch.no_grad():
        ref = torch.stack([m(x[i]) for i in range(3)])
        y = torch.func.vmap(m)(x)
        mag = x.abs() @ m.dequantized_weight().abs().T + m.bias.abs()
    assert torch.all((y - ref).abs() <= 1e-6 * mag)


def test_lane_index_can_be_turned_off(monkeypatch):
    """NUMKERN_SPLITQUANT_INDEX=0 (read when the layer's fast path is set up): no lane index is
    made, and the layer's few-row calls return the same bits."""
    x = torch.randn(3, 64, generator=torch.Generator().manual_seed(12))
    with torch.no_grad():
        on = _layer(64, 8, 4, 16, 0)
        y_on = on(x)
        on(x)
        monkeypatch.setenv("NUMKERN_SPLITQUANT_INDEX", "0")
        off = _layer(64, 8, 4, 16, 0)
        y_off = off(x)
        off(x)
    assert not off.__dict__["_nk_fast"].runner.has_index
    assert on.__dict__["_nk_fast"].runner.has_index == C.index_applies(3, 16, 4)
    assert torch.equal(y_on, y_off) and torch.equal(off(x), y_on)


def _layer_k(k_in, n, bits, group_size, clusters, seed):
    torch.manual_seed(seed)
    lin = torch.nn.Linear(k_in, n)
    return splitquant(torch.nn.Sequential(lin), bits=bits, k=clusters, fused=True, group_size=group_size)[0]


@pytest.mark.parametrize("bits", [2, 4])
@pytest.mark.parametrize("clusters", [1, 2, 3])
@pytest.mark.parametrize("k,n,gs", [(640, 70, 128), (600, 33, 40), (250, 37, 5), (208, 100, 16), (96, 64, 12),
                                    (1024, 96, 64)])  # (the last: a pack built over threads where there are several)
def test_panel_pack_gives_the_packed_rows_bits(isa, bits, clusters, k, n, gs):
    """From 8 batch rows on the avx512 tier (AMX off) the layer's call builds the weight's panel pack
    and decodes the panel GEMM's buffer from it: bitwise the general path's result (which decodes
    the packed rows), with 1-3 clusters (0-2 blends), odd group sizes, several chunks and a partial
    last panel; the other tiers make no pack and give the same bits too."""
    from numkern import _core

    m = _layer_k(k, n, bits, gs, clusters, k + n + gs + clusters)
    g = torch.Generator().manual_seed(n + bits)
    try:
        _core.set_amx(False)
        with torch.no_grad():
            for rows in (8, 16, 41, 130):
                x = torch.randn(rows, k, generator=g)
                y = m(x)
                assert torch.equal(y, _general(m, x)), rows
                _check(y, x, m)
        assert m.__dict__["_nk_fast"].runner.has_panels == C.pack_applies(130, m.group_size, bits)
        # (AMX off: the float panel GEMM at 130 rows, which reads a pack on the avx512 tier only)
        assert C.pack_applies(130, m.group_size, bits) == (isa == "avx512")
    finally:
        _core.set_amx(True)


@pytest.mark.parametrize("bits", [2, 4])
def test_panel_pack_corrupt_id_gives_nan_like_the_packed_rows(isa, bits):
    """An id >= k in a k = 3 layer (the 2-bit field can name cluster 3) decodes to NaN from the pack
    too (its tables hold offset NaN there, and the id's 4 values take the full blend): NaN in that
    output column for every row, the other columns the general path's bits."""
    from numkern import _core

    m = _layer(128, 40, bits, 16, 7)
    with torch.no_grad():
        m.clusters[33, 5] |= 0b11 << 2  # weight (33, 21): id 3
    x = torch.randn(64, 128, generator=torch.Generator().manual_seed(2))
    try:
        _core.set_amx(False)
        with torch.no_grad():
            y = m(x)
            r = _general(m, x)
        assert m.__dict__["_nk_fast"].runner.has_panels == C.pack_applies(64, 16, bits)
    finally:
        _core.set_amx(True)
    assert torch.isnan(y[:, 33]).all() and torch.isnan(r[:, 33]).all()
    keep = [j for j in range(40) if j != 33]
    assert torch.equal(y[:, keep], r[:, keep]) and torch.isfinite(y[:, keep]).all()


def test_panel_pack_can_be_turned_off(monkeypatch):
    """NUMKERN_SPLITQUANT_INDEX=0 also keeps the panel pack from being made (made at all on the
    avx512 tier only); same bits."""
    from numkern import _core

    x = torch.randn(40, 64, generator=torch.Generator().manual_seed(13))
    try:
        _core.set_amx(False)
        with torch.no_grad():
            on = _layer(64, 40, 4, 8, 1)
            y_on = on(x)
            monkeypatch.setenv("NUMKERN_SPLITQUANT_INDEX", "0")
            off = _layer(64, 40, 4, 8, 1)
            y_off = off(x)
    finally:
        _core.set_amx(True)
    assert on.__dict__["_nk_fast"].runner.has_panels == (_core.isa() == "avx512")
    assert not off.__dict__["_nk_fast"].runner.has_panels
    assert torch.equal(y_on, y_off)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("bits", [2, 4, 8])
def test_panel_gemm_direct_write_is_the_epilogue(isa, bits, bias):
    """On a full panel's last chunk the tiles write y themselves (bias added there); a partial last
    panel goes through the panel's sums and the epilogue.  The same weight rows give the same bits
    either way: rows 64..69 of a 70-row layer (partial panel: epilogue) against the same rows as the
    first 6 of a full 96-row layer's third panel (direct), over 300 batch rows (two 256-row blocks),
    and every row within the bound of the float64 product."""
    from numkern import _core

    m = _layer(320, 96, bits, 64, 11 + bits, bias=bias)
    parts = [m.codes.numpy(), m.clusters.numpy(), m.scales.numpy(), m.offsets.numpy()]
    b = None if m.bias is None else m.bias.detach().numpy()
    x = np.random.default_rng(5).standard_normal((300, 320)).astype(np.float32)
    try:
        _core.set_amx(False)  # (the float panel GEMM, not the AMX tiles)
        y96 = np.full((300, 96), np.nan, np.float32)
        C.fused_linear(x, *parts, b, y96, m.group_size, bits, None)
        y70 = np.full((300, 70), np.nan, np.float32)
        C.fused_linear(x, *(p[:70] for p in parts), None if b is None else b[:70], y70, m.group_size, bits, None)
        y32 = np.full((300, 32), np.nan, np.float32)  # rows 64..95 alone: one full panel, direct
        C.fused_linear(x, *(p[64:] for p in parts), None if b is None else b[64:], y32, m.group_size, bits, None)
    finally:
        _core.set_amx(True)
    assert np.array_equal(y70.view(np.uint32), y96[:, :70].view(np.uint32))
    assert np.array_equal(y32.view(np.uint32), y96[:, 64:].view(np.uint32))
    with torch.no_grad():
        _check(torch.from_numpy(y96), torch.from_numpy(x), m)
