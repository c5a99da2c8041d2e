"""DTC descriptions taken at run time from python-OBD's code table, and python-OBD as a yardstick.

Licence boundary: python-OBD (the ``obd`` package) is licensed GPL-2.0-only (its package
metadata says so). This is the only obdtool module that touches it, and it copies nothing from
it: it reads the installed package's ``obd/codes.py`` when a description is first asked for.
:func:`reference_read` drives python-OBD itself, for the benchmark only (see its docstring).

Speed: ``import obd`` takes most of a second because the package ``__init__`` pulls in pint and
the whole connection machinery. We only need the ``DTC`` dict in ``obd/codes.py``, a plain data
file. So the package is *located* with :func:`importlib.util.find_spec` (which does not run it),
and ``codes.py`` alone is executed under a private module name that is never registered in
``sys.modules``; ``obd`` itself is never imported.

If python-OBD is missing or its layout changed, descriptions are simply unavailable:
:func:`dtc_description` returns ``None`` and :func:`descriptions_available` says ``False``.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
import time
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final

__all__ = ["REFERENCE_ITEMS", "descriptions_available", "dtc_description", "reference_read"]

_PACKAGE: Final = "obd"
_CODES_FILE: Final = "codes.py"
_TABLE_NAME: Final = "DTC"
_PRIVATE_MODULE_NAME: Final = "_obdtool_pyobd_codes"

#: What :func:`reference_read` asks python-OBD for, by its command names: the items of the
#: pre-service check that python-OBD 0.7 can fetch (it has no 0A, ECU name or odometer command).
REFERENCE_ITEMS: Final = (
    "VIN",
    "GET_DTC",
    "GET_CURRENT_DTC",
    "CALIBRATION_ID",
    "CVN",
    "STATUS",
    "DISTANCE_W_MIL",
    "DISTANCE_SINCE_DTC_CLEAR",
    "WARMUPS_SINCE_DTC_CLEAR",
    "RUN_TIME_MIL",
    "TIME_SINCE_DTC_CLEARED",
    "OBD_COMPLIANCE",
)


def _find_codes_file(package: str) -> Path | None:
    """Path of ``<package>/codes.py`` without importing the package, or None."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / _CODES_FILE
    return path if path.is_file() else None


def _read_dtc_table(path: Path) -> Mapping[str, str] | None:
    """Execute ``path`` as a private module and return its ``DTC`` dict of str -> str, or None."""
    spec = importlib.util.spec_from_file_location(_PRIVATE_MODULE_NAME, path)
    if spec is None or spec.loader is None:
        return None
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception:  # a foreign file whose layout may change: any failure means "no descriptions"
        return None
    table = getattr(module, _TABLE_NAME, None)
    if not isinstance(table, dict):
        return None
    clean = {key: value for key, value in table.items() if isinstance(key, str) and isinstance(value, str)}
    return MappingProxyType(clean) if clean else None


@functools.cache
def _dtc_table() -> Mapping[str, str] | None:
    path = _find_codes_file(_PACKAGE)
    return None if path is None else _read_dtc_table(path)


def dtc_description(code: str) -> str | None:
    """Generic description of a five-character DTC such as ``P0001``, or None if unknown.

    The table is loaded once, on the first call. ``None`` also when python-OBD is not installed
    or its layout changed; the technician then looks the code up in the manufacturer's data.
    """
    table = _dtc_table()
    if table is None:
        return None
    return table.get(code.strip().upper())


def descriptions_available() -> bool:
    """Whether DTC descriptions can be shown (python-OBD installed with the expected layout)."""
    return _dtc_table() is not None


def reference_read(port: str, *, protocol: str | None = None) -> dict[str, Any]:
    """Connect python-OBD to the ELM327 on ``port`` and read :data:`REFERENCE_ITEMS`, timing both.

    This exists only for ``benchmarks/bench_check.py``: it runs python-OBD on the very same
    emulated link as obdtool, so the two can be compared item for item. obdtool never reads a car
    through python-OBD. python-OBD runs as its users run it: its own connect (reset, protocol search
    unless ``protocol`` is given, the supported-PID queries) and ``fast`` mode, its default.

    :param port: the serial device (a pseudo-terminal path for the emulator).
    :param protocol: an ELM327 protocol number to select instead of searching (python-OBD's option).
    :returns: ``connect_s`` and ``items_s`` (seconds), ``connected`` (bool) and ``values`` (item name
        -> python-OBD's value as text, ``None`` when it got nothing).
    :raises ImportError: when python-OBD is not installed.
    """
    import obd  # noqa: TID251 -- the licence boundary: python-OBD is used in this module only

    quiet = logging.getLogger("obd")
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)  # python-OBD logs its own warnings to stderr
    try:
        started = time.perf_counter()
        connection = obd.OBD(port, protocol=protocol)
        connected_at = time.perf_counter()
        values: dict[str, str | None] = {}
        try:
            connected = bool(connection.is_connected())
            if connected:
                for name in REFERENCE_ITEMS:
                    response = connection.query(obd.commands[name])
                    values[name] = None if response.is_null() else str(response.value)
            finished_at = time.perf_counter()
        finally:
            connection.close()
    finally:
        quiet.setLevel(level)
    return {
        "connected": connected,
        "connect_s": connected_at - started,
        "items_s": finished_at - connected_at,
        "values": values,
    }
