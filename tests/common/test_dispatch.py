"""The one CPU ISA dispatcher (csrc/cpu/common/dispatch.cpp): detection once, NUMKERN_ISA, set_isa."""
import os
import subprocess
import sys

import pytest

from numkern import _core

TIERS = ("portable", "avx2", "avx512")


@pytest.fixture
def restore_isa():
    yield
    _core.set_isa("auto")


def test_tiers_are_ordered_and_best_is_supported():
    best = _core.best_isa()
    assert best in TIERS
    for t in TIERS:
        assert _core.isa_supported(t) == (TIERS.index(t) <= TIERS.index(best))
    assert _core.isa_supported("portable")


def test_set_isa_round_trip(restore_isa):
    for t in TIERS:
        if _core.isa_supported(t):
            _core.set_isa(t)
            assert _core.isa() == t
    _core.set_isa("auto")
    assert _core.isa() in TIERS


def test_set_isa_errors_name_the_argument(restore_isa):
    with pytest.raises(ValueError, match="isa: expected"):
        _core.set_isa("sse9")
    with pytest.raises(ValueError, match="isa: expected"):
        _core.isa_supported("neon")
    unsupported = [t for t in TIERS if not _core.isa_supported(t)]
    for t in unsupported:
        with pytest.raises(ValueError, match="not supported by this CPU"):
            _core.set_isa(t)


@pytest.mark.parametrize("env, expect", [("portable", "portable"), ("bogus", None)])
def test_environment_override(env, expect):
    code = "from numkern import _core; print(_core.isa(), _core.best_isa())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env=dict(os.environ, NUMKERN_ISA=env))
    assert out.returncode == 0, out.stderr
    isa, best = out.stdout.split()
    # an unknown name is ignored: the widest tier the CPU has
    assert isa == (expect if expect is not None else best)
