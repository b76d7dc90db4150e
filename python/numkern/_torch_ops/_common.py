"""Shared pieces of numkern's torch operators: the dtype rule, vmap of broadcasting ops, argument
preparation for the public wrappers, and the first-order-only derivative in a Bessel order."""
from __future__ import annotations

import numpy as np
import torch
from torch._C._functorch import TransformType
from torch._functorch.utils import enable_single_level_autograd_function
from torch.autograd.forward_ad import _set_fwd_grad_enabled

from .._backend import check_torch_out, scalar_or_array_dtype

NAMESPACE = "numkern"
LIB = torch.library.Library(NAMESPACE, "FRAGMENT")


def result_dtype(*tensors) -> torch.dtype:
    """numkern's one dtype rule on tensors: float32 when every input is a floating tensor of at
    most 32 bits (float16, bfloat16, float32), else float64 (integer and bool inputs included)."""
    if all(t.dtype.is_floating_point and t.dtype.itemsize <= 4 for t in tensors):
        return torch.float32
    return torch.float64


def fake_elementwise(*tensors):
    """The fake (meta) result of a broadcasting elementwise op."""
    shape = torch.broadcast_shapes(*(t.shape for t in tensors))
    return tensors[0].new_empty(shape, dtype=result_dtype(*tensors))


def elementwise_vmap(op):
    """vmap rule of a broadcasting elementwise op: every batched input gets its batch dimension
    moved to the front and 1-padded to the broadcast rank, so that batch dimensions line up."""

    def rule(info, in_dims, *args):
        rank = max(t.dim() - (d is not None) for t, d in zip(args, in_dims))
        lifted = []
        for t, d in zip(args, in_dims):
            if d is not None:
                t = t.movedim(d, 0)
                pad = rank - (t.dim() - 1)
                t = t.reshape((t.shape[0],) + (1,) * pad + tuple(t.shape[1:]))
            lifted.append(t)
        return op(*lifted), 0

    return rule


def rows_vmap(op, n_out=1, fold=True):
    """vmap rule of an op whose first argument x is [..., K] with independent leading dimensions
    (fold=True: the quantized matmuls): x alone batched -> the batch dimension moved to the front
    of x, one call (the samples' rows computed together: within the kernels' float32 bound of each
    sample alone, not bitwise, since the row count picks the kernel); otherwise (another argument
    batched, e.g. the weights, or fold=False: the quantize / decode ops, whose input is one matrix)
    one call per sample, stacked (an empty batch: empty results of the per-sample shapes).  n_out:
    the number of tensors the op returns."""

    def rule(info, in_dims, *args):
        if fold and in_dims[0] is not None and all(d is None for d in in_dims[1:]):
            return op(args[0].movedim(in_dims[0], 0), *args[1:]), (0 if n_out == 1 else (0,) * n_out)
        if info.batch_size == 0:  # (no sample to call: the shapes from the op's fake kernel on meta
            # tensors of one sample's shape, which also runs its argument checks)
            metas = [torch.empty(a.shape[:d] + a.shape[d + 1:], dtype=a.dtype, device="meta")
                     if d is not None else a.to("meta") if isinstance(a, torch.Tensor) else a
                     for a, d in zip(args, in_dims)]
            res = op(*metas)
            res = (res,) if n_out == 1 else res
            empty = tuple(torch.empty((0, *r.shape), dtype=r.dtype, device=args[0].device) for r in res)
            return (empty[0], 0) if n_out == 1 else (empty, (0,) * n_out)
        outs = []
        for i in range(info.batch_size):
            outs.append(op(*(a.select(d, i) if d is not None else a for a, d in zip(args, in_dims))))
        if n_out == 1:
            return torch.stack(outs), 0
        return tuple(torch.stack(o) for o in zip(*outs)), (0,) * n_out

    return rule


def _has_tangent(a) -> bool:
    level = torch.autograd.forward_ad._current_level  # -1 outside forward AD (dual_level, torch.func.jvp)
    return level >= 0 and torch._VF._unpack_dual(a, level=level).tangent is not None


def _autograd_needed(args) -> bool:
    """Whether an op call must record autograd: an input requires grad, or carries a forward-mode
    tangent (a dual tensor of torch.autograd.forward_ad or torch.func.jvp)."""
    if torch.is_grad_enabled() and any(a.requires_grad for a in args):
        return True
    return torch._C._is_fwd_grad_enabled() and any(_has_tangent(a) for a in args)


