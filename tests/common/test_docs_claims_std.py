"""Claims of docs/special.md, docs/distributed.md and docs/reliability.md that were found inexact
in a docs audit, pinned to what is true (the docs were corrected to say this)."""

import re
from pathlib import Path

import numpy as np
import pytest

import numkern.special as sp

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("n", [2**1024 - 2**970, -(2**1024 - 2**970), 2**1024, 10**400])
def test_huge_int_error_states_the_bound_it_enforces(n):
    """docs/special.md: ints with |n| >= 2^1024 - 2^970 (float(n) raises OverflowError) are a
    ValueError naming the argument.  The message used to state |x| >= 2**1024, which
    2**1024 - 2**970 is not."""
    with pytest.raises(OverflowError):
        float(n)
    with pytest.raises(ValueError, match=r"^x: integer too large to convert to float64") as e:
        sp.i0(n)
    bound = re.search(r"\|x\| >= ([0-9*+ -]+?),", str(e.value))
    assert bound is not None, str(e.value)
    assert abs(n) >= eval(bound.group(1))  # the stated bound holds for the rejected argument


def test_largest_convertible_int_is_accepted():
    n = 2**1024 - 2**971  # float(n) = DBL_MAX
    assert float(n) == np.finfo(np.float64).max
    assert sp.i0(n) == np.inf


def test_dask_duplicates_refused_only_for_loo_bandwidth_selection():
    """docs/distributed.md: exact duplicate rows are refused for select_bandwidth / bandwidth="loo"
    on dask data; loo_logpdf itself accepts them and equals the in-memory result."""
    da = pytest.importorskip("dask.array")
    from numkern.kde import GaussianKDE, select_bandwidth

    Y = np.random.default_rng(0).normal(size=(60, 2))
    Y[25] = Y[5]
    Yd = da.from_array(Y, chunks=20)
    np.testing.assert_allclose(GaussianKDE(Yd).loo_logpdf().compute(), GaussianKDE(Y).loo_logpdf(),
                               rtol=1e-12)
    with pytest.raises(ValueError, match="^data: 1 of 60 rows repeat other rows"):
        GaussianKDE(Yd, bandwidth="loo")
    with pytest.raises(ValueError, match="^data: 1 of 60 rows repeat other rows"):
        select_bandwidth(Yd)


def test_valgrind_script_builds_native_by_default_while_the_package_does_not():
    """docs/reliability.md: the package's default is NUMKERN_NATIVE=OFF (CMakeLists.txt); the
    valgrind script's own build defaults to NUMKERN_NATIVE=ON (NUMKERN_VALGRIND_NATIVE)."""
    cmake = (ROOT / "CMakeLists.txt").read_text()
    assert re.search(r'option\(NUMKERN_NATIVE "[^"]*" OFF\)', cmake)
    script = (ROOT / "tests" / "valgrind_check.sh").read_text()
    assert "native=${NUMKERN_VALGRIND_NATIVE:-ON}" in script
    assert '-C cmake.define.NUMKERN_NATIVE="$native"' in script
    doc = (ROOT / "docs" / "reliability.md").read_text()
    assert "The default build (`NUMKERN_NATIVE=ON`)" not in doc


def test_paths_named_by_the_docs_exist():
    for rel in ["csrc/include/numkern/olive/olive.hpp", "tests/fuzz/standalone_main.cpp",
                "tests/special/data/make_reference.py", "bench/distributed/bench_out_of_core.py",
                "bench/quant/bench_quant_speed.py", "tools/run_doc_examples.py", ".ci/run"]:
        assert (ROOT / rel).exists(), rel
    doc = (ROOT / "docs" / "reliability.md").read_text()
    assert "`numkern/olive.hpp`" not in doc


def test_no_target_clones_left_in_the_cpu_kernels():
    """docs/reliability.md said SplitQuant's dot products use `target_clones`; every SIMD kernel goes
    through the one dispatcher instead."""
    hits = [p for p in (ROOT / "csrc").rglob("*") if p.is_file() and "target_clones" in p.read_text(errors="ignore")]
    assert hits == []
    doc = (ROOT / "docs" / "reliability.md").read_text()
    assert "still use `target_clones`" not in doc
