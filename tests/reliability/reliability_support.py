"""Helpers for the reliability tests: the CLI in a subprocess, a test keyring for it, and the ledger.

The ledger counts what the tests really did -- faults injected by kind, records expected and delivered,
CLI runs and tracebacks, fuzz examples -- and ``conftest.py`` writes it to ``test-output/reliability.json``
at the end of the session, so the README's summary table is produced by a test run, not typed in.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keyring.backend
import keyring.errors

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
OUTPUT = ROOT / "test-output" / "reliability.json"
TOKEN_ENV = "OBDTOOL_TEST_TOKEN"
PETROL_VIN = "WVWZZZCDZMW123450"


class EnvKeyring(keyring.backend.KeyringBackend):
    """The keyring of CLI subprocesses in these tests: the token comes from ``$OBDTOOL_TEST_TOKEN``.

    Selected with ``PYTHON_KEYRING_BACKEND=reliability_support.EnvKeyring``. A subprocess cannot share
    the test's in-memory keyring, a file-based keyring would put the token on disk, and the user's real
    keyring must never be touched by a test: this backend reads one environment variable and stores
    nothing, so nothing is written anywhere.
    """

    priority = 1

    def get_password(self, service: str, username: str) -> str | None:
        return os.environ.get(TOKEN_ENV) or None

    def set_password(self, service: str, username: str, password: str) -> None:
        raise keyring.errors.PasswordSetError("the test keyring is read-only")

    def delete_password(self, service: str, username: str) -> None:
        raise keyring.errors.PasswordDeleteError("the test keyring is read-only")


@dataclass
class Ledger:
    """What the reliability tests did, for the summary table (one per test session)."""

    faults: Counter[str] = field(default_factory=Counter)
    fuzz: Counter[str] = field(default_factory=Counter)
    cli_runs: int = 0
    tracebacks: int = 0
    internal_errors: int = 0
    records_expected: int = 0
    records_delivered: int = 0
    records_lost: int = 0
    duplicates_stored: int = 0
    repeat_posts: int = 0
    partial_readouts_kept: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def fault(self, kind: str, count: int = 1) -> None:
        """Count a fault injected, by kind (``adapter:noise``, ``upload:http-500`` ...)."""
        with self._lock:
            self.faults[kind] += count

    def example(self, name: str) -> None:
        """Count one fuzz example run by the property test ``name``."""
        with self._lock:
            self.fuzz[name] += 1

    def delivery(self, *, expected: set[str], received: list[str], posts: int) -> None:
        """Count an upload scenario's outcome at the receiver: lost, duplicated, re-sent records."""
        with self._lock:
            self.records_expected += len(expected)
            self.records_delivered += len(expected & set(received))
            self.records_lost += len(expected - set(received))
            self.duplicates_stored += len(received) - len(set(received))
            self.repeat_posts += max(0, posts - len(set(received)))

    def as_dict(self) -> dict[str, Any]:
        """The JSON document written to ``test-output/reliability.json``."""
        by_group: dict[str, dict[str, int]] = {}
        for kind, count in sorted(self.faults.items()):
            group, _, name = kind.partition(":")
            by_group.setdefault(group, {})[name or group] = count
        return {
            "faults": by_group,
            "faults_total": sum(self.faults.values()),
            "records": {
                "expected": self.records_expected,
                "delivered": self.records_delivered,
                "lost": self.records_lost,
                "duplicates_stored": self.duplicates_stored,
                "repeat_posts_absorbed": self.repeat_posts,
            },
            "partial_readouts_kept": self.partial_readouts_kept,
            "cli_runs": self.cli_runs,
            "tracebacks": self.tracebacks,
            "internal_errors": self.internal_errors,
            "fuzz_examples": dict(sorted(self.fuzz.items())),
            "fuzz_examples_total": sum(self.fuzz.values()),
            "outcomes": dict(sorted(self.outcomes.items())),
        }

    def write(self, path: Path = OUTPUT, **extra: Any) -> None:
        """Write the JSON document (plus ``extra`` keys such as test counts)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        document = {**self.as_dict(), **extra}
        path.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n", encoding="utf-8")


LEDGER = Ledger()


def has_traceback(*texts: str) -> bool:
    """True when any output carries a Python traceback."""
    return any("Traceback (most recent call last)" in text for text in texts)


def run_cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``obdtool`` in its own process, as a workshop does; every run is checked for tracebacks."""
    import cli_support  # here, not at the top: CLI subprocesses import this module for its keyring alone

    done = cli_support.run_cli(*args, env=env, stdin=stdin, timeout=timeout)
    note_run(done.returncode, done.stdout, done.stderr)
    return done


def note_run(code: int, stdout: str, stderr: str) -> None:
    """Count one CLI run and any traceback or internal error (exit 70) it showed."""
    with LEDGER._lock:
        LEDGER.cli_runs += 1
        LEDGER.tracebacks += int(has_traceback(stdout, stderr))
        LEDGER.internal_errors += int(code == 70)


def one_error_line(stderr: str) -> str:
    """The single ``error: ...`` line a failing command must print; asserts there is exactly one line."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line on stderr, got {lines!r}"
    assert lines[0].startswith("error: "), lines[0]
    return lines[0]


def cli_env(tmp: Path, **extra: str) -> dict[str, str]:
    """Environment for a CLI subprocess: its own data dir, config and the environment keyring."""
    env = {
        "OBDTOOL_DATA_DIR": str(tmp / "data"),
        "OBDTOOL_CONFIG": str(tmp / "config.toml"),
        "OBDTOOL_CACHE_DIR": str(tmp / "cache"),
        "OBDTOOL_WORKSHOP_ID": "WS-RELIABILITY-1",
        "PYTHON_KEYRING_BACKEND": "reliability_support.EnvKeyring",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(HERE), str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    env.update(extra)
    return env


def make_tls(directory: Path) -> tuple[Path, Path]:
    """A throw-away CA and a server certificate for 127.0.0.1: (CA file, server PEM with its key)."""
    import trustme

    directory.mkdir(parents=True, exist_ok=True)
    authority = trustme.CA()
    authority.cert_pem.write_to_path(str(directory / "ca.pem"))
    server = authority.issue_cert("127.0.0.1", "localhost")
    server.private_key_and_cert_chain_pem.write_to_path(str(directory / "server.pem"))
    return directory / "ca.pem", directory / "server.pem"


def example_record() -> dict[str, Any]:
    """A valid visit record (the published example) with a fresh record id."""
    import uuid

    record: dict[str, Any] = json.loads((ROOT / "upload" / "examples" / "visit-example.json").read_text())
    record["record_id"] = str(uuid.uuid4())
    return record


def run_cli_many(
    calls: dict[str, tuple[tuple[str, ...], dict[str, str] | None]], workers: int = 4
) -> dict[str, subprocess.CompletedProcess[str]]:
    """Run independent CLI invocations side by side (each still its own process) and key the results.

    Most of a CLI run is interpreter start-up; running a table of cases concurrently keeps this folder
    fast on a two-core machine while every case stays a separate, real process.
    """
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = {key: pool.submit(run_cli, *args, env=env) for key, (args, env) in calls.items()}
        return {key: future.result() for key, future in futures.items()}
