"""Hessian-vector products of torch models, and the Hessian-alignment penalties.

Imported only when called (torch is optional for numkern).
"""
from __future__ import annotations

import torch

from .._backend.ops import TorchOps


def _check_no_training_randomness(model):
    """BatchNorm and Dropout in training mode make the loss depend on more than the parameters
    (batch statistics, a fresh random mask per call), so the products are of no fixed Hessian."""
    from torch.nn.modules.batchnorm import _BatchNorm
    from torch.nn.modules.dropout import _DropoutNd

    for name, mod in model.named_modules():
        if isinstance(mod, _BatchNorm) and mod.training:
            raise ValueError(
                f"model: BatchNorm layer {name or type(mod).__name__!r} is in training mode. Its output "
                "depends on the batch statistics and every Hessian-vector product would update its "
                "running statistics; call model.eval() first (BatchNorm then is a fixed affine map "
                "and its weight and bias are differentiated like any other parameter)")
        if isinstance(mod, _DropoutNd) and mod.training and mod.p > 0:
            raise ValueError(
                f"model: Dropout layer {name or type(mod).__name__!r} is in training mode. Every "
                "Hessian-vector product would draw a new random mask, so the products are not those "
                "of one Hessian (and traces are biased); call model.eval() first (Dropout then is "
                "the identity)")


def _check_not_inference_mode():
    """torch.inference_mode() disables autograd, and torch.enable_grad() cannot turn it back on
    inside, so no Hessian-vector product can be computed there; say so instead of surfacing as
    autograd's "element 0 of tensors does not require grad"."""
    if torch.is_inference_mode_enabled():
        raise RuntimeError(
            "hessian_matvec: called inside torch.inference_mode(), which disables autograd (also for "
            "torch.enable_grad() blocks inside it), so Hessian-vector products cannot be computed; call "
            "outside inference mode (torch.no_grad() is fine: the products enable grad internally)")


def _as_tuple(inputs):
    return inputs if isinstance(inputs, tuple) else (inputs,)


DEFAULT_MEMORY_BUDGET = 256 * 2 ** 20   # bytes of extra memory per vmap chunk of probes


def _batch_size(inputs, targets):
    for t in (targets,) + tuple(inputs):
        if isinstance(t, torch.Tensor) and t.dim() > 0:
            return int(t.shape[0])
    raise ValueError("inputs: cannot tell the batch size (no tensor with a batch dimension in a batch)")


def _plain(t):
    """A tensor created under torch.inference_mode() as a normal tensor (a copy): autograd cannot
    save inference tensors for backward, which double backward through the model needs; the data
    are not differentiated, so the copy changes nothing else."""
    return t.clone() if isinstance(t, torch.Tensor) and t.is_inference() else t


def _plain_batch(x, y):
    return tuple(_plain(a) for a in x), _plain(y)


def _split_batch(b, i):
    if isinstance(b, dict) or not isinstance(b, (tuple, list)) or len(b) != 2:
        raise ValueError(f"inputs: batch {i} of the data set must be a pair (inputs, targets) (as a "
                         f"DataLoader of (x, y) yields), got {type(b).__name__}")
    return _plain_batch(_as_tuple(b[0]), b[1])


def peak_allocated_bytes(fn):
    """(peak, result): the peak CPU memory allocated and not yet freed while fn() runs, from
    torch.profiler's allocation events (profile_memory=True); for tests and benchmarks."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        out = fn()
    events = sorted((e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events()
                    if e.name() == "[memory]")
    cur = peak = 0
    for _, b in events:
        cur += b
        peak = max(peak, cur)
    return peak, out


# ---- torch.distributed ---------------------------------------------------------------------------
def _distributed(model, process_group):
    """(module, group): a DistributedDataParallel model is unwrapped (its gradient hooks must not
    run inside Hessian-vector products) and brings its process group unless one is given;
    process_group=None with a plain module: no reduction."""
    ddp = getattr(torch.nn.parallel, "DistributedDataParallel", None)
    if ddp is not None and isinstance(model, ddp):
        group = process_group if process_group is not None else model.process_group
        return model.module, group
    return model, process_group


def _comm_device(group, device):
    """The device collectives of `group` run on: the model's CUDA device for NCCL, else the CPU."""
    import torch.distributed as dist

    return device if dist.get_backend(group) == "nccl" else torch.device("cpu")


def _shared_seed(group, seed, device):
    import torch.distributed as dist

    if seed is None:
        t = torch.tensor([torch.randint(0, 2 ** 62, ()).item() if dist.get_rank(group) == 0 else 0],
                         dtype=torch.int64, device=device)
        dist.broadcast(t, src=dist.get_global_rank(group, 0), group=group)
        return int(t)
    t = torch.tensor([int(seed), -int(seed)], dtype=torch.int64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX, group=group)
    if int(t[0]) != -int(t[1]):
        raise ValueError(f"seed: differs across the ranks of the process group (from {-int(t[1])} to "
                         f"{int(t[0])}); every rank must draw the same probes")
    return seed


def _all_reduce_products(group, V, out, total):
    """sum_r out_r / sum_r total_r over the ranks of `group`, after checking that every rank
    multiplied the same probes V (their sum and sum of squares agree: max == min over ranks)."""
    import torch.distributed as dist

    dev = _comm_device(group, out.device)
    v64 = V.detach().to(torch.float64)
    check = torch.stack([v64.sum(), (v64 * v64).sum()]).to(dev)
    mm = torch.cat([check, -check])
    dist.all_reduce(mm, op=dist.ReduceOp.MAX, group=group)
    if not torch.equal(mm[:2], -mm[2:]):
        raise RuntimeError("V: the ranks of the process group multiply different probe vectors; every rank "
                           "must call with the same V (with trace/diagonal: the same seed, or seed=None to "
                           "share one drawn on the first rank)")
    buf = torch.cat([out.reshape(-1), torch.tensor([float(total)], dtype=out.dtype, device=out.device)]).to(dev)
    dist.all_reduce(buf, group=group)
    buf = buf.to(out.device)
    return buf[:-1].reshape(out.shape).div_(buf[-1])




