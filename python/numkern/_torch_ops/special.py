r"""numkern.special as torch operators ``torch.ops.numkern.<name>`` (internal).

Derivatives in x are numkern ops themselves, so every derivative is again differentiable:

- g_I = d/dx log I_v(x) and g_K = d/dx log K_v(x) are the ops ``dlog_iv_dx`` / ``dlog_kv_dx``
  (stable ratios: g_I = I_{v+1}/I_v + v/x, g_K = v/x - K_{v+1}/K_v).  Both solve the Riccati form
  of Bessel's equation x^2 y'' + x y' - (x^2 + v^2) y = 0:   g' = 1 + v^2/x^2 - g/x - g^2.
- log_iv' = g_I, iv' = iv g_I, ive' = ive (g_I - sign x) (for v >= -1/2 as ive (v/x - sign(x)
  C_{v+1}(|x|)), C = iv_ratio_c: no cancellation for |x| >> v); log_kv' = g_K, kv' = kv g_K,
  kve' = kve (g_K + 1), which cancels for x >> max(1, v^2) (~eps 2x relative): there, for x above
  a switch-over x_0(v) (21.9 at v = 0, 82.9 at v = 20, ~v^2/6 for large v), kve times
  d/dx log(e^x K_v) = -1/(2x) + S'/S from Hankel's expansion e^x K_v = sqrt(pi/(2x)) S (30 terms,
  truncation <= 1e-17 relative; see _hankel_min_x): a few eps, and second derivatives (autograd
  through the series) too.
- At x = 0, where iv g_I is 0 inf and g/x is 0/0: iv' = (I_{v-1} + I_{v+1})/2 (DLMF 10.29.1)
  and ive' = (ive_{v-1} + ive_{v+1})/2 - sign(x) ive_v, both (ive_{v-1} + ive_{v+1})/2 at x = 0
  (differentiating it again gives the higher derivatives at 0 too): I_v'(0) = 0 at v = 0, 1/2 at
  |v| = 1, 0 for v > 1, +inf for 0 < v < 1; I_v''(0) = 1/2 at v = 0, 1/4 at v = 2, 0 at v = 1 and
  v > 2, +inf for 1 < v < 2, -inf for 0 < v < 1.  g_I' at x = 0 is 1/2 for v = 0
  (log I_0 = x^2/4 - ...), -inf for v != 0 (g_I ~ v/x); g_K' is +inf.  Each branch of those
  torch.where is evaluated at arguments where it is finite (x = 1 off its own elements; x = 0,
  v = 2 for the x = 0 branch off x = 0), so that no 0 * inf = NaN reaches the derivatives from
  the branch not taken (reverse over reverse still sees one where I_v'(0) is infinite, 0 < v < 1:
  NaN there, where forward over reverse gives the -inf).
- R = iv_ratio(v, x) = I_v/I_{v-1}, C = iv_ratio_c(v, x) = 1 - R:
  R' = 1 - R^2 - (2v-1) R/x = C (1 + R) - (2v-1) R/x (Riccati), used for x >= v, and the
  equivalent R' = R (R_{v+1} - R + 1/x) (from I_v' = I_{v+1} + (v/x) I_v), used for x < v where
  the Riccati form cancels; C' = -R'; R'(0) = 1/(2v).
- i0' = i1, i1' = (i0 + I_2)/2, k0' = -k1, k1' = -k0 - k1/x, and the scaled forms:
  i0e' = -sign(x) i0e C_1(|x|) (i1e - sign(x) i0e at 0), i1e' = i1e (1/x - sign(x) C_2(|x|))
  ((i0e + ive_2)/2 at 0), k0e' = k0e - k1e, k1e' = k1e - k0e - k1e/x (these two cancel for large x,
  ~eps 2x relative: above x_0 (21.9 for k0e, 23.4 for k1e) the Hankel form of kve' instead).
- In the order v: a central difference, in float64 whatever the input dtype, with step
  h = eps64^(1/3) max(1, |v|) (one-sided at the ratio's v = 1/2 edge).  For iv, ive, kv, kve,
  log_iv and log_kv it differences the logarithm, d/dv f = f d/dv log|f|: the log of the ratio
  of the scaled values (ive or kve) at v +- h where both are normal doubles of one sign (the
  ratio rounds to ~eps, where a difference of two logs of size L carries ~eps L), else the
  difference of log_iv / log_kv (values that under/overflow).  log I_v and log K_v are nearly
  linear in v (third derivative ~1/v^2), so the truncation error stays ~eps^(2/3); differencing f
  itself left (h d/dv log f)^2 / 6 relative (1.9e-7 at iv(40, 1)), and in float32 the step
  eps32^(1/3) |v| (1.5 at v = 300) was 60 % off at iv(300, 200).  I_v at v < 0 oscillates in v
  (zeros): where log|I| is not close to linear there (L''/L'^2 beyond +-0.1) or gives NaN (a sign
  change within the step, x = 0, x < 0, NaN), the difference of f itself, Richardson-extrapolated
  from the steps 4h and 2h (log_iv too: that of ive over ive); elsewhere at v < 0 the log's
  difference Richardson-extrapolated from h and 2h; at v = 0 the exact -K_0; the ratios' edge a
  second-order one-sided difference.  docs/torch.md states the bound.  It is a first derivative only
  (differentiating it again raises, see _common.FirstOrderOnly).
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from .. import _core
from .._backend import elementwise
from .._backend.elementwise import MAX_DIMS
from ._common import _autograd_needed, _is_wrapped, call, define_op, finish, first_order_only, result_dtype, traced

BINARY = ("log_iv", "log_kv", "iv", "ive", "kv", "kve", "iv_ratio", "iv_ratio_c", "dlog_iv_dx", "dlog_kv_dx")
UNARY = {"i0": 0, "i0e": 0, "i1": 1, "i1e": 1, "k0": 0, "k0e": 0, "k1": 1, "k1e": 1}

ops = {}  # name -> the registered custom op
_CPU = {}  # name -> the op's CPU implementation (the public functions' eager fast path calls it directly)


# ---- kernels -------------------------------------------------------------------------------------
def _binary_cpu(name):
    kernel = getattr(_core.special, name)

    def impl(v: Tensor, x: Tensor) -> Tensor:
        dt = result_dtype(v, x)
        vb, xb = v.detach(), x.detach()
        vb, xb = vb if vb.dtype == dt else vb.to(dt), xb if xb.dtype == dt else xb.to(dt)
        if vb.shape != xb.shape:
            vb, xb = torch.broadcast_tensors(vb, xb)
        if vb.dim() > MAX_DIMS:  # (e.g. dimensions added by vmap)
            raise ValueError(f"numkern.{name}: {vb.dim()} dimensions, at most {MAX_DIMS} are supported")
        out = torch.empty(vb.shape, dtype=dt)
        if out.numel():
            kernel(vb.numpy(), xb.numpy(), out.numpy())  # zero-copy views; broadcasting by strides
        return out

    impl.__name__ = name
    return impl


def _unary_cpu(name):
    kernel = getattr(_core.special, name)

    def impl(x: Tensor) -> Tensor:
        xd = x.detach().to(result_dtype(x))
        if xd.dim() > MAX_DIMS:
            raise ValueError(f"numkern.{name}: {xd.dim()} dimensions, at most {MAX_DIMS} are supported")
        out = torch.empty(xd.shape, dtype=xd.dtype)
        if out.numel():
            # the fixed-order kernels do not read the order argument: a broadcast view of x
            kernel(xd.numpy(), xd.numpy(), out.numpy())
        return out

    impl.__name__ = name
    return impl


def _cuda(name, order=None):
    # numkern._cuda.special.<name>(a, b, out, stream=) under the tensors' device, on the current
    # stream (elementwise -> Context.call); broadcast, contiguous operands of the result dtype
    if order is None:
        return lambda v, x: elementwise("special", name, (v.detach(), x.detach()), ("v", "x"))
    return lambda x: elementwise("special", name, (order, x.detach()), ("order", "x"))


# ---- derivatives (numkern ops, hence differentiable again) ----------------------------------------
def _safe(x):
    return torch.where(x == 0, torch.ones_like(x), x)


def ratio_prime(v, x, r, c=None):
    """d/dx R for R = iv_ratio(v, x) = I_v/I_{v-1} (r: its value, c: 1 - r when known), from
    numkern ops.  Two exact forms of the same derivative, each where it does not cancel:
      x < v:   R' = R (R_{v+1} - R + 1/x),   R_{v+1} = iv_ratio(v+1, x)   (error ~eps)
      x >= v:  R' = C (1 + R) - (2v-1) R/x  (Riccati; C = iv_ratio_c(v, x))  (error ~eps 2x)
    (the Riccati form loses ~2v eps where x << v, R' ~ 1/(2v) from terms ~1; the other form
    loses ~2x^2/(2v-1) eps where x >> v); R'(0) = 1/(2v)."""
    o = torch.ops.numkern
    xs = _safe(x)
    near = x < v  # each form is evaluated at harmless arguments where it is not used
    vn = torch.where(near, v, torch.ones_like(v))
    vf = torch.where(near, torch.ones_like(v), v)
    if c is None:
        c = o.iv_ratio_c(vf, x)
    far_form = c * (1.0 + r) - (2.0 * vf - 1.0) * r / xs
    near_form = r * (o.iv_ratio(vn + 1.0, x) - r + 1.0 / xs)
    return torch.where(x == 0, 0.5 / v, torch.where(near, near_form, far_form))


