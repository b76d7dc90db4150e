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


def _as_tuple(inputs):
    return inputs if isinstance(inputs, tuple) else (inputs,)


class HessianMatvec:
    r"""v -> H v for H the Hessian of loss_fn(model(*inputs), targets) w.r.t. the parameters.

    Products are forward-over-reverse (torch.func.jvp of torch.func.grad), batched over probes
    with torch.func.vmap; where torch.func cannot run the model (mode="double_backward", or an
    operation without forward-mode AD), reverse-over-reverse (double backward) per probe.

    Arguments: model (nn.Module), loss_fn(outputs, targets) -> scalar tensor, inputs (a tensor or
    a tuple of tensors passed as model(*inputs)), targets, params (None = every parameter with
    requires_grad; or an iterable of the model's parameters - the others are held fixed), mode
    ("auto", "vmap", "double_backward"), chunk_size (probes per vmap call; None = all).
    Vectors are flat over the chosen parameters in the order given (``torch.cat([p.flatten()])``):
    call with shape (dim,) or a batch (k, dim).  ``.mode`` says which path is in use.
    """

    def __init__(self, model, loss_fn, inputs, targets, params=None, mode="auto", chunk_size=None):
        if not isinstance(model, torch.nn.Module):
            raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
        if not callable(loss_fn):
            raise TypeError("loss_fn: expected a callable loss_fn(outputs, targets)")
        if mode not in ("auto", "vmap", "double_backward"):
            raise ValueError(f"mode: expected 'auto', 'vmap' or 'double_backward', got {mode!r}")
        _check_no_training_randomness(model)
        named = dict(model.named_parameters())
        if params is None:
            chosen = [(k, p) for k, p in named.items() if p.requires_grad]
        else:
            ids = {id(p): k for k, p in named.items()}
            chosen = []
            for p in params:
                if id(p) not in ids:
                    raise ValueError("params: every entry must be a parameter of model")
                if not p.requires_grad:
                    raise ValueError(f"params: parameter {ids[id(p)]!r} does not require grad")
                chosen.append((ids[id(p)], p))
        if not chosen:
            raise ValueError("params: no parameters requiring grad (nothing to differentiate)")
        self.model, self.loss_fn = model, loss_fn
        self.inputs, self.targets = _as_tuple(inputs), targets
        self.names = [k for k, _ in chosen]
        self.params = [p for _, p in chosen]
        self.shapes = [p.shape for p in self.params]
        self.numels = [p.numel() for p in self.params]
        self.dim = int(sum(self.numels))
        self.dtype, self.device = self.params[0].dtype, self.params[0].device
        self.chunk_size = chunk_size
        with torch.no_grad():
            loss = loss_fn(model(*self.inputs), targets)
        if not isinstance(loss, torch.Tensor) or loss.dim() != 0:
            shape = tuple(loss.shape) if isinstance(loss, torch.Tensor) else type(loss).__name__
            raise ValueError(f"loss_fn: must return a scalar (0-d) tensor, got {shape}; use a "
                             "reduction such as 'mean'")
        self._theta = torch.cat([p.detach().reshape(-1) for p in self.params])
        self._versions = [p._version for p in self.params]
        self._fixed = {k: v.detach() for k, v in model.named_parameters() if k not in self.names}
        self._fixed.update(dict(model.named_buffers()))
        self.mode = None
        self._vmapped = None
        self._graph_grad = None
        if mode in ("auto", "vmap"):
            try:
                self._build_vmap()
                self.mode = "vmap"
            except Exception:  # noqa: BLE001 - any torch.func limitation means "fall back"
                if mode == "vmap":
                    raise
        if self.mode is None:
            self.mode = "double_backward"

    def backend(self):
        """(ops, dtype): numkern._backend operations and dtype for probes (torch, this device)."""
        return TorchOps(self.device), self.dtype

    def _check_unchanged(self):
        """The products are of the parameters at construction: an in-place update since (e.g.
        optimizer.step()) is refused by name instead of surfacing as autograd's "modified by an
        inplace operation" (double backward) or silently using the old values (vmap)."""
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

    def _loss_of(self, theta):
        state = dict(self._fixed)
        state.update(self._unflatten(theta))
        out = torch.func.functional_call(self.model, state, self.inputs)
        return self.loss_fn(out, self.targets)

    def _build_vmap(self):
        grad = torch.func.grad(self._loss_of)
        theta = self._theta

        def hvp(v):
            return torch.func.jvp(grad, (theta,), (v,))[1]

        self._vmapped = torch.func.vmap(hvp, chunk_size=self.chunk_size)
        self._vmapped(torch.zeros((1, self.dim), dtype=self.dtype, device=self.device))  # probe run

    def _double_backward(self, V):
        if self._graph_grad is None:
            loss = self.loss_fn(self.model(*self.inputs), self.targets)
            g = torch.autograd.grad(loss, self.params, create_graph=True)
            self._graph_grad = torch.cat([x.reshape(-1) for x in g])
        outs = []
        for v in V:
            hv = torch.autograd.grad(self._graph_grad, self.params, grad_outputs=v, retain_graph=True,
                                     allow_unused=True)
            outs.append(torch.cat([(h if h is not None else torch.zeros_like(p)).reshape(-1)
                                   for h, p in zip(hv, self.params)]))
        return torch.stack(outs)

    def matvec(self, V):
        self._check_unchanged()
        if not isinstance(V, torch.Tensor):
            V = torch.as_tensor(V)
        V = V.to(device=self.device, dtype=self.dtype)
        single = V.dim() == 1
        Vb = V[None] if single else V
        if Vb.dim() != 2 or Vb.shape[1] != self.dim:
            raise ValueError(f"V: expected shape ({self.dim},) or (k, {self.dim}), got {tuple(V.shape)}")
        if self.mode == "vmap":
            out = self._vmapped(Vb)
        else:
            out = self._double_backward(Vb)
        out = out.detach()
        return out[0] if single else out

    __call__ = matvec


