"""Build and packaging properties (docs/wheels.md):
- the default build is portable: it imports and gives the native numbers on an emulated older
  x86-64 CPU (qemu-user, tools/emulated_cpu_smoke.py; skipped where qemu-x86_64 is absent);
- a build without OpenMP compiles (configure + the objects that use OpenMP; slow);
- the version has one source (python/numkern/_version.py)."""
import os
import platform
import re
import shutil
import subprocess
import sys

import pytest

import numkern

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SMOKE = os.path.join(ROOT, "tools", "emulated_cpu_smoke.py")
# The tests run from an installed wheel too (only tests/ copied: docs/wheels.md); these need the checkout.
needs_source = pytest.mark.skipif(not os.path.isfile(os.path.join(ROOT, "CMakeLists.txt")),
                                  reason="needs the source tree (CMakeLists.txt, tools/, python/): "
                                         "tests run from an installed wheel")


def test_default_build_is_portable():
    cfg = numkern.show_config(file=open(os.devnull, "w"))
    if cfg["march_native"]:
        pytest.skip("built with NUMKERN_NATIVE=ON (not portable by request)")
    if platform.machine() in ("x86_64", "AMD64"):
        assert cfg["cpu_baseline"] == "x86-64-v2"
    assert cfg["isa"] in ("portable", "avx2", "avx512")


@needs_source
@pytest.mark.skipif(shutil.which("qemu-x86_64") is None or platform.machine() != "x86_64",
                    reason="qemu-x86_64 not installed (Debian: apt-get install qemu-user) or not x86-64")
def test_emulated_x86_64_v2_cpu_runs_and_matches():
    """Nehalem (x86-64-v2, no AVX): import without SIGILL, the portable tier, the native numbers."""
    if numkern.show_config(file=open(os.devnull, "w"))["march_native"]:
        pytest.skip("NUMKERN_NATIVE=ON builds are not meant to run on other CPUs")
    p = subprocess.run([sys.executable, SMOKE, "--cpus", "Nehalem"], capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "Nehalem: isa=portable" in p.stdout and "same numbers" in p.stdout, p.stdout


@needs_source
def test_smoke_compare_detects_a_difference():
    """The smoke script's comparison fails on a wrong value (so the test above can fail)."""
    sys.path.insert(0, os.path.dirname(SMOKE))
    try:
        import emulated_cpu_smoke as smoke
    finally:
        sys.path.pop(0)
    ref = {"isa": "avx512", "special.log_iv": [1.0, 2.0], "olive.matmul": [10.0, 0.001]}
    assert smoke.compare(ref, dict(ref)) == []
    assert smoke.compare(ref, {**ref, "special.log_iv": [1.0, 2.0 * (1 + 1e-8)]})
    assert smoke.compare(ref, {**ref, "olive.matmul": [10.0, 0.0011]}) == []  # normwise float32
    assert smoke.compare(ref, {**ref, "special.log_iv": [1.0, float("nan")]})


@needs_source
def test_version_has_one_source():
    with open(os.path.join(ROOT, "python", "numkern", "_version.py")) as f:
        m = re.search(r'__version__ = "([^"]+)"', f.read())
    assert m and numkern.__version__ == m.group(1)
    with open(os.path.join(ROOT, "pyproject.toml")) as f:
        text = f.read()
    assert 'dynamic = ["version"]' in text and not re.search(r'^version\s*=', text, re.M)


@needs_source
@pytest.mark.slow
@pytest.mark.skipif(shutil.which("ninja") is None and not os.environ.get("NUMKERN_TEST_BUILD"),
                    reason="needs cmake and ninja")
def test_build_without_openmp_compiles(tmp_path):
    """CMake with OpenMP hidden: NK_HAVE_OPENMP=0; threads.cpp and an OpenMP-parallel family
    compile (the full module builds too: docs/wheels.md, 'Without OpenMP')."""
    pybind11 = pytest.importorskip("pybind11")
    cmake = shutil.which("cmake")
    if cmake is None:
        pytest.skip("cmake not found")
    build = tmp_path / "noomp"
    cfg = subprocess.run([cmake, "-S", ROOT, "-B", str(build), "-G", "Ninja", "-DNUMKERN_CUDA=OFF",
                          "-DCMAKE_BUILD_TYPE=Release", "-DCMAKE_DISABLE_FIND_PACKAGE_OpenMP=ON",
                          f"-Dpybind11_DIR={pybind11.get_cmake_dir()}", f"-DPython_EXECUTABLE={sys.executable}"],
                         capture_output=True, text=True, timeout=300)
    assert cfg.returncode == 0, cfg.stdout + cfg.stderr
    assert "OpenMP not found, the CPU kernels run single-threaded" in cfg.stdout
    objs = ["CMakeFiles/_core.dir/csrc/cpu/common/threads.cpp.o", "CMakeFiles/_core.dir/csrc/cpu/vmf/vmf.cpp.o"]
    b = subprocess.run([cmake, "--build", str(build), "--target", *objs], capture_output=True, text=True, timeout=600)
    assert b.returncode == 0, b.stdout[-3000:] + b.stderr[-3000:]


# ---- an installed release wheel needs no newer system library versions than its tag ------------

def _elf_sections(path):
    """(file bytes, section headers as Elf64_Shdr tuples) of an ELF64 little-endian file."""
    import struct
    with open(path, "rb") as f:
        data = f.read()
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        raise ValueError(f"{path}: not an ELF64 little-endian file")
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum = struct.unpack_from("<HH", data, 0x3A)
    return data, [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize) for i in range(shnum)]