def _at_zero(v, x, safe_v=2.0):
    """(zero, v0, x0): the mask x == 0, and v, x where it holds, else (safe_v, 0): the arguments of
    an x = 0 branch, finite (with finite derivatives) off its own elements."""
    zero = x == 0
    v0 = torch.where(zero, v, torch.full_like(v, safe_v))
    return zero, v0, torch.where(zero, x, torch.zeros_like(x))


def _iv_prime_at_zero(v, x):
    """d/dx iv and ive for the elements x = 0 (see _at_zero): I_v' = (I_{v-1} + I_{v+1})/2 as
    (ive_{v-1} + ive_{v+1})/2, which is ive' there too (its term -sign(x) ive_v is 0 at x = 0, and
    so is its derivative with torch's sign'(0) = 0, sign(0) = 0; left out, as 0 * inf would be NaN
    where ive_v' is infinite).  Derivatives of every order at 0 follow the one recursion, from
    ive_w(0) = I_w(0): ive, not iv, for those values, because iv keeps SciPy's +inf at x = 0 for
    every non-integer w < 0 where the limit is -inf for Gamma(1 + w) < 0 (I_v''(0) for 0 < v < 1)."""
    o = torch.ops.numkern
    zero, v0, x0 = _at_zero(v, x)
    return zero, 0.5 * (o.ive(v0 - 1.0, x0) + o.ive(v0 + 1.0, x0))


