"""Claims of docs/kde.md, docs/vmf.md and docs/hessian.md checked against the code (docs audit)."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

from numkern import hessian as nh  # noqa: E402
from numkern.kde import GaussianKDE  # noqa: E402


def _domains():
    torch.manual_seed(0)
    head = torch.nn.Linear(6, 3).double()
    feats = [torch.randn(10, 6, dtype=torch.float64), torch.randn(8, 6, dtype=torch.float64)]
    labs = [torch.randint(0, 3, (10,)), torch.randint(0, 3, (8,))]
    params = list(head.parameters())
    grads = [torch.autograd.grad(F.cross_entropy(head(z), y), params, create_graph=True)
             for z, y in zip(feats, labs)]
    return grads, params


@pytest.mark.parametrize("penalty", ["hgp", "hutchinson"])
def test_gradient_form_refuses_head_form_arguments(penalty):
    # The third positional parameter is `labels` (head form).  hgp_penalty(grads, params, 1.0) used to
    # drop the 1.0 and return the penalty with the default alpha: a silent wrong answer.
    grads, params = _domains()
    fn = nh.hgp_penalty if penalty == "hgp" else nh.hutchinson_penalty
    extra = {} if penalty == "hgp" else {"num_probes": 4, "generator": torch.Generator().manual_seed(1)}
    with pytest.raises(TypeError, match="labels"):
        fn(grads, params, 1.0, **extra)
    with pytest.raises(TypeError, match="loss_fn"):
        fn(grads, params, loss_fn=F.cross_entropy, **extra)
    with pytest.raises(TypeError, match="features"):
        fn(grads, params, features=[torch.zeros(1, 6)], **extra)
    # the keyword form still works and alpha is used
    if penalty == "hgp":
        assert fn(grads, params, alpha=1.0).item() != fn(grads, params).item()


def test_kde_bandwidth_range_is_refused_naming_bandwidth():
    # docs/kde.md "Bad input": h outside [1e-150, 1e150] raises ValueError naming bandwidth
    Y = np.random.default_rng(0).standard_normal((20, 2))
    for h in (1e-200, 1e200):
        with pytest.raises(ValueError, match="bandwidth"):
            GaussianKDE(Y, bandwidth=h)
