r"""Hessian traces and diagonals: randomized estimators, exact softmax-head kernels, alignment.

* :func:`trace`, :func:`diagonal` - Hutchinson, Hutch++, XTrace / XDiag estimators for any
  symmetric operator given by products (callable, matrix, or an operator object below), with
  standard errors and an adaptive confidence-interval stopping rule (``rtol``).
* :class:`HessianMatvec`, :func:`hessian_matvec`, :func:`hessian_trace`,
  :func:`hessian_diagonal` - Hessian-vector products of torch models (torch.func, vmap).
* :class:`SoftmaxHeadHessian` - the exact trace, diagonal, products and gradient of a linear
  softmax cross-entropy head in closed form (C++/CUDA kernels).
* :func:`hgp_penalty`, :func:`hutchinson_penalty` - the Hessian-alignment regularisers of
  Hemati et al. (ICCV 2023), differentiable.

See docs/hessian.md for formulas and measurements.
"""
from __future__ import annotations

import numpy as np

from ._estimators import (DiagonalEstimate, Operator, TraceEstimate, _check_common,
                                  hutchinson_diagonal, hutchinson_trace, hutchpp_trace, xdiag, xtrace)
from ._head import SoftmaxHeadHessian

__all__ = [
    "trace", "diagonal", "TraceEstimate", "DiagonalEstimate", "SoftmaxHeadHessian", "HessianMatvec",
    "hessian_matvec", "hessian_trace", "hessian_diagonal", "hgp_penalty", "hutchinson_penalty",
]

_TRACE_METHODS = ("hutchinson", "hutch++", "xtrace")
_DIAG_METHODS = ("hutchinson", "xdiag")


def _check_seed(seed):
    if seed is None:
        return None
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed: must be None or an int >= 0, got {seed!r}")
    return int(seed)


def _shared_seed(matvec, seed):
    """For a HessianMatvec reduced over a torch.distributed process group: the seed all ranks use
    (seed=None: one drawn on the group's first rank and broadcast), so they draw the same probes."""
    shared = getattr(matvec, "shared_seed", None)
    return seed if shared is None else shared(seed)


def _block(block_size, m):
    if block_size is None:
        return max(1, min(m, 32))
    if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1:
        raise ValueError(f"block_size: must be a positive int, got {block_size!r}")
    return block_size


def trace(matvec, dim=None, method="hutchinson", num_matvecs=100, probe="rademacher", seed=None,
          rtol=None, *, confidence=0.95, batched=False, like=None, block_size=None):
    r"""Estimate tr(A) of a symmetric operator A from products A v.

    method:
      * "hutchinson": mean of v^T A v over m probes; unbiased, per-probe variance
        2 (||A||_F^2 - sum A_ii^2) (Rademacher) or 2 ||A||_F^2 (Gaussian); error ~ 1/sqrt(m).
      * "hutch++": tr(Q^T A Q) + Hutchinson on (I - QQ^T) A (I - QQ^T), Q = orth(A S), m/3
        products each (Meyer et al. 2021); error ~ 1/m for PSD A with decaying spectrum.
        num_matvecs not divisible by 3 is rounded down with a warning.
      * "xtrace": exchangeable leave-one-out Hutch++ (Epperly, Tropp & Webber 2024), m/2 probes:
        mean_i [tr(Q_(i)^T A Q_(i)) + omega_i^T (I - Q_(i)Q_(i)^T) A (I - Q_(i)Q_(i)^T) omega_i],
        Q_(i) = orth(A Omega without column i); any rank of A Omega (a rank-deficient sketch keeps
        the definition; A of rank < m/2 with Gaussian probes, or A = 0, gives the exact trace).
      With m/2 >= dim probes (m/3 >= dim for Hutch++) the sketch spans R^dim and tr(A) is returned
      exactly with stderr 0 (2 dim products).
    matvec: a callable v -> A v on vectors of length ``dim`` (numpy, torch or CuPy; with
      ``batched=True`` it receives a batch (k, dim) and returns (k, dim)); a square matrix
      (numpy/torch/CuPy, or scipy.sparse, multiplied in float64 on the host); a
      scipy.sparse.linalg.LinearOperator; or an operator object (SoftmaxHeadHessian, HessianMatvec).
    num_matvecs: the number of products (with rtol: the maximum).  probe: "rademacher" or
      "gaussian".  seed: int / None for the probe generator.
    rtol: stop adaptively once the ``confidence`` (in (0, 1), else ValueError) Student-t interval half-width is
      <= rtol * |estimate| (at least 10 probes for Hutchinson); ``.converged`` is False if the
      budget ran out first.  Unlike PyHessian's "two consecutive means agree" rule, this bounds
      the statistical error.
    like: an array whose library/device/dtype the probes use (default: the operator's, or numpy
      float64 for plain callables).  block_size: probes per batched call (default 32).
    Returns a :class:`TraceEstimate` (.estimate, .stderr, .num_matvecs, .converged).  stderr:
    the per-probe standard deviation over sqrt(probes) (Hutchinson, Hutch++'s residual); for
    XTrace the jackknife over probes (conservative in expectation, docs/hessian.md); inf with fewer
    than two samples (one Hutchinson probe, one Hutch++ residual probe); 0 for an exact result.
    NaN or inf products give a NaN estimate and stderr (no exception; with rtol the estimator stops
    there, converged=False).
    """
    m = _check_common(method, _TRACE_METHODS, probe, num_matvecs, rtol, confidence)
    op = Operator(matvec, dim, batched, like)
    gen = op.ops.generator(_shared_seed(matvec, _check_seed(seed)))
    block = _block(block_size, m)
    if method == "hutchinson":
        return hutchinson_trace(op, gen, m, probe, rtol, confidence, block)
    if method == "hutch++":
        return hutchpp_trace(op, gen, m, probe, rtol, confidence, block)
    return xtrace(op, gen, m, probe, rtol, confidence)