def _riccati_log(name, g, v, x):
    """d/dx of g = d/dx log Z_v(x) for Z = I or K: 1 + v^2/x^2 - g/x - g^2, and its x = 0 limits
    (g_I: 1/2 for v = 0, -inf for v != 0, where log I_v = -inf; g_K: +inf)."""
    zero = x == 0
    xs = _safe(x)
    gs = torch.where(zero, torch.zeros_like(g), g)  # (g is +-inf at x = 0 for v != 0)
    form = 1.0 + (v / xs) ** 2 - gs / xs - gs * gs
    if name == "dlog_kv_dx":
        at0 = torch.full_like(x, float("inf"))
    else:
        at0 = torch.where(v == 0, torch.full_like(x, 0.5), torch.full_like(x, -float("inf")))
    return torch.where(zero, at0, form)


def _gi_minus_sign(v, x, g):
    """g_I - sign(x) for x != 0 (the factor of ive'), without the cancellation of g_I ~ 1 - 1/(2x)
    against 1 for |x| >> v (which left ~eps 2|x| relative: 4e-8 at ive(1, 1e8)): for v >= -1/2,
    v/x - sign(x) C_{v+1}(|x|) with C = iv_ratio_c = 1 - I_{v+1}/I_v (exact: I_{v+1}/I_v + v/x -
    sign x, with I_{n+1}(x)/I_n(x) = -R(|x|) for x < 0); the cancellation left is v/x against
    C_{v+1} ~ (2v+1)/(2x), ~2|v| eps.  Below v = -1/2 (iv_ratio_c's domain) g - sign(x)."""
    ok = v >= -0.5
    vr = torch.where(ok, v, torch.ones_like(v))  # (harmless arguments off its elements)
    return torch.where(ok, _gi_minus_sign_form(v, vr, x), g - torch.sign(x))