def _refuse_forward_over_forward(name):
    """A jvp formula runs with forward grad off (torch.autograd.Function's rule), so an enclosing
    torch.func.jvp would see a zero second-order tangent: refuse nested jvp levels instead."""
    if not torch._C._are_functorch_transforms_active():
        return
    stack = torch._C._functorch.get_interpreter_stack() or []
    if sum(i.key() == TransformType.Jvp for i in stack) >= 2:
        raise RuntimeError(
            f"numkern.{name}: forward-over-forward (torch.func.jvp or jacfwd of a jvp) is not supported; "
            "second derivatives work reverse-over-reverse (torch.func.hessian, jacrev(jacrev)) and "
            "forward-over-reverse (jacfwd(jacrev), jvp of grad)")


def define_op(name, arg_names, cpu, cuda, partials):
    """Define ``torch.ops.numkern.<name>(Tensor a, Tensor b, ...) -> Tensor``, an elementwise,
    broadcasting op, with its CPU and CUDA kernels, fake implementation, vmap rule and autograd.

    ``partials(needs, *inputs, y)`` returns, for each input i with needs[i], the partial derivative
    dy/d(input i) at the broadcast shape, built from numkern ops (so it is differentiable again);
    inputs come cast to y's dtype.  Reverse mode (backward) and forward mode (jvp) both use it
    (``register_autograd``)."""
    LIB.define(f"{name}({', '.join('Tensor ' + a for a in arg_names)}) -> Tensor",
               tags=(torch.Tag.pt2_compliant_tag,))
    qualname = f"{NAMESPACE}::{name}"
    LIB.impl(name, cpu, "CPU")
    LIB.impl(name, cuda, "CUDA")
    torch.library.register_fake(qualname, fake_elementwise, lib=LIB)
    op = getattr(getattr(torch.ops, NAMESPACE), name).default
    torch.library.register_vmap(qualname, elementwise_vmap(op), lib=LIB)

    def backward(saved, needs, grad):
        *args, y = saved
        ps = partials(needs, *(a.to(y.dtype) for a in args), y)
        return tuple(None if p is None else (grad * p).sum_to_size(a.shape).to(a.dtype)
                     for p, a in zip(ps, args))

    def jvp(saved, tangents):
        *args, y = saved
        ps = partials(tuple(t is not None for t in tangents), *(a.to(y.dtype) for a in args), y)
        out = sum(t.to(y.dtype) * p for t, p in zip(tangents, ps) if t is not None)
        return out if out.shape == y.shape else torch.broadcast_to(out, y.shape).contiguous()

    register_autograd(name, op, backward, jvp)
    return op


def register_autograd(name, op, backward, jvp=None):
    """Register the Autograd kernel of ``torch.ops.numkern.<name>`` (one Tensor output).

    ``backward(saved, needs, grad)`` gets ``saved = (*inputs, output)``, which inputs need a
    gradient, and the output's gradient (not None); it returns one gradient (or None) per input,
    built from differentiable torch / numkern ops so that double backward is exact.
    ``jvp(saved, tangents)`` (tangents: None for an input without one) returns the output's
    tangent; without it, forward mode raises.  Non-Tensor inputs get None tangents / gradients.

    Autograd is registered as the op's Autograd kernel running a single-level autograd Function
    with ``setup_context``, ``backward`` and ``jvp``: torch.library.register_autograd's generated
    Function lacks setup_context, so torch.func.grad / jacrev / jvp refuse it (pytorch/pytorch
    #168393, #179652), and it has no forward mode.  This uses torch internals (single-level
    Functions, the functorch interpreter stack, forward-AD levels) as of torch 2.13; the tests in
    tests/torch/ pin the behaviour."""

    def forward(*args):
        # Below this level's autograd, but with grad and forward grad modes on again (the Function
        # turned both off), as an ATen op's autograd kernel and functorch's own generated Functions
        # do: a lower functorch level (jvp under grad, grad under grad) then records this op itself.
        with torch.enable_grad(), _set_fwd_grad_enabled(True), torch._C._AutoDispatchBelowAutograd():
            return op(*args)

    def setup_context(ctx, inputs, output):
        ctx.n_inputs = len(inputs)
        ctx.tensor_at = [i for i, a in enumerate(inputs) if isinstance(a, torch.Tensor)]
        ctx.others = {i: a for i, a in enumerate(inputs) if not isinstance(a, torch.Tensor)}
        ctx.save_for_backward(*(inputs[i] for i in ctx.tensor_at), output)
        ctx.save_for_forward(*(inputs[i] for i in ctx.tensor_at), output)
        ctx.set_materialize_grads(False)  # jvp: None for an input without tangent (e.g. d, v)

    def _saved(ctx):
        *ts, y = ctx.saved_tensors
        args = [None] * ctx.n_inputs
        for i, t in zip(ctx.tensor_at, ts):
            args[i] = t
        for i, a in ctx.others.items():
            args[i] = a
        return (*args, y)

    def _backward(ctx, grad):
        if grad is None:
            return (None,) * ctx.n_inputs
        return tuple(backward(_saved(ctx), ctx.needs_input_grad, grad))

    def _jvp(ctx, *tangents):
        _refuse_forward_over_forward(name)
        if jvp is None:
            raise RuntimeError(f"numkern.{name}: forward-mode derivatives (jvp, jacfwd) are not implemented; "
                               "use reverse mode (backward, torch.func.grad / jacrev / hessian)")
        return jvp(_saved(ctx), tangents)

    # a single-level Function (the base class of torch.autograd.Function, without its functorch
    # redirection): this kernel already runs below the functorch layers, at one level, like an
    # ATen op's autograd kernel, so grad/jacrev/jvp/vmap compose through the dispatcher
    fn = type(f"numkern_{name}", (torch.autograd.function._SingleLevelFunction,), {
        "forward": staticmethod(forward),
        "setup_context": staticmethod(setup_context), "backward": staticmethod(_backward),
        "jvp": staticmethod(_jvp)})

    def autograd_kernel(keyset, *args):
        tensors = [a for a in args if isinstance(a, torch.Tensor)]
        if _autograd_needed(tensors):
            if torch._C._are_functorch_transforms_active():
                with enable_single_level_autograd_function():  # as functorch's own Functions do
                    return fn.apply(*args)
            return fn.apply(*args)
        with torch._C._AutoDispatchBelowAutograd():
            return op.redispatch(keyset & torch._C._after_autograd_keyset, *args)

    LIB.impl(name, autograd_kernel, "Autograd", with_keyset=True)
    return op


