"""Where the protocol that worked is remembered between connects (the user's cache directory)."""

from __future__ import annotations

import os
from pathlib import Path

from adapters.elm327 import ProtocolMemory

__all__ = ["default_protocol_memory"]


def default_protocol_memory() -> ProtocolMemory:
    """``$OBDTOOL_CACHE_DIR/protocols.json`` or the platform's user cache directory."""
    override = os.environ.get("OBDTOOL_CACHE_DIR")
    if override:
        base = Path(override)
    else:
        from platformdirs import user_cache_path

        base = user_cache_path("obdtool")
    return ProtocolMemory(base / "protocols.json")