def _gi_minus_sign_form(v, vr, x):
    """v/x - sign(x) C_{vr+1}(|x|): g_I - sign(x) for vr = v >= -1/2, x != 0 (_gi_minus_sign; i0e' and
    i1e' with v the Python number 0 / 1)."""
    return v / x - torch.sign(x) * torch.ops.numkern.iv_ratio_c(vr + 1.0, x.abs())


# d/dx log(e^x K_v(x)) for large x from Hankel's expansion (DLMF 10.40.2):
#   e^x K_v(x) = sqrt(pi/(2x)) S,  S = sum_{k<N} t_k,  t_k = a_k(v) x^-k,
#   a_k(v) = prod_{j<=k} (4v^2 - (2j-1)^2) / (k! 8^k),
# so d/dx log(e^x K_v) = -1/(2x) + S'/S = -(1/x) sum (k + 1/2) t_k / S.  g_K + 1 (and k0e - k1e,
# k1e - k0e - k1e/x) form that ~-1/(2x) as a difference of terms ~1: ~eps 2x relative (4.5e-8 at
# x = 1e8), and the second derivative through it ~eps x^2 (6.6 relative at 1e8).  The series' terms
# have one sign up to k ~ v - 1/2 and are small after that: a few eps (<= 3.3 eps measured, first and
# second derivative, v <= 20).
# Truncation: with w = |v| + 1, B_k(w) = prod_{j<=k} max(4w^2, (2j-1)^2) / (k! 8^k) >= |a_k(mu)| for
# mu = v, v -+ 1.  DLMF 10.40(ii) bounds the remainder of each of these series by its first neglected
# term where that term's index is >= mu - 1/2; before that index the terms are positive with ratio
# <= w^2 / (2 (k+1) x) <= 1/2 for x >= w^2 / (N+1): the remainder is at most twice the first
# neglected term.  S' - S/(2x) = S_v - (S_{v-1} + S_{v+1})/2 (K_v' = -(K_{v-1} + K_{v+1})/2, term by
# term up to x^-N) is then off by <= 4 B_{N+1} x^-(N+1) <= 4 B_N x^-N / x (x >= (N+1)/2), S by
# <= 2 B_N x^-N; with S >= 0.99 and |S' - S/(2x)| >= 0.48/x (x >= 20; x^(1/2) e^x K_v decreases for
# v > 1/2, and increases by <= 1/(8x^2) relative for v < 1/2) the relative error of the result is
# <= 10.5 B_N(w) x^-N.  The series is used where 16 B_N(w) x^-N <= 1e-17, x >= w^2/(N+1) and
# x >= (N+1)/2: x >= 21.9 at v = 0, 23.4 at v = 1, 34.9 at v = 7, 82.9 at v = 20, 1.7e3 at v = 100,
# ~v^2/6 beyond (N = 30 terms, four tensor ops each; N = 40 gives 20.6 at v = 0, 922 at v = 100).
# Below that the previous forms, ~eps 2x / (1 + v^2/x): largest just below the switch-over (62 eps at
# v = 1, x = 20; 276 eps at v = 100, x = 1700).
_HANKEL_N = 30
_HANKEL_TOL = 1e-17


def _log_odd_factorial(n):
    """log (2n - 1)!! for a float64 tensor n >= 0."""
    return torch.lgamma(2.0 * n + 1.0) - n * math.log(2.0) - torch.lgamma(n + 1.0)


def _hankel_min_x(v):
    """The x above which the N-term Hankel form of d/dx log(e^x K_v) is within 1e-17 relative (see
    above): max((16 B_N(w) / tol)^(1/N), w^2/(N+1), (N+1)/2), w = |v| + 1, for a float64 tensor v
    (inf where w^2 overflows, NaN for NaN)."""
    n = _HANKEL_N
    w = v.abs() + 1.0
    m = torch.clamp(torch.floor(w + 0.5), max=float(n))  # j <= m: 4w^2 >= (2j - 1)^2
    log_b = (m * torch.log(4.0 * w * w) + 2.0 * (math.lgamma(2 * n + 1) - n * math.log(2.0)
             - math.lgamma(n + 1) - _log_odd_factorial(m)) - math.lgamma(n + 1) - n * math.log(8.0))
    x1 = torch.exp((log_b + math.log(16.0 / _HANKEL_TOL)) / n)
    return torch.maximum(torch.maximum(x1, w * w / (n + 1)), torch.full_like(w, (n + 1) / 2.0))


