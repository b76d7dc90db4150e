"""The coefficients of log_branchfree's polynomial (csrc/include/numkern/common/branchfree_math.hpp).

log_branchfree reduces a = 2^k m, m in [sqrt(1/2), sqrt(2)), f = m - 1, s = f / (2 + f), z = s^2 and
uses log(1 + f) = 2 atanh(s) = f - f^2/2 + s (f^2/2 + R(z)) with
    R(z) = 2 atanh(sqrt z) / sqrt z - 2 = sum_{j>=1} 2 z^j / (2j + 1),   0 <= z <= (3 - 2 sqrt 2)^2.
Its error in R adds s * dR to log(1 + f) ~ 2 s: a relative error of dR / 2, so R is fitted for the
least largest absolute error: z P(z), P of degree TERMS - 1, by Remez exchange (mpmath, 60 digits)
on [0, 1.0001 zmax].  Seven terms level at 2.5e-18 (3.8e-18 with the coefficients rounded to
doubles: below 0.02 ulp of the log); six would leave 3.8e-16, ten Taylor terms 1.3e-18.
The fit is checked a second way: its error on a dense grid against R from mpmath's atanh, and the
sum of the Taylor series of R.

Run:  python tools/gen_log_poly.py   (prints the constants to paste into the header)
"""
import mpmath as mp

TERMS = 7
mp.mp.dps = 60
ZMAX = ((mp.sqrt(2) - 1) / (mp.sqrt(2) + 1)) ** 2 * mp.mpf("1.0001")


def r_exact(z):
    s = mp.sqrt(z)
    return 2 * mp.atanh(s) / s - 2


def r_series(z):  # the second method: sum_{j>=1} 2 z^j / (2j + 1) to 60 digits
    return mp.nsum(lambda j: 2 * z**j / (2 * j + 1), [1, mp.inf])


def poly(c, z):
    return sum(cj * z ** (j + 1) for j, cj in enumerate(c))


def remez(n):
    pts = [ZMAX * (1 - mp.cos(mp.pi * (i + 1) / (n + 1))) / 2 for i in range(n + 1)]
    grid = [ZMAX * mp.mpf(k) / 4000 for k in range(1, 4001)]
    for _ in range(40):
        a = mp.matrix(n + 1, n + 1)
        b = mp.matrix(n + 1, 1)
        for i, z in enumerate(pts):
            for j in range(n):
                a[i, j] = z ** (j + 1)
            a[i, n] = (-1) ** i
            b[i] = r_exact(z)
        sol = mp.lu_solve(a, b)
        c, level = [sol[j] for j in range(n)], abs(sol[n])
        err = [r_exact(z) - poly(c, z) for z in grid]
        # the local extrema of the error, one a run of one sign, the n + 1 largest alternating
        ext = [k for k in range(len(grid))
               if abs(err[k]) >= abs(err[k - 1] if k else 0) and abs(err[k]) >= abs(err[k + 1] if k + 1 < len(grid) else 0)]
        alt = []
        for k in ext:
            if alt and mp.sign(err[k]) == mp.sign(err[alt[-1]]):
                if abs(err[k]) > abs(err[alt[-1]]):
                    alt[-1] = k
            else:
                alt.append(k)
        while len(alt) > n + 1:
            alt.pop(0 if abs(err[alt[0]]) < abs(err[alt[-1]]) else -1)
        pts = [grid[k] for k in alt]
        worst = max(abs(e) for e in err)
        if worst - level < level * mp.mpf("1e-6"):
            return c, level
    raise RuntimeError("Remez did not level")


def main():
    c, level = remez(TERMS)
    rounded = [mp.mpf(float(cj)) for cj in c]
    grid = [ZMAX * mp.mpf(k) / 20000 for k in range(1, 20001)]
    worst = max(abs(r_exact(z) - poly(rounded, z)) for z in grid)
    # second method for R at a few points of the interval
    for z in (ZMAX / 7, ZMAX / 2, ZMAX):
        assert abs(r_exact(z) - r_series(z)) < mp.mpf(10) ** -50
    assert worst < mp.mpf("5e-18"), worst
    print(f"// R(z) ~ z (kLogP1 + kLogP2 z + ... + kLogP{TERMS} z^{TERMS - 1}) (tools/gen_log_poly.py): "
          f"levelled error {mp.nstr(level, 3)}, {mp.nstr(worst, 3)} with these doubles")
    for j, cj in enumerate(rounded):
        print(f"constexpr double kLogP{j + 1} = {float(cj)!r};")

if __name__ == "__main__":
    main()
