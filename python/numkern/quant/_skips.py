"""Which weight layers a model transform left unquantized, and why (returned and logged).

Shared by numkern.quant's torch transforms (OVP quantize_model, splitquant, quantize_model_plain).
"""
from __future__ import annotations

import logging

LOG = logging.getLogger("numkern.quant")


def skipped_layers(model, is_quantized, reason_of=None, skip_names=(), held_reason=None):
    """[(qualified name, type name, reason)] for every module of ``model`` that owns a weight of
    2 or more dimensions (``weight``, or another own parameter whose name contains "weight", such
    as nn.MultiheadAttention's ``in_proj_weight`` or nn.LSTM's ``weight_ih_l0``) and is not
    quantized (``is_quantized(module)`` false; modules inside a quantized one are not visited).
    ``reason_of(module)`` may give a more specific reason (or None for the default one);
    ``skip_names`` are names the caller skipped on request.  ``held_reason(module)``, for a module
    that ``is_quantized`` accepts, may return a reason to report it anyway (a module the transform
    leaves as it is although its weights are float, e.g. an unquantized SplitLayer in OVP's
    quantize_model); its children are not visited either way."""
    out = []
    inside = []
    for name, m in model.named_modules():
        if any(not p or name.startswith(p + ".") for p in inside):  # ("": the model itself)
            continue
        if is_quantized(m):
            inside.append(name)
            why = held_reason(m) if held_reason else None
            if why:
                out.append((name, type(m).__name__,
                            "skipped on request (skip=...)" if name in skip_names else why))
            continue
        params = getattr(m, "_parameters", None) or {}
        w = params.get("weight")
        # other weight matrices a module owns itself (nn.MultiheadAttention's in_proj_weight /
        # q_proj_weight, nn.LSTM's weight_ih_l0, ...): no transform quantizes them
        others = [n for n, p in params.items()
                  if n != "weight" and "weight" in n and p is not None and p.dim() >= 2]
        if (w is None or w.dim() < 2) and not others:
            continue
        if name in skip_names:
            reason = "skipped on request (skip=...)"
        elif w is not None and w.dim() >= 2:
            reason = (reason_of(m) if reason_of else None) or f"{type(m).__name__} is not supported"
        else:
            reason = (f"{type(m).__name__}'s own weight parameter(s) {', '.join(others)} are not "
                      "in an nn.Linear / Conv layer and stay float")
            if getattr(m, "out_proj", None) is not None:
                reason += " (its out_proj is handled as a layer of its own)"
        out.append((name, type(m).__name__, reason))
    return out


def log_skipped(report, what):
    for name, kind, reason in report:
        level = logging.INFO if reason.startswith("skipped on request") else logging.WARNING
        LOG.log(level, "%s: layer %r (%s) left unquantized: %s", what, name or "<root>", kind, reason)
    return report
