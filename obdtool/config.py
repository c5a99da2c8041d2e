"""Workshop configuration: a small TOML file in the user's config directory, overridable by env.

Secrets never live here (the API token is in the OS keyring): a config file gets copied, mailed
and backed up. Every error names the file and the key, because the technician has to fix it.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from obdtool.errors import ConfigError

__all__ = ["KEYS", "Config", "config_path", "load_config", "set_value"]


@dataclass(frozen=True, slots=True)
class Key:
    """One configuration key: its type, its environment override and what it is for."""

    name: str
    kind: type
    env: str
    help: str


KEYS: dict[str, Key] = {
    k.name: k
    for k in (
        Key("endpoint", str, "OBDTOOL_ENDPOINT", "manufacturer endpoint base URL (https://...)"),
        Key("workshop_id", str, "OBDTOOL_WORKSHOP_ID", "this workshop's id at the manufacturer"),
        Key(
            "adapter",
            str,
            "OBDTOOL_ADAPTER",
            "default adapter (/dev/ttyUSB0, tcp://host:port, can:..., sim:...)",
        ),
        Key("ca_file", str, "OBDTOOL_CA_FILE", "extra CA bundle to trust for the endpoint"),
        Key("client_cert", str, "OBDTOOL_CLIENT_CERT", "client certificate (PEM) for mutual TLS"),
        Key("client_key", str, "OBDTOOL_CLIENT_KEY", "client key (PEM) for mutual TLS"),
        Key("retention_days", int, "OBDTOOL_RETENTION_DAYS", "days to keep sent records before purge"),
        Key("lang", str, "OBDTOOL_LANG", "language of customer-facing text (nb or en)"),
        Key("workshop_name", str, "OBDTOOL_WORKSHOP_NAME", "workshop name printed on the customer's receipt"),
        Key(
            "controller_contact",
            str,
            "OBDTOOL_CONTROLLER_CONTACT",
            "data controller's contact on the receipt",
        ),
    )
}

_WORKSHOP_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


@dataclass(frozen=True, slots=True)
class Config:
    """The effective configuration: file values with environment overrides applied."""

    path: Path
    endpoint: str | None = None
    workshop_id: str | None = None
    adapter: str | None = None
    ca_file: str | None = None
    client_cert: str | None = None
    client_key: str | None = None
    retention_days: int = 90
    lang: str | None = None
    workshop_name: str | None = None
    controller_contact: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """Every key and its effective value (for ``config show``; holds no secrets)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "path"}


def config_path() -> Path:
    """``$OBDTOOL_CONFIG`` or ``config.toml`` in the platform's user config directory."""
    override = os.environ.get("OBDTOOL_CONFIG")
    if override:
        return Path(override)
    from platformdirs import user_config_path

    return user_config_path("obdtool") / "config.toml"


def _read_file(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot be read ({exc})") from exc


def _check(path: Path, name: str, value: Any, origin: str) -> Any:
    if name not in KEYS:
        raise ConfigError(f"{origin}: unknown key {name!r} (known: {', '.join(KEYS)})")
    key = KEYS[name]
    if key.kind is int:
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ConfigError(f"{origin}: key {name!r} must be a whole number of days")
    elif not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{origin}: key {name!r} must be a non-empty text")
    if name == "workshop_id" and not _WORKSHOP_RE.match(value):
        raise ConfigError(f"{origin}: key 'workshop_id' may hold only letters, digits, '.', '_', '-' (1-64)")
    if name == "endpoint" and not re.match(r"^https?://[^/\s]+", value):
        raise ConfigError(f"{origin}: key 'endpoint' must be a URL such as https://obfcm.example/api")
    if name == "lang" and value not in ("nb", "en"):
        raise ConfigError(f"{origin}: key 'lang' must be 'nb' or 'en'")
    return value


def load_config(path: Path | None = None) -> Config:
    """Read the file (a missing file is an empty configuration) and apply env overrides.

    :raises ConfigError: naming the file (or variable) and the key at fault.
    """
    path = path or config_path()
    values: dict[str, Any] = {}
    for name, value in _read_file(path).items():
        values[name] = _check(path, name, value, str(path))
    for key in KEYS.values():
        if os.environ.get(key.env):
            values[key.name] = _check(path, key.name, os.environ[key.env], f"environment variable {key.env}")
    return Config(path=path, **values)


def set_value(name: str, value: str, path: Path | None = None) -> Path:
    """Set one key in the file, keeping the others; written atomically.

    :raises ConfigError: for an unknown key or an invalid value.
    """
    path = path or config_path()
    current = _read_file(path)
    current[name] = _check(path, name, value, "config set")
    lines = ["# obdtool configuration (secrets are kept in the OS keyring, never here)"]
    for key, val in sorted(current.items()):
        lines.append(f"{key} = {val}" if isinstance(val, int) else f"{key} = {json.dumps(val)}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be written ({exc.strerror or exc})") from exc
    return path
