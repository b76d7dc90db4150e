"""Regenerate csrc/include/numkern/special/detail/k_mid_coeffs.hpp.

For |mu| <= 1/2 and 1 <= x <= 25 (bessel.hpp's K at small orders and moderate arguments) the
start values of the forward recurrence for K are
    F0(mu, x) = e^x K_mu(x),        F1(mu, x) = -e^x K'_mu(x) = e^x (K_mu+1(x) - (mu / x) K_mu(x)),
both even in mu and analytic in x on the cut plane, so in the variables
    s = 8 mu^2 - 1 in [-1, 1],      u = (log(x * scale) - centre) * inv_half in [-1, 1]
(scale a power of two, per piece of x) they are smooth on the square: a bivariate polynomial of
degree NX - 1 in u and NT - 1 in s per piece.  (log x is the natural variable: the singularities
of K, at x = 0 and along the negative axis, are at distance pi from the real log-axis.)

Method: F0, F1 at the M = NX + 5 by NT + 4 Chebyshev points of the square from mpmath.besselk at
DPS digits; the 2-D Chebyshev coefficients by the discrete cosine transform, truncated to NX x NT
(the dropped ones < 1e-18 relative), converted to monomial coefficients in mpmath and rounded to
double.  Check (second, independent method): at CHECK random points per piece the rounded
polynomial, evaluated exactly in mpmath, against F0, F1 from the integrals
    K_mu(x) = int_0^8 e^(-x cosh t) cosh(mu t) dt,  -K'_mu(x) = int_0^8 cosh t e^(-x cosh t) cosh(mu t) dt
(mpmath.quad); the script fails if the besselk and integral values differ by more than 1e-30 or
the polynomial (its double coefficients evaluated exactly) is off by more than 8e-17 relative
(measured max 5.4e-17: the rounding of the coefficients to double, the fit itself < 1e-18).

Run:  python tools/gen_k_mid.py > csrc/include/numkern/special/detail/k_mid_coeffs.hpp
"""
import random
import sys

import mpmath as mp

DPS = 40
NX, NT = 17, 9  # coefficients per piece in u and in s
# pieces of x: [lo, hi], scale 2^-k (x * scale is exact) chosen so that log(x * scale) is small
PIECES = [(1.0, 4.0, 0.5), (4.0, 25.0, 0.125)]
CHECK = 40
MARGIN = 1.0 + 2.0**-20  # the square covers the piece with a little to spare

mp.mp.dps = DPS


def f_pair(mu, x):
    k0 = mp.besselk(mu, x)
    k1 = mp.besselk(mu + 1, x)
    e = mp.exp(x)
    return e * k0, e * (k1 - mu / x * k0)


def f_pair_integral(mu, x):
    # (integrands < e^(-x cosh 8) < e^-1490 beyond t = 8 for x >= 1)
    k0 = mp.quad(lambda t: mp.exp(-x * mp.cosh(t)) * mp.cosh(mu * t), [0, 1, 2, 4, 8])
    d = mp.quad(lambda t: mp.cosh(t) * mp.exp(-x * mp.cosh(t)) * mp.cosh(mu * t), [0, 1, 2, 4, 8])
    e = mp.exp(x)
    return e * k0, e * d


def piece_map(lo, hi, scale):
    """centre and inv_half as doubles; x(u) from them exactly (the C++ forms u with these doubles)."""
    a, b = mp.log(mp.mpf(lo) * scale), mp.log(mp.mpf(hi) * scale)
    centre = float((a + b) / 2)
    inv_half = float(1 / ((b - a) / 2 * MARGIN))
    return centre, inv_half


def cheb_coeffs(vals, m_u, m_s):
    """2-D Chebyshev coefficients c[j][k] (s^j-direction j, u-direction k) from values at the points
    u_i = cos(pi (i + 1/2) / m_u), s_i = cos(pi (i + 1/2) / m_s); vals[iu][is]."""
    def dct(seq, m, k):
        return sum(seq[i] * mp.cos(mp.pi * k * (i + mp.mpf(1) / 2) / m) for i in range(m)) * 2 / m
    # along u first
    along_u = [[dct([vals[iu][is_] for iu in range(m_u)], m_u, k) for k in range(NX)] for is_ in range(m_s)]
    c = [[dct([along_u[is_][k] for is_ in range(m_s)], m_s, j) for k in range(NX)] for j in range(NT)]
    for j in range(NT):
        c[j][0] /= 2
    for k in range(NX):
        c[0][k] /= 2
    return c


def cheb_to_monomial(n):
    """T_k(y) = sum_i M[k][i] y^i for k < n (exact integers)."""
    rows = [[mp.mpf(1)] + [mp.mpf(0)] * (n - 1), [mp.mpf(0), mp.mpf(1)] + [mp.mpf(0)] * (n - 2)]
    for k in range(2, n):
        rows.append([2 * (rows[k - 1][i - 1] if i else 0) - rows[k - 2][i] for i in range(n)])
    return rows[:n]