def elf_version_needs(path):
    """{needed library: {symbol version names}} from an ELF64 little-endian file's .gnu.version_r
    (what `objdump -p` lists under 'Version References')."""
    import struct
    data, sections = _elf_sections(path)
    out = {}
    for _, sh_type, _, _, offset, _, link, info, _, _ in sections:
        if sh_type != 0x6FFFFFFE:  # SHT_GNU_verneed
            continue
        strtab = sections[link][4]

        def string(off):
            start = strtab + off
            return data[start:data.index(b"\0", start)].decode()
        pos = offset
        for _ in range(info):  # Elf64_Verneed entries
            _, cnt, file_off, aux, nxt = struct.unpack_from("<HHIII", data, pos)
            names, apos = out.setdefault(string(file_off), set()), pos + aux
            for _ in range(cnt):  # Elf64_Vernaux entries
                _, _, _, name_off, anext = struct.unpack_from("<IHHII", data, apos)
                names.add(string(name_off))
                apos += anext
            pos += nxt
    return out


def _version_tuple(name):
    return tuple(int(x) for x in re.findall(r"\d+", name.split("_", 1)[1]))


def test_elf_version_needs_reads_the_module():
    """The reader above finds the module's glibc needs (so the wheel test below cannot pass empty)."""
    needs = elf_version_needs(numkern._core.__file__)
    libc = needs.get("libc.so.6", set())
    assert "GLIBC_2.2.5" in libc, needs
    assert _version_tuple("GLIBC_2.2.5") == (2, 2, 5) and _version_tuple("GLIBCXX_3.4.29") > (3, 4, 24)


def test_wheel_needs_no_newer_glibc_than_its_tag():
    """Installed from a manylinux_X_Y wheel: every ELF file of the package (the module and what
    auditwheel bundled in numkern.libs/) needs glibc <= X.Y, and for X.Y <= 2.28 the libstdc++ of
    that policy (GLIBCXX <= 3.4.24, CXXABI <= 1.3.11; the release build links libstdc++ statically:
    CMake NUMKERN_MANYLINUX_COMPAT, docs/wheels.md).  Skipped for source and editable builds."""
    from importlib import metadata
    try:
        wheel_info = metadata.distribution("numkern").read_text("WHEEL") or ""
    except metadata.PackageNotFoundError:
        wheel_info = ""
    tags = re.findall(r"^Tag: .*-manylinux_(\d+)_(\d+)_\w+$", wheel_info, re.M)
    if not tags or "numkern.libs" not in "".join(os.listdir(os.path.dirname(os.path.dirname(numkern.__file__)))):
        pytest.skip("numkern is not installed from a repaired manylinux wheel")
    glibc_max = max((int(a), int(b)) for a, b in tags)
    pkg = os.path.dirname(numkern.__file__)
    files = [os.path.join(pkg, f) for f in os.listdir(pkg) if f.endswith(".so")]
    libs = os.path.join(os.path.dirname(pkg), "numkern.libs")
    files += [os.path.join(libs, f) for f in os.listdir(libs)] if os.path.isdir(libs) else []
    limits = {"GLIBC": glibc_max}
    if glibc_max <= (2, 28):
        limits.update(GLIBCXX=(3, 4, 24), CXXABI=(1, 3, 11))
    too_new = []
    for path in files:
        for lib, versions in elf_version_needs(path).items():
            for v in versions:
                kind = v.split("_", 1)[0]
                if kind in limits and _version_tuple(v) > limits[kind]:
                    too_new.append(f"{os.path.basename(path)}: {lib} {v}")
    assert not too_new, f"tag manylinux_{glibc_max[0]}_{glibc_max[1]}, but: {too_new}"


