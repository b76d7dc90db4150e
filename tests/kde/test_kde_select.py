"""select_bandwidth: two passes (grid + refinement), accuracy of the refinement, progress bar (#17)."""
import sys

import numpy as np
import pytest

import numkern.kde as nkde
from numkern.kde import select_bandwidth


@pytest.mark.parametrize("seed,n,d", [(1, 400, 2), (2, 300, 16), (3, 600, 64)])
def test_refinement_matches_a_fine_grid(seed, n, d):
    Y = np.random.default_rng(seed).standard_normal((n, d))
    sel = select_bandwidth(Y, progress=False)
    assert sel.n_passes == 2
    fine = np.geomspace(sel.bandwidth * 0.99, sel.bandwidth * 1.01, 401)   # spacing 5e-5
    brute = select_bandwidth(Y, fine, refine=False)
    assert abs(sel.bandwidth / brute.bandwidth - 1) < 1e-4
    assert abs(sel.best_loglik - brute.best_loglik) <= 1e-6 * abs(brute.best_loglik)


def test_progress_bar_optional(capsys, monkeypatch):
    Y = np.random.default_rng(4).standard_normal((600, 3))
    pytest.importorskip("tqdm")
    select_bandwidth(Y, [0.2, 0.5], progress=True)
    assert "select_bandwidth" in capsys.readouterr().err
    select_bandwidth(Y, [0.2, 0.5])                    # auto: far below a few seconds, no bar
    assert "select_bandwidth" not in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)  # not installed: silently no bar
    sel = select_bandwidth(Y, [0.2, 0.5], progress=True)
    assert "select_bandwidth" not in capsys.readouterr().err and sel.n_passes == 2


def test_progress_auto_threshold():
    assert nkde._selection_seconds(20_000, 256, 25) > nkde._PROGRESS_SECONDS   # the 774 s report
    assert nkde._selection_seconds(2_000, 16, 25) < nkde._PROGRESS_SECONDS
