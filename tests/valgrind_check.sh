#!/usr/bin/env bash
# valgrind memcheck over tests/valgrind_exercise.py (every family once, small inputs, no torch).
#
#   tests/valgrind_check.sh
#
# Counts only what is numkern's: a memory error (invalid read/write, use of uninitialised
# values, bad free...) or a *definite* leak whose stack has a frame in numkern's own extension
# modules (numkern/_core*.so, numkern/_cuda*.so).  CPython, numpy, scipy and OpenBLAS keep
# caches and interned objects alive until exit and have their own valgrind noise; rather than a
# suppression file that must track their versions, the check reads valgrind's XML report and
# filters by the object each stack frame belongs to, which needs no upkeep.  Exit status 0 only
# when both counts are 0.
#
# AVX-512: valgrind cannot execute it.  The default build (NUMKERN_NATIVE=ON) compiles with
# -march=native -mno-avx512f, so no AVX-512 outside the runtime-dispatched functions (OliVe's
# decoders / GEMVs, SplitQuant's dot products: target("avx512f") and target_clones); those pick
# their ISA from CPUID, and valgrind's emulated CPUID reports no AVX-512, so the AVX2 / portable
# versions run.  NUMKERN_ISA=avx2 is set as well.  If a valgrind build ever reports an
# unhandled instruction, build with NUMKERN_VALGRIND_NATIVE=OFF (-C cmake.define.NUMKERN_NATIVE=OFF).
#
# Environment: NUMKERN_VALGRIND_VENV (default .venv-valgrind), NUMKERN_VALGRIND_KEEP=1 reuses the
# venv's numpy/scipy, NUMKERN_VALGRIND_NATIVE (ON|OFF, default ON),
# NUMKERN_VALGRIND_XML (report path, default a temp file).
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${NUMKERN_VALGRIND_VENV:-$(pwd)/.venv-valgrind}
native=${NUMKERN_VALGRIND_NATIVE:-ON}
xml=${NUMKERN_VALGRIND_XML:-$(mktemp -t numkern-valgrind.XXXXXX.xml)}
command -v valgrind >/dev/null || { echo "valgrind_check.sh: valgrind not installed (apt-get install valgrind)" >&2; exit 2; }

if [[ ${NUMKERN_VALGRIND_KEEP:-0} != 1 || ! -x $venv/bin/python ]]; then
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install -q scikit-build-core pybind11 numpy scipy
fi
py=$venv/bin/python
# CPU module with debug info (stack frames name numkern's functions); a build dir of its own.
NUMKERN_CUDA=OFF "$py" -m pip install -q --no-build-isolation --no-deps --force-reinstall \
  -C cmake.define.NUMKERN_CUDA=OFF -C cmake.define.NUMKERN_NATIVE="$native" \
  -C cmake.build-type=RelWithDebInfo -C build-dir="$([[ $native == ON ]] && echo build/valgrind || echo build/valgrind-nonative)" .

start=$(date +%s)
# PYTHONMALLOC=malloc: pymalloc's arenas look like invalid reads to memcheck and hide
# allocations from it.  Run outside the source tree so `import numkern` is the installed one.
(cd /tmp && PYTHONMALLOC=malloc NUMKERN_ISA=avx2 OMP_WAIT_POLICY=passive \
  valgrind --tool=memcheck --leak-check=full --show-leak-kinds=definite \
    --errors-for-leak-kinds=definite --num-callers=40 --xml=yes --xml-file="$xml" \
    "$py" "$OLDPWD/tests/valgrind_exercise.py")
echo "valgrind run: $(( $(date +%s) - start )) s, report $xml"

"$py" - "$xml" <<'EOF'
import re
import sys
import xml.etree.ElementTree as ET

root = ET.parse(sys.argv[1]).getroot()
ours = re.compile(r"/numkern/_(core|cuda)[^/]*\.so$")
mine, other = [], {}
for err in root.iter("error"):
    kind = err.findtext("kind")
    frames = err.findall("./stack/frame")
    if any(ours.search(f.findtext("obj") or "") for f in frames):
        mine.append(err)
    else:
        other[kind] = other.get(kind, 0) + 1
leaks = [e for e in mine if e.findtext("kind") == "Leak_DefinitelyLost"]
errors = [e for e in mine if not e.findtext("kind").startswith("Leak_")]
for e in mine:
    what = e.find("xwhat")
    text = what.findtext("text") if what is not None else e.findtext("what")
    print(f"numkern: {e.findtext('kind')}: {text}")
    for f in e.findall("./stack/frame")[:12]:
        print(f"    {f.findtext('fn') or '?'} ({f.findtext('file') or f.findtext('obj')}:{f.findtext('line') or ''})")
print(f"valgrind: errors in numkern frames: {len(errors)}, definite leaks in numkern frames: "
      f"{len(leaks)}; outside numkern (not counted): {dict(sorted(other.items())) or 'none'}")
sys.exit(1 if mine else 0)
EOF