def test_every_glibc_symbol_newer_than_2_28_is_in_the_compat_list():
    """The release link (NUMKERN_MANYLINUX_COMPAT) rebinds a fixed list of glibc symbols
    (packaging/manylinux/glibc_2_28_compat.S).  A kernel that starts calling another function whose
    default version is newer than GLIBC_2.28 (exp2, log2, ... are 2.29 on newer glibc) would make the
    release wheel miss manylinux_2_28: this source-build check names it first."""
    asm = os.path.join(ROOT, "packaging", "manylinux", "glibc_2_28_compat.S")
    objdump = shutil.which("objdump")
    if not os.path.exists(asm) or objdump is None or not sys.platform.startswith("linux"):
        pytest.skip("needs the source tree's packaging/ and binutils' objdump on Linux")
    with open(asm) as f:
        listed = set(re.findall(r"^NK_(?:OLD|WRAP)\(([A-Za-z0-9_]+)", f.read(), re.M))
    assert {"exp", "log", "pow"} <= listed
    if "libstdc++.so.6" not in elf_needed(numkern._core.__file__):
        # the release link (static libstdc++) has already rebound those symbols to 2.2.5: this
        # check is for source builds, whose module still names them at their newest version
        pytest.skip("the installed module is a release (manylinux) link")
    dyn = subprocess.run([objdump, "-T", numkern._core.__file__], capture_output=True, text=True, check=True).stdout
    newer = set()
    for line in dyn.splitlines():
        m = re.search(r"\*UND\*\s+\S+\s+(?:\(|)(GLIBC_[\d.]+)\)?\s+(\S+)$", line)
        if m and _version_tuple(m.group(1)) > (2, 28):
            newer.add(m.group(2))
    assert "pow" in newer or "exp" in newer or "log" in newer or platform.libc_ver()[1] < "2.29", dyn[:2000]
    assert newer <= listed, f"glibc symbols newer than 2.28 not in {asm}: {sorted(newer - listed)}"


def elf_needed(path):
    """The DT_NEEDED entries of an ELF64 little-endian file (what `readelf -d` lists as NEEDED)."""
    import struct
    data, sections = _elf_sections(path)
    out = []
    for _, sh_type, _, _, offset, size, link, _, _, _ in sections:
        if sh_type != 6:  # SHT_DYNAMIC
            continue
        strtab = sections[link][4]
        for pos in range(offset, offset + size, 16):
            tag, val = struct.unpack_from("<qQ", data, pos)
            if tag == 0:  # DT_NULL
                break
            if tag == 1:  # DT_NEEDED
                out.append(data[strtab + val:data.index(b"\0", strtab + val)].decode())
    return out


def test_elf_needed_reads_the_module():
    """The reader above finds the module's libraries (so the wheel test below cannot pass empty)."""
    needed = elf_needed(numkern._core.__file__)
    assert "libc.so.6" in needed, needed


def test_wheel_module_keeps_libpthread_for_older_glibc():
    """docs/wheels.md (NUMKERN_MANYLINUX_COMPAT): the release link binds pthread_once to
    pthread_once@GLIBC_2.2.5, which glibc < 2.34 defines only in libpthread.so.0, so a module from a
    wheel tagged for glibc < 2.34 must list libpthread.so.0 as DT_NEEDED (ld.so then finds the
    symbol there by name and version).  Skipped unless installed from a repaired manylinux wheel."""
    from importlib import metadata
    try:
        wheel_info = metadata.distribution("numkern").read_text("WHEEL") or ""
    except metadata.PackageNotFoundError:
        wheel_info = ""
    tags = re.findall(r"^Tag: .*-manylinux_(\d+)_(\d+)_x86_64$", wheel_info, re.M)
    if not tags:
        pytest.skip("numkern is not installed from a repaired x86_64 manylinux wheel")
    if min((int(a), int(b)) for a, b in tags) >= (2, 34):
        pytest.skip("tagged for glibc >= 2.34 only (pthread_once is in libc.so.6 there)")
    needed = elf_needed(numkern._core.__file__)
    assert "libpthread.so.0" in needed, needed
