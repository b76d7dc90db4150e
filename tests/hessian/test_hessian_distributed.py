"""numkern.hessian under torch.distributed (issue #16 point 3): two gloo processes on the CPU.

Trace / diagonal estimates of a data-parallel model (DistributedDataParallel, or a plain process
group, unequal shards, a data set per rank) equal the single-process estimate on the
concatenated data; every rank draws the same probes (seed=None included) and gets the same
estimate; different probes per rank are refused.  hgp_penalty / hutchinson_penalty with
process_group: the value of the concatenated data on every rank and, after DDP's gradient
averaging, its exact gradient."""
from __future__ import annotations

import gc
import os
import socket
import sys

import pytest

torch = pytest.importorskip("torch")
dist = pytest.importorskip("torch.distributed")
if not dist.is_available() or not dist.is_gloo_available():
    pytest.skip("torch.distributed with gloo is not available", allow_module_level=True)

from numkern import hessian as nh  # noqa: E402

F64 = torch.float64
CE = torch.nn.functional.cross_entropy
SPLIT = 13  # rank 0 gets the first 13 samples, rank 1 the other 27 (unequal shards)


def model():
    g = torch.Generator().manual_seed(3)
    m = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.Tanh(), torch.nn.Linear(6, 3)).to(F64)
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=F64) * 0.7)
    return m


def data():
    g = torch.Generator().manual_seed(4)
    return torch.randn(40, 4, generator=g, dtype=F64), torch.randint(0, 3, (40,), generator=g)


def domains():
    """Three domains of features (n_e, 5) and labels, 10 samples each."""
    g = torch.Generator().manual_seed(5)
    return ([torch.randn(10, 5, generator=g, dtype=F64) + e for e in range(3)],
            [torch.randint(0, 4, (10,), generator=g) for _ in range(3)])


def head():
    g = torch.Generator().manual_seed(6)
    h = torch.nn.Linear(5, 4).to(F64)
    with torch.no_grad():
        for p in h.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=F64) * 0.5)
    return h


def penalties(h, feats, labs, group=None):
    """(hgp head form, hutchinson exact, hutchinson 6 probes, hgp gradient form, hutchinson
    gradient form with 4 probes) for the linear head."""
    params = list(h.parameters())
    grads = [torch.autograd.grad(CE(h(z), y), params, create_graph=True) for z, y in zip(feats, labs)]
    return [nh.hgp_penalty(h, feats, labs, process_group=group),
            nh.hutchinson_penalty(h, feats, labs, num_probes=None, process_group=group),
            nh.hutchinson_penalty(h, feats, labs, num_probes=6, generator=torch.Generator().manual_seed(8),
                                  process_group=group),
            nh.hgp_penalty(grads, params, process_group=group),
            nh.hutchinson_penalty(grads, params, num_probes=4, generator=torch.Generator().manual_seed(9),
                                  process_group=group)]


def empty_shard_penalties(h, feats, labs, group=None):
    """The head-form penalties by every path (closed forms, autograd through loss_fn, probes)."""
    return [nh.hgp_penalty(h, feats, labs, process_group=group),
            nh.hgp_penalty(h, feats, labs, loss_fn=CE, process_group=group),
            nh.hutchinson_penalty(h, feats, labs, num_probes=None, process_group=group),
            nh.hutchinson_penalty(h, feats, labs, num_probes=6, generator=torch.Generator().manual_seed(8),
                                  process_group=group),
            nh.hutchinson_penalty(h, feats, labs, num_probes=4, loss_fn=CE,
                                  generator=torch.Generator().manual_seed(9), process_group=group)]


def shard(rank, t):
    return t[:SPLIT] if rank == 0 else t[SPLIT:]