def _hankel_dlog_kve(v, x):
    """-(1/x) sum_{k<N} (k + 1/2) t_k / sum_{k<N} t_k (float64 tensors): d/dx log(e^x K_v(x)) where
    x >= _hankel_min_x(v).  Carries p_k = k! t_k = prod_{j<=k} (v^2/(2x) - (2j-1)^2/(8x)) (at most
    ~20^N there, no overflow) with the k! in the sums' scalar weights: four tensor ops a term."""
    r = 0.125 / x
    q = 4.0 * v * v * r  # v^2/(2x)
    p = torch.ones_like(q)
    s, s1 = p, 0.5 * p
    fact = 1.0
    for k in range(1, _HANKEL_N):
        p = p * torch.add(q, r, alpha=-float((2 * k - 1) ** 2))
        fact *= k
        s = torch.add(s, p, alpha=1.0 / fact)
        s1 = torch.add(s1, p, alpha=(k + 0.5) / fact)
    return -s1 / (x * s)


def _kve_prime(v, x, y, near):
    """d/dx of y = e^x K_v(x) (kve, k0e, k1e): y times the Hankel form of d/dx log(e^x K_v) where x
    is large enough (see above), else ``near`` (the derivative's other form).  The series is
    evaluated in float64 and at harmless arguments (v = 0, x = 1e3) off its elements, so that no
    overflow there reaches a derivative through the torch.where."""
    v64, x64 = v.to(torch.float64), x.to(torch.float64)
    far = torch.isfinite(x64) & (x64 >= _hankel_min_x(v64))
    # (eager CPU, no element past x_0: the series' ~120 elementwise ops skipped.  CPU only: bool()
    # reads the mask on the host, which on CUDA is a device sync (and fails inside CUDA graph
    # capture) and on meta tensors raises)
    # at x = 0 the other forms are inf - inf (k0e, k1e) or inf (1 - inf): the limit -inf
    near = torch.where(x == 0, torch.full_like(near, -math.inf), near)
    if x64.device.type == "cpu" and not traced(v, x, y, near) and not bool(far.any()):
        return near
    vs = torch.where(far, v64, torch.zeros_like(v64))
    xs = torch.where(far, x64, torch.full_like(x64, 1e3))
    return torch.where(far, y * _hankel_dlog_kve(vs, xs).to(y.dtype), near)


def _dfdx(name, v, x, y):
    o = torch.ops.numkern
    if name in ("log_iv", "iv", "ive"):
        if name == "log_iv":
            return o.dlog_iv_dx(v, x)
        # y g_I is 0 inf at x = 0: the recurrence form there (and g_I taken at x = 1 instead)
        zero, at0 = _iv_prime_at_zero(v, x)
        xs = _safe(x)
        g = o.dlog_iv_dx(v, xs)
        if name == "iv":
            return torch.where(zero, at0, y * g)
        return torch.where(zero, at0, y * _gi_minus_sign(v, xs, g))
    if name in ("log_kv", "kv", "kve"):
        g = o.dlog_kv_dx(v, x)
        return g if name == "log_kv" else y * g if name == "kv" else _kve_prime(v, x, y, y * (g + 1.0))
    if name in ("dlog_iv_dx", "dlog_kv_dx"):
        return _riccati_log(name, y, v, x)
    if name == "iv_ratio":
        return ratio_prime(v, x, y)
    return -ratio_prime(v, x, o.iv_ratio(v, x), y)  # iv_ratio_c


# d/dv by differencing log|f|: the scaled op (ratios of its values) and the log op of each function
_LOG_OF = {"iv": ("ive", "log_iv"), "ive": ("ive", "log_iv"), "log_iv": ("ive", "log_iv"),
           "kv": ("kve", "log_kv"), "kve": ("kve", "log_kv"), "log_kv": ("kve", "log_kv")}
_TINY = torch.finfo(torch.float64).tiny


