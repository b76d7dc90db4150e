"""Shared torch behaviour of numkern.quant's quantized modules (OVPLinear, OVPConv1d/2d,
SplitQuantLinear): format metadata in the state_dict, the dtype rule, the ``weight`` view torch
code reads, refusal of torch.jit.trace, and torch.export through the layers' torch operators.

Imported only by the torch sides of the quantizers (numkern never imports torch eagerly).

State dict.  Besides the buffers (codes, scales, ...), ``get_extra_state`` stores a dict
``{"format": <name>, "version": <int>, ...}`` with every setting that decides the output (grid
choice, bits, group size, shapes, activation calibration state).  ``load_state_dict`` reads it
first, adopts the settings and reshapes the buffers to the saved ones, so a skeleton built with
other arguments computes exactly what the saved module computed.  A state dict of another
format, a newer version, or a quantized module's buffers without the metadata is refused with a
ValueError (strict or not).

Dtype rule.  Codes never change dtype.  Buffers named in ``_KEEP_DTYPE`` (scales, offsets,
activation thresholds) keep their precision under ``.half()``, ``.to(torch.bfloat16)``,
``.double()`` and ``.to(dtype)``; ``.to(device)`` moves them.  The bias follows the module dtype
as nn.Linear's does.  The forward accepts float16, bfloat16, float32 and float64 input, computes
in float32 (the kernels' precision) and returns the input's dtype, also under torch.autocast
(the modules are not autocast ops, like torch ops without an autocast rule; docs/olive.md).

Inference mode.  A module quantized, moved or loaded inside ``torch.inference_mode()`` holds
inference tensors, which have no version counter; the first call replaces them by normal
tensors with the same values (``plain_buffers``), so the caches keyed on version counters
(prepacked weights, the eager fast path's state) still notice in-place writes such as a
``load_state_dict`` inside inference mode (tests/common/test_quant_inference_mode.py).
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn.modules import module as _nn_module

_EXTRA = "_extra_state"


def _fast_path_guard(module, args):
    """A no-op forward pre-hook.  torch's fused TransformerEncoderLayer fast path is skipped when
    a submodule has hooks, so the quantized module's own forward (activation quantization,
    fused kernel) runs instead of a dense kernel fed with the dequantized ``weight``."""
    return None


def _run(module, x):
    """The quantized computation (``_forward`` of the subclass), eagerly."""
    module._check_dtype(x, type(module).__name__)
    return module._forward(x)


def _eager_forward(module, x):
    """The module's whole eager forward (its fast path included, which the subclasses' forward
    takes only outside torch.compile), so that a compiled model computes bit for bit what the
    eager one does (``_run`` alone skipped OVPLinear's fused-bias fast path: last-bit
    differences)."""
    return module.forward(x)


_DISABLED = []


def _run_disabled():
    """``_eager_forward`` wrapped by torch.compiler.disable, made on first use under torch.compile
    (the wrapper imports torch._dynamo, seconds of import time that eager users do not pay).
    Inside it torch.compiler.is_compiling() is False, so forward takes its eager route."""
    if not _DISABLED:
        _DISABLED.append(torch.compiler.disable(_eager_forward))
    return _DISABLED[0]


def buffer_marks(layer, names):
    """What the layers' caches compare a buffer by: (tensor, version counter, data_ptr) of each
    named buffer, None where absent.  The version counter sees in-place writes, identity sees a
    replaced buffer, data_ptr sees ``buffer.data = new`` (which keeps both); an in-place write
    through ``.data`` is seen by none of them (as autograd does not see it)."""
    b = layer._buffers
    return tuple(None if b[n] is None else (b[n], b[n]._version, b[n].data_ptr()) for n in names)


def buffers_unchanged(buffers, names, marks):
    """Whether every named buffer still matches its mark (buffer_marks)."""
    for n, m in zip(names, marks):
        c = buffers[n]
        if m is None:
            if c is not None:
                return False
        elif c is not m[0] or c._version != m[1] or c.data_ptr() != m[2]:
            return False
    return True


def watch_buffers(layer, names, marks):
    """The LayerRunner watch entries of a layer's buffers (csrc/python/common/layer_runner.hpp):
    each name's buffer must stay that tensor (None: stay absent) at that version counter and
    data_ptr (the runner reads the pointer from the tensor when it is made)."""
    b = layer._buffers
    return tuple((b, n, None, None) if m is None else (b, n, m[0], m[1]) for n, m in zip(names, marks))


def check_format(state, name, fmt, version_max):
    """Refuse (ValueError naming ``name``) an extra state that is not a dict of format ``fmt`` with
    an int version in 1..version_max; returns the version."""
    if not isinstance(state, dict) or state.get("format") != fmt:
        got = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise ValueError(f"state_dict: {name} expects format {fmt!r}, got {got!r}")
    version = state.get("version")
    if not isinstance(version, int) or not 1 <= version <= version_max:
        raise ValueError(f"state_dict: {name} format version {version!r} is not supported "
                         f"(this numkern reads versions 1..{version_max})")
    return version


def plain_buffers(layer):
    """Replace each of the layer's own buffers that is an inference tensor (made or moved under
    torch.inference_mode) by a normal tensor with the same values, made outside inference mode.
    The layers' caches (prepacked weights, the eager fast path's state) notice an in-place change
    of a buffer by its version counter, which inference tensors lack; a normal tensor keeps one,
    also when written in place inside inference mode."""
    b = layer._buffers
    for n, t in b.items():
        if t is not None and t.is_inference():
            with torch.inference_mode(False):
                b[n] = t.clone()


def arm_runner(runner):
    """Give a quantized layer's LayerRunner (numkern._core.<family>.LayerRunner) what its run()
    checks besides x and the watched entries: the guard hook, torch's global hook dicts and
    torch.jit.trace's state (run() mirrors QuantModule._hookless in C++); returns runner.run."""
    runner.set_call_checks(_fast_path_guard, (_nn_module._global_forward_pre_hooks, _nn_module._global_forward_hooks,
                                              _nn_module._global_backward_hooks,
                                              _nn_module._global_backward_pre_hooks),
                           torch._C._is_tracing)
    return runner.run


