"""DTC descriptions taken at run time from python-OBD's code table.

Licence boundary: python-OBD (the ``obd`` package) is licensed GPL-2.0-only (its package
metadata says so). This is the only obdtool module that touches it, and it copies nothing from
it: it reads the installed package's ``obd/codes.py`` when a description is first asked for.

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
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Final

__all__ = ["descriptions_available", "dtc_description"]

_PACKAGE: Final = "obd"
_CODES_FILE: Final = "codes.py"
_TABLE_NAME: Final = "DTC"
_PRIVATE_MODULE_NAME: Final = "_obdtool_pyobd_codes"


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
