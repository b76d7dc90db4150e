"""Hessian-alignment penalties: closed forms (nn.Linear + CE) equal the autograd definitions."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
from numkern import hessian as nh  # noqa: E402
from hessian_testutil import seeded_module  # noqa: E402

CE = torch.nn.functional.cross_entropy


pytestmark = pytest.mark.usefixtures("one_torch_thread")



def domains(bias=True, seed=0):
    g = torch.Generator().manual_seed(seed)
    head = seeded_module(seed, lambda: torch.nn.Linear(5, 4, bias=bias).double())
    feats = [torch.randn(n, 5, generator=g, dtype=torch.float64, requires_grad=True) for n in (7, 11, 9)]
    labels = [torch.randint(0, 4, (f.shape[0],), generator=g) for f in feats]
    return head, feats, labels


def reference_hgp(head, feats, labels, alpha, beta):
    """Direct definition: double backward for g_e and H_e g_e = grad(1/2 ||g_e||^2)."""
    params = list(head.parameters())
    G, HG = [], []
    for z, y in zip(feats, labels):
        g = torch.autograd.grad(CE(head(z), y), params, create_graph=True)
        hg = torch.autograd.grad(sum((x * x).sum() for x in g) / 2, params, create_graph=True)
        G.append(torch.cat([x.flatten() for x in g]))
        HG.append(torch.cat([x.flatten() for x in hg]))
    G, HG = torch.stack(G), torch.stack(HG)
    return (alpha * ((HG - HG.mean(0)) ** 2).sum() + beta * ((G - G.mean(0)) ** 2).sum()) / len(feats)


@pytest.mark.parametrize("bias", [True, False])
def test_hgp_closed_form_value_and_gradient(bias):
    head, feats, labels = domains(bias)
    p = nh.hgp_penalty(head, feats, labels, target="mean")
    ref = reference_hgp(head, feats, labels, 1e-4, 5e-3)
    assert abs(p.item() - ref.item()) <= 1e-12 * abs(ref.item())
    wrt = [head.weight, feats[1]]
    for a, b in zip(torch.autograd.grad(p, wrt), torch.autograd.grad(ref, wrt)):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-12, atol=1e-16)


def test_hgp_generic_path_matches():
    head, feats, labels = domains()
    assert abs(nh.hgp_penalty(head, feats, labels, loss_fn=CE).item() -
               nh.hgp_penalty(head, feats, labels).item()) < 1e-15


def test_hgp_defaults_and_scaling():
    head, feats, labels = domains()
    a = nh.hgp_penalty(head, feats, labels, alpha=1.0, beta=0.0).item()
    b = nh.hgp_penalty(head, feats, labels, alpha=0.0, beta=1.0).item()
    assert abs(nh.hgp_penalty(head, feats, labels).item() - (1e-4 * a + 5e-3 * b)) < 1e-15


@pytest.mark.parametrize("bias", [True, False])
def test_hutchinson_closed_form_equals_autograd(bias):
    head, feats, labels = domains(bias, seed=1)
    p1 = nh.hutchinson_penalty(head, feats, labels, num_probes=6, generator=torch.Generator().manual_seed(3))
    p2 = nh.hutchinson_penalty(head, feats, labels, num_probes=6, loss_fn=CE,
                               generator=torch.Generator().manual_seed(3))
    assert abs(p1.item() - p2.item()) <= 1e-12 * abs(p2.item())
    g1 = torch.autograd.grad(p1, [head.weight, feats[0]])
    g2 = torch.autograd.grad(p2, [head.weight, feats[0]])
    for a, b in zip(g1, g2):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-12, atol=1e-16)


def test_hutchinson_exact_diagonal():
    """num_probes=None uses the exact diagonal, equal to SoftmaxHeadHessian's; many probes approach it."""
    head, feats, labels = domains(seed=2)
    exact = nh.hutchinson_penalty(head, feats, labels, alpha=1.0, beta=0.0, num_probes=None)
    diags = [nh.SoftmaxHeadHessian(z.detach(), head.weight.detach(), head.bias.detach()).diagonal()
             for z in feats]
    D = torch.stack([d.flatten() for d in diags])
    assert abs(exact.item() - (((D - D.mean(0)) ** 2).sum() / 3).item()) < 1e-14
    est = nh.hutchinson_penalty(head, feats, labels, alpha=1.0, beta=0.0, num_probes=4000,
                                generator=torch.Generator().manual_seed(0))
    assert abs(est.item() - exact.item()) < 0.1 * exact.item()


def test_penalty_trains():
    head, feats, labels = domains()
    opt = torch.optim.Adam(head.parameters(), lr=0.05)
    before = nh.hgp_penalty(head, feats, labels, alpha=1.0, beta=1.0).item()
    for _ in range(40):
        opt.zero_grad()
        nh.hgp_penalty(head, feats, labels, alpha=1.0, beta=1.0).backward()
        opt.step()
    assert nh.hgp_penalty(head, feats, labels, alpha=1.0, beta=1.0).item() < 0.5 * before