# ---- Hessian alignment (Hemati et al., ICCV 2023) --------------------------------------------
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


def _check_weight(w, name):
    if isinstance(w, bool) or not isinstance(w, (int, float)) or not (w >= 0 and w < float("inf")):
        raise ValueError(f"{name}: must be a finite number >= 0, got {w!r}")


def _linear_parts(head, z, y):
    """Closed forms for nn.Linear + mean cross-entropy: probabilities and gradient blocks."""
    if z.dim() != 2 or z.shape[1] != head.in_features:
        raise ValueError(f"features: expected (n, {head.in_features}) per domain, got {tuple(z.shape)}")
    if y.shape != (z.shape[0],):
        raise ValueError(f"labels: expected shape ({z.shape[0]},) per domain, got {tuple(y.shape)}")
    C = head.out_features
    if y.numel() and (int(y.min()) < 0 or int(y.max()) >= C):
        raise ValueError(f"labels: values must lie in [0, {C})")
    n = z.shape[0]
    P = torch.softmax(torch.nn.functional.linear(z, head.weight, head.bias), dim=-1)
    R = P - torch.nn.functional.one_hot(y, C).to(P.dtype)
    g = [R.T @ z / n] + ([R.sum(0) / n] if head.bias is not None else [])
    return P, g


def _linear_hvp(head, P, z, V):
    """H V for blocks V = [V_W (k, C, d), V_b (k, C)] via (1/n) sum_i (A_i V x_i) x_i^T."""
    n = z.shape[0]
    U = torch.einsum("nj,kcj->knc", z, V[0])
    if head.bias is not None:
        U = U + V[1][:, None, :]
    G = P * (U - (P * U).sum(-1, keepdim=True))
    out = [torch.einsum("knc,nj->kcj", G, z) / n]
    if head.bias is not None:
        out.append(G.sum(1) / n)
    return out


def _flat(blocks):
    return torch.cat([b.reshape(b.shape[0], -1) if b.dim() > 1 else b.reshape(1, -1) for b in blocks], -1)


def _alignment(stats, grads, alpha, beta):
    A = torch.stack(stats)
    G = torch.stack(grads)
    E = A.shape[0]
    return (alpha * ((A - A.mean(0)) ** 2).sum() + beta * ((G - G.mean(0)) ** 2).sum()) / E


def _generic_grads(head, loss_fn, z, y, params):
    loss = loss_fn(head(z), y)
    if loss.dim() != 0:
        raise ValueError("loss_fn: must return a scalar (0-d) tensor")
    return torch.autograd.grad(loss, params, create_graph=True)


def _is_linear_ce(head, loss_fn):
    return isinstance(head, torch.nn.Linear) and loss_fn is None


def _probes(head, params, num_probes, generator):
    dev = params[0].device
    shapes = [(num_probes,) + tuple(p.shape) for p in params]
    return [(2 * torch.randint(0, 2, s, generator=generator, device=dev) - 1).to(p.dtype)
            for s, p in zip(shapes, params)]


def _params_of(head):
    ps = [p for p in head.parameters() if p.requires_grad]
    if not ps:
        raise ValueError("head: no parameters requiring grad")
    return ps


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


def _grad_of(scalar, params):
    out = torch.autograd.grad(scalar, params, create_graph=True, retain_graph=True, allow_unused=True)
    return [torch.zeros_like(p) if o is None else o for o, p in zip(out, params)]


def _cat(blocks):
    return torch.cat([b.reshape(-1) for b in blocks])


def _is_head_form(first):
    return isinstance(first, torch.nn.Module)