def fit_piece(lo, hi, scale):
    centre, inv_half = piece_map(lo, hi, scale)
    m_u, m_s = NX + 5, NT + 4
    us = [mp.cos(mp.pi * (i + mp.mpf(1) / 2) / m_u) for i in range(m_u)]
    ss = [mp.cos(mp.pi * (i + mp.mpf(1) / 2) / m_s) for i in range(m_s)]
    vals0 = [[None] * m_s for _ in range(m_u)]
    vals1 = [[None] * m_s for _ in range(m_u)]
    for iu, u in enumerate(us):
        x = mp.exp(mp.mpf(centre) + u / mp.mpf(inv_half)) / scale
        for is_, s in enumerate(ss):
            mu = mp.sqrt((s + 1) / 8)
            vals0[iu][is_], vals1[iu][is_] = f_pair(mu, x)
    tu, ts = cheb_to_monomial(NX), cheb_to_monomial(NT)
    out = []
    for vals in (vals0, vals1):
        c = cheb_coeffs(vals, m_u, m_s)
        mono = [[sum(c[jj][kk] * ts[jj][j] * tu[kk][k] for jj in range(NT) for kk in range(NX))
                 for k in range(NX)] for j in range(NT)]
        rounded = [[float(mono[j][k]) for k in range(NX)] for j in range(NT)]
        # the constant term as hi + lo: its rounding alone is a bias of up to 0.5 ulp (6e-17)
        lo = float(mono[0][0] - mp.mpf(rounded[0][0]))
        out.append((rounded, lo))
    return centre, inv_half, out


def eval_poly(coef_lo, u, s):
    coef, lo = coef_lo
    acc = mp.mpf(0)
    for j in reversed(range(NT)):
        p = mp.mpf(0)
        for k in reversed(range(NX)):
            p = p * u + mp.mpf(coef[j][k])
        acc = acc * s + p
    return acc + lo


def check_piece(lo, hi, scale, centre, inv_half, coefs, rng):
    worst = 0.0
    for _ in range(CHECK):
        x = mp.mpf(rng.uniform(lo, hi))
        mu = mp.mpf(rng.uniform(-0.5, 0.5))
        u = (mp.log(x * scale) - mp.mpf(centre)) * mp.mpf(inv_half)
        s = 8 * mu * mu - 1
        ref_b = f_pair(mu, x)
        ref_i = f_pair_integral(mu, x)
        for g in range(2):
            agree = abs(ref_b[g] / ref_i[g] - 1)
            assert agree < mp.mpf(10) ** -30, (float(mu), float(x), g, float(agree))
            err = abs(eval_poly(coefs[g], u, s) / ref_i[g] - 1)
            worst = max(worst, float(err))
    assert worst < 8e-17, (lo, hi, worst)
    return worst


def main():
    rng = random.Random(20261205)
    fits = []
    for lo, hi, scale in PIECES:
        centre, inv_half, coefs = fit_piece(lo, hi, scale)
        worst = check_piece(lo, hi, scale, centre, inv_half, coefs, rng)
        print(f"piece [{lo}, {hi}]: max relative error {worst:.2e} at {CHECK} random points",
              file=sys.stderr)
        fits.append((lo, hi, scale, centre, inv_half, coefs, worst))
    p = print
    p("// Generated by tools/gen_k_mid.py; do not edit by hand.")
    p("// e^x K_mu(x) and -e^x K'_mu(x) for |mu| <= 1/2, 1 <= x <= 25, per piece of x:")
    p("//   sum_{j,k} kKMid[piece][f][j][k] s^j u^k + kKMidLo[piece][f],  s = 8 mu^2 - 1,")
    p("//   u = (log(x * kKMidScale[piece]) - kKMidCentre[piece]) * kKMidInvHalf[piece]")
    p("// (f = 0: e^x K_mu, f = 1: -e^x K'_mu).  Fitted to mpmath.besselk at 40 digits, checked against")
    p("// the K integrals: max relative error " + ", ".join(f"{w:.1e}" for *_, w in fits) + " per piece.")
    p("#pragma once\n")
    p('#include "numkern/config.hpp"\n')
    p("namespace nk { namespace bessel_detail {\n")
    p(f"constexpr int kKMidPieces = {len(PIECES)}, kKMidNx = {NX}, kKMidNt = {NT};")
    p(f"constexpr double kKMidSplit = {PIECES[0][1]!r};  // piece 1 for x > kKMidSplit")
    p("NK_TABLE double kKMidScale[" + str(len(PIECES)) + "] = {" + ", ".join(repr(f[2]) for f in fits) + "};")
    p("NK_TABLE double kKMidCentre[" + str(len(PIECES)) + "] = {" + ", ".join(repr(f[3]) for f in fits) + "};")
    p("NK_TABLE double kKMidInvHalf[" + str(len(PIECES)) + "] = {" + ", ".join(repr(f[4]) for f in fits) + "};")
    p("// the rounding remainders of kKMid[piece][f][0][0]")
    p(f"NK_TABLE double kKMidLo[{len(PIECES)}][2] = {{" + ", ".join(
        "{" + ", ".join(repr(c[1]) for c in f[5]) + "}" for f in fits) + "};")
    p(f"NK_TABLE double kKMid[{len(PIECES)}][2][{NT}][{NX}] = {{")
    for *_, coefs, _w in fits:
        p("  {")
        for g in range(2):
            p("    {")
            for j in range(NT):
                p("      {" + ", ".join(f"{c:.17e}" for c in coefs[g][0][j]) + "},")
            p("    },")
        p("  },")
    p("};\n")
    p("}}  // namespace nk::bessel_detail")


if __name__ == "__main__":
    main()