def test_bad_input():
    head, feats, labels = domains()
    with pytest.raises(ValueError, match="two domains"):
        nh.hgp_penalty(head, feats[:1], labels[:1])
    with pytest.raises(ValueError, match="labels"):
        nh.hgp_penalty(head, feats, labels[:2])
    with pytest.raises(ValueError, match="labels"):
        nh.hgp_penalty(head, feats, [labels[0] + 10, labels[1], labels[2]])
    with pytest.raises(ValueError, match="features"):
        nh.hgp_penalty(head, [f[:, :3] for f in feats], labels)
    with pytest.raises(TypeError, match="features"):
        nh.hgp_penalty(head, torch.cat(feats), torch.cat(labels))
    with pytest.raises(ValueError, match="num_probes"):
        nh.hutchinson_penalty(head, feats, labels, num_probes=0)
    with pytest.raises(ValueError, match="num_probes"):
        nh.hutchinson_penalty(head, feats, labels, num_probes=1)  # unbiased needs two probes
    nh.hutchinson_penalty(head, feats, labels, num_probes=1, estimator="plugin")
    with pytest.raises(ValueError, match="target"):
        nh.hgp_penalty(head, feats, labels, target="avg")
    with pytest.raises(ValueError, match="estimator"):
        nh.hutchinson_penalty(head, feats, labels, estimator="biased")


# ---- the call form: per-domain head gradients (create_graph=True) and the head params --
def featurised_domains(bias=True, seed=4):
    """A featuriser in front of the head, so that the penalty's gradient must reach it too."""
    g = torch.Generator().manual_seed(seed)
    feat = seeded_module(seed, lambda: torch.nn.Linear(6, 5).double())
    head = seeded_module(seed + 100, lambda: torch.nn.Linear(5, 4, bias=bias).double())
    xs = [torch.randn(n, 6, generator=g, dtype=torch.float64) for n in (8, 12, 10)]
    ys = [torch.randint(0, 4, (x.shape[0],), generator=g) for x in xs]
    return feat, head, xs, ys


def head_grads(feat, head, xs, ys):
    params = list(head.parameters())
    zs = [torch.tanh(feat(x)) for x in xs]
    grads = [torch.autograd.grad(CE(head(z), y), params, create_graph=True) for z, y in zip(zs, ys)]
    return grads, params, zs


@pytest.mark.parametrize("bias", [True, False])
def test_hgp_gradient_form_equals_closed_form(bias):
    feat, head, xs, ys = featurised_domains(bias)
    grads, params, zs = head_grads(feat, head, xs, ys)
    p_grad = nh.hgp_penalty(grads, params)
    p_head = nh.hgp_penalty(head, zs, ys)
    assert abs(nh.hgp_penalty(grads, params, target="mean").item() -
               nh.hgp_penalty(head, zs, ys, target="mean").item()) <= 1e-10 * abs(p_head.item())
    assert abs(p_grad.item() - p_head.item()) <= 1e-10 * abs(p_head.item())
    wrt = [head.weight, feat.weight]
    for a, b in zip(torch.autograd.grad(p_grad, wrt, retain_graph=True), torch.autograd.grad(p_head, wrt)):
        assert a.abs().max() > 0
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-10, atol=1e-15)


@pytest.mark.parametrize("bias", [True, False])
def test_hutchinson_gradient_form_equals_closed_form(bias):
    feat, head, xs, ys = featurised_domains(bias, seed=5)
    grads, params, zs = head_grads(feat, head, xs, ys)
    p_grad = nh.hutchinson_penalty(grads, params, num_probes=5, generator=torch.Generator().manual_seed(9))
    p_head = nh.hutchinson_penalty(head, zs, ys, num_probes=5, generator=torch.Generator().manual_seed(9))
    assert abs(p_grad.item() - p_head.item()) <= 1e-10 * abs(p_head.item())
    wrt = [head.weight, feat.weight]
    for a, b in zip(torch.autograd.grad(p_grad, wrt, retain_graph=True), torch.autograd.grad(p_head, wrt)):
        assert a.abs().max() > 0
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-10, atol=1e-15)


def test_gradient_form_trains_featuriser_and_head():
    feat, head, xs, ys = featurised_domains()
    opt = torch.optim.Adam(list(feat.parameters()) + list(head.parameters()), lr=0.05)

    def penalty():
        grads, params, _ = head_grads(feat, head, xs, ys)
        return nh.hgp_penalty(grads, params, alpha=1.0, beta=1.0)

    before = penalty().item()
    w0 = feat.weight.detach().clone()
    for _ in range(15):
        opt.zero_grad()
        penalty().backward()
        opt.step()
    assert penalty().item() < 0.5 * before
    assert not torch.equal(feat.weight.detach(), w0)  # the gradient reached the featuriser


def test_gradient_form_bad_input():
    feat, head, xs, ys = featurised_domains()
    grads, params, _ = head_grads(feat, head, xs, ys)
    with pytest.raises(ValueError, match="params"):
        nh.hgp_penalty(grads)
    with pytest.raises(ValueError, match="two domains"):
        nh.hgp_penalty(grads[:1], params)
    with pytest.raises(ValueError, match="head_grads_per_domain"):
        nh.hgp_penalty([grads[0], grads[1][:1]], params)
    detached = [[t.detach() for t in g] for g in grads]
    with pytest.raises(ValueError, match="create_graph"):
        nh.hutchinson_penalty(detached, params, num_probes=2)
    with pytest.raises(ValueError, match="num_probes"):
        nh.hutchinson_penalty(grads, params, num_probes=None)
