"""SplitQuant CUDA kernel vs the CPU kernel and the three-branch layer (skipped without a GPU)."""
import numpy as np
import pytest

import numkern
from numkern import quant as q

torch = pytest.importorskip("torch")
pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not numkern.cuda_available(), reason="needs a CUDA device")]


@pytest.mark.parametrize("batch, fin, fout, bits, k, gs", [
    (1, 384, 1536, 2, 3, 128), (37, 200, 70, 4, 4, 40), (64, 96, 33, 8, 3, None)])
def test_cuda_fused_equals_cpu_and_three_branch(batch, fin, fout, bits, k, gs):
    torch.manual_seed(0)
    lin = torch.nn.Linear(fin, fout)
    sq = q.splitquant(lin, bits=bits, k=k, group_size=gs)
    fused = q.fuse_splitquant(sq)
    x = torch.randn(batch, fin)
    with torch.no_grad():
        cpu, three = fused(x), sq(x)
        gpu = fused.cuda()(x.cuda())
    assert gpu.is_cuda
    scale = three.abs().max()
    assert (gpu.cpu() - cpu).abs().max() < 1e-5 * scale
    assert (gpu.cpu() - three).abs().max() < 2e-5 * scale


def test_cuda_kmeans_returns_device_tensors():
    x = torch.randn(5000, device="cuda")
    c, lab = q.kmeans1d(x, 3)
    c2, lab2 = q.kmeans1d(x.cpu().numpy(), 3)
    assert lab.is_cuda and np.array_equal(lab.cpu().numpy(), lab2)