def _order_difference(name):
    def fd(v, x, y):
        # in float64 whatever the dtype (a float32 step eps32^(1/3) |v| was 60 % off at iv(300, 200))
        f = ops[name]
        vd, xd = torch.broadcast_tensors(v.to(torch.float64), x.to(torch.float64))
        h = torch.finfo(torch.float64).eps ** (1.0 / 3.0) * torch.clamp(vd.abs(), min=1.0)
        if name not in _LOG_OF:  # the ratios, g_I and g_K: O(1) and smooth in v
            if name in ("iv_ratio", "iv_ratio_c"):  # defined for v >= 1/2: one-sided at the edge
                # second order there too: (-3 f(v) + 4 f(v + h) - f(v + 2h)) / (2h) (the first-order
                # (f(v + h) - f(v)) / h was 1.2e-5 relative off at iv_ratio(0.5, 0.3))
                edge = vd - h < 0.5
                vc = torch.where(edge, torch.ones_like(vd), vd)  # (harmless arguments off their elements)
                ve = torch.where(edge, vd, torch.ones_like(vd))
                central = (f(vc + h, xd) - f(vc - h, xd)) / (2.0 * h)
                one_sided = (4.0 * f(ve + h, xd) - 3.0 * f(ve, xd) - f(ve + 2.0 * h, xd)) / (2.0 * h)
                d = torch.where(edge, one_sided, central)
            else:
                d = (f(vd + h, xd) - f(vd - h, xd)) / (2.0 * h)
            return d.to(v.dtype)
        scaled, log_op = (ops[n] for n in _LOG_OF[name])
        sp, sm = scaled(vd + h, xd), scaled(vd - h, xd)
        q = sp / sm
        by_ratio = (sp.abs() >= _TINY) & (sm.abs() >= _TINY) & (q > 0) & (q < float("inf"))
        # the logs where the values under/overflow (elsewhere evaluated at a cheap point)
        one = torch.ones_like(vd)
        vl, xl, hl = (torch.where(by_ratio, one, t) for t in (vd, xd, h))
        lp, lm = log_op(vl + hl, xl), log_op(vl - hl, xl)
        dlog_l = torch.where(lp == lm, torch.zeros_like(lp), lp - lm)  # (equal infinities: 0)
        dlog = torch.where(by_ratio, torch.log(torch.where(by_ratio, q, one)), dlog_l) / (2.0 * h)
        if name in ("kv", "kve", "log_kv"):
            if name == "log_kv":
                return dlog.to(v.dtype)
            y = y.to(torch.float64)
            return torch.where(dlog == 0, torch.zeros_like(y), y * dlog).to(v.dtype)
        # I_v of either sign: for v < 0, I_{-nu} = I_nu + (2/pi) sin(pi nu) K_nu oscillates in nu
        # (near x = 0 it vanishes next to every integer nu), so log|I| is far from linear in v there
        # (its difference was 3 % off at iv(-11.2245, 7.5113), next to a zero).
        # (1) For v < 0 the log's difference is Richardson-extrapolated from the steps h and 2h
        # (O(h^4)): log|sin(pi nu)| curves enough that the plain difference was 2.5e-9 relative off
        # at iv(-10.7, 1e-8).
        neg = by_ratio & (vd < 0)
        vn, xn, hn = (torch.where(neg, t, one) for t in (vd, xd, h))
        q2 = scaled(vn + 2.0 * hn, xn) / scaled(vn - 2.0 * hn, xn)
        ok2 = neg & (q2 > 0) & (q2 < float("inf"))
        dlog2 = torch.log(torch.where(ok2, q2, one)) / (4.0 * h)
        dlog = torch.where(ok2, (4.0 * dlog - dlog2) / 3.0, dlog)
        # (2) where rho = L'' / L'^2 (L = log|I|, from the three values; ~0 where f is
        # exponential-like in v) is not small, and where the log gives NaN (a sign change within
        # [v - h, v + h], x = 0 with |v| < h, x < 0, NaN input): the difference of f itself,
        # Richardson-extrapolated from the steps 4h and 2h (error O(h^4); the central difference
        # alone was up to 1e-7 relative there).  log_iv too (divided by the value): its log's
        # difference was 2.9e-7 off at log_iv(-10.7, 2.5) and NaN at log_iv(-(1 - 1e-12), 1e-8).
        # Not where the value overflows (inf - inf): there y times the log's difference.
        y = y.to(torch.float64)
        ax = xd.abs()
        l0 = y - ax if name == "log_iv" else torch.log(y.abs()) - (ax if name == "iv" else 0.0)  # log|ive|
        finite = torch.isfinite(y)
        lp_, lm_ = (torch.log(torch.where(by_ratio, t.abs(), one)) for t in (sp, sm))
        rho = 4.0 * (lp_ - 2.0 * l0 + lm_) / (lp_ - lm_) ** 2
        plain = finite & (torch.isnan(dlog) | (by_ratio & ~(rho.abs() <= 0.1)))
        vp, xp = (torch.where(plain, t, one) for t in (vd, xd))
        hp = torch.where(plain, 4.0 * h, one)
        g = scaled if name == "log_iv" else f  # (log_iv: d/dv log|I| = (d/dv ive) / ive)
        d1 = (g(vp + hp, xp) - g(vp - hp, xp)) / (2.0 * hp)
        d2 = (g(vp + 0.5 * hp, xp) - g(vp - 0.5 * hp, xp)) / hp
        rich = (4.0 * d2 - d1) / 3.0
        # (3) v = 0, x > 0: exactly d/dv I_v = -K_0(x) (DLMF 10.38.4), which the difference only
        # resolves to ~1e-10 |I_0| (and iv(0, 720) = inf gave +-inf): -k0e(x) e^{-2x} / i0e(x) for
        # log_iv, -k0e(x) e^{-2x} for ive, -k0(x) for iv
        at0 = (vd == 0) & (xd > 0)
        x0 = torch.where(at0, xd, one)
        k0s = ops["k0e"](x0) * torch.exp(-2.0 * x0)  # K_0 e^{-x}
        if name == "log_iv":
            d = torch.where(plain, rich / scaled(vp, xp), dlog)
            return torch.where(at0, -k0s / ops["i0e"](x0), d).to(v.dtype)
        d = torch.where(plain, rich, y * dlog)
        return torch.where(at0, -ops["k0"](x0) if name == "iv" else -k0s, d).to(v.dtype)

    return fd


