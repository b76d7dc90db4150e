"""log_normalizer's documented error bound at its hard points (issue #20.4): near the zero of log C_d
the relative error is conditioning-limited; the bound is |error| <= 4 eps (|log C_d| + kappa A_d(kappa))."""
import mpmath as mp
import numpy as np
import pytest
from scipy.optimize import brentq

from numkern import vmf

EPS = np.finfo(np.float64).eps


def _ref(d, kappa):
    with mp.workdps(40):
        nu, k = mp.mpf(d) / 2 - 1, mp.mpf(kappa)
        logc = nu * mp.log(k) - mp.mpf(d) / 2 * mp.log(2 * mp.pi) - mp.log(mp.besseli(nu, k, maxterms=10**6))
        a = mp.besseli(nu + 1, k, maxterms=10**6) / mp.besseli(nu, k, maxterms=10**6)
        return float(logc), float(a)


@pytest.mark.parametrize("d", [64, 384, 4096])
def test_log_normalizer_bound_near_its_zero(d):
    k0 = brentq(lambda k: float(vmf.log_normalizer(d, k)), 1e-3, 1e9, xtol=1e-14)
    worst = 0.0
    for k in (k0, k0 * (1 + 1e-6), k0 * 2.0, k0 * 0.5):
        ref, a = _ref(d, k)
        err = abs(float(vmf.log_normalizer(d, k)) - ref)
        bound = 4 * EPS * (abs(ref) + k * a)
        assert err <= bound, (d, k, err, bound)
        worst = max(worst, err / max(1.0, abs(ref)))
    if d == 384:
        # the old claim "1e-15 relative" does not hold here: the value is ~0 while kappa A ~ 900
        assert worst > 1e-15
