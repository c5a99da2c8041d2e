"""Suite-wide isolation: no test reads or writes the user's config, outbox, cache or keyring."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

ISOLATED = ("OBDTOOL_CONFIG", "OBDTOOL_DATA_DIR", "OBDTOOL_CACHE_DIR")
CLEARED = (
    "OBDTOOL_ENDPOINT",
    "OBDTOOL_WORKSHOP_ID",
    "OBDTOOL_ADAPTER",
    "OBDTOOL_CA_FILE",
    "OBDTOOL_CLIENT_CERT",
    "OBDTOOL_CLIENT_KEY",
    "OBDTOOL_RETENTION_DAYS",
    "OBDTOOL_LANG",
    "OBDTOOL_WORKSHOP_NAME",
    "OBDTOOL_CONTROLLER_CONTACT",
)


@pytest.fixture(autouse=True)
def _isolated_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    home = tmp_path / "obdtool-home"
    monkeypatch.setenv("OBDTOOL_CONFIG", str(home / "config.toml"))
    monkeypatch.setenv("OBDTOOL_DATA_DIR", str(home / "data"))
    monkeypatch.setenv("OBDTOOL_CACHE_DIR", str(home / "cache"))
    for name in CLEARED:
        monkeypatch.delenv(name, raising=False)
    yield