def _unary_prime(name, x, y):
    o = torch.ops.numkern
    s = torch.sign(x)
    if name == "i0":
        return o.i1(x)
    if name == "i0e":
        # -sign(x) i0e C_1(|x|) (C = iv_ratio_c): i1e - sign(x) i0e cancelled for large |x| (~eps 2|x|
        # relative); at x = 0 the old form, whose derivative is i0e''(0) = 1/2
        zero, zeros = x == 0, torch.zeros_like(x)
        return torch.where(zero, o.i1e(x) - s * y, y * _gi_minus_sign_form(0.0, zeros, _safe(x)))
    if name in ("i1", "i1e"):
        # i1' = i0 - i1/x is 0/0 at x = 0: there (I_0 + I_2)/2 (1/2, and differentiable again)
        zero, v0, x0 = _at_zero(torch.full_like(x, 2.0), x)
        if name == "i1":
            # (I_0 + I_2)/2 everywhere: i0 - i1/x was inf - inf = NaN where both overflow (|x| > 713.98)
            return 0.5 * o.i0(x) + 0.5 * o.iv(torch.full_like(x, 2.0), x)  # (a sum could overflow)
        at0 = 0.5 * (o.i0e(x0) + o.ive(v0, x0))  # (-sign(x) i1e: 0 at 0, see _iv_prime_at_zero)
        xs = _safe(x)  # i1e (g_I - sign x) at v = 1, without cancellation (see _gi_minus_sign)
        return torch.where(zero, at0, y * _gi_minus_sign_form(1.0, torch.ones_like(x), xs))
    if name == "k0":
        return -o.k1(x)
    if name == "k0e":  # k0e - k1e and k1e - k0e - k1e/x cancel for large x: the Hankel form there
        return _kve_prime(torch.zeros_like(x), x, y, y - o.k1e(x))
    if name == "k1":
        return -o.k0(x) - y / x
    return _kve_prime(torch.ones_like(x), x, y, y - o.k0e(x) - y / x)  # k1e


def _binary_partials(name):
    fd = _order_difference(name)
    what = f"d/dv {name}(v, x)"

    def partials(needs, v, x, y):
        return (first_order_only(fd, what, v, x, y) if needs[0] else None,
                _dfdx(name, v, x, y) if needs[1] else None)

    return partials


