"""SplitQuant size vs accuracy on all-MiniLM-L6-v2 (issue #15 point 4).

For each configuration: stored bits per weight over the 36 encoder Linear weights (weighted by
their sizes; the fused SplitQuantLinear's ``bits_per_weight``: codes + compact cluster ids +
float32 (or float16) scales/offsets; plain group-wise quantization: codes + float32 scale + offset per group,
``QuantizedWeight.bits_per_weight``) and the mean cosine of the sentence embeddings to fp32 over
the 240 fixed sentences of tests/olive/test_olive_minilm.py.  Deterministic (no timing).

    python bench/bench_splitquant_size.py            # prints a markdown table
"""
from __future__ import annotations

import importlib.util
import os
import sys

import numpy as np
import torch

from numkern import quant as q

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def minilm():
    spec = importlib.util.spec_from_file_location(
        "_minilm", os.path.join(ROOT, "tests", "olive", "test_olive_minilm.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    from safetensors.torch import load_file

    w = load_file(os.path.join(mod.MODEL_DIR, "model.safetensors"))
    model = mod.MiniLM(w).eval()
    ids, mask = mod.WordPiece(os.path.join(mod.MODEL_DIR, "vocab.txt"))(mod.sentences())
    return model, ids, mask


def linears(model):
    return [m for m in model.modules() if isinstance(m, torch.nn.Linear)]


def mean_bits(mods):
    n = [m.in_features * m.out_features for m in mods]
    return sum(m.bits_per_weight * k for m, k in zip(mods, n)) / sum(n)


def cosine(model, ids, mask, ref):
    with torch.no_grad():
        return float(torch.nn.functional.cosine_similarity(model(ids, mask), ref, dim=-1).mean())


def plain_bits(model, bits, gs):
    mods = linears(model)
    tot = sum(q.quantize_weights(m.weight.detach(), bits, group_size=gs).bits_per_weight
              * m.weight.numel() for m in mods)
    return tot / sum(m.weight.numel() for m in mods)


def id_stats(split):
    """Cluster fractions and the entropy H(c) of the ids (k = 3, encoder Linear layers)."""
    counts = np.zeros(3)
    for m in split.modules():
        if isinstance(m, q.SplitLayer):
            counts += np.bincount(m.weight_labels.reshape(-1).numpy().astype(np.int64), minlength=3)
    p = counts / counts.sum()
    return p, float(-(p * np.log2(p)).sum())


def code_id_entropy(mods):
    """Size-weighted mean over the layers of H(u, c), the empirical joint entropy (bits) of a
    weight's code u and cluster id c: what an ideal entropy coder of both would need per weight."""
    sqf = importlib.import_module("numkern.quant.splitquant._format")
    tot = n_all = 0.0
    for m in mods:
        f = m.fused()
        u = sqf._unpack(f.codes, f.bits, f.padded_in)[:, :f.in_features].reshape(-1).astype(np.int64)
        c = sqf._unpack(f.clusters, 2, f.padded_in)[:, :f.in_features].reshape(-1).astype(np.int64)
        p = np.bincount(u * 4 + c).astype(float)
        p = p[p > 0] / u.size
        tot += -(p * np.log2(p)).sum() * u.size
        n_all += u.size
    return tot / n_all


def main(argv):
    torch.manual_seed(0)
    model, ids, mask = minilm()
    with torch.no_grad():
        ref = model(ids, mask)
    rows = []
    for bits, gs_list in ((2, (32, 64, 128)), (4, (64, 128, None))):
        for gs in gs_list:
            pm = q.quantize_model_plain(model, bits, group_size=gs)
            rows.append((f"plain INT{bits}, groups of {gs or 'a row'}", plain_bits(model, bits, gs),
                         cosine(pm, ids, mask, ref)))
    splits = {k: q.split_model(model, k=k) for k in (2, 3)}
    p, h = id_stats(splits[3])
    print(f"k=3 cluster fractions {np.round(p, 4).tolist()}, id entropy {h:.3f} bits")
    # 192 divides both MiniLM input widths (384, 1536); 256 would leave partial groups
    tails = q.split_model(model, k=3, method="tails", tail=0.15)
    configs = [(2, 3, 128, {}), (2, 3, 192, {}), (2, 3, None, {}), (2, 2, 128, {}), (2, 2, 192, {}),
               (2, 2, None, {}), (4, 3, 128, {}), (4, 2, None, {}),
               # scheme "support": a grid per cluster over its own entries (docs/splitquant.md)
               (2, 3, 128, {"scheme": "support"}), (2, 3, None, {"scheme": "support"}),
               (2, "tails", None, {"scheme": "support"}),
               (2, "tails", None, {"scheme": "support", "table_dtype": "float16"})]
    for bits, k, gs, opts in configs:
        fm = q.splitquant(tails if k == "tails" else splits[k], bits=bits, group_size=gs, fused=True, **opts)
        mods = [m for m in fm.modules() if isinstance(m, q.SplitQuantLinear)]
        dense = sum((m.codes.numel() + m.clusters.numel()
                     + m.scales.element_size() * (m.scales.numel() + m.offsets.numel()))
                    * 8 for m in mods) / sum(m.in_features * m.out_features for m in mods)
        split = "k = 3, tails of 15 %" if k == "tails" else f"k = {k}"
        extra = "".join(f", {v}" for v in opts.values())
        label = f"SplitQuant INT{bits}, {split}, groups of {gs or 'a row'}{extra}"
        rows.append((label, mean_bits(mods), cosine(fm, ids, mask, ref), dense))
        if bits == 2 and k in (3, "tails"):
            print(f"{label}: joint entropy of (code, id) {code_id_entropy(mods):.3f} bits/weight")
    print("| configuration | bits/weight stored | (dense 2-bit ids) | mean cosine to fp32 |")
    print("|---|---|---|---|")
    for r in rows:
        print(f"| {r[0]} | {r[1]:.3f} | {r[3]:.3f} |" if len(r) > 3 else f"| {r[0]} | {r[1]:.3f} | |",
              f" {r[2]:.4f} |")


if __name__ == "__main__":
    main(sys.argv[1:])