def _is_weak(a) -> bool:
    return isinstance(a, (bool, int, float)) and not isinstance(a, np.generic)


def prepare(args, names):
    """The public wrappers' arguments as tensors of one device and numkern's result dtype.

    Tensors keep their autograd history (the cast is differentiable); Python scalars are weak (they
    take the result dtype); numpy arrays and numpy scalars join CPU tensors and count in the dtype
    rule.  Errors name the argument: complex or non-numeric input (TypeError), different devices,
    a numpy array with a CUDA tensor, shapes that do not broadcast (ValueError; for tensors of one
    float dtype, the fast path, this is checked by ``call`` only when the op fails)."""
    # fast path: tensors of one float dtype and device, and Python numbers
    tensors = [a for a in args if isinstance(a, torch.Tensor)]
    t0 = tensors[0]
    if (t0.dtype in (torch.float32, torch.float64) and t0.device.type in ("cpu", "cuda")
            and all(a.dtype == t0.dtype and a.device == t0.device for a in tensors)
            and all(isinstance(a, torch.Tensor) or type(a) in (int, float) for a in args)):
        return [a if isinstance(a, torch.Tensor) else torch.tensor(a, dtype=t0.dtype, device=t0.device)
                for a in args]
    device = None
    for a, n in zip(args, names):
        if a is None:  # (numpy would make it an object array, whose error names nothing)
            raise TypeError(f"{n}: expected a real number or array, got None")
        if isinstance(a, torch.Tensor):
            if a.dtype.is_complex:
                raise TypeError(f"{n}: unsupported dtype {a.dtype} (expected a real tensor)")
            if device is None:
                device = a.device
            elif a.device != device:
                raise ValueError(f"inputs are on different devices: {device} and {a.device} ({n})")
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"numkern runs on CPU and CUDA tensors, got a tensor on {device}")
    conv = []
    for a, n in zip(args, names):
        if isinstance(a, torch.Tensor) or _is_weak(a):
            conv.append(a)
            continue
        scalar_or_array_dtype(a, n)  # TypeError naming the argument
        arr = np.asarray(a)
        if device.type == "cuda" and arr.ndim > 0:
            raise ValueError(f"{n}: a numpy (CPU) array cannot be combined with a CUDA tensor")
        conv.append(torch.as_tensor(arr, device=device))
    strong = [t for t in conv if isinstance(t, torch.Tensor)]
    dt = result_dtype(*strong)
    check_broadcast(strong, [n for n, t in zip(names, conv) if isinstance(t, torch.Tensor)])
    return [t.to(dt) if isinstance(t, torch.Tensor) else torch.tensor(t, dtype=dt, device=device) for t in conv]


