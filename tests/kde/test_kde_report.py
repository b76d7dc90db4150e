"""The `python -m numkern` kde section (issue #17: its results must not depend on whether the
optional sklearn comparison ran)."""
import io
import re
import sys

import pytest

from numkern.kde import _report


def _section(block_sklearn):
    saved = sys.modules.get("sklearn.neighbors", "absent")
    if block_sklearn:
        sys.modules["sklearn.neighbors"] = None  # import raises ImportError
    try:
        out = io.StringIO()
        _report.report(out)
    finally:
        if block_sklearn:
            if saved == "absent":
                del sys.modules["sklearn.neighbors"]
            else:
                sys.modules["sklearn.neighbors"] = saved
    lines = [ln for ln in out.getvalue().splitlines() if "sklearn" not in ln]
    return [re.sub(r"\d+\.\d+ s\)", "T s)", ln) for ln in lines]  # wall times vary


def test_report_independent_of_sklearn():
    pytest.importorskip("sklearn.neighbors")
    assert _section(block_sklearn=False) == _section(block_sklearn=True)
