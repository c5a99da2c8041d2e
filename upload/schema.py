"""The record contract: ``record-v1.schema.json`` and the one function that checks a record against it.

The schema ships as package data so that the client, the outbox and the reference receiver all check
records against exactly the same file. Every object in it forbids unlisted properties: a customer's name,
phone number or position cannot ride along with the vehicle data by accident.
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Iterable, Mapping
from importlib import resources
from typing import Any

from jsonschema import Draft202012Validator  # type: ignore[import-untyped]
from jsonschema.exceptions import ValidationError, best_match  # type: ignore[import-untyped]

from upload.errors import RecordInvalidError

__all__ = ["SCHEMA_FILE", "SCHEMA_VERSION", "load_schema", "validate_record"]

SCHEMA_VERSION = "1.0"
"""The ``schema_version`` every record written by this package carries."""

SCHEMA_FILE = "record-v1.schema.json"
"""Name of the schema file inside the ``upload`` package (also referenced by ``openapi.yaml``)."""

_MAX_REASON = 300


@functools.cache
def load_schema() -> Mapping[str, Any]:
    """Load the record schema from the installed package (cached: it is read once per process).

    Reading through :mod:`importlib.resources` works the same from a source tree, a wheel or a zip app.

    :returns: the parsed JSON Schema document; treat it as read-only.
    """
    text = resources.files("upload").joinpath(SCHEMA_FILE).read_text(encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)
    Draft202012Validator.check_schema(schema)
    return schema


@functools.cache
def _validator() -> Draft202012Validator:
    return Draft202012Validator(load_schema())


def _json_path(parts: Iterable[object]) -> str:
    path = "$"
    for part in parts:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


def _shorten(text: str) -> str:
    return text if len(text) <= _MAX_REASON else text[: _MAX_REASON - 3] + "..."


def _describe(error: ValidationError) -> tuple[str, str]:
    """Turn a jsonschema error into (path, reason) without echoing the (possibly long) offending value."""
    parts = list(error.absolute_path)
    schema = error.schema if isinstance(error.schema, dict) else {}
    keyword = error.validator
    expected = error.validator_value
    if keyword == "additionalProperties" and isinstance(error.instance, dict):
        listed = schema.get("properties", {})
        patterns = schema.get("patternProperties", {})
        extras = sorted(
            key
            for key in error.instance
            if key not in listed and not any(_matches(pattern, key) for pattern in patterns)
        )
        if extras:
            return _json_path(
                [*parts, extras[0]]
            ), "this property is not part of the record (vehicle data only)"
    if keyword == "required":
        missing = [
            name for name in expected if isinstance(error.instance, dict) and name not in error.instance
        ]
        if missing:
            return _json_path([*parts, missing[0]]), "this property is required"
    if keyword == "maxItems" and expected == 0 and "then" in error.absolute_schema_path:
        return _json_path(parts), "must be empty: the owner refused OBFCM, so no OBFCM values may be carried"
    if keyword == "type" and "else" in error.absolute_schema_path:
        return _json_path(parts), "must be null: only a record of kind 'clear' carries a clearing report"
    if keyword == "type" and "then" in error.absolute_schema_path:
        return _json_path(parts), "must be an object: a record of kind 'clear' carries a clearing report"
    if keyword == "pattern" and schema.get("format") == "date-time":
        return _json_path(parts), "must be an RFC 3339 UTC timestamp ending in 'Z', e.g. 2025-03-14T09:26:53Z"
    reasons = {
        "type": f"must be of type {expected}",
        "const": f"must be {expected!r}",
        "enum": f"must be one of {', '.join(map(repr, expected))}" if isinstance(expected, list) else "",
        "pattern": f"does not match the pattern {expected}",
        "minimum": f"must be at least {expected}",
        "maximum": f"must be at most {expected}",
        "minLength": f"must be at least {expected} characters long",
        "maxLength": f"must be at most {expected} characters long",
        "maxItems": f"must have at most {expected} items",
        "maxProperties": f"must have at most {expected} entries",
        "anyOf": "does not match any of the allowed forms",
        "not": "looks like personal data, and records carry vehicle data only",
    }
    reason = reasons.get(str(keyword)) or error.message
    if "propertyNames" in error.absolute_schema_path:
        reason = f"the key {str(error.instance)[:64]!r} is not allowed here ({reason})"
    return _json_path(parts), _shorten(reason)


def _matches(pattern: str, key: str) -> bool:
    return re.search(pattern, key) is not None


def _check_plain_json(value: object, parts: list[object]) -> None:
    """Reject what :func:`json.dumps` would write but no strict JSON parser reads (NaN, infinities)."""
    if isinstance(value, float) and not math.isfinite(value):
        raise RecordInvalidError(_json_path(parts), "numbers must be finite (no NaN or infinity)")
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise RecordInvalidError(_json_path(parts), "object keys must be strings")
            _check_plain_json(item, [*parts, key])
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            _check_plain_json(item, [*parts, index])


def validate_record(doc: Mapping[str, Any]) -> None:
    """Check a record against ``record-v1.schema.json`` before it is stored or sent.

    Checking at the door means the outbox only ever holds records the manufacturer's endpoint will accept,
    and a record with a forbidden field (e.g. a customer name) is stopped before it is written anywhere.

    :param doc: the record as plain JSON-compatible Python data.
    :raises RecordInvalidError: with the JSON path and reason of the most relevant error.
    """
    if not isinstance(doc, Mapping):
        raise RecordInvalidError("$", "a record must be a JSON object")
    _check_plain_json(dict(doc), [])
    if _validator().is_valid(dict(doc)):
        return  # the common case; collecting every error to pick the best one costs ~3x as much
    error = best_match(_validator().iter_errors(dict(doc)))
    if error is not None:
        path, reason = _describe(error)
        raise RecordInvalidError(path, reason)
