#!/usr/bin/env bash
# Build numkern's native fuzz targets (OliVe codes, SplitQuant fused format + 1-D k-means) with
# AddressSanitizer + UndefinedBehaviorSanitizer and run each for a bounded time.
#
#   tests/fuzz/run_fuzz.sh [seconds-per-target]      (default 60)
#
# Engine (NUMKERN_FUZZ_ENGINE): "standalone" (default; g++ or clang++ with the driver in
# standalone_main.cpp: random + mutated inputs, no coverage feedback) or "libfuzzer" (clang++
# -fsanitize=fuzzer, coverage-guided; needs clang with compiler-rt and libomp:
# NUMKERN_FUZZ_INSTALL_CLANG=1 apt-get installs them first on Debian 12).  Both run the corpus under
# tests/fuzz/corpus/<target> (regression inputs) before anything new.
# Other knobs: NUMKERN_FUZZ_BUILD (build dir, default build/fuzz), NUMKERN_FUZZ_SEED, CXX.
# Exit status: non-zero on any sanitizer report or failed decoder property; the input that
# did it is saved as <build>/artifacts/<target>/crash-*.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
seconds=${1:-60}
engine=${NUMKERN_FUZZ_ENGINE:-standalone}
build=${NUMKERN_FUZZ_BUILD:-$root/build/fuzz}
seed=${NUMKERN_FUZZ_SEED:-$(date +%s)}
mkdir -p "$build"

if [[ $engine == libfuzzer ]]; then
  if ! command -v clang++ >/dev/null && [[ ${NUMKERN_FUZZ_INSTALL_CLANG:-0} == 1 ]]; then
    # (Debian 12 names: libFuzzer and the sanitizer runtimes, libomp for -fopenmp)
    apt-get install -y -q --no-install-recommends clang libclang-rt-dev libomp-dev >/dev/null
  fi
  cxx=${CXX:-clang++}
else
  cxx=${CXX:-g++}
fi
command -v "$cxx" >/dev/null || { echo "run_fuzz.sh: no $cxx" >&2; exit 2; }

# The flags of the NUMKERN_SANITIZE build (CMakeLists.txt), plus the extension's own semantics.
flags=(-std=c++17 -O1 -g -fno-omit-frame-pointer -fno-math-errno -ffp-contract=off
       -fsanitize=address,undefined,float-cast-overflow -fno-sanitize-recover=all
       -fopenmp -DNK_HAVE_OPENMP=1 -I"$root/csrc/include" -I"$root/csrc" -I"$here")
if echo 'int main(){}' | "$cxx" -march=native -mno-avx512f -x c++ - -o /dev/null 2>/dev/null; then
  flags+=(-march=native -mno-avx512f)  # as NUMKERN_NATIVE=ON; AVX-512 clones are still built
fi
if [[ $engine == libfuzzer ]]; then
  flags+=(-fsanitize=fuzzer)
  driver=()
else
  driver=("$here/standalone_main.cpp")
fi

declare -A sources=(
  [olive]="$root/csrc/cpu/olive/olive.cpp $root/csrc/cpu/common/dispatch.cpp $root/csrc/cpu/common/threads.cpp"
  [splitquant]="$root/csrc/cpu/splitquant/splitquant.cpp $root/csrc/cpu/common/dispatch.cpp $root/csrc/cpu/common/threads.cpp $root/csrc/cpu/common/amx.cpp"
)

export ASAN_OPTIONS=${ASAN_OPTIONS:-halt_on_error=1:abort_on_error=1:detect_leaks=1:detect_stack_use_after_return=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:abort_on_error=1:print_stacktrace=1}

run_target() {  # name, label, extra env...
  local name=$1 label=$2
  shift 2
  local bin=$build/fuzz_$name-$engine art=$build/artifacts/$name/
  mkdir -p "$art" "$here/corpus/$name"
  echo "== $label: $seconds s"
  if [[ $engine == libfuzzer ]]; then
    # new interesting inputs go to a scratch dir; the committed corpus stays small
    mkdir -p "$build/corpus-$name"
    env "$@" "$bin" -max_total_time="$seconds" -seed="$seed" -artifact_prefix="$art" \
      -print_final_stats=1 "$build/corpus-$name" "$here/corpus/$name" 2>&1 | tail -n 15
    return "${PIPESTATUS[0]}"
  fi
  env "$@" "$bin" -seconds="$seconds" -seed="$seed" -artifact_prefix="$art" "$here/corpus/$name"
}

for name in olive splitquant; do
  # shellcheck disable=SC2086
  "$cxx" "${flags[@]}" "$here/fuzz_$name.cpp" "${driver[@]}" ${sources[$name]} -o "$build/fuzz_$name-$engine"
done

status=0
is_clang=$("$cxx" -dM -E -x c++ /dev/null | grep -c __clang__ || true)
if [[ $is_clang == 0 ]] && grep -qw avx512f /proc/cpuinfo 2>/dev/null; then
  # the OliVe decoders / GEMVs have AVX-512, AVX2 and portable paths (GCC builds; clang builds
  # compile the portable ones only): give each a third of the time
  third=$(( (seconds + 2) / 3 ))
  seconds=$third run_target olive "olive (AVX-512 kernels)" NUMKERN_FUZZ_DUMMY=1 || status=1
  seconds=$third run_target olive "olive (AVX2 kernels)" NUMKERN_ISA=avx2 || status=1
  seconds=$third run_target olive "olive (portable kernels)" NUMKERN_ISA=portable || status=1
else
  run_target olive "olive" NUMKERN_FUZZ_DUMMY=1 || status=1
fi
run_target splitquant "splitquant" NUMKERN_FUZZ_DUMMY=1 || status=1
[[ $status -eq 0 ]] && echo "run_fuzz.sh: no sanitizer report, no failed property (seed $seed)"
exit $status