class _Data:
    """One batch (inputs, targets) or a data set: a re-iterable of (inputs, targets) batches
    (DataLoader, list).  batches() yields (inputs tuple, targets, n_b)."""

    def __init__(self, inputs, targets):
        self.dataset = targets is None
        if not self.dataset:
            self.single = _plain_batch(_as_tuple(inputs), targets)
            return
        if isinstance(inputs, (torch.Tensor, tuple)) or not hasattr(inputs, "__iter__"):
            raise ValueError("targets: required unless inputs is a data set (a DataLoader or a list of "
                             "(inputs, targets) batches)")
        if iter(inputs) is inputs:
            raise ValueError("inputs: a one-shot iterator cannot be passed over once per block of probes; "
                             "pass a DataLoader or a list of batches")
        self.source = inputs

    def empty(self):
        """Whether a data set holds no batches (a single batch is never empty here)."""
        return self.dataset and next(iter(self.source), None) is None

    def first(self):
        if not self.dataset:
            return self.single
        for i, b in enumerate(self.source):
            return _split_batch(b, i)
        raise ValueError("inputs: the data set has no batches")

    def batches(self):
        if not self.dataset:
            x, y = self.single
            yield x, y, 1
            return
        for i, b in enumerate(self.source):
            x, y = _split_batch(b, i)
            yield x, y, _batch_size(x, y)


def _leaf_output_bytes(model, inputs):
    """Bytes of every leaf module's output in one forward pass (no graph): the activations."""
    total = [0]

    def hook(_m, _i, out):
        for t in (out if isinstance(out, (tuple, list)) else (out,)):
            if isinstance(t, torch.Tensor):
                total[0] += t.numel() * t.element_size()

    hs = [m.register_forward_hook(hook) for m in model.modules() if not list(m.children())]
    try:
        with torch.no_grad():
            out = model(*inputs)
    finally:
        for h in hs:
            h.remove()
    return total[0], out


