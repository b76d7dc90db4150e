"""Every relative link and every repository path named in README.md and docs/*.md exists
(issue #17: docs/reliability.md linked a file that did not exist)."""
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")
# a path in backquotes that starts with one of the repository's top-level folders
PATH = re.compile(r"`((?:csrc|python|tests|bench|docs|tools|examples)/[A-Za-z0-9_./-]+\.(?:py|md|sh|cpp|hpp|cu|npz))`")


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_links_and_paths_exist(doc):
    if not doc.exists():
        pytest.skip(f"{doc.name} is not here: tests run from an installed wheel, without the source tree")
    text = doc.read_text()
    missing = []
    for target in LINK.findall(text):
        if "://" in target or target.startswith("mailto:"):
            continue
        if not (doc.parent / target).exists():
            missing.append(target)
    for target in PATH.findall(text):
        if "<" in target or "*" in target:
            continue
        if not (ROOT / target).exists():
            missing.append(target)
    assert not missing, f"{doc.name}: {missing}"