def diagonal(matvec, dim=None, method="hutchinson", num_matvecs=100, probe="rademacher", seed=None,
             rtol=None, *, confidence=0.95, batched=False, like=None, block_size=None):
    r"""Estimate diag(A) of a symmetric operator A from products A v.

    method:
      * "hutchinson": mean over probes of v (.) A v; unbiased; entry i has per-probe variance
        sum_{j != i} A_ij^2 (Rademacher) or A_ii^2 + sum_j A_ij^2 (Gaussian).
      * "xdiag": exchangeable estimator of Epperly, Tropp & Webber (2024):
        mean_i [diag(Q_(i) Q_(i)^T A) + omega_i (.) (I - Q_(i) Q_(i)^T) A omega_i], m/2 probes.
    Arguments as in :func:`trace`; with ``rtol`` it stops when every entry's interval
    half-width is <= rtol * max_i |estimate_i|.  XDiag with m/2 >= dim probes returns diag(A)
    exactly (stderr 0); any rank of the sketch keeps the definition (see :func:`trace`).
    Returns a :class:`DiagonalEstimate` (.estimate and .stderr arrays of length dim; stderr inf
    for a single Hutchinson probe; NaN where non-finite products reach).
    """
    m = _check_common(method, _DIAG_METHODS, probe, num_matvecs, rtol, confidence)
    op = Operator(matvec, dim, batched, like)
    gen = op.ops.generator(_shared_seed(matvec, _check_seed(seed)))
    if method == "hutchinson":
        return hutchinson_diagonal(op, gen, m, probe, rtol, confidence, _block(block_size, m))
    return xdiag(op, gen, m, probe, rtol, confidence)


# ---- torch models ------------------------------------------------------------------------------
def __getattr__(name):
    if name == "HessianMatvec":
        from ._torch import HessianMatvec

        return HessianMatvec
    raise AttributeError(f"module 'numkern.hessian' has no attribute {name!r}")