class HessianMatvec:
    r"""v -> H v for H the Hessian of loss_fn(model(*inputs), targets) w.r.t. the parameters.

    Data: one batch (``inputs``, ``targets``), or a data set: ``inputs`` a DataLoader or a list of
    (inputs, targets) batches and ``targets=None``; H is then the Hessian of the mean loss over
    the data set, sum_b n_b H_b / sum_b n_b with H_b the Hessian of batch b's (mean) loss and n_b
    its size (the first dimension of its targets), and every call makes one pass over the data.

    Products are forward-over-reverse (torch.func.jvp of torch.func.grad), batched over probes
    with torch.func.vmap in chunks; or reverse-over-reverse (double backward) per probe.  mode:
    "vmap", "double_backward", or "auto": vmap where torch.func can run the model, timed once
    against double backward on the first product (up to 4 probes of it; the faster path is kept,
    ``.mode_timings`` holds the CPU seconds per probe); double backward where it cannot.  Both
    paths run under torch.no_grad() (they enable grad internally), not under
    torch.inference_mode() (RuntimeError).  Both compute at the parameters' current values, read
    on every call (double backward builds the gradient's graph once per call, shared by its
    probes), so writes through ``.data`` are followed; parameters the loss does not use get zero
    rows and columns, and a loss linear in the parameters gives H V = 0.

    chunk_size: probes per vmap call; None = as many as fit ``memory_budget`` bytes (default
    256 MiB, beyond the (k, dim) result) by the upper estimate 4 P + c (3 A + 8 P) for c probes,
    P = parameter bytes, A = the sum of every leaf module's output bytes on the first batch
    (``.chunk_size`` holds the choice, ``.bytes_per_probe`` the estimate 3 A + 8 P).  Arguments: model (nn.Module), loss_fn(outputs, targets) -> scalar tensor, inputs (a
    tensor or a tuple passed as model(*inputs)), targets, params (None = every parameter with
    requires_grad; or the model parameters to differentiate - the others are held fixed).
    Vectors are flat over the chosen parameters in order (``torch.cat([p.flatten()])``):
    call with shape (dim,) or a batch (k, dim).
    """

    def __init__(self, model, loss_fn, inputs, targets, params=None, mode="auto", chunk_size=None,
                 memory_budget=None, process_group=None):
        model, self.process_group = _distributed(model, process_group)
        if not isinstance(model, torch.nn.Module):
            raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
        if not callable(loss_fn):
            raise TypeError("loss_fn: expected a callable loss_fn(outputs, targets)")
        _check_not_inference_mode()
        if mode not in ("auto", "vmap", "double_backward"):
            raise ValueError(f"mode: expected 'auto', 'vmap' or 'double_backward', got {mode!r}")
        if chunk_size is not None and (isinstance(chunk_size, bool) or not isinstance(chunk_size, int)
                                       or chunk_size < 1):
            raise ValueError(f"chunk_size: must be None or a positive int, got {chunk_size!r}")
        if memory_budget is not None and (isinstance(memory_budget, bool) or
                                          not isinstance(memory_budget, (int, float)) or
                                          not memory_budget > 0):
            raise ValueError(f"memory_budget: must be None or a positive number of bytes, got {memory_budget!r}")
        _check_no_training_randomness(model)
        named = dict(model.named_parameters())
        if params is None:
            chosen = [(k, p) for k, p in named.items() if p.requires_grad]
        else:
            ids = {id(p): k for k, p in named.items()}
            chosen, seen = [], set()
            for p in params:
                if id(p) not in ids:
                    raise ValueError("params: every entry must be a parameter of model")
                if id(p) in seen:
                    raise ValueError(f"params: parameter {ids[id(p)]!r} appears twice; each parameter is "
                                     "one block of the flat vector and can be listed once")
                seen.add(id(p))
                if not p.requires_grad:
                    raise ValueError(f"params: parameter {ids[id(p)]!r} does not require grad")
                chosen.append((ids[id(p)], p))
        if not chosen:
            raise ValueError("params: no parameters requiring grad (nothing to differentiate)")
        for k, p in chosen:
            if p.is_inference():
                raise ValueError(f"params: parameter {k!r} is an inference tensor (created or loaded under "
                                 "torch.inference_mode()), which autograd cannot differentiate; create or "
                                 "load the model outside inference mode")
        self.model, self.loss_fn = model, loss_fn
        self._data = _Data(inputs, targets)
        if self.process_group is not None and self._data.dataset:
            # every rank learns whether some rank has no batches before any rank raises: one rank
            # raising alone left the others waiting in the products' all-reduce forever
            import torch.distributed as dist

            has = torch.tensor([0 if self._data.empty() else 1], dtype=torch.int64,
                               device=_comm_device(self.process_group, chosen[0][1].device))
            dist.all_reduce(has, op=dist.ReduceOp.MIN, group=self.process_group)
            if int(has) == 0:
                raise ValueError("inputs: the data set has no batches on at least one rank of the process "
                                 "group; give every rank at least one batch (an empty batch counts as zero "
                                 "samples)")
        x0, y0 = self._data.first()
        if not self._data.dataset:
            self.inputs, self.targets = x0, y0
        self.names = [k for k, _ in chosen]
        self.params = [p for _, p in chosen]
        self.shapes = [p.shape for p in self.params]
        self.numels = [p.numel() for p in self.params]
        self.dim = int(sum(self.numels))
        self.dtype, self.device = self.params[0].dtype, self.params[0].device
        act_bytes, out = _leaf_output_bytes(model, x0)
        with torch.no_grad():
            loss = loss_fn(out, y0)
        if not isinstance(loss, torch.Tensor) or loss.dim() != 0:
            shape = tuple(loss.shape) if isinstance(loss, torch.Tensor) else type(loss).__name__
            raise ValueError(f"loss_fn: must return a scalar (0-d) tensor, got {shape}; use a "
                             "reduction such as 'mean'")
        self.memory_budget = DEFAULT_MEMORY_BUDGET if memory_budget is None else memory_budget
        pbytes = self.dim * self.params[0].element_size()
        # upper estimates (measured on a CNN and an MLP, docs/hessian.md): a fixed few parameter
        # copies (theta, its tangent, the gradient) and per probe the activations' tangents and
        # cotangents plus parameter-sized tangents
        self.bytes_per_probe = 3 * act_bytes + 8 * pbytes
        self.chunk_size = chunk_size if chunk_size is not None else \
            max(1, int((self.memory_budget - 4 * pbytes) // self.bytes_per_probe))
        self._versions = [p._version for p in self.params]
        self.mode = None
        self._vmapped = None
        self._decide = mode == "auto"
        self.mode_timings = None
        if mode in ("auto", "vmap"):
            try:
                self._build_vmap(x0, y0)
                self.mode = "vmap"
            except Exception as e:  # noqa: BLE001 - any torch.func limitation means "fall back"
                if mode == "vmap":
                    raise RuntimeError(
                        f"mode: 'vmap' was requested but torch.func cannot compute Hessian-vector products "
                        f"of this model and loss_fn ({type(e).__name__}: {e}); use mode='auto' (which falls "
                        "back to double backward) or mode='double_backward'") from e
                self._decide = False
        if self.mode is None:
            self.mode = "double_backward"

    def backend(self):
        """(ops, dtype): numkern._backend operations and dtype for probes (torch, this device)."""
        return TorchOps(self.device), self.dtype

    def _check_unchanged(self):
        """The products are of the parameters at construction: an in-place update since (e.g.
        optimizer.step(), load_state_dict()) is refused by name (the documented contract: call
        hessian_matvec() again after updating the model), as is a parameter replaced by another
        tensor.  Writes through ``.data`` bump no version counter and cannot be seen; both paths read
        the live parameter values on every call (_theta, _state; no graph kept between calls), so
        the products then are those at the current values."""
        named = dict(self.model.named_parameters())
        for name, p in zip(self.names, self.params):
            if named.get(name) is not p:
                raise RuntimeError(
                    f"model: parameter {name!r} was replaced by another tensor after hessian_matvec() was "
                    "created; call hessian_matvec() again")
        for name, p, v in zip(self.names, self.params, self._versions):
            if p._version != v:
                raise RuntimeError(
                    f"model: parameter {name!r} was modified in place after hessian_matvec() was "
                    "created (e.g. by optimizer.step()); this HessianMatvec holds the Hessian at the "
                    "old parameters. Call hessian_matvec() again after updating the model")

    def _unflatten(self, theta):
        out, o = {}, 0
        for k, shp, n in zip(self.names, self.shapes, self.numels):
            out[k] = theta[o:o + n].view(shp)
            o += n
        return out

    def _theta(self):
        """The chosen parameters' current values, flat (read on every call: follows .data writes)."""
        return torch.cat([p.detach().reshape(-1) for p in self.params])

    def _state(self):
        """The other parameters and the buffers at their current values (by name, as the model
        holds them now)."""
        chosen = set(self.names)
        state = {k: v.detach() for k, v in self.model.named_parameters() if k not in chosen}
        state.update(dict(self.model.named_buffers()))
        return state

    def _build_vmap(self, x0, y0):
        def loss_of(theta, fixed, inputs, targets):
            state = dict(fixed)
            state.update(self._unflatten(theta))
            return self.loss_fn(torch.func.functional_call(self.model, state, inputs), targets)

        grad = torch.func.grad(loss_of)

        def hvp(v, theta, fixed, inputs, targets):
            return torch.func.jvp(lambda th: grad(th, fixed, inputs, targets), (theta,), (v,))[1]

        self._vmapped = torch.func.vmap(hvp, in_dims=(0, None, None, None, None))
        self._vmapped(torch.zeros((1, self.dim), dtype=self.dtype, device=self.device), self._theta(),
                      self._state(), x0, y0)  # probe run

    def _vmap_batch(self, V, x, y, out, weight, live=None):
        """out += weight * H_b V, chunk_size probes per vmap call (bounds the extra memory), at the
        parameter values live = (theta, state) read at the start of the call."""
        c = self.chunk_size
        theta, state = live if live is not None else (self._theta(), self._state())
        for i in range(0, V.shape[0], c):
            hv = self._vmapped(V[i:i + c], theta, state, x, y).detach()
            out[i:i + c].add_(hv, alpha=weight)

    def _db_batch(self, V, x, y, out, weight, live=None):
        """out += weight * H_b V by double backward, one probe at a time through one graph of the
        gradient g = dL/dtheta per call and batch (not kept between calls, so that the products
        follow the current parameter values).  Parameters the loss does not reach get zero rows,
        and a gradient without a graph (a loss linear in theta, or one that does not depend on it)
        zero products: H = 0 there."""
        loss = self.loss_fn(self.model(*x), y)
        if not loss.requires_grad:
            return                      # the loss does not depend on the parameters: H = 0
        g = torch.autograd.grad(loss, self.params, create_graph=True, allow_unused=True)
        if not any(t is not None and t.requires_grad for t in g):
            return                      # every gradient block is constant in theta: H = 0
        gg = torch.cat([(torch.zeros_like(p) if t is None else t).reshape(-1) for t, p in zip(g, self.params)])
        for i, v in enumerate(V):
            hv = torch.autograd.grad(gg, self.params, grad_outputs=v, retain_graph=True, allow_unused=True)
            o = 0
            for h, n in zip(hv, self.numels):
                if h is not None:
                    out[i, o:o + n].add_(h.detach().reshape(-1), alpha=weight)
                o += n

    def _local(self, V, path):
        """(sum_b n_b H_b V, sum_b n_b) over this process's data (one pass); n_b = 1 for a single
        batch unless the products are all-reduced (then every rank's batch counts by its size)."""
        fn = self._vmap_batch if path == "vmap" else self._db_batch
        live = (self._theta(), self._state()) if path == "vmap" else None  # once per pass
        out = torch.zeros_like(V)
        total = 0
        for x, y, n in self._data.batches():
            if self.process_group is not None and not self._data.dataset:
                n = _batch_size(x, y)
            fn(V, x, y, out, n, live)
            total += n
        return out, total

    def _apply(self, V, path):
        """H V over the data (one pass), batch-size weighted for a data set and across ranks."""
        return self._reduce(V, *self._local(V, path))

    def _reduce(self, V, out, total):
        if self.process_group is None:
            return out if total == 1 else out.div_(total)
        return _all_reduce_products(self.process_group, V, out, total)

    def _timed(self, V, path):
        import time

        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        t0 = time.process_time()
        out = self._local(V, path)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return out, (time.process_time() - t0) / V.shape[0]

    def _choose_mode(self, Vb):
        """mode="auto": time both paths once on the first product's first probes (at most 4)
        (local computation only; with a process group every rank keeps the path that is faster
        summed over the ranks, so all take the same one)."""
        self._decide = False
        c = min(Vb.shape[0], 4)
        (out_v, tot), t_v = self._timed(Vb[:c], "vmap")
        _, t_d = self._timed(Vb[:c], "double_backward")
        if self.process_group is not None:
            import torch.distributed as dist

            t = torch.tensor([t_v, t_d], dtype=torch.float64, device=self._comm_device())
            dist.all_reduce(t, group=self.process_group)
            t_v, t_d = float(t[0]) / dist.get_world_size(self.process_group), \
                float(t[1]) / dist.get_world_size(self.process_group)
        out_v = self._reduce(Vb[:c], out_v, tot)
        self.mode_timings = {"vmap": t_v, "double_backward": t_d}
        self.mode = "vmap" if t_v <= t_d else "double_backward"
        if c == Vb.shape[0]:
            return out_v
        return torch.cat([out_v, self._apply(Vb[c:], self.mode)])

    def matvec(self, V):
        """H V for V of shape (dim,) or (k, dim) (flat over the parameters in order, converted to the
        parameters' device and dtype); returns the same shape.  H = d^2 L / d theta^2 at the parameters'
        current values, L the loss of the batch or the mean loss over the data set (and over every
        rank's data with a process group).  ValueError for another shape; RuntimeError inside
        torch.inference_mode() or after an in-place update of a parameter (see the class doc)."""
        _check_not_inference_mode()
        self._check_unchanged()
        if not isinstance(V, torch.Tensor):
            V = torch.as_tensor(V)
        V = V.to(device=self.device, dtype=self.dtype)
        single = V.dim() == 1
        Vb = V[None] if single else V
        if Vb.dim() != 2 or Vb.shape[1] != self.dim:
            raise ValueError(f"V: expected shape ({self.dim},) or (k, {self.dim}), got {tuple(V.shape)}")
        with torch.enable_grad():
            out = self._choose_mode(Vb) if self._decide else self._apply(Vb, self.mode)
        return out[0] if single else out

    __call__ = matvec

    def _comm_device(self):
        return _comm_device(self.process_group, self.device)

    def shared_seed(self, seed=None):
        """The probe seed every rank must use: ``seed`` itself (checked equal on all ranks), or,
        for None, a fresh seed drawn on the group's first rank and broadcast.  Without a process
        group: ``seed`` unchanged."""
        if self.process_group is None:
            return seed
        return _shared_seed(self.process_group, seed, self._comm_device())


# ---- Hessian alignment (Hemati et al., ICCV 2023) --------------------------------------------
# The authors' algorithm (their DomainBed extension, algorithms.py; see docs/hessian.md) aligns each
# domain's statistic A_e to the statistic of the pooled loss (1/E) sum_e L_e, detached:
#   (1/E) sum_e [ alpha ||A_e - sg(A_pool)||^2 + beta ||g_e - sg(g_bar)||^2 ],
# A_e = H_e g_e, A_pool = H_bar g_bar (HGP) or A_e = diag H_e, A_pool = diag H_bar (Hutchinson),
# H_bar = (1/E) sum_e H_e, g_bar = (1/E) sum_e g_e.  target="mean" aligns to mean_e A_e instead
# (numkern <= the first release).
_TARGETS = ("pooled", "mean")
_ESTIMATORS = ("unbiased", "plugin")


def _domains(features, labels):
    if isinstance(features, torch.Tensor) or isinstance(labels, torch.Tensor):
        raise TypeError("features, labels: expected sequences (one tensor per domain), e.g. lists")
    features, labels = list(features), list(labels)
    if len(features) != len(labels):
        raise ValueError(f"labels: {len(labels)} domains but features has {len(features)}")
    if len(features) < 2:
        raise ValueError("features: need at least two domains to align")
    for e, (z, y) in enumerate(zip(features, labels)):
        if not isinstance(z, torch.Tensor) or not z.is_floating_point():
            raise TypeError(f"features: domain {e} is not a floating torch tensor "
                            f"({getattr(z, 'dtype', type(z).__name__)})")
        if not isinstance(y, torch.Tensor) or y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
            raise TypeError(f"labels: domain {e} is not an integer torch tensor "
                            f"({getattr(y, 'dtype', type(y).__name__)})")
    return features, labels


def _check_nonempty(features, grp):
    """Without a process group a domain without samples has no loss (a mean over nothing: its
    gradient and Hessian would be NaN); refuse it as the distributed path does for a domain
    without samples on any rank (_Group.counts)."""
    if grp is None:
        for e, z in enumerate(features):
            if z.shape[0] == 0:
                raise ValueError(f"features: domain {e} has no samples")


def _check_weight(w, name):
    if isinstance(w, bool) or not isinstance(w, (int, float)) or not (w >= 0 and w < float("inf")):
        raise ValueError(f"{name}: must be a finite number >= 0, got {w!r}")


def _check_choice(x, name, choices):
    if x not in choices:
        raise ValueError(f"{name}: expected one of {choices}, got {x!r}")


def _linear_parts(head, z, y):
    """Closed forms for nn.Linear + mean cross-entropy: probabilities and gradient blocks."""
    if z.dim() != 2 or z.shape[1] != head.in_features:
        raise ValueError(f"features: expected (n, {head.in_features}) per domain, got {tuple(z.shape)}")
    if y.shape != (z.shape[0],):
        raise ValueError(f"labels: expected shape ({z.shape[0]},) per domain, got {tuple(y.shape)}")
    C = head.out_features
    if y.numel() and (int(y.min()) < 0 or int(y.max()) >= C):
        raise ValueError(f"labels: values must lie in [0, {C})")
    n = max(z.shape[0], 1)   # a rank's empty shard of a domain: zero blocks (its weight n_e = 0)
    P = torch.softmax(torch.nn.functional.linear(z, head.weight, head.bias), dim=-1)
    R = P - torch.nn.functional.one_hot(y, C).to(P.dtype)
    g = [R.T @ z / n] + ([R.sum(0) / n] if head.bias is not None else [])
    return P, g


def _linear_hvp(head, P, z, V):
    """H V for blocks V = [V_W (k, C, d), V_b (k, C)] via (1/n) sum_i (A_i V x_i) x_i^T."""
    n = max(z.shape[0], 1)
    U = torch.einsum("nj,kcj->knc", z, V[0])
    if head.bias is not None:
        U = U + V[1][:, None, :]
    G = P * (U - (P * U).sum(-1, keepdim=True))
    out = [torch.einsum("knc,nj->kcj", G, z) / n]
    if head.bias is not None:
        out.append(G.sum(1) / n)
    return out


def _linear_diag(head, P, z):
    """Exact diag(H) of nn.Linear + mean CE: (1/n) sum_i p_ic (1 - p_ic) x_ij^2, flat."""
    S = P * (1 - P)
    n = max(z.shape[0], 1)
    blocks = [(S.T @ (z * z) / n)[None]] + ([S.sum(0)[None] / n] if head.bias is not None else [])
    return _flat(blocks)[0]


def _flat(blocks):
    return torch.cat([b.reshape(b.shape[0], -1) if b.dim() > 1 else b.reshape(1, -1) for b in blocks], -1)


def _targets(stats, grads, target, pooled_stat):
    """(T_A, T_g): the alignment targets.  "pooled": the pooled-loss statistic and mean gradient,
    detached (the authors' code); "mean": the (differentiable) means over domains."""
    if target == "mean":
        return torch.stack(stats).mean(0), torch.stack(grads).mean(0)
    return pooled_stat.detach(), torch.stack(grads).mean(0).detach()


def _alignment(stats, grads, alpha, beta, target, pooled_stat=None):
    """(1/E) sum_e [alpha ||A_e - T_A||^2 + beta ||g_e - T_g||^2] for exact statistics A_e."""
    TA, Tg = _targets(stats, grads, target, pooled_stat)
    A, G = torch.stack(stats), torch.stack(grads)
    return (alpha * ((A - TA) ** 2).sum() + beta * ((G - Tg) ** 2).sum()) / A.shape[0]


def _probe_alignment(samples, grads, alpha, beta, target, estimator):
    """The Hutchinson penalty from per-probe samples samples[e] (S, P) = v_s (.) H_e v_s.

    X_{e,s} = samples[e][s] - T_s with T_s = mean_e samples[e][s] (= v_s (.) H_bar v_s, the pooled
    Hessian's Hutchinson sample with the same probe; detached for target="pooled").  The X_{e,s}
    are i.i.d. over s with mean mu_e = diag H_e - diag H_bar.  "unbiased": the U-statistic
    (||sum_s X_es||^2 - sum_s ||X_es||^2) / (S (S - 1)) = mean over ordered probe pairs s != t of
    X_es . X_et, E = ||mu_e||^2.  "plugin": ||mean_s X_es||^2, E = ||mu_e||^2 + tr(Cov X_e)/S.
    """
    D = torch.stack(samples)                         # (E, S, P)
    T = D.mean(0)
    if target == "pooled":
        T = T.detach()
    X = D - T
    S = X.shape[1]
    if estimator == "plugin":
        hterm = (X.mean(1) ** 2).sum()
    else:
        tot = X.sum(1)
        hterm = ((tot * tot).sum() - (X * X).sum()) / (S * (S - 1))
    G = torch.stack(grads)
    Tg = G.mean(0)
    if target == "pooled":
        Tg = Tg.detach()
    return (alpha * hterm + beta * ((G - Tg) ** 2).sum()) / D.shape[0]


def _generic_grads(head, loss_fn, z, y, params):
    empty = z.shape[0] == 0
    if empty:
        # A rank's empty shard of a domain (single-process calls refuse empty domains) adds
        # nothing.  Its gradient is that of one all-zero sample seeded with 0: exactly zero, with
        # the same graph as on the other ranks, so that the all-reduces inside the penalty's
        # backward run in the same order on every rank (a different graph reorders them).
        z = z.new_zeros((1,) + tuple(z.shape[1:]))
        y = y.new_zeros((1,) + tuple(y.shape[1:]))
    loss = loss_fn(head(z), y)
    if loss.dim() != 0:
        raise ValueError("loss_fn: must return a scalar (0-d) tensor")
    return torch.autograd.grad(loss, params, grad_outputs=torch.zeros_like(loss) if empty else None,
                               create_graph=True)


def _is_linear_ce(head, loss_fn):
    return isinstance(head, torch.nn.Linear) and loss_fn is None


def _probes(params, num_probes, generator, grp=None):
    """Rademacher probes, one (S, *p.shape) block per parameter (checked equal on every rank)."""
    dev = params[0].device
    V = [(2 * torch.randint(0, 2, (num_probes,) + tuple(p.shape), generator=generator, device=dev) - 1)
         .to(p.dtype) for p in params]
    if grp is not None:
        grp.check_same(V, "generator")
    return V


def _params_of(head):
    ps = [p for p in head.parameters() if p.requires_grad]
    if not ps:
        raise ValueError("head: no parameters requiring grad")
    return ps


def _refuse_head_form_args(labels, loss_fn, features):
    """The gradient form has no labels, loss_fn or features: a value there (e.g. alpha passed as the
    third positional argument, which is ``labels``) would otherwise be ignored silently."""
    for name, val in (("labels", labels), ("loss_fn", loss_fn), ("features", features)):
        if val is not None:
            raise TypeError(f"{name}: only used by the head form (head, features, labels); with per-domain "
                            f"gradients it must be None (got {type(val).__name__}); pass alpha / beta by "
                            "keyword (the third positional parameter is labels)")


def _grad_form(head_grads_per_domain, params):
    """Validate the gradient form: per-domain head gradients (create_graph=True) and the params."""
    if params is None:
        raise ValueError("params: the head parameters the gradients were taken with respect to are "
                         "required with per-domain gradients (e.g. list(head.parameters()))")
    params = [params] if isinstance(params, torch.Tensor) else list(params)
    if not params or not all(isinstance(p, torch.Tensor) and p.requires_grad for p in params):
        raise ValueError("params: expected tensors requiring grad (the head parameters)")
    if isinstance(head_grads_per_domain, torch.Tensor):
        raise TypeError("head_grads_per_domain: expected a sequence with one entry per domain")
    grads = []
    for e, g in enumerate(head_grads_per_domain):
        g = [g] if isinstance(g, torch.Tensor) else list(g)
        if len(g) != len(params) or any(tuple(a.shape) != tuple(p.shape) for a, p in zip(g, params)):
            raise ValueError(f"head_grads_per_domain: domain {e} has gradients of shapes "
                             f"{[tuple(a.shape) for a in g]}, expected {[tuple(p.shape) for p in params]}")
        if not any(a.requires_grad for a in g):
            raise ValueError(f"head_grads_per_domain: domain {e}'s gradients carry no graph; compute them "
                             "with torch.autograd.grad(loss, params, create_graph=True)")
        grads.append(g)
    if len(grads) < 2:
        raise ValueError("head_grads_per_domain: need at least two domains to align")
    return grads, params


def _grad_of(scalar, params, create_graph=True):
    out = torch.autograd.grad(scalar, params, create_graph=create_graph, retain_graph=True, allow_unused=True)
    return [torch.zeros_like(p) if o is None else o for o, p in zip(out, params)]


def _cat(blocks):
    return torch.cat([b.reshape(-1) for b in blocks])


class _AllReduceSum(torch.autograd.Function):
    """y = sum_r x_r over the ranks of a process group (every rank gets y).  Its backward is the
    same all-reduce of the incoming gradients (d y / d x_r = I on every rank, so the gradient of
    x_r is sum_r' g_r'), itself differentiable, so double backward works through it."""

    @staticmethod
    def forward(ctx, x, group):
        import torch.distributed as dist

        ctx.group = group
        y = x.clone()
        dist.all_reduce(y, group=group)
        return y

    @staticmethod
    def backward(ctx, grad):
        return _AllReduceSum.apply(grad.contiguous(), ctx.group), None


class _Group:
    """Data-parallel statistics over a torch.distributed process group.  Every rank evaluates the
    same global penalty from all-reduced statistics (differentiable all-reduces: their backward
    sums the gradient over the ranks), so each rank's parameter gradient is R times its share and
    DistributedDataParallel's averaging over the R ranks gives exactly the gradient of the penalty
    of the concatenated data."""

    def __init__(self, group):
        import torch.distributed as dist

        self.group, self.dist = group, dist
        self.size = dist.get_world_size(group)

    def sum(self, x):
        return _AllReduceSum.apply(x.contiguous(), self.group)

    def counts(self, ns, device):
        """Every domain's sample count over all ranks (a float64 tensor; ValueError if one is 0)."""
        t = torch.tensor([float(n) for n in ns], dtype=torch.float64, device=device)
        self.dist.all_reduce(t, group=self.group)
        if bool((t == 0).any()):
            raise ValueError(f"features: domain {int((t == 0).nonzero()[0])} has no samples on any rank")
        return t

    def weighted_mean(self, blocks, n, total):
        """sum_r n_r b_r / total for each block (n: this rank's weight)."""
        return [self.sum(b * n) / total.to(b.dtype) for b in blocks]

    def rank_mean(self, x):
        """(1/R) sum_r x_r: the products H v from autograd through all-reduced gradients, where
        rank r holds R w_r/W times its share J_r^T v."""
        return self.sum(x) / self.size

    def check_same(self, V, what):
        v64 = torch.cat([v.detach().reshape(-1) for v in V]).to(torch.float64)
        c = torch.stack([v64.sum(), (v64 * v64).sum()])
        mm = torch.cat([c, -c])
        self.dist.all_reduce(mm, op=self.dist.ReduceOp.MAX, group=self.group)
        if not torch.equal(mm[:2], -mm[2:]):
            raise ValueError(f"{what}: the ranks of the process group drew different probes; seed the "
                             "generator identically on every rank")


def _hg_autograd(grads, params, target, grp=None):
    """H_e g_e = grad(1/2 ||g_e||^2) per domain and (target="pooled") H_bar g_bar = grad(1/2
    ||g_bar||^2), g_bar = mean_e g_e (the pooled loss's gradient), without a graph."""
    red = (lambda x: x) if grp is None else grp.rank_mean
    hgs = [red(_cat(_grad_of(sum((x * x).sum() for x in g) / 2, params))) for g in grads]
    pooled = None
    if target == "pooled":
        gbar = [sum(parts) / len(grads) for parts in zip(*grads)]
        pooled = red(_cat(_grad_of(sum((x * x).sum() for x in gbar) / 2, params, create_graph=False)))
        pooled = pooled.detach()
    return hgs, pooled


def _probe_samples_autograd(g, params, V, grp=None):
    """(S, P) samples v_s (.) H v_s with H v_s = grad(g . v_s), batched over probes."""
    gc = _cat(g)
    Vf = torch.cat([v.reshape(v.shape[0], -1) for v in V], 1)
    try:
        hv = torch.autograd.grad(gc, params, grad_outputs=Vf, is_grads_batched=True, create_graph=True,
                                 retain_graph=True, allow_unused=True)
        hv = [torch.zeros_like(v) if h is None else h for h, v in zip(hv, V)]
        HV = torch.cat([h.reshape(h.shape[0], -1) for h in hv], 1)
    except RuntimeError:  # an op without a batching rule: one probe at a time
        HV = torch.stack([_cat(_grad_of(gc @ v, params)) for v in Vf])
    if grp is not None:
        HV = grp.rank_mean(HV)
    return Vf * HV


def _check_probes(num_probes, estimator):
    if num_probes is None or num_probes == "auto":
        return num_probes
    if isinstance(num_probes, bool) or not isinstance(num_probes, int) or num_probes < 1:
        raise ValueError(f"num_probes: must be a positive int, 'auto' or None, got {num_probes!r}")
    if estimator == "unbiased" and num_probes < 2:
        raise ValueError("num_probes: the unbiased estimator pairs distinct probes and needs at least 2 "
                         "(or estimator='plugin')")
    return num_probes


def _group(process_group, head_or_grads):
    ddp = getattr(torch.nn.parallel, "DistributedDataParallel", None)
    if ddp is not None and isinstance(head_or_grads, ddp):
        raise TypeError("head: pass the DistributedDataParallel model's module (ddp.module) and "
                        "process_group=ddp.process_group")
    return None if process_group is None else _Group(process_group)


def _global_grads(grp, grads, weights):
    """Per-domain gradients of the concatenated data: sum_r n_r g_r / sum_r n_r (differentiable)."""
    if grp is None:
        return grads
    dev = grads[0][0].device
    totals = grp.counts(weights, dev)
    return [grp.weighted_mean(g, float(n), totals[e]) for e, (g, n) in enumerate(zip(grads, weights))]


def hgp_penalty(head_grads_per_domain, params=None, labels=None, alpha=1e-4, beta=5e-3, loss_fn=None,
                features=None, target="pooled", process_group=None):
    _check_choice(target, "target", _TARGETS)
    grp = _group(process_group, head_grads_per_domain)
    if not _is_head_form(head_grads_per_domain):
        _refuse_head_form_args(labels, loss_fn, features)
        _check_weight(alpha, "alpha")
        _check_weight(beta, "beta")
        grads, params = _grad_form(head_grads_per_domain, params)
        grads = _global_grads(grp, grads, [1.0] * len(grads))
        hgs, pooled = _hg_autograd(grads, params, target, grp)
        return _alignment(hgs, [_cat(g) for g in grads], alpha, beta, target, pooled)
    return _hgp_head(head_grads_per_domain, params if features is None else features, labels, alpha, beta,
                     loss_fn, target, grp)


def _is_head_form(first):
    return isinstance(first, torch.nn.Module)


def hutchinson_penalty(head_grads_per_domain, params=None, labels=None, alpha=1e-3, beta=5e-3,
                       num_probes="auto", loss_fn=None, generator=None, features=None, target="pooled",
                       estimator="unbiased", process_group=None):
    _check_choice(target, "target", _TARGETS)
    grp = _group(process_group, head_grads_per_domain)
    _check_choice(estimator, "estimator", _ESTIMATORS)
    num_probes = _check_probes(num_probes, estimator)
    if not _is_head_form(head_grads_per_domain):
        _refuse_head_form_args(labels, loss_fn, features)
        if num_probes is None:
            raise ValueError("num_probes: None (exact diagonal) needs the head form "
                             "hutchinson_penalty(head, features, labels) with an nn.Linear head")
        _check_weight(alpha, "alpha")
        _check_weight(beta, "beta")
        grads, params = _grad_form(head_grads_per_domain, params)
        grads = _global_grads(grp, grads, [1.0] * len(grads))
        S = 100 if num_probes == "auto" else num_probes
        V = _probes(params, S, generator, grp)
        samples = [_probe_samples_autograd(g, params, V, grp) for g in grads]
        return _probe_alignment(samples, [_cat(g) for g in grads], alpha, beta, target, estimator)
    return _hutchinson_head(head_grads_per_domain, params if features is None else features, labels, alpha,
                            beta, num_probes, loss_fn, generator, target, estimator, grp)


def _linear_global(grp, head, parts, features):
    """Per-domain (gradient blocks, H_e applied by a function) of the concatenated data."""
    ns = [float(z.shape[0]) for z in features]
    if grp is None:
        return [g for _, g in parts], [lambda V, P=P, z=z: _linear_hvp(head, P, z, V) for (P, _), z in
                                       zip(parts, features)]
    totals = grp.counts(ns, features[0].device)
    grads = [grp.weighted_mean(g, n, totals[e]) for e, ((_, g), n) in enumerate(zip(parts, ns))]

    def apply(P, z, n, tot):
        return lambda V: grp.weighted_mean(_linear_hvp(head, P, z, V), n, tot)

    return grads, [apply(P, z, n, totals[e]) for e, ((P, _), z, n) in enumerate(zip(parts, features, ns))]


def _hgp_head(head, features, labels, alpha, beta, loss_fn, target, grp=None):
    features, labels = _domains(features, labels)
    _check_nonempty(features, grp)
    _check_weight(alpha, "alpha")
    _check_weight(beta, "beta")
    if not _is_linear_ce(head, loss_fn):
        params = _params_of(head)
        loss_fn = loss_fn or torch.nn.functional.cross_entropy
        grads = [_generic_grads(head, loss_fn, z, y, params) for z, y in zip(features, labels)]
        grads = _global_grads(grp, grads, [float(z.shape[0]) for z in features])
        hgs, pooled = _hg_autograd(grads, params, target, grp)
        return _alignment(hgs, [_cat(g) for g in grads], alpha, beta, target, pooled)
    parts = [_linear_parts(head, z, y) for z, y in zip(features, labels)]
    gblocks, hvps = _linear_global(grp, head, parts, features)
    grads, hgs = [], []
    for g, hvp in zip(gblocks, hvps):
        grads.append(_flat([b[None] for b in g])[0])
        hgs.append(_flat(hvp([b[None] for b in g]))[0])
    pooled = None
    if target == "pooled":   # H_bar g_bar = (1/E) sum_e H_e g_bar, no graph needed
        with torch.no_grad():
            gbar = [sum(b) / len(parts) for b in zip(*gblocks)]
            pooled = sum(_flat(hvp([b[None] for b in gbar]))[0] for hvp in hvps) / len(parts)
    return _alignment(hgs, grads, alpha, beta, target, pooled)


def _hutchinson_head(head, features, labels, alpha, beta, num_probes, loss_fn, generator, target, estimator,
                     grp=None):
    features, labels = _domains(features, labels)
    _check_nonempty(features, grp)
    _check_weight(alpha, "alpha")
    _check_weight(beta, "beta")
    params = _params_of(head)
    if _is_linear_ce(head, loss_fn):
        parts = [_linear_parts(head, z, y) for z, y in zip(features, labels)]
        gblocks, hvps = _linear_global(grp, head, parts, features)
        grads = [_flat([b[None] for b in g])[0] for g in gblocks]
        if num_probes in (None, "auto"):   # exact diagonals; diag H_bar = mean_e diag H_e
            diags = [_linear_diag(head, P, z) for (P, _), z in zip(parts, features)]
            if grp is not None:
                ns = [float(z.shape[0]) for z in features]
                totals = grp.counts(ns, features[0].device)
                diags = [grp.weighted_mean([dg], n, totals[e])[0] for e, (dg, n) in enumerate(zip(diags, ns))]
            pooled = torch.stack(diags).mean(0)
            return _alignment(diags, grads, alpha, beta, target, pooled)
        V = _probes([head.weight] + ([head.bias] if head.bias is not None else []), num_probes, generator, grp)
        Vf = _flat(V)
        samples = [Vf * _flat(hvp(V)) for hvp in hvps]
        return _probe_alignment(samples, grads, alpha, beta, target, estimator)
    if num_probes is None:
        raise ValueError("num_probes: None (exact diagonal) needs an nn.Linear head with loss_fn=None")
    loss_fn = loss_fn or torch.nn.functional.cross_entropy
    S = 100 if num_probes == "auto" else num_probes
    V = _probes(params, S, generator, grp)
    grads = [_generic_grads(head, loss_fn, z, y, params) for z, y in zip(features, labels)]
    grads = _global_grads(grp, grads, [float(z.shape[0]) for z in features])
    samples = [_probe_samples_autograd(g, params, V, grp) for g in grads]
    return _probe_alignment(samples, [_cat(g) for g in grads], alpha, beta, target, estimator)