def _unary_partials(name):
    return lambda needs, x, y: (_unary_prime(name, x, y),)


# ---- registration -------------------------------------------------------------------------------
for _name in BINARY:
    _CPU[_name] = _binary_cpu(_name)
    ops[_name] = define_op(_name, ("v", "x"), _CPU[_name], _cuda(_name), _binary_partials(_name))
for _name, _order in UNARY.items():
    _CPU[_name] = _unary_cpu(_name)
    ops[_name] = define_op(_name, ("x",), _CPU[_name], _cuda(_name, _order), _unary_partials(_name))


# ---- the public functions' torch path -----------------------------------------------------------
def _check_dims(args, names, out):
    """The kernels' limit of MAX_DIMS (32) dimensions, as the numpy path reports it: an error naming
    the argument (the kernel's own message named its internal out array)."""
    for a, n in zip((*args, out), (*names, "out")):
        if isinstance(a, torch.Tensor) and a.dim() > MAX_DIMS:
            raise ValueError(f"{n}: {a.dim()} dimensions, at most {MAX_DIMS} are supported")


_FLOATS = (torch.float32, torch.float64)
_profiler_enabled = torch._C._autograd._profiler_enabled  # (the profiler records ops in the dispatcher)


def _eager_cpu(args):
    """The arguments as tensors for the op's CPU implementation called directly, or None when the
    call must go through the dispatcher.  Direct: every argument a plain CPU torch.Tensor (exact
    type: no FakeTensor or other subclass, no torch.func wrapper, no neg / conj bit) of one float
    dtype, or a Python float / int (weak: the tensors' dtype), none of them needing autograd
    (forward-mode tangents included), outside torch.compile, torch.jit tracing, torch.profiler /
    torch.autograd.profiler (they record ops in the dispatcher: a direct call was missing from the
    trace) and any torch function / dispatch mode (FlopCounterMode, FakeTensorMode see the op).
    Then the result is the op's own (the same implementation, the same bits) without its
    dispatch (~15 us of a ~45 us call on 10 elements)."""
    if torch.compiler.is_compiling():  # (first: dynamo traces no further than this)
        return None
    dt = None
    for a in args:
        if type(a) is torch.Tensor:
            if (a.device.type != "cpu" or a.dtype not in _FLOATS or (dt is not None and a.dtype != dt)
                    or _is_wrapped(a) or a.is_neg() or a.is_conj()):
                return None
            dt = a.dtype
        elif type(a) is not float and type(a) is not int:
            return None
    if (dt is None or torch.jit.is_tracing() or _profiler_enabled()
            or torch._C._is_torch_function_mode_enabled() or torch._C._len_torch_dispatch_stack()):
        return None
    ts = [a if type(a) is torch.Tensor else None for a in args]
    if _autograd_needed([t for t in ts if t is not None]):
        return None
    return [t if t is not None else torch.tensor(a, dtype=dt) for t, a in zip(ts, args)]


def binary(name, v, x, out=None, names=("v", "x")):
    """numkern.special.<name>(v, x, out=) for arguments of which at least one is a torch tensor."""
    _check_dims((v, x), names, out)
    ts = _eager_cpu((v, x))
    if ts is not None:
        try:
            return finish(_CPU[name](*ts), out)
        except RuntimeError:  # (shapes that do not broadcast: the operator's path names them)
            pass
    return finish(call(ops[name], (v, x), names), out)


def unary(name, x, out=None):
    """numkern.special.<name>(x, out=) (fixed order) for a torch tensor x."""
    _check_dims((x,), ("x",), out)
    if isinstance(x, torch.Tensor) and x.dtype in (torch.float16, torch.bfloat16):
        # the fixed-order drop-ins compute float16 in float64 on numpy and dask (SciPy's loops), so
        # the public function does on torch too (bfloat16 likewise); the ops themselves keep the one
        # rule (float32), as their fake implementation says.  (Was float32: other bits and dtype.)
        x = x.to(torch.float64)
    ts = _eager_cpu((x,))
    if ts is not None:
        return finish(_CPU[name](*ts), out)
    return finish(call(ops[name], (x,), ("x",)), out)