def hessian_matvec(model, loss_fn, inputs, targets=None, params=None, *, mode="auto", chunk_size=None,
                   memory_budget=None, process_group=None):
    r"""Hessian-vector products v -> H v, H = d^2 L / d theta^2 of a torch model's loss.

    L = loss_fn(model(*inputs), targets) for one batch; for a data set (``inputs`` a DataLoader or
    a list of (inputs, targets) batches, ``targets=None``) L is the mean loss over the data set,
    so H = sum_b n_b H_b / sum_b n_b (n_b = batch b's size, loss_fn a mean over the batch), and
    every product block is one pass over the data.  Returns a :class:`HessianMatvec` (callable on
    (dim,) or (k, dim) torch tensors, with ``.dim``) that :func:`trace` and :func:`diagonal`
    accept directly.  mode: "auto" (vmap or double backward, whichever is faster on the first
    product; double backward where torch.func cannot run the model), "vmap" (forward-over-reverse
    with torch.func, batched over probes; RuntimeError naming mode where torch.func cannot run the
    model), "double_backward".  chunk_size: probes per vmap call
    (None: as many as fit ``memory_budget`` bytes of extra memory, default 256 MiB, by an
    upper estimate from the activation and parameter sizes; see :class:`HessianMatvec`).
    Works inside torch.no_grad(); inside torch.inference_mode() (which disables autograd) it raises
    RuntimeError.  BatchNorm or Dropout layers in training mode raise ValueError (call
    model.eval()).  Raises ValueError for a non-scalar loss, when no parameter requires grad, or
    for a parameter listed twice in ``params``.  Parameters the loss does not use get zero rows
    and columns; a loss linear in the parameters has H = 0.  The products are at the parameters'
    current values (read on every call, so writes through ``.data`` are followed); an in-place
    update seen by autograd's version counter (optimizer.step(), load_state_dict()) raises
    RuntimeError: build a new operator after updating the model.

    Data-parallel (torch.distributed): a DistributedDataParallel model (unwrapped; its process
    group is used) or ``process_group=`` (a torch.distributed group, e.g. group.WORLD) makes H the
    Hessian of the mean loss over every rank's data, sum_r sum_b n_rb H_rb / sum_r sum_b n_rb
    (a single batch per rank counts by its size): each product is computed on the local data and
    all-reduced (one all-reduce of k*dim + 1 numbers per call, plus a 4-number check that every
    rank multiplies the same probes).  Every rank must call with the same vectors; trace/diagonal
    share the seed (docs/hessian.md).
    """
    from ._torch import HessianMatvec

    return HessianMatvec(model, loss_fn, inputs, targets, params, mode=mode, chunk_size=chunk_size,
                         memory_budget=memory_budget, process_group=process_group)


def hessian_trace(model, loss_fn, inputs, targets=None, method="hutchinson", num_matvecs=100, *, params=None,
                  mode="auto", chunk_size=None, memory_budget=None, process_group=None, **estimator_kwargs):
    r"""Estimate tr(H) of a torch model's loss Hessian: :func:`trace` on :func:`hessian_matvec`
    (one batch, or a data set with ``targets=None``: the Hessian of the mean loss over it).

    For an ``nn.Linear`` classifier head with cross-entropy use :class:`SoftmaxHeadHessian`,
    which is exact and far faster.  Data-parallel: as :func:`hessian_matvec` (DDP model or
    ``process_group=``); every rank draws the same probes (``seed``, or one broadcast from the
    first rank for seed=None) and gets the same estimate, that of the concatenated data.
    """
    op = hessian_matvec(model, loss_fn, inputs, targets, params, mode=mode, chunk_size=chunk_size,
                        memory_budget=memory_budget, process_group=process_group)
    return trace(op, method=method, num_matvecs=num_matvecs, **estimator_kwargs)


def hessian_diagonal(model, loss_fn, inputs, targets=None, method="hutchinson", num_matvecs=100, *,
                     params=None, mode="auto", chunk_size=None, memory_budget=None, process_group=None,
                     **estimator_kwargs):
    r"""Estimate diag(H) of a torch model's loss Hessian: :func:`diagonal` on :func:`hessian_matvec`
    (one batch, or a data set with ``targets=None``).

    The result is flat over the parameters in order (``torch.cat([p.flatten() ...])``).
    Data-parallel: as :func:`hessian_trace`.
    """
    op = hessian_matvec(model, loss_fn, inputs, targets, params, mode=mode, chunk_size=chunk_size,
                        memory_budget=memory_budget, process_group=process_group)
    return diagonal(op, method=method, num_matvecs=num_matvecs, **estimator_kwargs)


