"""Helpers for the end-to-end tests: a file-less keyring and a traceback check."""

from __future__ import annotations

from typing import Any

import keyring.backend


class MemoryKeyring(keyring.backend.KeyringBackend):
    """A file-less keyring for tests: nothing reaches the user's real keyring."""

    priority = 1  # type: ignore[assignment]

    def __init__(self) -> None:
        super().__init__()
        self.items: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.items.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.items[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        self.items.pop((service, username), None)


def no_traceback(*texts: Any) -> bool:
    """True when none of the outputs carries a Python traceback."""
    return all("Traceback" not in str(t) for t in texts)
