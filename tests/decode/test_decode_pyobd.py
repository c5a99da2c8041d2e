"""Tests for obdtool.pyobd: DTC descriptions read from python-OBD's table without importing obd."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from obdtool import pyobd


def test_p0001_description() -> None:
    assert pyobd.dtc_description("P0001") == "Fuel Volume Regulator Control Circuit/Open"


def test_lookup_is_case_and_space_tolerant() -> None:
    assert pyobd.dtc_description(" p0001\n") == "Fuel Volume Regulator Control Circuit/Open"


def test_unknown_code_has_no_description() -> None:
    assert pyobd.dtc_description("P3FFF") is None
    assert pyobd.dtc_description("") is None


def test_descriptions_are_available_in_the_project_venv() -> None:
    assert pyobd.descriptions_available() is True


def test_loading_descriptions_does_not_import_obd() -> None:
    # The point of the module: the table is read without running obd/__init__.py (and pint).
    script = textwrap.dedent(
        """
        import json, sys
        import obdtool.pyobd as p
        text = p.dtc_description("P0001")
        loaded = sorted(
            name for name in sys.modules
            if name in ("obd", "pint", "_obdtool_pyobd_codes") or name.startswith(("obd.", "pint."))
        )
        print(json.dumps({"text": text, "available": p.descriptions_available(), "loaded": loaded}))
        """
    )
    completed = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    assert json.loads(completed.stdout) == {
        "text": "Fuel Volume Regulator Control Circuit/Open",
        "available": True,
        "loaded": [],
    }


def test_missing_python_obd_means_no_descriptions(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pyobd, "_dtc_table", lambda: None)
    assert pyobd.dtc_description("P0001") is None
    assert pyobd.descriptions_available() is False


def test_find_codes_file_for_a_missing_package() -> None:
    assert pyobd._find_codes_file("obdtool_test_no_such_package") is None


def _fake_package(root: Path, name: str, codes: str | None) -> None:
    package = root / name
    package.mkdir()
    # Running __init__ would fail: proves that locating the package does not execute it.
    (package / "__init__.py").write_text("raise RuntimeError('package __init__ must not run')\n")
    if codes is not None:
        (package / "codes.py").write_text(codes)


def test_find_and_read_a_package_without_running_its_init(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fake_package(tmp_path, "obdtool_fake_obd_ok", 'DTC = {"P0001": "Fake text", "P0002": 2, 3: "x"}\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    path = pyobd._find_codes_file("obdtool_fake_obd_ok")
    assert path == tmp_path / "obdtool_fake_obd_ok" / "codes.py"
    table = pyobd._read_dtc_table(path)
    assert table is not None
    assert dict(table) == {"P0001": "Fake text"}
    assert "obdtool_fake_obd_ok" not in sys.modules


def test_package_without_codes_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_package(tmp_path, "obdtool_fake_obd_nocodes", None)
    monkeypatch.syspath_prepend(str(tmp_path))
    assert pyobd._find_codes_file("obdtool_fake_obd_nocodes") is None


def test_module_instead_of_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "obdtool_fake_obd_module.py").write_text("DTC = {}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert pyobd._find_codes_file("obdtool_fake_obd_module") is None


@pytest.mark.parametrize(
    "codes",
    [
        "raise ImportError('layout changed')\n",
        "this is not python\n",
        "CODES = {'P0001': 'renamed table'}\n",
        "DTC = [('P0001', 'not a dict')]\n",
        "DTC = {}\n",
    ],
)
def test_changed_layout_means_no_table(tmp_path: Path, codes: str) -> None:
    path = tmp_path / "codes.py"
    path.write_text(codes)
    assert pyobd._read_dtc_table(path) is None