class QuantModule(nn.Module):
    """Base of numkern's quantized torch modules (see the module docstring for the rules)."""

    _FORMAT = "numkern.quant"
    _VERSION = 1
    _KEEP_DTYPE = ()

    def __init__(self):
        super().__init__()
        self._dtype = torch.float32  # nominal module dtype (what .half() / .double() set)
        self.register_forward_pre_hook(_fast_path_guard)

    def _hookless(self) -> bool:
        """True when the only hook (of this module or global) is _fast_path_guard, which does
        nothing, and the module is not torch.compile'd: nn.Module's call is then just forward.
        (LayerRunner.run checks the same in C++: layer_runner.hpp's plain_call.)"""
        pre = self._forward_pre_hooks
        return (len(pre) == 1 and self._compiled_call_impl is None
                and not (self._forward_hooks or self._backward_hooks or self._backward_pre_hooks
                         or _nn_module._global_forward_pre_hooks or _nn_module._global_forward_hooks
                         or _nn_module._global_backward_hooks or _nn_module._global_backward_pre_hooks)
                and _fast_path_guard in pre.values())

    def __call__(self, *args, **kwargs):
        # nn.Module's call without its hook machinery when the only hook is _fast_path_guard:
        # what nn.Module._call_impl does then, minus ~2 us a call
        if self._hookless() and not torch.compiler.is_compiling():
            return self.forward(*args, **kwargs)
        return super().__call__(*args, **kwargs)

    def __getstate__(self):
        # kernel caches (the prepacked weights of the eager fast path) stay out of pickles and
        # deep copies; the copy rebuilds them on first use
        state = super().__getstate__()
        state.pop("_nk_fast", None)
        return state

    # ---- settings that decide the output (subclasses) --------------------------------------
    def _settings(self) -> dict:
        raise NotImplementedError

    def _adopt(self, settings: dict) -> None:
        raise NotImplementedError

    # ---- state dict --------------------------------------------------------------------------
    def get_extra_state(self):
        # "optional": which of the optional buffers (the bias) the module has, so that a state
        # dict that lacks one is told apart from a module saved without it
        return {"format": self._FORMAT, "version": self._VERSION, **self._settings(),
                "optional": [n for n in self._OPTIONAL if self._buffers.get(n) is not None]}

    def set_extra_state(self, state):
        check_format(state, type(self).__name__, self._FORMAT, self._VERSION)
        self._adopt({k: v for k, v in state.items() if k not in ("format", "version", "optional")})

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs):
        extra = state_dict.get(prefix + _EXTRA)
        if extra is None:
            if any(prefix + n in state_dict for n in self._buffers):
                raise ValueError(f"state_dict: {prefix or 'the root'} ({type(self).__name__}) has "
                                 f"quantized buffers but no '{prefix}{_EXTRA}' format metadata; "
                                 "without it the grid and bit width cannot be verified")
        else:
            self.set_extra_state(extra)
            self._reshape_buffers(state_dict, prefix, extra.get("optional"))
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)

    def _reshape_buffers(self, state_dict, prefix, optional=None):
        """Make every buffer match the saved one's shape (and, for kept-precision buffers and
        non-float buffers, its dtype) so that the saved values load as they are.  optional: the
        saved module's optional buffers (get_extra_state; None from state dicts older than it,
        where an absent optional buffer means saved without it)."""
        device = self._device()
        for name in list(self._buffers):
            key = prefix + name
            if key not in state_dict:
                if (self._buffers[name] is not None and name in self._OPTIONAL
                        and (optional is None or name not in optional)):
                    self._buffers[name] = None  # saved without it (e.g. no bias)
                # (else a key missing from the state dict: load_state_dict reports it)
                continue
            saved = state_dict[key]
            cur = self._buffers[name]
            if cur is None or not saved.dtype.is_floating_point or name in self._KEEP_DTYPE:
                dtype = saved.dtype
            else:
                dtype = cur.dtype
            if cur is None or tuple(cur.shape) != tuple(saved.shape) or cur.dtype != dtype:
                self._buffers[name] = torch.empty(saved.shape, dtype=dtype, device=device)

    _OPTIONAL = ("bias",)

    def _device(self):
        for b in self._buffers.values():
            if b is not None:
                return b.device
        return torch.device("cpu")

    # ---- dtype rule ----------------------------------------------------------------------------
    def _apply(self, fn, recurse=True):
        kept = {n: b for n, b in self._buffers.items() if n in self._KEEP_DTYPE and b is not None}
        for n in kept:
            self._buffers[n] = None
        try:
            super()._apply(fn, recurse)
        finally:
            for n, b in kept.items():
                moved = fn(b)  # follow a device move, undo a dtype change
                self._buffers[n] = moved if moved.dtype == b.dtype else b.to(moved.device)
        probe = fn(torch.empty(0, dtype=self._dtype))
        if probe.dtype.is_floating_point:
            self._dtype = probe.dtype
        return self

    # ---- what torch code reads from nn.Linear ------------------------------------------------
    def dequantized_weight(self):
        raise NotImplementedError

    @property
    def weight(self):
        """The dequantized weight, a materialised dense copy in the module dtype (each access
        decodes the codes again; changing it does not change the module)."""
        w = self.dequantized_weight()
        dtype = self.bias.dtype if getattr(self, "bias", None) is not None else self._dtype
        return w.to(dtype)

    # ---- forward -----------------------------------------------------------------------------
    def forward(self, x):
        self._refuse_tracing(type(self).__name__)
        if torch.compiler.is_exporting():
            # torch.export: traced through the layer's torch operator (torch.ops.numkern.ovp_matmul /
            # splitquant_matmul, which decode the codes on each call) into the exported graph
            self._check_exportable()
            return _run(self, x)
        if torch.compiler.is_compiling():  # graph break here, once, not inside the kernels' wrappers
            return _run_disabled()(self, x)
        return _run(self, x)

    def _check_exportable(self):
        """Raise RuntimeError where the layer cannot be traced by torch.export (overridden)."""

    def _forward(self, x):
        raise NotImplementedError

    @staticmethod
    def _refuse_tracing(name):
        if torch.jit.is_tracing():
            raise RuntimeError(f"{name}: torch.jit.trace is not supported (the quantized kernel "
                               "runs outside TorchScript, so a trace would freeze its output); use "
                               "the module eagerly or with torch.compile")

    @staticmethod
    def _check_dtype(x, name):
        if not isinstance(x, torch.Tensor) or x.dtype not in (
                torch.float16, torch.bfloat16, torch.float32, torch.float64):
            got = x.dtype if isinstance(x, torch.Tensor) else type(x).__name__
            raise TypeError(f"x: {name} takes float16, bfloat16, float32 or float64 input, got {got}")

    def _add_bias(self, y32, out_dtype):
        """y32 (float32) + bias in float32, returned in the activation dtype."""
        if self.bias is not None:
            y32 = y32 + self.bias.to(torch.float32)
        return y32.to(out_dtype)
