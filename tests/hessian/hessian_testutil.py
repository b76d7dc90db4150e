"""Helpers shared by the hessian tests (imported by name: pytest puts this folder on sys.path)."""
import torch


def seeded_module(seed, make):
    """``make()`` run with torch's global RNG seeded to ``seed`` and restored afterwards: an
    nn.Module whose initial parameters come from a fixed seed, the global RNG left untouched."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return make()
