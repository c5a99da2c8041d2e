"""The decode package stays pure: standard library and obdtool only, documented public API."""

from __future__ import annotations

import ast
import importlib
import inspect
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import obdtool.decode

DECODE_DIR = Path(obdtool.decode.__file__).parent
MODULES = sorted(path.stem for path in DECODE_DIR.glob("*.py") if path.stem != "__init__")


def test_the_expected_modules_exist() -> None:
    assert MODULES == ["common", "dtc", "infotypes", "pids"]


@pytest.mark.parametrize("module", MODULES)
def test_imports_are_standard_library_or_obdtool(module: str) -> None:
    tree = ast.parse((DECODE_DIR / f"{module}.py").read_text(encoding="utf-8"))
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    foreign = {name for name in imported if name not in sys.stdlib_module_names and name != "obdtool"}
    assert foreign == set()


def test_importing_decoders_loads_no_io_library() -> None:
    script = textwrap.dedent(
        """
        import json, sys
        import obdtool.decode.common, obdtool.decode.dtc, obdtool.decode.infotypes, obdtool.decode.pids
        banned = ("obd", "serial", "can", "isotp", "udsoncan", "httpx", "keyring", "pint", "rich", "click")
        print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in banned)))
        """
    )
    completed = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    assert json.loads(completed.stdout) == []


@pytest.mark.parametrize("module", MODULES)
def test_public_api_is_declared_and_documented(module: str) -> None:
    mod = importlib.import_module(f"obdtool.decode.{module}")
    assert mod.__doc__
    public = mod.__all__
    assert sorted(public) == sorted(set(public))
    for name in public:
        obj = getattr(mod, name)
        if inspect.isfunction(obj) or inspect.isclass(obj):
            assert obj.__doc__, f"{module}.{name} has no docstring"
            assert obj.__module__ == mod.__name__, f"{module}.{name} is re-exported from {obj.__module__}"
    defined = {
        name
        for name, obj in vars(mod).items()
        if not name.startswith("_")
        and (inspect.isfunction(obj) or inspect.isclass(obj))
        and obj.__module__ == mod.__name__
    }
    assert defined <= set(public)


@pytest.mark.parametrize("module", MODULES)
def test_result_dataclasses_are_frozen_with_slots(module: str) -> None:
    mod = importlib.import_module(f"obdtool.decode.{module}")
    for name in mod.__all__:
        obj = getattr(mod, name)
        params = getattr(obj, "__dataclass_params__", None)
        if inspect.isclass(obj) and params is not None:
            assert params.frozen, name
            assert "__slots__" in vars(obj), name