def worker(rank, world, init, out_dir):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    try:
        res = {}
        x, y = data()
        xs, ys = shard(rank, x), shard(rank, y)
        ddp = torch.nn.parallel.DistributedDataParallel(model())
        res["trace_ddp"] = nh.hessian_trace(ddp, CE, xs, ys, num_matvecs=12, seed=11).estimate
        res["trace_xtrace"] = nh.hessian_trace(ddp, CE, xs, ys, method="xtrace", num_matvecs=12, seed=12).estimate
        res["diag_group"] = nh.hessian_diagonal(model(), CE, xs, ys, num_matvecs=8, seed=13,
                                                process_group=dist.group.WORLD, mode="double_backward").estimate
        # a data set per rank: unequal batches
        batches = [(xs[:5], ys[:5]), (xs[5:], ys[5:])]
        res["trace_dataset"] = nh.hessian_trace(ddp, CE, batches, num_matvecs=12, seed=11).estimate
        res["trace_none_seed"] = nh.hessian_trace(ddp, CE, xs, ys, num_matvecs=6).estimate
        op = nh.hessian_matvec(ddp, CE, xs, ys)
        v = torch.full((op.dim,), float(rank + 1), dtype=F64)
        try:
            op(v)
            res["different_probes"] = "no error"
        except RuntimeError as e:
            res["different_probes"] = str(e)
        try:
            nh.hessian_trace(ddp, CE, xs, ys, num_matvecs=4, seed=rank)
            res["different_seeds"] = "no error"
        except ValueError as e:
            res["different_seeds"] = str(e)
        # penalties: values on unequal shards; gradients after averaging over the ranks (DDP's rule)
        # (the gradient form weights the ranks equally: it is checked on equal shards below)
        feats, labs = domains()
        lf = [z[:4] if rank == 0 else z[4:] for z in feats]
        ll = [t[:4] if rank == 0 else t[4:] for t in labs]
        res["pen_values"] = [float(p) for p in penalties(head(), lf, ll, dist.group.WORLD)[:3]]
        hf = [z[:5] if rank == 0 else z[5:] for z in feats]  # equal shards: DDP's mean of local CE
        hl = [t[:5] if rank == 0 else t[5:] for t in labs]
        grads, vals = [], []
        for i in range(5):
            h = head()
            dh = torch.nn.parallel.DistributedDataParallel(h)
            ce = sum(CE(dh(z), t) for z, t in zip(hf, hl))
            pen = penalties(h, hf, hl, dist.group.WORLD)[i]
            (ce + pen).backward()  # DDP averages the gradients over the ranks
            vals.append(float(pen.detach()))
            grads.append([p.grad.clone() for p in h.parameters()])
        res["pen_grads"], res["pen_equal_values"] = grads, vals
        # rank 1 holds no samples of domain 2: its share is zero (values and averaged gradients)
        ef = [z[:4] if rank == 0 else z[4:] for z in feats[:2]] + [feats[2] if rank == 0 else feats[2][:0]]
        el = [t[:4] if rank == 0 else t[4:] for t in labs[:2]] + [labs[2] if rank == 0 else labs[2][:0]]
        grads, vals = [], []
        for i in range(5):
            h = head()
            pen = empty_shard_penalties(h, ef, el, dist.group.WORLD)[i]
            pen.backward()
            g = [p.grad.clone() for p in h.parameters()]
            for t in g:   # DDP's averaging over the ranks
                dist.all_reduce(t, group=dist.group.WORLD)
                t.div_(world)
            vals.append(float(pen.detach()))
            grads.append(g)
        res["empty_shard"] = (vals, grads)
        # the penalties' all-reduce, differentiated twice: L_r = sum (AR(x^2))^2 with S = sum_r x_r^2
        xr = torch.tensor([1.0 + rank, -2.0, 0.5 * rank], dtype=F64, requires_grad=True)
        from numkern.hessian._torch import _AllReduceSum

        loss = (_AllReduceSum.apply(xr * xr, dist.group.WORLD) ** 2).sum()
        g1, = torch.autograd.grad(loss, xr, create_graph=True)
        g2, = torch.autograd.grad(g1.sum(), xr)
        res["ar_grads"] = (xr.detach(), g1.detach(), g2)
        torch.save(res, os.path.join(out_dir, f"rank{rank}.pt"))
        dist.barrier()  # both ranks are done before either tears its process group down
        del ddp, dh, op
    finally:
        gc.collect()  # the DDP reducers hold the process group: free them first
        dist.destroy_process_group()
    # Leave without interpreter teardown: a gloo thread still alive at static destruction has
    # aborted the process ("terminate called without an active exception", about 1 run in 30
    # on a loaded 2-core machine) after the results were written and the group destroyed.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    import torch.multiprocessing as tmp

    out = tmp_path_factory.mktemp("dist")
    tests_dir = os.path.dirname(os.path.abspath(__file__))
    if tests_dir not in sys.path:
        sys.path.insert(0, tests_dir)
    import test_hessian_distributed as me  # the spawned processes import the worker by this name

    tmp.spawn(me.worker, args=(2, f"tcp://127.0.0.1:{free_port()}", str(out)), nprocs=2, join=True)
    return [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(2)]