def check_broadcast(tensors, names):
    """ValueError naming the arguments when the shapes do not broadcast."""
    try:
        torch.broadcast_shapes(*(t.shape for t in tensors))
    except RuntimeError:
        desc = ", ".join(f"{n} {tuple(t.shape)}" for n, t in zip(names, tensors))
        raise ValueError(f"shapes do not broadcast: {desc}") from None


def call(op, args, names):
    """op(*prepare(args)); a failure is reported as a broadcast ValueError when that is its cause."""
    ts = prepare(args, names)
    try:
        return op(*ts)
    except RuntimeError:
        check_broadcast(ts, names)
        raise


def finish(result, out):
    """Write `result` into a torch `out=` (validated first; out is not part of the graph)."""
    if out is None:
        return result
    check_torch_out(out, result)
    with torch.no_grad():
        out.copy_(result)
    return out


def _first_order_error(what):
    return RuntimeError(
        f"numkern: {what} is a central difference (a first derivative only) and cannot be "
        "differentiated again; detach the order (v.detach()) or do not ask for second derivatives "
        "involving it")


class FirstOrderOnly(torch.autograd.function._SingleLevelFunction):
    """value = fn(*inputs) computed without a graph; differentiating it again raises.

    Carries the derivatives in a Bessel order v, which are central differences (first order
    only): a second derivative through them is refused rather than returned wrong."""

    @staticmethod
    def forward(fn, what, *inputs):
        with torch.no_grad():
            return fn(*inputs)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.what = inputs[1]

    @staticmethod
    def backward(ctx, grad):
        raise _first_order_error(ctx.what)


_unwrap_if_dead = getattr(torch._C._functorch, "unwrap_if_dead", None)


def first_order_only(fn, what, *inputs):
    # a torch.func wrapper of a level that has exited (jacrev's vjp_fn runs under vmap after its
    # grad level is gone) still says requires_grad; the dispatcher unwraps such tensors for ATen
    # ops, but this Python Function would record on them and leak a graph out of the transform
    # (jacrev in v returned a Jacobian that required grad): unwrap them as the dispatcher does
    if _unwrap_if_dead is not None:  # (torch >= 2.1's private helper; older: as before)
        inputs = tuple(_unwrap_if_dead(t) for t in inputs)
    if torch._C._is_fwd_grad_enabled() and any(_has_tangent(t) for t in inputs):
        raise _first_order_error(what)  # forward mode over it (e.g. jacfwd of a gradient in v)
    if torch.is_grad_enabled() and any(t.requires_grad for t in inputs):
        if torch._C._are_functorch_transforms_active():
            with enable_single_level_autograd_function():
                return FirstOrderOnly.apply(fn, what, *inputs)
        return FirstOrderOnly.apply(fn, what, *inputs)
    with torch.no_grad():
        return fn(*inputs)


# ---- tensors without host data (torch.compile, torch.func) -------------------------------------
_is_wrapped = torch._C._functorch.is_functorch_wrapped_tensor  # torch.func (vmap, grad, jvp) wrappers


def _is_fake(t) -> bool:
    from torch._subclasses.fake_tensor import is_fake

    return is_fake(t)


def traced(*arrays) -> bool:
    """Whether a call must go through the operators because its torch tensors have no data for the
    host kernels: traced by torch.compile (dynamo, FakeTensor) or wrapped by a torch.func transform
    (vmap's batched tensors, grad's / jvp's wrappers)."""
    if torch.compiler.is_compiling():
        return True
    return any(isinstance(a, torch.Tensor) and (_is_wrapped(a) or _is_fake(a)) for a in arrays)


def data_of(t):
    """A plain tensor holding the values of ``t``, for the host-side checks, or None when there are
    none to read: under torch.compile, FakeTensor, or inside torch.func.vmap (a batched tensor: its
    values are the whole batch).  grad / jvp wrappers are peeled (same shape, same values).  Use it
    inside ``host_access()``: inside a transform, torch ops on it would be wrapped again."""
    if torch.compiler.is_compiling() or _is_fake(t):
        return None
    while _is_wrapped(t):
        if torch._C._functorch.is_batchedtensor(t):
            return None
        t = torch._C._functorch.get_unwrapped(t)
    return t


def host_access():
    """A context in which torch ops see plain tensors (torch.func's transforms switched off), for
    reading the values that ``data_of`` returns."""
    return torch._C._DisableFuncTorch()
