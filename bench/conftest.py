"""pytest-benchmark glue: after a bench run, print each bench module's ratio table.

A bench module opts in by defining ``markdown_report() -> str`` (empty when nothing was measured),
so ratios against the anchor come from the same run as pytest-benchmark's own statistics.
"""
import sys


def pytest_terminal_summary(terminalreporter):
    for name, mod in sorted(sys.modules.items()):
        if not name.rsplit(".", 1)[-1].startswith("bench_"):
            continue
        fn = getattr(mod, "markdown_report", None)
        text = fn() if callable(fn) else ""
        if text:
            terminalreporter.write_sep("=", f"{name}: ratios vs anchor")
            terminalreporter.write_line(text)