# ---- Hessian alignment --------------------------------------------------------------------------
def hgp_penalty(head_grads_per_domain, params=None, labels=None, alpha=1e-4, beta=5e-3, loss_fn=None, *,
                features=None, target="pooled", process_group=None):
    r"""Hessian-gradient-product alignment penalty (HGP, Hemati et al. ICCV 2023).

    For domains e = 1..E with head gradient g_e = grad_theta L_e and H_e g_e = grad_theta
    (1/2 ||g_e||^2) (the HGP identity), returns the differentiable scalar
        (1/E) sum_e [ alpha ||H_e g_e - T_H||^2 + beta ||g_e - T_g||^2 ]
    with, for ``target="pooled"`` (default, as in the authors' code), the statistics of the pooled
    loss (1/E) sum_e L_e held constant (detached): T_H = sg(H_bar g_bar), T_g = sg(g_bar),
    H_bar = (1/E) sum_e H_e, g_bar = (1/E) sum_e g_e; for ``target="mean"`` the (differentiable)
    domain means T_H = mean_e H_e g_e, T_g = g_bar (numkern's first release).  The gradient term
    and its gradient are the same for both targets; the Hessian term differs because
    H_bar g_bar != mean_e H_e g_e.  theta are the head's parameters (gradients reach the head and,
    through the features, the featuriser).  Two call forms:

    * ``hgp_penalty(head_grads_per_domain, params)`` (the paper's form): one entry per domain,
      each the gradients of that domain's loss w.r.t. the head parameters ``params``, computed
      with ``torch.autograd.grad(loss_e, params, create_graph=True)``; H_e g_e is one more
      autograd pass.  Works for any head and loss.
    * ``hgp_penalty(head, features, labels)``: the head (nn.Module) and sequences with one tensor
      per domain, features[e] (n_e, d), labels[e] (n_e,) integer classes.  For an ``nn.Linear``
      head with loss_fn=None (mean cross-entropy) the closed forms g = (1/n) sum (p - e_y) x^T
      and H g = (1/n) sum (A_i g x_i) x_i^T are used (no double backward); other heads or a
      given loss_fn go through autograd.  Both forms give the same value (tests: 1e-10).

    Defaults alpha = 1e-4 (Hessian term), beta = 5e-3 (gradient term).  At least two domains, each
    with samples (ValueError "features: domain e has no samples"; with process_group: on some rank).
    See docs/hessian.md for the differences from the authors' code.

    process_group (torch.distributed, data-parallel training): the penalty of the concatenated
    data of every rank, the same value on every rank: per-domain gradients, H_e g_e and
    diagonals are all-reduced (differentiable all-reduces), weighted by each rank's sample count
    in the head form and equally per rank in the gradient form.  Gradients are exact after
    DistributedDataParallel averages them over the ranks (each rank's own gradient is R times its
    share).  Pass the DDP model's module as the head.
    """
    from ._torch import hgp_penalty as impl

    return impl(head_grads_per_domain, params, labels, alpha, beta, loss_fn, features, target, process_group)


def hutchinson_penalty(head_grads_per_domain, params=None, labels=None, alpha=1e-3, beta=5e-3, num_probes="auto",
                       loss_fn=None, generator=None, *, features=None, target="pooled", estimator="unbiased",
                       process_group=None):
    r"""Hessian-diagonal alignment penalty (the "Hutchinson" variant of Hemati et al. ICCV 2023).

    With D_e = diag(H_e), the head Hessian's diagonal of domain e, and T_D the pooled loss's
    diag(H_bar) = mean_e D_e (detached for ``target="pooled"``, the default and the authors'
    choice; differentiable for ``target="mean"``), T_g as in :func:`hgp_penalty`, returns
        (1/E) sum_e [ alpha ||D_e - T_D||^2 + beta ||g_e - T_g||^2 ],
    differentiable.  D_e is exact or estimated from S = ``num_probes`` Rademacher probes v_s shared
    by all domains: X_es = v_s (.) H_e v_s - mean_e' v_s (.) H_e' v_s has mean D_e - T_D, and

    * ``estimator="unbiased"`` (default, S >= 2): ||D_e - T_D||^2 ~ (||sum_s X_es||^2 -
      sum_s ||X_es||^2) / (S (S-1)), the mean of X_es . X_et over ordered pairs of distinct
      probes (independent factors): unbiased in value and gradient, variance
      4 mu^T Sigma mu / S + 2 tr(Sigma^2) / (S (S-1)) (mu = D_e - T_D, Sigma = Cov X_es); a
      single draw may be negative.
    * ``estimator="plugin"``: ||mean_s X_es||^2, biased upward by tr(Sigma)/S (x4.9 with 10 probes
      on issue #23's check).

    num_probes: "auto" (default) = exact diagonals (1/n) sum_i p_ic (1 - p_ic) x_ij^2 for an
    ``nn.Linear`` head with cross-entropy in the head form, else 100 probes; None = exact (head
    form, nn.Linear + CE only); an int >= 1 (>= 2 for "unbiased") = that many probes, also for an
    nn.Linear head.  Call forms as :func:`hgp_penalty`: ``hutchinson_penalty(head_grads_per_domain,
    params)`` with per-domain head gradients taken with create_graph=True (H_e v_s = grad_theta
    (g_e . v_s), batched over probes), or ``hutchinson_penalty(head, features, labels)``.  With
    the same ``generator`` state both forms draw the same probes and give the same value.
    generator: torch.Generator for the probes.  Defaults alpha = 1e-3, beta = 5e-3.
    process_group: as :func:`hgp_penalty` (the generator must be seeded identically on every rank;
    checked).
    """
    from ._torch import hutchinson_penalty as impl

    return impl(head_grads_per_domain, params, labels, alpha, beta, num_probes, loss_fn, generator, features,
                target, estimator, process_group)
