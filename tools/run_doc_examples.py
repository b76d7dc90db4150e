"""Run every ```python example of README.md and docs/*.md as a new user would (issue #17).

Each block runs alone, in a fresh ``python`` subprocess started in an empty temporary directory
(so it sees the installed numkern, not the source tree), with a timeout; its wall and CPU time
(user + system of the child) are reported.  Blocks that cannot run on a plain CPU machine are
listed in ``ALLOW`` below with the reason; ``HEAVY`` blocks run here but are skipped by the test
(tests/common/test_doc_examples.py), which must stay fast.

    python tools/run_doc_examples.py               # every block, allow list applied
    python tools/run_doc_examples.py --no-heavy    # what the test runs
    python tools/run_doc_examples.py -k vmf        # only files whose name contains "vmf"
    python tools/run_doc_examples.py --list        # the blocks and their status, nothing run

Exit status 1 when a block that should run failed (or when an ALLOW/HEAVY entry no longer matches
its block: the docs changed and the list must follow).
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import pathlib
import re
import resource
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
FENCE = re.compile(r"^```python[ \t]*\n(.*?)^```[ \t]*$", re.M | re.S)

# (file, block number counted from 1 within the file) -> (text the block must contain, reason).
# The text pins the entry to its block: when a doc changes, a stale entry is an error, not a skip.
ALLOW = {
    ("distributed.md", 2): ("da.from_zarr(\"embeddings.zarr\")",
                            "fragment: reads a user's zarr store (embeddings.zarr) and names w, Q"),
    ("distributed.md", 3): ("da.from_zarr(\"sentence_vectors.zarr\")",
                            "fragment: reads a user's zarr store (sentence_vectors.zarr) and names w"),
    ("distributed.md", 4): ("LocalCluster(", "starts a dask.distributed cluster (worker processes, ports)"),
    ("hessian.md", 2): ("DistributedDataParallel(model)",
                        "runs on every rank of a torch.distributed process group"),
}
# blocks that run in the tool but are skipped by the test: (file, block) -> (text, reason)
HEAVY = {
    ("distributed.md", 1): ("da.random.default_rng(0)",
                            "10^8 log_iv evaluations through dask, a 0.8 GB result: measured 1.6 GB peak RSS, "
                            "2-6 s CPU, 13 s wall on 2 loaded cores (too much memory for CI)"),
}


@dataclasses.dataclass
class Block:
    file: str
    index: int      # 1-based within the file
    line: int       # first line of the code in the file
    code: str

    @property
    def key(self):
        return (self.file, self.index)

    @property
    def name(self):
        return f"{self.file}#{self.index} (line {self.line})"


def doc_files(root=ROOT):
    return [p for p in [root / "README.md", *sorted((root / "docs").glob("*.md"))] if p.exists()]


def extract(path):
    """The ```python blocks of one markdown file, in order."""
    text = path.read_text()
    out = []
    for i, m in enumerate(FENCE.finditer(text), start=1):
        line = text.count("\n", 0, m.start(1)) + 1
        out.append(Block(path.name, i, line, m.group(1)))
    return out


def status(block):
    """("run" | "allow" | "heavy" | "stale", reason)."""
    for table, kind in ((ALLOW, "allow"), (HEAVY, "heavy")):
        if block.key in table:
            must, reason = table[block.key]
            if must not in block.code:
                return "stale", f"{kind} entry expects {must!r} in this block: update the list"
            return kind, reason
    return "run", ""


def stale_entries(blocks):
    """ALLOW/HEAVY keys that name no block at all (a block was removed)."""
    have = {b.key for b in blocks}
    files = {b.file for b in blocks}
    return [k for k in (*ALLOW, *HEAVY) if k[0] in files and k not in have]


def run_block(block, timeout=120.0, env=None):
    """Run one block in a fresh interpreter; return (ok, wall_s, cpu_s, output tail)."""
    env = dict(os.environ if env is None else env)
    env.setdefault("PYTHONWARNINGS", "default")
    with tempfile.TemporaryDirectory(prefix="nk_doc_") as tmp:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        try:
            p = subprocess.run([sys.executable, "-c", block.code], cwd=tmp, env=env, timeout=timeout,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            ok, text = p.returncode == 0, p.stdout
        except subprocess.TimeoutExpired as e:
            ok = False
            text = (e.stdout or b"").decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
            text += f"\n[timed out after {timeout:.0f} s]"
        wall = time.perf_counter() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return ok, wall, cpu, text[-3000:]


def collect(select=None, root=ROOT):
    blocks = []
    for p in doc_files(root):
        if select and select not in p.name:
            continue
        blocks += extract(p)
    return blocks


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-k", dest="select", help="only files whose name contains this")
    ap.add_argument("--no-heavy", action="store_true", help="skip the HEAVY blocks (as the test does)")
    ap.add_argument("--list", action="store_true", help="list the blocks and their status, run nothing")
    ap.add_argument("-v", action="store_true", help="print each block's output")
    ap.add_argument("--timeout", type=float, default=300.0, help="seconds per block (default 300)")
    args = ap.parse_args(argv)

    blocks = collect(args.select)
    failures = [f"stale allow/heavy entry {k}: no such block" for k in stale_entries(blocks)]
    for b in blocks:
        st, reason = status(b)
        if st == "stale":
            failures.append(f"{b.name}: {reason}")
            print(f"STALE  {b.name}: {reason}")
            continue
        if st == "allow" or (st == "heavy" and args.no_heavy) or args.list:
            print(f"{st.upper():6s} {b.name}" + (f": {reason}" if reason else ""))
            continue
        ok, wall, cpu, tail = run_block(b, timeout=args.timeout)
        print(f"{'ok' if ok else 'FAIL':6s} {b.name}: {wall:.1f} s wall, {cpu:.1f} s CPU"
              + (f" [heavy: {reason}]" if st == "heavy" else ""))
        if args.v and ok and tail.strip():
            print("       " + tail.strip().replace("\n", "\n       "))
        if not ok:
            failures.append(f"{b.name}:\n{tail}")
            print("       " + tail.strip().replace("\n", "\n       "))
    if failures:
        print(f"\n{len(failures)} failure(s)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
