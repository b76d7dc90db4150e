"""CPU thread control: numkern.set_num_threads / get_num_threads / NUMKERN_NUM_THREADS.

Results must not depend on the thread count (each element is computed independently, so they
are bitwise identical) and calls from several Python threads at once (the GIL is released in
the kernels) must give the serial results.
"""
from __future__ import annotations

import io
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import numkern
from numkern import special as nks


def _child_threads(env_value):
    env = dict(os.environ)
    env.pop("OMP_NUM_THREADS", None)
    if env_value is None:
        env.pop("NUMKERN_NUM_THREADS", None)
    else:
        env["NUMKERN_NUM_THREADS"] = env_value
    code = ("import io, numkern; "
            "print(numkern.get_num_threads(), numkern.show_config(file=io.StringIO())['num_threads'])")
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    a, b = proc.stdout.split()
    assert a == b
    return int(a)


def test_env_var_sets_thread_count():
    assert _child_threads("3") == 3
    assert _child_threads("1") == 1
    assert _child_threads("7") == 7  # more than the cores is allowed (the user asked for it)


def test_env_var_invalid_falls_back_to_default():
    default = _child_threads(None)
    assert default >= 1
    assert default == numkern.show_config(file=io.StringIO())["max_threads"]
    assert _child_threads("0") == default
    assert _child_threads("-2") == default
    assert _child_threads("abc") == default
    assert _child_threads("9999999999") == default  # (beyond an int: ignored, not wrapped around)
    assert _child_threads("4294967297") == default


def test_set_get_roundtrip(restore_threads):
    numkern.set_num_threads(1)
    assert numkern.get_num_threads() == 1
    numkern.set_num_threads(3)
    assert numkern.get_num_threads() == 3
    assert numkern.show_config(file=io.StringIO())["num_threads"] == 3


def test_set_num_threads_bad_values(restore_threads):
    before = numkern.get_num_threads()
    with pytest.raises(ValueError):
        numkern.set_num_threads(0)
    with pytest.raises(ValueError):
        numkern.set_num_threads(-1)
    for bad in ("2", 2.0, None, True, [2]):
        with pytest.raises(TypeError):
            numkern.set_num_threads(bad)
    assert numkern.get_num_threads() == before


def test_set_num_threads_accepts_numpy_int(restore_threads):
    # np.int64 is not a Python int; either accepted (as the value) or a TypeError, never silent junk
    try:
        numkern.set_num_threads(np.int64(2))
    except TypeError:
        return
    assert numkern.get_num_threads() == 2


def _big_inputs():
    rng = np.random.default_rng(123)
    n = 100_000
    v = rng.uniform(0.0, 60.0, n)
    x = np.exp(rng.uniform(-8.0, 8.0, n))
    return v, x


@pytest.mark.parametrize("name", ["log_iv", "log_kv", "iv_ratio_c"])
def test_results_bitwise_identical_for_1_and_2_threads(restore_threads, name):
    v, x = _big_inputs()
    if name == "iv_ratio_c":
        v = v + 0.5
    f = getattr(nks, name)
    numkern.set_num_threads(1)
    r1 = f(v, x)
    numkern.set_num_threads(2)
    r2 = f(v, x)
    # also a strided 2-D layout, which splits chunks across rows
    r2t = f(v.reshape(400, 250).T, x.reshape(400, 250).T)
    np.testing.assert_array_equal(r1.view(np.uint64), r2.view(np.uint64))
    np.testing.assert_array_equal(r2t.T.ravel(), r1)
    assert np.isfinite(r1).all()


def test_concurrent_python_threads_match_serial(restore_threads):
    numkern.set_num_threads(2)
    v, x = _big_inputs()
    jobs = [("log_iv", v, x), ("log_kv", v, x), ("iv_ratio", v + 0.5, x), ("kve", v, x)] * 2
    serial = [getattr(nks, n)(a, b) for n, a, b in jobs]
    with ThreadPoolExecutor(max_workers=4) as ex:
        futures = [ex.submit(getattr(nks, n), a, b) for n, a, b in jobs]
        parallel = [f.result() for f in futures]
    for s, p in zip(serial, parallel):
        np.testing.assert_array_equal(s, p)


def test_concurrent_out_arrays_do_not_interfere(restore_threads):
    v, x = _big_inputs()
    outs = [np.empty_like(x) for _ in range(4)]
    orders = [0.5, 3.0, 40.0, 900.0]
    with ThreadPoolExecutor(max_workers=4) as ex:
        list(ex.map(lambda i: nks.log_kv(orders[i], x, out=outs[i]), range(4)))
    for o, order in zip(outs, orders):
        np.testing.assert_array_equal(o, nks.log_kv(order, x))


_FORK_SCRIPT = r"""
import os, sys
import numpy as np
import numkern
from numkern import special as nks
numkern.set_num_threads(2)
rng = np.random.default_rng(0)
v, x = rng.uniform(0, 50, 400_000), rng.uniform(0.1, 80, 400_000)
parent = nks.log_iv(v, x)  # a parallel region on two threads: the OpenMP pool exists now
pid = os.fork()
if pid == 0:
    ok = numkern.get_num_threads() == 1 and np.array_equal(nks.log_iv(v, x), parent)
    numkern.set_num_threads(2)  # still one thread in this child: no hang
    ok = ok and np.array_equal(nks.log_iv(v, x), parent)
    os._exit(0 if ok else 3)
_, status = os.waitpid(pid, 0)
print("child", os.waitstatus_to_exitcode(status), "parent threads", numkern.get_num_threads())
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_fork_after_threaded_kernels_does_not_hang():
    """A fork()ed child of a process whose kernels ran on two threads (GNU OpenMP's pool does not
    survive fork) runs its kernels on one thread, with the same results, instead of waiting
    forever in its first parallel region; the parent keeps its threads."""
    out = subprocess.run([sys.executable, "-c", _FORK_SCRIPT], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["child", "0", "parent", "threads", "2"], out.stdout


@pytest.mark.parametrize("name,value,says", [
    ("NUMKERN_NUM_THREADS", "abc", "ignored (every core"),
    ("NUMKERN_NUM_THREADS", "0", "ignored (every core"),
    ("NUMKERN_NUM_THREADS", "4abc", "read as 4"),
    ("NUMKERN_NUM_THREADS", "9999999999", "ignored (every core"),
    ("NUMKERN_SPLITQUANT_INDEX", "off", "read as 1"),
    ("NUMKERN_ISA", "avx-512", "is not one of portable, avx2, avx512: ignored"),
    ("NUMKERN_AMX", "off", "read as 1"),
    ("NUMKERN_NUM_THREADS", "3", None),
    ("NUMKERN_ISA", "portable", None),
    ("NUMKERN_AMX", "0", None),
])
def test_environment_values_not_understood_are_warned_about(name, value, says):
    """A typo in a numkern environment variable is not silent: a RuntimeWarning at import names
    the variable and says what is used instead (tests above: what is used)."""
    env = dict(os.environ, **{name: value})
    proc = subprocess.run([sys.executable, "-W", "always", "-c", "import numkern"], env=env, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    if says is None:
        assert "RuntimeWarning" not in proc.stderr
    else:
        assert f"RuntimeWarning: {name}={value!r}" in proc.stderr and says in proc.stderr
