"""Shared fixtures of the hessian tests."""
import pytest


@pytest.fixture
def one_torch_thread():
    """The torch problems here are tiny: with 2 intra-op threads on a loaded 2-core machine every
    autograd call waits for a second thread (measured 0.3 s vs 0.007 s per training step)."""
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _exact_hessian(model, loss_fn, x, y):
    """The dense loss Hessian of a torch model w.r.t. all its parameters (flat, in order), from
    torch.autograd.functional.hessian through torch.func.functional_call."""
    import torch

    names = [k for k, _ in model.named_parameters()]
    shapes = [p.shape for p in model.parameters()]
    theta = torch.cat([p.detach().flatten() for p in model.parameters()])

    def loss(th):
        st, o = {}, 0
        for k, s in zip(names, shapes):
            st[k] = th[o:o + s.numel()].view(s)
            o += s.numel()
        return loss_fn(torch.func.functional_call(model, st, (x,)), y)

    return torch.autograd.functional.hessian(loss, theta)


@pytest.fixture(scope="session")
def exact_hessian():
    """exact_hessian(model, loss_fn, x, y) -> the dense loss Hessian (torch tensor)."""
    return _exact_hessian
