"""A wrapper that keeps a secret (the API token) out of repr(), str(), logs and pickles."""

from __future__ import annotations

from typing import Any

__all__ = ["Secret"]


class Secret:
    """Holds a secret string; only :meth:`reveal` returns it, so accidental formatting shows ``<hidden>``."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The secret itself, for the one place that must send or compare it."""
        return self._value

    def __repr__(self) -> str:
        return "<hidden>"

    __str__ = __repr__

    def __reduce__(self) -> tuple[Any, ...]:
        raise TypeError("secrets cannot be pickled")