def test_estimates_equal_single_process_on_concatenated_data(ranks):
    x, y = data()
    m = model()
    ref = {"trace_ddp": nh.hessian_trace(m, CE, x, y, num_matvecs=12, seed=11).estimate,
           "trace_xtrace": nh.hessian_trace(m, CE, x, y, method="xtrace", num_matvecs=12, seed=12).estimate,
           "diag_group": nh.hessian_diagonal(m, CE, x, y, num_matvecs=8, seed=13).estimate}
    ref["trace_dataset"] = ref["trace_ddp"]
    for key, val in ref.items():
        for r in ranks:
            got = r[key]
            if isinstance(val, torch.Tensor):
                torch.testing.assert_close(got, val, rtol=1e-12, atol=1e-13)
            else:
                assert got == pytest.approx(val, rel=1e-12), key
    # seed=None: one seed drawn on rank 0, so both ranks agree
    assert ranks[0]["trace_none_seed"] == ranks[1]["trace_none_seed"]


def test_different_probes_are_refused(ranks):
    for r in ranks:
        assert "different probe vectors" in r["different_probes"]
        assert "seed: differs across the ranks" in r["different_seeds"]


def test_penalties_values_and_ddp_gradients(ranks):
    feats, labs = domains()
    want = [float(p.detach()) for p in penalties(head(), feats, labs)]
    for r in ranks:
        assert r["pen_values"] == pytest.approx(want[:3], rel=1e-11)
        assert r["pen_equal_values"] == pytest.approx(want, rel=1e-11)
    for i in range(5):
        h = head()
        ce = sum(CE(h(z), t) for z, t in zip(feats, labs))
        (ce + penalties(h, feats, labs)[i]).backward()
        for r in ranks:
            for a, b in zip(r["pen_grads"][i], [p.grad for p in h.parameters()]):
                torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-13)


def test_penalties_with_a_rank_holding_no_samples_of_a_domain(ranks):
    """Rank 1 has none of domain 2's samples: before, its 0/0 means made every rank's penalty NaN."""
    feats, labs = domains()
    for i in range(5):
        h = head()
        pen = empty_shard_penalties(h, feats, labs)[i]
        pen.backward()
        for r in ranks:
            vals, grads = r["empty_shard"]
            assert vals[i] == pytest.approx(float(pen.detach()), rel=1e-11), i
            for a, b in zip(grads[i], [p.grad for p in h.parameters()]):
                torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-13)


def test_all_reduce_first_and_second_derivatives(ranks):
    """With S = sum_r x_r^2 and X = sum_r x_r (elementwise, R = 2 ranks), L_r = sum S^2 on every
    rank; backward of the all-reduce sums over the ranks, so rank r's gradient is R (2 R S x_r) =
    8 S x_r and the gradient of sum(that) is 8 S + 16 X x_r (second order through both
    all-reduces)."""
    xs = [r["ar_grads"][0] for r in ranks]
    S = sum(x * x for x in xs)
    X = sum(xs)
    for x, r in zip(xs, ranks):
        torch.testing.assert_close(r["ar_grads"][1], 8 * S * x, rtol=1e-14, atol=0)
        torch.testing.assert_close(r["ar_grads"][2], 8 * S + 16 * X * x, rtol=1e-14, atol=0)
