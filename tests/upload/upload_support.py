"""Helpers shared by the upload tests (imported by conftest.py and the test modules)."""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keyring.backend
import keyring.errors
import trustme

EXAMPLES = Path(__file__).resolve().parents[2] / "upload" / "examples"
TOKEN = "tok-" + secrets.token_hex(16)
"""The receiver's token; random per run so that searching files and logs for it is meaningful."""


def load_example(name: str = "visit-example.json") -> dict[str, Any]:
    return json.loads((EXAMPLES / name).read_text(encoding="utf-8"))


@dataclass(frozen=True)
class TlsFiles:
    ca_file: Path
    certfile: Path


def tls_files(directory: Path, *names: str) -> TlsFiles:
    directory.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA()
    cert = ca.issue_cert(*names)
    ca.cert_pem.write_to_path(str(directory / "ca.pem"))
    cert.private_key_and_cert_chain_pem.write_to_path(str(directory / "server.pem"))
    return TlsFiles(ca_file=directory / "ca.pem", certfile=directory / "server.pem")


class SleepRecorder:
    """Stands in for time.sleep: remembers each requested delay instead of waiting."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


class MemoryKeyring(keyring.backend.KeyringBackend):
    """A keyring that keeps passwords in a dict: nothing reaches a file or the real OS keyring."""

    priority = 1  # type: ignore[assignment]

    def __init__(self) -> None:
        super().__init__()
        self.passwords: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.passwords.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.passwords[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        try:
            del self.passwords[(service, username)]
        except KeyError:
            raise keyring.errors.PasswordDeleteError("no such password") from None


def files_bytes(*paths: Path) -> bytes:
    """All bytes of the given files and of their SQLite -wal/-shm companions that exist."""
    chunks = []
    for path in paths:
        for candidate in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
            if candidate.exists():
                chunks.append(candidate.read_bytes())
    return b"".join(chunks)
