"""Package-level guarantees: error tree, import direction, package data and the OpenAPI document."""

from __future__ import annotations

import ast
import re
from importlib import resources
from pathlib import Path

import pytest

import upload.errors as errors
from upload.receiver import _BATCH, _HEALTH, _RECORDS

PACKAGE = Path(__file__).resolve().parents[2] / "upload"


def test_error_tree() -> None:
    assert issubclass(errors.UploadError, Exception)
    for name in errors.__all__:
        assert issubclass(getattr(errors, name), errors.UploadError), name
    for leaf in (errors.OutboxCorruptError, errors.OutboxWriteError, errors.RecordNotFoundError):
        assert issubclass(leaf, errors.OutboxError)
    assert not issubclass(errors.TlsError, errors.UploadRetryableError)
    assert not issubclass(errors.UploadAuthError, errors.UploadRejectedError)


def test_errors_read_as_sentences() -> None:
    samples = [
        errors.RecordInvalidError("$.vehicle.vin", "does not match"),
        errors.UploadRetryableError("It failed.", attempts=3, status=503),
        errors.UploadRejectedError("Rejected.", status=422, server_message="bad"),
        errors.UploadAuthError("Refused.", status=401),
    ]
    for sample in samples:
        assert str(sample).endswith(".")
        assert str(sample)[0].isupper()
    assert samples[0].path == "$.vehicle.vin"
    assert samples[1].attempts == 3 and samples[1].status == 503
    assert samples[2].server_message == "bad"


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("path", sorted(PACKAGE.glob("*.py")), ids=lambda p: p.name)
def test_upload_never_imports_obdtool_or_adapters(path: Path) -> None:
    assert not _imports(path) & {"obdtool", "adapters"}


@pytest.mark.parametrize("path", sorted(PACKAGE.glob("*.py")), ids=lambda p: p.name)
def test_no_print_and_no_disabled_verification(path: Path) -> None:
    source = path.read_text(encoding="utf-8")
    assert "print(" not in source
    assert "verify=False" not in source
    assert "CERT_NONE" not in source
    assert "check_hostname = False" not in source


def test_package_data_is_shipped() -> None:
    files = resources.files("upload")
    for name in ("record-v1.schema.json", "openapi.yaml", "py.typed"):
        assert files.joinpath(name).is_file(), name


def test_openapi_document_covers_the_receiver() -> None:
    text = resources.files("upload").joinpath("openapi.yaml").read_text(encoding="utf-8")
    assert text.startswith("openapi: 3.1")
    paths = set(re.findall(r"^  (/\S+):$", text, flags=re.MULTILINE))
    assert paths == {_RECORDS, _BATCH, _RECORDS + "/{record_id}", _HEALTH}
    assert "$ref: ./record-v1.schema.json" in text
    assert "Idempotency-Key" in text
    assert "Retry-After" in text
    for status in ("200", "201", "400", "401", "403", "404", "409", "411", "413", "415", "422", "429", "500"):
        assert f'"{status}":' in text, status
    assert "\t" not in text
