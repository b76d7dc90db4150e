"""``python -m numkern`` section for SplitQuant (numkern.quant): exact vs Lloyd k-means, and
what splitting buys at INT2, on embedded seeded inputs (< 2 s)."""
from __future__ import annotations

import time

import numpy as np


def _wcss(x, labels):
    return float(sum(((x[labels == j] - x[labels == j].mean()) ** 2).sum() for j in np.unique(labels)))


def _weights(rng, rows, cols):
    # weight-like: a narrow bulk with heavy tails (Student t, 3 degrees of freedom)
    return (rng.standard_t(3, size=(rows, cols)) * 0.02).astype(np.float32)


def report(out):
    import importlib

    # the package (numkern.quant.splitquant, the attribute, is the public function of that name)
    sq = importlib.import_module(__package__)

    print("numkern.quant — SplitQuant", file=out)
    rng = np.random.default_rng(2025)
    # 1. Lloyd (the paper's scikit-learn clustering) stops at a local optimum on skewed data
    x = np.concatenate([rng.normal(0, 1, 20000), rng.normal(9, 0.3, 300), rng.normal(14, 0.3, 200)])
    t = time.perf_counter()
    _, lab = sq.kmeans1d(x, 3)
    t_opt = time.perf_counter() - t
    opt = _wcss(x, lab)
    try:
        from sklearn.cluster import KMeans

        worst = max(KMeans(3, n_init=1, random_state=s).fit(x[:, None]).inertia_ for s in range(5))
        who = "sklearn KMeans (n_init=1, 5 seeds), worst"
    except ImportError:
        worst = max(_wcss(x, sq.kmeans1d(x, 3, method="lloyd", seed=s)[1]) for s in range(5))
        who = "k-means++ / Lloyd (5 seeds), worst"
    print(f"  k-means k=3, n={x.size}: optimal WCSS {opt:.6g} ({t_opt * 1e3:.1f} ms); "
          f"{who} {worst:.6g} ({worst / opt:.3f}x the optimum)", file=out)
    # 2. INT2 weight error of one 512 x 512 layer, with and without splitting
    w = _weights(rng, 512, 512)
    plain = sq.quantize_weights(w, 2, group_size=128).dequantize()
    labels = sq.cluster_labels(w.reshape(1, -1), 3).reshape(w.shape)
    branches = [sq.quantize_weights(np.where(labels == j, w, 0), 2, group_size=128)
                for j in range(3)]
    split = sum(b.dequantize() for b in branches)
    fused = sq.FusedSplitQuantWeight.from_branches(branches, labels)
    mse_p = float(((plain - w) ** 2).mean())
    mse_s = float(((split - w) ** 2).mean())
    dev = float(np.abs(fused.dequantize() - split).max())
    bits = 8 * (fused.codes.nbytes + fused.clusters.nbytes + fused.scales.nbytes
                + fused.offsets.nbytes) / w.size
    print(f"  INT2 (groups of 128), 512x512 heavy-tailed weights: MSE plain {mse_p:.3e}, "
          f"SplitQuant {mse_s:.3e} ({mse_p / mse_s:.1f}x lower)", file=out)
    three = 3 * (2 + 2 * 32 / 128)  # three INT2 branches, each with a scale and offset per group
    print(f"  fused form: {bits:.2f} bits/weight incl. tables (three INT2 branches: {three:.2f}; "
          f"float32: 32), max |fused - three-branch| {dev:.1e}", file=out)


if __name__ == "__main__":
    import sys

    report(sys.stdout)
