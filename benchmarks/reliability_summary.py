"""The reliability summary for the README, from a real test run (never typed in).

    .venv/bin/python benchmarks/reliability_summary.py          # run tests/reliability, then print
    .venv/bin/python benchmarks/reliability_summary.py --no-run # print the last run's figures
    .venv/bin/python benchmarks/reliability_summary.py --slow   # include the soak tests (minutes)

The reliability tests count what they do into ``test-output/reliability.json`` (faults injected by kind,
records expected and delivered at the receiver, CLI runs and tracebacks, fuzz examples executed); this
script turns that file into Markdown tables.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "test-output" / "reliability.json"
GROUPS = {"adapter": "adapter and car", "upload": "upload and local disk", "input": "bad input"}


def run_tests(slow: bool) -> int:
    """Run the reliability folder (with the soak tests when ``slow``); returns pytest's exit code."""
    command = [sys.executable, "-m", "pytest", "tests/reliability", "-q", "-p", "no:randomly"]
    if slow:
        command += ["-m", "slow or not slow"]
    return subprocess.run(command, cwd=ROOT, check=False).returncode


def summary(doc: dict[str, Any]) -> str:
    """The summary table and the per-kind fault table, as Markdown."""
    records = doc["records"]
    tests = doc.get("tests", {})
    faults: dict[str, dict[str, int]] = doc["faults"]
    per_group = ", ".join(
        f"{GROUPS.get(group, group)} {sum(kinds.values())} ({len(kinds)} kinds)"
        for group, kinds in faults.items()
    )
    rows = [
        ("Faults injected", f"{doc['faults_total']}: {per_group}"),
        ("Records lost", f"{records['lost']} of {records['expected']} sent through faulty networks"),
        (
            "Duplicates stored at the receiver",
            f"{records['duplicates_stored']} ({records['repeat_posts_absorbed']} repeated deliveries"
            " absorbed by the idempotency key)",
        ),
        ("Tracebacks", f"{doc['tracebacks']} in {doc['cli_runs']} CLI runs"),
        ("Internal errors (exit 70)", str(doc["internal_errors"])),
        ("Read-outs stopped by a fault that kept what was read", str(doc["partial_readouts_kept"])),
        ("Fuzz examples run", f"{doc['fuzz_examples_total']} ({len(doc['fuzz_examples'])} properties)"),
        (
            "Tests",
            f"{tests.get('passed', 0)} passed, {tests.get('failed', 0)} failed,"
            f" {tests.get('skipped', 0)} skipped in {doc.get('duration_s', '?')} s",
        ),
    ]
    lines = ["| | |", "|---|---|", *(f"| {what} | {value} |" for what, value in rows), ""]
    lines += ["| Fault injected | Count |", "|---|---|"]
    for group, kinds in faults.items():
        for kind, count in kinds.items():
            lines.append(f"| {GROUPS.get(group, group)}: {kind} | {count} |")
    if doc.get("outcomes"):
        lines += ["", "| Outcome | Count |", "|---|---|"]
        lines += [f"| {what} | {count} |" for what, count in doc["outcomes"].items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run (unless ``--no-run``) and print the tables; the exit code says whether the tests passed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-run", action="store_true", help="only print the last run's figures")
    parser.add_argument("--slow", action="store_true", help="include the soak tests")
    args = parser.parse_args(argv)
    code = 0 if args.no_run else run_tests(args.slow)
    if not RESULTS.exists():
        print(f"no results in {RESULTS}: run without --no-run first", file=sys.stderr)
        return 2
    print(summary(json.loads(RESULTS.read_text(encoding="utf-8"))))
    return code


if __name__ == "__main__":
    raise SystemExit(main())
