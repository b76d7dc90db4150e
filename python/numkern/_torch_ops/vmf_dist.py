r"""numkern.vmf's distribution kernels as torch operators (internal), and the differentiable path of
``numkern.vmf.VonMisesFisher`` for torch parameters or points that require grad (or that are traced
by torch.compile or wrapped by torch.func), and of ``fit`` / ``mean_resultant_length`` for X that
requires grad.

- ``torch.ops.numkern.vmf_logpdf(x, mu, kappa)``: x (G or 1, n, d), mu (G, d), kappa (G,) ->
  (G, n), log f(x) = log C_d(kappa) + kappa u.v with u = mu/|mu|, v = x/|x| (the kernel of
  VonMisesFisher.logpdf: mu and the rows of x must be unit vectors to 1e-6, float32 1e-4, float16
  / bfloat16 4 eps of their format, and are renormalised; kappa >= 0; errors name the argument).
  Result dtype: x's (float32 for float inputs of at most 32 bits, else float64).  Derivatives (of
  the renormalised formula, so exact off the sphere too, and built from torch and numkern ops, so
  differentiable again):
      d/dkappa = u.v - A_d(kappa),  A_d = iv_ratio(d/2, kappa)
      d/dmu    = kappa (v - (u.v) u) / |mu|,   d/dx = kappa (u - (u.v) v) / |x|.
  Forward mode (jvp) uses the same partials.
- ``torch.ops.numkern.vmf_sample(mu, kappa, n, seed)``: (G, n, d) draws of VonMisesFisher.sample
  (Wood's rejection sampler, counter-based streams of ``seed``, a 0-d int64 tensor: negative
  values stand for seed + 2^64; a tensor, so that torch.compile does not specialise on it; draw
  one from a torch.Generator with ``seed_from(generator)``).  Not differentiable (no
  reparameterisation): its result never requires grad, as torch.distributions' ``sample``.
  Under torch.func.vmap it needs randomness="different" (the batch becomes more groups:
  independent draws) or "same" (every batch member draws the streams of ``seed``); the default
  "error" raises.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from ._common import (LIB, NAMESPACE, _autograd_needed, data_of, host_access,  # noqa: F401
                      register_autograd, result_dtype, traced)

_I64 = 1 << 63


# ---- vmf_logpdf ---------------------------------------------------------------------------------
def _check_logpdf(x, mu, kappa):
    if mu.dim() != 2 or mu.shape[1] < 2:
        raise ValueError(f"mu: expected shape (G, d) with d >= 2, got {tuple(mu.shape)}")
    g, d = mu.shape
    if kappa.dim() != 1 or kappa.shape[0] != g:
        raise ValueError(f"kappa: expected shape ({g},) to match mu, got {tuple(kappa.shape)}")
    if x.dim() != 3 or x.shape[2] != d or x.shape[0] not in (1, g):
        raise ValueError(f"x: expected shape (G, n, d) or (1, n, d) with G = {g}, d = {d}, got {tuple(x.shape)}")


def _logpdf_kernel(x: Tensor, mu: Tensor, kappa: Tensor) -> Tensor:
    from ..vmf import VonMisesFisher

    _check_logpdf(x, mu, kappa)
    xs = x.detach()
    if xs.shape[0] == 1 and mu.shape[0] != 1:
        xs = xs[0]  # (n, d), shared by every distribution
    out = VonMisesFisher(mu.detach(), kappa.detach()).logpdf(xs)
    return out.reshape(mu.shape[0], x.shape[1]).contiguous()


def _logpdf_fake(x, mu, kappa):
    _check_logpdf(x, mu, kappa)
    return x.new_empty((mu.shape[0], x.shape[1]), dtype=result_dtype(x))


def _parts(x, mu, kappa):
    """float64 u = mu/|mu| (G, d), v = x/|x| (Gx, n, d), s = u.v (G, n), and the norms."""
    xd, md = x.to(torch.float64), mu.to(torch.float64)
    nm, nx = md.norm(dim=-1, keepdim=True), xd.norm(dim=-1, keepdim=True)
    u, v = md / nm, xd / nx
    s = torch.matmul(v, u[:, :, None])[..., 0]  # (G, n): batch dimension broadcast (Gx = 1)
    return u, v, s, nm, nx


def _ratio(d, kappa):
    return torch.ops.numkern.iv_ratio(torch.full_like(kappa, d / 2.0), kappa)


def _logpdf_backward(saved, needs, grad):
    x, mu, kappa, _ = saved
    u, v, s, nm, nx = _parts(x, mu, kappa)
    k = kappa.to(torch.float64)
    g = grad.to(torch.float64)
    gx = gm = gk = None
    if needs[2]:
        gk = ((g * s).sum(1) - _ratio(mu.shape[1], k) * g.sum(1)).to(kappa.dtype)
    if needs[1]:
        gv = torch.matmul(g[:, None, :], v)[:, 0]  # (G, d): sum_n g v
        gm = (k[:, None] * (gv - (g * s).sum(1)[:, None] * u) / nm).to(mu.dtype)
    if needs[0]:
        gx = (k[:, None, None] * g[..., None] * (u[:, None, :] - s[..., None] * v) / nx)
        gx = gx.sum_to_size(x.shape).to(x.dtype)
    return gx, gm, gk


def _logpdf_jvp(saved, tangents):
    x, mu, kappa, y = saved
    tx, tm, tk = tangents
    u, v, s, nm, nx = _parts(x, mu, kappa)
    k = kappa.to(torch.float64)
    out = torch.zeros_like(s)
    if tk is not None:
        out = out + (s - _ratio(mu.shape[1], k)[:, None]) * tk.to(torch.float64)[:, None]
    if tm is not None:
        tm = tm.to(torch.float64) / nm
        vt = torch.matmul(v, tm[:, :, None])[..., 0]  # (G, n)
        out = out + k[:, None] * (vt - s * (u * tm).sum(-1, keepdim=True))
    if tx is not None:
        tx = tx.to(torch.float64) / nx
        ut = torch.matmul(tx, u[:, :, None])[..., 0]
        out = out + k[:, None] * (ut - s * (v * tx).sum(-1))
    return out.to(y.dtype)


def _lift(t, dim, size):
    return t.movedim(dim, 0) if dim is not None else t.expand(size, *t.shape)


def _logpdf_vmap(info, in_dims, x, mu, kappa):
    """The batch becomes more groups: (B, G) -> B*G distributions (x shared when it was)."""
    b = info.batch_size
    m, k = _lift(mu, in_dims[1], b), _lift(kappa, in_dims[2], b)
    g, d = m.shape[1], m.shape[2]
    if in_dims[0] is None and x.shape[0] == 1:
        xs = x  # one set of points shared by every distribution of every batch member
    else:
        xb = _lift(x, in_dims[0], b)
        xs = xb.expand(b, g, *xb.shape[2:]).reshape(b * g, xb.shape[2], d)
    out = torch.ops.numkern.vmf_logpdf(xs, m.reshape(b * g, d), k.reshape(b * g))
    return out.reshape(b, g, -1), 0


LIB.define("vmf_logpdf(Tensor x, Tensor mu, Tensor kappa) -> Tensor", tags=(torch.Tag.pt2_compliant_tag,))
LIB.impl("vmf_logpdf", _logpdf_kernel, "CPU")
LIB.impl("vmf_logpdf", _logpdf_kernel, "CUDA")  # VonMisesFisher runs numkern._cuda on CUDA tensors
torch.library.register_fake(f"{NAMESPACE}::vmf_logpdf", _logpdf_fake, lib=LIB)
torch.library.register_vmap(f"{NAMESPACE}::vmf_logpdf", _logpdf_vmap, lib=LIB)
logpdf_op = torch.ops.numkern.vmf_logpdf.default
register_autograd("vmf_logpdf", logpdf_op, _logpdf_backward, _logpdf_jvp)


# ---- vmf_sample ---------------------------------------------------------------------------------
def _check_sample(mu, kappa, n, seed):
    if mu.dim() != 2 or mu.shape[1] < 2:
        raise ValueError(f"mu: expected shape (G, d) with d >= 2, got {tuple(mu.shape)}")
    if kappa.dim() != 1 or kappa.shape[0] != mu.shape[0]:
        raise ValueError(f"kappa: expected shape ({mu.shape[0]},) to match mu, got {tuple(kappa.shape)}")
    if n < 0:
        raise ValueError(f"n: must be >= 0, got {n}")
    if seed.dim() != 0 or seed.dtype != torch.int64:
        raise ValueError(f"seed: expected a 0-d int64 tensor, got shape {tuple(seed.shape)} {seed.dtype}")


def _sample_kernel(mu: Tensor, kappa: Tensor, n: int, seed: Tensor) -> Tensor:
    from ..vmf import VonMisesFisher

    _check_sample(mu, kappa, n, seed)
    out = VonMisesFisher(mu.detach(), kappa.detach()).sample(n, seed=int(seed) % (1 << 64))
    return out.reshape(mu.shape[0], n, mu.shape[1]).contiguous()


def _sample_fake(mu, kappa, n, seed):
    _check_sample(mu, kappa, n, seed)
    return mu.new_empty((mu.shape[0], n, mu.shape[1]), dtype=result_dtype(mu, kappa))


def _sample_vmap(info, in_dims, mu, kappa, n, seed):
    b = info.batch_size
    if in_dims[3] is not None:
        raise RuntimeError("numkern.vmf_sample: a batched seed is not supported under vmap; pass one seed")
    m, k = _lift(mu, in_dims[0], b), _lift(kappa, in_dims[1], b)
    if info.randomness == "different":
        g, d = m.shape[1], m.shape[2]
        out = torch.ops.numkern.vmf_sample(m.reshape(b * g, d), k.reshape(b * g), n, seed)
        return out.reshape(b, g, n, d), 0
    if info.randomness == "same":
        return torch.stack([torch.ops.numkern.vmf_sample(m[i], k[i], n, seed) for i in range(b)]), 0
    raise RuntimeError("numkern.vmf_sample: random under torch.func.vmap; pass randomness='different' "
                       "(independent draws per batch member) or 'same' to vmap")


def _sample_autograd(keyset, mu, kappa, n, seed):
    # not differentiable: run below autograd, so the result never requires grad
    with torch._C._AutoDispatchBelowAutograd():
        return sample_op.redispatch(keyset & torch._C._after_autograd_keyset, mu, kappa, n, seed)


LIB.define("vmf_sample(Tensor mu, Tensor kappa, SymInt n, Tensor seed) -> Tensor",
           tags=(torch.Tag.pt2_compliant_tag, torch.Tag.nondeterministic_seeded))
LIB.impl("vmf_sample", _sample_kernel, "CPU")
LIB.impl("vmf_sample", _sample_kernel, "CUDA")
torch.library.register_fake(f"{NAMESPACE}::vmf_sample", _sample_fake, lib=LIB)
torch.library.register_vmap(f"{NAMESPACE}::vmf_sample", _sample_vmap, lib=LIB)
sample_op = torch.ops.numkern.vmf_sample.default
LIB.impl("vmf_sample", _sample_autograd, "Autograd", with_keyset=True)


def seed_arg(seed) -> Tensor:
    """A uint64 seed (numkern.vmf's streams) as the op's 0-d int64 tensor."""
    seed = int(seed) % (1 << 64)
    return torch.tensor(seed - (1 << 64) if seed >= _I64 else seed, dtype=torch.int64)


def seed_from(generator=None) -> Tensor:
    """A seed for vmf_sample drawn from a torch.Generator (torch's default CPU generator if None)."""
    return torch.randint(-_I64, _I64 - 1, (), dtype=torch.int64, generator=generator)


# ---- VonMisesFisher's differentiable path ------------------------------------------------------
def wants_grad(*arrays) -> bool:
    """Whether a call must go through the operators: grad mode on and a torch input requiring
    grad (or carrying a forward-mode tangent)."""
    ts = [a for a in arrays if isinstance(a, torch.Tensor)]
    return bool(ts) and _autograd_needed(ts)


def with_value(t, value):
    """t's autograd history (and derivatives of every order) with the values ``value`` (a tensor of
    the same shape, e.g. the kernel's result, equal to t up to rounding): t + (value - t).detach()."""
    v = value.to(device=t.device, dtype=torch.float64)
    return t + (v - t).detach()


def resultant(X, weights):
    """(S (G, d), W (G,)) float64 torch, differentiable in X and the weights: S = sum_i w_i x_i/|x_i|
    and W = sum_i w_i per leading index of X (..., n, d), with the weights divided by their largest
    (as numkern.vmf's kernel path: rbar and mu do not depend on the scale)."""
    x = X.to(torch.float64)
    *batch, n, d = x.shape
    g = math.prod(batch)
    x = x.reshape(g, n, d)
    v = x / torch.linalg.vector_norm(x, dim=-1, keepdim=True)
    if weights is None:
        return v.sum(1), torch.full((g,), float(n), dtype=torch.float64, device=x.device)
    w = torch.as_tensor(weights, device=x.device).to(torch.float64)
    w = torch.broadcast_to(w, tuple(batch) + (n,)).reshape(g, n)
    w = w / w.amax(dim=1, keepdim=True)
    return torch.matmul(w[:, None, :], v)[:, 0], w.sum(1)


def resultant_length(X, weights, value):
    """numkern.vmf.mean_resultant_length(X, weights) with gradients: rbar = min(|S| / W, 1), with the
    kernel's ``value`` (a torch tensor of the result's shape and dtype)."""
    s, wsum = resultant(X, weights)
    r = torch.clamp(torch.linalg.vector_norm(s, dim=-1) / wsum, max=1.0)
    return with_value(r.reshape(value.shape), value).to(value.dtype)


def fit_params(s, wsum, mu, kappa):
    """(mu (G, d), kappa (G,)) float64 torch with gradients for numkern.vmf.fit, from the torch
    resultant S, W and the kernel's values mu (G, d), kappa (G,) (host or device arrays):
    mu = S/|S| (e_1, without gradient, where S = 0), kappa = kappa_mle(|S|/W, d) through the operator
    (dkappa/drbar = 1/A_d'(kappa)); kappa = inf (coincident points) stays inf, without gradient."""
    dev = s.device
    mu_k = torch.as_tensor(np.array(mu) if isinstance(mu, np.ndarray) else mu, device=dev)
    kappa_k = torch.as_tensor(np.array(kappa) if isinstance(kappa, np.ndarray) else kappa, device=dev)
    d = s.shape[1]
    norm = torch.linalg.vector_norm(s, dim=-1)
    nz = norm > 0
    m = with_value(s / torch.where(nz, norm, 1.0)[:, None], mu_k)
    m = torch.where(nz[:, None], m, mu_k)
    finite = torch.isfinite(kappa_k)
    rbar = torch.clamp(norm / wsum, max=1.0 - 2.0 ** -53)
    k = torch.ops.numkern.kappa_mle(torch.where(finite, rbar, 0.0), torch.full_like(rbar, float(d)))
    k = torch.where(finite, with_value(k, kappa_k), kappa_k)
    return m, k


def params(mu, kappa, batch, d, internal_mu, internal_kappa):
    """(mu (G, d), kappa (G,)) float64 torch tensors keeping the caller's autograd history: mu
    broadcast to the batch and divided by its norm, kappa broadcast; a non-torch argument comes
    from the validated internal copy."""
    g = math.prod(batch)
    dev = mu.device if isinstance(mu, torch.Tensor) else kappa.device
    im = torch.as_tensor(internal_mu, device=dev)
    if isinstance(mu, torch.Tensor):
        m = torch.broadcast_to(mu.to(torch.float64), tuple(batch) + (d,)).reshape(g, d)
        # the validated internal mu's values (the same direction to rounding), mu's history
        m = with_value(m / m.norm(dim=-1, keepdim=True), im)
    else:
        m = im
    if isinstance(kappa, torch.Tensor):
        k = torch.broadcast_to(kappa.to(torch.float64), tuple(batch)).reshape(g)
    else:
        k = torch.as_tensor(internal_kappa, device=dev)
    return m, k


def logpdf(mu, kappa, x3, out_shape):
    """log f of torch points x3 (G or 1, n, d) (VonMisesFisher.logpdf's layout) through vmf_logpdf."""
    return logpdf_op(x3, mu, kappa).reshape(out_shape)


def entropy(d, kappa):
    """H = -log C_d(kappa) - kappa A_d(kappa) from numkern ops (differentiable in kappa)."""
    ln = torch.ops.numkern.log_normalizer(torch.full_like(kappa, float(d)), kappa)
    return -ln - kappa * _ratio(d, kappa)


def mean(d, mu, kappa):
    """E[x] = A_d(kappa) mu."""
    return _ratio(d, kappa)[:, None] * mu


def kl(d, mp, kp, mq, kq):
    """KL = log C_d(k_p) - log C_d(k_q) + A_d(k_p) (k_p - k_q mu_p.mu_q), rows already broadcast."""
    o = torch.ops.numkern
    dd = torch.full_like(kp, float(d))
    cos = torch.clamp((mp * mq).sum(-1), -1.0, 1.0)
    return o.log_normalizer(dd, kp) - o.log_normalizer(dd, kq) + _ratio(d, kp) * (kp - kq * cos)