def hgp_penalty(head_grads_per_domain, params=None, labels=None, alpha=1e-4, beta=5e-3, loss_fn=None,
                features=None):
    if not _is_head_form(head_grads_per_domain):
        _check_weight(alpha, "alpha")
        _check_weight(beta, "beta")
        grads, params = _grad_form(head_grads_per_domain, params)
        hgs = [_cat(_grad_of(sum((x * x).sum() for x in g) / 2, params)) for g in grads]
        return _alignment(hgs, [_cat(g) for g in grads], alpha, beta)
    return _hgp_head(head_grads_per_domain, params if features is None else features, labels, alpha, beta,
                     loss_fn)


def hutchinson_penalty(head_grads_per_domain, params=None, labels=None, alpha=1e-3, beta=5e-3,
                       num_probes=100, loss_fn=None, generator=None, features=None):
    if num_probes is not None and (isinstance(num_probes, bool) or not isinstance(num_probes, int)
                                   or num_probes < 1):
        raise ValueError(f"num_probes: must be a positive int or None, got {num_probes!r}")
    if not _is_head_form(head_grads_per_domain):
        if num_probes is None:
            raise ValueError("num_probes: None (exact diagonal) needs the head form "
                             "hutchinson_penalty(head, features, labels) with an nn.Linear head")
        _check_weight(alpha, "alpha")
        _check_weight(beta, "beta")
        grads, params = _grad_form(head_grads_per_domain, params)
        V = _probes(None, params, num_probes, generator)
        diags = []
        for g in grads:
            acc = 0
            for s in range(num_probes):
                hv = _grad_of(sum((x * v[s]).sum() for x, v in zip(g, V)), params)
                acc = acc + torch.cat([(v[s] * h).reshape(-1) for v, h in zip(V, hv)])
            diags.append(acc / num_probes)
        return _alignment(diags, [_cat(g) for g in grads], alpha, beta)
    return _hutchinson_head(head_grads_per_domain, params if features is None else features, labels, alpha,
                            beta, num_probes, loss_fn, generator)


def _hgp_head(head, features, labels, alpha, beta, loss_fn):
    grads, hgs = [], []
    features, labels = _domains(features, labels)
    _check_weight(alpha, "alpha")
    _check_weight(beta, "beta")
    if _is_linear_ce(head, loss_fn):
        for z, y in zip(features, labels):
            P, g = _linear_parts(head, z, y)
            hg = _linear_hvp(head, P, z, [b[None] for b in g])
            grads.append(_flat([b[None] for b in g])[0])
            hgs.append(_flat(hg)[0])
    else:
        params = _params_of(head)
        loss_fn = loss_fn or torch.nn.functional.cross_entropy
        for z, y in zip(features, labels):
            g = _generic_grads(head, loss_fn, z, y, params)
            half = sum((x * x).sum() for x in g) / 2       # H g = grad(1/2 ||g||^2)
            hg = torch.autograd.grad(half, params, create_graph=True)
            grads.append(torch.cat([x.reshape(-1) for x in g]))
            hgs.append(torch.cat([x.reshape(-1) for x in hg]))
    return _alignment(hgs, grads, alpha, beta)


def _hutchinson_head(head, features, labels, alpha, beta, num_probes, loss_fn, generator):
    features, labels = _domains(features, labels)
    _check_weight(alpha, "alpha")
    _check_weight(beta, "beta")
    params = _params_of(head)
    grads, diags = [], []
    if _is_linear_ce(head, loss_fn):
        V = None if num_probes is None else _probes(head, [head.weight] + (
            [head.bias] if head.bias is not None else []), num_probes, generator)
        for z, y in zip(features, labels):
            P, g = _linear_parts(head, z, y)
            grads.append(_flat([b[None] for b in g])[0])
            if V is None:   # exact: (1/n) sum_i p_ic (1 - p_ic) x_ij^2
                S = P * (1 - P)
                n = z.shape[0]
                blocks = [(S.T @ (z * z) / n)[None]] + ([S.sum(0)[None] / n] if head.bias is not None else [])
                diags.append(_flat(blocks)[0])
            else:
                HV = _linear_hvp(head, P, z, V)
                diags.append((_flat(V) * _flat(HV)).mean(0))
    else:
        if num_probes is None:
            raise ValueError("num_probes: None (exact diagonal) needs an nn.Linear head with loss_fn=None")
        loss_fn = loss_fn or torch.nn.functional.cross_entropy
        V = _probes(head, params, num_probes, generator)
        for z, y in zip(features, labels):
            g = _generic_grads(head, loss_fn, z, y, params)
            grads.append(torch.cat([x.reshape(-1) for x in g]))
            acc = 0
            for s in range(num_probes):
                gv = sum((x * v[s]).sum() for x, v in zip(g, V))
                hv = torch.autograd.grad(gv, params, create_graph=True, retain_graph=True)
                acc = acc + torch.cat([(v[s] * h).reshape(-1) for v, h in zip(V, hv)])
            diags.append(acc / num_probes)
    return _alignment(diags, grads, alpha, beta)
