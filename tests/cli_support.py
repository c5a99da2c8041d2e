"""Running the real ``obdtool`` command in its own process, shared by the end-to-end and reliability tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_cli(
    *args: str, env: dict[str, str] | None = None, stdin: str | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run ``obdtool`` as a workshop would: a separate process, real stdin/stdout/stderr."""
    return subprocess.run(
        [sys.executable, "-m", "obdtool.cli", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        cwd=ROOT,
        check=False,
    )
